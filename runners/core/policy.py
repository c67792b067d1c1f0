"""Policy windows and evictors at run time: the grouping step for Flink-style windowing.

:func:`make_reducer` is how a grouping operator (GroupByKey, CombinePerKey)
gets its reducer, so every runner groups through it. Event-time windows go
to :class:`~tidal.runners.core.reduce.KeyedWindowReducer`; with an evictor
its pane contents become a buffer of ``(value, timestamp)`` pairs
(:class:`EvictingReduceFn`) that :func:`evict` trims when the pane fires.
Policy windows (:class:`~tidal.model.policy.CountWindows`,
:class:`~tidal.model.policy.DeltaWindows`) go to :class:`PolicyWindowReducer`,
which assigns a key's elements to its windows in the order it processes
them, as Flink's ``GlobalWindows`` with a ``CountTrigger`` or
``DeltaTrigger`` and an evictor do.

The order a key's elements are processed in is the order they reach the
grouping step: on the direct runner, the order of the input (a Flatten's
inputs in the order its bundles arrive, which is fixed for a pipeline); on
the micro-batch runner, the same within each batch and batch after batch;
on Ray, each upstream instance's order is kept (its bundles arrive in the
order it sent them), but the bundles of several upstream instances of a key
interleave as they arrive, so the windows of a key whose elements come from
several input partitions can differ from run to run. Keep a key's elements
in one partition (a TestStream, one source split, or one element expanded
by FlatMap) to get the same windows on every runner.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from tidal.model.policy import CountEvictor, CountWindows, DeltaEvictor, DeltaWindows, Evictor, PolicyWindow, PolicyWindowFn, TimeEvictor
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, Timestamp
from tidal.model.trigger import PaneInfo, PaneInfoTiming
from tidal.model.window import TimestampCombiner
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError, describe_element
from tidal.runners.core.keygroups import KeyedSnapshot, split_by_group
from tidal.runners.core.reduce import KeyedWindowReducer, ReduceFn

__all__ = ["evict", "EvictingReduceFn", "PolicyWindowReducer", "make_reducer", "lift_blocker"]

#: A policy window fires once, complete: its only pane.
_ONLY_PANE = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)


def lift_blocker(windowing: WindowingStrategy) -> str | None:
    """Why a CombinePerKey under ``windowing`` cannot combine partially before the shuffle (None: it can).

    >>> from tidal import window
    >>> lift_blocker(WindowingStrategy(window.FixedWindows(10)))
    >>> lift_blocker(WindowingStrategy(window.FixedWindows(10), evictor=window.CountEvictor(2)))
    'the evictor CountEvictor(2) needs every element of a window when it fires'
    """
    if isinstance(windowing.windowfn, PolicyWindowFn):
        return f"{windowing.windowfn!r} assigns windows per key in processing order, after the shuffle"
    if windowing.evictor is not None:
        return f"the evictor {windowing.evictor!r} needs every element of a window when it fires"
    if windowing.windowfn.is_merging():
        return f"the merging WindowFn {windowing.windowfn!r} merges windows per key, after the shuffle"
    if not windowing.has_default_trigger:
        return f"the trigger {windowing.trigger!r} fires panes that partial results could split"
    if windowing.timestamp_combiner is not TimestampCombiner.OUTPUT_AT_EOW:
        return f"{windowing.timestamp_combiner.name} needs each element's timestamp"
    return None


def evict(evictor: Evictor, items: list[tuple[Any, int]], label: str) -> None:
    """Remove from ``items`` (``(value, timestamp µs)`` in processing order, changed in place) what ``evictor`` evicts.

    >>> items = [("a", 1_000_000), ("b", 5_000_000), ("c", 9_000_000)]
    >>> evict(CountEvictor(2), items, "Step"); items
    [('b', 5000000), ('c', 9000000)]
    >>> evict(TimeEvictor(4), items, "Step"); items
    [('c', 9000000)]
    """
    if not items:
        return
    if type(evictor) is CountEvictor:
        extra = len(items) - evictor.max_count
        if extra > 0:
            del items[:extra]
    elif type(evictor) is TimeEvictor:
        cutoff = max(t for _, t in items) - evictor.size_us
        items[:] = [item for item in items if item[1] > cutoff]
    elif type(evictor) is DeltaEvictor:
        last = items[-1][0]
        distance, threshold = evictor.distance_fn, evictor.threshold
        kept = []
        for item in items:
            try:
                far = distance(item[0], last) >= threshold
            except Exception as exc:
                raise UserCodeError(label, distance, exc, item[0]) from exc
            if not far:
                kept.append(item)
        items[:] = kept
    else:
        raise PipelineExecutionError(label, f"unknown evictor {evictor!r}")


class EvictingReduceFn(ReduceFn):
    """A pane's contents as ``(value, timestamp)`` pairs, evicted from and then reduced when it fires.

    The grouping function (a list for GroupByKey, the CombineFn for
    CombinePerKey) sees the values that remain after an evictor that runs
    before it; one that runs after it trims the buffer for later panes (an
    ACCUMULATING window keeps its buffer across firings).
    """

    def __init__(self, inner: ReduceFn, evictor: Evictor, label: str) -> None:
        self.inner = inner
        self.evictor = evictor
        self.label = label
        self.fn = getattr(inner, "fn", inner)

    def output(self, contents: Any, accumulating: bool) -> Any:
        if not self.evictor.evict_after:
            evict(self.evictor, contents, self.label)
        inner = self.inner
        result = inner.output(inner.add_all(inner.empty(), [v for v, _ in contents]), False)
        if self.evictor.evict_after:
            evict(self.evictor, contents, self.label)
        return result


class _KeyWindows:
    """One key's policy-window state: its buffer, the count since the last firing, the next index."""

    __slots__ = ("buffer", "since_fire", "index", "first", "has_first", "hold")

    def __init__(self) -> None:
        #: (value, timestamp µs) in processing order: the open window (sliding: the last ``size``).
        self.buffer: list[tuple[Any, int]] = []
        self.since_fire = 0
        self.index = 0
        #: DeltaWindows: the open window's first value, which distances are measured from.
        self.first: Any = None
        self.has_first = False
        #: The earliest timestamp in the buffer: the key holds the output watermark there.
        self.hold: int | None = None

    def as_tuple(self) -> tuple[Any, ...]:
        return (list(self.buffer), self.since_fire, self.index, self.first, self.has_first, self.hold)

    @classmethod
    def from_tuple(cls, t: tuple[Any, ...]) -> "_KeyWindows":
        kw = cls()
        kw.buffer, kw.since_fire, kw.index, kw.first, kw.has_first, kw.hold = t
        kw.buffer = list(kw.buffer)
        return kw


