"""Beam-style tests run on every runner: TestPipeline and the ported programs pick it up from TIDAL_RUNNER."""

from __future__ import annotations

from typing import Iterator

import pytest

RUNNERS = ("direct", "microbatch", "ray")


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The runner every TestPipeline (and Pipeline without --runner) of the test uses."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    monkeypatch.setenv("TIDAL_RUNNER", request.param)
    yield request.param
