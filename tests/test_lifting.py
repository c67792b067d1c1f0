"""Combiner lifting: a CombinePerKey combines partially before the shuffle when it is exact."""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.runners.core.plan import build_plan, can_lift
from tidal.runners.direct import DirectRunner
from tidal.testing import TestStream, assert_that, equal_to


class CountingSum(td.CombineFn):
    """sum, counting every call of each method in a Metrics counter of its step."""

    def create_accumulator(self) -> int:
        td.Metrics.counter("calls", "create_accumulator").inc()
        return 0

    def add_input(self, acc: int, x: int) -> int:
        td.Metrics.counter("calls", "add_input").inc()
        return acc + x

    def merge_accumulators(self, accs: Iterable[int]) -> int:
        td.Metrics.counter("calls", "merge_accumulators").inc()
        return sum(accs)

    def extract_output(self, acc: int) -> int:
        td.Metrics.counter("calls", "extract_output").inc()
        return acc


def calls(result: td.PipelineResult) -> dict[tuple[str, str], int]:
    """{(step, method): number of calls}."""
    found = result.metrics().query(td.MetricsFilter().with_namespace("calls"))["counters"]
    return {(c.key.step, c.key.metric.name): c.committed for c in found}


def node(p: td.Pipeline, label: str) -> Any:
    return next(n for n in p.graph().primitives if n.full_label == label)


PAIRS = [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)]


def test_plan_lifts_a_combine_per_key_in_the_global_window() -> None:
    p = td.Pipeline()
    _ = p | td.Create(PAIRS) | "Identity" >> td.Map(lambda kv: kv) | "Sum" >> td.CombinePerKey(sum)
    plan = build_plan(p.graph())
    assert plan.lifted == {node(p, "Sum")}
    assert plan.describe() == (
        "stage 0: Create -> Identity -> [partial Sum]\n"
        "stage 1: Sum"
    )
    assert build_plan(p.graph(), lift_combiners=False).lifted == set()


def test_plan_lifts_under_fixed_and_sliding_windows() -> None:
    for windowfn in (window.FixedWindows(10), window.SlidingWindows(10, 5)):
        p = td.Pipeline()
        _ = p | td.Create(PAIRS) | td.WindowInto(windowfn) | "Sum" >> td.CombinePerKey(sum)
        assert build_plan(p.graph()).lifted == {node(p, "Sum")}


def test_plan_does_not_lift_under_sessions() -> None:
    p = td.Pipeline()
    _ = p | td.Create(PAIRS) | td.WindowInto(window.Sessions(10)) | "Sum" >> td.CombinePerKey(sum)
    plan = build_plan(p.graph())
    assert plan.lifted == set()
    assert all(not stage.precombines for stage in plan.stages)


def test_plan_does_not_lift_under_a_non_default_trigger_or_timestamp_combiner() -> None:
    p = td.Pipeline()
    pairs = p | td.Create(PAIRS)
    _ = (
        pairs
        | "Triggered" >> td.WindowInto(
            window.FixedWindows(10),
            trigger=td.trigger.AfterCount(2),
            accumulation_mode=td.trigger.AccumulationMode.DISCARDING,
        )
        | "SumTriggered" >> td.CombinePerKey(sum)
    )
    _ = (
        pairs
        | "Earliest" >> td.WindowInto(window.FixedWindows(10), timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_EARLIEST)
        | "SumEarliest" >> td.CombinePerKey(sum)
    )
    assert build_plan(p.graph()).lifted == set()
    assert not can_lift(node(p, "SumTriggered").inputs[0].windowing)
    assert not can_lift(node(p, "SumEarliest").inputs[0].windowing)


def test_lifted_combine_adds_inputs_before_the_shuffle() -> None:
    p = td.Pipeline()
    out = p | td.Create(PAIRS) | "Sum" >> td.CombinePerKey(CountingSum())
    assert_that(out, equal_to([("a", 8), ("b", 7)]))
    result = p.run()
    assert calls(result) == {
        # One accumulator per key, built before the shuffle...
        ("Sum/Precombine", "create_accumulator"): 2,
        ("Sum/Precombine", "add_input"): 5,
        # ...and after it only the output is extracted.
        ("Sum", "extract_output"): 2,
    }


def test_unlifted_combine_adds_inputs_after_the_shuffle() -> None:
    p = td.Pipeline(runner=DirectRunner(lift_combiners=False))
    out = p | td.Create(PAIRS) | "Sum" >> td.CombinePerKey(CountingSum())
    assert_that(out, equal_to([("a", 8), ("b", 7)]))
    result = p.run()
    assert calls(result) == {
        ("Sum", "create_accumulator"): 2,
        ("Sum", "add_input"): 5,
        ("Sum", "extract_output"): 2,
    }


