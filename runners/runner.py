"""Runner: the base class every execution engine implements."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline
    from tidal.model.result import PipelineResult

__all__ = ["Runner"]


class Runner(abc.ABC):
    """Runs a pipeline's primitive graph; returns a PipelineResult."""

    #: The name under which the runner is registered ("direct", "ray", ...).
    name: str = ""

    @abc.abstractmethod
    def run_pipeline(self, pipeline: "Pipeline") -> "PipelineResult":
        """Run ``pipeline`` (synchronously or not) and return its result handle."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
