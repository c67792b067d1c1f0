"""StatefulParDoOperator: a ParDo with per-key, per-window state and timers.

State lives in a :class:`~tidal.runners.core.state.KeyedStateStore`; timers
fire in timestamp order when the input watermark passes them (event time) or
when processing time reaches them (REAL_TIME). A window's state and timers
are garbage-collected once the watermark passes its end plus the allowed
lateness; elements arriving for an expired window are dropped as late. At
the end of the input (the watermark at the end of time) the state is kept,
so that a finished job's final checkpoint holds what it last held.

Timers live in the state backend with the cells: a table of each set timer's
time by (key, window, timer name), and queues (heaps, spilling on disk) of
candidates ``(time, 0, seq, key, window, name)`` checked against the table
when they come due. A snapshot saves the table (on disk, only the entries
that changed since the last checkpoint); a restore rebuilds the queues from
it, and the garbage collection from the windows that hold state or timers.

As in Beam Java (``SimpleDoFnRunner``), an event-time timer may not be set
later than its window's expiry (``max_timestamp() + allowed lateness``): the
window's state is gone by then, so the step fails with an error naming the
timer time and the expiry instead of dropping the timer.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

from tidal.model.dofn import DoFnParam
from tidal.model.metrics import set_current_container
from tidal.model.primitives import ParDo
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US, Timestamp, TimestampLike, to_micros
from tidal.model.trigger import PANE_INFO_UNKNOWN
from tidal.model.userstate import TimeDomain, TimerSpec
from tidal.model.window import GLOBAL_WINDOW, WindowFn
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError
from tidal.runners.core.keygroups import KeyedSnapshot, split_by_group
from tidal.runners.core.operators import _LATE_DROPS, ParDoOperator
from tidal.runners.core.state import KeyedStateStore
from tidal.runners.core.statebackend import DiskBackend, StateBackend, heap_popper, heap_push, table_snapshot

__all__ = ["StatefulParDoOperator", "BoundTimer"]


class BoundTimer:
    """The timer object a DoFn gets from ``DoFn.TimerParam(spec)``: ``set`` and ``clear``."""

    __slots__ = ("_op", "_key", "_window", "_spec")

    def __init__(self, op: "StatefulParDoOperator", key: Any, window: Any, spec: TimerSpec) -> None:
        self._op = op
        self._key = key
        self._window = window
        self._spec = spec

    def set(self, timestamp: TimestampLike) -> None:
        """Fire at ``timestamp`` (event time, or processing time for REAL_TIME timers)."""
        self._op.set_timer(self._key, self._window, self._spec, to_micros(timestamp, "timer timestamp"))

    def clear(self) -> None:
        """Cancel the timer if it is set."""
        self._op.clear_timer(self._key, self._window, self._spec)


class StatefulParDoOperator(ParDoOperator):
    """A ParDoOperator whose DoFn declares state or timers (input keyed by a keyed exchange)."""

    def __init__(self, label: str, transform: ParDo, windowing: WindowingStrategy, side_windowfns: list[WindowFn], strict: bool = False) -> None:
        super().__init__(label, transform, windowing.windowfn, side_windowfns, strict)
        self.store = KeyedStateStore()
        self.lateness = windowing.allowed_lateness_us
        self.signature = self.invoker.signature
        self.invoker.state_binder = self._bind
        # (key, window, timer name) -> timestamp; the heaps hold candidates, checked lazily. On the
        # disk backend all four are backend structures (tables and spilling heaps).
        self.timers: Any = {}
        self._event_heap: Any = []  # (timestamp, 0, seq, key, window, name)
        self._proc_heap: Any = []
        self._gc_heap: Any = []  # (expiry, 0, seq, key, window)
        self._gc_known: Any = {}  # (key, window) -> True: those with an entry in _gc_heap
        #: Some key has state, a timer or input in the global window (collected together at its expiry).
        self._global_state = False
        self._seq = itertools.count()
        for name in self.signature.timer_specs:
            if name not in self.signature.timer_callbacks:
                raise PipelineExecutionError(
                    label, f"timer {name!r} has no callback: decorate a method with @on_timer(spec)"
                )

    def use_state_backend(self, backend: StateBackend) -> None:
        self.store = KeyedStateStore(backend.table(f"{self.label}/state"))
        if isinstance(backend, DiskBackend):
            self.timers = backend.table(f"{self.label}/timers")
            self._event_heap = backend.heap(f"{self.label}/event_timers")
            self._proc_heap = backend.heap(f"{self.label}/processing_timers")
            self._gc_heap = backend.heap(f"{self.label}/expiry")
            self._gc_known = backend.table(f"{self.label}/expiry_known")

    def _bind(self, label: str, param: DoFnParam, key: Any, window: Any) -> Any:
        if param.kind == "StateParam":
            return self.store.cell(key, window, param.spec)
        return BoundTimer(self, key, window, param.spec)

    # -- timers -----------------------------------------------------------------
    def set_timer(self, key: Any, window: Any, spec: TimerSpec, micros: int) -> None:
        if spec.time_domain is TimeDomain.WATERMARK:
            expiry = min(window._end_us - 1 + self.lateness, MAX_TIMESTAMP_US)
            if micros > expiry:
                raise PipelineExecutionError(
                    self.label,
                    f"attempted to set the event-time timer {spec.name!r} with a firing timestamp of "
                    f"{Timestamp.from_micros(micros)!r} that is after the expiration of window {window!r} "
                    f"at {Timestamp.from_micros(expiry)!r} (its max_timestamp() plus the allowed lateness of "
                    f"{self.lateness / 1e6:g} s); set the timer at or before the expiry, or allow more "
                    "lateness in WindowInto",
                )
        self.timers[(key, window, spec.name)] = micros
        heap_push(self._event_heap if spec.time_domain is TimeDomain.WATERMARK else self._proc_heap, (micros, 0, next(self._seq), key, window, spec.name))

    def clear_timer(self, key: Any, window: Any, spec: TimerSpec) -> None:
        self.timers.pop((key, window, spec.name), None)

    # -- elements ---------------------------------------------------------------
    def process(self, bundle: list[Any], slot: int = 0) -> None:
        wm = self.input_watermark
        keep: list[Any] = []
        dropped = 0
        for wv in bundle:
            ws = wv[2]
            live = tuple(w for w in ws if w._end_us - 1 + self.lateness >= wm)
            if len(live) < len(ws):
                dropped += len(ws) - len(live)
                if not live:
                    continue
                wv = (wv[0], wv[1], live, wv[3])
            keep.append(wv)
            self._register_gc(wv[0], live)
        if dropped:
            c = self.metrics.counters
            c[_LATE_DROPS.metric_name] = c.get(_LATE_DROPS.metric_name, 0) + dropped
        if keep:
            super().process(keep, slot)

    def _register_gc(self, kv: Any, windows: tuple[Any, ...]) -> None:
        try:
            key = kv[0]
        except (TypeError, IndexError, KeyError):
            return  # the invoker reports the bad element with the step name
        for w in windows:
            if w is GLOBAL_WINDOW:
                # Every key's global window expires at once: one flag, not an entry per key.
                self._global_state = True
                continue
            kw = (key, w)
            if kw not in self._gc_known:
                self._gc_known[kw] = True
                expiry = min(w._end_us - 1 + self.lateness, MAX_TIMESTAMP_US)
                heap_push(self._gc_heap, (expiry, 0, next(self._seq), key, w))

    def on_advance(self) -> None:
        super().on_advance()
        self._fire_due_timers()
        self._collect_garbage()

    def _fire_due_timers(self) -> None:
        wm, now = self.input_watermark, self.processing_time
        for _ in range(1_000_000):
            due = self._pop_due(self._event_heap, lambda t: t < wm)
            if due is None:
                due = self._pop_due(self._proc_heap, lambda t: t <= now)
                domain = TimeDomain.REAL_TIME
            else:
                domain = TimeDomain.WATERMARK
            if due is None:
                return
            self._fire(*due, domain)

    def _pop_due(self, heap: Any, is_due: Any) -> tuple[int, Any, Any, str] | None:
        pop = heap_popper(heap)
        while heap and is_due(heap[0][0]):
            ts, _, _, key, window, name = pop(heap)
            if self.timers.get((key, window, name)) == ts:
                del self.timers[(key, window, name)]
                return ts, key, window, name
        return None

    def _fire(self, ts: int, key: Any, window: Any, name: str, domain: TimeDomain) -> None:
        callback = self.signature.timer_callbacks[name]
        import inspect

        kwargs: dict[str, Any] = {}
        for pname, param in inspect.signature(callback).parameters.items():
            d = param.default
            if not isinstance(d, DoFnParam):
                continue
            if d.kind == "TimestampParam":
                kwargs[pname] = Timestamp.from_micros(ts)
            elif d.kind == "WindowParam":
                kwargs[pname] = window
            elif d.kind == "KeyParam":
                kwargs[pname] = key
            elif d.kind in ("StateParam", "TimerParam"):
                kwargs[pname] = self._bind(self.label, d, key, window)
            elif d.kind == "PaneInfoParam":
                kwargs[pname] = PANE_INFO_UNKNOWN
        out_ts = ts if domain is TimeDomain.WATERMARK else min(max(self.input_watermark, 0), window._end_us - 1)
        previous = set_current_container(self.metrics)
        try:
            results = callback(**kwargs)
            if results is not None:
                for r in results:
                    self.invoker.handle_special(r, out_ts, (window,), PANE_INFO_UNKNOWN)
        except PipelineExecutionError:
            raise
        except Exception as exc:
            raise UserCodeError(self.label, callback, exc, key) from exc
        finally:
            set_current_container(previous)
        for tag, out in list(self.invoker.outputs.items()):
            if out:
                self.invoker.outputs[tag] = []
                self.emit(tag, out)

    def _collect_garbage(self) -> None:
        wm = self.input_watermark
        # At the end of the input every window expires at once and nothing can read its state
        # again: the cells stay, so the final checkpoint holds the state as the input left it
        # (``python -m tidal state`` reads what a finished job held). Timers still go.
        ended = wm >= MAX_TIMESTAMP_US
        if self._global_state and min(GLOBAL_WINDOW._end_us - 1 + self.lateness, MAX_TIMESTAMP_US) < wm:
            self._global_state = False
            if not ended:
                self.store.clear_all(GLOBAL_WINDOW)
            for k in [k for k in self.timers if k[1] is GLOBAL_WINDOW]:  # once, when the global window expires
                del self.timers[k]
        heap = self._gc_heap
        pop = heap_popper(heap)
        names = list(self.signature.timer_specs)
        while heap and heap[0][0] < wm:
            _, _, _, key, window = pop(heap)
            self._gc_known.pop((key, window), None)
            if not ended:
                self.store.clear_window(key, window)
            for name in names:
                self.timers.pop((key, window, name), None)

    # -- watermarks and checkpoints -------------------------------------------
    def output_watermark(self) -> int:
        wm = super().output_watermark()
        # The earliest event-time timer still set holds the output back: the head of its queue,
        # once the candidates that no longer match a set timer are dropped.
        heap = self._event_heap
        pop = heap_popper(heap)
        while heap:
            ts, _, _, key, window, name = heap[0]
            if self.timers.get((key, window, name)) == ts:
                return min(wm, ts)
            pop(heap)
        return wm

    def _event_timer_names(self) -> set[str]:
        return {n for n, s in self.signature.timer_specs.items() if s.time_domain is TimeDomain.WATERMARK}

    def next_processing_deadline(self) -> int | None:
        heap = self._proc_heap
        pop = heap_popper(heap)
        while heap:
            ts, _, _, key, window, name = heap[0]
            if self.timers.get((key, window, name)) == ts:
                return ts
            pop(heap)
        return None

    def is_idle(self) -> bool:
        return super().is_idle() and not self.timers

    def snapshot(self) -> Any:
        # Every piece of state belongs to a key: split by key group, so a restore at another
        # parallelism hands each group to its new owner (see runners/core/keygroups.py).
        # Garbage collection is not saved: restore() schedules it again for every (key, window) that
        # holds state, a timer or a waiting element, so an incremental snapshot (only the cells
        # that changed, and the ones deleted: "gone") stays as small as the change.
        # Timers as their table: each set timer's time (on disk, those set or cleared since the last
        # checkpoint); the queues are rebuilt from it on restore.
        cells, gone = self.store.delta_snapshot()
        timers, timers_gone = table_snapshot(self.timers)
        items: list[tuple[Any, Any]] = []
        items.extend((kw[0], ("cells", kw, value)) for kw, value in cells.items())
        items.extend((kw[0], ("gone", kw)) for kw in gone or ())
        items.extend((k[0], ("timer", k, ts)) for k, ts in timers)
        items.extend((k[0], ("gone", k, "t")) for k in timers_gone or ())
        items.extend((_key_of(wv), ("pending", wv)) for wv in self.pending)
        side = super().snapshot()["side_data"]
        common: dict[str, Any] = {"side_data": side}
        if gone is not None:
            common["delta"] = True
        return KeyedSnapshot(common, split_by_group(items, self.key_groups.grouper()))

    def restore(self, snapshot: Any) -> None:
        cells: dict[tuple[Any, Any], dict[str, Any]] = {}
        timers: dict[tuple[Any, Any, str], int] = {}
        pending: list[Any] = []
        for items in snapshot.groups.values():
            for item in items:
                kind = item[0]
                if kind == "cells":
                    cells[item[1]] = item[2]
                elif kind == "timer":
                    timers[item[1]] = item[2]
                elif kind == "pending":
                    pending.append(item[1])
                # (Snapshots of earlier versions also held the queues: they follow from the timers.)
        self.pending = pending
        self._restore_side_data(snapshot.common["side_data"])
        self.store.restore(cells)
        # The queues from the timers, in time order (a sorted list is a valid heap); sequence
        # numbers only break ties, so two entries never compare their keys or windows.
        seq = itertools.count()
        event_names = self._event_timer_names()
        entries = sorted(((ts, k) for k, ts in timers.items()), key=operator.itemgetter(0))
        event = [(ts, 0, next(seq), *k) for ts, k in entries if k[2] in event_names]
        proc = [(ts, 0, next(seq), *k) for ts, k in entries if k[2] not in event_names]
        if type(self.timers) is dict:
            self.timers, self._event_heap, self._proc_heap = timers, event, proc
            self._gc_heap, self._gc_known = [], {}
        else:  # the disk backend's table and heaps, filled in place
            self.timers.clear()
            for k, ts in timers.items():
                self.timers[k] = ts
            for heap, fresh in ((self._event_heap, event), (self._proc_heap, proc), (self._gc_heap, [])):
                heap.clear()
                for entry in fresh:
                    heap.push(entry)
            self._gc_known.clear()
        self._global_state = False
        self._seq = seq
        for key, window in cells:
            self._register_gc((key,), (window,))
        for key, window, _name in timers:
            self._register_gc((key,), (window,))
        for wv in pending:
            self._register_gc(wv[0], wv[2])

    def rescale_snapshot(self, snapshots: list[Any], owned: list[bool], key_groups: range) -> Any:
        groups: dict[int, list[Any]] = {}
        for snap in snapshots:
            for g, items in snap.groups.items():
                if g in key_groups:
                    groups.setdefault(g, []).extend(items)
        # Side inputs are broadcast: every old instance held the same.
        return KeyedSnapshot({"side_data": snapshots[0].common["side_data"]}, groups)


def _key_of(wv: Any) -> Any:
    """The key of a (key, value) windowed value (None for a malformed one: the invoker reports it)."""
    try:
        return wv[0][0]
    except (TypeError, IndexError, KeyError):
        return None
