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
from typing import Any, Callable, MutableMapping

from tidal.model.policy import CountEvictor, CountWindows, DeltaEvictor, DeltaWindows, Evictor, PolicyWindow, PolicyWindowFn, TimeEvictor
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, Timestamp
from tidal.model.trigger import PaneInfo, PaneInfoTiming
from tidal.model.window import TimestampCombiner
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError, describe_element
from tidal.runners.core.holds import HoldIndex
from tidal.runners.core.keygroups import KeyedSnapshot, split_by_group
from tidal.runners.core.reduce import KeyedWindowReducer, ReduceFn
from tidal.runners.core.statebackend import DiskBackend, StateBackend, table_snapshot

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


#: One key's policy-window state is a list of plain values (the disk backend writes it with marshal):
#: [buffer, since_fire, index, first, has_first, hold]. ``buffer``: (value, timestamp µs) in processing
#: order, the open window (sliding: the last ``size``); ``since_fire``: elements since the last firing;
#: ``index``: the next window's index; ``first``/``has_first``: DeltaWindows' open window's first value,
#: which distances are measured from; ``hold``: the earliest timestamp in the buffer, where the key holds
#: the output watermark.
_BUFFER, _SINCE, _INDEX, _FIRST, _HAS_FIRST, _HOLD = range(6)

#: Keys the end of the input fires at a time on the disk backend (each piece's panes handed on).
_KEYS_PER_PIECE = 10_000


def _key_state() -> list[Any]:
    """A key's state before its first element: an empty buffer, window index 0, no hold."""
    return [[], 0, 0, None, False, None]


def _state_tuple(state: list[Any]) -> tuple[Any, ...]:
    """A key's state as a snapshot holds it (its buffer copied: no live references)."""
    return (list(state[_BUFFER]), *state[1:])


