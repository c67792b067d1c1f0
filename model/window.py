"""Windows and window functions: where in event time an element belongs.

Windows are small immutable values; WindowFns assign them. Runners call the
``_assign_us`` fast path (int microseconds in, a tuple of windows out) on the
built-in WindowFns, and the Beam-style ``assign(context)`` on custom ones.

>>> FixedWindows(60).assign(AssignContext(Timestamp(130)))
[IntervalWindow(120, 180)]
>>> sorted(SlidingWindows(10, 5).assign(AssignContext(Timestamp(12))))
[IntervalWindow(5, 15), IntervalWindow(10, 20)]
"""

from __future__ import annotations

import abc
import operator
import enum
from typing import Any, Iterable, Sequence

from tidal.model.time import (
    GLOBAL_WINDOW_END_US,
    MIN_TIMESTAMP,
    Duration,
    DurationLike,
    Timestamp,
    TimestampLike,
    duration_to_micros,
    to_micros,
)

__all__ = [
    "BoundedWindow",
    "IntervalWindow",
    "GlobalWindow",
    "GLOBAL_WINDOW",
    "WindowFn",
    "NonMergingWindowFn",
    "GlobalWindows",
    "FixedWindows",
    "SlidingWindows",
    "Sessions",
    "TimestampCombiner",
    "TimestampedValue",
    "AssignContext",
    "MergeContext",
]


class BoundedWindow:
    """A window of event time; subclasses define ``end`` and equality.

    The window holds timestamps strictly before ``end``: its
    ``max_timestamp()`` is ``end`` minus one microsecond.
    """

    _end_us: int

    def __init__(self, end: TimestampLike) -> None:
        object.__setattr__(self, "_end_us", to_micros(end, "window end"))

    @property
    def end(self) -> Timestamp:
        return Timestamp.from_micros(self._end_us)

    def max_timestamp(self) -> Timestamp:
        """The last timestamp that belongs to this window."""
        return Timestamp.from_micros(self._end_us - 1)

    @property
    def max_timestamp_us(self) -> int:
        return self._end_us - 1

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __lt__(self, other: "BoundedWindow") -> bool:
        if not isinstance(other, BoundedWindow):
            return NotImplemented
        return self._sort_key() < other._sort_key()

    def _sort_key(self) -> tuple[int, int]:
        return (self._end_us, 0)


class IntervalWindow(tuple, BoundedWindow):  # type: ignore[misc]
    """The half-open interval ``[start, end)`` of event time.

    Stored as the tuple ``(start_us, end_us)``: windows are dictionary keys in
    every hot loop, and a tuple hashes and compares in C. (So an IntervalWindow
    also equals the plain tuple of its microsecond bounds.)
    """

    __slots__ = ()

    _start_us = property(operator.itemgetter(0))  # type: ignore[assignment]
    _end_us = property(operator.itemgetter(1))  # type: ignore[assignment]

    def __new__(cls, start: TimestampLike, end: TimestampLike) -> "IntervalWindow":
        return tuple.__new__(cls, (to_micros(start, "window start"), to_micros(end, "window end")))

    def __init__(self, start: TimestampLike, end: TimestampLike) -> None:
        pass

    @classmethod
    def from_micros(cls, start_us: int, end_us: int) -> "IntervalWindow":
        """Build a window from int microseconds (the runners' fast path)."""
        return tuple.__new__(cls, (start_us, end_us))

    @property
    def start(self) -> Timestamp:
        return Timestamp.from_micros(self[0])

    def _sort_key(self) -> tuple[int, int]:
        return (self[1], self[0])

    # Equality, hashing and ordering are the tuple's, (start, end), all in C.
    __eq__ = tuple.__eq__
    __ne__ = tuple.__ne__
    __lt__ = tuple.__lt__  # type: ignore[assignment]
    __hash__ = tuple.__hash__

    def intersects(self, other: "IntervalWindow") -> bool:
        return self[0] < other[1] and other[0] < self[1]

    def union(self, other: "IntervalWindow") -> "IntervalWindow":
        return IntervalWindow.from_micros(min(self[0], other[0]), max(self[1], other[1]))

    def contains(self, other: "IntervalWindow") -> bool:
        return self[0] <= other[0] and other[1] <= self[1]

    def __repr__(self) -> str:
        s, e = Timestamp.from_micros(self[0]), Timestamp.from_micros(self[1])
        return f"IntervalWindow({repr(s)[10:-1]}, {repr(e)[10:-1]})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (IntervalWindow.from_micros, (self[0], self[1]))


