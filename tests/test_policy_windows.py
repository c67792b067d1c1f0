"""Count windows, delta windows and evictors, exact on every runner (direct, Ray, micro-batch).

Expected panes are derived by hand from the rules in ``tidal.model.policy``
and ``tidal.runners.core.policy``: a key's elements are taken in the order
the grouping step processes them (a TestStream is read by one worker on
every runner, so that order is the stream's), a policy window fires once
with PaneInfo (first, last, ON_TIME, 0, 0) in a PolicyWindow spanning its
elements' timestamps, and an evictor trims the buffer before or after the
grouping function. Each recorded pane is ``(key, values in buffer order,
window, timestamp µs, pane index, timing, is_first, is_last,
nonspeculative_index)``.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, Iterable

import cloudpickle
import pytest

import tidal as td
from tidal import trigger, window
from tidal.model.pipeline import PipelineError
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.model.trigger import PaneInfoTiming
from tidal.runners.core.keygroups import KeyGroups
from tidal.runners.core.operators import GroupByKeyOperator
from tidal.runners.core.plan import build_plan
from tidal.testing import TestStream, assert_that, equal_to

TV = window.TimestampedValue
PW = window.PolicyWindow.from_micros
W = window.IntervalWindow
US = 1_000_000
EARLY, ON_TIME = PaneInfoTiming.EARLY, PaneInfoTiming.ON_TIME
DISCARDING, ACCUMULATING = trigger.AccumulationMode.DISCARDING, trigger.AccumulationMode.ACCUMULATING

RUNNERS = ["direct", "ray", "microbatch"]


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    """Each test runs on every runner; Ray tests share the session-wide local Ray."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


class RecordInOrder(td.DoFn):
    """Each pane as a plain tuple, its values in the order the pane holds them (not sorted)."""

    def process(
        self,
        kv: Any,
        w: Any = td.DoFn.WindowParam,
        pane: Any = td.DoFn.PaneInfoParam,
        ts: Any = td.DoFn.TimestampParam,
    ) -> Iterable[Any]:
        key, values = kv
        yield (key, values, w, ts.micros, pane.index, pane.timing, pane.is_first, pane.is_last, pane.nonspeculative_index)


cloudpickle.register_pickle_by_value(sys.modules[__name__])


def only(key: Any, values: Any, w: Any, ts_us: int) -> tuple[Any, ...]:
    """The only pane of a policy window: first, last, ON_TIME, index 0, nonspeculative 0."""
    return (key, values, w, ts_us, 0, ON_TIME, True, True, 0)


def pane(key: Any, values: Any, w: Any, ts_us: int, index: int, timing: PaneInfoTiming, last: bool, nonspec: int) -> tuple[Any, ...]:
    return (key, values, w, ts_us, index, timing, index == 0, last, nonspec)


def run_panes(runner: str, stream: TestStream, into: td.WindowInto, expected: list[Any], combine: Any = None) -> None:
    p = td.Pipeline(runner=runner)
    grouped = p | "Src" >> stream | "Window" >> into | "Group" >> (td.GroupByKey() if combine is None else td.CombinePerKey(combine))
    assert_that(grouped | "Panes" >> td.ParDo(RecordInOrder()), equal_to(expected))
    p.run().wait_until_finish()


def at(key: str, value: Any, t: float) -> TV:
    return TV((key, value), t)


# -- count windows --------------------------------------------------------------------------
def test_tumbling_count_windows_per_key_with_a_partial_last_window(runner: str) -> None:
    stream = TestStream().add_elements(
        [at("a", 1, 1), at("b", 10, 2), at("a", 2, 3), at("a", 3, 4), at("b", 20, 5), at("a", 4, 6), at("a", 5, 7)]
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(window.CountWindows(2)),
        [
            # a: 1, 2 | 3, 4 | 5 (partial, at the end of the input); b: 10, 20.
            only("a", [1, 2], PW(0, 1 * US, 3 * US + 1), 3 * US),
            only("a", [3, 4], PW(1, 4 * US, 6 * US + 1), 6 * US),
            only("a", [5], PW(2, 7 * US, 7 * US + 1), 7 * US),
            only("b", [10, 20], PW(0, 2 * US, 5 * US + 1), 5 * US),
        ],
    )


