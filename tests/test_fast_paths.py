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

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal as td
from tidal import trigger, window
from tidal.model.dofn import DoFn
from tidal.model.combinefn import CombineFn
from tidal.model import typehints
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.model.window import GlobalWindow
from tidal.runners.core.reduce import CombineReduceFn, GroupReduceFn, KeyedWindowReducer, ReduceFn

US = 1_000_000
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WINDOWFNS = {
    "sessions": window.Sessions(5),
    "fixed": window.FixedWindows(10),
    "sliding": window.SlidingWindows(10, 5),
}


class SumFn(CombineFn):
    def create_accumulator(self) -> int:
        return 0

    def add_input(self, acc: int, x: int) -> int:
        return acc + x

    def merge_accumulators(self, accs: Any) -> int:
        return sum(accs)

    def extract_output(self, acc: int) -> int:
        return acc


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
