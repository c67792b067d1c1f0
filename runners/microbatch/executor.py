"""MicroBatchExecutor: the shared plan run one batch at a time.

Each batch reads every active source up to ``max_batch_size`` records or for
``batch_interval`` seconds of processing time, whichever comes first (a
TestStream's batch also ends at each of its watermark or processing-time
events). The batch is committed to the commit log (where each source started
and ends, plus the operators' state) before any of it is processed; then its
bundles go through the operators and the watermarks move once, so triggers
and timers are evaluated at batch boundaries. Keyed state, window state and
watermarks live in the operators and so carry from batch to batch.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import attrs

from tidal.model.metrics import Metrics, MetricsContainer, set_current_container
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.runners.core.errors import PipelineExecutionError
from tidal.runners.core.executor import Clock, LocalExecutor
from tidal.runners.core.operators import Operator, ParDoOperator, PrecombineOperator
from tidal.runners.core.plan import ExecutionPlan
from tidal.runners.core.sources import SourceDriver
from tidal.runners.core.streaming import TestStreamDriver
from tidal.runners.microbatch.commitlog import CommitLog

__all__ = ["BatchInfo", "MicroBatchExecutor"]

_BATCHES = Metrics.counter("tidal.microbatch", "batches")
_RECORDS = Metrics.distribution("tidal.microbatch", "batch_records")
_DURATION = Metrics.distribution("tidal.microbatch", "batch_duration_ms")
_WATERMARK = Metrics.gauge("tidal.microbatch", "watermark_us")
_LAST_RECORDS = Metrics.gauge("tidal.microbatch", "last_batch_records")


@attrs.frozen
class BatchInfo:
    """What one batch did: how many records it read, how long it took, where the watermark got to."""

    index: int
    records: int
    duration_s: float
    #: The minimum of the sources' watermarks after the batch (µs).
    watermark_us: int
    #: Processing time at the end of the batch (µs).
    processing_time_us: int
    #: Whether the batch was re-read from the commit log after a restart.
    replayed: bool = False


class MicroBatchExecutor(LocalExecutor):
    """A LocalExecutor whose loop cuts the sources into committed batches."""

    def __init__(
        self,
        plan: ExecutionPlan,
        batch_interval: float,
        max_batch_size: int,
        commit_log: CommitLog | None = None,
        bundle_size: int = 100_000,
        strict: bool = False,
        clock: Clock | None = None,
        columnar: bool = True,
    ) -> None:
        super().__init__(plan, bundle_size=bundle_size, strict=strict, clock=clock)
        self.batch_interval = batch_interval
        self.max_batch_size = max_batch_size
        self.commit_log = commit_log
        self.batches: list[BatchInfo] = []
        self.batch_metrics = MetricsContainer("MicroBatch")
        # Source driver -> (its Arrow aggregate, the CombinePerKey operator it stands in for).
        self.columnar: dict[SourceDriver, tuple[Any, Operator]] = {}
        if columnar:
            self._install_columnar()
        self._next_index = 0
        self._replay_end: dict[str, Any] | None = None
        if commit_log is not None:
            self._resume(commit_log)

    # -- the columnar fast path -------------------------------------------------------
    def _install_columnar(self) -> None:
        from tidal.runners.microbatch.columnar import ArrowSourceDriver, ArrowWindowedCombine, find_arrow_combines

        for frag in find_arrow_combines(self.plan.graph):
            for i, (old, op, node) in enumerate(self.sources):
                if node is not frag.read:
                    continue
                new = ArrowSourceDriver(node.full_label, node.transform.source, self.bundle_size)  # type: ignore[union-attr]
                self.sources[i] = (new, op, node)
                for producers in (*self._main_inputs.values(), *self._side_inputs.values()):
                    producers[:] = [new if p is old else p for p in producers]
                self._out_wm[new] = self._out_wm.pop(old)
                self.columnar[new] = (ArrowWindowedCombine(frag), self.op_of[frag.combine])

    def propagate(self) -> None:
        # Fire the Arrow aggregates first, so their panes reach the downstream
        # operators before those see the watermark move.
        for driver, (agg, op) in self.columnar.items():
            out = agg.advance(self._out_wm[driver])
            if out:
                op.emit("out", out)
        super().propagate()

    # -- positions, state and the commit log ------------------------------------------
    def _positions(self) -> dict[str, Any]:
        return {d.label: {"offset": d.offset, "watermark": d.watermark, "done": d.done} for d, _, _ in self.sources}

    def _snapshot_ops(self) -> dict[str, Any]:
        ops = []
        for op in self.ops:
            base = (op.input_watermark, list(op.side_watermarks), op.processing_time, self._out_wm[op])
            if isinstance(op, PrecombineOperator):
                extra: Any = dict(op.table)
            elif type(op) is ParDoOperator:
                extra = (list(op.pending), [dict(d) for d in op.side_data])
            else:
                extra = op.snapshot()
            ops.append((base, extra))
        return {"ops": ops, "columnar": [agg.snapshot() for agg, _ in self.columnar.values()]}

    def _restore_ops(self, snap: dict[str, Any]) -> None:
        if len(snap["ops"]) != len(self.ops):
            raise PipelineExecutionError("MicroBatch", "the commit log was written by a different pipeline")
        for op, (base, extra) in zip(self.ops, snap["ops"]):
            op.input_watermark, op.side_watermarks, op.processing_time, self._out_wm[op] = base
            if isinstance(op, PrecombineOperator):
                op.table = extra
            elif type(op) is ParDoOperator:
                assert isinstance(op, ParDoOperator)
                op.pending = extra[0]
                op.side_data[:] = extra[1]
                resolver = op.invoker.side_inputs
                if resolver is not None:
                    for cache in resolver._cache:
                        cache.clear()
            elif extra is not None:
                op.restore(extra)
        for (agg, _), agg_snap in zip(self.columnar.values(), snap["columnar"]):
            agg.restore(agg_snap)

    def _resume(self, log: CommitLog) -> None:
        """Start from the last committed batch: its state, its start positions, its end."""
        last = log.last()
        if last is None:
            return
        record, state = last
        by_label = {d.label: d for d, _, _ in self.sources}
        if set(by_label) != set(state["start"]):
            raise PipelineExecutionError("MicroBatch", "the commit log was written by a pipeline with other sources")
        for label, pos in state["start"].items():
            d = by_label[label]
            d.offset, d.watermark, d.done = pos["offset"], pos["watermark"], pos["done"]
            self._out_wm[d] = d.watermark
        self.clock.advance_to(state["clock"])
        self._restore_ops(state)
        self._next_index = record["batch"]
        self._replay_end = state["end"]

    # -- the batch loop ---------------------------------------------------------------
    def _loop(self, cancelled: Callable[[], bool]) -> None:
        active = [d for d, _, _ in self.sources if not d.done]
        self.propagate()
        while active and not cancelled():
            if not self.run_batch(active):
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

    def run_batch(self, active: list[SourceDriver]) -> bool:
        """Cut, commit and process one batch; False when no source had anything."""
        started = time.perf_counter()
        replay, self._replay_end = self._replay_end, None
        start = self._positions()
        clock_at_start = self.clock.now_us()
        cut = self._cut(active, replay)
        end = self._positions()
        if end == start and not any(bundles or pt is not None for bundles, pt in cut.values()):
            return False
        index = self._next_index
        self._next_index += 1
        records = sum(len(b) for bundles, _ in cut.values() for b in bundles)
        if self.commit_log is not None:
            state = self._snapshot_ops()
            state.update(start=start, end=end, clock=clock_at_start)
            self.commit_log.write(index, {"start": start, "end": end, "records": records}, state)
        for driver, (bundles, pt) in cut.items():
            columnar = self.columnar.get(driver)
            if columnar is not None:
                agg, op = columnar
                before = agg.dropped
                for table in bundles:
                    agg.process(table)
                if agg.dropped > before:
                    op._count_dropped(agg.dropped - before)  # type: ignore[attr-defined]
            else:
                for bundle in bundles:
                    driver.emit(bundle)
            if pt is not None:
                self.clock.advance_to(pt)
            self._out_wm[driver] = driver.watermark
            if driver.done:
                active.remove(driver)
        self.propagate()
        self._record(index, records, time.perf_counter() - started, replay is not None)
        return True

    def _cut(self, active: list[SourceDriver], replay: dict[str, Any] | None) -> dict[SourceDriver, tuple[list[Any], int | None]]:
        """Read this batch from every active source (to the recorded end when replaying)."""
        deadline = time.perf_counter() + self.batch_interval
        cut: dict[SourceDriver, tuple[list[Any], int | None]] = {d: ([], None) for d in active}
        counts = {d: 0 for d in active}
        if replay is None:
            reading = list(active)
        else:
            reading = [d for d in active if replay[d.label] != {"offset": d.offset, "watermark": d.watermark, "done": d.done}]
        while reading:
            got_data = False
            for d in list(reading):
                target = replay[d.label]["offset"] if replay is not None else None
                if target is not None:
                    limit = target - d.offset if isinstance(target, int) and isinstance(d.offset, int) else self.bundle_size
                else:
                    limit = min(self.bundle_size, self.max_batch_size - counts[d])
                _set_read_limit(d, max(1, limit))
                event = d.poll(self.clock)
                bundles, pt = cut[d]
                finished = d.done
                if event.bundle is not None and len(event.bundle):
                    bundles.append(event.bundle)
                    counts[d] += len(event.bundle)
                    got_data = True
                elif isinstance(d, TestStreamDriver) or d.idle_hint() is None:
                    finished = True  # a scripted watermark/clock event, or a bounded source ran dry
                if event.processing_time is not None:
                    cut[d] = (bundles, event.processing_time)
                    finished = True
                if target is not None:
                    finished = finished or d.offset == target
                else:
                    finished = finished or counts[d] >= self.max_batch_size
                if finished:
                    reading.remove(d)
            if not reading or (replay is None and time.perf_counter() >= deadline):
                break
            if not got_data:
                hints = [h for h in (d.idle_hint() for d in reading) if h is not None]
                time.sleep(min(hints, default=0.001))
        return cut

    def _record(self, index: int, records: int, duration: float, replayed: bool) -> None:
        watermark = min((self._out_wm[d] for d, _, _ in self.sources), default=MAX_TIMESTAMP_US)
        info = BatchInfo(index, records, duration, watermark, self.clock.now_us(), replayed)
        self.batches.append(info)
        previous = set_current_container(self.batch_metrics)
        try:
            _BATCHES.inc()
            _RECORDS.update(records)
            _DURATION.update(duration * 1000)
            _WATERMARK.set(watermark)
            _LAST_RECORDS.set(records)
        finally:
            set_current_container(previous)

    def metrics(self) -> list[MetricsContainer]:
        return super().metrics() + [self.batch_metrics]


def _set_read_limit(driver: SourceDriver, limit: int) -> None:
    """Make the next poll of ``driver`` read at most ``limit`` records."""
    if hasattr(driver, "bundle_size"):
        driver.bundle_size = limit
    if hasattr(driver, "max_bundle"):
        driver.max_bundle = limit

