"""Flink's policy windows and evictors: windows that elements, not event time, close.

:class:`CountWindows` and :class:`DeltaWindows` are WindowFns whose windows
are not intervals of event time: a key's elements are counted (or compared
with the window's first value) in the order the grouping step processes
them, and a window closes when its policy says so. They are Flink's
``countWindow`` and ``GlobalWindows`` with a ``DeltaTrigger``. Until the
grouping step (``GroupByKey``, ``CombinePerKey``) an element stays in the
global window; the grouping step emits each closed window as one pane in a
:class:`PolicyWindow`, the key's ``index``-th window, spanning its
elements' timestamps. A partial window fires when the input ends.

Evictors (:class:`CountEvictor`, :class:`TimeEvictor`, :class:`DeltaEvictor`)
remove elements from a window's buffer when it fires, before the grouping
function sees them or, with ``evict_after=True``, after it (Flink's
``doEvictAfter``). Pass one as ``WindowInto(..., evictor=...)``.

What these values mean at run time is implemented once, in
``tidal.runners.core.policy``; here they are only descriptions.

>>> CountWindows(3)
CountWindows(3)
>>> CountWindows(3, every=1)
CountWindows(3, every=1)
>>> CountEvictor(2, evict_after=True)
CountEvictor(2, evict_after=True)
"""

from __future__ import annotations

import abc
import numbers
import operator
from typing import Any, Callable

from tidal.model.time import Duration, DurationLike, Timestamp, duration_to_micros
from tidal.model.window import (
    GLOBAL_WINDOWS_TUPLE,
    AssignContext,
    BoundedWindow,
    GlobalWindow,
    NonMergingWindowFn,
)

__all__ = [
    "PolicyWindowFn",
    "CountWindows",
    "DeltaWindows",
    "PolicyWindow",
    "Evictor",
    "CountEvictor",
    "TimeEvictor",
    "DeltaEvictor",
]

DistanceFn = Callable[[Any, Any], float]


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{what} must be a positive whole number, got {value!r}")
    return int(value)


def _positive_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def _callable(fn: Any, what: str) -> DistanceFn:
    if not callable(fn):
        raise TypeError(f"{what} must be a callable (first, current) -> float, got {fn!r}")
    return fn  # type: ignore[no-any-return]


class PolicyWindow(tuple, BoundedWindow):  # type: ignore[misc]
    """The ``index``-th window a policy closed for a key, spanning ``[start, end)``.

    ``start`` is the earliest timestamp of its elements and ``end`` one
    microsecond after the latest, so ``max_timestamp()`` is the latest
    element's timestamp (the pane timestamp under OUTPUT_AT_EOW). Windows of
    one key are numbered from 0 in the order they close; two keys' windows
    with the same index and span are equal (panes are per key and window).

    >>> w = PolicyWindow(0, 5, 8)
    >>> w.index, w.start, w.end, w.max_timestamp()
    (0, Timestamp(5), Timestamp(8.000001), Timestamp(8))
    """

    __slots__ = ()

    _start_us = property(operator.itemgetter(0))  # type: ignore[assignment]
    _end_us = property(operator.itemgetter(1))  # type: ignore[assignment]
    index = property(operator.itemgetter(2))

    def __new__(cls, index: int, first: Any, last: Any) -> "PolicyWindow":
        return tuple.__new__(cls, (Timestamp.of(first).micros, Timestamp.of(last).micros + 1, index))

    def __init__(self, index: int, first: Any, last: Any) -> None:
        pass

    @classmethod
    def from_micros(cls, index: int, start_us: int, end_us: int) -> "PolicyWindow":
        return tuple.__new__(cls, (start_us, end_us, index))

    @property
    def start(self) -> Timestamp:
        return Timestamp.from_micros(self[0])

    def _sort_key(self) -> tuple[int, int]:
        return (self[1], self[0])

    __eq__ = tuple.__eq__
    __ne__ = tuple.__ne__
    __lt__ = tuple.__lt__  # type: ignore[assignment]
    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        s, e = Timestamp.from_micros(self[0]), Timestamp.from_micros(self[1])
        return f"PolicyWindow(index={self[2]}, {repr(s)[10:-1]}, {repr(e)[10:-1]})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PolicyWindow.from_micros, (self[2], self[0], self[1]))


