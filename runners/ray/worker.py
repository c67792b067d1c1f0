"""StageWorker: a generic Ray actor that runs one instance of one stage of one job at a time.

The runner keeps a pool of these actors in the Ray session (``pool.py``). A
job *loads* its stage into a pooled worker (:meth:`StageWorker.load`: the
plan, which stage and instance, the source splits it reads, where its outputs
go, the checkpoint it restores) and *unloads* it when it is done, which drops
every reference to the job's objects: the next job on the same worker starts
from nothing. The loaded stage is a :class:`StageTask`: a
:class:`~tidal.runners.core.executor.LocalExecutor` built for that stage only;
bundles and watermarks from other stages arrive through ``push`` and
``watermark`` calls and leave through the routes the driver gave. Sends are
asynchronous with a bounded number of calls in flight per destination
(backpressure: a slow consumer makes its producers wait). Watermarks travel
in-band, after the data they cover, to every instance of the consuming stage.

With checkpoints, barriers travel in-band too (Flink's aligned barrier
snapshots). A source worker, when the driver triggers checkpoint ``n``,
records its source offsets and operator state and sends barrier ``n`` on
every output edge. Any other worker *aligns*: once barrier ``n`` has come on
an input channel (an edge and a sender), what that channel sends next is held
back (:class:`~tidal.runners.ray.alignment.AlignmentBuffer`: bounded in
memory, spilled to disk beyond) until barrier ``n`` has come on every channel;
then it snapshots its state, forwards the barrier and processes what it held.
The snapshot is pickled at once and written to the checkpoint store on a
background thread, so the stream stops only for the pickling. Control calls
(``trigger``, ``notify_complete``, ``take_output``) run on their own thread
and reach the stream thread through a queue, so they are heard while a
source loop runs. A state query (``query_state``) is a stream call: a keyed
stage's worker answers it between two bundles.

What user code prints (``print``, writes to ``sys.stdout`` / ``sys.stderr``)
while the worker runs its stage is captured and handed to the driver, which
writes it to its own standard output and error, as the other runners do.
"""

from __future__ import annotations

import functools
import gc
import io
import os
import queue
import sys
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import cloudpickle
import ray

from tidal.model.metrics import MetricsContainer
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.runners.core.checkpoint import CheckpointStore, encode_part, load_chain
from tidal.runners.core.executor import LocalExecutor, ManualClock, WallClock
from tidal.runners.core.gcpolicy import throughput_gc
from tidal.runners.core.queryable import JobFinishedError
from tidal.runners.ray.alignment import AlignmentBuffer, spill_folder
from tidal.runners.ray.exchange import pack_bundle, route_keyed, unpack_bundle

__all__ = ["StageWorker", "StageTask", "part_name"]

F = TypeVar("F", bound=Callable[..., Any])


def part_name(stage_id: int, index: int) -> str:
    """The checkpoint part written by instance ``index`` of stage ``stage_id``."""
    return f"stage{stage_id}-{index}.pkl"


class _Output(io.TextIOBase):
    """A stand-in for ``sys.stdout`` / ``sys.stderr`` that keeps what is written, for the driver."""

    def __init__(self, sink: list[tuple[bool, str]], lock: threading.Lock, is_err: bool) -> None:
        super().__init__()
        self._sink = sink
        self._lock = lock
        self._is_err = is_err

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            with self._lock:
                self._sink.append((self._is_err, text))
        return len(text)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def _captured(method: F) -> F:
    """Run an actor method with the process's standard streams captured for the driver."""

    @functools.wraps(method)
    def call(self: "StageWorker", *args: Any, **kwargs: Any) -> Any:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self._stdout, self._stderr
        try:
            return method(self, *args, **kwargs)
        finally:
            sys.stdout, sys.stderr = out, err

    return call  # type: ignore[return-value]


