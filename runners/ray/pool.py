"""WorkerPool: generic stage-worker actors kept in the Ray session and reused across jobs.

Starting an actor starts a Python process (a second or more); loading a stage
into a running one takes milliseconds. So the Ray runner leases workers from
this pool, loads one stage of its job into each, unloads them when the job
has finished cleanly and gives them back. A job that fails, is cancelled or
loses a worker gives its workers back as *spent*: they are killed, never
reused, and the pool starts fresh ones when it needs them. Every worker of
the pool is removed when the driver exits (or :func:`shutdown_pool` is
called), and a pool from an earlier Ray session is forgotten.

Workers are placed by *location*: a node (the SPREAD placement hands a job's
workers out over the cluster's nodes in turn, so consecutive instances of a
stage run on different nodes), a placement-group bundle, or ``None`` (where
Ray puts it).
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any, Hashable

__all__ = ["WorkerPool", "get_pool", "shutdown_pool", "alive_nodes"]

#: Idle workers kept per pool; more are removed when given back.
MAX_IDLE = 64


class WorkerPool:
    """Idle generic workers by location, for one Ray session."""

    def __init__(self, session: str) -> None:
        self.session = session
        self._idle: dict[Hashable, list[Any]] = {}
        self._leased: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._remote_cls: Any = None
        self.created = 0

    def _cls(self) -> Any:
        if self._remote_cls is None:
            import ray

            from tidal.runners.ray.worker import StageWorker

            # Control calls (trigger, notify_complete, take_output) run on their own
            # thread, heard during a source loop.
            options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0, "concurrency_groups": {"control": 1}}
            self._remote_cls = ray.remote(**options)(StageWorker)
        return self._remote_cls

    def _create(self, location: Hashable) -> Any:
        options: dict[str, Any] = {}
        if isinstance(location, tuple) and location and location[0] == "node":
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # Hard: a worker stays on its node (soft affinity let Ray put it elsewhere when the node was
            # slow to start a process). A worker for a node that is gone fails its load, and the job
            # leases again on the nodes that remain.
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(location[1], soft=False)
        elif isinstance(location, tuple) and location and location[0] == "bundle":
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(location[1], placement_group_bundle_index=location[2])
        self.created += 1
        return self._cls().options(**options).remote()

    def lease(self, locations: list[Hashable], fresh: bool = False) -> list[Any]:
        """One worker per location: an idle one there (unless ``fresh``), else a new one."""
        workers = []
        with self._lock:
            for location in locations:
                idle = None if fresh else self._idle.get(location)
                worker = idle.pop() if idle else self._create(location)
                self._leased[id(worker)] = (worker, location)
                workers.append(worker)
        return workers

    def give_back(self, workers: list[Any], reusable: bool) -> None:
        """Workers a job is done with: back to the idle ones (unloaded, ``reusable``) or killed."""
        spent = []
        with self._lock:
            for worker in workers:
                entry = self._leased.pop(id(worker), None)
                location = entry[1] if entry is not None else None
                idle = self._idle.setdefault(location, [])
                if reusable and entry is not None and sum(map(len, self._idle.values())) < MAX_IDLE:
                    idle.append(worker)
                else:
                    spent.append(worker)
        _kill(spent)

    def forget(self, workers: list[Any]) -> None:
        """Workers that are gone (their node died): drop them without a call."""
        with self._lock:
            for worker in workers:
                self._leased.pop(id(worker), None)

    def idle(self) -> list[Any]:
        with self._lock:
            return [w for ws in self._idle.values() for w in ws]

    def shutdown(self) -> None:
        """Remove every worker of the pool, idle or leased."""
        with self._lock:
            workers = [w for ws in self._idle.values() for w in ws] + [w for w, _ in self._leased.values()]
            self._idle.clear()
            self._leased.clear()
        _kill(workers)


def _kill(workers: list[Any]) -> None:
    if not workers:
        return
    import ray

    for worker in workers:
        try:
            ray.kill(worker, no_restart=True)
        except Exception:  # already gone
            pass


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()
_registered = False


def _session_id() -> str:
    import ray

    context = ray.get_runtime_context()
    return f"{context.gcs_address}/{context.get_job_id()}"


def get_pool() -> WorkerPool:
    """The pool of the current Ray session (a new one after ``ray.init`` of another session)."""
    global _pool, _registered
    session = _session_id()
    with _pool_lock:
        if _pool is None or _pool.session != session:
            _pool = WorkerPool(session)  # an earlier session's workers died with it
        if not _registered:
            atexit.register(shutdown_pool)
            _registered = True
        return _pool


def shutdown_pool() -> None:
    """Remove every pooled worker of the current session (at exit, or when the runner shuts Ray down)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    import ray

    if ray.is_initialized():
        try:
            if _session_id() != pool.session:
                return
        except Exception:
            return
        pool.shutdown()


_nodes: tuple[float, list[str]] = (0.0, [])


def alive_nodes(refresh: bool = False, ttl: float = 5.0) -> list[str]:
    """The ids of the cluster's alive nodes that can run workers, in a stable order (cached for ``ttl`` s)."""
    global _nodes
    now = time.monotonic()
    if refresh or now - _nodes[0] > ttl or not _nodes[1]:
        import ray

        ids = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
        _nodes = (now, ids)
    return list(_nodes[1])
