"""Shared fixtures: one local Ray instance and one redis-server for the whole test session."""

from __future__ import annotations

import os
from typing import Any, Iterator

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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server on 127.0.0.1, on a free port, persistence off, in a temp folder; stopped at the end.

    ``TIDAL_REDIS_URL`` names it for the session, so the capability cases and
    jobs run in child processes use the same server. Where no server can run,
    the tests that need one are skipped with a line saying how to install it.
    """
    pytest.importorskip("redis", reason="the Redis tests need redis-py: pip install -e '.[dev]'")
    from tidal.testing.redis_server import INSTALL_HINT, URL_VARIABLE, RedisServer, RedisServerUnavailable

    configured = os.environ.get(URL_VARIABLE)
    if configured:
        yield configured
        return
    try:
        server = RedisServer().start()
    except RedisServerUnavailable as exc:
        pytest.skip(f"no Redis server for the Redis tests ({exc}); install it with: {INSTALL_HINT}")
    os.environ[URL_VARIABLE] = server.url
    try:
        yield server.url
    finally:
        del os.environ[URL_VARIABLE]
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A client of the session's Redis, emptied before each test (responses decoded as str)."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the server a capability case may have started for itself (no process is left behind)."""
    from tidal.testing.redis_server import stop_shared_redis_server

    stop_shared_redis_server()