class StageTask:
    """One instance of one stage of one job, as loaded into a worker (see :meth:`StageWorker.load`)."""

    def __init__(self, plan_bytes: bytes, splits_bytes: bytes, spec: dict[str, Any]) -> None:
        plan = cloudpickle.loads(plan_bytes)
        stage_id, index = spec["stage"], spec["index"]
        self.stage_id = stage_id
        self.index = index
        self.count = spec["count"]
        self.max_in_flight = spec["max_in_flight"]
        self.max_parallelism = spec["max_parallelism"]
        self.routes: dict[str, list[tuple[str, list[Any]]]] = spec["routes"]
        self.in_flight: dict[int, list[Any]] = {}
        self.sent_watermarks: dict[str, tuple[int, int]] = {}
        self.clock = ManualClock(0) if spec["manual_clock"] else WallClock()
        senders: dict[str, int] = spec["senders"]
        splits = cloudpickle.loads(splits_bytes)
        overrides = {node: splits[node.full_label] for node in plan.stages[stage_id].nodes if node.full_label in splits}
        self.executor = LocalExecutor(
            plan,
            bundle_size=spec["bundle_size"],
            strict=spec["strict"],
            clock=self.clock,
            stage_ids={stage_id},
            source_overrides=overrides,
            remote_emit=self._emit,
            senders_of=lambda edge: senders.get(edge, 1),
            commit_on_close=spec["checkpoint_location"] is None,
            max_parallelism=self.max_parallelism,
            worker=(index, self.count),
        )
        self.opened = False
        # -- checkpoints --
        location = spec["checkpoint_location"]
        self.store = CheckpointStore(location) if location is not None else None
        self.part = part_name(stage_id, index)
        from tidal.runners.ray.runner import plan_edges

        #: Input channels (edge, sender): a barrier must come on each before a snapshot.
        self.channels = {
            (e.edge_id, sender)
            for e in plan_edges(plan)
            if e.consumer_stage == stage_id
            for sender in range(senders.get(e.edge_id, 1))
        }
        self.blocked: set[tuple[str, int]] = set()
        self.held = AlignmentBuffer(spec["alignment_bytes"], spill_folder())
        self.alignments = 0
        self.last_checkpoint = 0
        self.control: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future[None]] = []
        #: The sinks withdraw what checkpoints after this one published, when the worker opens.
        self.withdraw_after: int | None = spec["withdraw_after"]
        if spec["restore"] is not None:
            self._restore(spec["restore"])

    def _restore(self, restore: dict[str, Any]) -> None:
        store = CheckpointStore(restore["store"])
        cid = restore["checkpoint"]
        chains = restore["chains"]
        parts = {j: load_chain(store, name, chains[name]) for j, name in restore["parts"].items()}
        if restore["old_count"] == self.count:
            snap = parts[self.index]["executor"]
        else:  # a restore at another parallelism: key groups, splits and the rest handed out again
            snap = self.executor.merge_snapshots({j: p["executor"] for j, p in parts.items()}, self.index, self.count)
        self.executor.restore(snap, commit=False)  # the sinks publish in open()
        self.last_checkpoint = cid

    def user_objects(self) -> list[Any]:
        """The job's objects this task holds (DoFns, CombineFns, operators): none may outlive an unload."""
        objects: list[Any] = [self.executor]
        for op in self.executor.ops:
            objects.append(op)
            for name in ("dofn", "fn"):
                obj = getattr(op, name, None)
                if obj is not None:
                    objects.append(obj)
        return objects

    # -- set-up ------------------------------------------------------------------
    def open(self) -> None:
        for op in self.executor.ops:
            op.open()
        for driver, _, _ in self.executor.sources:
            driver.open(self.clock)
        self.opened = True
        if self.withdraw_after is not None:
            # Back at a restored checkpoint (or at the beginning): what later checkpoints published
            # is withdrawn, since the replay publishes it again ...
            self.executor.abort_after(self.withdraw_after)
        if self.last_checkpoint:
            # ... and what the restored checkpoint staged is published (idempotently).
            self.executor.commit(self.last_checkpoint)
        self.executor.propagate()  # operators start at the worker's processing time

    # -- sending -----------------------------------------------------------------
    def _send(self, actor: Any, method: str, *args: Any) -> None:
        key = id(actor)
        pending = self.in_flight.setdefault(key, [])
        pending.append(getattr(actor, method).remote(*args))
        if len(pending) > self.max_in_flight:
            done, rest = ray.wait(pending, num_returns=len(pending) - self.max_in_flight)
            ray.get(done)  # surfaces a downstream failure here
            self.in_flight[key] = rest

    def _emit(self, edge_id: str, bundle: list[Any]) -> None:
        for kind, actors in self.routes[edge_id]:
            n = len(actors)
            if kind == "keyed":
                for dest, part in enumerate(route_keyed(bundle, n, self.max_parallelism)):
                    if part:
                        self._send(actors[dest], "push", edge_id, self.index, pack_bundle(part))
            elif kind == "broadcast":
                data = pack_bundle(bundle)
                for actor in actors:
                    self._send(actor, "push", edge_id, self.index, data)
            else:
                self._send(actors[self.index % n], "push", edge_id, self.index, pack_bundle(bundle))

    def forward_watermarks(self) -> None:
        now = self.clock.now_us()
        for edge_id, wm in self.executor.remote_watermarks().items():
            # Processing time travels with the watermark (a TestStream's clock moves both).
            if (wm, now) != self.sent_watermarks.get(edge_id):
                self.sent_watermarks[edge_id] = (wm, now)
                for _kind, actors in self.routes[edge_id]:
                    for actor in actors:
                        self._send(actor, "watermark", edge_id, self.index, wm, now)

    # -- receiving ---------------------------------------------------------------
    def push(self, edge_id: str, sender: int, data: bytes) -> None:
        """A bundle (packed by :func:`pack_bundle`) came on channel (``edge_id``, ``sender``)."""
        if self.blocked and (edge_id, sender) in self.blocked:
            self.held.hold(("push", edge_id, sender, data))
            return
        with throughput_gc():
            self.executor.push(edge_id, unpack_bundle(data))

    def watermark(self, edge_id: str, sender: int, watermark: int, processing_time: int) -> None:
        if self.blocked and (edge_id, sender) in self.blocked:
            self.held.hold(("watermark", edge_id, sender, watermark, processing_time))
            return
        self.drain_control()
        if isinstance(self.clock, ManualClock):
            self.clock.advance_to(processing_time)
        self.executor.set_remote_watermark(edge_id, sender, watermark)
        with throughput_gc():
            self.executor.propagate()
        self.forward_watermarks()

    def barrier(self, edge_id: str, sender: int, checkpoint_id: int) -> None:
        """Barrier ``checkpoint_id`` came on channel (``edge_id``, ``sender``): align, then snapshot."""
        channel = (edge_id, sender)
        if channel in self.blocked:
            self.held.hold(("barrier", edge_id, sender, checkpoint_id))
            return
        self.blocked.add(channel)
        if self.blocked >= self.channels:
            self.checkpoint(checkpoint_id)
            self.alignments += 1
            self.blocked.clear()
            for call in self.held.release():
                getattr(self, call[0])(*call[1:])

    # -- sources -----------------------------------------------------------------
    def run_sources(self) -> None:
        """Read every local source to its end, sending downstream as it goes."""
        ex = self.executor
        active = [d for d, _, _ in ex.sources if not d.done]
        with throughput_gc():
            while active:
                self.drain_control()
                progressed = ex.poll_sources(active)
                ex.propagate()
                self.forward_watermarks()
                if not progressed and active:
                    time.sleep(0.002)
            ex.propagate()
            self.forward_watermarks()
        self.drain_control()
        self.drain()

    # -- checkpoints ---------------------------------------------------------------
    def drain_control(self) -> None:
        control = self.control
        while not control.empty():
            kind, checkpoint_id = control.get()
            if kind == "commit":
                self.executor.commit(checkpoint_id)
            elif checkpoint_id > self.last_checkpoint:
                self.checkpoint(checkpoint_id)

    def take_checkpoint(self, checkpoint_id: int) -> None:
        self.drain_control()
        if checkpoint_id > self.last_checkpoint:
            self.checkpoint(checkpoint_id)

    def checkpoint(self, checkpoint_id: int) -> None:
        """Snapshot this worker, store it in the background and pass the barrier on."""
        if self.store is None:
            raise RuntimeError("a checkpoint barrier reached a worker of a job without checkpoints")
        self.last_checkpoint = checkpoint_id
        with throughput_gc():
            snap = self.executor.snapshot(checkpoint_id)
            data = encode_part(cloudpickle.dumps({"checkpoint": checkpoint_id, "executor": snap}, protocol=5), snap["needs"])
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="tidal-checkpoint")
        for written in [f for f in self._writes if f.done()]:
            written.result()  # a failed write surfaces here
        self._writes = [f for f in self._writes if not f.done()]
        self._writes.append(self._writer.submit(self.store.write_part, checkpoint_id, self.part, data))
        for edge_id, destinations in self.routes.items():
            for _kind, actors in destinations:
                for actor in actors:
                    self._send(actor, "barrier", edge_id, self.index, checkpoint_id)

    def drain(self) -> None:
        """Wait until everything this worker sent has been processed downstream."""
        for key, pending in list(self.in_flight.items()):
            if pending:
                ray.get(pending)
            self.in_flight[key] = []

    def done(self) -> bool:
        ex = self.executor
        return all(ex._out_wm[op] >= MAX_TIMESTAMP_US for op in ex.ops)

    def finish(self) -> dict[str, Any]:
        """Publish the sinks' output, close the operators; this instance's metrics and whether it finished."""
        self.drain()
        self.drain_control()
        for write in self._writes:
            write.result()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        done = self.done()
        if self.store is None and self.opened:
            self.executor.commit_final()
        errors = []
        if self.opened:
            for op in self.executor.ops:
                try:
                    op.close()
                except Exception as exc:
                    errors.append(exc)
            for driver, _, _ in self.executor.sources:
                driver.close()
            self.opened = False
        self.held.close()
        if errors:
            raise errors[0]
        stats = {**self.held.stats(), "alignments": self.alignments}
        return {"stage": self.stage_id, "index": self.index, "done": done, "metrics": self.executor.metrics(), "alignment": stats}


