"""Triggers at Beam's path ``apache_beam.transforms.trigger`` (also ``tidal.trigger``)."""

from tidal.model.trigger import (
    AccumulationMode,
    AfterAll,
    AfterAny,
    AfterCount,
    AfterEach,
    AfterProcessingTime,
    AfterWatermark,
    Always,
    DefaultTrigger,
    Never,
    OrFinally,
    PaneInfo,
    PaneInfoTiming,
    Repeatedly,
    Trigger,
)

__all__ = [
    "AccumulationMode", "AfterAll", "AfterAny", "AfterCount", "AfterEach", "AfterProcessingTime",
    "AfterWatermark", "Always", "DefaultTrigger", "Never", "OrFinally", "PaneInfo", "PaneInfoTiming",
    "Repeatedly", "Trigger",
]
