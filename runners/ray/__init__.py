"""The Ray runner: stages as Ray actors, locally or on a cluster."""

from tidal.runners.ray.runner import RayPipelineResult, RayRunner

__all__ = ["RayRunner", "RayPipelineResult"]
