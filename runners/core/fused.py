"""Fused steps: ``Map`` -> ``WindowInto`` -> lifted ``CombinePerKey`` as one loop, and kin.

The commonest windowed aggregation re-stamps each element in a ``Map`` (it
returns a :class:`~tidal.model.window.TimestampedValue`), assigns fixed or
sliding windows and sums per key. Run step by step, every element becomes a
windowed-value tuple twice (after the ``Map`` and after ``WindowInto``),
gets a window assigned twice (by the ``Map``'s input WindowFn for the new
timestamp, then by the new WindowFn) and is added to the partial table
under a ``(key, window)`` pair. Fused, the ``Map``'s kernel does it all in
one loop over the bundle: it calls the function, computes the window start
from the timestamp with integer arithmetic and adds the value to a
``window start -> {key: partial sum}`` table of the
:class:`~tidal.runners.core.operators.PrecombineOperator`, with no windowed
value, no window object and no (key, window) tuple per element (consecutive
elements mostly share a window, whose key table the loop keeps at hand). The pre-combiner turns the table
into the usual partial accumulators, one per (key, window), when it flushes,
so the grouping step downstream sees exactly what the unfused steps send it.

Fusion is chosen when the executor is built (:func:`fuse_windowed_precombines`)
and only where nothing can tell the difference: the ``Map`` is a plain
function (no side inputs, parameters or extra outputs, not stateful) over
elements in the global, fixed or sliding windows; its output feeds only the
``WindowInto``, whose output feeds only the lifted ``CombinePerKey``; the
WindowFn is :class:`~tidal.model.window.FixedWindows` or
:class:`~tidal.model.window.SlidingWindows`; the CombineFn is ``sum``
(:class:`~tidal.model.combinefn.SumCombineFn`, no user code, so no metrics
to attribute to another step). Elements the fast loop does not take — a
window already behind the watermark, a ``Map`` that returns a
``WindowedValue`` or ``TaggedOutput`` — go the general way, through the
``WindowInto`` and pre-combine operators, in the same bundle. Errors name
the step that would have raised them unfused: the ``Map`` for its function,
the pre-combiner for input that is not a ``(key, value)`` pair.

Two more fusions of a ``Map`` with the step it alone feeds:

* ``Map`` -> lifted ``sum`` in the global window (word count): over a source's
  plain values the kernel sums into a flat ``key -> partial sum`` table of
  the pre-combiner;
* ``Map`` -> ``WindowInto`` over windows that depend on the timestamp alone
  (global, fixed, sliding, sessions), before any other consumer (a
  ``GroupByKey``, say): the kernel assigns the new windows itself and the
  ``WindowInto`` step passes its bundles on;
* ``Map`` -> ``WindowInto(Sessions)`` -> ``GroupByKey`` (or an unlifted
  ``CombinePerKey``) in the same executor, whose reducer holds session values
  until the watermark moves: the kernel appends each value and its session's
  bounds to the reducer's deferred values, with no windowed value between
  the steps (one session per element: 2.3x). An element whose session the
  watermark has passed still goes through the grouping step's ``process``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable

from tidal.model.combinefn import SumCombineFn
from tidal.model.dofn import CallableDoFn
from tidal.model.primitives import CombinePerKey, ParDo, WindowInto
from tidal.model.time import MIN_TIMESTAMP_US
from tidal.model.trigger import PANE_INFO_UNKNOWN
from tidal.model.window import GLOBAL_WINDOW, GLOBAL_WINDOWS_TUPLE, FixedWindows, GlobalWindows, IntervalWindow, Sessions, SlidingWindows, TimestampedValue
from tidal.runners.core.invoker import _SPECIAL_OUTPUTS
from tidal.runners.core.operators import AssignWindowsOperator, Operator, ParDoOperator, PrecombineOperator
from tidal.runners.core.sources import GlobalValues

if TYPE_CHECKING:
    from tidal.runners.core.executor import LocalExecutor

__all__ = ["fuse_windowed_precombines", "FUSION_ENABLED"]

#: Whether executors fuse Map -> WindowInto -> lifted sum (tests switch it off to compare).
FUSION_ENABLED = True

_INPUT_WINDOWFNS = (GlobalWindows, FixedWindows, SlidingWindows)


def fuse_windowed_precombines(executor: "LocalExecutor") -> list[tuple[ParDoOperator, Operator]]:
    """Give each fusable ``Map`` a fused kernel; returns the (Map, pre-combiner or WindowInto) pairs fused.

    >>> import tidal as td
    >>> from tidal import window
    >>> from tidal.runners.core.executor import LocalExecutor
    >>> from tidal.runners.core.plan import build_plan
    >>> p = td.Pipeline()
    >>> _ = (p | td.Create([1, 2, 61]) | "Stamp" >> td.Map(lambda i: window.TimestampedValue(("k", i), i))
    ...      | td.WindowInto(window.FixedWindows(60)) | "Sum" >> td.CombinePerKey(sum))
    >>> ex = LocalExecutor(build_plan(p.graph()))
    >>> [(m.label, pre.label) for m, pre in ex.fused]
    [('Stamp', 'Sum/Precombine')]
    """
    fused: list[tuple[ParDoOperator, Operator]] = []
    if not FUSION_ENABLED:
        return fused
    consumers = executor._consumers()
    for combine, pre in executor._precombine_of.items():
        if type(pre) is not PrecombineOperator or type(pre.fn) is not SumCombineFn:
            continue
        if not isinstance(combine.transform, CombinePerKey):
            continue
        win_pc = combine.inputs[0]
        win_node = win_pc.producer
        if win_node is None or not isinstance(win_node.transform, WindowInto) or consumers.get(win_pc) != [combine]:
            continue
        win_op = executor.op_of.get(win_node)
        if type(win_op) is not AssignWindowsOperator or type(win_op.windowfn) not in (FixedWindows, SlidingWindows):
            continue
        map_op = _fusable_map(executor, win_node, consumers)
        if map_op is None:
            continue
        invoker = map_op.invoker
        dofn: Any = invoker.dofn
        windowfn: Any = win_op.windowfn
        invoker._kernel = _fused_kernel(map_op, dofn.fn, windowfn, pre)
        invoker._iterating_kernel = True
        fused.append((map_op, pre))
    for combine, pre in executor._precombine_of.items():
        # Map -> lifted sum in the global window (word count): the kernel sums per key.
        if type(pre) is not PrecombineOperator or type(pre.fn) is not SumCombineFn:
            continue
        if not isinstance(combine.transform, CombinePerKey):
            continue
        map_op = _fusable_map(executor, combine, consumers)
        if map_op is None or type(map_op.invoker.input_windowfn) is not GlobalWindows or any(m is map_op for m, _ in fused):
            continue
        map_op.invoker._kernel = _global_sum_kernel(map_op, map_op.invoker._kernel, map_op.invoker.dofn.fn, pre)  # type: ignore[attr-defined]
        map_op.invoker._iterating_kernel = True
        fused.append((map_op, pre))
    taken = {id(m) for m, _ in fused}
    for win_node, win_op in executor.op_of.items():
        if type(win_op) is not AssignWindowsOperator or type(win_op.windowfn) not in _ASSIGNING:
            continue
        map_op = _fusable_map(executor, win_node, consumers)
        if map_op is None or id(map_op) in taken:
            continue
        fn = map_op.invoker.dofn.fn  # type: ignore[attr-defined]  # a CallableDoFn (see _fusable_map)
        windowfn = win_op.windowfn
        group_op = _deferring_group(executor, win_node, win_op, consumers)
        if group_op is not None and isinstance(windowfn, Sessions):
            kernel = _deferring_kernel(map_op, fn, windowfn, group_op)
        else:
            kernel = _assigning_kernel(map_op, fn, windowfn)
        map_op.invoker._kernel = kernel  # type: ignore[method-assign]
        map_op.invoker._iterating_kernel = True
        win_op.assigned_upstream = True
        fused.append((map_op, win_op))
    return fused


#: WindowFns whose windows depend on the timestamp alone: a fused Map assigns them.
_ASSIGNING = (GlobalWindows, FixedWindows, SlidingWindows, Sessions)


def _fusable_map(executor: "LocalExecutor", win_node: Any, consumers: dict[Any, list[Any]]) -> ParDoOperator | None:
    """The Map whose only consumer is the WindowInto ``win_node``, when it is a plain function in this executor."""
    map_pc = win_node.inputs[0]
    map_node = map_pc.producer
    if map_node is None or not isinstance(map_node.transform, ParDo) or consumers.get(map_pc) != [win_node]:
        return None
    map_op = executor.op_of.get(map_node)
    if type(map_op) is not ParDoOperator or map_op.views or map_node.transform.output_tags:
        return None
    invoker = map_op.invoker
    dofn = invoker.dofn
    if type(dofn) is not CallableDoFn or dofn.kind != "map" or invoker.args or invoker.kwargs or invoker.signature.params:
        return None
    if type(invoker.input_windowfn) not in _INPUT_WINDOWFNS or map_pc is not map_node.main_output:
        return None
    return map_op


def _global_sum_kernel(
    op: ParDoOperator, general: Callable[[Any], None], fn: Callable[[Any], Any], pre: PrecombineOperator
) -> Callable[[Any], None]:
    """Map -> lifted sum in the global window: one flat key -> sum table.

    Outputs that are not plain pairs (a TimestampedValue, say), elements in other windows
    and input once the watermark has passed the end of the global window go the general way.
    """
    invoker = op.invoker
    outputs, main_tag = invoker.outputs, invoker.main_tag
    special = _SPECIAL_OUTPUTS
    handle = invoker.handle_special
    table = pre.global_table
    in_global = GLOBAL_WINDOWS_TUPLE

    def listed(bundle: list[Any]) -> None:
        """Windowed values (strict mode builds a source's out): those in the global window go to the table."""
        out = outputs[main_tag]
        get = table.get
        sample = op.strict
        kv: Any = None
        try:
            for v, t, ws, p in bundle:
                try:
                    kv = fn(v)
                except Exception as exc:
                    invoker._fail(fn, exc, v)
                if sample:
                    sample = False
                    op._encode_sample(kv, f"output to {main_tag!r}")
                if kv.__class__ in special:
                    handle(kv, t, ws, p)
                    continue
                if ws is not in_global and ws != in_global:
                    out.append((kv, t, ws, p))  # windows of their own: the general way
                    continue
                key, value = kv
                table[key] = get(key, 0) + value
        except (TypeError, ValueError) as exc:
            raise pre.input_error(kv, exc) from exc
        pre.flush_if_full()
    end = GLOBAL_WINDOW._end_us
    t, ws, p = MIN_TIMESTAMP_US, GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN

    def kernel(bundle: Any) -> None:
        if pre.input_watermark >= end:
            general(bundle)
            return
        if type(bundle) is not GlobalValues:
            listed(bundle)
            return
        get = table.get
        sample = op.strict  # strict: the first output must pickle, as the general path checks
        kv: Any = None
        try:
            for v in bundle.values:
                try:
                    kv = fn(v)
                except Exception as exc:
                    invoker._fail(fn, exc, v)
                if sample:
                    sample = False
                    op._encode_sample(kv, f"output to {main_tag!r}")
                if kv.__class__ in special:
                    handle(kv, t, ws, p)
                    continue
                key, value = kv
                table[key] = get(key, 0) + value
        except (TypeError, ValueError) as exc:
            raise pre.input_error(kv, exc) from exc
        pre.flush_if_full()

    return kernel


def _assigning_kernel(op: ParDoOperator, fn: Callable[[Any], Any], windowfn: Any) -> Callable[[Any], None]:
    """The Map's kernel that also assigns the WindowInto's windows (which then passes bundles on)."""
    invoker = op.invoker
    outputs, main_tag = invoker.outputs, invoker.main_tag
    special = _SPECIAL_OUTPUTS
    stamped = TimestampedValue
    handle = invoker.handle_special
    assign = windowfn._assign_us
    # Sessions: the window [t, t + gap) built here (what Sessions._assign_us builds, without two calls).
    gap = windowfn.gap_us if type(windowfn) is Sessions else None
    new = tuple.__new__
    interval = IntervalWindow

    def kernel(bundle: Any) -> None:
        out = outputs[main_tag]
        append = out.append
        v: Any = None
        try:
            if gap is not None:
                for v, t, w, p in bundle:
                    r = fn(v)
                    if r.__class__ is stamped:
                        t = r.timestamp_us
                        append((r.value, t, (new(interval, (t, t + gap)),), p))
                    elif r.__class__ in special:
                        _assign_handled(out, handle, assign, r, t, w, p)
                    else:
                        append((r, t, (new(interval, (t, t + gap)),), p))
                return
            for v, t, w, p in bundle:
                r = fn(v)
                if r.__class__ in special:
                    if r.__class__ is stamped:
                        t = r.timestamp_us
                        r = r.value
                    else:  # a WindowedValue: its own windows, each assigned anew
                        _assign_handled(out, handle, assign, r, t, w, p)
                        continue
                append((r, t, assign(t, r, w[0]), p))
        except Exception as exc:
            invoker._fail(fn, exc, v)

    return kernel


def _assign_handled(out: list[Any], handle: Callable[..., None], assign: Callable[..., Any], r: Any, t: int, w: Any, p: Any) -> None:
    """A WindowedValue or TaggedOutput from the Map: routed as the invoker routes it, then its windows
    assigned anew by the WindowInto's ``assign`` (each distinct window once)."""
    handle(r, t, w, p)
    r, t, w, p = out.pop()
    out.append((r, t, tuple(dict.fromkeys(nw for iw in w for nw in assign(t, r, iw))), p))


def _deferring_group(executor: "LocalExecutor", win_node: Any, win_op: Any, consumers: dict[Any, list[Any]]) -> Any:
    """The grouping step (GroupByKey or unlifted CombinePerKey) that alone consumes a WindowInto(Sessions),
    in this executor, when its reducer defers session values until the watermark moves (see
    ``KeyedWindowReducer._process_merging``); else None."""
    from tidal.runners.core.operators import _KeyedReduceOperator
    from tidal.runners.core.reduce import KeyedWindowReducer

    if type(win_op.windowfn) is not Sessions:
        return None
    users = consumers.get(win_node.main_output, [])
    if len(users) != 1:
        return None
    group_op = executor.op_of.get(users[0])
    if not isinstance(group_op, _KeyedReduceOperator) or users[0].inputs[0] is not win_node.main_output:
        return None
    if getattr(group_op, "lifted", False) or users[0] in executor._precombine_of:
        return None  # a lifted combine's reducer takes partial accumulators, not values
    reducer = group_op.reducer
    if type(reducer) is not KeyedWindowReducer or not reducer._bulk or reducer.timestamped_values:
        return None
    return group_op


def _deferring_kernel(
    op: ParDoOperator, fn: Callable[[Any], Any], windowfn: Sessions, group_op: Any
) -> Callable[[Any], None]:
    """Map -> WindowInto(Sessions) -> grouping: the Map's kernel adds each value and its session's
    bounds to the grouping step's deferred values itself (what its reducer would do with the
    windowed value).

    Anything unusual (a WindowedValue or TaggedOutput from the function, an element whose session
    the watermark has passed) leaves as the windowed value :func:`_assigning_kernel` would build, through the
    grouping step's own ``process``.
    """
    invoker = op.invoker
    outputs, main_tag = invoker.outputs, invoker.main_tag
    special = _SPECIAL_OUTPUTS
    stamped = TimestampedValue
    handle = invoker.handle_special
    assign = windowfn._assign_us
    reducer = group_op.reducer
    gap = windowfn.gap_us
    new = tuple.__new__
    interval = IntervalWindow

    def kernel(bundle: Any) -> None:
        out = outputs[main_tag]
        append = out.append
        deferred = reducer._deferred
        get = deferred.get
        # The session [t, t + gap) has ended by the watermark when t + gap <= wm.
        closed_from = reducer.input_watermark - gap
        sample = op.strict  # strict: the first output must pickle, as the general path checks
        v: Any = None
        kv: Any = None
        try:
            for v, t, w, p in bundle:  # a GlobalValues gives its plain values as windowed tuples
                try:
                    r = fn(v)
                except Exception as exc:
                    invoker._fail(fn, exc, v)
                if r.__class__ is stamped:
                    t = r.timestamp_us
                    kv = r.value
                elif r.__class__ in special:  # a WindowedValue or TaggedOutput: as the assigning kernel does
                    _assign_handled(out, handle, assign, r, t, w, p)
                    continue
                else:
                    kv = r
                if sample:
                    sample = False
                    op._encode_sample(kv, f"output to {main_tag!r}")
                if t <= closed_from:  # late, or to be dropped: the grouping step decides
                    append((kv, t, (new(interval, (t, t + gap)),), p))
                    continue
                key, value = kv
                cols = get(key)
                if cols is None:
                    cols = deferred[key] = [None]  # ends (None: start + gap), then value, start, ...
                cols.append(value)
                cols.append(t)
                if cols[0] is not None:
                    cols[0].append(t + gap)
        except (TypeError, ValueError) as exc:
            reducer._raise_for(kv, exc)
        if len(deferred) > reducer._deferred_limit:
            group_op.process([])  # the reducer adds what waits to its windows (and fires what it must)

    return kernel


def _fused_kernel(
    op: ParDoOperator, fn: Callable[[Any], Any], windowfn: FixedWindows | SlidingWindows, pre: PrecombineOperator
) -> Callable[[Any], None]:
    invoker = op.invoker
    outputs, main_tag = invoker.outputs, invoker.main_tag
    special = _SPECIAL_OUTPUTS
    stamped = TimestampedValue
    handle = invoker.handle_special
    assign_in = invoker.input_windowfn._assign_us
    size = windowfn.size_us
    offset = windowfn.offset_us
    sliding = type(windowfn) is SlidingWindows
    period = windowfn.period_us if isinstance(windowfn, SlidingWindows) else size
    starts = pre.start_table(size)

    def call_all(values: Any) -> list[Any]:
        """Phase one: the user's function over the bundle (its errors name the Map)."""
        results: list[Any] = []
        append = results.append
        v: Any = None
        try:
            for v in values:
                append(fn(v))
        except Exception as exc:
            invoker._fail(fn, exc, v)
        return results

    def window_table(start: int, before: dict[int, int]) -> dict[Any, Any]:
        """The {key: sum} table of the window that starts at ``start``; ``before`` notes its size
        when the bundle first reached it (what the bundle added is counted from it)."""
        accs = starts.get(start)
        if accs is None:
            accs = starts[start] = {}
        if start not in before:
            before[start] = len(accs)
        return accs

    def one_pass(values: list[Any]) -> None:
        """Fixed windows over a source's plain values: the function's call in the same loop."""
        general = outputs[main_tag].append
        wm = pre.input_watermark
        # Consecutive elements mostly fall in one window: its {key: sum} table stays at hand,
        # and a key is added to with no (key, window) tuple built or hashed.
        last, accs, get = None, None, None
        before: dict[int, int] = {}  # each window table's size when the bundle first reached it
        t0, ws0, p0 = MIN_TIMESTAMP_US, GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN
        start0 = t0 - (t0 - offset) % size
        sample = op.strict  # strict: the first output must pickle, as the general path checks
        kv: Any = None
        try:
            for v in values:
                try:
                    r = fn(v)
                except Exception as exc:
                    invoker._fail(fn, exc, v)
                if sample:
                    sample = False
                    op._encode_sample(r.value if r.__class__ is stamped else r, f"output to {main_tag!r}")
                if r.__class__ is stamped:
                    t = r.timestamp_us
                    kv = r.value
                    start = t - (t - offset) % size
                elif r.__class__ in special:
                    handle(r, t0, ws0, p0)
                    continue
                else:
                    t, kv, start = t0, r, start0
                if start != last:
                    if start + size <= wm:  # its window has ended: the step-by-step way decides
                        general((kv, t, assign_in(t, kv, ws0[0]) if r.__class__ is stamped else ws0, p0))
                        continue
                    accs = window_table(start, before)
                    last, get = start, accs.get
                key, value = kv
                accs[key] = get(key, 0) + value  # type: ignore[index,misc]
        except (TypeError, ValueError) as exc:
            raise pre.input_error(kv, exc) from exc
        finally:
            pre.starts_count += sum(len(starts[s]) - n for s, n in before.items())
        pre.flush_if_full()

    def kernel(bundle: Any) -> None:
        if type(bundle) is GlobalValues and not sliding:
            one_pass(bundle.values)
            return
        if type(bundle) is GlobalValues:
            results = call_all(bundle.values)
            stamps: Any = itertools.repeat((MIN_TIMESTAMP_US, GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN))
        else:
            results = call_all([wv[0] for wv in bundle])
            stamps = [wv[1:] for wv in bundle]
        if not results:
            return
        if op.strict:
            r0 = results[0]
            op._encode_sample(r0.value if r0.__class__ is stamped else r0, f"output to {main_tag!r}")
        general = outputs[main_tag].append  # what the fast loop does not take goes step by step
        wm = pre.input_watermark
        last: Any = None
        accs: Any = None
        get: Any = None
        before: dict[int, int] = {}
        kv: Any = None
        try:
            if not sliding:
                for r, (t, ws, p) in zip(results, stamps):
                    if r.__class__ is stamped:
                        t = r.timestamp_us
                        kv = r.value
                        start = t - (t - offset) % size
                        if start + size <= wm:
                            general((kv, t, assign_in(t, kv, ws[0]), p))
                            continue
                    elif r.__class__ in special:
                        handle(r, t, ws, p)
                        continue
                    else:
                        kv = r
                        start = t - (t - offset) % size
                        if start + size <= wm:
                            general((kv, t, ws, p))
                            continue
                    if start != last:
                        accs = window_table(start, before)
                        last, get = start, accs.get
                    key, value = kv
                    accs[key] = get(key, 0) + value
            else:
                tables: list[Any] = []
                for r, (t, ws, p) in zip(results, stamps):
                    if r.__class__ is stamped:
                        t = r.timestamp_us
                        kv = r.value
                        ws = assign_in(t, kv, ws[0])
                    elif r.__class__ in special:
                        handle(r, t, ws, p)
                        continue
                    else:
                        kv = r
                    since = (t - offset) % period
                    first = t - since
                    count = -(-(size - since) // period)
                    if first - (count - 1) * period + size <= wm:
                        general((kv, t, ws, p))
                        continue
                    if (first, count) != last:
                        # The tables of the element's windows, latest start first.
                        tables = [window_table(start, before) for start in range(first, first - count * period, -period)]
                        last = (first, count)
                    key, value = kv
                    for accs in tables:
                        accs[key] = accs.get(key, 0) + value
        except (TypeError, ValueError) as exc:
            raise pre.input_error(kv, exc) from exc
        finally:
            pre.starts_count += sum(len(starts[s]) - n for s, n in before.items())
        pre.flush_if_full()

    return kernel
