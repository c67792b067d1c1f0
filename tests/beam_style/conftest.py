"""Beam-style tests run on every runner: TestPipeline and the ported programs pick it up from TIDAL_RUNNER."""

from __future__ import annotations

from typing import Iterator

import pytest

RUNNERS = ("direct", "microbatch", "ray")


def _use(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    monkeypatch.setenv("TIDAL_RUNNER", request.param)
    return str(request.param)


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The runner every TestPipeline (and Pipeline without --runner) of the test uses."""
    yield _use(request, monkeypatch)


@pytest.fixture(params=RUNNERS[:2])
def local_runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """direct and micro-batch only: for whole programs that the conformance suite already runs on Ray
    (the "Beam source compatibility" cases), where a second Ray run would only repeat its start-up cost."""
    yield _use(request, monkeypatch)