def test_sliding_count_windows_fire_every_nth_element_with_the_last_size(runner: str) -> None:
    stream = TestStream().add_elements([at("a", v, v) for v in (1, 2, 3, 4, 5)]).add_elements([at("b", 9, 9)])
    run_panes(
        runner,
        stream,
        td.WindowInto(window.CountWindows(3, every=2)),
        [
            only("a", [1, 2], PW(0, 1 * US, 2 * US + 1), 2 * US),  # after the 2nd element: 2 so far
            only("a", [2, 3, 4], PW(1, 2 * US, 4 * US + 1), 4 * US),  # after the 4th: the last 3
            only("a", [3, 4, 5], PW(2, 3 * US, 5 * US + 1), 5 * US),  # end of input: one since the last firing
            only("b", [9], PW(0, 9 * US, 9 * US + 1), 9 * US),
        ],
    )


@pytest.mark.parametrize(
    "combiner, ts_us",
    [
        (window.TimestampCombiner.OUTPUT_AT_EOW, 8 * US),
        (window.TimestampCombiner.OUTPUT_AT_LATEST, 8 * US),
        (window.TimestampCombiner.OUTPUT_AT_EARLIEST, 2 * US),
        (window.TimestampCombiner.OUTPUT_AT_EARLIEST_TRANSFORMED, 2 * US),
    ],
    ids=["eow", "latest", "earliest", "earliest_transformed"],
)
def test_a_count_window_pane_timestamp_follows_the_timestamp_combiner(runner: str, combiner: Any, ts_us: int) -> None:
    # Processing order is not timestamp order: the window spans [2, 8] whatever the order.
    stream = TestStream().add_elements([at("a", "x", 8), at("a", "y", 2), at("a", "z", 5)])
    run_panes(
        runner,
        stream,
        td.WindowInto(window.CountWindows(3), timestamp_combiner=combiner),
        [only("a", ["x", "y", "z"], PW(0, 2 * US, 8 * US + 1), ts_us)],
    )


def test_a_combine_over_count_windows_sums_each_window_and_is_not_lifted(runner: str) -> None:
    stream = TestStream().add_elements([at("a", v, v) for v in (1, 2, 3, 4, 5)])
    run_panes(
        runner,
        stream,
        td.WindowInto(window.CountWindows(2)),
        [
            only("a", 3, PW(0, 1 * US, 2 * US + 1), 2 * US),
            only("a", 7, PW(1, 3 * US, 4 * US + 1), 4 * US),
            only("a", 5, PW(2, 5 * US, 5 * US + 1), 5 * US),
        ],
        combine=sum,
    )


def test_count_windows_over_an_unbounded_stream_fire_before_the_end() -> None:
    # The panes of full windows come while the watermark is still low: the policy fires them.
    p = td.Pipeline(runner="direct")
    stream = TestStream().add_elements([at("a", 1, 1), at("a", 2, 2)]).advance_watermark_to(3).add_elements([at("a", 3, 3)])
    grouped = p | stream | td.WindowInto(window.CountWindows(2)) | td.GroupByKey()
    seen = grouped | td.Map(lambda kv, wm=td.DoFn.TimestampParam: (kv[1], wm.micros))
    assert_that(seen, equal_to([([1, 2], 2 * US), ([3], 3 * US)]))
    p.run().wait_until_finish()


def test_a_count_window_holds_the_output_watermark_at_its_earliest_element(runner: str) -> None:
    # a@1 waits in its window while the watermark moves to 50; held back at 1, the pane is stamped 1
    # (without the hold it would be behind the output watermark and be stamped there).
    stream = TestStream().add_elements([at("a", "x", 1)]).advance_watermark_to(50).add_elements([at("a", "y", 60)])
    run_panes(
        runner,
        stream,
        td.WindowInto(window.CountWindows(2), timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_EARLIEST),
        [only("a", ["x", "y"], PW(0, 1 * US, 60 * US + 1), 1 * US)],
    )


# -- delta windows -------------------------------------------------------------------------------
def gap(a: float, b: float) -> float:
    return abs(b - a)


