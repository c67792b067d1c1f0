"""PipelineResult: the handle a run returns — its state, metrics and cancellation."""

from __future__ import annotations

import abc
import enum
from typing import Any

from tidal.model.metrics import MetricResults

__all__ = ["PipelineState", "PipelineResult"]


class PipelineState(enum.Enum):
    """Where a pipeline run is."""

    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self is not PipelineState.RUNNING


class PipelineResult(abc.ABC):
    """The result of ``Pipeline.run()``."""

    @property
    @abc.abstractmethod
    def state(self) -> PipelineState:
        """The current state of the run."""

    @abc.abstractmethod
    def wait_until_finish(self, duration: float | None = None) -> PipelineState:
        """Block until the run ends (or ``duration`` seconds pass); re-raise its error."""

    @abc.abstractmethod
    def metrics(self) -> MetricResults:
        """User metrics merged from every worker."""

    @abc.abstractmethod
    def cancel(self) -> PipelineState:
        """Stop the run; returns the resulting state."""

    def query_state(self, step: str, state_name: str, key: Any, window: Any = None, timeout: float = 30.0) -> Any:
        """A copy of ``key``'s state ``state_name`` in step ``step`` of the running job.

        The runners' results answer it (see ``tidal.runners.result.RunningResult.query_state``);
        a result without a job running in this process has no state to read and says so.
        """
        from tidal.runners.core.queryable import StateQueryError

        raise StateQueryError(f"{type(self).__name__} has no running job whose state could be read")