def test_partial_accumulators_are_merged_after_the_shuffle() -> None:
    # Each watermark advance flushes the partial accumulators, so the same key
    # and window reach the combine step as several partials that must be merged.
    stream = (
        TestStream()
        .add_elements([window.TimestampedValue(("k", 1), 1), window.TimestampedValue(("k", 2), 2)])
        .advance_watermark_to(10)
        .add_elements([window.TimestampedValue(("k", 3), 11)])
        .advance_watermark_to(20)
        .add_elements([window.TimestampedValue(("k", 4), 21), window.TimestampedValue(("j", 5), 22)])
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline()
    out = p | stream | td.WindowInto(window.FixedWindows(100)) | "Sum" >> td.CombinePerKey(CountingSum())
    assert_that(out, equal_to([("k", 10), ("j", 5)]))
    assert build_plan(p.graph()).lifted == {node(p, "Sum")}
    result = p.run()
    result.wait_until_finish()
    counts = calls(result)
    assert counts[("Sum/Precombine", "add_input")] == 5
    assert counts[("Sum/Precombine", "create_accumulator")] == 4  # k three times, j once
    assert counts[("Sum", "merge_accumulators")] == 2  # k's second and third partials
    assert counts[("Sum", "extract_output")] == 2
    assert ("Sum", "add_input") not in counts


@pytest.mark.parametrize(
    "fn, expected",
    [
        (sum, [("a", 8), ("b", 7)]),
        (max, [("a", 4), ("b", 5)]),
        (min, [("a", 1), ("b", 2)]),
        (lambda vs: sum(vs) * 1, [("a", 8), ("b", 7)]),
    ],
    ids=["sum", "max", "min", "lambda"],
)
def test_lifted_and_unlifted_results_are_identical(fn: Any, expected: list[Any]) -> None:
    for runner in (DirectRunner(bundle_size=2), DirectRunner(bundle_size=2, lift_combiners=False)):
        with td.Pipeline(runner=runner) as p:
            assert_that(p | td.Create(PAIRS) | td.CombinePerKey(fn), equal_to(expected))


def test_lifted_and_unlifted_results_are_identical_for_the_standard_combiners() -> None:
    values = [(k, v) for k in "abc" for v in range(20)]
    for lift in (True, False):
        with td.Pipeline(runner=DirectRunner(bundle_size=7, lift_combiners=lift)) as p:
            pairs = p | td.Create(values)
            assert_that(pairs | td.combiners.Count.PerKey(), equal_to([(k, 20) for k in "abc"]), label="count")
            assert_that(pairs | td.combiners.Mean.PerKey(), equal_to([(k, 9.5) for k in "abc"]), label="mean")
            assert_that(pairs | td.combiners.Top.PerKey(2), equal_to([(k, [19, 18]) for k in "abc"]), label="top")
            assert_that(
                pairs | td.combiners.Count.Globally(), equal_to([60]), label="count globally"
            )


def test_lifted_and_unlifted_results_are_identical_in_fixed_windows() -> None:
    stamped = [window.TimestampedValue((k, t), t) for k in "ab" for t in range(0, 30, 3)]
    for lift in (True, False):
        with td.Pipeline(runner=DirectRunner(lift_combiners=lift)) as p:
            out = p | td.Create(stamped) | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)
            assert_that(out, equal_to([(k, s) for k in "ab" for s in (0 + 3 + 6 + 9, 12 + 15 + 18, 21 + 24 + 27)]))


def test_sessions_are_combined_after_the_shuffle() -> None:
    stamped = [window.TimestampedValue(("k", v), t) for v, t in [(1, 1), (2, 3), (3, 30), (4, 32)]]
    p = td.Pipeline()
    out = p | td.Create(stamped) | td.WindowInto(window.Sessions(5)) | "Sum" >> td.CombinePerKey(CountingSum())
    assert_that(out, equal_to([("k", 3), ("k", 7)]))
    result = p.run()
    counts = calls(result)
    assert not any(step.endswith("/Precombine") for step, _ in counts)
    assert counts[("Sum", "add_input")] == 4
    assert counts[("Sum", "extract_output")] == 2


# -- a property: every windowing, bundle size and lifting choice agrees with a reference --
def reference_sums(elements: list[tuple[str, int, int]], windowfn: Any) -> list[tuple[Any, Any]]:
    """((key, sum), window) per key and window, computed directly in Python."""
    sums: dict[tuple[str, Any], int] = {}
    if isinstance(windowfn, window.Sessions):
        gap = windowfn.gap_size.micros // 1_000_000
        for key in {k for k, _, _ in elements}:
            points = sorted((t, v) for k, v, t in elements if k == key)
            start, end, total = points[0][0], points[0][0] + gap, 0
            for t, v in points:
                if t >= end:
                    sums[(key, window.IntervalWindow(start, end))] = total
                    start, total = t, 0
                end = max(end, t + gap)
                total += v
            sums[(key, window.IntervalWindow(start, end))] = total
    else:
        for key, value, t in elements:
            for w in windowfn.assign(window.AssignContext(td.Timestamp(t), value)):
                sums[(key, w)] = sums.get((key, w), 0) + value
    return [((k, s), w) for (k, w), s in sums.items()]


def test_grouping_agrees_with_a_reference_for_every_windowing() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    windowfns = [
        window.GlobalWindows(),
        window.FixedWindows(10),
        window.SlidingWindows(10, 5),
        window.Sessions(7),
    ]

    @hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
    @hypothesis.given(
        elements=st.lists(
            st.tuples(st.sampled_from("abc"), st.integers(-5, 5), st.integers(0, 60)), min_size=1, max_size=30
        ),
        windowfn=st.sampled_from(windowfns),
        bundle_size=st.sampled_from([1, 4, 1000]),
        lift=st.booleans(),
        group=st.booleans(),
    )
    def check(elements: list[tuple[str, int, int]], windowfn: Any, bundle_size: int, lift: bool, group: bool) -> None:
        expected = reference_sums(elements, windowfn)
        p = td.Pipeline(runner=DirectRunner(bundle_size=bundle_size, lift_combiners=lift))
        windowed = (
            p
            | td.Create([window.TimestampedValue((k, v), t) for k, v, t in elements])
            | td.WindowInto(windowfn)
        )
        if group:
            sums = windowed | td.GroupByKey() | td.MapTuple(lambda k, vs: (k, sum(vs)))
        else:
            sums = windowed | td.CombinePerKey(sum)
        reified = sums | td.ParDo(WithWindow())
        assert_that(reified, equal_to(expected))
        p.run()

    check()


class WithWindow(td.DoFn):
    def process(self, x: Any, w: Any = td.DoFn.WindowParam) -> Iterable[Any]:
        yield x, w
