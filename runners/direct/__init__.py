"""The direct runner: in-process reference execution, batch and streaming."""

from tidal.runners.direct.runner import DirectPipelineResult, DirectRunner

__all__ = ["DirectRunner", "DirectPipelineResult"]
