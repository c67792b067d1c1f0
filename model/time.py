"""Event-time values: Timestamp, Duration and the MIN/MAX bounds.

At the API, times are seconds (int or float), as in Apache Beam. Inside the
runners they are plain ``int`` microseconds: windowed values carry an int, and
a :class:`Timestamp` is built only when user code asks for one.

>>> Timestamp(10) + Duration(5)
Timestamp(15)
>>> Timestamp(10.5).micros
10500000
>>> Timestamp(3) == 3
True

Arithmetic stays in range: a result outside [MIN_TIMESTAMP, MAX_TIMESTAMP]
(for a Duration: outside the same span of microseconds) is an error rather
than a timestamp no runner can order.

>>> MAX_TIMESTAMP + Duration(1)
Traceback (most recent call last):
...
ValueError: MAX_TIMESTAMP + Duration(1) is outside [MIN_TIMESTAMP, MAX_TIMESTAMP] (-9223372036854.775808 s .. 9223372036854.775807 s)
"""

from __future__ import annotations

import datetime
import functools
from typing import Union

__all__ = [
    "Timestamp",
    "Duration",
    "MIN_TIMESTAMP",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP_US",
    "MAX_TIMESTAMP_US",
    "GLOBAL_WINDOW_END_US",
    "to_micros",
    "duration_to_micros",
]

MIN_TIMESTAMP_US: int = -0x7FFFFFFFFFFFFFFF - 1
MAX_TIMESTAMP_US: int = 0x7FFFFFFFFFFFFFFF
#: The global window ends one day before MAX_TIMESTAMP (as in Beam), so that
#: a timer set at its end + lateness never overflows.
GLOBAL_WINDOW_END_US: int = MAX_TIMESTAMP_US - 86_400_000_000

TimestampLike = Union["Timestamp", int, float]
DurationLike = Union["Duration", int, float]


def to_micros(value: TimestampLike, what: str = "timestamp") -> int:
    """Convert a timestamp given in seconds (or a Timestamp) to int microseconds.

    Raises ValueError for a value outside [MIN_TIMESTAMP, MAX_TIMESTAMP].
    """
    cls = type(value)
    micros: int
    if cls is int:
        micros = value * 1_000_000  # type: ignore[operator,assignment]
    elif cls is float:
        if value != value:  # NaN
            raise ValueError(f"{what} is NaN")
        micros = round(value * 1_000_000)  # type: ignore[operator]
    elif isinstance(value, Timestamp):
        return value.micros
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be seconds as int or float, or a Timestamp; got {value!r}")
    else:
        micros = round(value * 1_000_000)
    if micros < MIN_TIMESTAMP_US or micros > MAX_TIMESTAMP_US:
        raise ValueError(
            f"{what} {value!r} s is outside [MIN_TIMESTAMP, MAX_TIMESTAMP] "
            f"({MIN_TIMESTAMP_US / 1e6:.0f} s .. {MAX_TIMESTAMP_US / 1e6:.0f} s)"
        )
    return micros


_RANGE = "[MIN_TIMESTAMP, MAX_TIMESTAMP] (-9223372036854.775808 s .. 9223372036854.775807 s)"


def duration_to_micros(value: DurationLike, what: str = "duration") -> int:
    """Convert a duration in seconds (or a Duration) to int microseconds.

    Raises ValueError for NaN, an infinity, or more microseconds than a
    timestamp can hold.
    """
    if isinstance(value, Duration):
        return value.micros
    if isinstance(value, Timestamp):
        raise TypeError(f"{what} must be a Duration or seconds, not a Timestamp")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be seconds as int or float, or a Duration; got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{what} {value!r} is not a finite number of seconds")
    micros = round(value * 1_000_000)
    if micros < MIN_TIMESTAMP_US or micros > MAX_TIMESTAMP_US:
        raise ValueError(f"{what} {value!r} s is outside the range of a Duration, {_RANGE}")
    return micros