class PolicyWindowReducer:
    """Groups (key, value) windowed values into count or delta windows per key, in processing order.

    The same interface as :class:`~tidal.runners.core.reduce.KeyedWindowReducer`
    (``process``, ``advance``, ``snapshot``, ...). Each window fires once, as
    soon as its policy closes it, with PaneInfo (first, last, ON_TIME, 0, 0)
    in a :class:`~tidal.model.policy.PolicyWindow` spanning its elements'
    timestamps; when the input ends (the watermark reaches the end of time)
    every key's open window fires as a partial window. The pane timestamp
    follows the TimestampCombiner over the elements the function sees
    (OUTPUT_AT_EOW: the window's max timestamp, its latest element). Each key
    holds the output watermark back to the earliest timestamp it buffers; a
    pane whose elements came behind the output watermark is stamped at it.
    """

    def __init__(
        self,
        label: str,
        strategy: WindowingStrategy,
        reduce_fn: ReduceFn,
        on_dropped: Callable[[int], None] | None = None,
        on_dropped_closed: Callable[[int], None] | None = None,
    ) -> None:
        self.label = label
        self.strategy = strategy
        self.windowfn = strategy.windowfn
        self.reduce_fn = reduce_fn
        self.evictor = strategy.evictor
        self.combiner = strategy.timestamp_combiner
        wf = self.windowfn
        self.count = isinstance(wf, CountWindows)
        if not self.count and not isinstance(wf, DeltaWindows):
            raise PipelineExecutionError(label, f"{wf!r} is not a policy window tidal knows (CountWindows, DeltaWindows)")
        self.keys: dict[Any, _KeyWindows] = {}
        self.input_watermark = MIN_TIMESTAMP_US
        self.output_watermark = MIN_TIMESTAMP_US
        self.processing_time = MIN_TIMESTAMP_US
        self.dropped = 0
        self.dropped_closed = 0
        self.ended = False

    # -- input ------------------------------------------------------------------
    def process(self, bundle: list[Any]) -> list[Any]:
        """Add a bundle of (key, value) windowed values in order; return the windows that closed."""
        out: list[Any] = []
        keys = self.keys
        count = self.count
        wf: Any = self.windowfn
        kv: Any = None
        for kv, t, _ws, _p in bundle:
            try:
                key, value = kv
                state = keys.get(key)
            except (TypeError, ValueError) as exc:
                raise self._bad(kv) from exc
            if state is None:
                state = keys[key] = _KeyWindows()
                if not count and wf.initial is not None:
                    state.first, state.has_first = wf.initial, True
            state.buffer.append((value, t))
            if state.hold is None or t < state.hold:
                state.hold = t
            if count:
                if len(state.buffer) > wf.size:
                    _, gone = state.buffer.pop(0)
                    if gone == state.hold:  # the earliest left: find the next earliest
                        state.hold = min(t for _, t in state.buffer)
                state.since_fire += 1
                if state.since_fire >= wf.every:
                    self._fire(key, state, out)
                continue
            state.since_fire += 1
            if not state.has_first:
                state.first, state.has_first = value, True
                continue
            try:
                far = wf.distance_fn(state.first, value) > wf.threshold
            except Exception as exc:
                raise UserCodeError(self.label, wf.distance_fn, exc, kv) from exc
            if far:
                self._fire(key, state, out)
        return out

    def _bad(self, kv: Any) -> PipelineExecutionError:
        try:
            key, _ = kv
        except (TypeError, ValueError):
            return PipelineExecutionError(
                self.label,
                f"GroupByKey and CombinePerKey need (key, value) pairs; got {describe_element(kv)}. "
                "Map each element to a pair first, for example Map(lambda x: (key_of(x), x))",
            )
        return PipelineExecutionError(
            self.label,
            f"the key {describe_element(key)} is not hashable ({type(key).__name__}); "
            "keys must be hashable values such as str, int or tuple",
        )

    def _fire(self, key: Any, state: _KeyWindows, out: list[Any]) -> None:
        """Fire the key's open window and start the next one."""
        evictor = self.evictor
        buffer = state.buffer
        if evictor is not None and not evictor.evict_after:
            evict(evictor, buffer, self.label)
        values = [v for v, _ in buffer]
        times = [t for _, t in buffer]
        reduce_fn = self.reduce_fn
        try:
            result = reduce_fn.output(reduce_fn.add_all(reduce_fn.empty(), values), False)
        except Exception as exc:
            raise UserCodeError(self.label, getattr(reduce_fn, "fn", reduce_fn), exc, key) from exc
        if evictor is not None and evictor.evict_after:
            evict(evictor, buffer, self.label)
        if times:
            window = PolicyWindow.from_micros(state.index, min(times), max(times) + 1)
            ts = self._timestamp(window, times)
        else:  # an evictor left nothing: the window spans no time, at the watermark
            window = PolicyWindow.from_micros(state.index, self.output_watermark, self.output_watermark + 1)
            ts = self.output_watermark
        out.append(((key, result), max(ts, self.output_watermark), (window,), _ONLY_PANE))
        state.index += 1
        state.since_fire = 0
        if self.count and self.windowfn.sliding:  # type: ignore[attr-defined]
            state.hold = min((t for _, t in state.buffer), default=None)
        else:
            state.buffer = []
            state.hold = None
            state.has_first = False
            state.first = None

    def _timestamp(self, window: PolicyWindow, times: list[int]) -> int:
        combiner = self.combiner
        if combiner is TimestampCombiner.OUTPUT_AT_EOW:
            return window._end_us - 1
        if combiner is TimestampCombiner.OUTPUT_AT_EARLIEST:
            return min(times)
        if combiner is TimestampCombiner.OUTPUT_AT_LATEST:
            return max(times)
        transformed = self.windowfn.get_transformed_output_time
        return min(transformed(window, Timestamp.from_micros(t)).micros for t in times)

    # -- time -------------------------------------------------------------------
    def advance(self, input_watermark: int | None = None, processing_time: int | None = None) -> list[Any]:
        """Move the input watermark; at the end of the input fire every open window."""
        out: list[Any] = []
        if processing_time is not None and processing_time > self.processing_time:
            self.processing_time = processing_time
        if input_watermark is not None and input_watermark > self.input_watermark:
            self.input_watermark = input_watermark
            if input_watermark >= MAX_TIMESTAMP_US and not self.ended:
                self.ended = True
                for key, state in self.keys.items():
                    if state.since_fire:
                        self._fire(key, state, out)
        self.output_watermark = max(self.output_watermark, self._compute_output_watermark())
        return out

    def _compute_output_watermark(self) -> int:
        hold = self.input_watermark
        if self.ended:
            return hold  # nothing more fires: what a sliding window still buffers holds nothing
        for state in self.keys.values():
            if state.hold is not None and state.hold < hold:
                hold = state.hold
        return hold

    def pending_windows(self) -> int:
        return sum(1 for s in self.keys.values() if s.since_fire)

    def is_empty(self) -> bool:
        return not any(s.since_fire for s in self.keys.values())

    def next_deadline(self) -> int | None:
        return None

    # -- checkpointing ----------------------------------------------------------
    def _common(self) -> dict[str, Any]:
        return {
            "input_watermark": self.input_watermark,
            "output_watermark": self.output_watermark,
            "processing_time": self.processing_time,
            "dropped": self.dropped,
            "dropped_closed": self.dropped_closed,
        }

    def snapshot(self) -> dict[str, Any]:
        """A picklable copy of all state (every key's buffer, count and window index, the watermarks)."""
        return {"keys": {k: s.as_tuple() for k, s in self.keys.items()}, **self._common()}

    def restore(self, snap: dict[str, Any]) -> None:
        snap = copy.deepcopy(snap)
        self.keys = {k: _KeyWindows.from_tuple(t) for k, t in snap["keys"].items()}
        self.input_watermark = snap["input_watermark"]
        self.output_watermark = snap["output_watermark"]
        self.processing_time = snap["processing_time"]
        self.dropped = snap["dropped"]
        self.dropped_closed = snap["dropped_closed"]
        self.ended = self.input_watermark >= MAX_TIMESTAMP_US

    def keyed_snapshot(self, group: Callable[[Any], int]) -> KeyedSnapshot:
        """:meth:`snapshot` split by key group, so a restore may change the parallelism."""
        snap = self.snapshot()
        return KeyedSnapshot(
            {k: v for k, v in snap.items() if k != "keys"},
            split_by_group(((k, (k, t)) for k, t in snap["keys"].items()), group),
        )

    @staticmethod
    def join_keyed(keyed: KeyedSnapshot) -> dict[str, Any]:
        """The snapshot :meth:`keyed_snapshot`'s groups (of one or several instances) make."""
        keys = {k: t for items in keyed.groups.values() for k, t in items}
        return {"keys": keys, **keyed.common}


def make_reducer(
    label: str,
    strategy: WindowingStrategy,
    reduce_fn: ReduceFn,
    on_dropped: Callable[[int], None] | None = None,
    on_dropped_closed: Callable[[int], None] | None = None,
) -> KeyedWindowReducer | PolicyWindowReducer:
    """The reducer a grouping step with ``strategy`` runs: policy windows, evicting or plain."""
    if isinstance(strategy.windowfn, PolicyWindowFn):
        return PolicyWindowReducer(label, strategy, reduce_fn, on_dropped, on_dropped_closed)
    if strategy.evictor is not None:
        return KeyedWindowReducer(
            label, strategy, EvictingReduceFn(reduce_fn, strategy.evictor, label), on_dropped, on_dropped_closed,
            timestamped_values=True,
        )
    return KeyedWindowReducer(label, strategy, reduce_fn, on_dropped, on_dropped_closed)
