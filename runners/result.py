"""RunningResult: a PipelineResult for a job that runs in the foreground or on a thread."""

from __future__ import annotations

import threading
from typing import Any, Callable

from tidal.model.metrics import MetricResults, MetricsContainer
from tidal.model.result import PipelineResult, PipelineState
from tidal.runners.core.queryable import JobFinishedError, StateQueryError

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
        #: The executor that runs the job in this process (direct, micro-batch): it answers state queries.
        self._executor: Any = None

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

    def query_state(self, step: str, state_name: str, key: Any, window: Any = None, timeout: float = 30.0) -> Any:
        """The current value of ``key``'s state ``state_name`` in step ``step`` of the running job.

        ``step`` is the full label of a stateful DoFn's step, ``state_name``
        the name of one of its state specs; ``window`` is the window whose
        state to read (None: the global window). The answer is a copy, as
        the DoFn would read it: a value (None when unset), a list for bag
        state, a set for set state, the CombineFn's output for combining
        state. The job answers between two bundles, so the stream waits for
        one lookup; on Ray the worker that owns the key answers.

        An unknown step or state name raises :class:`StateQueryError` naming
        the steps and states there are; a job that has finished raises
        :class:`JobFinishedError` (read its last checkpoint with
        ``tidal.state.read_checkpoint`` instead).

        >>> import os, tempfile, time, tidal as td
        >>> stop = os.path.join(tempfile.mkdtemp(), "stop")
        >>> def events():  # three events, then an open stream until the file ``stop`` appears
        ...     yield from [("a", 1), ("a", 2), ("b", 3)]
        ...     while not os.path.exists(stop): time.sleep(0.01)
        >>> class Count(td.DoFn):
        ...     COUNT = td.ReadModifyWriteStateSpec("count")
        ...     def process(self, kv, count=td.DoFn.StateParam(COUNT)):
        ...         count.write((count.read() or 0) + 1)
        ...         yield kv[0], count.read()
        >>> p = td.Pipeline(runner="direct")
        >>> seen = p | td.Read(td.GeneratorSource(events)) | "Count" >> td.ParDo(Count())
        >>> result = p.run()
        >>> while result.query_state("Count", "count", "a") != 2: time.sleep(0.01)
        >>> result.query_state("Count", "count", "a"), result.query_state("Count", "count", "zzz")
        (2, None)
        >>> open(stop, "w").close(); result.wait_until_finish().name
        'DONE'
        >>> result.query_state("Count", "count", "a")
        Traceback (most recent call last):
        ...
        tidal.runners.core.queryable.JobFinishedError: the job has finished (DONE): its state is no longer held; read what it last checkpointed with tidal.state.read_checkpoint(CHECKPOINT_DIR)
        """
        if self._state.is_terminal:
            raise self._finished()
        try:
            return self._query_state(step, state_name, key, window, timeout)
        except JobFinishedError:
            raise self._finished() from None

    def _finished(self) -> JobFinishedError:
        state = "" if not self._state.is_terminal else f" ({self._state.name})"
        if self._error is not None:
            state = f" ({self._state.name}: {type(self._error).__name__}: {self._error})"
        return JobFinishedError(
            f"the job has finished{state}: its state is no longer held; read what it last checkpointed with "
            "tidal.state.read_checkpoint(CHECKPOINT_DIR)"
        )

    def _query_state(self, step: str, state_name: str, key: Any, window: Any, timeout: float) -> Any:
        """Hook: answer a state query of the running job (the executor in this process by default)."""
        if self._executor is None:
            raise StateQueryError("the job has not started yet: no state to query")
        return self._executor.query_state(step, state_name, key, window, timeout)

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
