"""Properties: the reducer's fast paths equal its general path.

``KeyedWindowReducer`` takes shortcuts under the default trigger without
allowed lateness: every window due at a watermark fires in one pass (at the
final watermark, after one sort of the timers instead of a pop per window),
and a new session that the arriving watermark closes fires its only pane
without ever being stored as window state (``_unstored``). Each property
drives reducers directly with random bundles and watermark moves and checks:

* with the unstored-session shortcut switched off, every advance emits the
  same panes in the same order;
* the general trigger machine (``AfterWatermark()``, which fires once, on time,
  at the watermark, as the default trigger does here) emits the same panes,
  with every field, at every advance, and drops the same elements.

Create's element-type inference has a fast path too: ``union_of_instances``
must equal the union of ``instance_to_type`` over the values.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal as td
from tidal import trigger, window
from tidal.model.dofn import DoFn
from tidal.model import typehints
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.model.window import GlobalWindow
from tidal.runners.core.reduce import CombineReduceFn, GroupReduceFn, KeyedWindowReducer, ReduceFn
from reducer_support import SumFn

US = 1_000_000
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WINDOWFNS = {
    "sessions": window.Sessions(5),
    "fixed": window.FixedWindows(10),
    "sliding": window.SlidingWindows(10, 5),
    "fixed_offset": window.FixedWindows(10, offset=3),
}


# A run: (key, timestamp in s) elements split into steps, each step a bundle then a watermark move.
steps = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from("abc"), st.integers(min_value=0, max_value=60)), max_size=12),
        st.integers(min_value=0, max_value=70),  # how far the watermark moves after the bundle (s)
    ),
    min_size=1,
    max_size=6,
)


def _reduce_fn(kind: str) -> ReduceFn:
    return GroupReduceFn() if kind == "group" else CombineReduceFn(SumFn(), False, "sum")


def _run(reducer: KeyedWindowReducer, windowfn: Any, run: list[Any]) -> list[list[Any]]:
    """The panes of each process and advance call (the final advance moves the watermark to the end of time)."""
    outputs = []
    wm = 0
    value = 0
    gw = GlobalWindow()
    for elements, move in run:
        bundle = []
        for key, t in elements:
            value += 1  # unique values: a pane's contents show which elements it holds
            t_us = t * US
            bundle.append(((key, value), t_us, windowfn._assign_us(t_us, (key, value), gw), None))
        outputs.append(reducer.process(bundle))
        wm += move * US
        outputs.append(reducer.advance(wm))
    outputs.append(reducer.advance(MAX_TIMESTAMP_US))
    return outputs


def _per_key(outputs: list[list[Any]]) -> list[list[Any]]:
    """Each call's panes, stably sorted by key: the order within a key is kept."""
    return [sorted(panes, key=lambda wv: repr(wv[0][0])) for panes in outputs]


def _canonical(panes: list[Any]) -> list[Any]:
    out = []
    for (key, result), ts, windows, pane in panes:
        result = sorted(result) if isinstance(result, list) else result
        out.append(repr(((key, result), ts, windows, pane.is_first, pane.is_last, pane.timing, pane.index, pane.nonspeculative_index)))
    return sorted(out)


@SETTINGS
@given(run=steps, windowing=st.sampled_from(sorted(WINDOWFNS)), kind=st.sampled_from(["group", "sum"]))
def test_unstored_sessions_equal_stored_ones(run: list[Any], windowing: str, kind: str) -> None:
    windowfn = WINDOWFNS[windowing]
    fast = KeyedWindowReducer("gbk", WindowingStrategy(windowfn), _reduce_fn(kind))
    slow = KeyedWindowReducer("gbk", WindowingStrategy(windowfn), _reduce_fn(kind))
    slow._fire_unstored = False  # every session goes through window state and a timer
    # Each call's panes in the same order per key (panes of different keys that one watermark
    # move fires have no order between them: the two paths may interleave keys differently).
    assert _per_key(_run(fast, windowfn, run)) == _per_key(_run(slow, windowfn, run))
    assert fast.dropped == slow.dropped
    assert fast.is_empty() and slow.is_empty()


def _plain_sessions(elements: list[tuple[str, int, int]], gap_s: int) -> list[Any]:
    """Per key, ((key, values in (time, arrival) order), window) of each session: (key, t s, value) in arrival order."""
    by_key: dict[str, list[tuple[int, int]]] = {}
    for key, t, v in elements:
        by_key.setdefault(key, []).append((t, v))
    out = []
    for key, items in by_key.items():
        items.sort(key=lambda tv: tv[0])  # stable: equal times keep arrival order
        groups: list[list[Any]] = []
        for t, v in items:
            if groups and t < groups[-1][1]:
                groups[-1][1] = max(groups[-1][1], t + gap_s)
                groups[-1][2].append(v)
            else:
                groups.append([t, t + gap_s, [v]])
        out += [((key, vs), window.IntervalWindow(start, end)) for start, end, vs in groups]
    return out


