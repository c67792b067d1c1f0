"""Windows, WindowFns, merging, timestamp combiners and event-time values.

Expected panes are derived by hand from SEMANTICS.md; a pane is ``(key,
values, window, timestamp µs, index, timing, is_first, is_last,
nonspeculative_index)``.
"""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.testing import TestStream, assert_that, equal_to
from tidal.trigger import AccumulationMode, PaneInfoTiming
from tidal.window import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    AssignContext,
    Duration,
    GlobalWindow,
    IntervalWindow,
    Timestamp,
    TimestampCombiner,
)

from pane_support import P, RecordPanes

TV = window.TimestampedValue
W = IntervalWindow
US = 1_000_000
ON_TIME, LATE = PaneInfoTiming.ON_TIME, PaneInfoTiming.LATE
GLOBAL_MAX_US = GlobalWindow().max_timestamp().micros


def eow(w: Any) -> int:
    """max_timestamp of a window, in µs."""
    return int(w.end.micros) - 1


def stamped(p: td.Pipeline, elements: list[tuple[str, int | float]], label: str = "Create") -> td.PCollection[Any]:
    """A batch PCollection of (key, t) stamped at t seconds."""
    return p | label >> td.Create(elements) | f"{label} stamp" >> td.Map(lambda kv: TV(kv, kv[1]))


def check_batch(elements: list[tuple[str, int | float]], into: td.WindowInto, expected: list[Any]) -> None:
    with td.Pipeline() as p:
        grouped = stamped(p, elements) | "Window" >> into | "Group" >> td.GroupByKey()
        assert_that(grouped | "Panes" >> td.ParDo(RecordPanes()), equal_to(expected))


def check_stream(stream: TestStream, into: td.WindowInto, expected: list[Any]) -> td.PipelineResult:
    p = td.Pipeline()
    grouped = p | "Src" >> stream | "Window" >> into | "Group" >> td.GroupByKey()
    assert_that(grouped | "Panes" >> td.ParDo(RecordPanes()), equal_to(expected))
    result = p.run()
    result.wait_until_finish()
    return result


def dropped(result: td.PipelineResult, step: str = "Group") -> int:
    query = td.MetricsFilter().with_name("dropped_due_to_lateness").with_step(step)
    return sum(c.committed for c in result.metrics().query(query)["counters"])


def assigned(windowfn: window.WindowFn, t: int | float) -> set[Any]:
    return set(windowfn.assign(AssignContext(Timestamp(t))))


# -- Timestamp, Duration and the bounds -------------------------------------------------
def test_timestamp_and_duration_arithmetic() -> None:
    assert Timestamp(10) + Duration(5) == Timestamp(15)
    assert Duration(5) + Timestamp(10) == Timestamp(15)
    assert Timestamp(10) + 2.5 == Timestamp(12.5)
    assert Timestamp(15) - Duration(5) == Timestamp(10)
    assert Timestamp(15) - Timestamp(10) == Duration(5)
    assert isinstance(Timestamp(15) - Timestamp(10), Duration)
    assert isinstance(Timestamp(15) - Duration(10), Timestamp)
    assert Duration(3) + Duration(4) == Duration(7)
    assert Duration(3) - Duration(4) == Duration(-1)
    assert -Duration(2) == Duration(-2)
    assert Timestamp(10.5).micros == 10_500_000
    assert Timestamp(micros=7).micros == 7
    assert Duration(0.000001).micros == 1
    assert Timestamp(3) == 3 and Timestamp(3) < 3.5 and Timestamp(3) > Timestamp(2.999999)
    assert Timestamp(1).predecessor().micros == 999_999
    assert Timestamp(1).successor().micros == 1_000_001
    assert float(Timestamp(2.25)) == 2.25 and Timestamp(2.25).seconds() == 2.25
    assert sorted([Timestamp(3), Timestamp(-1), Timestamp(2)]) == [Timestamp(-1), Timestamp(2), Timestamp(3)]
    with pytest.raises(TypeError):
        Timestamp(1) + Timestamp(2)  # type: ignore[operator]


