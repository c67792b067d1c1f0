"""The windowing state machine behind GroupByKey and CombinePerKey.

:class:`KeyedWindowReducer` is tidal's ReduceFnRunner: for each key and window
it buffers values (or combines them into an accumulator), merges windows
(sessions, custom merging WindowFns) together with their state, trigger
state and holds, runs the trigger (``triggers.py``), emits panes with their
PaneInfo and output timestamp, drops late data, holds the output watermark
and garbage-collects a window's state once the watermark passes its end plus
the allowed lateness. Every runner groups through this class.

Pane info follows Beam's ReduceFnRunner: a pane is EARLY while the watermark
has not passed the window's max timestamp; ON_TIME only when the watermark
fired it (the end-of-window timer, or the expiry of a window whose end the
watermark passed while it was open) and no ON_TIME or LATE pane came before;
LATE otherwise, including a first firing caused by late data. A merge makes a
new window: its panes count again from index 0.
"""

from __future__ import annotations

import bisect
import collections
import gc
import heapq
import itertools
import operator
from typing import Any, Callable, Iterable, MutableMapping

from tidal.model.combinefn import CombineFn
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, Timestamp
from tidal.model.trigger import AccumulationMode, PaneInfo, PaneInfoTiming, is_default_trigger
from tidal.model.window import IntervalWindow, MergeContext, Sessions, TimestampCombiner
from tidal.runners.core.gcpolicy import promote_young
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError, describe_element
from tidal.runners.core.holds import HoldIndex
from tidal.runners.core.statebackend import DiskBackend, StateBackend, heap_popper, heap_push, table_snapshot
from tidal.runners.core.triggers import TriggerContext, compile_trigger

__all__ = ["ReduceFn", "GroupReduceFn", "CombineReduceFn", "KeyedWindowReducer"]

_EOW, _GC = 0, 1
#: Panes a reducer hands on at a time while it fires many windows at once. A pane with its
#: window and values, and what the next steps build from it, weighs about 600 bytes: 512 of
#: them stay within a core's L2 cache until the steps downstream have read them (in pieces
#: of 10,000 they were read back from memory: one session per element ran 1.3x slower).
_PANES_PER_PIECE = 512

#: Whether reducers may take the lean path (see ``KeyedWindowReducer.lean``); tests switch it off to compare.
LEAN_ENABLED = True
_NO_CONTENTS = object()


class ReduceFn:
    """How a pane's contents are built: a list of values (GroupByKey) or an accumulator."""

    def empty(self) -> Any:
        return []

    def first(self, value: Any) -> Any:
        """The contents of a new pane holding just ``value``."""
        return [value]

    def add(self, contents: Any, value: Any) -> Any:
        contents.append(value)
        return contents

    def add_all(self, contents: Any, values: list[Any]) -> Any:
        contents.extend(values)
        return contents

    def merge(self, contents: list[Any]) -> Any:
        # Extend the biggest list in place (its window is being merged away),
        # so a long session absorbing small windows costs only the new values.
        biggest = max(contents, key=len)
        for c in contents:
            if c is not biggest:
                biggest.extend(c)
        return biggest

    def output(self, contents: Any, accumulating: bool) -> Any:
        return list(contents) if accumulating else contents


class GroupReduceFn(ReduceFn):
    """GroupByKey: the pane is the list of values."""


class CombineReduceFn(ReduceFn):
    """CombinePerKey: the pane is ``extract_output`` of an accumulator.

    When ``lifted``, the inputs are partial accumulators built before the
    shuffle, and they are merged rather than added.
    """

    def __init__(self, fn: CombineFn, lifted: bool, label: str) -> None:
        self.fn = fn
        self.lifted = lifted
        self.label = label

    def empty(self) -> Any:
        return self.fn.create_accumulator()

    def first(self, value: Any) -> Any:
        if self.lifted:
            return value  # already an accumulator
        return self.fn.add_input(self.fn.create_accumulator(), value)

    def add(self, contents: Any, value: Any) -> Any:
        if self.lifted:
            return self.fn.merge_accumulators([contents, value])
        return self.fn.add_input(contents, value)

    def add_all(self, contents: Any, values: list[Any]) -> Any:
        if self.lifted:
            return self.fn.merge_accumulators([contents, *values])
        return self.fn.add_inputs(contents, values)

    def merge(self, contents: list[Any]) -> Any:
        return self.fn.merge_accumulators(contents)

    def output(self, contents: Any, accumulating: bool) -> Any:
        return self.fn.extract_output(contents)


_first = operator.itemgetter(0)
_third = operator.itemgetter(2)

#: PaneInfo values are immutable and few; firings share them.
_PANES: dict[tuple[Any, ...], PaneInfo] = {}


_ONLY_PANE = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)


class _WindowState:
    """Everything kept for one (key, window)."""

    __slots__ = (
        "contents",
        "new_count",
        "hold",
        "tstate",
        "pane_index",
        "nonspec_index",
        "reached_eow",
        "closed",
        "deadline",
    )

    def __init__(self, contents: Any) -> None:
        self.contents = contents
        self.new_count = 0
        self.hold: int | None = None
        self.tstate: dict[Any, Any] = {}
        self.pane_index = 0
        self.nonspec_index = 0
        #: The end-of-window timer fired while this window was open: a firing by the
        #: watermark may still be its ON_TIME pane.
        self.reached_eow = False
        self.closed = False
        self.deadline: int | None = None