class GlobalWindow(BoundedWindow):
    """The single window that holds all of event time (a singleton: identity is equality)."""

    _instance: "GlobalWindow | None" = None
    _end_us = GLOBAL_WINDOW_END_US

    def __new__(cls) -> "GlobalWindow":
        if cls._instance is None:
            cls._instance = object.__new__(cls)
        return cls._instance

    def __init__(self) -> None:
        pass

    def __repr__(self) -> str:
        return "GlobalWindow"

    def __reduce__(self) -> tuple[Any, ...]:
        return (GlobalWindow, ())


GLOBAL_WINDOW = GlobalWindow()
#: The windows tuple of an element in the global window (shared, never copied).
GLOBAL_WINDOWS_TUPLE: tuple[BoundedWindow, ...] = (GLOBAL_WINDOW,)


class TimestampCombiner(enum.Enum):
    """How the output timestamp of a pane is computed from its inputs."""

    OUTPUT_AT_EOW = "OUTPUT_AT_EOW"
    OUTPUT_AT_EARLIEST = "OUTPUT_AT_EARLIEST"
    OUTPUT_AT_LATEST = "OUTPUT_AT_LATEST"
    OUTPUT_AT_EARLIEST_TRANSFORMED = "OUTPUT_AT_EARLIEST_TRANSFORMED"


class TimestampedValue:
    """A value with an event timestamp; yield it from a DoFn to re-stamp an element.

    >>> tv = TimestampedValue("a", 12.5)
    >>> tv.value, tv.timestamp
    ('a', Timestamp(12.5))
    """

    __slots__ = ("value", "timestamp_us")

    def __init__(self, value: Any, timestamp: TimestampLike) -> None:
        self.value = value
        # Built once per element by event-time sources: plain seconds take a short path.
        cls = type(timestamp)
        if cls is float and -9.2e12 < timestamp < 9.2e12:  # type: ignore[operator]
            self.timestamp_us = round(timestamp * 1_000_000)  # type: ignore[operator,assignment]
        elif cls is int and -9_200_000_000_000 < timestamp < 9_200_000_000_000:  # type: ignore[operator]
            self.timestamp_us = timestamp * 1_000_000  # type: ignore[operator,assignment]
        else:
            self.timestamp_us = to_micros(timestamp)

    @property
    def timestamp(self) -> Timestamp:
        return Timestamp.from_micros(self.timestamp_us)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TimestampedValue)
            and self.value == other.value
            and self.timestamp_us == other.timestamp_us
        )

    def __hash__(self) -> int:
        return hash((TimestampedValue, self.timestamp_us))

    def __repr__(self) -> str:
        return f"TimestampedValue({self.value!r}, {repr(self.timestamp)[10:-1]})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_tv_from_micros, (self.value, self.timestamp_us))


def _tv_from_micros(value: Any, micros: int) -> TimestampedValue:
    tv = object.__new__(TimestampedValue)
    tv.value = value
    tv.timestamp_us = micros
    return tv


class AssignContext:
    """What a WindowFn sees when it assigns windows to one element."""

    __slots__ = ("timestamp", "element", "window")

    def __init__(
        self, timestamp: TimestampLike, element: Any = None, window: BoundedWindow | None = None
    ) -> None:
        self.timestamp = Timestamp.of(timestamp)
        self.element = element
        self.window = window


class MergeContext:
    """Handed to ``WindowFn.merge``: the windows in flight and a ``merge`` callback."""

    def __init__(self, windows: Iterable[BoundedWindow]) -> None:
        self.windows = list(windows)
        self.merges: list[tuple[list[BoundedWindow], BoundedWindow]] = []

    def merge(self, to_be_merged: Iterable[BoundedWindow], merge_result: BoundedWindow) -> None:
        """Record that the windows ``to_be_merged`` become ``merge_result``."""
        self.merges.append((list(to_be_merged), merge_result))


