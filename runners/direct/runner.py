"""DirectRunner: the in-process reference runner, batch and streaming.

Bounded pipelines run synchronously inside ``run()``. A pipeline that reads
an unbounded source runs on a background thread, so ``run()`` returns a
RUNNING result that ``wait_until_finish`` waits on and ``cancel`` stops.

In strict mode (the default) it checks, on a sample of every bundle, that
elements survive pickling and that DoFns do not mutate their inputs; turn it
off with ``DirectRunner(strict=False)`` for the last bit of speed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tidal.model.metrics import MetricResults
from tidal.model.primitives import Read
from tidal.model.teststream import TestStream
from tidal.model.result import PipelineResult, PipelineState
from tidal.runners.core.executor import LocalExecutor, ManualClock
from tidal.runners.core.plan import build_plan
from tidal.runners.runner import Runner

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["DirectRunner", "DirectPipelineResult"]


class DirectPipelineResult(PipelineResult):
    """The result of a direct-runner run (finished, or running on a thread)."""

    def __init__(self, executor: LocalExecutor) -> None:
        self._executor = executor
        self._state = PipelineState.RUNNING
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()

    def _run(self) -> None:
        try:
            self._executor.run(self._cancel.is_set)
        except BaseException as exc:
            self._error = exc
            self._state = PipelineState.FAILED
            return
        self._state = PipelineState.CANCELLED if self._cancel.is_set() else PipelineState.DONE

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tidal-direct", daemon=True)
        self._thread.start()

    @property
    def state(self) -> PipelineState:
        return self._state

    def wait_until_finish(self, duration: float | None = None) -> PipelineState:
        if self._thread is not None:
            self._thread.join(duration)
        if self._error is not None:
            raise self._error
        return self._state

    def metrics(self) -> MetricResults:
        return MetricResults(self._executor.metrics())

    def cancel(self) -> PipelineState:
        self._cancel.set()
        if self._thread is not None:
            self._thread.join()
        elif self._state is PipelineState.RUNNING:
            self._state = PipelineState.CANCELLED
        return self._state


class DirectRunner(Runner):
    """Runs a pipeline in this process, bundle by bundle, with combiner lifting."""

    name = "direct"

    def __init__(self, strict: bool = True, bundle_size: int = 100_000, lift_combiners: bool = True) -> None:
        if bundle_size < 1:
            raise ValueError(f"bundle_size must be positive, got {bundle_size}")
        self.strict = strict
        self.bundle_size = bundle_size
        self.lift_combiners = lift_combiners

    def run_pipeline(self, pipeline: "Pipeline") -> PipelineResult:
        graph = pipeline.graph()
        plan = build_plan(graph, lift_combiners=self.lift_combiners)
        clock = ManualClock(0) if _has_test_stream(graph) else None
        executor = LocalExecutor(plan, bundle_size=self.bundle_size, strict=self.strict, clock=clock)
        result = DirectPipelineResult(executor)
        if _has_unbounded_source(graph):
            result._start_thread()
            return result
        result._run()
        if result._error is not None:
            raise result._error
        return result

    def __repr__(self) -> str:
        return f"DirectRunner(strict={self.strict}, bundle_size={self.bundle_size})"


def _has_unbounded_source(graph: Any) -> bool:
    return any(isinstance(n.transform, Read) and not n.transform.source.is_bounded for n in graph.primitives)


def _has_test_stream(graph: Any) -> bool:
    return any(isinstance(n.transform, TestStream) for n in graph.primitives)
