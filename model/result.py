"""PipelineResult: the handle a run returns — its state, metrics and cancellation."""

from __future__ import annotations

import abc
import enum

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
