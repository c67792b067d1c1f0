"""MicroBatchExecutor: the shared plan run one batch at a time.

Each batch reads every active source up to ``max_batch_size`` records or for
``batch_interval`` seconds of processing time, whichever comes first (a
TestStream's batch also ends at each of its watermark or processing-time
events). Its bundles go through the operators and the watermarks move once,
so triggers and timers are evaluated at batch boundaries. Keyed state, window
state and watermarks live in the operators and so carry from batch to batch.

With a commit log each batch is a transaction (Spark Structured Streaming's
offsets and commit logs):

1. the batch's source range is written ahead before any of it is processed;
2. the batch runs; the transactional sinks stage what it wrote
   (``prepare_commit``), and the state after the batch, with the staged
   handles, is committed;
3. the sinks publish the staged output (``commit``).

A restarted executor restores the newest intact commit, publishes its staged
output again (idempotent), and replays the batches written ahead after it,
each over exactly its recorded range. Output of a batch is published only
after its commit, and a replay stages it afresh, so the published output is
exactly once. When it falls back past damaged commits (or, with none intact,
to the beginning), the sinks first withdraw what those commits published
(``abort_after``), since the replay publishes it again. Without a commit log
the sinks publish after every batch when a source is unbounded, and at the
end of the run otherwise.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import attrs

from tidal.model.metrics import Metrics, MetricsContainer, set_current_container
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.runners.core.errors import PipelineExecutionError
from tidal.runners.core.executor import Clock, LocalExecutor
from tidal.runners.core.operators import Operator, ParDoOperator
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
        publish_each_batch: bool = False,
    ) -> None:
        super().__init__(plan, bundle_size=bundle_size, strict=strict, clock=clock)
        self.batch_interval = batch_interval
        self.max_batch_size = max_batch_size
        self.commit_log = commit_log
        self.batches: list[BatchInfo] = []
        self.batch_metrics = MetricsContainer("MicroBatch")
        # Source driver -> (its Arrow aggregate, the CombinePerKey operator it stands in for).
        self.columnar: dict[SourceDriver, tuple[Any, Operator]] = {}
        #: Source drivers that hand Arrow columns straight to a batched DoFn.
        self.arrow_pardos: list[SourceDriver] = []
        if columnar:
            self._install_columnar()
        #: Whether the sinks publish after every batch (always with a commit log), not at the end.
        self.publish_each_batch = publish_each_batch or commit_log is not None
        self._next_index = 0
        # The records of batches written ahead but never committed: replayed first, in order.
        self._replays: list[dict[str, Any]] = []
        # The batch whose commit was restored: what it staged is published once the operators are open.
        self._restored: int | None = None
        # Output published for commits after this batch is withdrawn before the run goes on (-1: all of
        # it, when commits completed but none is intact); None when nothing was published before.
        self._withdraw_after: int | None = None
        # Whether the restored commit is the end of input (the run had finished).
        self._finished = False
        if commit_log is not None:
            self._resume(commit_log)

    @property
    def restored_from(self) -> int | None:
        """The batch whose commit this run resumed from; None when it started from the beginning."""
        return self._restored

    # -- the columnar fast path -------------------------------------------------------
    def _install_columnar(self) -> None:
        from tidal.runners.microbatch.arrow_pardo import ArrowRowsSourceDriver, find_arrow_pardos
        from tidal.runners.microbatch.columnar import ArrowSourceDriver, ArrowWindowedCombine, find_arrow_combines

        # The Arrow aggregate keeps its open windows' partial aggregates in Arrow tables of its
        # own; on the disk backend, state must spill, so the grouping step keeps them instead.
        arrow_combines = find_arrow_combines(self.plan.graph) if self.state_backend.kind == "memory" else []
        for frag in arrow_combines:
            for i, (old, op, node) in enumerate(self.sources):
                if node is not frag.read:
                    continue
                new = ArrowSourceDriver(node.full_label, node.transform.source, self.bundle_size)  # type: ignore[union-attr]
                self._replace_source(i, new)
                self.columnar[new] = (ArrowWindowedCombine(frag), self.op_of[frag.combine])
        # A batched DoFn reading an Arrow source gets the source's columns as they are.
        for found in find_arrow_pardos(self.plan.graph):
            for i, (_, _, node) in enumerate(self.sources):
                if node is not found.read:
                    continue
                pardo = self.op_of[found.pardo]
                windowfn = found.pardo.inputs[0].windowing.windowfn
                rows = ArrowRowsSourceDriver(
                    node.full_label, node.transform.source, self.bundle_size, windowfn, found.pardo.transform.fn  # type: ignore[union-attr]
                )
                rows.add_receiver("out", pardo.process)  # (slot 0, the ParDo's only main input)
                self._replace_source(i, rows)
                self.arrow_pardos.append(rows)

    def _replace_source(self, index: int, new: SourceDriver) -> None:
        """Put ``new`` in place of the source driver at ``index`` (its watermark and consumers' inputs)."""
        old, op, node = self.sources[index]
        self.sources[index] = (new, op, node)
        for producers in (*self._main_inputs.values(), *self._side_inputs.values()):
            producers[:] = [new if p is old else p for p in producers]
        self._out_wm[new] = self._out_wm.pop(old)

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
        return {d.label: _position(d) for d, _, _ in self.sources}

    def _snapshot_ops(self, checkpoint_id: int | None = None) -> dict[str, Any]:
        snap = self.snapshot(checkpoint_id)
        snap["columnar"] = [agg.snapshot() for agg, _ in self.columnar.values()]
        return snap

    def _restore_ops(self, snap: dict[str, Any]) -> None:
        self.restore(snap, commit=False)
        for (agg, _), agg_snap in zip(self.columnar.values(), snap["columnar"]):
            agg.restore(agg_snap)

    def _identity(self) -> dict[str, Any]:
        """What the commit log records to tell this pipeline from another: its steps and sources."""
        return {"steps": [op.label for op in self.ops], "sources": sorted(d.label for d, _, _ in self.sources)}

    def _check_identity(self, log: CommitLog, recorded: dict[str, Any], what: str) -> None:
        mine = self._identity()
        theirs = {"steps": recorded.get("steps"), "sources": recorded.get("sources")}
        if theirs != mine:
            raise PipelineExecutionError(
                "MicroBatch",
                f"the commit log in {log.directory} was written by a different pipeline (its {what} has the steps "
                f"{theirs['steps']} reading {theirs['sources']}; this pipeline has the steps {mine['steps']} reading "
                f"{mine['sources']}): give this pipeline a commit log folder of its own, or remove that one to start over",
            )

    def _resume(self, log: CommitLog) -> None:
        """Restore the newest intact commit, and queue the batches written ahead after it for replay."""
        latest = log.latest()
        committed = -1
        if latest is not None:
            committed, meta, state = latest
            self._check_identity(log, meta, f"commit of batch {committed}")
            self._restore_ops(state)
            self._restored = committed
            self._withdraw_after = committed
            self._finished = bool(meta.get("final"))
        elif log.commits.completed_ids():
            # Commits completed but none is intact now: the run starts from the beginning, so the
            # output those commits published is withdrawn (the replay publishes it again).
            self._withdraw_after = -1
        planned = [i for i in log.planned_indices() if i > committed]
        unbroken = planned == list(range(committed + 1, committed + 1 + len(planned)))
        if not unbroken or (latest is None and log.committed_indices() and not planned):
            raise PipelineExecutionError(
                "MicroBatch",
                f"cannot resume from the commit log in {log.directory}: the batches it recorded (written ahead: "
                f"{planned or 'none'}) do not follow on from an intact commit (newest intact commit: "
                f"{'none' if latest is None else committed}), so the state cannot be rebuilt; remove the folder to start over",
            )
        for index in planned:
            record = log.planned(index)
            self._check_identity(log, record, f"batch {index}")
            self._replays.append(record)
        self._next_index = committed + 1

    def _commit(self, index: int, meta: dict[str, Any]) -> None:
        """Stage the sinks' output, commit the state after batch ``index``, then publish the output."""
        assert self.commit_log is not None
        state = self._snapshot_ops(checkpoint_id=index)
        self.commit_log.commit(index, state, dict(meta, **self._identity()))
        self.commit(index)

    def _publish(self, index: int) -> None:
        """Without a commit log: stage and publish at once what the sinks wrote in batch ``index``."""
        for op in self.ops:
            if isinstance(op, ParDoOperator):
                op.prepare_commit(index)
        self.commit(index)

    def commit_final(self) -> None:
        """The end of input; with a commit log it is committed like a batch, so a rerun publishes nothing twice."""
        if self.commit_log is None:
            super().commit_final()
        elif not self._finished:
            self._commit(self._next_index, {"records": 0, "final": True})
            self._next_index += 1
            self._finished = True

    # -- the batch loop ---------------------------------------------------------------
    def _loop(self, cancelled: Callable[[], bool]) -> None:
        active = [d for d, _, _ in self.sources if not d.done]
        if self._withdraw_after is not None:
            # Output later commits published is withdrawn (a damaged newer commit was skipped,
            # so those batches run again) ...
            self.abort_after(self._withdraw_after)
        if self._restored is not None:
            # ... then what the restored commit staged is published again.
            self.commit(self._restored)
        self.propagate()
        while active and not cancelled():
            ran = self.run_batch(active)
            self.queries.serve()
            if not ran:
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
        """Cut, write ahead, process and commit one batch; False when no source had anything."""
        started = time.perf_counter()
        replay = self._replays.pop(0) if self._replays else None
        index = self._next_index
        start = self._positions()
        if replay is not None and replay["start"] != start:
            raise PipelineExecutionError(
                "MicroBatch",
                f"batch {index} cannot be replayed: the commit log recorded that it starts at {replay['start']}, "
                f"but the restored sources stand at {start}",
            )
        cut = self._cut(active, None if replay is None else replay["end"])
        end = self._positions()
        if replay is not None and end != replay["end"]:
            raise PipelineExecutionError(
                "MicroBatch",
                f"batch {index} cannot be replayed: the commit log recorded that it ends at {replay['end']}, but "
                f"reading again from {start} ends at {end} (a source must give the same records again from an offset)",
            )
        if end == start and not any(bundles or pt is not None for bundles, pt in cut.values()):
            return False
        self._next_index += 1
        records = sum(len(b) for bundles, _ in cut.values() for b in bundles)
        if self.commit_log is not None and replay is None:
            self.commit_log.write_ahead(index, {"start": start, "end": end, "records": records, **self._identity()})
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
        if self.commit_log is not None:
            self._commit(index, {"records": records})
        elif self.publish_each_batch:
            self._publish(index)
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
            reading = [d for d in active if replay[d.label] != _position(d)]
        while reading:
            got_data = False
            for d in list(reading):
                if replay is not None:
                    limit = _records_to(d, replay[d.label]["offset"], self.bundle_size)
                else:
                    limit = min(self.bundle_size, self.max_batch_size - counts[d])
                _set_read_limit(d, max(1, limit), None if replay is None else replay[d.label]["offset"])
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
                if replay is not None:
                    finished = finished or _position(d) == replay[d.label]
                else:
                    finished = finished or counts[d] >= self.max_batch_size
                if finished:
                    reading.remove(d)
            if not reading or (replay is None and time.perf_counter() >= deadline):
                break
            self.queries.serve()  # between polls no operator is processing: the batch waits one lookup
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


def _position(driver: SourceDriver) -> dict[str, Any]:
    """Where a source stands: its offset, its watermark and whether it is done."""
    return {"offset": driver.offset, "watermark": driver.watermark, "done": driver.done}


def _records_to(driver: SourceDriver, target: Any, default: int) -> int:
    """How many records ``driver`` reads to reach offset ``target`` (``default`` where offsets are not counts)."""
    current = 0 if driver.offset is None else driver.offset
    if isinstance(target, int) and isinstance(current, int):
        return target - current
    return default


def _set_read_limit(driver: SourceDriver, limit: int, end: Any = None) -> None:
    """Make the next poll of ``driver`` read at most ``limit`` records, and none past offset ``end``."""
    if hasattr(driver, "bundle_size"):
        driver.bundle_size = limit
    if hasattr(driver, "max_bundle"):
        driver.max_bundle = limit
    if hasattr(driver, "read_end"):
        driver.read_end = end