@pytest.mark.parametrize("numpy_from", [64, 10**9], ids=["numpy", "sorted"])
def test_a_keys_many_session_values_out_of_order_are_put_in_start_order_keeping_arrival_order(
    numpy_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with hundreds of values in random time order (many at equal times): its sessions, and
    each pane's values in (time, arrival) order, equal a plain loop's, ordered by numpy's argsort
    from 64 values or by sorted() below; and a second bundle that merges into stored sessions too."""
    from tidal.runners.core import reduce

    monkeypatch.setattr(reduce, "_NUMPY_ORDER_FROM", numpy_from)
    rng = __import__("random").Random(5)
    gap = 5
    times = [rng.randrange(0, 900) for _ in range(300)] + [100] * 20  # equal starts among the rest
    rng.shuffle(times)
    elements = [("a" if i % 7 else "b", t, i) for i, t in enumerate(times)]
    r = KeyedWindowReducer("gbk", WindowingStrategy(window.Sessions(gap)), GroupReduceFn())
    gw = GlobalWindow()
    r.process([((k, v), t * US, window.Sessions(gap)._assign_us(t * US, (k, v), gw), None) for k, t, v in elements])
    got = [(kv, ws[0]) for kv, _ts, ws, _p in r.advance(MAX_TIMESTAMP_US)]
    assert sorted(got, key=repr) == sorted(_plain_sessions(elements, gap), key=repr)
    # Stored sessions (the watermark has not closed them) that a second out-of-order bundle bridges.
    r = KeyedWindowReducer("gbk", WindowingStrategy(window.Sessions(gap)), GroupReduceFn())
    first, second = elements[:100], elements[100:]
    for part in (first, second):
        r.process([((k, v), t * US, window.Sessions(gap)._assign_us(t * US, (k, v), gw), None) for k, t, v in part])
        assert r.advance(0) == []  # nothing closes at 0 s: every session stays stored
    got = [((k, sorted(vs)), ws[0]) for (k, vs), _ts, ws, _p in r.advance(MAX_TIMESTAMP_US)]
    want = [((k, sorted(vs)), w) for (k, vs), w in _plain_sessions(elements, gap)]
    assert sorted(got, key=repr) == sorted(want, key=repr)


@SETTINGS
@given(run=steps, windowing=st.sampled_from(sorted(WINDOWFNS)), kind=st.sampled_from(["group", "sum"]))
def test_default_trigger_paths_equal_the_general_trigger_machine(run: list[Any], windowing: str, kind: str) -> None:
    windowfn = WINDOWFNS[windowing]
    fast = KeyedWindowReducer("gbk", WindowingStrategy(windowfn), _reduce_fn(kind))
    general = KeyedWindowReducer("gbk", WindowingStrategy(windowfn, trigger=trigger.AfterWatermark()), _reduce_fn(kind))
    assert fast.default_trigger and not general.default_trigger
    got = _run(fast, windowfn, run)
    want = _run(general, windowfn, run)
    assert [_canonical(panes) for panes in got] == [_canonical(panes) for panes in want]
    assert sum(map(len, got)) == sum(map(len, want))
    assert fast.dropped == general.dropped


# -- Create's type inference ---------------------------------------------------------------
scalars = st.one_of(st.integers(), st.text(max_size=3), st.floats(allow_nan=False), st.none(), st.booleans(), st.binary(max_size=2))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.tuples(inner),
        st.tuples(inner, inner, inner),
        st.lists(inner, max_size=3),
        st.frozensets(scalars, max_size=3),
        st.dictionaries(st.integers(), inner, max_size=2),
        st.dictionaries(st.one_of(st.text(max_size=2), st.integers()), scalars, max_size=3),  # rows
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=8))
def test_union_of_instances_equals_the_union_of_each_instance_type(vs: list[Any]) -> None:
    assert typehints.union_of_instances(vs) == typehints.union_of(typehints.instance_to_type(v) for v in vs)


# -- a source's plain values reach a ParDo without a tuple per element ---------------------------
class _SeesBundles(DoFn):
    """Records each element with its timestamp, window and pane (the general kernel)."""

    def process(self, v: Any, t: Any = DoFn.TimestampParam, w: Any = DoFn.WindowParam, p: Any = DoFn.PaneInfoParam) -> Any:
        yield (v, t.micros, w, p)


def _wired_executor(build: Any) -> tuple[Any, list[Any]]:
    """A direct executor of ``build``'s pipeline, with its operators' incoming bundles recorded."""
    from tidal.runners.core.executor import LocalExecutor
    from tidal.runners.core.plan import build_plan

    p = td.Pipeline()
    build(p)
    ex = LocalExecutor(build_plan(p.graph()))
    seen: list[Any] = []
    for op in ex.ops:
        original = op.process

        def spy(bundle: Any, slot: int = 0, op: Any = op, original: Any = original) -> None:
            seen.append((op.label, bundle))
            original(bundle, slot)

        op.process = spy  # type: ignore[method-assign]
    return ex, seen


@given(st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=40), st.sampled_from(["map", "dofn", "element"]))
@SETTINGS
def test_a_pardo_reading_a_source_gets_its_values_unwrapped_with_the_same_result(values: list[Any], kind: str) -> None:
    from tidal.runners.core.sources import GlobalValues, to_windowed

    class Keep(DoFn):
        def process(self, v: Any) -> Any:
            yield v

    def build(p: td.Pipeline) -> None:
        src = p | td.Create(values)
        if kind == "map":
            src | td.Map(lambda v: (v, 1))
        elif kind == "dofn":
            src | td.ParDo(_SeesBundles())
        else:
            src | td.ParDo(Keep())

    ex, seen = _wired_executor(build)
    outputs: list[Any] = []
    consumer = ex.ops[0]
    consumer.add_receiver("out", outputs.extend)
    ex.run()
    bundles = [b for label, b in seen if label == consumer.label]
    assert all(type(b) is GlobalValues for b in bundles), [type(b) for b in bundles]
    # Nothing built the per-element tuples; the output is what the windowed values give.
    assert all(b._windowed is None for b in bundles)
    gw = to_windowed(["x"])[0]
    if kind == "map":
        assert outputs == [((v, 1), gw[1], gw[2], gw[3]) for v in values]
    elif kind == "dofn":
        assert [o[0] for o in outputs] == [(v, gw[1], gw[2][0], gw[3]) for v in values]
    else:
        assert outputs == [(v, gw[1], gw[2], gw[3]) for v in values]


def test_other_consumers_of_a_source_get_windowed_tuples() -> None:
    from tidal.runners.core.sources import GlobalValues

    def build(p: td.Pipeline) -> None:
        src = p | td.Create([("a", 1), ("b", 2)])
        src | td.GroupByKey()
        src | td.Map(lambda kv: kv)

    ex, seen = _wired_executor(build)
    ex.run()
    kinds = {label: type(b) for label, b in seen if "Create" not in label}
    assert any(t is GlobalValues for t in kinds.values())  # the Map
    gbk = [b for label, b in seen if label.startswith("GroupByKey")]
    assert gbk and all(type(b) is list and all(len(wv) == 4 for wv in b) for b in gbk)


# -- the lean reducer path: window -> {key: contents}, no window state -----------------------------
@SETTINGS
@given(run=steps, windowing=st.sampled_from(["fixed", "sliding", "fixed_offset"]), kind=st.sampled_from(["group", "sum"]))
def test_lean_reducer_equals_window_state(run: list[Any], windowing: str, kind: str) -> None:
    windowfn = WINDOWFNS[windowing]
    fast = KeyedWindowReducer("gbk", WindowingStrategy(windowfn), _reduce_fn(kind))
    slow = KeyedWindowReducer("gbk", WindowingStrategy(windowfn), _reduce_fn(kind))
    slow.lean = False
    assert fast.lean
    got, want = _run(fast, windowfn, run), _run(slow, windowfn, run)
    # Exactly the same panes, every field, in the same order at every call.
    assert [_exact(panes) for panes in got] == [_exact(panes) for panes in want]
    assert fast.dropped == slow.dropped
    assert fast.is_empty() and slow.is_empty()


def _exact(panes: list[Any]) -> list[Any]:
    return [(kv, ts, ws, (p.is_first, p.is_last, p.timing, p.index, p.nonspeculative_index)) for kv, ts, ws, p in panes]


@SETTINGS
@given(run=steps, cut=st.integers(min_value=0, max_value=5), kind=st.sampled_from(["group", "sum"]))
def test_lean_reducer_snapshot_restores_into_the_same_panes(run: list[Any], cut: int, kind: str) -> None:
    """A checkpoint taken mid-run (lean contents become window state) and restored gives the same panes."""
    windowfn = WINDOWFNS["fixed"]
    whole = KeyedWindowReducer("gbk", WindowingStrategy(windowfn), _reduce_fn(kind))
    want = _run(whole, windowfn, run)
    first = KeyedWindowReducer("gbk", WindowingStrategy(windowfn), _reduce_fn(kind))
    head, tail = run[:cut], run[cut:]
    got = _run_steps(first, windowfn, head, 0, 0)
    resumed = KeyedWindowReducer("gbk", WindowingStrategy(windowfn), _reduce_fn(kind))
    resumed.restore(first.snapshot())
    wm = sum(move for _, move in head) * US
    value = sum(len(elements) for elements, _ in head)
    got += _run_steps(resumed, windowfn, tail, wm, value)
    got.append(resumed.advance(MAX_TIMESTAMP_US))
    assert [_canonical(panes) for panes in got] == [_canonical(panes) for panes in want]
    assert first.dropped + resumed.dropped - first.dropped == whole.dropped


def _run_steps(reducer: KeyedWindowReducer, windowfn: Any, run: list[Any], wm: int, value: int) -> list[list[Any]]:
    outputs = []
    gw = GlobalWindow()
    for elements, move in run:
        bundle = []
        for key, t in elements:
            value += 1
            bundle.append(((key, value), t * US, windowfn._assign_us(t * US, (key, value), gw), None))
        outputs.append(reducer.process(bundle))
        wm += move * US
        outputs.append(reducer.advance(wm))
    return outputs


# -- Map -> WindowInto -> lifted sum, fused into one loop (runners/core/fused.py) ---------------------
_COLLECTED: dict[str, list[Any]] = {}


class _Collect(DoFn):
    """Appends (element, timestamp µs, window, pane fields) to ``_COLLECTED[run]`` in arrival order."""

    def __init__(self, run: str) -> None:
        self.run = run

    def process(self, v: Any, t: Any = DoFn.TimestampParam, w: Any = DoFn.WindowParam, p: Any = DoFn.PaneInfoParam) -> Any:
        _COLLECTED.setdefault(self.run, []).append((v, t.micros, w, (p.is_first, p.is_last, p.timing, p.index, p.nonspeculative_index)))
        return ()


def _stamp(e: tuple[str, int, int]) -> Any:
    return window.TimestampedValue((e[0], e[2]), e[1])


# Each step: elements (key, event time s), then a watermark move; elements behind the watermark are late.
stream_steps = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from("abc"), st.integers(min_value=0, max_value=80)), max_size=10),
        st.integers(min_value=1, max_value=40),
    ),
    min_size=1,
    max_size=5,
)


def _windowed_sum(p: td.Pipeline, source: Any, windowfn: Any, lateness: int, stamped: bool, run: str) -> None:
    """Lifted, so fusable: the default trigger (with allowed lateness, each late element fires a LATE pane)."""
    pcoll = p | source
    pcoll = pcoll | "Stamp" >> (td.Map(_stamp) if stamped else td.Map(lambda e: (e[0], e[2])))
    _ = pcoll | td.WindowInto(windowfn, allowed_lateness=lateness) | "Sum" >> td.CombinePerKey(sum) | td.ParDo(_Collect(run))


def _by_key(collected: list[Any]) -> list[Any]:
    """The collected panes stably sorted by key: the order within a key is kept."""
    return sorted(collected, key=lambda e: repr(e[0][0]))


def _fused_and_not(build: Any, runner: Any) -> tuple[list[Any], list[Any]]:
    from tidal.runners.core import fused
    from tidal.runners.core.executor import LocalExecutor
    from tidal.runners.core.plan import build_plan

    out = []
    for enabled in (True, False):
        run = f"fused-{enabled}"
        _COLLECTED.pop(run, None)
        fused.FUSION_ENABLED = enabled
        try:
            p = td.Pipeline(runner=runner())
            build(p, run)
            assert bool(LocalExecutor(build_plan(p.graph())).fused) is enabled
            p.run().wait_until_finish()
        finally:
            fused.FUSION_ENABLED = True
        out.append(_COLLECTED.pop(run, []))
    return out[0], out[1]


@SETTINGS
@given(
    run=stream_steps,
    windowing=st.sampled_from(["fixed", "sliding", "fixed_offset"]),
    lateness=st.sampled_from([0, 15]),
    stamped=st.booleans(),
    strict=st.booleans(),
)
def test_fused_windowed_sum_equals_the_steps_one_by_one_in_a_stream(
    run: list[Any], windowing: str, lateness: int, stamped: bool, strict: bool
) -> None:
    from tidal.runners.direct import DirectRunner
    from tidal.testing import TestStream

    def build(p: td.Pipeline, name: str) -> None:
        stream = TestStream()
        wm, value = 0, 0
        for elements, move in run:
            batch = []
            for key, t in elements:
                value += 1
                # Unstamped: the stream stamps it, and the Map keeps the timestamp.
                batch.append((key, t, value) if stamped else window.TimestampedValue((key, t, value), t))
            if batch:
                stream.add_elements(batch)
            wm += move
            stream.advance_watermark_to(wm)
        _windowed_sum(p, stream.advance_watermark_to_infinity(), WINDOWFNS[windowing], lateness, stamped, name)

    fused_out, steps_out = _fused_and_not(build, lambda: DirectRunner(strict=strict))
    # The same panes in the same order per key (panes of different keys that one watermark move
    # fires have no order between them: the fused table and the reducer may interleave keys differently).
    assert _by_key(fused_out) == _by_key(steps_out)


@SETTINGS
@given(
    elements=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(min_value=0, max_value=100), st.integers(-5, 5)), max_size=60),
    windowing=st.sampled_from(["fixed", "sliding", "fixed_offset"]),
    bundle_size=st.sampled_from([1, 7, 1000]),
    strict=st.booleans(),
)
def test_fused_windowed_sum_equals_the_steps_one_by_one_in_a_batch(elements: list[Any], windowing: str, bundle_size: int, strict: bool) -> None:
    from tidal.runners.direct import DirectRunner

    data = list(elements)
    build = lambda p, name: _windowed_sum(p, td.Create(data), WINDOWFNS[windowing], 0, True, name)  # noqa: E731
    fused_out, steps_out = _fused_and_not(build, lambda: DirectRunner(strict=strict, bundle_size=bundle_size))
    assert fused_out == steps_out
    # And both are the per-(key, window) sums a plain loop finds.
    sums: dict[tuple[str, Any], int] = {}
    gw = GlobalWindow()
    for k, t, v in data:
        for w in WINDOWFNS[windowing]._assign_us(t * US, None, gw):
            sums[(k, w)] = sums.get((k, w), 0) + v
    only = (True, True, trigger.PaneInfoTiming.ON_TIME, 0, 0)
    assert sorted(fused_out, key=repr) == sorted((((k, s), w.max_timestamp_us, w, only) for (k, w), s in sums.items()), key=repr)


def test_fused_windowed_sum_by_hand() -> None:
    from tidal.runners.direct import DirectRunner

    data = [("a", 1, 1), ("b", 2, 10), ("a", 9, 2), ("a", 12, 4)]
    _COLLECTED.pop("hand", None)
    p = td.Pipeline(runner=DirectRunner())
    _windowed_sum(p, td.Create(data), window.FixedWindows(10), 0, True, "hand")
    p.run().wait_until_finish()
    only = (True, True, trigger.PaneInfoTiming.ON_TIME, 0, 0)
    w0, w1 = window.IntervalWindow(0, 10), window.IntervalWindow(10, 20)
    assert sorted(_COLLECTED.pop("hand"), key=repr) == sorted(
        [(("a", 3), 9_999_999, w0, only), (("b", 10), 9_999_999, w0, only), (("a", 4), 19_999_999, w1, only)], key=repr
    )


def test_fused_map_errors_name_the_step_that_raised_them() -> None:
    from tidal.runners.direct import DirectRunner

    def build(fn: Any) -> td.Pipeline:
        p = td.Pipeline(runner=DirectRunner())
        _ = p | td.Create([1, 2]) | "Stamp" >> td.Map(fn) | td.WindowInto(window.FixedWindows(10)) | "Sum" >> td.CombinePerKey(sum)
        return p

    with pytest.raises(td.PipelineExecutionError, match=r"step 'Sum/Precombine': CombinePerKey needs \(key, value\) pairs with hashable keys; got 1"):
        build(lambda i: window.TimestampedValue(i, i)).run().wait_until_finish()
    with pytest.raises(td.PipelineExecutionError, match=r"'Stamp'.*ZeroDivisionError"):
        build(lambda i: window.TimestampedValue(("k", 1 / 0), i)).run().wait_until_finish()


@SETTINGS
@given(
    run=stream_steps,
    windowing=st.sampled_from(["fixed", "sliding", "sessions"]),
    lateness=st.sampled_from([0, 15]),
    stamped=st.booleans(),
)
def test_a_map_that_assigns_the_windows_equals_the_steps_one_by_one(run: list[Any], windowing: str, lateness: int, stamped: bool) -> None:
    """Map -> WindowInto -> GroupByKey: the fused Map assigns the windows, WindowInto passes bundles on."""
    from tidal.runners.direct import DirectRunner
    from tidal.testing import TestStream

    def build(p: td.Pipeline, name: str) -> None:
        stream = TestStream()
        wm, value = 0, 0
        for elements, move in run:
            batch = []
            for key, t in elements:
                value += 1
                batch.append((key, t, value) if stamped else window.TimestampedValue((key, t, value), t))
            if batch:
                stream.add_elements(batch)
            wm += move
            stream.advance_watermark_to(wm)
        pcoll = p | stream.advance_watermark_to_infinity()
        pcoll = pcoll | "Stamp" >> (td.Map(_stamp) if stamped else td.Map(lambda e: (e[0], e[2])))
        _ = pcoll | td.WindowInto(WINDOWFNS[windowing], allowed_lateness=lateness) | td.GroupByKey() | td.ParDo(_Collect(name))

    fused_out, steps_out = _fused_and_not(build, DirectRunner)
    # The same panes in the same order per key (over sessions the fused kernel defers on-time values
    # while late ones go through the grouping step, so keys may fire in another order).
    assert _by_key(fused_out) == _by_key(steps_out)


@SETTINGS
@given(
    words=st.lists(st.tuples(st.sampled_from(["a", "b", "c", 1, (2, 3)]), st.integers(-3, 3)), max_size=60),
    bundle_size=st.sampled_from([1, 5, 1000]),
    strict=st.booleans(),
)
def test_a_fused_global_sum_equals_the_steps_one_by_one(words: list[Any], bundle_size: int, strict: bool) -> None:
    """Map -> lifted sum in the global window (word count): one key -> sum table in the Map's loop."""
    from tidal.runners.direct import DirectRunner

    def build(p: td.Pipeline, name: str) -> None:
        _ = p | td.Create(words) | "Pair" >> td.Map(lambda kv: (kv[0], kv[1])) | "Sum" >> td.CombinePerKey(sum) | td.ParDo(_Collect(name))

    fused_out, steps_out = _fused_and_not(build, lambda: DirectRunner(strict=strict, bundle_size=bundle_size))
    assert fused_out == steps_out
    sums: dict[Any, int] = {}
    for k, v in words:
        sums[k] = sums.get(k, 0) + v
    only = (True, True, trigger.PaneInfoTiming.ON_TIME, 0, 0)
    gw = GlobalWindow()
    assert sorted(fused_out, key=repr) == sorted((((k, s), gw.max_timestamp_us, gw, only) for k, s in sums.items()), key=repr)


def test_fused_global_sum_errors_name_the_step_that_raised_them() -> None:
    from tidal.runners.direct import DirectRunner

    def build(fn: Any) -> td.Pipeline:
        p = td.Pipeline(runner=DirectRunner())
        _ = p | td.Create([1, 2]) | "Pair" >> td.Map(fn) | "Sum" >> td.CombinePerKey(sum)
        return p

    with pytest.raises(td.PipelineExecutionError, match=r"step 'Sum/Precombine': CombinePerKey needs \(key, value\) pairs with hashable keys; got 1"):
        build(lambda i: i).run().wait_until_finish()
    with pytest.raises(td.PipelineExecutionError, match=r"'Pair'.*ZeroDivisionError"):
        build(lambda i: ("k", 1 / 0)).run().wait_until_finish()
    with pytest.raises(td.PipelineExecutionError, match=r"'Sum/Precombine'.*TypeError"):
        build(lambda i: ("k", "x")).run().wait_until_finish()


# -- a DoFn taking the window as its second argument (the general loop binds it by keyword) --------
class _WindowSecond(DoFn):
    def process(self, v: Any, w: Any = DoFn.WindowParam) -> Any:
        yield (v, w)


class _WindowKeywordOnly(DoFn):
    def process(self, v: Any, *, w: Any = DoFn.WindowParam) -> Any:
        yield (v, w)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 40), st.integers()), max_size=30), st.sampled_from(sorted(WINDOWFNS)))