class StageWorker:
    """The actor body; the runner's pool wraps it with ``ray.remote`` and loads one stage into it per job."""

    def __init__(self) -> None:
        self.task: StageTask | None = None
        self._lock = threading.Lock()
        self._printed: list[tuple[bool, str]] = []
        self._stdout = _Output(self._printed, self._lock, is_err=False)
        self._stderr = _Output(self._printed, self._lock, is_err=True)
        #: Weak references to the objects of the jobs this worker ran: an unload must free them.
        self._previous: list[weakref.ref[Any]] = []
        self.jobs = 0

    def _task(self) -> StageTask:
        task = self.task
        if task is None:
            raise RuntimeError("this worker has no stage loaded (a call for a job that already ended)")
        return task

    # -- a job's lifecycle -----------------------------------------------------------
    @_captured
    def load(self, plan: bytes, splits: bytes, spec: dict[str, Any]) -> bool:
        """Load a stage of a job (see :class:`StageTask`), restore its checkpoint and open it.

        ``plan`` is the pickled execution plan, ``splits`` the pickled
        source splits this instance reads (label -> AssignedSplits); ``spec``
        says which stage and instance, where its outputs go, the settings and
        the checkpoint parts to restore.
        """
        if self.task is not None:
            raise RuntimeError("this worker already runs a stage of another job; unload it first")
        self.task = StageTask(plan, splits, spec)
        self.jobs += 1
        self.task.open()
        return True

    @_captured
    def finish(self) -> dict[str, Any]:
        """Drain, publish, close; this instance's metrics, status and what it printed. The stage stays loaded."""
        result = self._task().finish()
        result["output"] = self._take_printed()
        return result

    def unload(self) -> bool:
        """Forget the loaded stage: every reference to the job's objects goes.

        They are unreachable from here on; the cyclic collector frees them in
        its own time (a full collection here would delay the next job's load
        by tens of milliseconds). :meth:`leftovers` collects and checks.
        """
        task = self.task
        if task is not None:
            for obj in task.user_objects():
                try:
                    self._previous.append(weakref.ref(obj))
                except TypeError:  # an object that takes no weak reference
                    pass
            task.held.close()
            self.task = None
            del task
        with self._lock:
            self._printed.clear()
        self._previous = [r for r in self._previous if r() is not None]
        return True

    def leftovers(self) -> int:
        """How many objects of the jobs this worker ran are still alive (0 after a clean unload)."""
        gc.collect()
        self._previous = [r for r in self._previous if r() is not None]
        return len(self._previous)

    def describe(self) -> dict[str, Any]:
        """Where this worker runs and what it holds (for tests and diagnostics)."""
        context = ray.get_runtime_context()
        return {"node": context.get_node_id(), "pid": os.getpid(), "jobs": self.jobs, "loaded": self.task is not None}

    # -- the stream (one call at a time, in order) ------------------------------------
    @_captured
    def push(self, edge_id: str, sender: int, data: bytes) -> bool:
        self._task().push(edge_id, sender, data)
        return True

    @_captured
    def watermark(self, edge_id: str, sender: int, watermark: int, processing_time: int) -> bool:
        self._task().watermark(edge_id, sender, watermark, processing_time)
        return True

    @_captured
    def barrier(self, edge_id: str, sender: int, checkpoint_id: int) -> bool:
        self._task().barrier(edge_id, sender, checkpoint_id)
        return True

    @_captured
    def query_state(self, step: str, state_name: str, key: Any, window: Any) -> Any:
        """A copy of one state cell of ``step`` (a stateful DoFn of this worker's keyed stage).

        An actor call like ``push``: it runs between two bundles on the stream
        thread, so it waits at most for the calls already queued (a bounded
        number per sender) and holds the stream up for one lookup.
        """
        task = self.task
        if task is None:
            raise JobFinishedError("the job has finished: its state is no longer held")
        return task.executor.read_state(step, state_name, key, window)

    @_captured
    def run_sources(self) -> bool:
        self._task().run_sources()
        return True

    @_captured
    def poll(self) -> bool:
        """Handle waiting control messages (the driver calls this on idle workers)."""
        self._task().drain_control()
        return True

    @_captured
    def take_checkpoint(self, checkpoint_id: int) -> bool:
        """Take checkpoint ``checkpoint_id`` now (a source worker whose sources are done)."""
        self._task().take_checkpoint(checkpoint_id)
        return True

    @_captured
    def drain(self) -> bool:
        """Wait until everything this worker sent has been processed downstream."""
        self._task().drain()
        return True

    # -- control (their own thread, heard during a source loop) --------------------------
    @ray.method(concurrency_group="control")
    def trigger(self, checkpoint_id: int) -> bool:
        """Ask the source loop to take checkpoint ``checkpoint_id``."""
        task = self.task
        if task is not None:
            task.control.put(("checkpoint", checkpoint_id))
        return True

    @ray.method(concurrency_group="control")
    def notify_complete(self, checkpoint_id: int) -> bool:
        """Checkpoint ``checkpoint_id`` is complete: publish the sinks' output."""
        task = self.task
        if task is not None:
            task.control.put(("commit", checkpoint_id))
        return True

    @ray.method(concurrency_group="control")
    def take_output(self) -> list[tuple[bool, str]]:
        """What the stage printed since the last call: (to standard error, text) pairs, in order."""
        return self._take_printed()

    def _take_printed(self) -> list[tuple[bool, str]]:
        with self._lock:
            printed = list(self._printed)
            self._printed.clear()
        return printed

    @ray.method(concurrency_group="control")
    def ping(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        task = self._task()
        return {"stage": task.stage_id, "index": task.index, "done": task.done()}

    def metrics(self) -> list[MetricsContainer]:
        return self._task().executor.metrics()
