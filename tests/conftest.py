"""Shared fixtures: one local Ray instance for the whole test session."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TIDAL_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Start local Ray once (2 CPUs, no dashboard); tests that use Ray share it."""
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    yield
    if started:
        ray.shutdown()