class KeyedWindowReducer:
    """Groups (key, value) windowed values by key and window under a windowing strategy.

    ``process`` takes a bundle, ``advance`` moves the input watermark and/or
    processing time; both return the panes that fired, as windowed-value
    tuples ``((key, result), timestamp_us, (window,), pane)``.

    Dropped input is counted by cause: ``on_dropped(n)`` for input too late
    (its window expired), ``on_dropped_closed(n)`` for input whose window's
    trigger had already finished.
    """

    def __init__(
        self,
        label: str,
        strategy: WindowingStrategy,
        reduce_fn: ReduceFn,
        on_dropped: Callable[[int], None] | None = None,
        on_dropped_closed: Callable[[int], None] | None = None,
        timestamped_values: bool = False,
    ) -> None:
        self.label = label
        #: Add each value as ``(value, timestamp µs)`` (an evicting reduce fn needs the timestamps).
        self.timestamped_values = timestamped_values
        self.strategy = strategy
        self.reduce_fn = reduce_fn
        self.windowfn = strategy.windowfn
        self.merging = strategy.windowfn.is_merging()
        self.trigger = compile_trigger(strategy.trigger)
        self.default_trigger = is_default_trigger(strategy.trigger)
        self.accumulating = strategy.accumulation_mode is AccumulationMode.ACCUMULATING
        self.lateness = strategy.allowed_lateness_us
        self.combiner = strategy.timestamp_combiner
        self.on_dropped = on_dropped
        self.on_dropped_closed = on_dropped_closed
        self.states: MutableMapping[tuple[Any, Any], _WindowState] = {}
        self.active: MutableMapping[Any, set[Any]] = {}
        # Default trigger with end-of-window timestamps: merging can wait for the watermark.
        self._bulk = self.merging and self.default_trigger and self.combiner is TimestampCombiner.OUTPUT_AT_EOW
        #: Values waiting for the watermark, by key: (values, windows) columns, or for Sessions one
        #: flat list [ends, value, start, value, start, ...], the windows' bounds as ints (ends
        #: None while each window is one gap long, else the list of their ends).
        self._deferred: dict[Any, Any] = {}
        # Sessions under the default trigger without allowed lateness: a new session the
        # arriving watermark closes at once fires its only pane without window state.
        self._fire_unstored = self._bulk and not self.lateness and type(self.windowfn) is Sessions
        #: Panes of such sessions, waiting for the timers they fire among:
        #: (max timestamp, _GC, seq, window, key, contents), ordered as timers are.
        self._unstored: list[tuple[int, int, int, Any, Any, Any]] = []
        #: Panes of such sessions whose key has no other window, built in order and waiting to be emitted.
        self._ready: list[Any] = []
        self._timers: Any = []  # a heapq list, or a SpilledHeap on the disk backend
        self._window_keys: MutableMapping[Any, dict[Any, None]] = {}
        #: How many keys' values may wait in ``_deferred`` (bounded on the disk backend).
        self._deferred_limit = 1 << 62
        #: Where a large firing's panes go in pieces as they are built (the grouping step's
        #: emit; None: ``advance`` returns them all).
        self.emit_pieces: Callable[[list[Any]], None] | None = None
        # Default trigger, no allowed lateness, non-merging windows, end-of-window timestamps:
        # a window fires once, its only pane, when the watermark passes its end, so a
        # (key, window) needs no state but its contents. ``_lean`` keeps them as
        # window -> {key: contents}, one expiry timer per window in ``_timers``; used
        # while ``states`` is an empty in-memory dict (a disk table, or states restored
        # from a checkpoint, take the general path).
        self.lean = (
            LEAN_ENABLED
            and self.default_trigger
            and not self.lateness
            and not self.merging
            and self.combiner is TimestampCombiner.OUTPUT_AT_EOW
            and not timestamped_values
        )
        self._lean: dict[Any, dict[Any, Any]] = {}
        #: Processing-time deadlines (deadline, 0, seq, key, window): a heapq list, or a SpilledHeap
        #: on the disk backend. An entry whose state no longer waits for it is skipped.
        self._deadlines: Any = []
        #: Where the open windows hold the output watermark (None: at their ends, OUTPUT_AT_EOW).
        self._holds = None if self.combiner is TimestampCombiner.OUTPUT_AT_EOW else HoldIndex(self._hold_of)
        self._seq = itertools.count()
        self.input_watermark = MIN_TIMESTAMP_US
        self.output_watermark = MIN_TIMESTAMP_US
        self.processing_time = MIN_TIMESTAMP_US
        self.dropped = 0
        self.dropped_closed = 0

    # -- input ------------------------------------------------------------------
    def process(self, bundle: list[Any]) -> list[Any]:
        """Add a bundle of (key, value) windowed values; return the panes that fire."""
        if self.timestamped_values:
            bundle = self._with_timestamps(bundle)
        if self.lean and not self.states and type(self.states) is dict:
            self._process_lean(bundle)
            return []  # nothing fires before the watermark passes a window's end
        if self.merging:
            touched = self._process_merging(bundle)
        else:
            touched = self._process_plain(bundle)
        out: list[Any] = []
        wm, now = self.input_watermark, self.processing_time
        trigger = self.trigger
        for (key, window), st in touched.items():
            if st.closed:
                continue
            ctx = TriggerContext(wm, now, window._end_us - 1)
            if trigger.should_fire(st.tstate, ctx):
                self._fire(key, window, st, ctx, out)
            self._schedule_deadline(key, window, st)
        if touched and type(self.states) is not dict:
            # A table that spills may have written a touched state to disk before it fired:
            # the fired state is the newest, so it goes back.
            for kw, st in touched.items():
                if kw in self.states:
                    self.states[kw] = st
        return out

    def _with_timestamps(self, bundle: list[Any]) -> list[Any]:
        out = []
        kv: Any = None
        try:
            for kv, t, ws, p in bundle:
                key, value = kv
                out.append(((key, (value, t)), t, ws, p))
        except (TypeError, ValueError) as exc:
            raise self._bad_element(kv) from exc
        return out

    def _bad_element(self, value: Any) -> PipelineExecutionError:
        return PipelineExecutionError(
            self.label,
            f"GroupByKey and CombinePerKey need (key, value) pairs; got {describe_element(value)}. "
            "Map each element to a pair first, for example Map(lambda x: (key_of(x), x))",
        )

    def _unhashable_key(self, key: Any) -> PipelineExecutionError:
        return PipelineExecutionError(
            self.label,
            f"the key {describe_element(key)} is not hashable ({type(key).__name__}); "
            "keys must be hashable values such as str, int or tuple",
        )

    def _process_plain(self, bundle: list[Any]) -> dict[tuple[Any, Any], _WindowState]:
        # Hot loop for non-merging windows: written for speed on purpose.
        states = self.states
        touched: dict[tuple[Any, Any], _WindowState] = {}
        wm = self.input_watermark
        expiry_slack = self.lateness
        reduce_add = self.reduce_fn.add
        first = self.reduce_fn.first
        track_hold = self.combiner is not TimestampCombiner.OUTPUT_AT_EOW
        default = self.default_trigger
        trigger = self.trigger
        now = self.processing_time
        kv: Any = None
        try:
            for kv, t, ws, _p in bundle:
                key, value = kv
                for w in ws:
                    kw = (key, w)
                    st = states.get(kw)
                    if st is None:
                        if w._end_us - 1 + expiry_slack < wm:
                            self._drop_late(1)
                            continue
                        st = self._new_state(key, w, first(value))
                    elif st.closed:
                        self._drop_closed(1)
                        continue
                    else:
                        st.contents = reduce_add(st.contents, value)
                    st.new_count += 1
                    if track_hold:
                        self._add_hold(st, w, t, key)
                    if not default:
                        trigger.on_element(st.tstate, TriggerContext(wm, now, w._end_us - 1))
                        touched[kw] = st
                    elif w._end_us <= wm:
                        touched[kw] = st  # late: the default trigger fires it right away
        except (TypeError, ValueError) as exc:
            self._raise_for(kv, exc)
        except Exception as exc:
            raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, kv) from exc
        return touched

    def _process_lean(self, bundle: list[Any]) -> None:
        # Hot loop of the lean path (see ``lean`` in __init__): written for speed on purpose.
        lean = self._lean
        get = lean.get
        wm = self.input_watermark
        reduce_add = self.reduce_fn.add
        first = self.reduce_fn.first
        missing = _NO_CONTENTS
        kv: Any = None
        try:
            for kv, _t, ws, _p in bundle:
                key, value = kv
                for w in ws:
                    panes = get(w)
                    if panes is None:
                        if w._end_us <= wm:  # expired: max timestamp behind the watermark, no lateness
                            self._drop_late(1)
                            continue
                        panes = lean[w] = {}
                        if w not in self._window_keys:
                            heapq.heappush(self._timers, (min(w._end_us - 1, MAX_TIMESTAMP_US), _GC, next(self._seq), w))
                    contents = panes.get(key, missing)
                    panes[key] = first(value) if contents is missing else reduce_add(contents, value)
        except (TypeError, ValueError) as exc:
            self._raise_for(kv, exc)
        except Exception as exc:
            raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, kv) from exc

    def _materialize_lean(self) -> None:
        """Move the lean path's contents into window state (a snapshot keeps one form).

        Each becomes the state the general path would hold: its contents, new input
        (counted once: under the default trigger only its being there matters) and the
        window's key registered with the timer already in ``_timers``.
        """
        if not self._lean:
            return
        lean, self._lean = self._lean, {}
        for window, panes in lean.items():
            keys = self._window_keys.setdefault(window, {})
            for key, contents in panes.items():
                st = _WindowState(contents)
                st.new_count = 1
                self.states[(key, window)] = st
                keys[key] = None

    def _raise_for(self, kv: Any, exc: Exception) -> None:
        try:
            key, _ = kv
        except (TypeError, ValueError):
            raise self._bad_element(kv) from exc
        try:
            hash(key)
        except TypeError:
            raise self._unhashable_key(key) from exc
        raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, kv) from exc

    def _process_merging(self, bundle: list[Any]) -> dict[tuple[Any, Any], _WindowState]:
        wm = self.input_watermark
        lateness = self.lateness
        if self._bulk:
            # Under the default trigger nothing fires before the watermark moves
            # unless an element is already behind it: on-time values wait in
            # ``_deferred`` (as columns) and each key merges once per watermark
            # move instead of once per bundle.
            deferred = self._deferred
            get = deferred.get
            late_seen = False
            kv: Any = None
            try:
                if type(self.windowfn) is Sessions:
                    # Sessions wait in one flat list per key, no window object each (an
                    # IntervalWindow's start and end are items 0 and 1): item 0 holds the ends
                    # (None while every window is one gap long), then value, start, value,
                    # start, ... (one list per key touches fewer objects than a list per
                    # column: keys in random order miss the CPU's caches on each). The sweep
                    # builds a window per session.
                    gap = self.windowfn.gap_us
                    for kv, _t, ws, _p in bundle:
                        key, value = kv
                        cols = get(key)
                        if cols is None:
                            cols = deferred[key] = [None]
                        for w in ws:
                            start, end = w[0], w[1]
                            if end <= wm:
                                if end - 1 + lateness < wm:
                                    self._drop_late(1)
                                    continue
                                late_seen = True
                            cols.append(value)
                            cols.append(start)
                            ends = cols[0]
                            if ends is not None:
                                ends.append(end)
                            elif end - start != gap:  # a merged session from upstream
                                cols[0] = [s + gap for s in cols[2:-1:2]] + [end]
                    bundle = ()  # type: ignore[assignment]
                for kv, _t, ws, _p in bundle:
                    key, value = kv
                    cols = get(key)
                    if cols is None:
                        cols = deferred[key] = ([], [])
                    for w in ws:
                        end = w._end_us
                        if end <= wm:
                            if end - 1 + lateness < wm:
                                self._drop_late(1)
                                continue
                            late_seen = True
                        cols[0].append(value)
                        cols[1].append(w)
            except (TypeError, ValueError) as exc:
                self._raise_for(kv, exc)
            return self._flush_deferred() if late_seen or len(deferred) > self._deferred_limit else {}
        per_key: collections.defaultdict[Any, list[tuple[Any, int, Any]]] = collections.defaultdict(list)
        kv = None
        try:
            for kv, t, ws, _p in bundle:
                key, value = kv
                items = per_key[key]
                for w in ws:
                    if w._end_us - 1 + lateness < wm:
                        self._drop_late(1)
                        continue
                    items.append((value, t, w))
        except (TypeError, ValueError) as exc:
            self._raise_for(kv, exc)
        return self._merge_and_add(per_key)

    def _flush_deferred(self, closing_watermark: int | None = None) -> dict[tuple[Any, Any], _WindowState]:
        """Add the deferred values to their windows.

        ``closing_watermark``: the watermark about to be set. A new session that it
        closes (and that bridges no active window) then becomes a pane at once
        instead of window state and a timer: in ``_unstored`` among the timers
        it fires with when its key has other windows, or else in ``_ready``
        (its key's panes are in time order, and the panes of different keys
        have no order between them), handed on in pieces as they are built.
        """
        if not self._deferred:
            return {}
        deferred, self._deferred = self._deferred, {}
        touched: dict[tuple[Any, Any], _WindowState] = {}
        sessions = type(self.windowfn) is Sessions
        if not self._fire_unstored:
            closing_watermark = None
        ready = self._ready
        gap = self.windowfn.gap_us if sessions else 0  # type: ignore[attr-defined]
        active = self.active
        piece = _PANES_PER_PIECE
        for key, cols in deferred.items():
            if sessions:
                # cols: [ends or None (every window one gap long), value, start, value, start, ...]
                act = active.get(key)
                if act:
                    self._sweep_sessions(key, act, cols[1::2], cols[2::2], cols[0], gap, touched, closing_watermark)
                else:
                    self._sweep_new_sessions(key, cols[1::2], cols[2::2], cols[0], gap, touched, closing_watermark)
                if len(ready) >= piece:
                    self._hand_on_piece(ready)
            else:
                values, windows = cols
                mapping = self._merge_key(key, set(windows))
                self._add_grouped(key, zip(values, windows), mapping, touched)
        return touched

    def _sweep_sessions(
        self,
        key: Any,
        active: set[Any],
        values: list[Any],
        starts: list[int],
        ends: list[int] | None,
        gap: int,
        touched: dict[tuple[Any, Any], _WindowState],
        closing_watermark: int | None = None,
    ) -> None:
        """Merge a key's new session windows with its active ones in one sorted sweep.

        The built-in Sessions merge (overlapping intervals join), done without
        building a MergeContext: the key's active windows never overlap each
        other, so each group holds new values and the active windows they bridge.
        ``ends`` None: each new window ends ``gap`` after its start. ``active``: the key's
        active windows (a key without any goes to ``_sweep_new_sessions``).
        """
        if ends is None:
            ends = [s + gap for s in starts]
        acts = sorted(active)
        ai, na = 0, len(acts)
        groups: list[tuple[int, int, list[Any], list[Any]]] = []
        g_start = g_end = 0
        g_vals: list[Any] | None = None
        g_acts: list[Any] = []
        order = _start_order(starts)
        for idx in range(len(starts)) if order is None else order:
            w_start, w_end = starts[idx], ends[idx]
            while ai < na and acts[ai][0] <= w_start:
                a = acts[ai]
                ai += 1
                if g_vals is not None and a[0] < g_end:
                    g_acts.append(a)
                    if a[1] > g_end:
                        g_end = a[1]
                else:
                    if g_vals:
                        groups.append((g_start, g_end, g_vals, g_acts))
                    g_start, g_end, g_vals, g_acts = a[0], a[1], [], [a]
            if g_vals is not None and w_start < g_end:
                g_vals.append(values[idx])
                if w_end > g_end:
                    g_end = w_end
            else:
                if g_vals:
                    groups.append((g_start, g_end, g_vals, g_acts))
                g_start, g_end, g_vals, g_acts = w_start, w_end, [values[idx]], []
        while ai < na and g_vals:
            a = acts[ai]
            ai += 1
            if a[0] >= g_end:
                break
            g_acts.append(a)
            if a[1] > g_end:
                g_end = a[1]
        if g_vals:
            groups.append((g_start, g_end, g_vals, g_acts))
        wm = self.input_watermark
        add_all = self.reduce_fn.add_all
        empty = self.reduce_fn.empty
        states = self.states
        unstored = self._unstored
        closes_before = MIN_TIMESTAMP_US if closing_watermark is None else closing_watermark + 1
        seq = self._seq
        for start, end, vals, bridged in groups:
            result = tuple.__new__(IntervalWindow, (start, end))
            try:
                if not bridged:
                    if end < closes_before:
                        # Closed by the arriving watermark: its only pane, in timer order.
                        unstored.append((end - 1, _GC, next(seq), result, key, add_all(empty(), vals)))
                        continue
                    st = self._new_state(key, result, add_all(empty(), vals))
                    active.add(result)
                else:
                    if len(bridged) > 1 or bridged[0] != result:
                        self._merge_states(key, bridged, result)
                        active.difference_update(bridged)
                        active.add(result)
                    st = states[(key, result)]
                    st.contents = add_all(st.contents, vals)
            except Exception as exc:
                raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, (key, vals[0])) from exc
            st.new_count += len(vals)
            if end <= wm:
                touched[(key, result)] = st

    def _sweep_new_sessions(
        self,
        key: Any,
        values: list[Any],
        starts: list[int],
        ends: list[int] | None,
        gap: int,
        touched: dict[tuple[Any, Any], _WindowState],
        closing_watermark: int | None,
    ) -> None:
        """``_sweep_sessions`` for a key with no active window: its new windows only chain together."""
        if not starts:
            return  # all of the key's values arrived too late
        closes_before = MIN_TIMESTAMP_US if closing_watermark is None else closing_watermark + 1
        ready = self._ready
        only = _ONLY_PANE
        new, interval = tuple.__new__, IntervalWindow
        # By start; equal starts keep arrival order. Values that arrived in time order (a
        # source read in order) need no sort.
        order = _start_order(starts)
        if order is not None:
            values = [values[i] for i in order]
            starts = [starts[i] for i in order]
            if ends is not None:
                ends = [ends[i] for i in order]
        # A GroupByKey pane is the list of its values: the group's fresh list is that list.
        as_list = type(self.reduce_fn) is GroupReduceFn
        # Groups come in time order, so those the watermark closes come first; a GroupByKey's
        # become panes as the sweep closes them (in the order the loop below would give them).
        unstore_now = as_list and closing_watermark is not None
        groups = []
        g_start = starts[0]
        g_vals = [values[0]]
        rest = zip(itertools.islice(values, 1, None), itertools.islice(starts, 1, None))
        if ends is None:
            # Every window one gap long: in start order the group's end is its last start + gap.
            g_end = g_start + gap
            for value, w_start in rest:
                if w_start < g_end:
                    g_vals.append(value)
                    g_end = w_start + gap
                else:
                    if unstore_now and g_end < closes_before:
                        ready.append(((key, g_vals), g_end - 1, (new(interval, (g_start, g_end)),), only))
                    else:
                        groups.append((g_start, g_end, g_vals))
                    g_start, g_end, g_vals = w_start, w_start + gap, [value]
        else:
            g_end = ends[0]
            for (value, w_start), w_end in zip(rest, itertools.islice(ends, 1, None)):
                if w_start < g_end:
                    g_vals.append(value)
                    if w_end > g_end:
                        g_end = w_end
                else:
                    if unstore_now and g_end < closes_before:
                        ready.append(((key, g_vals), g_end - 1, (new(interval, (g_start, g_end)),), only))
                    else:
                        groups.append((g_start, g_end, g_vals))
                    g_start, g_end, g_vals = w_start, w_end, [value]
        groups.append((g_start, g_end, g_vals))
        wm = self.input_watermark
        reduce_fn = self.reduce_fn
        active = None
        for start, end, vals in groups:
            result = new(interval, (start, end))
            try:
                contents = vals if as_list else reduce_fn.add_all(reduce_fn.empty(), vals)
                if end < closes_before:
                    # Closed by the arriving watermark: its only pane (a GroupByKey's is its list).
                    ready.append(((key, vals if as_list else reduce_fn.output(contents, False)), end - 1, (result,), only))
                    continue
            except PipelineExecutionError:
                raise  # it names its step and element already
            except Exception as exc:
                raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, (key, vals[0])) from exc
            st = self._new_state(key, result, contents)
            if active is None:
                active = self.active.get(key)
                if active is None:
                    active = self.active[key] = set()
            active.add(result)
            st.new_count += len(vals)
            if end <= wm:
                touched[(key, result)] = st

    def _merge_and_add(self, per_key: dict[Any, list[tuple[Any, int, Any]]]) -> dict[tuple[Any, Any], _WindowState]:
        wm, now = self.input_watermark, self.processing_time
        touched: dict[tuple[Any, Any], _WindowState] = {}
        states = self.states
        reduce_add = self.reduce_fn.add
        first = self.reduce_fn.first
        default = self.default_trigger
        track_hold = self.combiner is not TimestampCombiner.OUTPUT_AT_EOW
        for key, items in per_key.items():
            if not items:
                continue
            mapping = self._merge_key(key, set(map(_third, items)))
            value = None
            try:
                for value, t, w in items:
                    target = mapping.get(w, w)
                    kw = (key, target)
                    st = states.get(kw)
                    if st is None:
                        st = self._new_state(key, target, first(value))
                    elif st.closed:
                        self._drop_closed(1)
                        continue
                    else:
                        st.contents = reduce_add(st.contents, value)
                    st.new_count += 1
                    if track_hold:
                        self._add_hold(st, target, t, key)
                    if not default:
                        self.trigger.on_element(st.tstate, TriggerContext(wm, now, target._end_us - 1))
                        touched[kw] = st
                    elif target._end_us <= wm:
                        touched[kw] = st
            except Exception as exc:
                raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, (key, value)) from exc
        return touched

    def _add_grouped(
        self, key: Any, pairs: Iterable[tuple[Any, Any]], mapping: dict[Any, Any], touched: dict[tuple[Any, Any], _WindowState]
    ) -> None:
        """Add a key's (value, window) pairs window by window in bulk (default trigger, end-of-window timestamps)."""
        by_target: dict[Any, list[Any]] = {}
        for value, w in pairs:
            target = mapping.get(w, w)
            values = by_target.get(target)
            if values is None:
                by_target[target] = [value]
            else:
                values.append(value)
        wm = self.input_watermark
        add_all = self.reduce_fn.add_all
        for target, values in by_target.items():
            kw = (key, target)
            st = self.states.get(kw)
            try:
                if st is None:
                    st = self._new_state(key, target, add_all(self.reduce_fn.empty(), values))
                elif st.closed:
                    self._drop_closed(len(values))
                    continue
                else:
                    st.contents = add_all(st.contents, values)
            except Exception as exc:
                raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, (key, values[0])) from exc
            st.new_count += len(values)
            if target._end_us <= wm:
                touched[kw] = st

    def _merge_key(self, key: Any, new_windows: set[Any]) -> dict[Any, Any]:
        """Merge the key's active windows with the new ones; returns window -> merged window."""
        active = self.active.setdefault(key, set())
        candidates = active | new_windows
        try:
            ordered = sorted(candidates)
        except TypeError:  # custom windows need not be ordered
            ordered = list(candidates)
        ctx = MergeContext(ordered)
        try:
            self.windowfn.merge(ctx)
        except Exception as exc:
            raise UserCodeError(self.label, self.windowfn.merge, exc, key) from exc
        mapping: dict[Any, Any] = {}
        seen: set[Any] = set()
        for to_merge, result in ctx.merges:
            for w in to_merge:
                if w not in candidates:
                    raise PipelineExecutionError(
                        self.label,
                        f"the merging WindowFn {self.windowfn!r} merged {w!r}, which is not one of "
                        f"the windows it was given ({sorted(map(repr, candidates))})",
                    )
                if w in seen:
                    raise PipelineExecutionError(
                        self.label,
                        f"the merging WindowFn {self.windowfn!r} is inconsistent: it merged the "
                        f"window {w!r} into more than one result in one merge call",
                    )
                seen.add(w)
            if len(to_merge) < 2 and (not to_merge or to_merge[0] == result):
                continue
            for w in to_merge:
                mapping[w] = result
            merged_active = [w for w in to_merge if w in active]
            if merged_active != [result]:  # else new windows fall inside an active one
                self._merge_states(key, merged_active, result)
            active.difference_update(to_merge)
            active.add(result)
        for w in new_windows:
            if w not in mapping:
                active.add(w)
        return mapping

    def _merge_states(self, key: Any, sources: list[Any], result: Any) -> None:
        source_states = []
        # The merge result's own state when it was one of the merged windows (or already
        # active): that window is not new and keeps its pane info. A new window starts
        # its panes again at index 0 (Beam does not carry PaneInfo across a merge).
        carried: _WindowState | None = None
        for w in sources:
            st = self.states.pop((key, w), None)
            if st is not None:
                source_states.append(st)
                if w == result:
                    carried = st
                keys = self._window_keys.get(w)
                if keys is not None:
                    keys.pop(key, None)
        if not source_states:
            return
        existing = self.states.get((key, result))
        if existing is not None:
            source_states.insert(0, existing)
            carried = existing
        ctx = TriggerContext(self.input_watermark, self.processing_time, result._end_us - 1)
        if len(source_states) == 1 and self.default_trigger:
            # A window that only grew: move its state instead of rebuilding it.
            st = source_states[0]
            _take_pane_info(st, carried)
            self.states[(key, result)] = st
            if self._holds is not None:
                self._holds.note((key, result), st.hold)
            self._push_timers(key, result)
            return
        closed = any(s.closed for s in source_states)
        # A closed (finished) window keeps no contents; merging into it closes the result.
        st = _WindowState(None if closed else self.reduce_fn.merge([s.contents for s in source_states]))
        st.new_count = sum(s.new_count for s in source_states)
        holds = [s.hold for s in source_states if s.hold is not None]
        st.hold = min(holds) if holds else None
        self.trigger.on_merge(st.tstate, [s.tstate for s in source_states], ctx)
        _take_pane_info(st, carried)
        st.closed = closed
        self.states[(key, result)] = st
        if self._holds is not None:
            self._holds.note((key, result), st.hold)
        self._push_timers(key, result)

    def _new_state(self, key: Any, window: Any, contents: Any = _NO_CONTENTS) -> _WindowState:
        st = _WindowState(self.reduce_fn.empty() if contents is _NO_CONTENTS else contents)
        self.states[(key, window)] = st
        self._push_timers(key, window)
        return st

    def _push_timers(self, key: Any, window: Any) -> None:
        # Timers are per window, not per (key, window): with many keys the keys
        # of a window share one end-of-window and one garbage-collection timer.
        keys = self._window_keys.get(window)
        if keys is None:
            keys = self._window_keys[window] = {}
            max_ts = window._end_us - 1
            seq = next(self._seq)
            timers = self._timers
            # As in Beam, a window the watermark has already passed gets no end-of-window
            # timer (so no ON_TIME pane), only its expiry.
            if self.lateness and max_ts >= self.input_watermark:
                heap_push(timers, (max_ts, _EOW, seq, window))
            # Without lateness the end of window and its expiry coincide: one timer does both.
            heap_push(timers, (min(max_ts + self.lateness, MAX_TIMESTAMP_US), _GC, seq, window))
        keys[key] = None

    def use_state_backend(self, backend: StateBackend) -> None:
        """Keep the window states in ``backend``'s tables; on disk, also what grows with keys and windows.

        On the disk backend the merging windows of each key, the keys of each window,
        the timers and the index of the watermark holds spill too, values waiting for
        the watermark (``_deferred``) are added to their windows once as many keys wait
        as the cache holds, and a firing of many windows hands its panes on in pieces
        (:attr:`emit_pieces`, as in memory).
        """
        self.states = backend.table(f"{self.label}/windows")
        if self._holds is not None and isinstance(backend, DiskBackend):
            self._holds = HoldIndex(self._hold_of, backend.heap(f"{self.label}/holds"))
        if isinstance(backend, DiskBackend):
            self.active = backend.table(f"{self.label}/active")
            self._window_keys = backend.table(f"{self.label}/window_keys")
            self._timers = backend.heap(f"{self.label}/timers")
            self._deadlines = backend.heap(f"{self.label}/deadlines")
            self._deferred_limit = backend.cache_entries

    def _add_hold(self, st: _WindowState, window: Any, t: int, key: Any) -> None:
        max_ts = window._end_us - 1
        if t < self.output_watermark:
            h = max_ts  # already late: it cannot hold the watermark back
        elif self.combiner is TimestampCombiner.OUTPUT_AT_EARLIEST_TRANSFORMED:
            h = self.windowfn.get_transformed_output_time(window, Timestamp.from_micros(t)).micros
        else:
            h = t
        old = st.hold
        if old is None:
            st.hold = h
        elif self.combiner is TimestampCombiner.OUTPUT_AT_LATEST:
            st.hold = max(old, h)
        else:
            st.hold = min(old, h)
        if st.hold != old:
            self._holds.note((key, window), st.hold)  # type: ignore[union-attr]  # set when holds are tracked

    def _drop_late(self, n: int) -> None:
        """Input too late: its window had expired (the watermark passed end + allowed lateness)."""
        self.dropped += n
        if self.on_dropped is not None:
            self.on_dropped(n)

    def _drop_closed(self, n: int) -> None:
        """Input for a window whose trigger had finished (the window is closed, not yet expired)."""
        self.dropped_closed += n
        if self.on_dropped_closed is not None:
            self.on_dropped_closed(n)

    def _schedule_deadline(self, key: Any, window: Any, st: _WindowState) -> None:
        deadline = self.trigger.processing_deadline(st.tstate)
        # A deadline that has passed was just evaluated (AfterAll may still wait on
        # another sub-trigger): the next element re-evaluates it, no timer needed.
        if deadline is not None and deadline > self.processing_time and deadline != st.deadline:
            st.deadline = deadline
            heap_push(self._deadlines, (deadline, 0, next(self._seq), key, window))

    # -- firing -----------------------------------------------------------------
    def _fire(
        self,
        key: Any,
        window: Any,
        st: _WindowState,
        ctx: TriggerContext,
        out: list[Any],
        final: bool = False,
        by_watermark: bool = False,
    ) -> None:
        """Fire one pane. ``by_watermark``: a watermark timer (end of window or expiry) caused it."""
        max_ts = window._end_us - 1
        if not ctx.past_end_of_window:
            timing = PaneInfoTiming.EARLY
        elif by_watermark and st.reached_eow and st.nonspec_index == 0:
            # The watermark passed the end of the window and nothing non-early fired yet:
            # the window's one ON_TIME pane. (nonspec_index then counts it: at most once.)
            timing = PaneInfoTiming.ON_TIME
        else:
            timing = PaneInfoTiming.LATE
        finished = True if final else self.trigger.on_fire(st.tstate, ctx)
        if st.new_count == 0 and timing is not PaneInfoTiming.ON_TIME:
            if finished:
                st.closed = True
            return
        expiring = ctx.watermark_us > max_ts + self.lateness
        pane_key = (finished or expiring, timing, st.pane_index, -1 if timing is PaneInfoTiming.EARLY else st.nonspec_index)
        pane = _PANES.get(pane_key)
        if pane is None:
            pane = _PANES[pane_key] = PaneInfo(st.pane_index == 0, *pane_key)
        if self.combiner is TimestampCombiner.OUTPUT_AT_EOW or st.hold is None:
            ts = max_ts
        else:
            ts = st.hold
        try:
            result = self.reduce_fn.output(st.contents, self.accumulating)
        except PipelineExecutionError:
            raise  # it names its step and element already
        except Exception as exc:
            raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, key) from exc
        out.append(((key, result), ts, (window,), pane))
        if not self.accumulating:
            st.contents = self.reduce_fn.empty()
        st.new_count = 0
        st.hold = None
        st.pane_index += 1
        if timing is not PaneInfoTiming.EARLY:
            st.nonspec_index += 1
        if finished:
            st.closed = True
            st.contents = None

    # -- time -------------------------------------------------------------------
    def advance(self, input_watermark: int | None = None, processing_time: int | None = None) -> list[Any]:
        """Move the input watermark and/or processing time; return the panes that fire."""
        out: list[Any] = []
        if processing_time is not None and processing_time > self.processing_time:
            self.processing_time = processing_time
            self._fire_deadlines(out)
        if input_watermark is not None and input_watermark > self.input_watermark:
            # Merging the deferred values and firing build many acyclic objects (panes,
            # windows, lists of values) at once: the cyclic collector would scan each of
            # them over and over as it allocates; it runs after the firing instead.
            collecting = gc.isenabled()
            gc.disable()
            try:
                self._flush_deferred(input_watermark)
                self.input_watermark = input_watermark
                self._fire_timers(out)
            finally:
                if collecting:
                    promote_young()  # the panes waiting to be emitted are not scanned
                    gc.enable()
        self.output_watermark = max(self.output_watermark, self._compute_output_watermark())
        return out

    def _fire_deadlines(self, out: list[Any]) -> None:
        now = self.processing_time
        heap = self._deadlines
        pop = heap_popper(heap)
        while heap and heap[0][0] <= now:
            deadline, _, _, key, window = pop(heap)
            st = self.states.get((key, window))
            if st is None or st.closed or st.deadline != deadline:
                continue
            st.deadline = None
            ctx = TriggerContext(self.input_watermark, now, window._end_us - 1)
            if self.trigger.should_fire(st.tstate, ctx):
                self._fire(key, window, st, ctx, out)
            self._schedule_deadline(key, window, st)

    def _fire_timers(self, out: list[Any]) -> None:
        wm = self.input_watermark
        heap = self._timers
        states = self.states
        should_fire = self.trigger.should_fire
        if self.default_trigger and not self.lateness:
            due: Any = self._due_timers()
            unstored, self._unstored = self._unstored, []
            if self._ready:
                out += self._ready
                self._ready.clear()
            if type(due) is not list:  # off disk, in timer order
                if unstored:
                    unstored.sort()
                    due = heapq.merge(due, unstored)
            elif not due:
                # Only sessions never stored: each key's are in time order already (the sweep made
                # them so), and panes of different keys have no order between them.
                due = unstored
            elif unstored:
                due += unstored
                due.sort()  # (timestamp, kind, seq) are unique: timer order
            self._fire_only_panes(due, out)
            return
        pop = heap_popper(heap)
        while heap and heap[0][0] < wm:
            _, kind, _, window = pop(heap)
            self._hand_on_piece(out)
            keys = self._window_keys.get(window)
            if not keys:
                self._window_keys.pop(window, None)
                continue
            ctx = TriggerContext(wm, self.processing_time, window._end_us - 1)
            if kind == _EOW or not self.lateness:
                # The end-of-window timer (without lateness it is also the expiry timer).
                for key in keys:
                    st = states.get((key, window))
                    if st is not None and not st.closed:
                        st.reached_eow = True
                        if should_fire(st.tstate, ctx):
                            self._fire(key, window, st, ctx, out, by_watermark=True)
                if kind == _EOW:
                    continue
            for key in keys:
                st = states.pop((key, window), None)
                if st is not None and not st.closed and st.new_count > 0:
                    self._fire(key, window, st, ctx, out, final=True, by_watermark=True)
                if self.merging:
                    act = self.active.get(key)
                    if act is not None:
                        act.discard(window)
                        if not act:
                            del self.active[key]
            del self._window_keys[window]

    def _due_timers(self) -> list[Any]:
        """Pop the timers behind the input watermark, in timer order.

        At the final watermark every timer is due: one sort (a sorted list is a valid
        heap, and it pops in the same order) replaces a heap pop per window.
        """
        heap = self._timers
        wm = self.input_watermark
        if type(heap) is not list:
            return heap.pop_due(wm)  # type: ignore[no-any-return]  # off disk as they are fired
        if wm >= MAX_TIMESTAMP_US and len(heap) > 1:
            heap.sort()
            n = bisect.bisect_left(heap, (wm,))
            due = heap[:n]
            del heap[:n]
            return due
        due = []
        while heap and heap[0][0] < wm:
            due.append(heapq.heappop(heap))
        return due

    def _fire_only_panes(self, due: list[Any], out: list[Any]) -> None:
        """Default trigger, no allowed lateness: each window fires once, on time, and expires.

        Nothing can have fired earlier (an element behind the watermark is
        already expired), so every pane is the first and last, ON_TIME; this
        is the path every batch pipeline takes, so it skips the general machine
        and handles all the windows due at once. ``due`` holds the timers, in
        order, and the panes of sessions that were never stored (``_unstored``).

        Once ``_PANES_PER_PIECE`` panes are built they are handed on
        (:attr:`emit_pieces`) before the next window's: a large firing's panes
        are sent downstream and freed while still in the CPU's cache, and
        timers coming off disk are read as they fire.
        """
        states = self.states
        window_keys = self._window_keys
        lean = self._lean
        active = self.active
        merging = self.merging
        output = self.reduce_fn.output
        eow = self.combiner is TimestampCombiner.OUTPUT_AT_EOW
        append = out.append
        only = _ONLY_PANE
        key = None
        try:
            for timer in due:
                self._hand_on_piece(out)
                window = timer[3]
                if len(timer) > 4:  # a session never stored: (max_ts, _GC, seq, window, key, contents)
                    key = timer[4]
                    append(((key, output(timer[5], False)), timer[0], (window,), only))
                    continue
                keys = window_keys.pop(window, None)
                if lean:
                    panes = lean.pop(window, None)
                    if panes:
                        in_window = (window,)
                        max_ts = window._end_us - 1
                        for key, contents in panes.items():
                            append(((key, output(contents, False)), max_ts, in_window, only))
                if not keys:
                    continue
                max_ts = window._end_us - 1
                in_window = (window,)
                for key in keys:
                    st = states.pop((key, window), None)
                    if st is None or st.closed or not st.new_count:
                        continue
                    append(((key, output(st.contents, False)), max_ts if eow or st.hold is None else st.hold, in_window, only))
                if merging:
                    for key in keys:
                        # Taken out and put back only while it holds other windows: a spilled
                        # table then never reads back an entry only to delete it.
                        act = active.pop(key, None)
                        if act is not None:
                            act.discard(window)
                            if act:
                                active[key] = act
        except PipelineExecutionError:
            raise  # it names its step and element already
        except Exception as exc:
            raise UserCodeError(self.label, getattr(self.reduce_fn, "fn", self.reduce_fn), exc, key) from exc
        self._hand_on_piece(out)

    def _hand_on_piece(self, panes: list[Any]) -> None:
        """Once ``panes`` holds a piece's worth, hand them on (:attr:`emit_pieces`) and empty it."""
        if self.emit_pieces is not None and len(panes) >= _PANES_PER_PIECE:
            self.emit_pieces(panes[:])
            panes.clear()

    def _compute_output_watermark(self) -> int:
        wm = self.input_watermark
        if self._holds is None:
            return wm  # pending on-time panes are at their window's end, never behind wm
        # The earliest hold of an open window, off the index (O(log n), not a scan of every state).
        hold = self._holds.earliest(len(self.states))
        return wm if hold is None or hold >= wm else hold

    def _hold_of(self, kw: tuple[Any, Any]) -> int | None:
        """The hold of an open (key, window) now (None: none, or closed), read without counting it as changed."""
        states = self.states
        st = states.get(kw) if type(states) is dict else states.peek(kw)  # type: ignore[attr-defined]
        return None if st is None or st.closed else st.hold

    def pending_windows(self) -> int:
        self._flush_deferred()
        return len(self.states) + sum(map(len, self._lean.values()))

    def is_empty(self) -> bool:
        return not self.states and not self._deferred and not self._lean

    def next_deadline(self) -> int | None:
        """The earliest processing time at which a trigger waits to fire."""
        heap = self._deadlines
        pop = heap_popper(heap)
        while heap:
            deadline, _, _, key, window = heap[0]
            st = self.states.get((key, window))
            if st is not None and st.deadline == deadline and not st.closed:
                return deadline
            pop(heap)
        return None

    # -- checkpointing ----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A picklable copy of all state (windows, panes, triggers, timers, watermarks)."""
        self._flush_deferred()
        self._materialize_lean()
        # An incremental checkpoint of a disk table: only the states read or written since the
        # last one, and the (key, window) pairs deleted since ("gone"; None in a full snapshot).
        states, gone = table_snapshot(self.states)
        if type(self._timers) is list:
            active: dict[Any, set[Any]] = {k: set(v) for k, v in self.active.items()}
            active_gone = None
            timers: list[Any] | None = list(self._timers)
            window_keys: dict[Any, dict[Any, None]] | None = {w: dict(ks) for w, ks in self._window_keys.items()}
        else:
            # The disk backend: the merging windows of the keys that changed (and the keys that
            # have none left), and neither the windows' keys nor the timers: a state's key is in
            # its window's keys, and a window's timers follow from the window, the lateness and
            # the watermark (see _timers_of). A checkpoint grows with what changed, not with all.
            changed, active_gone = table_snapshot(self.active)
            active = {k: set(v) for k, v in changed}
            timers = window_keys = None
        return {
            "states": {k: _state_tuple(s) for k, s in states},
            "gone": gone,
            "active": active,
            "active_gone": active_gone,
            "timers": timers,
            "window_keys": window_keys,
            # No deadlines: each state that waits for one holds it (see restore).
            "input_watermark": self.input_watermark,
            "output_watermark": self.output_watermark,
            "processing_time": self.processing_time,
            "dropped": self.dropped,
            "dropped_closed": self.dropped_closed,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        import copy

        snap = copy.deepcopy(snap)
        if type(self.states) is dict:
            self.states = {k: _state_from_tuple(t) for k, t in snap["states"].items()}
        else:  # a table of the disk backend: filled in place
            self.states.clear()
            for k, t in snap["states"].items():
                self.states[k] = _state_from_tuple(t)
        self._lean = {}
        window_keys = snap["window_keys"]
        if window_keys is None:  # a snapshot of the disk backend: each state's key is in its window's keys
            window_keys = {}
            for key, w in snap["states"]:
                window_keys.setdefault(w, {})[key] = None
        timers = snap["timers"]
        if timers is None:
            timers = self._timers_of(window_keys, snap["input_watermark"])
            heapq.heapify(timers)
        if type(self._timers) is list:
            self.active = snap["active"]
            self._timers = timers
            self._window_keys = window_keys
        else:  # the disk backend's tables and timer heap: filled in place
            for table, entries in ((self.active, snap["active"]), (self._window_keys, window_keys)):
                table.clear()
                for k, v in entries.items():
                    table[k] = v
            self._timers.clear()
            for timer in timers:
                self._timers.push(timer)
        if self._holds is not None:  # from the snapshot's tuples: no read of a disk table while the index writes
            hold, closed = _WindowState.__slots__.index("hold"), _WindowState.__slots__.index("closed")
            self._holds.reset((kw, t[hold]) for kw, t in snap["states"].items() if not t[closed])
        self._seq = itertools.count(max((t[2] for t in timers), default=0) + 1)
        # A state waiting for a processing-time deadline holds it: the queue follows from the states.
        deadline, closed = _WindowState.__slots__.index("deadline"), _WindowState.__slots__.index("closed")
        deadlines = sorted(
            ((t[deadline], kw) for kw, t in snap["states"].items() if t[deadline] is not None and not t[closed]), key=_first
        )
        entries = [(d, 0, next(self._seq), key, window) for d, (key, window) in deadlines]
        if type(self._deadlines) is list:
            self._deadlines = entries  # sorted: a valid heap
        else:
            self._deadlines.clear()
            for entry in entries:
                self._deadlines.push(entry)
        self.input_watermark = snap["input_watermark"]
        self.output_watermark = snap["output_watermark"]
        self.processing_time = snap["processing_time"]
        self.dropped = snap["dropped"]
        self.dropped_closed = snap.get("dropped_closed", 0)

    def _timers_of(self, window_keys: dict[Any, Any], input_watermark: int) -> list[tuple[int, int, int, Any]]:
        """The timers the windows of ``window_keys`` have at ``input_watermark``, numbered in its order.

        Each window has its expiry timer until it fires (the window then leaves
        ``window_keys``); with allowed lateness, also its end-of-window timer while
        the watermark has not passed it: one set for a window already behind the
        watermark would have fired at once, and one the watermark passed has fired.
        """
        timers = []
        seq = 0
        lateness = self.lateness
        for window in window_keys:
            max_ts = window._end_us - 1
            if lateness and max_ts >= input_watermark:
                timers.append((max_ts, _EOW, seq, window))
            timers.append((min(max_ts + lateness, MAX_TIMESTAMP_US), _GC, seq, window))
            seq += 1
        return timers


#: From this many values a key's session starts are put in order by numpy's stable argsort, on
#: a contiguous copy, rather than by ``sorted`` comparing the scattered int objects over and
#: over (merging sessions at 10,000,000 elements: 1,000 values a key); below it the numpy
#: calls' fixed cost outweighs what they save.
_NUMPY_ORDER_FROM = 64


def _start_order(starts: list[int]) -> list[int] | None:
    """The indices of ``starts`` in start order, equal starts in arrival order; None when they are in order.

    >>> _start_order([5, 7, 7]) is None, _start_order([7, 5, 7, 5]), _start_order(list(range(99, -1, -1)))[:3]
    (True, [1, 3, 0, 2], [99, 98, 97])
    """
    n = len(starts)
    if all(map(operator.le, starts, itertools.islice(starts, 1, None))):  # stops at the first pair out of order
        return None
    if n >= _NUMPY_ORDER_FROM:
        import numpy

        try:
            order: list[int] = numpy.array(starts, numpy.int64).argsort(kind="stable").tolist()
            return order
        except OverflowError:
            pass  # a start past int64 (none a timestamp can have): sorted() takes any int
    return sorted(range(n), key=starts.__getitem__)


def _take_pane_info(st: _WindowState, carried: _WindowState | None) -> None:
    """Give a merged window the pane info of ``carried`` (the result window's own state), or a fresh start."""
    if carried is None:
        st.pane_index = 0
        st.nonspec_index = 0
        st.reached_eow = False
    else:
        st.pane_index = carried.pane_index
        st.nonspec_index = carried.nonspec_index
        st.reached_eow = carried.reached_eow


def _state_tuple(st: _WindowState) -> tuple[Any, ...]:
    return tuple(getattr(st, f) for f in _WindowState.__slots__)


def _state_from_tuple(t: tuple[Any, ...]) -> _WindowState:
    st = _WindowState(None)
    for f, v in zip(_WindowState.__slots__, t):
        setattr(st, f, v)
    return st