class WindowFn(abc.ABC):
    """Assigns windows to elements, and for merging WindowFns merges them.

    Subclass it for a custom windowing scheme; windows may be any hashable,
    ordered :class:`BoundedWindow` subclass.
    """

    @abc.abstractmethod
    def assign(self, assign_context: AssignContext) -> Iterable[BoundedWindow]:
        """The windows an element with this timestamp belongs to."""

    def merge(self, merge_context: MergeContext) -> None:
        """Merge windows: call ``merge_context.merge(to_merge, result)`` per group.

        A ``result`` that is not one of the windows being merged is a new
        window, whose panes start again at index 0; a ``result`` that is one
        of them (it absorbs the others) keeps its pane history.
        """
        return None

    def is_merging(self) -> bool:
        """Whether ``merge`` must be called; true when a subclass overrides merge."""
        return type(self).merge is not WindowFn.merge

    def get_transformed_output_time(self, window: BoundedWindow, input_timestamp: Timestamp) -> Timestamp:
        """The output time OUTPUT_AT_EARLIEST_TRANSFORMED uses for an input."""
        return input_timestamp

    def get_window_coder(self) -> None:  # Beam-compatible signature; tidal pickles windows
        return None

    # Runner fast path: int micros in, tuple of windows out.
    def _assign_us(self, timestamp_us: int, element: Any, window: BoundedWindow) -> tuple[BoundedWindow, ...]:
        return tuple(self.assign(AssignContext(Timestamp.from_micros(timestamp_us), element, window)))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NonMergingWindowFn(WindowFn):
    """A WindowFn whose windows never merge."""

    def is_merging(self) -> bool:
        return False


class GlobalWindows(NonMergingWindowFn):
    """Every element in the one global window (the default)."""

    def assign(self, assign_context: AssignContext) -> list[BoundedWindow]:
        return [GLOBAL_WINDOW]

    def _assign_us(self, timestamp_us: int, element: Any, window: BoundedWindow) -> tuple[BoundedWindow, ...]:
        return GLOBAL_WINDOWS_TUPLE

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(GlobalWindows)


class FixedWindows(NonMergingWindowFn):
    """Tumbling windows of ``size`` seconds: ``start = t - ((t - offset) mod size)``."""

    def __init__(self, size: DurationLike, offset: TimestampLike | DurationLike = 0) -> None:
        self.size_us = duration_to_micros(size, "FixedWindows size")
        if self.size_us <= 0:
            raise ValueError(f"FixedWindows size must be positive, got {size!r}")
        off = offset.micros if isinstance(offset, (Timestamp, Duration)) else duration_to_micros(offset)
        self.offset_us = off % self.size_us
        self._cache: dict[int, tuple[BoundedWindow, ...]] = {}

    @property
    def size(self) -> Duration:
        return Duration(micros=self.size_us)

    @property
    def offset(self) -> Timestamp:
        return Timestamp.from_micros(self.offset_us)

    def assign(self, assign_context: AssignContext) -> list[BoundedWindow]:
        return list(self._assign_us(assign_context.timestamp.micros, None, GLOBAL_WINDOW))

    def _assign_us(self, timestamp_us: int, element: Any, window: BoundedWindow) -> tuple[BoundedWindow, ...]:
        start = timestamp_us - (timestamp_us - self.offset_us) % self.size_us
        cached = self._cache.get(start)
        if cached is None:
            cached = (IntervalWindow.from_micros(start, start + self.size_us),)
            if len(self._cache) > 65_536:
                self._cache.clear()
            self._cache[start] = cached
        return cached

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.size_us == other.size_us
            and self.offset_us == other.offset_us
        )

    def __hash__(self) -> int:
        return hash((FixedWindows, self.size_us, self.offset_us))

    def __repr__(self) -> str:
        return f"FixedWindows({self.size_us / 1e6:g}, offset={self.offset_us / 1e6:g})"

    def __getstate__(self) -> dict[str, Any]:
        return {"size_us": self.size_us, "offset_us": self.offset_us}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = {}