def _in_range(micros: int, left: object, op: str, right: object) -> int:
    """``micros`` if it is a valid timestamp (or duration); else a ValueError naming the operation.

    ``left`` None means the unary operation ``op right``.
    """
    if micros < MIN_TIMESTAMP_US or micros > MAX_TIMESTAMP_US:
        expr = f"{op}{right!r}" if left is None else f"{left!r} {op} {right!r}"
        raise ValueError(f"{expr} is outside {_RANGE}")
    return micros


def _seconds_repr(micros: int) -> str:
    """Exact seconds: ``12``, ``12.5``, ``-0.000001`` (no float rounding at large values)."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}".rstrip("0")


@functools.total_ordering
class Timestamp:
    """A point in event time with microsecond precision.

    Compares with other Timestamps and with plain numbers (read as seconds).
    """

    __slots__ = ("micros",)

    micros: int

    def __init__(self, seconds: TimestampLike = 0, micros: int = 0) -> None:
        total = to_micros(seconds) + int(micros)
        if total < MIN_TIMESTAMP_US or total > MAX_TIMESTAMP_US:
            raise ValueError(f"timestamp {total} µs is outside {_RANGE}")
        object.__setattr__(self, "micros", total)

    @classmethod
    def of(cls, seconds: TimestampLike) -> "Timestamp":
        """Coerce seconds or a Timestamp into a Timestamp."""
        return seconds if isinstance(seconds, Timestamp) else cls(seconds)

    @classmethod
    def from_micros(cls, micros: int) -> "Timestamp":
        """Build a Timestamp from int microseconds the caller knows are in range (no check: the runners' fast path)."""
        ts = object.__new__(cls)
        object.__setattr__(ts, "micros", micros)
        return ts

    @classmethod
    def from_utc_datetime(cls, dt: datetime.datetime) -> "Timestamp":
        """Build a Timestamp from a timezone-aware UTC datetime."""
        if dt.tzinfo is None:
            raise ValueError("from_utc_datetime needs a timezone-aware datetime")
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        delta = dt - epoch
        return cls.from_micros((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)

    @classmethod
    def now(cls) -> "Timestamp":
        """The current wall-clock time."""
        import time

        return cls.from_micros(time.time_ns() // 1000)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Timestamp is immutable")

    def seconds(self) -> float:
        """This timestamp in (float) seconds."""
        return self.micros / 1_000_000

    def to_utc_datetime(self) -> datetime.datetime:
        """This timestamp as a timezone-aware UTC datetime."""
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return epoch + datetime.timedelta(microseconds=self.micros)

    @classmethod
    def from_rfc3339(cls, rfc3339: str) -> "Timestamp":
        """Parse an RFC 3339 UTC time such as ``2024-01-02T03:04:05.5Z`` (as Beam does).

        >>> Timestamp.from_rfc3339("1970-01-01T00:01:00.25Z").seconds()
        60.25
        """
        try:
            dt = datetime.datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            try:
                dt = datetime.datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ")
            except ValueError as exc:
                raise ValueError(f"could not parse RFC 3339 string {rfc3339!r}: {exc}") from None
        return cls.from_utc_datetime(dt.replace(tzinfo=datetime.timezone.utc))

    def to_rfc3339(self) -> str:
        """This timestamp as RFC 3339 in UTC; sub-second digits only when there are some.

        >>> Timestamp(5).to_rfc3339(), Timestamp(1.5).to_rfc3339()
        ('1970-01-01T00:00:05Z', '1970-01-01T00:00:01.500000Z')
        """
        dt = self.to_utc_datetime()
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "%Y-%m-%dT%H:%M:%SZ")

    def predecessor(self) -> "Timestamp":
        """The timestamp one microsecond earlier."""
        return Timestamp.from_micros(_in_range(self.micros - 1, self, "-", Duration(micros=1)))

    def successor(self) -> "Timestamp":
        """The timestamp one microsecond later."""
        return Timestamp.from_micros(_in_range(self.micros + 1, self, "+", Duration(micros=1)))

    def __float__(self) -> float:
        return self.micros / 1_000_000

    def __int__(self) -> int:
        return self.micros // 1_000_000

    def __repr__(self) -> str:
        if self.micros == MIN_TIMESTAMP_US:
            return "MIN_TIMESTAMP"
        if self.micros == MAX_TIMESTAMP_US:
            return "MAX_TIMESTAMP"
        return f"Timestamp({_seconds_repr(self.micros)})"

    def __str__(self) -> str:
        return repr(self)

    def _other_micros(self, other: object) -> int | None:
        if isinstance(other, Timestamp):
            return other.micros
        if isinstance(other, Duration):
            return None
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return round(other * 1_000_000)
        return None

    def __eq__(self, other: object) -> bool:
        m = self._other_micros(other)
        return m is not None and self.micros == m

    def __lt__(self, other: object) -> bool:
        m = self._other_micros(other)
        if m is None:
            return NotImplemented
        return self.micros < m

    def __hash__(self) -> int:
        return hash(self.micros)

    def __add__(self, other: DurationLike) -> "Timestamp":
        if isinstance(other, Timestamp):
            raise TypeError("cannot add two Timestamps")
        return Timestamp.from_micros(_in_range(self.micros + duration_to_micros(other), self, "+", other))

    __radd__ = __add__

    def __sub__(self, other: "Timestamp | DurationLike") -> "Timestamp | Duration":
        if isinstance(other, Timestamp):
            return Duration._of_micros(_in_range(self.micros - other.micros, self, "-", other))
        return Timestamp.from_micros(_in_range(self.micros - duration_to_micros(other), self, "-", other))

    def __reduce__(self) -> tuple[object, ...]:
        return (Timestamp.from_micros, (self.micros,))


@functools.total_ordering
class Duration:
    """A span of event or processing time with microsecond precision."""

    __slots__ = ("micros",)

    micros: int

    def __init__(self, seconds: DurationLike = 0, micros: int = 0) -> None:
        total = duration_to_micros(seconds) + int(micros)
        if total < MIN_TIMESTAMP_US or total > MAX_TIMESTAMP_US:
            raise ValueError(f"duration {total} µs is outside the range of a Duration, {_RANGE}")
        object.__setattr__(self, "micros", total)

    @classmethod
    def _of_micros(cls, micros: int) -> "Duration":
        d = object.__new__(cls)
        object.__setattr__(d, "micros", micros)
        return d

    @classmethod
    def of(cls, seconds: DurationLike) -> "Duration":
        """Coerce seconds or a Duration into a Duration."""
        return seconds if isinstance(seconds, Duration) else cls(seconds)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Duration is immutable")

    def seconds(self) -> float:
        """This duration in (float) seconds."""
        return self.micros / 1_000_000

    def __repr__(self) -> str:
        return f"Duration({_seconds_repr(self.micros)})"

    def _other_micros(self, other: object) -> int | None:
        if isinstance(other, Duration):
            return other.micros
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return round(other * 1_000_000)
        return None

    def __eq__(self, other: object) -> bool:
        m = self._other_micros(other)
        return m is not None and self.micros == m

    def __lt__(self, other: object) -> bool:
        m = self._other_micros(other)
        if m is None:
            return NotImplemented
        return self.micros < m

    def __hash__(self) -> int:
        return hash(self.micros)

    def __add__(self, other: DurationLike) -> "Duration":
        if isinstance(other, Timestamp):
            return NotImplemented
        return Duration._of_micros(_in_range(self.micros + duration_to_micros(other), self, "+", other))

    __radd__ = __add__

    def __sub__(self, other: DurationLike) -> "Duration":
        return Duration._of_micros(_in_range(self.micros - duration_to_micros(other), self, "-", other))

    def __neg__(self) -> "Duration":
        return Duration._of_micros(_in_range(-self.micros, None, "-", self))

    def __float__(self) -> float:
        return self.micros / 1_000_000

    def __reduce__(self) -> tuple[object, ...]:
        return (Duration, (0, self.micros))


MIN_TIMESTAMP = Timestamp.from_micros(MIN_TIMESTAMP_US)
MAX_TIMESTAMP = Timestamp.from_micros(MAX_TIMESTAMP_US)