def test_the_window_kernel_equals_the_general_kernel(elements: list[Any], windowing: str) -> None:
    from tidal.runners.core.invoker import DoFnInvoker

    windowfn = WINDOWFNS[windowing]
    bundle = [(v, t * US, windowfn._assign_us(t * US, v, GlobalWindow()), None) for t, v in elements]
    fast = DoFnInvoker("fast", _WindowSecond(), (), {}, "out", (), windowfn)
    general = DoFnInvoker("general", _WindowKeywordOnly(), (), {}, "out", (), windowfn)
    assert fast._kernel == fast._window_kernel and general._kernel == general._general_kernel
    fast.process_bundle(bundle)
    general.process_bundle(bundle)
    assert fast.outputs == general.outputs
    assert len(fast.outputs["out"]) == sum(len(ws) for _v, _t, ws, _p in bundle)


# -- panes in bundles, and the collector off while a watermark fires ----------------------------------
def test_a_large_firing_is_emitted_in_bundles_of_pane_bundle_in_order(monkeypatch: Any) -> None:
    from tidal.runners.core import operators

    monkeypatch.setattr(operators, "PANE_BUNDLE", 3)

    def build(p: td.Pipeline) -> None:
        _ = p | td.Create([(k, k) for k in range(10)]) | td.GroupByKey() | "After" >> td.Map(lambda kv: kv)

    ex, seen = _wired_executor(build)
    ex.run()
    bundles = [b for label, b in seen if label == "After"]
    assert [len(b) for b in bundles] == [3, 3, 3, 1]
    assert [wv[0] for b in bundles for wv in b] == [(k, [k]) for k in range(10)]