class SlidingWindows(NonMergingWindowFn):
    """Windows of ``size`` seconds starting every ``period`` seconds (overlapping)."""

    def __init__(
        self, size: DurationLike, period: DurationLike, offset: TimestampLike | DurationLike = 0
    ) -> None:
        self.size_us = duration_to_micros(size, "SlidingWindows size")
        self.period_us = duration_to_micros(period, "SlidingWindows period")
        if self.size_us <= 0 or self.period_us <= 0:
            raise ValueError(
                f"SlidingWindows size and period must be positive, got size={size!r} period={period!r}"
            )
        off = offset.micros if isinstance(offset, (Timestamp, Duration)) else duration_to_micros(offset)
        self.offset_us = off % self.period_us
        self._cache: dict[tuple[int, int], tuple[BoundedWindow, ...]] = {}

    @property
    def size(self) -> Duration:
        return Duration(micros=self.size_us)

    @property
    def period(self) -> Duration:
        return Duration(micros=self.period_us)

    @property
    def offset(self) -> Timestamp:
        return Timestamp.from_micros(self.offset_us)

    def assign(self, assign_context: AssignContext) -> list[BoundedWindow]:
        return list(self._assign_us(assign_context.timestamp.micros, None, GLOBAL_WINDOW))

    def _assign_us(self, timestamp_us: int, element: Any, window: BoundedWindow) -> tuple[BoundedWindow, ...]:
        period = self.period_us
        since_start = (timestamp_us - self.offset_us) % period
        last_start = timestamp_us - since_start
        # Windows whose start is in (t - size, last_start]: their number depends on
        # how far t is past last_start, so that is part of the cache key.
        count = -(-(self.size_us - since_start) // period)
        key = (last_start, count)
        cached = self._cache.get(key)
        if cached is None:
            size = self.size_us
            # Newest first, as Beam lists them.
            cached = tuple(
                IntervalWindow.from_micros(last_start - i * period, last_start - i * period + size)
                for i in range(count)
            )
            if len(self._cache) > 65_536:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.size_us == other.size_us
            and self.period_us == other.period_us
            and self.offset_us == other.offset_us
        )

    def __hash__(self) -> int:
        return hash((SlidingWindows, self.size_us, self.period_us, self.offset_us))

    def __repr__(self) -> str:
        return (
            f"SlidingWindows({self.size_us / 1e6:g}, {self.period_us / 1e6:g}, "
            f"offset={self.offset_us / 1e6:g})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"size_us": self.size_us, "period_us": self.period_us, "offset_us": self.offset_us}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = {}


class Sessions(WindowFn):
    """Per-key sessions: each element opens ``[t, t + gap)``; overlapping ones merge.

    Merging happens per key before triggering and carries the windows'
    elements, trigger state and watermark holds into the merged window. The
    merged window is a new window: its panes start again at index 0 (see
    :class:`tidal.trigger.PaneInfo`). A stateful DoFn cannot run over
    sessions (state needs windows that do not merge): group first.

    >>> Sessions(10).assign(AssignContext(Timestamp(3)))
    [IntervalWindow(3, 13)]
    """

    def __init__(self, gap_size: DurationLike) -> None:
        self.gap_us = duration_to_micros(gap_size, "Sessions gap_size")
        if self.gap_us <= 0:
            raise ValueError(f"Sessions gap_size must be positive, got {gap_size!r}")

    @property
    def gap_size(self) -> Duration:
        return Duration(micros=self.gap_us)

    def assign(self, assign_context: AssignContext) -> list[BoundedWindow]:
        t = assign_context.timestamp.micros
        return [IntervalWindow.from_micros(t, t + self.gap_us)]

    def _assign_us(self, timestamp_us: int, element: Any, window: BoundedWindow) -> tuple[BoundedWindow, ...]:
        return (IntervalWindow.from_micros(timestamp_us, timestamp_us + self.gap_us),)

    def merge(self, merge_context: MergeContext) -> None:
        merge_overlapping_intervals(merge_context)

    def is_merging(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.gap_us == other.gap_us

    def __hash__(self) -> int:
        return hash((Sessions, self.gap_us))

    def __repr__(self) -> str:
        return f"Sessions({self.gap_us / 1e6:g})"


def merge_overlapping_intervals(merge_context: MergeContext) -> None:
    """Merge every group of overlapping IntervalWindows into their span."""
    windows: Sequence[IntervalWindow] = sorted(merge_context.windows)  # type: ignore[type-var,arg-type]
    group: list[IntervalWindow] = []
    start = end = 0
    for w in windows:
        w_start, w_end = w._start_us, w._end_us
        if group and w_start < end:
            group.append(w)
            if w_end > end:
                end = w_end
            continue
        if len(group) > 1:
            merge_context.merge(group, IntervalWindow.from_micros(start, end))
        group, start, end = [w], w_start, w_end
    if len(group) > 1:
        merge_context.merge(group, IntervalWindow.from_micros(start, end))



__all__ += ["merge_overlapping_intervals", "GLOBAL_WINDOWS_TUPLE", "MIN_TIMESTAMP"]