def test_delta_windows_close_just_over_the_threshold_not_at_it(runner: str) -> None:
    values = [10.0, 11.0, 9.0, 11.000001, 5.0, 6.0]
    stream = TestStream().add_elements([at("s", v, i + 1) for i, v in enumerate(values)])
    run_panes(
        runner,
        stream,
        td.WindowInto(window.DeltaWindows(1.0, gap)),
        [
            # 11.0 and 9.0 are exactly 1.0 from 10.0: they stay; 11.000001 is just over and closes it.
            only("s", [10.0, 11.0, 9.0, 11.000001], PW(0, 1 * US, 4 * US + 1), 4 * US),
            # 5.0 opens the next window; 6.0 is at the threshold; the end of the input fires it.
            only("s", [5.0, 6.0], PW(1, 5 * US, 6 * US + 1), 6 * US),
        ],
    )


def test_delta_windows_measure_a_keys_first_window_from_initial(runner: str) -> None:
    stream = TestStream().add_elements(
        [at("a", 0.5, 1), at("b", 2.0, 2), at("a", 1.0, 3), at("a", 1.5, 4), at("b", 2.5, 5)]
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(window.DeltaWindows(1.0, gap, initial=0.0)),
        [
            # a: 0.5 and 1.0 are within 1.0 of initial 0.0; 1.5 is over: the window closes with it.
            only("a", [0.5, 1.0, 1.5], PW(0, 1 * US, 4 * US + 1), 4 * US),
            # b: 2.0 is over 1.0 from initial: a window of its own; 2.5 opens the next one.
            only("b", [2.0], PW(0, 2 * US, 2 * US + 1), 2 * US),
            only("b", [2.5], PW(1, 5 * US, 5 * US + 1), 5 * US),
        ],
    )


# -- evictors ----------------------------------------------------------------------------------
#: Two bundles of two elements into [0, 100): AfterCount(2) fires once after each, ACCUMULATING.
def _two_firings(values: list[Any], times: list[float]) -> TestStream:
    elements = [at("k", v, t) for v, t in zip(values, times)]
    return TestStream().add_elements(elements[:2]).add_elements(elements[2:])


def _evicting(evictor: Any, mode: Any = ACCUMULATING) -> td.WindowInto:
    return td.WindowInto(
        window.FixedWindows(100), trigger=trigger.Repeatedly(trigger.AfterCount(2)), accumulation_mode=mode, evictor=evictor
    )


W100 = W(0, 100)


def _early(values: Any, index: int, ts_us: int = 100 * US - 1) -> tuple[Any, ...]:
    return pane("k", values, W100, ts_us, index, EARLY, False, -1)


@pytest.mark.parametrize(
    "evictor, values, times, first, second",
    [
        # Before: the buffer keeps its last element, then the function sees it.
        (window.CountEvictor(1), [1, 2, 3, 4], [1, 2, 3, 4], [2], [4]),
        # After: the function sees everything; the buffer keeps its last element for the next pane.
        (window.CountEvictor(1, evict_after=True), [1, 2, 3, 4], [1, 2, 3, 4], [1, 2], [2, 3, 4]),
        # Before: elements at or before (latest - 1 s) leave: 1 and 1.5 stay at first (latest 1.5), only 4 then.
        (window.TimeEvictor(1), [1, 2, 3, 4], [1, 1.5, 3, 4], [1, 2], [4]),
        (window.TimeEvictor(1, evict_after=True), [1, 2, 3, 4], [1, 1.5, 3, 4], [1, 2], [1, 2, 3, 4]),
        # Before: elements 2 or more from the last one leave: 1 (exactly 2 from 3), then 6 (4 from 2).
        (window.DeltaEvictor(2, gap), [1, 3, 6, 2], [1, 2, 3, 4], [3], [3, 2]),
        (window.DeltaEvictor(2, gap, evict_after=True), [1, 3, 6, 2], [1, 2, 3, 4], [1, 3], [3, 6, 2]),
    ],
    ids=["count-before", "count-after", "time-before", "time-after", "delta-before", "delta-after"],
)
def test_each_evictor_before_and_after_the_function_with_an_accumulating_trigger(
    runner: str, evictor: Any, values: list[Any], times: list[float], first: list[Any], second: list[Any]
) -> None:
    run_panes(runner, _two_firings(values, times), _evicting(evictor), [_early(first, 0), _early(second, 1)])