class PolicyWindowFn(NonMergingWindowFn):
    """A window closed by a policy over a key's elements, not by event time.

    Elements stay in the global window until the grouping step, which
    assigns them to :class:`PolicyWindow` s per key in processing order.
    A policy window fires once, when it closes (or when the input ends):
    a trigger, accumulation mode or allowed lateness does not apply to it.
    The panes keep this windowing: a later grouping step applies the policy
    again to them, so re-window them (``WindowInto``) to group them by event
    time. Which order a key's elements arrive in on each runner is stated in
    ``tidal.runners.core.policy``.
    """

    def assign(self, assign_context: AssignContext) -> list[BoundedWindow]:
        return [GlobalWindow()]

    def _assign_us(self, timestamp_us: int, element: Any, window: BoundedWindow) -> tuple[BoundedWindow, ...]:
        return GLOBAL_WINDOWS_TUPLE


class CountWindows(PolicyWindowFn):
    """Per-key windows of ``size`` elements, tumbling, or sliding by ``every`` elements.

    As Flink's ``countWindow(size)`` / ``countWindow(size, slide)``: a key's
    elements are counted in the order the grouping step processes them.
    Tumbling (``every=None``): each run of ``size`` elements is a window.
    Sliding: after every ``every``-th element of a key a window fires with
    the key's last ``size`` elements (so the first windows of a key hold
    fewer when ``every < size``). When the input ends, the elements since the
    last firing fire as a partial last window (with up to ``size`` elements).

    >>> import tidal as td
    >>> from tidal import window
    >>> with td.Pipeline() as p:
    ...     sums = (p | td.Create([("a", 1), ("a", 2), ("a", 3), ("a", 4), ("a", 5)])
    ...               | td.WindowInto(window.CountWindows(2))
    ...               | td.CombinePerKey(sum))
    ...     td.testing.assert_that(sums, td.testing.equal_to([("a", 3), ("a", 7), ("a", 5)]))
    """

    def __init__(self, size: int, every: int | None = None) -> None:
        self.size = _positive_int(size, "CountWindows size")
        self.every = self.size if every is None else _positive_int(every, "CountWindows every")
        self.sliding = every is not None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (self.size, self.every) == (other.size, other.every)

    def __hash__(self) -> int:
        return hash((CountWindows, self.size, self.every))

    def __repr__(self) -> str:
        return f"CountWindows({self.size}, every={self.every})" if self.sliding else f"CountWindows({self.size})"


class DeltaWindows(PolicyWindowFn):
    """Data-driven per-key windows: one closes when a value moves more than ``threshold``.

    The first value of a key opens its first window (``initial``, when given,
    stands in as that window's first value, without being an element). Each
    later value ``current`` joins the open window; when
    ``distance_fn(first, current) > threshold`` — ``first`` being the
    window's first value — the window fires with ``current`` as its last
    element, and the key's next value opens a new window. A distance equal
    to the threshold does not close it. At the end of the input an open
    window fires as a partial window.

    >>> import tidal as td
    >>> from tidal import window
    >>> with td.Pipeline() as p:
    ...     runs = (p | td.Create([("s", 10.0), ("s", 10.4), ("s", 11.0), ("s", 11.2)])
    ...               | td.WindowInto(window.DeltaWindows(0.5, lambda a, b: abs(b - a)))
    ...               | td.GroupByKey())
    ...     td.testing.assert_that(runs, td.testing.equal_to([("s", [10.0, 10.4, 11.0]), ("s", [11.2])]))
    """

    def __init__(self, threshold: float, distance_fn: DistanceFn, initial: Any = None) -> None:
        self.threshold = _positive_number(threshold, "DeltaWindows threshold")
        self.distance_fn = _callable(distance_fn, "DeltaWindows distance_fn")
        self.initial = initial

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and (self.threshold, self.distance_fn, self.initial) == (other.threshold, other.distance_fn, other.initial)
        )

    def __hash__(self) -> int:
        return hash((DeltaWindows, self.threshold))

    def __repr__(self) -> str:
        name = getattr(self.distance_fn, "__name__", type(self.distance_fn).__name__)
        initial = "" if self.initial is None else f", initial={self.initial!r}"
        return f"DeltaWindows({self.threshold:g}, {name}{initial})"