@pytest.mark.parametrize("windowfn", [window.FixedWindows(10), window.Sessions(5)], ids=["fixed", "sessions"])
def test_a_firing_of_many_windows_hands_its_panes_on_in_pieces_as_it_builds_them(monkeypatch: Any, windowfn: Any) -> None:
    """Past ``_PANES_PER_PIECE`` panes, the reducer hands each piece on (in bundles of at most
    ``PANE_BUNDLE``) before building the next window's, in memory as on disk: a piece of 4 panes
    goes out as bundles of 3 and 1. (Sessions that the final watermark closes are built as the
    sweep over their key's values finds them, and handed on in pieces the same way.)"""
    from tidal.runners.core import operators, reduce

    monkeypatch.setattr(operators, "PANE_BUNDLE", 3)
    monkeypatch.setattr(reduce, "_PANES_PER_PIECE", 4)

    def build(p: td.Pipeline) -> None:
        stamped = p | td.Create(range(10)) | td.Map(lambda k: window.TimestampedValue((k, k), 10 * k))
        _ = stamped | td.WindowInto(windowfn) | td.GroupByKey() | "After" >> td.Map(lambda kv: kv)

    ex, seen = _wired_executor(build)
    ex.run()
    bundles = [b for label, b in seen if label == "After"]
    assert [len(b) for b in bundles] == [3, 1, 3, 1, 2]
    assert [wv[0] for b in bundles for wv in b] == [(k, [k]) for k in range(10)]