def test_min_and_max_timestamp_bound_event_time() -> None:
    assert MIN_TIMESTAMP.micros == -(2**63)
    assert MAX_TIMESTAMP.micros == 2**63 - 1
    assert MIN_TIMESTAMP < Timestamp(0) < MAX_TIMESTAMP
    assert Timestamp(micros=2**63 - 1) == MAX_TIMESTAMP
    with pytest.raises(ValueError, match="outside"):
        Timestamp(micros=2**63)
    with pytest.raises(ValueError, match="outside"):
        Timestamp(10**13)  # 10^19 µs
    with pytest.raises(ValueError, match="outside"):
        Timestamp(-1e13)
    with pytest.raises(ValueError, match="outside"):
        TV("x", 10**13)
    with pytest.raises(ValueError, match="NaN"):
        Timestamp(float("nan"))


def test_global_window_ends_one_day_before_max_timestamp() -> None:
    gw = GlobalWindow()
    assert gw is GlobalWindow()
    assert gw.end == MAX_TIMESTAMP - Duration(86_400)
    assert gw.max_timestamp() == gw.end - Duration(micros=1)
    assert window.GlobalWindows().assign(AssignContext(Timestamp(5))) == [gw]


def test_interval_window_bounds() -> None:
    w = W(10, 20)
    assert w.start == Timestamp(10) and w.end == Timestamp(20)
    assert w.max_timestamp() == Timestamp(20) - Duration(micros=1)
    assert w == W(10.0, 20) and hash(w) == hash(W(10, 20))
    assert W(0, 10) < W(0, 20) < W(5, 15)
    assert W(0, 10).intersects(W(9, 12)) and not W(0, 10).intersects(W(10, 12))
    assert W(0, 10).union(W(5, 15)) == W(0, 15)


def test_a_timestamp_outside_the_bounds_is_an_error_naming_the_step() -> None:
    p = td.Pipeline()
    p | td.Create([1]) | "Stamp" >> td.Map(lambda x: TV(x, 1e13))
    with pytest.raises(td.UserCodeError) as info:
        p.run()
    message = str(info.value)
    assert message.startswith(
        "step 'Stamp': <lambda> raised ValueError: timestamp 10000000000000.0 s is outside [MIN_TIMESTAMP, MAX_TIMESTAMP]"
    )
    assert message.endswith("on element 1")


def test_a_windowed_value_outside_the_bounds_is_an_error_naming_the_step() -> None:
    class Emit(td.DoFn):
        def process(self, x: int) -> Iterable[Any]:
            yield td.WindowedValue(x, -1e13, [GlobalWindow()])

    p = td.Pipeline()
    p | td.Create([1]) | "Emit" >> td.ParDo(Emit())
    with pytest.raises(td.UserCodeError, match=r"^step 'Emit': process raised ValueError: timestamp -10000000000000.0 s is outside"):
        p.run()


# -- GlobalWindows ----------------------------------------------------------------------
def test_global_windows_one_pane_per_key_at_the_end_of_the_global_window() -> None:
    with td.Pipeline() as p:
        grouped = p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | td.GroupByKey()
        assert_that(
            grouped | td.ParDo(RecordPanes()),
            equal_to([P("a", [1, 3], GlobalWindow(), GLOBAL_MAX_US), P("b", [2], GlobalWindow(), GLOBAL_MAX_US)]),
        )


def test_elements_without_a_timestamp_are_at_min_timestamp_in_the_global_window() -> None:
    with td.Pipeline() as p:
        seen = p | td.Create(["x"]) | td.Map(lambda v, t=td.DoFn.TimestampParam, w=td.DoFn.WindowParam: (v, t, w))
        assert_that(seen, equal_to([("x", MIN_TIMESTAMP, GlobalWindow())]))


def test_window_into_global_windows_after_fixed_windows_regroups() -> None:
    with td.Pipeline() as p:
        grouped = (
            stamped(p, [("k", 1), ("k", 15)])
            | "Fixed" >> td.WindowInto(window.FixedWindows(10))
            | "Global" >> td.WindowInto(window.GlobalWindows())
            | td.GroupByKey()
        )
        assert_that(grouped | td.ParDo(RecordPanes()), equal_to([P("k", [1, 15], GlobalWindow(), GLOBAL_MAX_US)]))