def _state_from_tuple(t: tuple[Any, ...]) -> list[Any]:
    state = list(t)
    state[_BUFFER] = [tuple(item) for item in state[_BUFFER]]
    return state


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

    Each key's state lives in a table of the step's state backend
    (:meth:`use_state_backend`): on the disk backend only a cache's worth of
    keys is in memory, an incremental checkpoint holds the keys that changed,
    the holds are indexed (:class:`~tidal.runners.core.holds.HoldIndex`) so
    a watermark move reads no key it does not need, and the end of the input
    fires the keys a piece at a time, handing each piece's panes on
    (:attr:`emit_pieces`).

    >>> from tidal import window
    >>> from tidal.model.time import MAX_TIMESTAMP_US
    >>> from tidal.runners.core.reduce import GroupReduceFn
    >>> reducer = PolicyWindowReducer("Group", WindowingStrategy(window.CountWindows(2)), GroupReduceFn())
    >>> gw = (window.GlobalWindow(),)
    >>> [kv for kv, *_ in reducer.process([(("a", 1), 1, gw, None), (("a", 2), 2, gw, None), (("b", 3), 3, gw, None)])]
    [('a', [1, 2])]
    >>> [kv for kv, *_ in reducer.advance(MAX_TIMESTAMP_US)]
    [('b', [3])]
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
        #: key -> the key's state (see _BUFFER ...): a dict, or a table of the state backend.
        self.keys: MutableMapping[Any, list[Any]] = {}
        self._holds = HoldIndex(self._hold_of)
        #: Keys whose open window holds elements (since_fire > 0).
        self._pending = 0
        #: Where fired panes go in pieces while the end of the input fires the keys of a disk
        #: table (None: ``advance`` returns them all).
        self.emit_pieces: Callable[[list[Any]], None] | None = None
        self.input_watermark = MIN_TIMESTAMP_US
        self.output_watermark = MIN_TIMESTAMP_US
        self.processing_time = MIN_TIMESTAMP_US
        self.dropped = 0
        self.dropped_closed = 0
        self.ended = False

    def use_state_backend(self, backend: StateBackend) -> None:
        """Keep every key's state in ``backend``'s table; on disk, the hold index in its spilling heap too."""
        self.keys = backend.table(f"{self.label}/keys")
        if isinstance(backend, DiskBackend):
            self._holds = HoldIndex(self._hold_of, backend.heap(f"{self.label}/holds"))

    def _hold_of(self, key: Any) -> int | None:
        """A key's hold now, read without counting the key as changed."""
        keys = self.keys
        state = keys.get(key) if type(keys) is dict else keys.peek(key)  # type: ignore[attr-defined]
        return None if state is None else state[_HOLD]  # type: ignore[no-any-return]

    # -- input ------------------------------------------------------------------
    def process(self, bundle: list[Any]) -> list[Any]:
        """Add a bundle of (key, value) windowed values in order; return the windows that closed."""
        out: list[Any] = []
        keys = self.keys
        count = self.count
        wf: Any = self.windowfn
        note = self._holds.note
        kv: Any = None
        for kv, t, _ws, _p in bundle:
            try:
                key, value = kv
                state = keys.get(key)
            except (TypeError, ValueError) as exc:
                raise self._bad(kv) from exc
            if state is None:
                state = _key_state()
                if not count and wf.initial is not None:
                    state[_FIRST], state[_HAS_FIRST] = wf.initial, True
                keys[key] = state
            buffer = state[_BUFFER]
            buffer.append((value, t))
            hold = state[_HOLD]
            if hold is None or t < hold:
                state[_HOLD] = hold = t
                note(key, t)
            if not state[_SINCE]:
                self._pending += 1
            state[_SINCE] += 1
            if count:
                if len(buffer) > wf.size:
                    _, gone = buffer.pop(0)
                    if gone == hold:  # the earliest left: find the next earliest
                        state[_HOLD] = hold = min(t for _, t in buffer)
                        note(key, hold)
                if state[_SINCE] >= wf.every:
                    self._fire(key, state, out)
                continue
            if not state[_HAS_FIRST]:
                state[_FIRST], state[_HAS_FIRST] = value, True
                continue
            try:
                far = wf.distance_fn(state[_FIRST], value) > wf.threshold
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

    def _fire(self, key: Any, state: list[Any], out: list[Any]) -> None:
        """Fire the key's open window and start the next one (``state`` is changed in place)."""
        evictor = self.evictor
        buffer = state[_BUFFER]
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
        index = state[_INDEX]
        if times:
            window = PolicyWindow.from_micros(index, min(times), max(times) + 1)
            ts = self._timestamp(window, times)
        else:  # an evictor left nothing: the window spans no time, at the watermark
            window = PolicyWindow.from_micros(index, self.output_watermark, self.output_watermark + 1)
            ts = self.output_watermark
        out.append(((key, result), max(ts, self.output_watermark), (window,), _ONLY_PANE))
        state[_INDEX] = index + 1
        if state[_SINCE]:
            self._pending -= 1
        state[_SINCE] = 0
        if self.count and self.windowfn.sliding:  # type: ignore[attr-defined]
            hold = min((t for _, t in state[_BUFFER]), default=None)
            if hold != state[_HOLD]:
                state[_HOLD] = hold
                self._holds.note(key, hold)
        else:
            state[_BUFFER] = []
            state[_HOLD] = None
            state[_HAS_FIRST] = False
            state[_FIRST] = None

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
                self._fire_all(out)
        self.output_watermark = max(self.output_watermark, self._compute_output_watermark())
        return out

    def _fire_all(self, out: list[Any]) -> None:
        """The end of the input: fire every key's open window."""
        keys = self.keys
        if type(keys) is dict:
            for key, state in keys.items():
                if state[_SINCE]:
                    self._fire(key, state, out)
            return
        # A disk table: a piece of keys at a time, no read transaction open while firing
        # changes them, each fired state written back (one read from disk is a copy).
        for piece in keys.items_in_pieces(_KEYS_PER_PIECE):  # type: ignore[attr-defined]
            for key, state in piece:
                if state[_SINCE]:
                    self._fire(key, state, out)
                    keys[key] = state
            if self.emit_pieces is not None and out:
                self.emit_pieces(out[:])
                out.clear()

    def _compute_output_watermark(self) -> int:
        wm = self.input_watermark
        if self.ended:
            return wm  # nothing more fires: what a sliding window still buffers holds nothing
        hold = self._holds.earliest(len(self.keys))
        return wm if hold is None or hold >= wm else hold

    def pending_windows(self) -> int:
        return self._pending

    def is_empty(self) -> bool:
        return not self._pending

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
        """A picklable copy of the state (every key's buffer, count and window index, the watermarks).

        A disk table taking part in an incremental checkpoint gives only the keys read or
        written since the last one, and ``gone`` the keys deleted since (None: all keys).
        """
        entries, gone = table_snapshot(self.keys)
        return {"keys": {k: _state_tuple(s) for k, s in entries}, "gone": gone, **self._common()}

    def restore(self, snap: dict[str, Any]) -> None:
        snap = copy.deepcopy(snap)
        restored = ((k, _state_from_tuple(t)) for k, t in snap["keys"].items())
        if type(self.keys) is dict:
            self.keys = dict(restored)
        else:  # a table of the disk backend: filled in place
            self.keys.clear()
            for k, state in restored:
                self.keys[k] = state
        self._pending = sum(1 for t in snap["keys"].values() if t[_SINCE])
        self._holds.reset((k, t[_HOLD]) for k, t in snap["keys"].items())
        self.input_watermark = snap["input_watermark"]
        self.output_watermark = snap["output_watermark"]
        self.processing_time = snap["processing_time"]
        self.dropped = snap["dropped"]
        self.dropped_closed = snap["dropped_closed"]
        self.ended = self.input_watermark >= MAX_TIMESTAMP_US

    def keyed_snapshot(self, group: Callable[[Any], int]) -> KeyedSnapshot:
        """:meth:`snapshot` split by key group, so a restore may change the parallelism.

        Each key is an item ``("policy", key, state)``; an incremental snapshot (``delta``
        in its common part) also has ``("gone", key, "p")`` for each key deleted since the
        last one (see :mod:`tidal.runners.core.incremental`).
        """
        snap = self.snapshot()
        items: list[tuple[Any, Any]] = [(k, ("policy", k, t)) for k, t in snap["keys"].items()]
        if snap["gone"] is not None:
            items.extend((k, ("gone", k, "p")) for k in snap["gone"])
        common = {k: v for k, v in snap.items() if k not in ("keys", "gone")}
        if snap["gone"] is not None:
            common["delta"] = True
        return KeyedSnapshot(common, split_by_group(items, group))

    @staticmethod
    def join_keyed(keyed: KeyedSnapshot) -> dict[str, Any]:
        """The snapshot :meth:`keyed_snapshot`'s groups (of one or several instances) make."""
        keys = {item[1]: item[2] for items in keyed.groups.values() for item in items if item[0] == "policy"}
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
