"""PipelineOptions and its standard views at Beam's path ``apache_beam.options.pipeline_options``.

>>> from tidal.options.pipeline_options import PipelineOptions, StandardOptions
>>> PipelineOptions(["--runner=ray"]).view_as(StandardOptions).runner
'ray'
"""

from tidal.model.options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    StateOptions,
    StreamingOptions,
    TypeOptions,
)

__all__ = [
    "DebugOptions", "DirectOptions", "PipelineOptions", "SetupOptions", "StandardOptions", "StateOptions",
    "StreamingOptions", "TypeOptions",
]
