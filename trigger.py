"""Triggers: ``from tidal import trigger`` as in ``from apache_beam.transforms import trigger``."""

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