def test_a_firing_leaves_its_panes_out_of_the_young_generation() -> None:
    """Inside a run's collector policy, the panes a firing built (with the collector off) are moved
    to the oldest generation without a scan: the next young collection does not traverse them."""
    import gc

    from tidal.runners.core.gcpolicy import throughput_gc

    strategy = WindowingStrategy(window.FixedWindows(10))
    reducer = KeyedWindowReducer("gbk", strategy, GroupReduceFn())
    fixed = window.FixedWindows(10)
    reducer.process([((k, k), 0, fixed._assign_us(0, None, GlobalWindow()), None) for k in range(500)])
    with throughput_gc():
        panes = reducer.advance(MAX_TIMESTAMP_US)
        young = {id(o) for o in gc.get_objects(generation=0)}
        old = {id(o) for o in gc.get_objects(generation=2)}
    assert len(panes) == 500 and [kv for kv, *_ in panes[:2]] == [(0, [0]), (1, [1])]
    assert not any(id(p) in young for p in panes)
    assert all(id(p) in old for p in panes)


class _FailingOutput(SumFn):
    def extract_output(self, acc: int) -> int:
        import gc

        assert not gc.isenabled()  # firing runs with the cyclic collector off
        if acc > 100:
            raise ValueError("too big")
        return acc