def test_an_evictor_after_the_function_changes_nothing_when_panes_discard(runner: str) -> None:
    # DISCARDING empties the buffer at each firing: what the evictor leaves afterwards is gone anyway.
    run_panes(
        runner,
        _two_firings([1, 2, 3, 4], [1, 2, 3, 4]),
        _evicting(window.CountEvictor(1, evict_after=True), DISCARDING),
        [_early([1, 2], 0), _early([3, 4], 1)],
    )


def test_an_evictor_with_a_combine_and_the_default_trigger(runner: str) -> None:
    # One on-time pane per window: the sum of the last two elements in processing order.
    stream = TestStream().add_elements([at("k", 5, 1), at("k", 1, 2), at("k", 7, 3), at("k", 100, 12), at("j", 3, 4)])
    run_panes(
        runner,
        stream,
        td.WindowInto(window.FixedWindows(10), evictor=window.CountEvictor(2)),
        [
            pane("k", 8, W(0, 10), 10 * US - 1, 0, ON_TIME, True, 0),
            pane("k", 100, W(10, 20), 20 * US - 1, 0, ON_TIME, True, 0),
            pane("j", 3, W(0, 10), 10 * US - 1, 0, ON_TIME, True, 0),
        ],
        combine=sum,
    )


@pytest.mark.parametrize("runner_name", ["direct", "microbatch"])
def test_an_evictor_keeps_a_combine_off_the_columnar_path(runner_name: str) -> None:
    # Read(Arrow pairs) -> WindowInto -> CombinePerKey(sum) runs on Arrow kernels on the micro-batch
    # runner, which would sum every element: with an evictor it must go through the reducer.
    import pyarrow as pa

    from tidal.io.arrowio import ReadArrow

    table = pa.table({"k": ["a", "a", "a", "b"], "v": [5, 1, 7, 2], "t": [1, 2, 3, 4]})
    p = td.Pipeline(runner=runner_name)
    sums = (
        p
        | ReadArrow(table, key="k", value="v", timestamp="t")
        | td.WindowInto(window.FixedWindows(10), evictor=window.CountEvictor(2))
        | td.CombinePerKey(sum)
    )
    assert_that(sums, equal_to([("a", 8), ("b", 2)]))
    p.run().wait_until_finish()


def test_an_evictor_on_sliding_count_windows_trims_the_shared_buffer(runner: str) -> None:
    # As Flink: the evictor runs on the key's buffer, so what it removes is gone for the next window too.
    stream = TestStream().add_elements([at("a", v, v) for v in (1, 2, 3, 4)])
    run_panes(
        runner,
        stream,
        td.WindowInto(window.CountWindows(3, every=2), evictor=window.CountEvictor(1, evict_after=True)),
        [
            only("a", [1, 2], PW(0, 1 * US, 2 * US + 1), 2 * US),  # then the buffer keeps [2]
            only("a", [2, 3, 4], PW(1, 2 * US, 4 * US + 1), 4 * US),
        ],
    )


# -- planning ----------------------------------------------------------------------------------
def test_the_plan_says_why_a_combine_under_an_evictor_or_count_windows_is_not_lifted() -> None:
    p = td.Pipeline()
    pairs = p | td.Create([("a", 1)])
    _ = pairs | "Evicting" >> td.WindowInto(window.FixedWindows(10), evictor=window.CountEvictor(2)) | "Sum" >> td.CombinePerKey(sum)
    _ = pairs | "Counted" >> td.WindowInto(window.CountWindows(2)) | "CountSum" >> td.CombinePerKey(sum)
    plan = build_plan(p.graph())
    assert plan.lifted == set()
    assert plan.describe() == (
        "stage 0: Create -> Evicting -> Counted\n"
        "stage 1: Sum (not lifted: the evictor CountEvictor(2) needs every element of a window when it fires)\n"
        "stage 2: CountSum (not lifted: CountWindows(2) assigns windows per key in processing order, after the shuffle)"
    )


# -- checkpoints ---------------------------------------------------------------------------------
def _bundle(elements: list[tuple[Any, float]]) -> list[Any]:
    return [(kv, round(t * US), (window.GlobalWindow(),), None) for kv, t in elements]


