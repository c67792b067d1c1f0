"""DirectRunner: the in-process reference runner, batch and streaming.

Bounded pipelines run synchronously inside ``run()``. A pipeline that reads
an unbounded source runs on a background thread, so ``run()`` returns a
RUNNING result that ``wait_until_finish`` waits on and ``cancel`` stops.

In strict mode (the default) it checks, on a sample of every bundle, that
elements survive pickling and that DoFns do not mutate their inputs; turn it
off with ``DirectRunner(strict=False)`` for the last bit of speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidal.model.primitives import Read
from tidal.model.teststream import TestStream
from tidal.model.result import PipelineResult
from tidal.runners.core.executor import LocalExecutor, ManualClock
from tidal.runners.core.plan import build_plan
from tidal.runners.core.statebackend import StateBackendSpec
from tidal.runners.result import RunningResult
from tidal.runners.runner import Runner

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["DirectRunner", "DirectPipelineResult"]


class DirectPipelineResult(RunningResult):
    """The result of a direct-runner run (finished, or running on a thread)."""

    def __init__(self, executor: LocalExecutor) -> None:
        super().__init__(metrics=executor.metrics)
        self._executor = executor

    def run(self) -> None:
        self.execute(lambda: self._executor.run(self._cancelled.is_set))


class DirectRunner(Runner):
    """Runs a pipeline in this process, bundle by bundle, with combiner lifting."""

    name = "direct"
    execution_model = "native streaming (in-process, element by element in bundles)"
    guarantee = "exactly-once (single process, no failures)"
    fault_tolerance = "none: a failed run is rerun from the start"
    supports_checkpoint_restore = False
    #: Known limitations, by capability-matrix row or case id (see tidal.capability_matrix.limitations).
    declared_limitations: dict[str, str] = {
        "Exactly-once after failure": "no checkpoints: a failed run is rerun from the start",
        "Incremental checkpoints": "no checkpoints: a failed run is rerun from the start",
    }

    def __init__(self, strict: bool = True, bundle_size: int = 100_000, lift_combiners: bool = True) -> None:
        if bundle_size < 1:
            raise ValueError(f"bundle_size must be positive, got {bundle_size}")
        self.strict = strict
        self.bundle_size = bundle_size
        self.lift_combiners = lift_combiners

    def run_pipeline(self, pipeline: "Pipeline") -> PipelineResult:
        graph = pipeline.graph()
        plan = build_plan(graph, lift_combiners=self.lift_combiners, state_backend=StateBackendSpec.from_options(pipeline.options))
        clock = ManualClock(0) if _has_test_stream(graph) else None
        executor = LocalExecutor(plan, bundle_size=self.bundle_size, strict=self.strict, clock=clock)
        result = DirectPipelineResult(executor)
        if _has_unbounded_source(graph):
            result.start_thread(lambda: executor.run(lambda: result.cancelled), "tidal-direct")
            return result
        result.run()
        if result._error is not None:
            raise result._error
        return result

    def __repr__(self) -> str:
        return f"DirectRunner(strict={self.strict}, bundle_size={self.bundle_size})"


def _has_unbounded_source(graph: Any) -> bool:
    return any(isinstance(n.transform, Read) and not n.transform.source.is_bounded for n in graph.primitives)


def _has_test_stream(graph: Any) -> bool:
    return any(isinstance(n.transform, TestStream) for n in graph.primitives)
