"""StageWorker: a generic Ray actor that hosts one instance of every stage of a job (slot sharing).

The runner keeps a pool of these actors in the Ray session (``pool.py``). A
job at parallelism ``p`` leases ``p`` workers (more only when some stage has
a larger parallelism), and worker ``i`` hosts instance ``i`` of every stage
that has one, as Flink's slot sharing does. A job *loads* its stage instances
into a pooled worker (:meth:`StageWorker.load`: the plan, which instances, the
source splits each reads, where their outputs go, the checkpoint they
restore) and *unloads* them when it is done, which drops every reference to
the job's objects: the next job on the same worker starts from nothing. Each
loaded instance is a :class:`StageTask`: a
:class:`~tidal.runners.core.executor.LocalExecutor` built for that stage only.

An edge whose consumer instance lives in the same worker is an in-process
hand-off: the bundle goes to the consumer task as it is (no Ray call, no
pickling). Only an edge to another worker becomes a Ray call (``push``,
``watermark``, ``barrier``), naming the consuming stage.

Deadlock freedom, as in Flink's mailbox model: no call ever blocks a worker
waiting for a peer. Each task has a *mailbox* (``inbox``) of the stream calls
it has not processed yet, and each (peer worker, stage) destination an
*outbox* of calls not yet sent. A destination takes at most
``max_in_flight`` calls that are not yet processed (credits): calls in flight
plus calls the receiver accepted into its mailbox without processing them.
A task processes its next input only while its outputs are *available* (no
unsent call waits in the outboxes it feeds, and the mailboxes of the local
tasks it feeds are empty); what one input produces goes to the outboxes
whatever their state (Flink's overdraft), so an operator never waits in the
middle of an emit. A receiver answers ``push`` with whether it processed the
call at once; a call it kept in a mailbox costs the sender a credit until an
``ack`` comes back. Because the tasks form a DAG whose last tasks are always
available, every mailbox empties. Sources run in bounded steps (the driver
calls :meth:`StageWorker.step` again and again): a step reads while the
source tasks' outputs are available and for a bounded time, and between
steps the calls queued by peers run. What is buffered stays bounded: at most
``max_in_flight`` calls per sender and destination, plus what one input
produces.

With checkpoints, barriers travel in-band (Flink's aligned barrier
snapshots), through the same mailboxes and outboxes as the data, so they
never overtake it. A source task, when the driver triggers checkpoint ``n``,
records its source offsets and operator state and sends barrier ``n`` on
every output edge. Any other task *aligns* on its own input channels: once
barrier ``n`` has come on an input channel (an edge and a sender), what that
channel sends next is held back
(:class:`~tidal.runners.ray.alignment.AlignmentBuffer`: bounded in memory,
spilled to disk beyond) until barrier ``n`` has come on every channel; then
it snapshots its state, forwards the barrier and processes what it held. The
snapshot is pickled at once and written to the checkpoint store on a
background thread, so the stream stops only for the pickling. Control calls
(``trigger``, ``notify_complete``, ``take_output``) run on their own thread
and reach the tasks through a queue that each step reads. A state query
(``query_state``) is a stream call: the owning task answers it between two
inputs.

What user code prints (``print``, writes to ``sys.stdout`` / ``sys.stderr``)
while the worker runs its stages is captured and handed to the driver, which
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
from collections import deque
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

__all__ = ["StageWorker", "StageTask", "part_name", "STEP_SECONDS"]

F = TypeVar("F", bound=Callable[..., Any])

#: How long one :meth:`StageWorker.step` reads its sources before it lets queued calls run.
STEP_SECONDS = 0.02


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


def _captured(method: F, fails_worker: bool = True) -> F:
    """Run an actor method with the process's standard streams captured for the driver.

    A stream method that fails leaves the worker failed (unless not
    ``fails_worker``: a state query's error is the query's): every later
    call raises the same error, so the driver hears it even when the call that
    failed was one whose answer nobody reads (an ``ack``).
    """

    @functools.wraps(method)
    def call(self: "StageWorker", *args: Any, **kwargs: Any) -> Any:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self._stdout, self._stderr
        try:
            if self.error is not None:
                raise self.error
            return method(self, *args, **kwargs)
        except BaseException as exc:
            if fails_worker and self.error is None and self.tasks:
                self.error = exc
            raise
        finally:
            sys.stdout, sys.stderr = out, err

    return call  # type: ignore[return-value]


class StageTask:
    """One instance of one stage of one job, as loaded into a worker (see :meth:`StageWorker.load`)."""

    def __init__(self, host: "StageWorker", plan: Any, splits_bytes: bytes, spec: dict[str, Any]) -> None:
        stage_id, index = spec["stage"], spec["index"]
        self.host = host
        self.stage_id = stage_id
        self.index = index
        self.count = spec["count"]
        #: Whether the stage reads sources (the driver's checkpoint trigger goes to it).
        self.is_source: bool = spec["source"]
        self.max_parallelism = spec["max_parallelism"]
        #: edge id -> [(kind, consuming stage, the worker slot of each of its instances)].
        self.routes: dict[str, list[tuple[str, int, list[int]]]] = spec["routes"]
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
        #: The stream calls this task has not processed yet: (method, arguments, the sending slot or None).
        self.inbox: deque[tuple[str, tuple[Any, ...], int | None]] = deque()
        #: Whether the task is processing an input now (a hand-off to it then waits in its inbox).
        self.busy = False
        #: The sources this task still reads.
        self.active: list[Any] = []
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
        self.active = [d for d, _, _ in self.executor.sources if not d.done]

    # -- sending -----------------------------------------------------------------
    def _emit(self, edge_id: str, bundle: list[Any]) -> None:
        send = self.host.send
        for kind, stage, slots in self.routes[edge_id]:
            n = len(slots)
            if kind == "keyed":
                for dest, part in enumerate(route_keyed(bundle, n, self.max_parallelism)):
                    if part:
                        send(slots[dest], stage, "push", edge_id, self.index, part)
            elif kind == "broadcast":
                for slot in slots:
                    send(slot, stage, "push", edge_id, self.index, bundle)
            else:
                send(slots[self.index % n], stage, "push", edge_id, self.index, bundle)

    def forward_watermarks(self) -> None:
        now = self.clock.now_us()
        # A TestStream's clock moves processing time with the watermark: it travels with it, and a
        # new processing time alone is news. On a wall clock every task reads its own clock (see tick).
        news = now if isinstance(self.clock, ManualClock) else 0
        send = self.host.send
        for edge_id, wm in self.executor.remote_watermarks().items():
            if (wm, news) != self.sent_watermarks.get(edge_id):
                self.sent_watermarks[edge_id] = (wm, news)
                for _kind, stage, slots in self.routes[edge_id]:
                    for slot in slots:
                        send(slot, stage, "watermark", edge_id, self.index, wm, now)

    # -- receiving ---------------------------------------------------------------
    def push(self, edge_id: str, sender: int, bundle: list[Any]) -> None:
        """A bundle came on channel (``edge_id``, ``sender``)."""
        if self.blocked and (edge_id, sender) in self.blocked:
            self.held.hold(("push", edge_id, sender, bundle))
            return
        with throughput_gc():
            self.executor.push(edge_id, bundle)

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

    def query_state(self, step: str, state_name: str, key: Any, window: Any) -> Any:
        return self.executor.read_state(step, state_name, key, window)

    def tick(self) -> None:
        """On a wall clock: fire the processing-time timers that are due (no input need arrive for them)."""
        if isinstance(self.clock, ManualClock) or not self.opened:
            return
        now = self.clock.now_us()
        if any(d is not None and d <= now for d in (op.next_processing_deadline() for op in self.executor.ops)):
            with throughput_gc():
                self.executor.propagate()
            self.forward_watermarks()

    # -- sources -----------------------------------------------------------------
    def poll_sources(self) -> bool:
        """Read each active source once (a bundle at most), sending downstream; whether anything happened."""
        ex = self.executor
        self.drain_control()
        with throughput_gc():
            progressed = ex.poll_sources(self.active)
            ex.propagate()
        self.forward_watermarks()
        return progressed

    # -- checkpoints ---------------------------------------------------------------
    def drain_control(self) -> None:
        control = self.control
        while not control.empty():
            kind, checkpoint_id = control.get()
            if kind == "commit":
                self.executor.commit(checkpoint_id)
            elif checkpoint_id > self.last_checkpoint:
                self.checkpoint(checkpoint_id)

    def checkpoint(self, checkpoint_id: int) -> None:
        """Snapshot this task, store it in the background and pass the barrier on."""
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
        send = self.host.send
        for edge_id, destinations in self.routes.items():
            for _kind, stage, slots in destinations:
                for slot in slots:
                    send(slot, stage, "barrier", edge_id, self.index, checkpoint_id)

    def done(self) -> bool:
        ex = self.executor
        return all(ex._out_wm[op] >= MAX_TIMESTAMP_US for op in ex.ops)

    def finish(self) -> dict[str, Any]:
        """Publish the sinks' output, close the operators; this instance's metrics and whether it finished."""
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
    """The actor body; the runner's pool wraps it with ``ray.remote`` and loads a job's instances into it.

    The worker is a mailbox processor: every call (a peer's ``push``, an
    ``ack``, the driver's ``step``) hands its work to the loaded tasks and then
    runs what they can process now, and returns; none waits for a peer.
    """

    def __init__(self) -> None:
        self.tasks: dict[int, StageTask] = {}
        #: The loaded tasks, upstream stages first.
        self.order: list[StageTask] = []
        self._lock = threading.Lock()
        self._printed: list[tuple[bool, str]] = []
        self._stdout = _Output(self._printed, self._lock, is_err=False)
        self._stderr = _Output(self._printed, self._lock, is_err=True)
        #: Weak references to the objects of the jobs this worker ran: an unload must free them.
        self._previous: list[weakref.ref[Any]] = []
        self.jobs = 0
        #: Ray calls sent to peers and in-process hand-offs, over every job this worker ran.
        self.remote_calls = 0
        self.local_calls = 0
        self._reset()

    def _reset(self) -> None:
        """Forget the job's peers, credits and buffers (a load or an unload)."""
        #: This worker's slot in the job (it hosts instance ``slot`` of every stage) and every slot's worker.
        self.slot = 0
        self.peers: list[Any] = []
        self.max_in_flight = 1
        #: Per (peer slot, stage): calls not sent yet, calls in flight, calls the peer holds unprocessed.
        self.outbox: dict[tuple[int, int], deque[tuple[str, tuple[Any, ...]]]] = {}
        self.in_flight: dict[tuple[int, int], list[Any]] = {}
        self.held_by_peer: dict[tuple[int, int], int] = {}
        #: Per stage: the (peer slot, stage) destinations and the local stages its outputs feed.
        self._feeds: dict[int, tuple[list[tuple[int, int]], list[int]]] = {}
        self.error: BaseException | None = None
        self._pumping = False
        #: Stream calls processed in this job (the driver's test that every worker is quiet).
        self.handled = 0
        self._job_remote = self.remote_calls
        self._job_local = self.local_calls

    def _task(self, stage: int) -> StageTask:
        task = self.tasks.get(stage)
        if task is None:
            raise RuntimeError(f"this worker has no instance of stage {stage} loaded (a call for a job that already ended)")
        return task

    # -- a job's lifecycle -----------------------------------------------------------
    @_captured
    def load(self, plan: bytes, job: dict[str, Any], tasks: list[tuple[bytes, dict[str, Any]]]) -> dict[str, Any] | None:
        """Load a job's stage instances (see :class:`StageTask`), restore their checkpoint and open them.

        ``plan`` is the pickled execution plan; ``job`` says which slot this
        worker is, every slot's worker (``peers``) and ``max_in_flight``;
        ``tasks`` holds, per instance, its pickled source splits
        (label -> AssignedSplits) and its spec: which stage and instance,
        where its outputs go, the settings and the checkpoint parts to restore.
        With ``job["step"]`` (a job's only worker) it takes the first
        :meth:`step` too and returns its answer.
        """
        if self.tasks:
            raise RuntimeError("this worker already runs stages of another job; unload them first")
        self._reset()
        self.slot = job["slot"]
        self.peers = job["peers"]
        self.max_in_flight = job["max_in_flight"]
        plan_obj = cloudpickle.loads(plan)
        built = [StageTask(self, plan_obj, splits, spec) for splits, spec in tasks]
        built.sort(key=lambda t: t.stage_id)  # stage ids are topological
        for task in built:
            remote: set[tuple[int, int]] = set()
            local: set[int] = set()
            for destinations in task.routes.values():
                for _kind, stage, slots in destinations:
                    for slot in slots:
                        if slot == self.slot:
                            local.add(stage)
                        else:
                            remote.add((slot, stage))
            self._feeds[task.stage_id] = (sorted(remote), sorted(local))
            for key in remote:
                self.outbox.setdefault(key, deque())
                self.in_flight.setdefault(key, [])
                self.held_by_peer.setdefault(key, 0)
        self.order = built
        self.tasks = {t.stage_id: t for t in built}
        self.jobs += 1
        for task in reversed(built):  # downstream first: what an opening task emits finds its consumers open
            task.open()
        return self._step() if job["step"] else None

    @_captured
    def finish(self) -> dict[str, Any]:
        """Publish, close: each instance's metrics and status, what was printed and how calls travelled.

        The driver calls it once every worker of the job is quiet; the stages stay loaded.
        """
        outcomes = [task.finish() for task in self.order]
        return {
            "tasks": outcomes,
            "output": self._take_printed(),
            "remote_calls": self.remote_calls - self._job_remote,
            "local_calls": self.local_calls - self._job_local,
        }

    def unload(self) -> bool:
        """Forget the loaded stages: every reference to the job's objects goes.

        They are unreachable from here on; the cyclic collector frees them in
        its own time (a full collection here would delay the next job's load
        by tens of milliseconds). :meth:`leftovers` collects and checks.
        """
        tasks, self.tasks, self.order = list(self.order), {}, []
        for task in tasks:
            for obj in task.user_objects():
                try:
                    self._previous.append(weakref.ref(obj))
                except TypeError:  # an object that takes no weak reference
                    pass
            task.held.close()
            task.inbox.clear()
            task.host = None  # type: ignore[assignment]
        del tasks
        self._reset()
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
        return {
            "node": context.get_node_id(),
            "pid": os.getpid(),
            "jobs": self.jobs,
            "loaded": bool(self.tasks),
            "stages": sorted(self.tasks),
            "remote_calls": self.remote_calls,
            "local_calls": self.local_calls,
        }

    # -- moving calls between tasks ------------------------------------------------------
    def send(self, slot: int, stage: int, method: str, *args: Any) -> None:
        """A stream call for instance ``slot`` of ``stage``: handed over in process, or queued for its worker."""
        if slot == self.slot:
            self.local_calls += 1
            self._deliver(stage, method, args, None)
            return
        if method == "push":
            args = (args[0], args[1], pack_bundle(args[2]))
        key = (slot, stage)
        self.outbox[key].append((method, args))
        self._flush(key)

    def _deliver(self, stage: int, method: str, args: tuple[Any, ...], origin: int | None) -> bool:
        """Process a call now if its task can take it, else keep it in the task's inbox; whether it ran."""
        task = self._task(stage)
        if task.inbox or task.busy or not self._available(stage):
            task.inbox.append((method, args, origin))
            return False
        self._run(task, method, args)
        return True

    def _run(self, task: StageTask, method: str, args: tuple[Any, ...]) -> None:
        task.busy = True
        try:
            getattr(task, method)(*args)
        finally:
            task.busy = False
        self.handled += 1

    def _available(self, stage: int) -> bool:
        """Whether ``stage``'s outputs can take more: no unsent call for a peer, no waiting local inbox."""
        remote, local = self._feeds[stage]
        outbox = self.outbox
        for key in remote:
            if outbox[key]:
                return False
        tasks = self.tasks
        for s in local:
            if tasks[s].inbox:
                return False
        return True

    def _flush(self, key: tuple[int, int]) -> None:
        """Send what the destination's credits allow (never waits)."""
        box = self.outbox[key]
        if not box:
            return
        limit = self.max_in_flight
        if len(self.in_flight[key]) + self.held_by_peer[key] >= limit:
            self._harvest(key)
        flight = self.in_flight[key]
        actor = self.peers[key[0]]
        stage = key[1]
        while box and len(flight) + self.held_by_peer[key] < limit:
            method, args = box.popleft()
            flight.append(getattr(actor, method).remote(stage, *args, self.slot))
            self.remote_calls += 1

    def _harvest(self, key: tuple[int, int]) -> None:
        """Take the answers of the calls to ``key`` that have returned (a peer's failure surfaces here)."""
        refs = self.in_flight[key]
        if not refs:
            return
        done, rest = ray.wait(refs, num_returns=len(refs), timeout=0)
        if done:
            self.held_by_peer[key] += sum(1 for processed in ray.get(done) if not processed)
            self.in_flight[key] = rest

    def _pump(self) -> None:
        """Send what credits allow and process inboxes while their tasks' outputs are available."""
        if self._pumping:
            return
        self._pumping = True
        try:
            acks: dict[tuple[int, int], int] = {}
            progressed = True
            while progressed:
                progressed = False
                for key, box in self.outbox.items():
                    if box:
                        self._flush(key)
                for task in reversed(self.order):  # downstream first: it makes room for its producers
                    inbox = task.inbox
                    while inbox and not task.busy and self._available(task.stage_id):
                        method, args, origin = inbox.popleft()
                        self._run(task, method, args)
                        progressed = True
                        if origin is not None:
                            acks[(origin, task.stage_id)] = acks.get((origin, task.stage_id), 0) + 1
            for (origin, stage), n in acks.items():
                self.peers[origin].ack.remote(stage, self.slot, n)
        finally:
            self._pumping = False

    def _wait_for_credit(self, timeout: float = 0.005) -> bool:
        """Wait (at most ``timeout`` s) for a call to a backpressured destination to return; whether any is out."""
        refs = [ref for key, box in self.outbox.items() if box for ref in self.in_flight[key]]
        if not refs:
            return False
        ray.wait(refs, num_returns=1, timeout=timeout)
        for key, box in self.outbox.items():
            if box:
                self._flush(key)
        return True

    def _quiet(self) -> bool:
        """Nothing waits here: no inbox, no unsent or unanswered call, no call a peer still holds."""
        for key in self.in_flight:
            self._harvest(key)
        return (
            not any(t.inbox for t in self.order)
            and not any(self.outbox.values())
            and not any(self.in_flight.values())
            and not any(self.held_by_peer.values())
        )

    # -- the stream (one call at a time) -------------------------------------------------
    def _receive(self, stage: int, method: str, args: tuple[Any, ...], origin: int) -> bool:
        processed = self._deliver(stage, method, args, origin)
        self._pump()
        return processed

    @_captured
    def push(self, stage: int, edge_id: str, sender: int, data: bytes, origin: int) -> bool:
        """A bundle for ``stage`` from worker ``origin``; whether it was processed (else an ``ack`` follows)."""
        return self._receive(stage, "push", (edge_id, sender, unpack_bundle(data)), origin)

    @_captured
    def watermark(self, stage: int, edge_id: str, sender: int, watermark: int, processing_time: int, origin: int) -> bool:
        return self._receive(stage, "watermark", (edge_id, sender, watermark, processing_time), origin)

    @_captured
    def barrier(self, stage: int, edge_id: str, sender: int, checkpoint_id: int, origin: int) -> bool:
        return self._receive(stage, "barrier", (edge_id, sender, checkpoint_id), origin)

    @_captured
    def ack(self, stage: int, slot: int, count: int) -> bool:
        """Instance ``slot`` of ``stage`` processed ``count`` calls it had held: the credits come back."""
        key = (slot, stage)
        if key in self.held_by_peer:
            self.held_by_peer[key] -= count
        self._pump()
        return True

    @functools.partial(_captured, fails_worker=False)
    def query_state(self, stage: int, step: str, state_name: str, key: Any, window: Any) -> Any:
        """A copy of one state cell of ``step`` (a stateful DoFn of ``stage``, whose instance here owns ``key``).

        A stream call like ``push``: it runs between two inputs, so it waits
        at most for the calls already queued (a bounded number per sender)
        and holds the stream up for one lookup.
        """
        task = self.tasks.get(stage)
        if task is None:
            raise JobFinishedError("the job has finished: its state is no longer held")
        return task.query_state(step, state_name, key, window)

    @_captured
    def step(self) -> dict[str, Any]:
        """Handle control messages, then read the sources for a bounded time while their outputs can take it.

        Returns whether every source is done, whether every instance has
        seen the final watermark, whether the worker is quiet and how many
        calls it has processed (the driver's tests for the end).
        """
        return self._step()

    def _step(self) -> dict[str, Any]:
        for task in self.order:
            task.drain_control()
            if not task.inbox:
                task.tick()
        self._pump()
        deadline = time.perf_counter() + STEP_SECONDS
        sources = [t for t in self.order if t.active]
        while sources:
            ready = [t for t in sources if not t.inbox and self._available(t.stage_id)]
            if not ready:
                # Backpressured: wait a moment for a peer's answer, then let queued calls run.
                if not self._wait_for_credit():
                    break
                self._pump()
                if time.perf_counter() >= deadline:
                    break
                continue
            progressed = False
            for task in ready:
                task.busy = True
                try:
                    progressed = task.poll_sources() or progressed
                finally:
                    task.busy = False
            self._pump()
            sources = [t for t in sources if t.active]
            if not progressed:
                time.sleep(0.002)  # idle sources: nothing to read yet
                break
            if time.perf_counter() >= deadline:
                break
        # Calls waiting for a peer's credit: wait for answers here (boundedly) rather than be asked again at once.
        while any(self.outbox.values()) and time.perf_counter() < deadline and self._wait_for_credit():
            self._pump()
        return {
            "sources_done": not any(t.active for t in self.order),
            "backlog": any(self.outbox.values()),
            "finished": all(t.done() for t in self.order),
            "quiet": self._quiet(),
            "handled": self.handled,
        }

    # -- control (their own thread, heard while a step runs) ------------------------------
    @ray.method(concurrency_group="control")
    def trigger(self, checkpoint_id: int) -> bool:
        """Ask the source tasks to take checkpoint ``checkpoint_id`` (at the next step)."""
        for task in list(self.tasks.values()):
            if task.is_source:
                task.control.put(("checkpoint", checkpoint_id))
        return True

    @ray.method(concurrency_group="control")
    def notify_complete(self, checkpoint_id: int) -> bool:
        """Checkpoint ``checkpoint_id`` is complete: publish the sinks' output (at the next step)."""
        for task in list(self.tasks.values()):
            task.control.put(("commit", checkpoint_id))
        return True

    @ray.method(concurrency_group="control")
    def take_output(self) -> list[tuple[bool, str]]:
        """What the stages printed since the last call: (to standard error, text) pairs, in order."""
        return self._take_printed()

    def _take_printed(self) -> list[tuple[bool, str]]:
        with self._lock:
            printed = list(self._printed)
            self._printed.clear()
        return printed

    @ray.method(concurrency_group="control")
    def ping(self) -> bool:
        return True

    def metrics(self) -> list[MetricsContainer]:
        return [m for task in self.order for m in task.executor.metrics()]
