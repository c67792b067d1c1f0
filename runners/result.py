"""RunningResult: a PipelineResult for a job that runs in the foreground or on a thread."""

from __future__ import annotations

import threading
from typing import Any, Callable

from tidal.model.metrics import MetricResults, MetricsContainer
from tidal.model.result import PipelineResult, PipelineState

__all__ = ["RunningResult"]


class RunningResult(PipelineResult):
    """State, error and cancellation of one run; subclasses say how to stop their workers.

    ``execute(result)`` runs the job; a bounded job calls it in the
    foreground, an unbounded one on a daemon thread (``start_thread``).
    """

    def __init__(self, metrics: Callable[[], list[MetricsContainer]] | None = None) -> None:
        self._state = PipelineState.RUNNING
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._cancelled = threading.Event()
        self._metrics_fn = metrics
        self._metrics: list[MetricsContainer] = []
        #: The checkpoint the run resumed from (after a restart: the one its last attempt restored,
        #: a batch commit on the micro-batch runner); None when it started from the beginning.
        self.restored_from: int | None = None

    def execute(self, job: Callable[[], Any]) -> None:
        """Run ``job``, recording DONE, CANCELLED or FAILED (with the error)."""
        try:
            job()
        except BaseException as exc:
            if self._cancelled.is_set():
                self._state = PipelineState.CANCELLED
                return
            self._error = exc
            self._state = PipelineState.FAILED
            return
        self._state = PipelineState.CANCELLED if self._cancelled.is_set() else PipelineState.DONE

    def start_thread(self, job: Callable[[], Any], name: str) -> None:
        self._thread = threading.Thread(target=self.execute, args=(job,), name=name, daemon=True)
        self._thread.start()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

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
        return MetricResults(self._metrics_fn() if self._metrics_fn is not None else self._metrics)

    def _stop_workers(self) -> None:
        """Hook: make the running job stop soon (the cancel flag is already set)."""

    def cancel(self) -> PipelineState:
        self._cancelled.set()
        self._stop_workers()
        if self._thread is not None:
            self._thread.join(30)
        if self._state is PipelineState.RUNNING:
            self._state = PipelineState.CANCELLED
        return self._state