@pytest.mark.parametrize("windowfn", [window.CountWindows(3, every=2), window.DeltaWindows(1.0, gap)], ids=["count", "delta"])
def test_policy_window_state_is_in_the_operator_snapshot(windowfn: Any) -> None:
    strategy = td.WindowInto(windowfn).windowing()
    first_half = [(("a", 1.0), 1), (("b", 5.0), 2), (("a", 1.5), 3)]
    second_half = [(("a", 2.5), 4), (("b", 5.5), 5), (("a", 2.6), 6), (("b", 7.0), 7)]

    def fresh(out: list[Any]) -> GroupByKeyOperator:
        op = GroupByKeyOperator("Group", td.GroupByKey(), strategy)
        op.key_groups = KeyGroups()
        op.add_receiver("out", out.extend)
        return op

    expected: list[Any] = []
    whole = fresh(expected)
    whole.process(_bundle(first_half + second_half))
    whole.advance(MAX_TIMESTAMP_US, [], 0)
    out: list[Any] = []
    before = fresh(out)
    before.process(_bundle(first_half))
    snap = pickle.loads(pickle.dumps(before.snapshot()))
    after = fresh(out)
    after.restore(snap)
    after.process(_bundle(second_half))
    after.advance(MAX_TIMESTAMP_US, [], 0)
    assert len(expected) >= 3 and out == expected


def test_policy_window_state_moves_by_key_group_when_the_parallelism_changes() -> None:
    # Two old instances each held one key; one new instance takes both key groups and goes on.
    strategy = td.WindowInto(window.CountWindows(3)).windowing()

    def fresh(out: list[Any]) -> GroupByKeyOperator:
        op = GroupByKeyOperator("Group", td.GroupByKey(), strategy)
        op.key_groups = KeyGroups()
        op.add_receiver("out", out.extend)
        return op

    old_a, old_b = fresh([]), fresh([])
    old_a.process(_bundle([(("a", 1), 1), (("a", 2), 2)]))
    old_b.process(_bundle([(("b", 10), 3)]))
    old_b.advance(4 * US, [], 0)
    snaps = [pickle.loads(pickle.dumps(op.snapshot())) for op in (old_a, old_b)]
    out: list[Any] = []
    new = fresh(out)
    new.restore(new.rescale_snapshot(snaps, [True, False], range(KeyGroups().max_parallelism)))
    new.process(_bundle([(("a", 3), 5), (("b", 20), 6), (("b", 30), 7)]))
    new.advance(MAX_TIMESTAMP_US, [], 0)
    assert [(kv, w) for kv, _t, (w,), _p in out] == [
        (("a", [1, 2, 3]), PW(0, 1 * US, 5 * US + 1)),
        (("b", [10, 20, 30]), PW(0, 3 * US, 7 * US + 1)),
    ]


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: window.CountWindows(0), "CountWindows size must be a positive whole number, got 0"),
        (lambda: window.CountWindows(-2), "CountWindows size must be a positive whole number, got -2"),
        (lambda: window.CountWindows(2.5), "CountWindows size must be a positive whole number, got 2.5"),
        (lambda: window.CountWindows(3, every=0), "CountWindows every must be a positive whole number, got 0"),
        (lambda: window.DeltaWindows(0, gap), "DeltaWindows threshold must be a positive number, got 0"),
        (lambda: window.DeltaWindows(-0.5, gap), "DeltaWindows threshold must be a positive number, got -0.5"),
        (lambda: window.CountEvictor(0), "CountEvictor max_count must be a positive whole number, got 0"),
        (lambda: window.TimeEvictor(0), "TimeEvictor window_size must be positive, got 0"),
        (lambda: window.TimeEvictor(-1), "TimeEvictor window_size must be positive, got -1"),
        (lambda: window.DeltaEvictor(0, gap), "DeltaEvictor threshold must be a positive number, got 0"),
    ],
)
def test_a_non_positive_count_threshold_or_size_is_refused(build: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == message


def test_a_distance_fn_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"DeltaWindows distance_fn must be a callable \(first, current\) -> float, got 3"):
        window.DeltaWindows(1, 3)  # type: ignore[arg-type]


