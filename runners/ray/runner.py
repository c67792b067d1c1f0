"""RayRunner: a job's stages on Ray actors, one instance of every stage per worker, streaming batches.

``Pipeline(runner="ray")`` starts a local Ray instance when none is running
(and shuts down only what it started); ``RayRunner(address=...)`` or the
``RAY_ADDRESS`` environment variable attaches to a cluster. Stages run
concurrently on generic workers leased from a pool kept in the Ray session
(``pool.py``: a job loads its stages into warm workers instead of starting
processes), spread over the cluster's nodes. A job at parallelism ``p`` uses
``p`` workers (more only when a stage has a larger parallelism), and worker
``i`` hosts instance ``i`` of every stage (Flink's slot sharing): an edge
between instances of one worker is an in-process hand-off, and only edges
between workers are Ray calls (``worker.py``). Bounded sources are read in
parallel, split by their ``split`` method; unbounded sources with partitions
read one partition per worker. Keyed exchanges route each key to the owner of
its key group; side inputs are broadcast; Flatten fans in. What user code
prints reaches the driver's standard output and error. An error in user code
fails the job with the step, the element and the remote traceback, and the
job's workers are removed (a failed worker is never reused).

Keeping Ray on the loopback interface: on Linux Ray replaces ``127.0.0.1`` by
the machine's outward address wherever it resolves a node's address (even
``ray.init(_node_ip_address="127.0.0.1")`` and ``ray start
--node-ip-address=127.0.0.1``). Setting ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
in the environment before Ray is imported makes Ray treat the machine as it
treats a laptop: every node, the GCS and the driver bind to ``127.0.0.1``.
A single-machine cluster of several nodes can then be started with
``ray.cluster_utils.Cluster(head_node_args={"node_ip_address": "127.0.0.1"})``
and ``add_node(node_ip_address="127.0.0.1")`` (``ray start --address`` refuses
to add nodes in that mode).
"""

from __future__ import annotations

import atexit
import copy
import os
import queue
import re
import socket
import sys
import tempfile
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Hashable

import attrs
import cloudpickle

from tidal.model.options import StateOptions
from tidal.model.primitives import BoundedSource, Impulse, ParDo, Read, UnboundedSource
from tidal.model.pvalue import pickling_graph
from tidal.model.result import PipelineResult
from tidal.model.teststream import TestStream
from tidal.runners.core.checkpoint import CheckpointStore, CheckpointWarning, CompletedCheckpoint
from tidal.runners.core.errors import PipelineExecutionError
from tidal.runners.core.executor import LocalExecutor, edge_id_of, partial_edge_id
from tidal.runners.core.keygroups import DEFAULT_MAX_PARALLELISM, check_max_parallelism, key_group_of, owner_of
from tidal.runners.core.plan import ExecutionPlan, build_plan, is_stateful_pardo
from tidal.runners.core.queryable import JobFinishedError, StateQueryError, check_query
from tidal.runners.core.sources import AssignedSplits
from tidal.runners.core.statebackend import StateBackendSpec
from tidal.runners.ray.alignment import DEFAULT_ALIGNMENT_BUFFER_BYTES
from tidal.runners.ray.exchange import Edge
from tidal.runners.result import RunningResult
from tidal.runners.runner import Runner

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["RayRunner", "RayPipelineResult", "Recovery", "AlignmentStats", "plan_edges"]


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


@attrs.frozen
class AlignmentStats:
    """What the job's workers held back while aligning checkpoint barriers."""

    #: The most bytes one worker held in memory at once (never more than ``alignment_buffer_bytes``).
    peak_held_bytes: int = 0
    #: Bytes written to spill files, over all workers.
    spilled_bytes: int = 0
    #: Checkpoints aligned, over all workers with inputs.
    alignments: int = 0


