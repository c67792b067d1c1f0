"""RayRunner: each stage of the plan as N Ray actors, streaming batches between them.

``Pipeline(runner="ray")`` starts a local Ray instance when none is running
(and shuts down only what it started); ``RayRunner(address=...)`` or the
``RAY_ADDRESS`` environment variable attaches to a cluster. Stages run
concurrently; keyed exchanges route each key to one instance by a stable
hash; side inputs are broadcast; Flatten fans in. An error in user code
fails the job with the step, the element and the remote traceback, and every
actor of the job is removed.
"""

from __future__ import annotations

import atexit
import copy
import os
import pickle
import queue
import re
import tempfile
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import attrs
import cloudpickle

from tidal.model.primitives import BoundedSource, Impulse, ParDo, Read
from tidal.model.pvalue import pickling_graph
from tidal.model.result import PipelineResult
from tidal.model.teststream import TestStream
from tidal.runners.core.checkpoint import CheckpointStore, CheckpointWarning, CompletedCheckpoint
from tidal.runners.core.errors import PipelineExecutionError
from tidal.runners.core.executor import edge_id_of, partial_edge_id
from tidal.runners.core.plan import ExecutionPlan, build_plan, is_stateful_pardo
from tidal.runners.ray.exchange import Edge
from tidal.runners.result import RunningResult
from tidal.runners.runner import Runner

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["RayRunner", "RayPipelineResult", "Recovery", "plan_edges"]


def plan_edges(plan: ExecutionPlan) -> list[Edge]:
    """Every exchange edge between stages, with how its elements are routed."""
    producer: dict[Any, Any] = {}
    for node in plan.graph.primitives:
        for pc in node.outputs.values():
            producer[pc] = node
    edges: dict[tuple[str, int], Edge] = {}
    for node in plan.graph.primitives:
        consumer_stage = plan.stage_of[node].id
        keyed_root = plan.stage_of[node].root is node and plan.stage_of[node].input_kind == "keyed"
        if node in plan.lifted:
            src = plan.stage_of[producer[node.inputs[0]]].id
            edges[(partial_edge_id(node), consumer_stage)] = Edge(partial_edge_id(node), src, consumer_stage, "keyed")
        else:
            for pc in node.inputs:
                src = plan.stage_of[producer[pc]].id
                if src != consumer_stage:
                    kind = "keyed" if keyed_root else "forward"
                    edges[(edge_id_of(pc), consumer_stage)] = Edge(edge_id_of(pc), src, consumer_stage, kind)
        for view in node.side_inputs:
            src = plan.stage_of[producer[view.pcoll]].id
            if src != consumer_stage:
                edges[(edge_id_of(view.pcoll), consumer_stage)] = Edge(edge_id_of(view.pcoll), src, consumer_stage, "broadcast")
    return list(edges.values())