def bad_distance(a: float, b: float) -> float:
    if b == 13.0:
        raise ValueError("no distance to 13")
    return abs(b - a)


def test_a_delta_windows_distance_fn_that_raises_fails_the_step_naming_the_element(runner: str) -> None:
    p = td.Pipeline(runner=runner)
    stream = TestStream().add_elements([at("s", 10.0, 1), at("s", 13.0, 2)])
    _ = p | stream | td.WindowInto(window.DeltaWindows(1.0, bad_distance)) | "Group" >> td.GroupByKey()
    with pytest.raises(td.PipelineExecutionError) as info:
        p.run().wait_until_finish()
    assert info.value.step == "Group"
    assert str(info.value) == "step 'Group': bad_distance raised ValueError: no distance to 13 on element ('s', 13.0)"


@pytest.mark.parametrize("triggered", [False, True], ids=["default-trigger", "after-count"])
def test_a_delta_evictors_distance_fn_that_raises_fails_the_step_naming_the_element(runner: str, triggered: bool) -> None:
    p = td.Pipeline(runner=runner)
    stream = TestStream().add_elements([at("s", 10.0, 1), at("s", 13.0, 2), at("s", 11.0, 3)])
    evictor = window.DeltaEvictor(5, lambda a, b: bad_distance(b, a))
    if triggered:  # the pane fires from the trigger, not at the end of the window
        into = td.WindowInto(window.FixedWindows(10), trigger=trigger.AfterCount(3), accumulation_mode=DISCARDING, evictor=evictor)
    else:
        into = td.WindowInto(window.FixedWindows(10), evictor=evictor)
    _ = p | stream | into | "Group" >> td.GroupByKey()
    with pytest.raises(td.PipelineExecutionError) as info:
        p.run().wait_until_finish()
    assert info.value.step == "Group"
    assert str(info.value) == "step 'Group': <lambda> raised ValueError: no distance to 13 on element 13.0"


def test_an_evictor_with_a_merging_windowfn_is_refused_naming_the_step() -> None:
    p = td.Pipeline()
    with pytest.raises(PipelineError) as info:
        _ = p | td.Create([("a", 1)]) | "Sessions" >> td.WindowInto(window.Sessions(10), evictor=window.CountEvictor(2))
    assert str(info.value) == (
        "step 'Sessions': an evictor (CountEvictor(2)) cannot be used with the merging WindowFn Sessions(10): "
        "a merged window has no single order of its elements to evict by; use a non-merging WindowFn "
        "(FixedWindows, SlidingWindows, CountWindows, ...)"
    )


def test_a_trigger_on_policy_windows_is_refused_naming_the_step() -> None:
    p = td.Pipeline()
    with pytest.raises(PipelineError) as info:
        _ = p | td.Create([("a", 1)]) | "Count" >> td.WindowInto(
            window.CountWindows(2), trigger=trigger.AfterCount(1), accumulation_mode=DISCARDING
        )
    assert str(info.value) == (
        "step 'Count': CountWindows(2) fires each window once, when its policy closes it; it takes no trigger, "
        "accumulation_mode or allowed_lateness (an evictor and a timestamp_combiner apply)"
    )


def test_an_evictor_that_is_not_one_of_the_three_is_refused() -> None:
    with pytest.raises(TypeError, match="WindowInto evictor must be a CountEvictor, TimeEvictor or DeltaEvictor, got 3"):
        td.WindowInto(window.FixedWindows(10), evictor=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "element, message",
    [
        (7, "step 'Group': GroupByKey and CombinePerKey need (key, value) pairs; got 7."),
        ((["a"], 1), "step 'Group': the key ['a'] is not hashable (list); keys must be hashable values"),
    ],
    ids=["not-a-pair", "unhashable-key"],
)
def test_bad_elements_for_count_windows_fail_the_step(element: Any, message: str) -> None:
    p = td.Pipeline(runner="direct")
    _ = p | TestStream().add_elements([element]) | td.WindowInto(window.CountWindows(2)) | "Group" >> td.GroupByKey()
    with pytest.raises(td.PipelineExecutionError) as info:
        p.run().wait_until_finish()
    assert info.value.step == "Group"
    assert str(info.value).startswith(message)
