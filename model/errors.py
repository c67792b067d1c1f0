"""Errors of pipeline construction (a leaf module, so every model module can raise them)."""

__all__ = ["PipelineError"]


class PipelineError(ValueError):
    """A pipeline was built wrongly; the message names the step."""
