"""Windowing at Beam's path ``apache_beam.transforms.window`` (also ``tidal.window``).

>>> from tidal.transforms.window import FixedWindows
>>> FixedWindows(60).size
Duration(60)
"""

from tidal.model.time import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp
from tidal.model.policy import (
    CountEvictor,
    CountWindows,
    DeltaEvictor,
    DeltaWindows,
    Evictor,
    PolicyWindow,
    PolicyWindowFn,
    TimeEvictor,
)
from tidal.model.window import (
    AssignContext,
    BoundedWindow,
    FixedWindows,
    GlobalWindow,
    GlobalWindows,
    IntervalWindow,
    MergeContext,
    NonMergingWindowFn,
    Sessions,
    SlidingWindows,
    TimestampCombiner,
    TimestampedValue,
    WindowFn,
)

__all__ = [
    "CountEvictor", "CountWindows", "DeltaEvictor", "DeltaWindows", "Evictor", "PolicyWindow", "PolicyWindowFn",
    "TimeEvictor",
    "AssignContext", "BoundedWindow", "Duration", "FixedWindows", "GlobalWindow", "GlobalWindows",
    "IntervalWindow", "MAX_TIMESTAMP", "MIN_TIMESTAMP", "MergeContext", "NonMergingWindowFn",
    "Sessions", "SlidingWindows", "Timestamp", "TimestampCombiner", "TimestampedValue", "WindowFn",
]
