"""Timestamps and durations at Beam's path ``apache_beam.utils.timestamp``.

>>> from tidal.utils.timestamp import Duration, Timestamp
>>> (Timestamp(10) + Duration(5)).seconds()
15.0
"""

from typing import Union

from tidal.model.time import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp

#: What Beam accepts where a timestamp is expected: a Timestamp or seconds.
TimestampTypes = Union[int, float, Timestamp]
#: What Beam accepts where a duration is expected: a Duration or seconds.
DurationTypes = Union[int, float, Duration]

__all__ = ["Duration", "DurationTypes", "MAX_TIMESTAMP", "MIN_TIMESTAMP", "Timestamp", "TimestampTypes"]