def _unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside (possibly nested) Ray task errors."""
    import ray.exceptions

    seen = 0
    while isinstance(exc, ray.exceptions.RayTaskError) and seen < 20:
        cause = getattr(exc, "cause", None)
        if cause is None:
            break
        if not isinstance(cause, ray.exceptions.RayTaskError):
            remote_tb = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
            if isinstance(cause, PipelineExecutionError):
                cause.remote_traceback = remote_tb  # type: ignore[attr-defined]
                cause.add_note(f"remote traceback:\n{remote_tb}")
            return cause
        exc = cause
        seen += 1
    return exc


@attrs.frozen
class Recovery:
    """One restart after a worker was lost."""

    #: What failed, as the driver saw it.
    failure: str
    #: The checkpoint the job restarted from (None: from the beginning).
    checkpoint: int | None
    #: Seconds from noticing the failure until the new workers were running.
    seconds: float


class RayPipelineResult(RunningResult):
    """A job running on Ray actors; ``cancel`` stops it and removes its actors.

    With checkpoints, ``checkpoints`` lists the complete ones, ``recoveries``
    the restarts after lost workers, and :meth:`savepoint` takes a checkpoint
    on request.
    """

    def __init__(self, runner: "RayRunner") -> None:
        super().__init__()
        self._runner = runner
        self._actors: list[Any] = []
        self.checkpoints: list[int] = []
        self.recoveries: list[Recovery] = []
        self._savepoint_requests: queue.SimpleQueue[tuple[threading.Event, list[str]]] = queue.SimpleQueue()

    def _stop_workers(self) -> None:
        self._runner._kill(self._actors)

    def savepoint(self, timeout: float = 60.0) -> str:
        """Take a checkpoint now and keep it (retention never removes it); returns its location.

        Resume from it with ``RayRunner(checkpoint_dir=..., restore_from=location)``.
        """
        if self._runner._store_location is None:
            raise PipelineExecutionError("savepoint", "this job takes no checkpoints (give RayRunner a checkpoint_dir)")
        if self.state.is_terminal:
            raise PipelineExecutionError("savepoint", f"the job is {self.state.name}; a savepoint needs a running job")
        done = threading.Event()
        location: list[str] = []
        self._savepoint_requests.put((done, location))
        if not done.wait(timeout) or not location:
            raise TimeoutError(f"the savepoint was not complete after {timeout} s")
        return location[0]


class RayRunner(Runner):
    """Runs each stage as ``parallelism`` Ray actors (per-stage overrides by label).

    With ``checkpoint_dir`` (a folder, or an fsspec URL for a cluster) or
    ``checkpoint_interval`` the job takes aligned barrier checkpoints every
    ``checkpoint_interval`` seconds (default 1). When a worker is lost it
    restarts from the last complete checkpoint, up to ``max_restarts`` times,
    and the sources replay from the offsets recorded in it; transactional
    sinks (``WriteToText``) publish their output per complete checkpoint, so
    the published output is exactly once. A new run with the same
    ``checkpoint_dir`` resumes from its newest complete checkpoint (``resume``),
    or from the checkpoint or savepoint ``restore_from`` names.
    """

    name = "ray"
    execution_model = "native streaming (Ray actors, batches with in-band watermarks)"
    guarantee = (
        "exactly-once state after failures with checkpoints (aligned barriers); exactly-once output "
        "through transactional sinks, at-least-once through others; without checkpoints a lost worker fails the job"
    )
    fault_tolerance = (
        "aligned barrier snapshots of every worker's state and source offsets to a checkpoint store; "
        "a lost worker restarts the job from the last complete checkpoint; resume and savepoints"
    )
    supports_checkpoint_restore = True

    def __init__(
        self,
        address: str | None = None,
        parallelism: int = 2,
        stage_parallelism: dict[str, int] | None = None,
        max_in_flight: int = 4,
        bundle_size: int = 50_000,
        strict: bool = False,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: float | None = None,
        max_restarts: int = 3,
        resume: bool = True,
        restore_from: str | None = None,
        retain_checkpoints: int = 3,
    ) -> None:
        if parallelism < 1:
            raise ValueError(f"parallelism must be at least 1, got {parallelism}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if checkpoint_interval is not None and checkpoint_interval <= 0:
            raise ValueError(f"checkpoint_interval must be positive, got {checkpoint_interval}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be at least 0, got {max_restarts}")
        self.address = address
        self.parallelism = parallelism
        self.stage_parallelism = dict(stage_parallelism or {})
        self.max_in_flight = max_in_flight
        self.bundle_size = bundle_size
        self.strict = strict
        self.checkpoint_dir = os.fspath(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_interval = checkpoint_interval
        self.max_restarts = max_restarts
        self.resume = resume
        self.restore_from = restore_from
        self.retain_checkpoints = retain_checkpoints
        self._started_ray = False
        self._store_location: str | None = None

    def with_checkpoint_dir(self, directory: str | os.PathLike[str]) -> "RayRunner":
        """The same runner checkpointing to ``directory``; a rerun after a failure resumes from it."""
        clone = copy.copy(self)
        clone.checkpoint_dir = os.fspath(directory)
        return clone

    def job_finished(self, directory: str | os.PathLike[str]) -> bool:
        """Whether the checkpoints in ``directory`` end with the end of the input: resuming reads nothing."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointWarning)  # a resumed run reports damage itself
            latest = CheckpointStore(directory).latest() if os.path.isdir(directory) else None
        return latest is not None and latest.final

    @property
    def checkpointing(self) -> bool:
        return self.checkpoint_dir is not None or self.checkpoint_interval is not None or self.restore_from is not None

    # -- Ray lifecycle -----------------------------------------------------------
    def _ensure_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            # "local" starts a fresh instance even when /tmp/ray/ray_current_cluster
            # names another one (left by `ray start`, perhaps stopped long ago):
            # without an address, ray.init would try to join that cluster instead.
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 2, 2),
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
                configure_logging=False,
            )
            self._started_ray = True
            atexit.register(self.shutdown)

    def shutdown(self) -> None:
        """Stop the local Ray instance if this runner started it."""
        import ray

        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False

    def _kill(self, actors: list[Any]) -> None:
        import ray

        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass

    # -- planning ------------------------------------------------------------------
    def _parallelism_of(self, plan: ExecutionPlan, stage: Any) -> int:
        root = stage.root
        for label, n in self.stage_parallelism.items():
            if any(node.full_label == label or node.full_label.startswith(label + "/") for node in stage.nodes):
                return max(1, n)
        t = root.transform
        if isinstance(t, (TestStream, Impulse)):
            return 1
        if isinstance(t, Read) and not isinstance(t.source, BoundedSource):
            return 1
        if isinstance(t, ParDo) and not is_stateful_pardo(root) and not root.inputs:
            return 1
        return self.parallelism

    def run_pipeline(self, pipeline: "Pipeline") -> PipelineResult:
        store = self._store()  # a folder that cannot be used is refused before Ray starts
        if store is not None:
            store.check_writable()
        self._ensure_ray()
        result = RayPipelineResult(self)
        graph = pipeline.graph()
        unbounded = any(
            isinstance(n.transform, Read) and not n.transform.source.is_bounded for n in graph.primitives
        )
        if unbounded:
            result.start_thread(lambda: self._execute(pipeline, result, store), "tidal-ray-driver")
            return result
        result.execute(lambda: self._execute(pipeline, result, store))
        if result._error is not None:
            raise result._error
        return result

    def _store(self) -> CheckpointStore | None:
        if not self.checkpointing:
            self._store_location = None
            return None
        location = self.checkpoint_dir
        if location is None and self.restore_from is not None:
            location = os.path.dirname(os.path.normpath(self.restore_from))
        if location is None:
            location = tempfile.mkdtemp(prefix="tidal-checkpoints-")
        self._store_location = location
        return CheckpointStore(location, retain=self.retain_checkpoints)

    def _first_checkpoint(self, store: CheckpointStore | None) -> CompletedCheckpoint | None:
        if store is None:
            return None
        if self.restore_from is not None:
            match = re.search(r"chk-(\d+)/?$", os.fspath(self.restore_from))
            if match is None:
                raise PipelineExecutionError(
                    "checkpoint", f"restore_from={self.restore_from!r} is not a checkpoint folder (chk-<number>)"
                )
            source = CheckpointStore(os.path.dirname(os.path.normpath(self.restore_from)))
            return source.get(int(match.group(1)))
        return store.latest() if self.resume else None

    def _execute(self, pipeline: "Pipeline", result: RayPipelineResult, store: CheckpointStore | None) -> None:
        plan = build_plan(pipeline.graph())
        restore = self._first_checkpoint(store)
        withdraw = _withdraw_point(store, restore, self.resume or self.restore_from is not None)
        failures = 0
        recovering: tuple[str, float] | None = None
        while True:
            job = _Job(self, plan, result, store, restore, recovering, withdraw)
            try:
                job.run()
                return
            except Exception as exc:
                if result.cancelled:
                    return
                if store is None or not _is_worker_loss(exc) or failures >= self.max_restarts:
                    error = _unwrap(exc)
                    raise error from error.__cause__  # the user's exception, not Ray's wrapper
                failures += 1
                recovering = (_describe_loss(exc), time.perf_counter())
                restore = store.latest()
                withdraw = _withdraw_point(store, restore, True)
            finally:
                job.kill()

    def _pickle_plan(self, plan: ExecutionPlan) -> bytes:
        """The plan for the workers, without bounded sources' data (each worker gets its split)."""
        swapped = []
        parents = []
        for node in plan.graph.primitives:
            # Composites (and their arguments, such as Create's list) stay here.
            parents.append((node, node.parent))
            node.parent = None
            t = node.transform
            if isinstance(t, Read) and isinstance(t.source, BoundedSource):
                swapped.append((t, t.source))
                t.source = _EmptySource()
        light = attrs.evolve(plan, graph=attrs.evolve(plan.graph, root=None))  # type: ignore[arg-type]
        try:
            with pickling_graph():
                return cloudpickle.dumps(light, protocol=5)
        finally:
            for t, source in swapped:
                t.source = source
            for node, parent in parents:
                node.parent = parent

    def _source_splits(self, stage: Any, n: int) -> list[dict[str, Any]]:
        splits: list[dict[str, Any]] = [{} for _ in range(n)]
        for node in stage.nodes:
            t = node.transform
            if isinstance(t, Read) and isinstance(t.source, BoundedSource):
                parts = t.source.split(n)
                for i in range(n):
                    splits[i][node.full_label] = parts[i] if i < len(parts) else _EmptySource()
        return splits

    def __repr__(self) -> str:
        return f"RayRunner(parallelism={self.parallelism}, address={self.address!r})"