# -- FixedWindows -----------------------------------------------------------------------
def test_fixed_windows_assignment() -> None:
    fixed = window.FixedWindows(10)
    assert assigned(fixed, 0) == {W(0, 10)}
    assert assigned(fixed, 9.999999) == {W(0, 10)}
    assert assigned(fixed, 10) == {W(10, 20)}
    assert assigned(fixed, -1) == {W(-10, 0)}
    shifted = window.FixedWindows(10, offset=3)  # start = t - ((t - 3) mod 10)
    assert assigned(shifted, 12) == {W(3, 13)}
    assert assigned(shifted, 3) == {W(3, 13)}
    assert assigned(shifted, 2) == {W(-7, 3)}
    assert assigned(shifted, 13) == {W(13, 23)}
    assert assigned(shifted, -8) == {W(-17, -7)}
    assert window.FixedWindows(10, offset=13) == shifted  # the offset is taken modulo the size
    assert window.FixedWindows(10, offset=Duration(3)) == shifted
    assert assigned(window.FixedWindows(0.5), 1.26) == {W(1, 1.5)}


def test_fixed_windows_reject_a_non_positive_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        window.FixedWindows(0)


def test_fixed_windows_with_offset_group_by_key_and_window() -> None:
    check_batch(
        [("a", 2), ("a", 3), ("a", 12), ("a", 13), ("b", 12), ("a", -8)],
        td.WindowInto(window.FixedWindows(10, offset=3)),
        [
            P("a", [-8], W(-17, -7), -7 * US - 1),
            P("a", [2], W(-7, 3), 3 * US - 1),
            P("a", [3, 12], W(3, 13), 13 * US - 1),
            P("b", [12], W(3, 13), 13 * US - 1),
            P("a", [13], W(13, 23), 23 * US - 1),
        ],
    )


# -- SlidingWindows ---------------------------------------------------------------------
def test_sliding_windows_assignment() -> None:
    sliding = window.SlidingWindows(10, 5)
    assert assigned(sliding, 12) == {W(10, 20), W(5, 15)}  # the example of SEMANTICS.md
    assert assigned(sliding, 10) == {W(10, 20), W(5, 15)}
    assert assigned(sliding, 9.5) == {W(5, 15), W(0, 10)}
    assert assigned(window.SlidingWindows(10, 5, offset=2), 12) == {W(12, 22), W(7, 17)}
    assert assigned(window.SlidingWindows(10, 3), 12) == {W(12, 22), W(9, 19), W(6, 16), W(3, 13)}
    assert assigned(window.SlidingWindows(10, 3), 13) == {W(12, 22), W(9, 19), W(6, 16)}
    # A period longer than the size leaves gaps: an element there is in no window.
    assert assigned(window.SlidingWindows(5, 10), 3) == {W(0, 5)}
    assert assigned(window.SlidingWindows(5, 10), 7) == set()


def test_sliding_windows_put_an_element_in_every_window_that_contains_it() -> None:
    check_batch(
        [("k", 7), ("k", 12)],
        td.WindowInto(window.SlidingWindows(10, 5)),
        [
            P("k", [7], W(0, 10), 10 * US - 1),
            P("k", [7, 12], W(5, 15), 15 * US - 1),
            P("k", [12], W(10, 20), 20 * US - 1),
        ],
    )


def test_sliding_windows_with_offset_in_a_dofn_see_one_window_each() -> None:
    with td.Pipeline() as p:
        seen = (
            stamped(p, [("k", 12)])
            | td.WindowInto(window.SlidingWindows(10, 5, offset=2))
            | td.Map(lambda kv, w=td.DoFn.WindowParam: (kv[1], w))
        )
        assert_that(seen, equal_to([(12, W(12, 22)), (12, W(7, 17))]))


# -- Sessions ---------------------------------------------------------------------------
def test_sessions_merge_overlapping_windows_per_key() -> None:
    check_batch(
        [("a", 1), ("a", 5), ("a", 20), ("b", 3), ("a", 14.5)],
        td.WindowInto(window.Sessions(10)),
        [
            # a: [1,11) [5,15) [14.5,24.5) [20,30) chain into one session.
            P("a", [1, 5, 14.5, 20], W(1, 30), 30 * US - 1),
            P("b", [3], W(3, 13), 13 * US - 1),
        ],
    )


def test_sessions_touching_windows_do_not_merge() -> None:
    check_batch(
        [("a", 0), ("a", 10)],
        td.WindowInto(window.Sessions(10)),
        [P("a", [0], W(0, 10), 10 * US - 1), P("a", [10], W(10, 20), 20 * US - 1)],
    )