class Evictor(abc.ABC):
    """Removes elements from a window's buffer when the window fires.

    ``evict_after=False`` (the default): before the grouping function sees
    the buffer; ``True``: after it (Flink's ``doEvictAfter``), so only later
    panes of an ACCUMULATING window (or later sliding count windows) see
    the eviction. The buffer keeps the processing order of its elements.
    """

    evict_after: bool

    @abc.abstractmethod
    def describe(self) -> str:
        """The evictor's parameters, as its repr shows them."""

    def __repr__(self) -> str:
        after = ", evict_after=True" if self.evict_after else ""
        return f"{type(self).__name__}({self.describe()}{after})"


class CountEvictor(Evictor):
    """Keep the last ``max_count`` elements of the buffer (Flink's CountEvictor).

    >>> CountEvictor(3)
    CountEvictor(3)
    """

    def __init__(self, max_count: int, evict_after: bool = False) -> None:
        self.max_count = _positive_int(max_count, "CountEvictor max_count")
        self.evict_after = bool(evict_after)

    def describe(self) -> str:
        return str(self.max_count)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (self.max_count, self.evict_after) == (other.max_count, other.evict_after)

    def __hash__(self) -> int:
        return hash((CountEvictor, self.max_count, self.evict_after))


class TimeEvictor(Evictor):
    """Keep the elements less than ``window_size`` older than the buffer's latest (Flink's TimeEvictor).

    An element whose timestamp is at or before ``latest - window_size`` is evicted.

    >>> TimeEvictor(30)
    TimeEvictor(30s)
    """

    def __init__(self, window_size: DurationLike, evict_after: bool = False) -> None:
        self.size_us = duration_to_micros(window_size, "TimeEvictor window_size")
        if self.size_us <= 0:
            raise ValueError(f"TimeEvictor window_size must be positive, got {window_size!r}")
        self.evict_after = bool(evict_after)

    @property
    def window_size(self) -> Duration:
        return Duration(micros=self.size_us)

    def describe(self) -> str:
        return f"{self.size_us / 1e6:g}s"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (self.size_us, self.evict_after) == (other.size_us, other.evict_after)

    def __hash__(self) -> int:
        return hash((TimeEvictor, self.size_us, self.evict_after))


class DeltaEvictor(Evictor):
    """Evict the elements at ``threshold`` or more from the buffer's last one (Flink's DeltaEvictor).

    An element ``e`` leaves when ``distance_fn(e, last) >= threshold``.

    >>> DeltaEvictor(0.5, lambda a, b: abs(a - b))
    DeltaEvictor(0.5, <lambda>)
    """

    def __init__(self, threshold: float, distance_fn: DistanceFn, evict_after: bool = False) -> None:
        self.threshold = _positive_number(threshold, "DeltaEvictor threshold")
        self.distance_fn = _callable(distance_fn, "DeltaEvictor distance_fn")
        self.evict_after = bool(evict_after)

    def describe(self) -> str:
        name = getattr(self.distance_fn, "__name__", type(self.distance_fn).__name__)
        return f"{self.threshold:g}, {name}"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (self.threshold, self.distance_fn, self.evict_after) == (
            other.threshold,
            other.distance_fn,
            other.evict_after,
        )

    def __hash__(self) -> int:
        return hash((DeltaEvictor, self.threshold, self.evict_after))