def test_firing_holds_the_cyclic_collector_off_and_restores_it() -> None:
    import gc

    strategy = WindowingStrategy(window.FixedWindows(10))
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            reducer = KeyedWindowReducer("sum", strategy, CombineReduceFn(_FailingOutput(), False, "sum"))
            reducer.process([(("a", 1), 0, window.FixedWindows(10)._assign_us(0, None, GlobalWindow()), None)])
            assert [kv for kv, *_ in reducer.advance(MAX_TIMESTAMP_US)] == [("a", 1)]
            assert gc.isenabled() is enabled
            reducer = KeyedWindowReducer("sum", strategy, CombineReduceFn(_FailingOutput(), False, "sum"))
            reducer.process([(("a", 101), 0, window.FixedWindows(10)._assign_us(0, None, GlobalWindow()), None)])
            with pytest.raises(td.PipelineExecutionError, match="too big"):
                reducer.advance(MAX_TIMESTAMP_US)
            assert gc.isenabled() is enabled
        finally:
            gc.enable()


def test_a_stage_whose_sum_finishes_in_another_stage_still_fuses_its_map_with_the_precombine() -> None:
    """On Ray a lifted sum's pre-combiner runs in the Map's stage and the final combine in the next one: the Map's
    stage alone (``stage_ids``) fuses the Map with its pre-combiner, and the stage that finishes the sum builds none."""
    from tidal.runners.core.executor import LocalExecutor
    from tidal.runners.core.plan import build_plan

    p = td.Pipeline()
    _ = p | td.Create(["a", "b", "a"]) | "Pair" >> td.Map(lambda w: (w, 1)) | "Sum" >> td.CombinePerKey(sum)
    plan = build_plan(p.graph())
    stage_of_pair = next(s.id for s in plan.stages if any(n.full_label == "Pair" for n in s.nodes))
    others = {s.id for s in plan.stages} - {stage_of_pair}
    assert others, "the sum must finish in a stage of its own"
    def emit(edge_id: str, bundle: list[Any]) -> None:
        pass

    mine = LocalExecutor(plan, stage_ids={stage_of_pair}, remote_emit=emit)
    assert [(m.label, pre.label) for m, pre in mine.fused] == [("Pair", "Sum/Precombine")]
    assert LocalExecutor(plan, stage_ids=others, remote_emit=emit).fused == []


@pytest.mark.parametrize("windowing", ["fixed", "sliding"])
@pytest.mark.parametrize("plain_values", [True, False])
def test_a_fused_windowed_sum_flushes_its_partials_once_they_reach_max_keys(windowing: str, plain_values: bool) -> None:
    """The fused kernel counts the (key, window) entries it adds, so the pre-combiner's size bound
    holds: once ``max_keys`` entries wait, they go downstream (and the count starts again)."""
    from tidal.runners.core.executor import LocalExecutor
    from tidal.runners.core.plan import build_plan
    from tidal.runners.core.sources import GlobalValues, to_windowed

    p = td.Pipeline()
    _ = (
        p
        | td.Create([])
        | "Stamp" >> td.Map(_stamp)
        | td.WindowInto(WINDOWFNS[windowing])
        | "Sum" >> td.CombinePerKey(sum)
    )
    ex = LocalExecutor(build_plan(p.graph()))
    [(map_op, pre)] = ex.fused
    pre.max_keys = 10
    flushed: list[list[Any]] = []
    pre.emit = lambda tag, out: flushed.append(list(out))  # type: ignore[method-assign]
    per_element = 2 if windowing == "sliding" else 1  # sliding: 10 s windows every 5 s
    # Keys k0..k3 at 12 s, then k0 again: 4 entries (8 sliding), a repeated key adds none.
    first = [(f"k{i}", 12, 1) for i in range(4)] + [("k0", 12, 5)]

    def bundle(elements: list[Any]) -> Any:
        return GlobalValues(elements) if plain_values else to_windowed(elements)

    map_op.process(bundle(first))
    assert pre.starts_count == 4 * per_element and flushed == []
    # Two more keys: 6 entries (12 sliding) reach the bound of 10 only on sliding windows ...
    map_op.process(bundle([("k4", 13, 1), ("k5", 14, 1)]))
    if windowing == "sliding":
        assert len(flushed) == 1 and len(flushed[0]) == 12 and pre.starts_count == 0
        assert sorted((kv, w) for kv, _t, (w,), _p in flushed[0] if kv[0] == "k0") == [
            (("k0", 6), window.IntervalWindow(5, 15)),
            (("k0", 6), window.IntervalWindow(10, 20)),
        ]
    else:
        assert flushed == [] and pre.starts_count == 6
        # ... and on fixed windows with four keys in the next window.
        map_op.process(bundle([(f"k{i}", 25, 1) for i in range(4)]))
        assert len(flushed) == 1 and pre.starts_count == 0
        assert sorted((kv, w) for kv, _t, (w,), _p in flushed[0]) == sorted(
            [(("k0", 6), window.IntervalWindow(10, 20))]
            + [((f"k{i}", 1), window.IntervalWindow(10, 20)) for i in range(1, 6)]
            + [((f"k{i}", 1), window.IntervalWindow(20, 30)) for i in range(4)]
        )