def test_sessions_an_out_of_order_element_bridges_two_sessions_before_they_fire() -> None:
    stream = (
        TestStream()
        .add_elements([TV(("a", 0), 0), TV(("a", 15), 15)])  # [0,10) and [15,25)
        .add_elements([TV(("a", 7), 7)])  # [7,17) bridges them: [0,25)
        .advance_watermark_to_infinity()
    )
    check_stream(stream, td.WindowInto(window.Sessions(10)), [P("a", [0, 7, 15], W(0, 25), 25 * US - 1)])


@pytest.mark.parametrize("mode", [AccumulationMode.DISCARDING, AccumulationMode.ACCUMULATING], ids=["discarding", "accumulating"])
def test_sessions_a_late_element_bridges_two_fired_sessions(mode: AccumulationMode) -> None:
    stream = (
        TestStream()
        .add_elements([TV(("a", 0), 0), TV(("a", 15), 15)])
        .advance_watermark_to(30)  # both sessions fire on time
        .add_elements([TV(("a", 7), 7)])  # late: [7,17) bridges them into [0,25), behind the watermark
        .advance_watermark_to_infinity()
    )
    acc = mode is AccumulationMode.ACCUMULATING
    check_stream(
        stream,
        td.WindowInto(window.Sessions(10), accumulation_mode=mode, allowed_lateness=100),
        [
            P("a", [0], W(0, 10), 10 * US - 1, last=False),
            P("a", [15], W(15, 25), 25 * US - 1, last=False),
            # [0,25) is a new window: pane info does not survive a merge, so its first pane
            # has index 0 (is_first) and nonspeculative_index 0; it is LATE, since data fired it
            # behind the watermark. The elements (and, accumulating, the fired ones) do merge.
            P(
                "a",
                [0, 7, 15] if acc else [7],
                W(0, 25),
                25 * US - 1,
                index=0,
                timing=LATE,
                last=False,
                nonspec=0,
            ),
        ],
    )


def test_sessions_a_late_element_for_an_expired_session_is_dropped() -> None:
    stream = (
        TestStream()
        .add_elements([TV(("a", 0), 0)])
        .advance_watermark_to(30)
        .add_elements([TV(("a", 5), 5)])  # [5,15) expired (lateness 0)
        .advance_watermark_to_infinity()
    )
    result = check_stream(stream, td.WindowInto(window.Sessions(10)), [P("a", [0], W(0, 10), 10 * US - 1)])
    assert dropped(result) == 1


def test_sessions_with_output_at_earliest_merge_their_holds() -> None:
    check_batch(
        [("a", 5), ("a", 1), ("a", 30)],
        td.WindowInto(window.Sessions(10), timestamp_combiner=TimestampCombiner.OUTPUT_AT_EARLIEST),
        [P("a", [1, 5], W(1, 15), 1 * US), P("a", [30], W(30, 40), 30 * US)],
    )


# -- custom WindowFns -------------------------------------------------------------------
class ParityWindow(window.BoundedWindow):
    """The even or the odd values of a 10-second bucket."""

    parity: str

    def __init__(self, parity: str, end: int) -> None:
        super().__init__(end)
        object.__setattr__(self, "parity", parity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParityWindow) and (self.parity, self._end_us) == (other.parity, other._end_us)

    def __hash__(self) -> int:
        return hash((self.parity, self._end_us))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ParityWindow):
            return NotImplemented
        return (self._end_us, self.parity) < (other._end_us, other.parity)

    def __repr__(self) -> str:
        return f"ParityWindow({self.parity}, {self.end!r})"


