"""MicroBatchRunner: Spark-Streaming-style execution, the stream cut into small batches.

Every source is read in batches (by processing-time interval or record count,
whichever comes first); each batch runs the shared plan as a bounded job and
the watermark moves once per batch, so triggers and timers fire at batch
boundaries. Keyed sums, counts, means, minima and maxima over global, fixed or
sliding windows of an Arrow source run as Arrow group-by kernels.

With a ``commit_log`` folder every batch is a transaction: its source range
is written ahead, and after it ran the state is committed and the
transactional sinks (such as ``td.WriteToText``) publish its output. A rerun
with the same folder resumes from the newest intact commit and replays the
batch that was in flight over exactly its recorded range, so state and
published output are exactly once after a crash, and a stopped job resumes
where it stopped (see :mod:`tidal.runners.microbatch.commitlog`).

>>> import tidal as td
>>> runner = MicroBatchRunner(max_batch_size=2)
>>> p = td.Pipeline(runner=runner)
>>> _ = p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | td.CombinePerKey(sum)
>>> result = p.run()
>>> [b.records for b in result.batches]
[2, 1]
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import TYPE_CHECKING, Any

from tidal.model.options import StateOptions
from tidal.model.primitives import Read
from tidal.model.result import PipelineResult
from tidal.model.teststream import TestStream
from tidal.runners.core.checkpoint import CheckpointWarning
from tidal.runners.core.executor import ManualClock
from tidal.runners.core.plan import build_plan
from tidal.runners.core.statebackend import StateBackendSpec
from tidal.runners.microbatch.commitlog import CommitLog
from tidal.runners.microbatch.executor import BatchInfo, MicroBatchExecutor
from tidal.runners.result import RunningResult
from tidal.runners.runner import Runner

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["MicroBatchRunner", "MicroBatchPipelineResult"]


class MicroBatchPipelineResult(RunningResult):
    """The result of a micro-batch run; ``batches`` lists what every batch did."""

    def __init__(self, executor: MicroBatchExecutor) -> None:
        super().__init__(metrics=executor.metrics)
        self._executor = executor

    @property
    def batches(self) -> list[BatchInfo]:
        """One record per batch run so far: records, duration, watermark."""
        return list(self._executor.batches)


class MicroBatchRunner(Runner):
    """Runs a pipeline as a sequence of small batches, columnar where it can."""

    name = "microbatch"
    execution_model = "micro-batch"
    guarantee = (
        "exactly-once state and output with a commit log and transactional sinks (WriteToText): a "
        "batch's output is published only after its commit; other sinks see the batch in flight at a "
        "crash again (at-least-once output for that batch)"
    )
    fault_tolerance = (
        "per-batch write-ahead of source offsets, then a checksummed commit of the state and the sinks' "
        "staged output after the batch; a restart resumes from the newest intact commit (a partial or "
        "damaged one is skipped) and replays the batch in flight over its recorded offsets"
    )
    #: Notes for capability-matrix rows: what a user should know even where every case passes.
    capability_notes: dict[str, str] = {
        "processing-time triggers": (
            "processing-time triggers and timers fire at batch boundaries, so their latency "
            "is up to one batch interval"
        ),
        "Exactly-once after failure": (
            "with a commit log (with_checkpoint_dir): the batch in flight at a crash is replayed over its "
            "recorded offsets; WriteToText publishes its output once, other sinks see it again"
        ),
    }
    #: Where the micro-batch answer differs from the direct runner's, by capability-matrix row or case.
    declared_limitations: dict[str, str] = {
        "unbounded.behind_watermark_dropped": (
            "the watermark moves once per batch: an element behind a watermark that its own batch "
            "raised is not late yet, so it is kept"
        ),
    }
    #: A run given a checkpoint folder (``with_checkpoint_dir``) resumes from it after a failure.
    supports_checkpoint_restore = True

    def __init__(
        self,
        batch_interval: float = 1.0,
        max_batch_size: int = 100_000,
        commit_log: str | os.PathLike[str] | None = None,
        bundle_size: int | None = None,
        columnar: bool = True,
        lift_combiners: bool = True,
        strict: bool = False,
    ) -> None:
        if batch_interval <= 0:
            raise ValueError(f"batch_interval must be positive, got {batch_interval}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be positive, got {max_batch_size}")
        self.batch_interval = batch_interval
        self.max_batch_size = max_batch_size
        self.commit_log = commit_log
        self.bundle_size = bundle_size or max_batch_size
        self.columnar = columnar
        self.lift_combiners = lift_combiners
        self.strict = strict

    def run_pipeline(self, pipeline: "Pipeline") -> PipelineResult:
        graph = pipeline.graph()
        plan = build_plan(graph, lift_combiners=self.lift_combiners, state_backend=StateBackendSpec.from_options(pipeline.options))
        clock = ManualClock(0) if any(isinstance(n.transform, TestStream) for n in graph.primitives) else None
        key = pipeline.options.view_as(StateOptions).checkpoint_key
        log = CommitLog(self.commit_log, key=key) if self.commit_log is not None else None
        if log is not None:
            log.check_writable()
        executor = MicroBatchExecutor(
            plan,
            batch_interval=self.batch_interval,
            max_batch_size=self.max_batch_size,
            commit_log=log,
            bundle_size=self.bundle_size,
            strict=self.strict,
            clock=clock,
            columnar=self.columnar,
            publish_each_batch=_has_unbounded_source(graph),
        )
        result = MicroBatchPipelineResult(executor)
        result.restored_from = executor.restored_from
        if _has_unbounded_source(graph):
            result.start_thread(lambda: executor.run(lambda: result.cancelled), "tidal-microbatch")
            return result
        result.execute(lambda: executor.run(result._cancelled.is_set))
        if result._error is not None:
            raise result._error
        return result

    def job_finished(self, directory: str | os.PathLike[str]) -> bool:
        """Whether the commit log in ``directory`` ends with the end of the input: resuming reads nothing."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointWarning)  # a resumed run reports damage itself
            return os.path.isdir(directory) and CommitLog(directory).finished()

    def with_checkpoint_dir(self, directory: str | os.PathLike[str]) -> "MicroBatchRunner":
        """The same runner with its commit log in ``directory``: a rerun after a failure or a stop resumes from it."""
        clone = copy.copy(self)
        clone.commit_log = directory
        return clone

    def __repr__(self) -> str:
        return (
            f"MicroBatchRunner(batch_interval={self.batch_interval}, max_batch_size={self.max_batch_size}, "
            f"commit_log={self.commit_log!r})"
        )


def _has_unbounded_source(graph: Any) -> bool:
    return any(isinstance(n.transform, Read) and not n.transform.source.is_bounded for n in graph.primitives)
