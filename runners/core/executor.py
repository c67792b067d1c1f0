"""LocalExecutor: runs an execution plan in one process, bundle by bundle.

It builds the operators of every stage, wires each output to its consumers,
pulls bundles from the sources and moves watermarks through the graph in
topological order (a stage's input watermark is the minimum over its
inputs). The direct runner is this executor; other runners reuse its
wiring for the part of the plan they run in one place.
"""

from __future__ import annotations

import abc
import time
from typing import Any, Callable, Iterator

from tidal.model.metrics import MetricsContainer
from tidal.model.pipeline import AppliedTransform
from tidal.model.teststream import TestStream
from tidal.model.primitives import CombinePerKey, Flatten, GroupByKey, Impulse, ParDo, Read, WindowInto
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.runners.core.errors import PipelineExecutionError
from tidal.runners.core.fused import fuse_windowed_precombines
from tidal.runners.core.gcpolicy import throughput_gc
from tidal.runners.core.incremental import MAX_CHAIN
from tidal.runners.core.keygroups import DEFAULT_MAX_PARALLELISM, KeyGroups, key_group_range, overlapping
from tidal.runners.core.operators import (
    AssignWindowsOperator,
    CombinePerKeyOperator,
    FlattenOperator,
    GroupByKeyOperator,
    Operator,
    ParDoOperator,
    PrecombineOperator,
)
from tidal.runners.core.plan import ExecutionPlan
from tidal.runners.core.queryable import QueryServer, StateQueryError, check_query, read_cell
from tidal.runners.core.sources import SourceDriver, make_source_driver
from tidal.runners.core.statebackend import DiskBackend, StateBackend, open_backend

__all__ = ["LocalExecutor", "Clock", "WallClock", "ManualClock", "FINAL_CHECKPOINT"]

#: The checkpoint number of a job's end of input, after every numbered checkpoint.
FINAL_CHECKPOINT = 1 << 62


class Clock(abc.ABC):
    """Processing time in microseconds; tests and TestStream use a manual clock."""

    @abc.abstractmethod
    def now_us(self) -> int:
        """The current processing time."""

    def advance_to(self, micros: int) -> None:
        """Move a manual clock forward (a wall clock ignores this)."""


class WallClock(Clock):
    def now_us(self) -> int:
        return time.time_ns() // 1000


class ManualClock(Clock):
    """A clock that only moves when told to (TestStream's advance_processing_time)."""

    def __init__(self, start_us: int = 0) -> None:
        self._now = start_us

    def now_us(self) -> int:
        return self._now

    def advance_to(self, micros: int) -> None:
        self._now = max(self._now, micros)


class RemoteInput:
    """Stands in for a producer that runs elsewhere (another worker's stage).

    Bundles arrive through :meth:`push`; its watermark is the minimum over the
    senders that feed it.
    """

    def __init__(self, edge_id: str, senders: int) -> None:
        self.edge_id = edge_id
        self.receivers: dict[str, list[Callable[[list[Any]], None]]] = {}
        self.sender_watermarks = [MIN_TIMESTAMP_US] * max(senders, 1)

    def add_receiver(self, tag: str, receiver: Callable[[list[Any]], None]) -> None:
        self.receivers.setdefault(tag, []).append(receiver)

    def push(self, bundle: list[Any]) -> None:
        for receiver in self.receivers.get("out", ()):
            receiver(bundle)

    @property
    def watermark(self) -> int:
        return min(self.sender_watermarks)


def edge_id_of(pc: Any) -> str:
    """The name of the exchange edge that carries PCollection ``pc`` between stages."""
    return str(pc.name)


def partial_edge_id(combine: AppliedTransform) -> str:
    """The edge carrying a lifted CombinePerKey's partial accumulators."""
    return f"{combine.full_label}/partial"