class RayPipelineResult(RunningResult):
    """A job running on Ray actors; ``cancel`` stops it and removes its workers.

    ``parallelism`` says how many instances each stage ran, ``transfers`` how
    many calls went between workers and how many stayed in process.
    With checkpoints, ``checkpoints`` lists the complete ones, ``recoveries``
    the restarts after lost workers, ``alignment`` what was held back while
    barriers aligned, and :meth:`savepoint` takes a checkpoint on request.
    """

    def __init__(self, runner: "RayRunner") -> None:
        super().__init__()
        self._runner = runner
        #: The workers of the current attempt.
        self._actors: list[Any] = []
        self.checkpoints: list[int] = []
        self.recoveries: list[Recovery] = []
        self.alignment = AlignmentStats()
        #: How many workers each stage ran on in the last attempt (stage id -> count).
        self.parallelism: dict[int, int] = {}
        #: How the last attempt's calls between stage instances travelled: ``remote_calls`` (Ray calls
        #: between workers: bundles, watermarks, barriers) and ``local_calls`` (in-process hand-offs).
        self.transfers: dict[str, int] = {}
        self._savepoint_requests: queue.SimpleQueue[tuple[threading.Event, list[str]]] = queue.SimpleQueue()
        self._stop_lock = threading.Lock()
        #: The attempt whose workers are loaded (None while starting or restarting): it answers state queries.
        self._job: _Job | None = None

    def _query_state(self, step: str, state_name: str, key: Any, window: Any, timeout: float) -> Any:
        """Ask the worker that owns ``key`` (its key group) in the stage of ``step``."""
        import ray
        import ray.exceptions

        deadline = time.monotonic() + timeout
        job = self._job
        while job is None and not self.state.is_terminal and time.monotonic() < deadline:
            time.sleep(0.01)  # the workers are loading (the job starts, or restarts after a failure)
            job = self._job
        if job is None:
            if self.state.is_terminal:
                raise JobFinishedError("the job's workers are gone")
            raise StateQueryError(
                f"the job had no running workers for {timeout:g} s (it is starting, or restarting after a failure)"
            )
        plan = job.plan
        _spec, window = check_query(plan, step, state_name, window)
        node = next(n for n in plan.graph.primitives if n.full_label == step)
        stage_id = plan.stage_of[node].id
        workers = job.workers[stage_id]
        m = self._runner.max_parallelism
        owner = workers[owner_of(key_group_of(key, m), len(workers), m)]
        ref = owner.query_state.remote(stage_id, step, state_name, key, window)
        try:
            return ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
        except ray.exceptions.GetTimeoutError:
            raise StateQueryError(f"the state query of step {step!r} got no answer in {timeout:g} s") from None
        except Exception as exc:
            error = _unwrap(exc)
            if isinstance(error, StateQueryError):
                raise error from None
            if self.state.is_terminal or self._job is not job:
                raise JobFinishedError("the job's workers are gone") from None
            raise StateQueryError(f"the worker of step {step!r} could not answer the state query: {error}") from error

    def _stop_workers(self) -> None:
        from tidal.runners.ray.pool import get_pool

        with self._stop_lock:
            actors, self._actors = list(self._actors), []
        get_pool().give_back(actors, reusable=False)

    def savepoint(self, timeout: float = 60.0) -> str:
        """Take a checkpoint now and keep it (retention never removes it); returns its location.

        Resume from it with ``RayRunner(checkpoint_dir=..., restore_from=location)``, at any
        parallelism (``max_parallelism`` must stay the same).
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
    """Runs each stage as ``parallelism`` instances (per-stage overrides by label) on shared Ray workers.

    A job uses as many workers as its largest stage has instances; worker
    ``i`` hosts instance ``i`` of every stage, and instances in one worker
    hand bundles to each other in process. Between workers, at most
    ``max_in_flight`` calls per destination are unprocessed at once
    (backpressure). Workers come from a pool of generic stage workers kept in the Ray session
    and reused across jobs (``reuse_workers=False`` starts and removes a job's
    own). ``placement="spread"`` (the default) hands a job's workers out over
    the cluster's nodes in turn; ``"any"`` leaves it to Ray; a Ray
    ``PlacementGroup`` puts them in its bundles in turn.

    Keyed state is partitioned into ``max_parallelism`` key groups (fixed for
    a job's lifetime; no keyed stage can have more instances). With
    ``checkpoint_dir`` (a folder every node reaches, or an fsspec URL on a
    cluster) or ``checkpoint_interval`` the job takes aligned barrier
    checkpoints every ``checkpoint_interval`` seconds (default 1). When a
    worker is lost (a process, or a whole node) it restarts from the last
    complete checkpoint, up to ``max_restarts`` times, on the workers that
    remain, and the sources replay from the offsets recorded in it;
    transactional sinks (``WriteToText``) publish their output per complete
    checkpoint, so the published output is exactly once. A new run with the
    same ``checkpoint_dir`` resumes from its newest complete checkpoint
    (``resume``), or from the checkpoint or savepoint ``restore_from`` names,
    at this runner's parallelism whatever the checkpoint's was. While a worker
    aligns barriers it holds at most ``alignment_buffer_bytes`` in memory and
    spills the rest to disk.
    """

    name = "ray"
    execution_model = "native streaming (Ray actors, batches with in-band watermarks)"
    guarantee = (
        "exactly-once state after failures with checkpoints (aligned barriers); exactly-once output "
        "through transactional sinks, at-least-once through others; without checkpoints a lost worker fails the job"
    )
    fault_tolerance = (
        "aligned barrier snapshots of every worker's state and source offsets to a checkpoint store; "
        "a lost worker or node restarts the job from the last complete checkpoint; resume, savepoints, "
        "restore at another parallelism (key groups)"
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
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        placement: Any = "spread",
        reuse_workers: bool = True,
        alignment_buffer_bytes: int = DEFAULT_ALIGNMENT_BUFFER_BYTES,
    ) -> None:
        if parallelism < 1:
            raise ValueError(f"parallelism must be at least 1, got {parallelism}")
        check_max_parallelism(parallelism, max_parallelism)
        for label, n in (stage_parallelism or {}).items():
            check_max_parallelism(n, max_parallelism, f"the parallelism of {label!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if checkpoint_interval is not None and checkpoint_interval <= 0:
            raise ValueError(f"checkpoint_interval must be positive, got {checkpoint_interval}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be at least 0, got {max_restarts}")
        if alignment_buffer_bytes < 0:
            raise ValueError(f"alignment_buffer_bytes must be at least 0, got {alignment_buffer_bytes}")
        if isinstance(placement, str) and placement not in ("spread", "any"):
            raise ValueError(f"placement must be 'spread', 'any' or a Ray PlacementGroup, got {placement!r}")
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
        self.max_parallelism = max_parallelism
        self.placement = placement
        self.reuse_workers = reuse_workers
        self.alignment_buffer_bytes = alignment_buffer_bytes
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
            # A cluster given by address: used with whatever authentication it requires.
            try:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError) as exc:
                raise PipelineExecutionError("ray", f"cannot connect to the Ray cluster at {address}: {exc}") from exc
            return
        # "local" starts a fresh instance even when /tmp/ray/ray_current_cluster
        # names another one (left by `ray start`, perhaps stopped long ago):
        # without an address, ray.init would try to join that cluster instead.
        recorded = _recorded_cluster()
        if recorded is not None:
            where, record = recorded
            if _reachable(where):
                why = "is not used without an address (give address= or RAY_ADDRESS to run on it)"
            else:
                why = "is not running"
            print(f"tidal: the Ray cluster recorded at {where} (in {record}) {why}; starting a local Ray instead", file=sys.stderr)
        cpus = max(os.cpu_count() or 2, 2)
        with _quiet_local_start():
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
                configure_logging=False,
            )
        print(f"tidal: started a local Ray ({cpus} CPUs)", file=sys.stderr)
        self._started_ray = True
        atexit.register(self.shutdown)

    def shutdown(self) -> None:
        """Remove the pooled workers; stop the local Ray instance if this runner started it."""
        import ray

        from tidal.runners.ray.pool import shutdown_pool

        if self._started_ray and ray.is_initialized():
            shutdown_pool()
            ray.shutdown()
            self._started_ray = False

    # -- planning ------------------------------------------------------------------
    def _parallelism_of(self, plan: ExecutionPlan, stage: Any, pieces: dict[str, list[Any]]) -> int:
        root = stage.root
        wanted = self.parallelism
        for label, n in self.stage_parallelism.items():
            if any(node.full_label == label or node.full_label.startswith(label + "/") for node in stage.nodes):
                wanted = max(1, n)
                break
        t = root.transform
        if isinstance(t, (TestStream, Impulse)):
            return 1
        if isinstance(t, Read):
            # A source is read by at most one worker per split (or partition).
            return max(1, min(wanted, len(pieces.get(root.full_label, [None]))))
        if isinstance(t, ParDo) and not is_stateful_pardo(root) and not root.inputs:
            return 1
        return wanted

    def _source_pieces(self, plan: ExecutionPlan) -> dict[str, list[Any]]:
        """Each source's splits (bounded) or partitions (unbounded), numbered in list order, once per run."""
        pieces: dict[str, list[Any]] = {}
        for stage in plan.stages:
            node = stage.root
            t = node.transform
            if isinstance(t, Read) and isinstance(t.source, BoundedSource):
                pieces[node.full_label] = list(t.source.split(self.max_parallelism)) or [_EmptySource()]
            elif isinstance(t, Read) and isinstance(t.source, UnboundedSource):
                pieces[node.full_label] = list(t.source.split(self.max_parallelism)) or [t.source]
        return pieces

    def run_pipeline(self, pipeline: "Pipeline") -> PipelineResult:
        key = pipeline.options.view_as(StateOptions).checkpoint_key
        store = self._store(key)  # a folder that cannot be used is refused before Ray starts
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

    def _store(self, key: str | None = None) -> CheckpointStore | None:
        if not self.checkpointing:
            self._store_location = None
            return None
        location = self.checkpoint_dir
        if location is None and self.restore_from is not None:
            location = os.path.dirname(os.path.normpath(self.restore_from))
        if location is None:
            location = tempfile.mkdtemp(prefix="tidal-checkpoints-")
        self._store_location = location
        return CheckpointStore(location, retain=self.retain_checkpoints, key=key)

    def _first_checkpoint(self, store: CheckpointStore | None) -> CompletedCheckpoint | None:
        if store is None:
            return None
        if self.restore_from is not None:
            match = re.search(r"chk-(\d+)/?$", os.fspath(self.restore_from))
            if match is None:
                raise PipelineExecutionError(
                    "checkpoint", f"restore_from={self.restore_from!r} is not a checkpoint folder (chk-<number>)"
                )
            source = CheckpointStore(os.path.dirname(os.path.normpath(self.restore_from)), key=store.key)
            return source.get(int(match.group(1)))
        return store.latest() if self.resume else None

    def _execute(self, pipeline: "Pipeline", result: RayPipelineResult, store: CheckpointStore | None) -> None:
        from tidal.runners.ray.pool import alive_nodes

        plan = build_plan(pipeline.graph(), state_backend=StateBackendSpec.from_options(pipeline.options))
        pieces = self._source_pieces(plan)
        restore = self._first_checkpoint(store)
        withdraw = _withdraw_point(store, restore, self.resume or self.restore_from is not None)
        failures = 0
        recovering: tuple[str, float] | None = None
        while True:
            job = _Job(self, plan, pieces, result, store, restore, recovering, withdraw)
            ok = False
            try:
                job.run()
                ok = not result.cancelled
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
                alive_nodes(refresh=True)  # a lost node is not chosen again
            finally:
                job.release(ok)

    def _pickle_plan(self, plan: ExecutionPlan) -> bytes:
        """The plan for the workers, without bounded sources' data (each worker gets its splits)."""
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

    def _locations(self, count: int) -> list[Hashable]:
        """Where each of a job's ``count`` workers goes, in order (see ``pool.py``)."""
        from tidal.runners.ray.pool import alive_nodes

        placement = self.placement
        if isinstance(placement, str):
            nodes = alive_nodes() if placement == "spread" else []
            if len(nodes) <= 1:
                return [None] * count
            return [("node", nodes[k % len(nodes)]) for k in range(count)]
        bundles = max(1, int(getattr(placement, "bundle_count", 1)))
        return [("bundle", placement, k % bundles) for k in range(count)]

    def __repr__(self) -> str:
        return f"RayRunner(parallelism={self.parallelism}, address={self.address!r})"


def _recorded_cluster() -> tuple[str, str] | None:
    """(address, record file) of the cluster ``ray start`` recorded on this machine, if any."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # another Ray version: let ray.init find it
        return None
    record = get_ray_address_file(None)
    try:
        with open(record, encoding="utf-8") as f:
            address = f.read().strip()
    except OSError:
        return None
    return (address, record) if address else None


def _reachable(address: str, timeout: float = 1.0) -> bool:
    """Whether something listens at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class _quiet_local_start:
    """Start a local Ray without its start-up notices.

    Ray turns token authentication on for a new local cluster (unless
    ``RAY_AUTH_MODE`` says otherwise) and logs a notice saying so; the
    authentication stays, the notice is not shown.
    """

    LOGGERS = ("ray._private.authentication.authentication_token_setup",)

    def __enter__(self) -> None:
        import logging

        self._levels = [(logging.getLogger(name), logging.getLogger(name).level) for name in self.LOGGERS]
        for logger, _ in self._levels:
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        for logger, level in self._levels:
            logger.setLevel(level)


def _dumps(obj: Any) -> bytes:
    """Pickle source splits with cloudpickle: classes of the driver's ``__main__`` (or of modules the
    workers cannot import) travel by value, and plain data as fast as with the C pickler."""
    return cloudpickle.dumps(obj, protocol=5)


class _EmptySource(BoundedSource):
    """The split of a source that has none."""

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


def _print_output(printed: list[tuple[bool, str]]) -> None:
    """What a worker's user code printed, on the driver's standard output or error."""
    for is_err, text in printed:
        stream = sys.stderr if is_err else sys.stdout
        stream.write(text)
    if printed:
        sys.stdout.flush()
        sys.stderr.flush()


class _Job:
    """One attempt at running a plan on leased workers (from a checkpoint or the start)."""

    def __init__(
        self,
        runner: RayRunner,
        plan: ExecutionPlan,
        pieces: dict[str, list[Any]],
        result: RayPipelineResult,
        store: CheckpointStore | None,
        restore: CompletedCheckpoint | None,
        recovering: tuple[str, float] | None = None,
        withdraw_after: int | None = None,
    ) -> None:
        self.runner = runner
        self.plan = plan
        self.pieces = pieces
        self.result = result
        self.store = store
        self.restore = restore
        self.recovering = recovering
        self.withdraw_after = withdraw_after
        self.actors: list[Any] = []
        self.workers: dict[int, list[Any]] = {}
        self.counts = {s.id: runner._parallelism_of(plan, s, pieces) for s in plan.stages}
        #: Slot sharing: instance i of every stage runs on the job's worker i (its slot).
        self.slot_of = {(s.id, i): i for s in plan.stages for i in range(self.counts[s.id])}
        self.interval = runner.checkpoint_interval or 1.0
        # Numbers go on after the restored checkpoint (which may come from another store).
        self.next_id = max(store.next_id(), restore.id + 1 if restore is not None else 0) if store is not None else 0
        self.inflight: tuple[int, bool, Any] | None = None
        self.last_done = time.monotonic()
        self.calls: list[Any] = []
        #: The first step's answer of a worker that took it as it loaded (worker id -> status).
        self._statuses: dict[int, dict[str, Any]] = {}
        self._last_output = time.monotonic()
        self._output_calls: list[Any] = []
        self._unloaded = False

    def release(self, ok: bool) -> None:
        """Unload the workers and give them back to the pool (a failed attempt's are removed)."""
        from tidal.runners.ray.pool import get_pool

        with self.result._stop_lock:
            if self.result._actors is self.actors:
                self.result._actors = []
        if self.result._job is self:
            self.result._job = None
        if not self.actors:
            return
        pool = get_pool()
        if ok and self.runner.reuse_workers:
            for w in self.actors:
                w.unload.remote()  # queued before any later job's load on the same worker
            pool.give_back(self.actors, reusable=True)
        else:
            if not ok:
                self._collect_output(timeout=1.0)
            pool.give_back(self.actors, reusable=False)
        self.actors = []

    # -- set-up ----------------------------------------------------------------------
    def _meta(self, final: bool = False) -> dict[str, Any]:
        return {
            "parallelism": {str(k): v for k, v in self.counts.items()},
            "max_parallelism": self.runner.max_parallelism,
            "plan": self.plan.describe(),
            "final": final,
        }

    def _old_counts(self) -> dict[int, int]:
        """The parallelism per stage of the checkpoint being restored (checked against this plan)."""
        cp = self.restore
        assert cp is not None
        meta = cp.meta
        if meta.get("plan") != self.plan.describe():
            raise PipelineExecutionError(
                "checkpoint",
                f"checkpoint {cp.id} in {cp.location} was written by a different pipeline:\\n{meta.get('plan')}\\n"
                f"this pipeline's plan is:\\n{self.plan.describe()}",
            )
        theirs = int(meta.get("max_parallelism", DEFAULT_MAX_PARALLELISM))
        if theirs != self.runner.max_parallelism:
            raise PipelineExecutionError(
                "checkpoint",
                f"checkpoint {cp.id} was taken with max_parallelism {theirs}, this run has "
                f"{self.runner.max_parallelism}; the key groups are fixed for a job's lifetime: restore it "
                f"with RayRunner(max_parallelism={theirs})",
            )
        return {int(k): v for k, v in meta.get("parallelism", {}).items()}

    def _restore_spec(self, stage: Any, index: int, old_counts: dict[int, int]) -> dict[str, Any] | None:
        """Which parts of the restored checkpoint instance ``index`` of ``stage`` reads."""
        from tidal.runners.ray.worker import part_name

        cp = self.restore
        if cp is None:
            return None
        n = self.counts[stage.id]
        old = old_counts.get(stage.id, n)
        if old == n:
            parts = [index]
        else:
            total = len(self.pieces.get(stage.root.full_label, []))
            readers = [
                any(k * old // total == j and k * n // total == index for k in range(total)) if total else False
                for j in range(old)
            ]
            parts = LocalExecutor.parts_for(index, n, old, self.runner.max_parallelism, readers)
        return {
            "store": cp.store_location,
            "checkpoint": cp.id,
            "parts": {j: part_name(stage.id, j) for j in parts},
            # Each part's pieces (an incremental part builds on earlier checkpoints) with the verified
            # manifests' checksums: a worker unpickles only bytes that match them.
            "chains": {part_name(stage.id, j): cp.chain(part_name(stage.id, j)) for j in parts},
            "old_count": old,
        }

    def _start(self) -> None:
        import ray

        runner, plan = self.runner, self.plan
        old_counts = self._old_counts() if self.restore is not None else {}
        edges = plan_edges(plan)
        manual_clock = any(isinstance(n.transform, TestStream) for n in plan.graph.primitives)
        plan_bytes = runner._pickle_plan(plan)
        plan_arg: Any = ray.put(plan_bytes) if len(plan_bytes) > 64 * 1024 else plan_bytes
        senders = {e.edge_id: self.counts[e.producer_stage] for e in edges}
        location = self.store.location if self.store is not None else None
        total = 1 + max(self.slot_of.values())
        for attempt in range(3):
            self._lease(total)
            loads = [
                worker.load.remote(plan_arg, job, tasks)
                for worker, job, tasks in self._load_specs(edges, senders, manual_clock, location, old_counts)
            ]
            if self._loaded(loads, last=attempt == 2):
                break
        cid = self.restore.id if self.restore is not None else None
        self.result.restored_from = cid
        self.result._job = self  # its workers are loaded: they answer state queries
        if self.recovering is not None:
            failure, noticed = self.recovering
            self.result.recoveries.append(Recovery(failure, cid, time.perf_counter() - noticed))

    def _lease(self, total: int) -> None:
        from tidal.runners.ray.pool import get_pool

        runner = self.runner
        self.actors = get_pool().lease(runner._locations(total), fresh=not runner.reuse_workers)
        with self.result._stop_lock:
            self.result._actors = self.actors
        for stage in self.plan.stages:
            self.workers[stage.id] = [self.actors[self.slot_of[(stage.id, i)]] for i in range(self.counts[stage.id])]
        self.result.parallelism = dict(self.counts)

    def _load_specs(
        self, edges: list[Edge], senders: dict[str, int], manual_clock: bool, location: str | None, old_counts: dict[int, int]
    ) -> Any:
        """(worker, the job's settings for it, (splits, spec) of each instance it hosts) for every worker."""
        runner = self.runner
        # Each instance's splits, pickled when its worker's turn comes: the first worker unpickles
        # its splits while the driver pickles the next one's.
        hosted: list[list[tuple[dict[str, Any], dict[str, Any]]]] = [[] for _ in self.actors]
        for stage in self.plan.stages:
            n = self.counts[stage.id]
            # The worker slot each consuming instance runs on.
            routes: dict[str, list[tuple[str, int, list[int]]]] = {}
            for e in edges:
                if e.producer_stage == stage.id:
                    slots = [self.slot_of[(e.consumer_stage, j)] for j in range(self.counts[e.consumer_stage])]
                    routes.setdefault(e.edge_id, []).append((e.kind, e.consumer_stage, slots))
            piece_lists = {
                label: AssignedSplits.assign(parts, n, isinstance(parts[0], BoundedSource))
                for label, parts in self.pieces.items()
                if any(node.full_label == label for node in stage.nodes)
            }
            for i in range(n):
                splits = {label: assigned[i] for label, assigned in piece_lists.items()}
                spec = {
                    "stage": stage.id,
                    "index": i,
                    "count": n,
                    "source": stage.input_kind == "source",
                    "senders": senders,
                    "strict": runner.strict,
                    "bundle_size": runner.bundle_size,
                    "manual_clock": manual_clock,
                    "max_parallelism": runner.max_parallelism,
                    "alignment_bytes": runner.alignment_buffer_bytes,
                    "checkpoint_location": location,
                    "restore": self._restore_spec(stage, i, old_counts),
                    "withdraw_after": self.withdraw_after,
                    "routes": routes,
                }
                hosted[self.slot_of[(stage.id, i)]].append((splits, spec))
        for slot, worker in enumerate(self.actors):
            # A job's only worker may start reading as it loads (no peer can get a call before its load).
            job = {"slot": slot, "peers": self.actors, "max_in_flight": runner.max_in_flight, "step": len(self.actors) == 1}
            # Pickled here, once: Ray's own serializer is several times slower on large lists
            # of small tuples than cloudpickle's protocol 5 on a bytes blob.
            yield worker, job, [(_dumps(splits), spec) for splits, spec in hosted[slot]]

    def _loaded(self, loads: list[Any], last: bool) -> bool:
        """Wait for the loads. A pooled worker that is gone (its node died while it was idle) is
        dropped and the job leases again, unless ``last``; any other error is the job's."""
        import ray

        from tidal.runners.ray.pool import alive_nodes, get_pool

        ray.wait(loads, num_returns=len(loads))
        lost, fine, error = [], [], None
        for worker, ref in zip(self.actors, loads):
            try:
                status = ray.get(ref)
                if status is not None:  # a job's only worker takes its first step as it loads
                    self._statuses[id(worker)] = status
                fine.append(worker)
            except Exception as exc:
                if not _is_worker_loss(exc) or last:
                    error = error or exc
                lost.append(worker)
        if not lost:
            return True
        pool = get_pool()
        if error is not None:
            raise error
        for worker in fine:
            worker.unload.remote()
        pool.give_back(fine, reusable=self.runner.reuse_workers)
        pool.give_back(lost, reusable=False)
        alive_nodes(refresh=True)
        self.actors = []
        return False

    # -- running ---------------------------------------------------------------------
    def run(self) -> None:
        self._start()
        plan, result = self.plan, self.result
        # The first checkpoint comes one interval after the sources start (not at once, at offset 0).
        self.last_done = time.monotonic()
        hosts = {self.slot_of[(s.id, i)] for s in plan.stages if s.input_kind == "source" for i in range(self.counts[s.id])}
        sources = [self.actors[slot] for slot in sorted(hosts)]
        self._drive(sources)
        if self.store is not None and not result.cancelled:
            self._final_checkpoint(sources)
            self._drive(sources)
        if result.cancelled:
            return
        self._finish()

    def _drive(self, sources: list[Any], idle_poll: float = 0.05, busy_poll: float = 0.003) -> None:
        """Step the workers until every source is done and every worker is quiet; meanwhile take
        checkpoints and print what the workers print.

        While sources still read, a worker whose sources are done and which is
        quiet is stepped every ``idle_poll`` s only (a failure there still
        surfaces); one whose sources are done and that only waits for its peers
        to process what it sent, every ``busy_poll`` s (its peers' calls move it
        on, not the steps); the others again as soon as their step returns, so
        the calls their peers queued run in between. The end: every worker answered that
        its sources are done and every instance it hosts has seen the final
        watermark (which comes after all data on every channel, so nothing
        is left to arrive anywhere). A job that stalls never gets there, so the
        other end is quiet: every worker answered two steps quiet with nothing
        processed between them, and some moment lies within all those quiet
        spells (after each first answer came, before each second step was
        sent), so at that moment no call was in flight anywhere. A job's only
        worker needs one quiet answer: no peer can send it anything.
        """
        import ray

        result = self.result
        n = len(self.actors)
        steps: dict[Any, tuple[Any, float]] = {}
        # Per worker: (when its first quiet answer of the current spell came, its handled count then),
        # and when the step that confirmed the spell was sent.
        spells: dict[int, tuple[float, int]] = {}
        confirmed: dict[int, float] = {}
        #: Workers stepped again later: (when, the worker, whether only because it is idle).
        resting: dict[int, tuple[float, Any, bool]] = {}
        answers: list[tuple[Any, float, dict[str, Any]]] = []
        for w in self.actors:
            first = self._statuses.pop(id(w), None)
            if first is not None:
                answers.append((w, time.monotonic(), first))
            else:
                steps[w.step.remote()] = (w, time.monotonic())
        done: set[int] = set()
        finished: set[int] = set()
        while not result.cancelled:
            now = time.monotonic()
            for worker, sent, status in answers:
                key = id(worker)
                if status["sources_done"]:
                    done.add(key)
                    if status["finished"]:
                        finished.add(key)
                if status["sources_done"] and status["quiet"]:
                    spell = spells.get(key)
                    if spell is None or spell[1] != status["handled"]:
                        spells[key] = (now, status["handled"])
                        confirmed.pop(key, None)
                        if n == 1:
                            confirmed[key] = now
                    else:
                        confirmed[key] = sent
                    if len(done) < n and key in confirmed:
                        resting[key] = (now + idle_poll, worker, True)
                        continue
                else:
                    spells.pop(key, None)
                    confirmed.pop(key, None)
                    if status["sources_done"] and not status["backlog"]:
                        resting[key] = (now + busy_poll, worker, False)
                        continue
                steps[worker.step.remote()] = (worker, time.monotonic())
            answers = []
            if len(finished) == n or (len(confirmed) == n and max(t for t, _ in spells.values()) <= min(confirmed.values())):
                break
            for key, (at, worker, idle) in list(resting.items()):
                if at <= now or (idle and len(done) == n):
                    del resting[key]
                    steps[worker.step.remote()] = (worker, time.monotonic())
            if self.store is not None and len(done) < n:
                self._tick(sources)
            self._poll_output()
            wake = min((at for at, _, _ in resting.values()), default=now + 0.05)
            if not steps:
                time.sleep(max(0.0, wake - now))
                continue
            ready, rest = ray.wait(list(steps), num_returns=1, timeout=max(0.0, min(0.05, wake - now)))
            if ready and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            for ref in ready:
                worker, sent = steps.pop(ref)
                answers.append((worker, sent, ray.get(ref)))
        # A step still in flight runs before the next call to its worker, which reports its failure.

    def _finish(self) -> None:
        """Publish and close every instance (every worker is quiet); gather metrics, output and status."""
        import ray

        stalled = []
        alignment = self.result.alignment
        transfers = {"remote_calls": 0, "local_calls": 0}
        outcomes = ray.get([w.finish.remote() for w in self.actors])
        for printed in ray.get(self._output_calls):  # taken before the finish: printed first
            _print_output(printed)
        self._output_calls = []
        for outcome in outcomes:
            _print_output(outcome["output"])
            transfers["remote_calls"] += outcome["remote_calls"]
            transfers["local_calls"] += outcome["local_calls"]
            for task in outcome["tasks"]:
                self.result._metrics.extend(task["metrics"])
                if not task["done"]:
                    stalled.append(task["stage"])
                stats = task["alignment"]
                alignment = AlignmentStats(
                    max(alignment.peak_held_bytes, stats["peak_held_bytes"]),
                    alignment.spilled_bytes + stats["spilled_bytes"],
                    alignment.alignments + stats["alignments"],
                )
        self.result.alignment = alignment
        self.result.transfers = transfers
        if stalled and not self.result.cancelled:
            stage = self.plan.stages[min(stalled)]
            raise PipelineExecutionError(
                stage.root.full_label, "the pipeline stalled: the sources are done but this stage's watermark is not"
            )

    def _poll_output(self, every: float = 0.2) -> None:
        """Print what the workers printed, every ``every`` seconds while the job runs."""
        import ray

        if self._output_calls:
            done, rest = ray.wait(self._output_calls, num_returns=len(self._output_calls), timeout=0)
            for ref in done:
                try:
                    _print_output(ray.get(ref))
                except Exception:  # a lost worker: the run loop reports it
                    pass
            self._output_calls = rest
        now = time.monotonic()
        if now - self._last_output >= every and not self._output_calls:
            self._last_output = now
            self._output_calls = [w.take_output.remote() for w in self.actors]

    def _collect_output(self, timeout: float) -> None:
        """After a failure: what the surviving workers printed (their failure may be explained there)."""
        import ray

        refs = self._output_calls + [w.take_output.remote() for w in self.actors]
        self._output_calls = []
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for ref in done:
            try:
                _print_output(ray.get(ref))
            except Exception:
                pass

    # -- checkpoints -----------------------------------------------------------------
    def _tick(self, sources: list[Any]) -> None:
        """Trigger and complete checkpoints (lost workers surface in the steps)."""
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
        import ray

        ray.get([w.step.remote() for w in self.actors])  # the sources take it, barriers travel
        time.sleep(0.002)