def _session_group(p: td.Pipeline, source: Any, kind: str, name: str, strict_pairs: bool = True) -> None:
    pcoll = p | source | "Stamp" >> td.Map(_stamp) | td.WindowInto(window.Sessions(5))
    grouped = pcoll | "Group" >> (td.GroupByKey() if kind == "group" else td.CombinePerKey(SumFn()))
    _ = grouped | td.ParDo(_Collect(name))


@SETTINGS
@given(
    elements=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(min_value=0, max_value=60), st.integers(-5, 5)), max_size=60),
    kind=st.sampled_from(["group", "combine"]),
    bundle_size=st.sampled_from([1, 7, 1000]),
    strict=st.booleans(),
)
def test_a_map_that_defers_session_values_into_the_grouping_step_equals_the_steps_one_by_one(
    elements: list[Any], kind: str, bundle_size: int, strict: bool
) -> None:
    """Map -> WindowInto(Sessions) -> GroupByKey or CombinePerKey in one executor: the Map's kernel adds
    each value and its session window to the grouping step's deferred columns; the panes equal the
    unfused steps' and the sessions a plain loop finds."""
    from tidal.runners.core.executor import LocalExecutor
    from tidal.runners.core.plan import build_plan
    from tidal.runners.direct import DirectRunner

    data = list(elements)
    p = td.Pipeline()
    _session_group(p, td.Create(data), kind, "probe")
    ex = LocalExecutor(build_plan(p.graph()))
    assert [m.invoker._kernel.__qualname__ for m, _ in ex.fused] == ["_deferring_kernel.<locals>.kernel"]
    build = lambda p, name: _session_group(p, td.Create(data), kind, name)  # noqa: E731
    fused_out, steps_out = _fused_and_not(build, lambda: DirectRunner(strict=strict, bundle_size=bundle_size))
    # Panes per key in the same order; a GroupByKey's values in any order.
    norm = lambda out: _by_key([((k, sorted(v) if kind == "group" else v), *rest) for (k, v), *rest in out])  # noqa: E731
    assert norm(fused_out) == norm(steps_out)
    by_key: dict[str, list[tuple[int, int]]] = {}
    for k, t, v in data:
        by_key.setdefault(k, []).append((t * US, v))
    expected = []
    only = (True, True, trigger.PaneInfoTiming.ON_TIME, 0, 0)
    for k, items in by_key.items():
        items.sort()
        groups: list[list[Any]] = []
        for t, v in items:
            if groups and t < groups[-1][1]:
                groups[-1][1] = max(groups[-1][1], t + 5 * US)
                groups[-1][2].append(v)
            else:
                groups.append([t, t + 5 * US, [v]])
        for start, end, vs in groups:
            value = sorted(vs) if kind == "group" else sum(vs)
            expected.append(((k, value), end - 1, window.IntervalWindow.from_micros(start, end), only))
    assert sorted(norm(fused_out), key=repr) == sorted(expected, key=repr)


def test_deferring_session_values_needs_the_grouping_step_alone_and_unlifted() -> None:
    from tidal.runners.core.executor import LocalExecutor
    from tidal.runners.core.plan import build_plan

    def kernels(build: Any) -> list[str]:
        p = td.Pipeline()
        build(p)
        return [m.invoker._kernel.__qualname__.split(".")[0] for m, _ in LocalExecutor(build_plan(p.graph())).fused]

    def two_consumers(p: td.Pipeline) -> None:
        sessions = p | td.Create([("a", 1, 1)]) | "Stamp" >> td.Map(_stamp) | td.WindowInto(window.Sessions(5))
        _ = sessions | "G1" >> td.GroupByKey()
        _ = sessions | "G2" >> td.GroupByKey()

    def fixed(p: td.Pipeline) -> None:
        _ = p | td.Create([("a", 1, 1)]) | "Stamp" >> td.Map(_stamp) | td.WindowInto(window.FixedWindows(5)) | td.GroupByKey()

    assert kernels(lambda p: _session_group(p, td.Create([("a", 1, 1)]), "group", "x")) == ["_deferring_kernel"]
    assert kernels(two_consumers) == ["_assigning_kernel"]
    assert kernels(fixed) == ["_assigning_kernel"]


def test_deferred_session_values_that_are_not_pairs_fail_naming_the_grouping_step() -> None:
    from tidal.runners.direct import DirectRunner

    def run(fn: Any) -> None:
        p = td.Pipeline(runner=DirectRunner())
        stamped = p | td.Create([1, 2]) | "Stamp" >> td.Map(fn)
        _ = stamped | td.WindowInto(window.Sessions(5)) | "Group" >> td.GroupByKey()
        p.run().wait_until_finish()

    with pytest.raises(td.PipelineExecutionError, match=r"step 'Group': GroupByKey and CombinePerKey need \(key, value\) pairs; got 1"):
        run(lambda i: window.TimestampedValue(i, i))
    with pytest.raises(td.PipelineExecutionError, match=r"step 'Group': the key \['k'\] is not hashable"):
        run(lambda i: window.TimestampedValue((["k"], i), i))
    with pytest.raises(td.PipelineExecutionError, match=r"'Stamp'.*ZeroDivisionError"):
        run(lambda i: window.TimestampedValue(("k", 1 / 0), i))


@pytest.mark.parametrize("windowfn", [window.FixedWindows(10), window.SlidingWindows(10, 5)], ids=["fixed", "sliding"])
def test_in_strict_mode_a_fused_windowed_sum_checks_that_the_maps_output_pickles(windowfn: Any) -> None:
    """Strict mode hands a source's plain values to the fused kernel as they are, and the kernel
    checks the Map's first output pickles, as the steps one by one do."""
    import threading

    from tidal.runners.direct import DirectRunner

    p = td.Pipeline(runner=DirectRunner(strict=True))
    stamped = p | td.Create([1, 2]) | "Stamp" >> td.Map(lambda i: window.TimestampedValue((threading.Lock(), i), i))
    _ = stamped | td.WindowInto(windowfn) | "Sum" >> td.CombinePerKey(sum)
    with pytest.raises(td.PipelineExecutionError, match=r"step 'Stamp': output to 'out' .*cannot be pickled"):
        p.run().wait_until_finish()