class LocalExecutor:
    """Executes ``plan`` (or some of its stages) in this process.

    With ``stage_ids`` only those stages are built: inputs produced by other
    stages become :class:`RemoteInput` entry points fed by :meth:`push` and
    :meth:`set_remote_watermark`, and outputs consumed by other stages go to
    ``remote_emit(edge_id, bundle)``; :meth:`remote_watermarks` reports their
    watermarks. ``run()`` returns when every local source is done.
    """

    def __init__(
        self,
        plan: ExecutionPlan,
        bundle_size: int = 10_000,
        strict: bool = False,
        clock: Clock | None = None,
        stage_ids: set[int] | None = None,
        source_overrides: dict[AppliedTransform, Any] | None = None,
        remote_emit: Callable[[str, list[Any]], None] | None = None,
        senders_of: Callable[[str], int] | None = None,
        commit_on_close: bool = True,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        worker: tuple[int, int] = (0, 1),
    ) -> None:
        self.plan = plan
        #: The job's key groups: keyed state is snapshotted split by them (see keygroups.py).
        self.key_groups = KeyGroups(max_parallelism)
        #: (index, count): this executor is instance ``index`` of ``count`` parallel ones of its stages.
        self.worker = worker
        self.bundle_size = bundle_size
        self.strict = strict
        self.stage_ids = stage_ids
        self.source_overrides = source_overrides or {}
        self.remote_emit = remote_emit
        self.senders_of = senders_of or (lambda edge: 1)
        self.ops: list[Operator] = []
        self.op_of: dict[AppliedTransform, Operator] = {}
        self.sources: list[tuple[SourceDriver, Operator | None, AppliedTransform]] = []
        self.remote_inputs: dict[str, RemoteInput] = {}
        #: Local producers of edges that other stages consume: edge id -> producer.
        self.remote_outputs: dict[str, Any] = {}
        # For each operator: its main-input producers and side-input producers (op or source driver).
        self._main_inputs: dict[Operator, list[Any]] = {}
        self._side_inputs: dict[Operator, list[Any]] = {}
        self._out_wm: dict[Any, int] = {}
        self._precombine_of: dict[AppliedTransform, Operator] = {}
        self.clock: Clock = clock or WallClock()
        #: Publish transactional sinks' output when the run ends (runners that take
        #: checkpoints publish it when a checkpoint completes instead).
        self.commit_on_close = commit_on_close
        #: State queries from other threads, answered between bundles (see runners/core/queryable.py).
        self.queries = QueryServer()
        #: Where the keyed operators keep their state (the plan's choice; one store per executor).
        self.state_backend: StateBackend = open_backend(plan.state_backend)
        #: The committed checkpoints the keyed tables' next incremental snapshot builds on (None: none).
        self._chain: list[int] | None = None
        #: Snapshots taken and not yet committed: checkpoint id -> its chain (the ids it needs, and itself).
        self._snapshot_chains: dict[int, list[int]] = {}
        self._build()

    # -- wiring ---------------------------------------------------------------
    def _is_local(self, node: AppliedTransform) -> bool:
        return self.stage_ids is None or self.plan.stage_of[node].id in self.stage_ids

    def _build(self) -> None:
        producer_of: dict[Any, tuple[Any, str]] = {}  # pcoll -> (op, driver or remote input, tag)
        for stage in self.plan.stages:
            local = self.stage_ids is None or stage.id in self.stage_ids
            if not local:
                for node in stage.nodes:
                    for pc in node.outputs.values():
                        producer_of[pc] = (self._remote_input(edge_id_of(pc)), "out")
                for combine in stage.precombines:
                    self._precombine_of[combine] = self._remote_input(partial_edge_id(combine))  # type: ignore[assignment]
                continue
            for node in stage.nodes:
                t = node.transform
                if isinstance(t, (Read, Impulse, TestStream)):
                    driver = make_source_driver(node, self.bundle_size, self.source_overrides.get(node))
                    self.sources.append((driver, None, node))
                    self._out_wm[driver] = MIN_TIMESTAMP_US
                    for tag, pc in node.outputs.items():
                        producer_of[pc] = (driver, tag)
                    self._export_outputs(node, driver)
                    continue
                op = self._make_operator(node)
                self.ops.append(op)
                self.op_of[node] = op
                self._out_wm[op] = MIN_TIMESTAMP_US
                mains: list[Any] = []
                for slot, pc in enumerate(node.inputs):
                    src, tag = self._producer_for(node, pc, producer_of)
                    receiver = lambda b, op=op, slot=slot: op.process(b, slot)  # noqa: E731
                    if type(op) is ParDoOperator and isinstance(src, SourceDriver):
                        src.add_value_receiver(tag, receiver)  # it takes a source's plain values as they are
                    else:
                        src.add_receiver(tag, receiver)
                    mains.append(src)
                sides: list[Any] = []
                for index, view in enumerate(node.side_inputs):
                    src, tag = producer_of[view.pcoll]
                    src.add_receiver(tag, lambda b, op=op, index=index: op.process_side(index, b))
                    sides.append(src)
                self._main_inputs[op] = mains
                self._side_inputs[op] = sides
                for tag, pc in node.outputs.items():
                    producer_of[pc] = (op, tag)
                self._export_outputs(node, op)
            for combine in stage.precombines:
                src, tag = producer_of[combine.inputs[0]]
                pre = PrecombineOperator(f"{combine.full_label}/Precombine", combine.transform.fn)  # type: ignore[union-attr]
                self.ops.append(pre)
                self._out_wm[pre] = MIN_TIMESTAMP_US
                src.add_receiver(tag, lambda b, pre=pre: pre.process(b, 0))
                self._main_inputs[pre] = [src]
                self._side_inputs[pre] = []
                self._precombine_of[combine] = pre
                if not self._is_local(combine):
                    self._export(partial_edge_id(combine), pre, "out")
        for remote in self.remote_inputs.values():
            self._out_wm[remote] = MIN_TIMESTAMP_US
        for op in self.ops:
            op.key_groups = self.key_groups
            if self.state_backend.kind != "memory":
                op.use_state_backend(self.state_backend)
        # Keep operators in topological order: a precombine must come before its combine.
        self.ops.sort(key=lambda op: self._topo_index(op))
        #: (Map, pre-combiner) pairs run as one loop (see runners/core/fused.py).
        self.fused = fuse_windowed_precombines(self)

    def _remote_input(self, edge_id: str) -> RemoteInput:
        remote = self.remote_inputs.get(edge_id)
        if remote is None:
            remote = self.remote_inputs[edge_id] = RemoteInput(edge_id, self.senders_of(edge_id))
        return remote

    def _export_outputs(self, node: AppliedTransform, producer: Any) -> None:
        """Send outputs that non-local stages consume to ``remote_emit``."""
        if self.stage_ids is None:
            return
        consumers = self._consumers()
        for tag, pc in node.outputs.items():
            if any(not self._is_local(c) and not (c in self.plan.lifted and c.inputs[0] is pc) for c in consumers.get(pc, ())):
                self._export(edge_id_of(pc), producer, tag)

    def _export(self, edge_id: str, producer: Any, tag: str) -> None:
        emit = self.remote_emit
        if emit is None:
            raise PipelineExecutionError(edge_id, "a partial plan needs remote_emit for its outputs")
        self.remote_outputs[edge_id] = producer
        producer.add_receiver(tag, lambda b, edge_id=edge_id: emit(edge_id, b))

    def _consumers(self) -> dict[Any, list[AppliedTransform]]:
        cached = getattr(self, "_consumers_cache", None)
        if cached is None:
            cached = self._consumers_cache = self.plan.graph.consumers()
        return cached

    def push(self, edge_id: str, bundle: list[Any]) -> None:
        """A bundle arrived from another stage on ``edge_id``."""
        self.remote_inputs[edge_id].push(bundle)

    def set_remote_watermark(self, edge_id: str, sender: int, watermark: int) -> None:
        """Sender ``sender`` of ``edge_id`` promises nothing older than ``watermark`` follows."""
        remote = self.remote_inputs[edge_id]
        if watermark > remote.sender_watermarks[sender]:
            remote.sender_watermarks[sender] = watermark
        self._out_wm[remote] = remote.watermark

    def remote_watermarks(self) -> dict[str, int]:
        """The current watermark of every edge this executor sends to other stages."""
        return {edge: self._out_wm[producer] for edge, producer in self.remote_outputs.items()}

    def _topo_index(self, op: Operator) -> tuple[int, int]:
        for i, node in enumerate(self.plan.graph.primitives):
            if self.op_of.get(node) is op:
                return (i, 1)
            if self._precombine_of.get(node) is op:
                return (i, 0)
        return (len(self.plan.graph.primitives), 0)

    def _producer_for(self, node: AppliedTransform, pc: Any, producer_of: dict[Any, tuple[Any, str]]) -> tuple[Any, str]:
        if node in self.plan.lifted:
            return self._precombine_of[node], "out"
        return producer_of[pc]

    def _make_operator(self, node: AppliedTransform) -> Operator:
        t = node.transform
        label = node.full_label
        if isinstance(t, ParDo):
            windowfn = node.inputs[0].windowing.windowfn
            side_fns = [v.pcoll.windowing.windowfn for v in t.side_inputs]
            from tidal.runners.core.plan import is_stateful_pardo

            if is_stateful_pardo(node):
                from tidal.runners.core.stateful import StatefulParDoOperator

                op: ParDoOperator = StatefulParDoOperator(label, t, node.inputs[0].windowing, side_fns, strict=self.strict)
            else:
                op = ParDoOperator(label, t, windowfn, side_fns, strict=self.strict)
            # A sink that names its output by writer (the file sinks) learns which parallel instance it is.
            set_writer = getattr(op.dofn, "set_writer", None)
            if callable(set_writer):
                set_writer(*self.worker)
            return op
        if isinstance(t, WindowInto):
            return AssignWindowsOperator(label, t, node.inputs[0].windowing.windowfn)
        if isinstance(t, Flatten):
            return FlattenOperator(label, num_inputs=len(node.inputs))
        if isinstance(t, GroupByKey):
            return GroupByKeyOperator(label, t, node.inputs[0].windowing)
        if isinstance(t, CombinePerKey):
            return CombinePerKeyOperator(label, t, node.inputs[0].windowing, lifted=node in self.plan.lifted)
        raise PipelineExecutionError(label, f"no operator for primitive {type(t).__name__}")

    # -- running --------------------------------------------------------------
    def run(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Open the operators, drain the sources, fire everything, close the operators."""
        opened: list[Operator] = []
        self.queries.reopen()
        try:
            for op in self.ops:
                op.open()
                opened.append(op)
            for driver, _, _ in self.sources:
                driver.open(self.clock)
            with throughput_gc():
                self._loop(cancelled)
            if self.commit_on_close and not cancelled():
                self.commit_final()
        finally:
            self.queries.close("the job has finished: its state is no longer held")
            errors: list[BaseException] = []
            for op in opened:
                try:
                    op.close()
                except BaseException as exc:  # keep closing the others
                    errors.append(exc)
            for driver, _, _ in self.sources:
                driver.close()
            if errors and not isinstance(_current_exception(), BaseException):
                raise errors[0]

    def _loop(self, cancelled: Callable[[], bool]) -> None:
        active = [d for d, _, _ in self.sources]
        self.propagate()
        while active and not cancelled():
            progressed = self.poll_sources(active)
            self.propagate()
            self.queries.serve()
            if not progressed:
                self._wait_for_work(active)
        if cancelled():
            return
        self.propagate()
        self._drain_processing_time()
        stalled = [op for op in self.ops if self._out_wm[op] < MAX_TIMESTAMP_US]
        if stalled:
            op = stalled[0]
            raise PipelineExecutionError(
                op.label,
                "the pipeline stalled: every source is done but this step's watermark is stuck at "
                f"{self._out_wm[op]} µs (it still holds buffered data)",
            )

    def poll_sources(self, active: list[SourceDriver]) -> bool:
        """Poll each active source once, pushing what it read; drop finished ones.

        Returns whether anything happened (a bundle, a clock move, a source ending).
        """
        progressed = False
        for driver in list(active):
            event = driver.poll(self.clock)
            if event.bundle:
                driver.emit(event.bundle)
                progressed = True
            if event.processing_time is not None:
                self.clock.advance_to(event.processing_time)
                progressed = True
            self._out_wm[driver] = driver.watermark
            if driver.done:
                active.remove(driver)
                progressed = True
        return progressed

    def _wait_for_work(self, active: list[SourceDriver]) -> None:
        deadlines = [d for d in (op.next_processing_deadline() for op in self.ops) if d is not None]
        now = self.clock.now_us()
        wait = 0.005
        if deadlines:
            wait = min(wait, max(0.0, (min(deadlines) - now) / 1e6))
        for driver in active:
            hint = driver.idle_hint()
            if hint is not None:
                wait = min(wait, hint)
        if wait > 0 and isinstance(self.clock, WallClock):
            time.sleep(wait)

    def _drain_processing_time(self) -> None:
        """At the end of input, fire processing-time triggers that are still waiting."""
        for _ in range(10_000):
            deadlines = [d for d in (op.next_processing_deadline() for op in self.ops) if d is not None]
            if not deadlines:
                return
            if isinstance(self.clock, WallClock):
                return  # windows close at the final watermark anyway
            self.clock.advance_to(min(deadlines))
            self.propagate()

    def propagate(self) -> None:
        """Move watermarks and processing time through the graph, in topological order."""
        now = self.clock.now_us()
        out_wm = self._out_wm
        for op in self.ops:
            mains = self._main_inputs[op]
            main_wm = min((out_wm[s] for s in mains), default=MAX_TIMESTAMP_US)
            side_wms = [out_wm[s] for s in self._side_inputs[op]]
            op.advance(main_wm, side_wms, now)
            out_wm[op] = max(out_wm[op], op.output_watermark())

    # -- checkpoints --------------------------------------------------------------
    def snapshot(self, checkpoint_id: int | None = None) -> dict[str, Any]:
        """Everything needed to resume from here: operator state, source positions, watermarks, clock.

        With ``checkpoint_id`` the transactional sinks first stage what they
        wrote since the previous checkpoint; what they staged is part of the
        snapshot until :meth:`commit` publishes it. The result holds no live
        references to operator state, so it can be pickled later.
        """
        if checkpoint_id is not None:
            for op in self.ops:
                if isinstance(op, ParDoOperator):
                    op.prepare_commit(checkpoint_id)
        backend = self.state_backend
        incremental = checkpoint_id is not None and isinstance(backend, DiskBackend)
        # Incremental (see incremental.py): only what changed since the last committed checkpoint,
        # which with the ones it needs makes this snapshot's chain; full ones start a chain.
        delta = incremental and self._chain is not None and len(self._chain) < MAX_CHAIN
        needs = list(self._chain or ()) if delta else []
        ops = []
        disk = backend if incremental and isinstance(backend, DiskBackend) else None
        if disk is not None and checkpoint_id is not None:
            disk.begin_snapshot(checkpoint_id, delta)
            self._snapshot_chains[checkpoint_id] = [*needs, checkpoint_id]
        try:
            for op in self.ops:
                base = (op.input_watermark, list(op.side_watermarks), op.processing_time, self._out_wm[op])
                uncommitted = dict(op.uncommitted) if isinstance(op, ParDoOperator) else {}
                ops.append((op.label, base, op.snapshot(), uncommitted))
        finally:
            if disk is not None:
                disk.end_snapshot()
        return {
            "needs": needs,
            "ops": ops,
            "sources": {d.label: {"offset": d.offset, "watermark": d.watermark, "done": d.done} for d, _, _ in self.sources},
            "remote": {edge: list(r.sender_watermarks) for edge, r in self.remote_inputs.items()},
            "clock": self.clock.now_us(),
        }

    def restore(self, snap: dict[str, Any], commit: bool = True) -> None:
        """Continue from ``snap`` (call before :meth:`run` or before opening the sources).

        With ``commit`` the sinks publish what the snapshot staged: a snapshot
        is only restored from a complete checkpoint, and publishing is idempotent.
        """
        labels = [entry[0] for entry in snap["ops"]]
        if labels != [op.label for op in self.ops]:
            raise PipelineExecutionError(
                "checkpoint",
                "the checkpoint was written by a different pipeline (its steps are "
                f"{labels}, this pipeline's are {[op.label for op in self.ops]})",
            )
        by_label = {d.label: d for d, _, _ in self.sources}
        if set(by_label) != set(snap["sources"]):
            raise PipelineExecutionError(
                "checkpoint",
                f"the checkpoint was written by a pipeline with other sources ({sorted(snap['sources'])}, "
                f"this pipeline reads {sorted(by_label)})",
            )
        for op, (_label, base, extra, uncommitted) in zip(self.ops, snap["ops"]):
            op.input_watermark, side, op.processing_time, self._out_wm[op] = base
            op.side_watermarks = list(side)
            if extra is not None:
                op.restore(extra)
            if isinstance(op, ParDoOperator):
                op.uncommitted = dict(uncommitted)
        for label, pos in snap["sources"].items():
            d = by_label[label]
            d.offset, d.watermark, d.done = pos["offset"], pos["watermark"], pos["done"]
            self._out_wm[d] = d.watermark
        for edge, watermarks in snap["remote"].items():
            remote = self.remote_inputs[edge]
            remote.sender_watermarks = list(watermarks)
            self._out_wm[remote] = remote.watermark
        self.clock.advance_to(snap["clock"])
        # The restored state is the base now, but not as a chain this executor wrote: the next
        # checkpoint is a full one.
        self._chain = None
        self._snapshot_chains = {}
        if isinstance(self.state_backend, DiskBackend):
            self.state_backend.forget_changes()
        if commit:
            self.commit(FINAL_CHECKPOINT)

    @staticmethod
    def parts_for(index: int, count: int, old_count: int, max_parallelism: int, split_readers: list[bool]) -> list[int]:
        """Which old instances' snapshots instance ``index`` of ``count`` needs for a restore at a new parallelism.

        Those whose key groups overlap its range, the one(s) whose other state
        it takes over (old instance ``j`` goes to new instance ``j % count``),
        and those that read a split or partition it reads now
        (``split_readers[j]``: whether old instance ``j`` read one of them).

        >>> LocalExecutor.parts_for(0, 1, 2, 128, [True, True])   # at parallelism 1: everything
        [0, 1]
        >>> LocalExecutor.parts_for(2, 3, 2, 128, [False, True])  # groups 86..127 were old instance 1's
        [1]
        """
        needed = set(overlapping(index, count, old_count, max_parallelism))
        needed |= {j for j in range(old_count) if j % count == index}
        needed |= {j for j, reads in enumerate(split_readers) if reads}
        return sorted(needed)

    def merge_snapshots(self, parts: dict[int, dict[str, Any]], index: int, count: int) -> dict[str, Any]:
        """The snapshot instance ``index`` of ``count`` restores from, made of old instances' snapshots.

        ``parts`` maps old instance numbers to their snapshots (at least those
        :meth:`parts_for` names). Keyed state comes by key group from every old
        instance that held part of this one's range; state that belongs to no
        key (elements waiting for side inputs, what sinks staged) from the old
        instances this one takes over; each split or partition of a source
        from whichever old instance read it; watermarks are the minimum.
        """
        ordered = sorted(parts)
        snaps = [parts[j] for j in ordered]
        owned = [j % count == index for j in ordered]
        mine = key_group_range(index, count, self.key_groups.max_parallelism)
        for snap in snaps:
            labels = [entry[0] for entry in snap["ops"]]
            if labels != [op.label for op in self.ops]:
                raise PipelineExecutionError(
                    "checkpoint",
                    "the checkpoint was written by a different pipeline (its steps are "
                    f"{labels}, this pipeline's are {[op.label for op in self.ops]})",
                )
        ops = []
        for k, op in enumerate(self.ops):
            entries = [snap["ops"][k] for snap in snaps]
            bases = [e[1] for e in entries]
            base = (
                min(b[0] for b in bases),
                [min(ws) for ws in zip(*(b[1] for b in bases))],
                max(b[2] for b in bases),
                min(b[3] for b in bases),
            )
            extra = op.rescale_snapshot([e[2] for e in entries], owned, mine) if entries[0][2] is not None else None
            from tidal.runners.core.operators import MergedHandles

            staged = MergedHandles.merge([e[3] for e, o in zip(entries, owned) if o])
            ops.append((op.label, base, extra, staged))
        sources = {}
        for d, _, _ in self.sources:
            sources[d.label] = d.merge_positions([snap["sources"][d.label] for snap in snaps if d.label in snap["sources"]])
        remote = {}
        for edge, r in self.remote_inputs.items():
            known = [w for snap in snaps for w in snap["remote"].get(edge, [])]
            remote[edge] = [min(known, default=MIN_TIMESTAMP_US)] * len(r.sender_watermarks)
        return {"ops": ops, "sources": sources, "remote": remote, "clock": max(snap["clock"] for snap in snaps)}

    def abort_after(self, checkpoint_id: int) -> None:
        """Restored from ``checkpoint_id``: sinks withdraw what later checkpoints published."""
        for op in self.ops:
            if isinstance(op, ParDoOperator):
                op.abort_after(checkpoint_id)

    def commit(self, up_to: int) -> None:
        """Checkpoints up to ``up_to`` are complete: transactional sinks publish what they staged."""
        for op in self.ops:
            if isinstance(op, ParDoOperator) and op.uncommitted:
                op.commit(up_to)
        chain = self._snapshot_chains.pop(up_to, None)
        if chain is not None:  # the next incremental snapshot builds on checkpoint up_to
            self._chain = chain
            self._snapshot_chains = {cid: c for cid, c in self._snapshot_chains.items() if cid > up_to}
            if isinstance(self.state_backend, DiskBackend):
                self.state_backend.committed(up_to)

    def commit_final(self) -> None:
        """The end of the input: stage and publish the sinks' remaining output."""
        for op in self.ops:
            if isinstance(op, ParDoOperator):
                op.prepare_commit(FINAL_CHECKPOINT)
        self.commit(FINAL_CHECKPOINT)

    def metrics(self) -> list[MetricsContainer]:
        return [op.metrics for op in self.ops] + [d.metrics for d, _, _ in self.sources]

    # -- queryable state ----------------------------------------------------------
    def read_state(self, step: str, state_name: str, key: Any, window: Any = None) -> Any:
        """A copy of one state cell of step ``step`` (call it on the thread that runs the operators)."""
        spec, window = check_query(self.plan, step, state_name, window)
        for op in self.ops:
            if op.label == step:
                return read_cell(op.store, key, window, spec)  # type: ignore[attr-defined]
        raise StateQueryError(f"step {step!r} does not run in this executor (another worker holds it)")

    def query_state(self, step: str, state_name: str, key: Any, window: Any = None, timeout: float = 30.0) -> Any:
        """:meth:`read_state` from any thread: the running loop answers it between bundles."""
        check_query(self.plan, step, state_name, window)  # a bad name is refused here, without waiting
        answer = self.queries.submit(lambda: self.read_state(step, state_name, key, window))
        try:
            return answer.result(timeout)
        except TimeoutError:
            answer.cancel()
            raise StateQueryError(
                f"the state query of step {step!r} got no answer in {timeout:g} s (the job is busy in one bundle, "
                "or has not started reading yet)"
            ) from None

    def iter_operators(self) -> Iterator[Operator]:
        return iter(self.ops)


def _current_exception() -> BaseException | None:
    import sys

    return sys.exc_info()[1]
