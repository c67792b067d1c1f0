"""Shared fixtures: one local Ray and one redis-server for the whole test session, and a multi-node Ray cluster.

Every Ray address in the tests is on 127.0.0.1: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(set here, before anything imports Ray) makes Ray bind its nodes, GCS and
driver to the loopback interface instead of the machine's outward address.
Ray's files (sessions, logs, sockets, the record of the "current cluster") go
to a folder of this session's own, removed at the end, so no other Ray on the
machine ever finds the session's clusters, nor the session theirs.

The multi-node cluster (``ray_cluster``) is a real one: three nodes, each its
own raylet, started with ``ray.cluster_utils.Cluster`` on 127.0.0.1. A
driver is connected to one Ray at a time, so the tests that use it run after
all the others (see ``pytest_collection_modifyitems``); the fixture
disconnects from the shared local Ray first, and at the end stops every
process of the cluster and checks that none is left.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from typing import Any, Iterator

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TIDAL_NO_PROGRESS", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
_RAY_TMPDIR: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Give the session's Ray a folder of its own, before any test module imports Ray.

    Here rather than at import: a process that imports this module by name
    (a Ray worker unpickling something of the tests) makes no folder.
    """
    global _RAY_TMPDIR
    if "RAY_TMPDIR" not in os.environ:
        # Short: Ray's socket paths live under it and must stay under 108 characters.
        _RAY_TMPDIR = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="tidal-ray-", dir="/tmp")
        # Also at the very end of the process: handlers run last-registered first, so this runs
        # after Ray's own exit handlers (registered when Ray is imported), which may write there.
        atexit.register(shutil.rmtree, _RAY_TMPDIR, True)

#: Nodes of the multi-node test cluster: the head and two more.
CLUSTER_NODES = 3


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Start local Ray once (2 CPUs, no dashboard, on 127.0.0.1); tests that use Ray share it."""
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    yield
    if started and ray.is_initialized():
        from tidal.runners.ray.pool import shutdown_pool

        shutdown_pool()
        ray.shutdown()


def _cluster_processes(cluster: Any) -> list[int]:
    pids = []
    for node in [cluster.head_node, *cluster.worker_nodes]:
        if node is None:
            continue
        for infos in node.all_processes.values():
            pids.extend(info.process.pid for info in infos if info.process is not None)
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is gone
    except OSError:
        return False


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A Ray cluster of three nodes on 127.0.0.1 (head + 2), the driver connected to it.

    Node failures are detected within about a second (health checks every
    300 ms, three misses), so a test can remove a node mid-job.
    """
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from tidal.runners.ray.pool import shutdown_pool

    if ray.is_initialized():  # the shared local Ray: its tests have run (they come first)
        shutdown_pool()
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 300,
                "health_check_timeout_ms": 300,
                "health_check_failure_threshold": 3,
            },
        },
    )
    try:
        for _ in range(CLUSTER_NODES - 1):
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        pids = _cluster_processes(cluster)
        shutdown_pool()
        ray.shutdown()
        cluster.shutdown()
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in pids if _alive(p)]
        assert not left, f"the test cluster left processes behind: {left}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests on the multi-node cluster run last: the driver leaves the shared local Ray for it once."""
    on_cluster = [item for item in items if "ray_cluster" in getattr(item, "fixturenames", ())]
    if on_cluster:
        rest = [item for item in items if "ray_cluster" not in getattr(item, "fixturenames", ())]
        items[:] = rest + on_cluster


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
    """Stop the server a capability case may have started for itself (no process is left behind),
    and remove the session's Ray folder (Ray has been shut down by then)."""
    from tidal.testing.redis_server import stop_shared_redis_server

    stop_shared_redis_server()
    if _RAY_TMPDIR is not None:
        # Ray's processes may still be removing their files as they exit: try for a few seconds.
        deadline = time.monotonic() + 10
        while os.path.exists(_RAY_TMPDIR) and time.monotonic() < deadline:
            shutil.rmtree(_RAY_TMPDIR, ignore_errors=True)
            if os.path.exists(_RAY_TMPDIR):
                time.sleep(0.2)