def test_a_merged_session_from_upstream_keeps_its_end_while_its_values_wait_for_the_watermark() -> None:
    """Sessions wait with their ends implied (start + gap) until a window of another length comes
    (an upstream grouping's merged session): from then on the key's ends are kept, so [10, 22)
    still merges with [20, 25) and [0, 5) stays apart."""
    reducer = KeyedWindowReducer("gbk", WindowingStrategy(window.Sessions(5)), GroupReduceFn())
    W = window.IntervalWindow
    reducer.process([(("k", 1), 0, (W(0, 5),), None), (("k", 2), 10 * US, (W(10, 22),), None)])
    reducer.process([(("k", 3), 20 * US, (W(20, 25),), None), (("j", 4), 0, (W(0, 5),), None)])
    panes = reducer.advance(MAX_TIMESTAMP_US)
    assert sorted((kv, w) for kv, _t, (w,), _p in panes) == [
        (("j", [4]), W(0, 5)),
        (("k", [1]), W(0, 5)),
        (("k", [2, 3]), W(10, 25)),
    ]


def test_on_the_disk_backend_deferred_session_values_stay_within_the_cache(tmp_path: Any) -> None:
    """The deferring kernel adds to the reducer's waiting columns and, past the disk backend's
    cache of keys, has the grouping step add them to their (spilling) windows: the waiting keys
    stay within the cache, and the sessions equal plain Python's."""
    from tidal.runners.core.executor import LocalExecutor
    from tidal.runners.core.plan import build_plan
    from tidal.runners.core.sources import GlobalValues
    from tidal.runners.core.statebackend import StateBackendSpec

    options = {"state_backend": "disk", "state_dir": str(tmp_path), "state_cache_entries": 4}
    p = td.Pipeline(options=options)
    _session_group(p, td.Create([]), "group", "disk")
    ex = LocalExecutor(build_plan(p.graph(), state_backend=StateBackendSpec.from_options(p.options)))
    [(map_op, win_op)] = ex.fused
    group_op = next(op for op in ex.ops if getattr(op, "reducer", None) is not None)
    elements = [(f"k{i:02d}", t, i) for i in range(50) for t in (0, 3, 20)]
    for piece in range(0, len(elements), 10):
        map_op.process(GlobalValues(elements[piece : piece + 10]))
        assert len(group_op.reducer._deferred) <= 4
    panes: list[Any] = []
    group_op.add_receiver("out", panes.extend)
    group_op.advance(MAX_TIMESTAMP_US, [], 0)
    W = window.IntervalWindow
    assert sorted((kv[0], sorted(kv[1]), w) for kv, _t, (w,), _p in panes) == sorted(
        [(f"k{i:02d}", [i, i], W(0, 8)) for i in range(50)] + [(f"k{i:02d}", [i], W(20, 25)) for i in range(50)]
    )
    ex.state_backend.close()


def test_a_watermark_move_hands_on_the_fused_partials_of_the_windows_it_may_close_and_keeps_the_rest() -> None:
    # A stream's watermark moves with every bundle: sending every open window's partials on
    # each move would send a partial per key and bundle. The windows the new watermark may
    # close go (their last timestamp at or before it), the others keep combining; the global
    # window's go at the end of time; the table of the general path goes on every move.
    from tidal.model.combinefn import SumCombineFn
    from tidal.model.time import MIN_TIMESTAMP_US
    from tidal.model.window import GLOBAL_WINDOW
    from tidal.runners.core.operators import PrecombineOperator

    pre = PrecombineOperator("Pre", SumCombineFn())
    sent: list[Any] = []
    pre.add_receiver("out", sent.extend)
    size = 60_000_000
    starts = pre.start_table(size)
    starts[0] = {"a": 1, "b": 2}
    starts[size] = {"a": 3}
    starts[2 * size] = {"c": 4}
    pre.starts_count = 4
    pre.global_table["g"] = 5
    late = window.IntervalWindow.from_micros(-size, 0)
    pre.table[("t", late)] = 6

    def got() -> list[Any]:
        out = sorted((kv, ts, ws[0]) for kv, ts, ws, _p in sent)
        sent.clear()
        return out

    w0 = window.IntervalWindow.from_micros(0, size)
    w1 = window.IntervalWindow.from_micros(size, 2 * size)
    pre.advance(size - 2, [], MIN_TIMESTAMP_US)  # one µs before the first window's last timestamp
    assert got() == [(("t", 6), -1, late)]
    assert set(starts) == {0, size, 2 * size} and pre.starts_count == 4
    pre.advance(size - 1, [], MIN_TIMESTAMP_US)
    assert got() == [(("a", 1), size - 1, w0), (("b", 2), size - 1, w0)]
    assert set(starts) == {size, 2 * size} and pre.starts_count == 2
    starts[size]["d"] = 7  # the kernel goes on adding to the open window's table
    pre.starts_count += 1
    pre.advance(2 * size + 5, [], MIN_TIMESTAMP_US)
    assert got() == [(("a", 3), 2 * size - 1, w1), (("d", 7), 2 * size - 1, w1)]
    assert set(starts) == {2 * size} and pre.starts_count == 1 and pre.global_table == {"g": 5}
    pre.advance(MAX_TIMESTAMP_US, [], MIN_TIMESTAMP_US)
    w2 = window.IntervalWindow.from_micros(2 * size, 3 * size)
    assert got() == sorted([(("c", 4), 3 * size - 1, w2), (("g", 5), GLOBAL_WINDOW.max_timestamp_us, GLOBAL_WINDOW)])
    assert not starts and pre.starts_count == 0 and not pre.global_table and pre.is_idle()