def _dumps(obj: Any) -> bytes:
    """Pickle with the C pickler when the data allows it (most source data), else cloudpickle."""
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:  # lambdas, local classes: cloudpickle handles them
        return cloudpickle.dumps(obj, protocol=5)


class _EmptySource(BoundedSource):
    """The split of a worker that got no part of a small source."""

    def read(self) -> list[Any]:
        return []


def _withdraw_point(store: CheckpointStore | None, restore: CompletedCheckpoint | None, resuming: bool) -> int | None:
    """After which checkpoint the sinks withdraw published output when a run starts (None: nothing to withdraw).

    Restoring checkpoint ``n`` withdraws what later checkpoints published (a damaged newer one was
    skipped, or an older savepoint chosen). Resuming a store that holds completed checkpoints of
    which none can be restored starts from the beginning, so everything they published is withdrawn
    (0: the numbers start at 1); the replay publishes it again. Checkpoints that never completed
    published nothing, so a store holding only those withdraws nothing.
    """
    if restore is not None:
        return restore.id
    if store is not None and resuming and store.completed_ids():
        return 0
    return None


_LOSS_ERRORS = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "ObjectLostError", "OwnerDiedError", "NodeDiedError")


def _is_worker_loss(exc: BaseException) -> bool:
    """Whether ``exc`` says a worker (actor, process, node) was lost, not that user code failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    lost = False
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PipelineExecutionError):
            return False
        if any(cls.__name__ in _LOSS_ERRORS for cls in type(current).__mro__):
            lost = True
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return lost


def _describe_loss(exc: BaseException) -> str:
    """The innermost lost-worker error, as one plain line."""
    seen: set[int] = set()
    current: BaseException | None = exc
    found = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(cls.__name__ in _LOSS_ERRORS for cls in type(current).__mro__):
            found = current
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(found)).splitlines() if ln.strip()]
    name = type(found).__name__.replace("RayTaskError(", "").rstrip(")")
    return f"{name}: {lines[0] if lines else 'a worker was lost'}"[:300]


class _Job:
    """One attempt at running a plan on a fresh set of actors (from a checkpoint or the start)."""

    def __init__(
        self,
        runner: RayRunner,
        plan: ExecutionPlan,
        result: RayPipelineResult,
        store: CheckpointStore | None,
        restore: CompletedCheckpoint | None,
        recovering: tuple[str, float] | None = None,
        withdraw_after: int | None = None,
    ) -> None:
        self.runner = runner
        self.plan = plan
        self.result = result
        self.store = store
        self.restore = restore
        self.recovering = recovering
        self.withdraw_after = withdraw_after
        self.actors: list[Any] = []
        self.workers: dict[int, list[Any]] = {}
        self.counts = {s.id: runner._parallelism_of(plan, s) for s in plan.stages}
        self.interval = runner.checkpoint_interval or 1.0
        # Numbers go on after the restored checkpoint (which may come from another store).
        self.next_id = max(store.next_id(), restore.id + 1 if restore is not None else 0) if store is not None else 0
        self.inflight: tuple[int, bool, Any] | None = None
        self.last_done = time.monotonic()
        self.finished_sources: set[int] = set()
        self.calls: list[Any] = []
        self.pings: dict[int, Any] = {}
        self.source_ids: set[int] = set()
        self._last_ping = 0.0

    def kill(self) -> None:
        self.runner._kill(self.actors)

    # -- set-up ----------------------------------------------------------------------
    def _meta(self, final: bool = False) -> dict[str, Any]:
        return {"parallelism": {str(k): v for k, v in self.counts.items()}, "plan": self.plan.describe(), "final": final}

    def _check_restore(self) -> None:
        cp = self.restore
        if cp is None:
            return
        meta = cp.meta
        if meta.get("plan") != self.plan.describe():
            raise PipelineExecutionError(
                "checkpoint",
                f"checkpoint {cp.id} in {cp.location} was written by a different pipeline:\\n{meta.get('plan')}\\n"
                f"this pipeline's plan is:\\n{self.plan.describe()}",
            )
        theirs = {int(k): v for k, v in meta.get("parallelism", {}).items()}
        if theirs != self.counts:
            raise PipelineExecutionError(
                "checkpoint",
                f"checkpoint {cp.id} was taken with parallelism {theirs} per stage, this run has {self.counts}; "
                "restore it with the same parallelism",
            )

    def _start(self) -> None:
        import ray

        from tidal.runners.ray.worker import StageWorker, part_name

        runner, plan = self.runner, self.plan
        self._check_restore()
        edges = plan_edges(plan)
        manual_clock = any(isinstance(n.transform, TestStream) for n in plan.graph.primitives)
        plan_bytes = runner._pickle_plan(plan)
        senders = {e.edge_id: self.counts[e.producer_stage] for e in edges}
        # Control calls (trigger, notify_complete) run on their own thread, heard during a source loop.
        options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0, "concurrency_groups": {"control": 1}}
        remote_cls = ray.remote(**options)(StageWorker)
        location = self.store.location if self.store is not None else None
        for stage in plan.stages:
            n = self.counts[stage.id]
            # Pickled here, once: Ray's own serializer is several times slower on
            # large lists of small tuples than pickle protocol 5 on a bytes blob.
            splits = [_dumps(s) for s in runner._source_splits(stage, n)]
            parts = [self.restore.read(part_name(stage.id, i)) if self.restore is not None else None for i in range(n)]
            self.workers[stage.id] = [
                remote_cls.remote(
                    plan_bytes, stage.id, i, senders, splits[i], runner.strict, runner.bundle_size, manual_clock,
                    runner.max_in_flight, location, parts[i], self.withdraw_after, n,
                )
                for i in range(n)
            ]
            self.actors.extend(self.workers[stage.id])
            self.result._actors.extend(self.workers[stage.id])
        for stage in plan.stages:
            routes: dict[str, list[tuple[str, list[Any]]]] = {}
            for e in edges:
                if e.producer_stage == stage.id:
                    routes.setdefault(e.edge_id, []).append((e.kind, self.workers[e.consumer_stage]))
            ray.get([w.connect.remote(routes) for w in self.workers[stage.id]])
        ray.get([w.open.remote() for w in self.actors])
        cid = self.restore.id if self.restore is not None else None
        self.result.restored_from = cid
        if self.recovering is not None:
            failure, noticed = self.recovering
            self.result.recoveries.append(Recovery(failure, cid, time.perf_counter() - noticed))

    # -- running ---------------------------------------------------------------------
    def run(self) -> None:
        import ray

        self._start()
        plan, result = self.plan, self.result
        # The first checkpoint comes one interval after the sources start (not at once, at offset 0).
        self.last_done = time.monotonic()
        sources = [w for s in plan.stages if s.input_kind == "source" for w in self.workers[s.id]]
        self.source_ids = {id(w) for w in sources}
        running = {w.run_sources.remote(): w for w in sources}
        while running and not result.cancelled:
            ready, _ = ray.wait(list(running), num_returns=len(running), timeout=0.05)
            for ref in ready:
                worker = running.pop(ref)
                ray.get(ref)
                self.finished_sources.add(id(worker))
                self.calls.append(worker.poll.remote())
            if self.store is not None:
                self._tick(sources)
        if result.cancelled:
            return
        for stage in plan.stages:  # topological: each drain waits for what it sent
            ray.get([w.drain.remote() for w in self.workers[stage.id]])
        if self.store is not None:
            self._final_checkpoint(sources)
        statuses = ray.get([w.status.remote() for w in self.actors])
        stalled = [s for s in statuses if not s["done"]]
        if stalled and not result.cancelled:
            stage = plan.stages[stalled[0]["stage"]]
            raise PipelineExecutionError(
                stage.root.full_label, "the pipeline stalled: the sources are done but this stage's watermark is not"
            )
        for containers in ray.get([w.finish.remote() for w in self.actors]):
            result._metrics.extend(containers)

    # -- checkpoints -----------------------------------------------------------------
    def _tick(self, sources: list[Any]) -> None:
        """Trigger, complete and acknowledge checkpoints; notice lost workers."""
        import ray

        now = time.monotonic()
        self._check_calls()
        if self.inflight is None:
            request = None
            if not self.result._savepoint_requests.empty():
                request = self.result._savepoint_requests.get()
            if request is not None or now - self.last_done >= self.interval:
                self._trigger(sources, savepoint=request is not None, request=request)
        if self.inflight is not None:
            self._try_complete()
        # A lost worker that nothing sends to is noticed by pinging it.
        if now - self._last_ping >= max(self.interval, 0.5):
            self._last_ping = now
            for w in self.actors:
                key = id(w)
                ref = self.pings.get(key)
                if ref is not None:
                    done, _ = ray.wait([ref], timeout=0)
                    if not done:
                        continue
                    ray.get(ref)
                if key in self.finished_sources or key not in self.source_ids:
                    self.pings[key] = w.poll.remote()

    def _check_calls(self) -> None:
        import ray

        if not self.calls:
            return
        done, self.calls = ray.wait(self.calls, num_returns=len(self.calls), timeout=0)
        ray.get(done)  # surfaces errors of control calls

    def _trigger(self, sources: list[Any], savepoint: bool = False, request: Any = None) -> None:
        cid = self.next_id
        self.next_id += 1
        for w in sources:
            if id(w) in self.finished_sources:
                self.calls.append(w.take_checkpoint.remote(cid))
            else:
                self.calls.append(w.trigger.remote(cid))
        self.inflight = (cid, savepoint, request)

    def _try_complete(self, final: bool = False) -> bool:
        from tidal.runners.ray.worker import part_name

        assert self.inflight is not None and self.store is not None
        cid, savepoint, request = self.inflight
        expected = {part_name(s.id, i) for s in self.plan.stages for i in range(self.counts[s.id])}
        if not expected <= self.store.parts(cid):
            return False
        self.store.complete(cid, sorted(expected), self._meta(final), savepoint=savepoint)
        self.calls.extend(w.notify_complete.remote(cid) for w in self.actors)
        self.result.checkpoints.append(cid)
        self.inflight = None
        self.last_done = time.monotonic()
        if request is not None:
            done, location = request
            location.append(f"{self.store.location.rstrip('/')}/chk-{cid:06d}")
            done.set()
        return True

    def _final_checkpoint(self, sources: list[Any], timeout: float = 120.0) -> None:
        """After the end of input: one more checkpoint, whose completion publishes the last output."""
        import ray

        deadline = time.monotonic() + timeout
        while self.inflight is not None and not self._try_complete():
            self._wait_step(deadline)
        self._trigger(sources)
        while not self._try_complete(final=True):
            self._wait_step(deadline)
        ray.get(self.calls)
        self.calls = []

    def _wait_step(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            assert self.inflight is not None
            cid = self.inflight[0]
            written = sorted(self.store.parts(cid)) if self.store is not None else []
            raise PipelineExecutionError(
                "checkpoint", f"checkpoint {cid} did not complete in time (parts written: {written or 'none'})"
            )
        self._check_calls()
        time.sleep(0.01)