class ParityWindows(window.NonMergingWindowFn):
    def assign(self, context: AssignContext) -> list[window.BoundedWindow]:
        _, value = context.element
        end = (int(context.timestamp) // 10 + 1) * 10
        return [ParityWindow("even" if value % 2 == 0 else "odd", end)]


def test_custom_window_fn_with_its_own_window_class() -> None:
    check_batch(
        [("k", 1), ("k", 2), ("k", 4), ("k", 13)],
        td.WindowInto(ParityWindows()),
        [
            P("k", [1], ParityWindow("odd", 10), 10 * US - 1),
            P("k", [2, 4], ParityWindow("even", 10), 10 * US - 1),
            P("k", [13], ParityWindow("odd", 20), 20 * US - 1),
        ],
    )


def test_custom_windows_fire_and_expire_with_the_watermark() -> None:
    stream = (
        TestStream()
        .add_elements([TV(("k", 1), 1), TV(("k", 12), 12)])
        .advance_watermark_to(10)  # both windows ending at 10 are done
        .add_elements([TV(("k", 3), 3)])  # late for ParityWindow("odd", 10): dropped
        .add_elements([TV(("k", 14), 14)])
        .advance_watermark_to_infinity()
    )
    result = check_stream(
        stream,
        td.WindowInto(ParityWindows()),
        [
            P("k", [1], ParityWindow("odd", 10), 10 * US - 1),
            P("k", [12, 14], ParityWindow("even", 20), 20 * US - 1),
        ],
    )
    assert dropped(result) == 1


class BucketWindows(window.WindowFn):
    """Each element opens [t, t+1); the windows that start in one 10-second bucket merge."""

    def assign(self, context: AssignContext) -> list[window.BoundedWindow]:
        t = context.timestamp
        return [IntervalWindow(t, t + 1)]

    def merge(self, merge_context: window.MergeContext) -> None:
        buckets: dict[int, list[IntervalWindow]] = {}
        for w in merge_context.windows:
            assert isinstance(w, IntervalWindow)
            buckets.setdefault(w.start.micros // (10 * US), []).append(w)
        for ws in buckets.values():
            if len(ws) > 1:
                start, end = min(w.start.micros for w in ws), max(w.end.micros for w in ws)
                merge_context.merge(ws, IntervalWindow.from_micros(start, end))


def test_custom_merging_window_fn_in_batch() -> None:
    assert BucketWindows().is_merging()
    check_batch(
        [("k", 1), ("k", 3), ("k", 5), ("k", 12), ("k", 14), ("k", 25), ("j", 2)],
        td.WindowInto(BucketWindows()),
        [
            P("k", [1, 3, 5], W(1, 6), 6 * US - 1),
            P("k", [12, 14], W(12, 15), 15 * US - 1),
            P("k", [25], W(25, 26), 26 * US - 1),
            P("j", [2], W(2, 3), 3 * US - 1),
        ],
    )


def test_custom_merging_window_fn_merges_across_bundles() -> None:
    stream = (
        TestStream()
        .add_elements([TV(("k", 1), 1)])
        .add_elements([TV(("k", 7), 7)])  # merges with [1,2): [1,8)
        .add_elements([TV(("k", 3), 3), TV(("k", 11), 11)])  # 3 joins [1,8); 11 is alone
        .advance_watermark_to_infinity()
    )
    check_stream(
        stream,
        td.WindowInto(BucketWindows(), timestamp_combiner=TimestampCombiner.OUTPUT_AT_LATEST),
        [P("k", [1, 3, 7], W(1, 8), 7 * US), P("k", [11], W(11, 12), 11 * US)],
    )


class MergesTwice(window.WindowFn):
    """Inconsistent: puts the first window into two merge results."""

    def assign(self, context: AssignContext) -> list[window.BoundedWindow]:
        return [IntervalWindow(context.timestamp, context.timestamp + 10)]

    def merge(self, merge_context: window.MergeContext) -> None:
        ws = sorted(merge_context.windows)
        if len(ws) > 1:
            merge_context.merge(ws, IntervalWindow(0, 100))
            merge_context.merge(ws[:1], IntervalWindow(0, 50))


class MergesAStranger(window.WindowFn):
    """Inconsistent: merges a window it was not given."""

    def assign(self, context: AssignContext) -> list[window.BoundedWindow]:
        return [IntervalWindow(context.timestamp, context.timestamp + 10)]

    def merge(self, merge_context: window.MergeContext) -> None:
        ws = sorted(merge_context.windows)
        merge_context.merge([*ws, IntervalWindow(500, 600)], IntervalWindow(0, 600))


@pytest.mark.parametrize(
    "windowfn, problem",
    [
        (MergesTwice(), r"is inconsistent: it merged the window IntervalWindow\(1, 11\) into more than one result"),
        (MergesAStranger(), r"merged IntervalWindow\(500, 600\), which is not one of the windows it was given"),
    ],
    ids=["twice", "stranger"],
)
def test_an_inconsistent_merging_window_fn_is_an_error_naming_the_step(windowfn: window.WindowFn, problem: str) -> None:
    p = td.Pipeline()
    stamped(p, [("k", 1), ("k", 2)]) | td.WindowInto(windowfn) | "Group" >> td.GroupByKey()
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Group': the merging WindowFn .*" + problem):
        p.run()


def test_a_merge_that_raises_is_an_error_naming_the_step() -> None:
    class Broken(BucketWindows):
        def merge(self, merge_context: window.MergeContext) -> None:
            raise RuntimeError("no merging today")

    p = td.Pipeline()
    stamped(p, [("k", 1), ("k", 2)]) | td.WindowInto(Broken()) | "Group" >> td.GroupByKey()
    with pytest.raises(td.UserCodeError, match=r"^step 'Group': merge raised RuntimeError: no merging today"):
        p.run()


# -- re-stamping ------------------------------------------------------------------------
def test_a_re_stamped_element_is_re_assigned_by_the_input_window_fn() -> None:
    with td.Pipeline() as p:
        moved = (
            stamped(p, [("k", 3)])
            | td.WindowInto(window.FixedWindows(10))
            | "Restamp" >> td.Map(lambda kv: TV(kv, 15))
            | td.Map(lambda kv, t=td.DoFn.TimestampParam, w=td.DoFn.WindowParam: (kv, t, w))
        )
        assert_that(moved, equal_to([(("k", 3), Timestamp(15), W(10, 20))]))


# -- timestamp combiners ----------------------------------------------------------------
class ShiftedFixedWindows(window.FixedWindows):
    """FixedWindows whose outputs are stamped no earlier than 4 s into the window."""

    def get_transformed_output_time(self, w: Any, input_timestamp: Timestamp) -> Timestamp:
        return max(input_timestamp, w.start + Duration(4))


def test_instances_of_a_window_fn_subclass_with_equal_parameters_are_equal() -> None:
    assert ShiftedFixedWindows(10) == ShiftedFixedWindows(10)
    assert ShiftedFixedWindows(10) != window.FixedWindows(10)
    with td.Pipeline() as p:
        a = p | "A" >> td.Create([1]) | "Window A" >> td.WindowInto(ShiftedFixedWindows(10))
        b = p | "B" >> td.Create([2]) | "Window B" >> td.WindowInto(ShiftedFixedWindows(10))
        assert_that((a, b) | td.Flatten(), equal_to([1, 2]))


@pytest.mark.parametrize(
    "combiner, first_us, second_us",
    [
        (TimestampCombiner.OUTPUT_AT_EOW, 10 * US - 1, 20 * US - 1),
        (TimestampCombiner.OUTPUT_AT_EARLIEST, 3 * US, 13 * US),
        (TimestampCombiner.OUTPUT_AT_LATEST, 7 * US, 13 * US),
        # min over inputs of max(t, start + 4): min(4, 7, 5) and max(13, 14)
        (TimestampCombiner.OUTPUT_AT_EARLIEST_TRANSFORMED, 4 * US, 14 * US),
    ],
    ids=lambda c: getattr(c, "name", ""),
)
def test_timestamp_combiners(combiner: TimestampCombiner, first_us: int, second_us: int) -> None:
    check_batch(
        [("k", 3), ("k", 7), ("k", 5), ("k", 13)],
        td.WindowInto(ShiftedFixedWindows(10), timestamp_combiner=combiner),
        [P("k", [3, 5, 7], W(0, 10), first_us), P("k", [13], W(10, 20), second_us)],
    )


@pytest.mark.parametrize(
    "combiner, ts_us",
    [
        (TimestampCombiner.OUTPUT_AT_EOW, 17 * US - 1),
        (TimestampCombiner.OUTPUT_AT_EARLIEST, 3 * US),
        (TimestampCombiner.OUTPUT_AT_LATEST, 7 * US),
        (TimestampCombiner.OUTPUT_AT_EARLIEST_TRANSFORMED, 3 * US),
    ],
    ids=lambda c: getattr(c, "name", ""),
)
def test_timestamp_combiners_on_sessions_with_combine_per_key(combiner: TimestampCombiner, ts_us: int) -> None:
    with td.Pipeline() as p:
        sums = (
            p
            | td.Create([3, 7, 5])
            | td.Map(lambda t: TV(("k", t), t))
            | td.WindowInto(window.Sessions(10), timestamp_combiner=combiner)
            | td.CombinePerKey(sum)
        )
        assert_that(sums | td.ParDo(RecordPanes()), equal_to([P("k", 15, W(3, 17), ts_us)]))
