"""Runner: the base class every execution engine implements."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from tidal.model.result import PipelineResult, PipelineState

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["PipelineResult", "PipelineRunner", "PipelineState", "Runner"]


class Runner(abc.ABC):
    """Runs a pipeline's primitive graph; returns a PipelineResult."""

    #: The name under which the runner is registered ("direct", "ray", ...).
    name: str = ""
    #: What the capability matrix's system comparison shows; runners override them.
    execution_model: str = ""
    guarantee: str = ""
    fault_tolerance: str = ""
    #: Whether the runner can resume a crashed run from a checkpoint directory.
    supports_checkpoint_restore: bool = False
    #: Known gaps, by case id or row: the matrix shows them as cell notes.
    declared_limitations: dict[str, str] = {}
    #: Notes that explain a row without any failing case (never reported as stale).
    capability_notes: dict[str, str] = {}

    @abc.abstractmethod
    def run_pipeline(self, pipeline: "Pipeline") -> "PipelineResult":
        """Run ``pipeline`` (synchronously or not) and return its result handle."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: Beam's name for the runner base class (``apache_beam.runners.runner.PipelineRunner``).
PipelineRunner = Runner
