"""Cases for Flink's windowing: count windows, delta windows, evictors and the windowed join.

Policy windows count or compare a key's elements in the order the grouping
step processes them: the cases feed them from a TestStream, which every
runner reads in one worker, so that order is the stream's everywhere.
"""

from __future__ import annotations

from typing import Any

import tidal as td
from tidal import trigger as tr
from tidal import window
from tidal.capability_matrix.case import CHECKPOINT_RESTORE, CaseContext, ExpectedError, W, case, early, eow, on_time
from tidal.capability_matrix.cases.beyond import _stepped_input, _ValueAtLeast
from tidal.model.time import Timestamp
from tidal.model.window import TimestampedValue as TV
from tidal.testing import TestStream
from tidal.transforms.join import WindowedJoin

_FULL = ("value", "window", "timestamp", "pane")
_ONLY = on_time(0, last=True)


def _pw(index: int, first: float, last: float) -> window.PolicyWindow:
    """The key's ``index``-th policy window, spanning timestamps ``first`` to ``last`` (seconds)."""
    return window.PolicyWindow(index, first, last)


def _stream(*elements: tuple[str, Any, float]) -> TestStream:
    return TestStream().add_elements([TV((k, v), t) for k, v, t in elements]).advance_watermark_to_infinity()


def _gap(a: float, b: float) -> float:
    return abs(b - a)


# -- Count windows ----------------------------------------------------------------------------
@case("count_windows.tumbling_per_key", "Count windows", observe=_FULL, expected=[
    (("a", [1, 2]), _pw(0, 1, 3), Timestamp(3), _ONLY),
    (("a", [3]), _pw(1, 4, 4), Timestamp(4), _ONLY),
    (("b", [10, 20]), _pw(0, 2, 5), Timestamp(5), _ONLY),
])
def count_tumbling(p: td.Pipeline) -> Any:
    """CountWindows(2): each key's elements in runs of two; the partial last run fires at the end of the input."""
    stream = _stream(("a", 1, 1), ("b", 10, 2), ("a", 2, 3), ("a", 3, 4), ("b", 20, 5))
    return p | stream | td.WindowInto(window.CountWindows(2)) | "Group" >> td.GroupByKey()


@case("count_windows.sliding", "Count windows", observe=_FULL, expected=[
    (("a", [1, 2]), _pw(0, 1, 2), Timestamp(2), _ONLY),
    (("a", [2, 3, 4]), _pw(1, 2, 4), Timestamp(4), _ONLY),
    (("a", [3, 4, 5]), _pw(2, 3, 5), Timestamp(5), _ONLY),
])
def count_sliding(p: td.Pipeline) -> Any:
    """CountWindows(3, every=2): after every second element of a key, its last three (as Flink's countWindow(3, 2))."""
    stream = _stream(*[("a", v, v) for v in (1, 2, 3, 4, 5)])
    return p | stream | td.WindowInto(window.CountWindows(3, every=2)) | "Group" >> td.GroupByKey()


@case("count_windows.combine_earliest", "Count windows", observe=("value", "timestamp"), expected=[
    (("a", 11), Timestamp(2)), (("a", 4), Timestamp(1)),
])
def count_combine(p: td.Pipeline) -> Any:
    """A CombinePerKey over CountWindows(2) (not lifted), pane timestamps by OUTPUT_AT_EARLIEST."""
    stream = _stream(("a", 5, 3), ("a", 6, 2), ("a", 4, 1))
    into = td.WindowInto(window.CountWindows(2), timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_EARLIEST)
    return p | stream | into | "Sum" >> td.CombinePerKey(sum)


@case("count_windows.non_positive_size", "Count windows",
      error=ExpectedError(ValueError, "CountWindows size must be a positive whole number, got 0"))
def count_bad_size(p: td.Pipeline) -> Any:
    """A count of 0 is refused with a message that names the parameter and the value."""
    return p | td.Create([("a", 1)]) | td.WindowInto(window.CountWindows(0))


def _count_windows_of_stepped_input() -> list[Any]:
    # _stepped_input: value v of key k<v % 2> at 10 * (v // 4) + v % 4 seconds, v = 0 .. 23.
    out = []
    for key in (0, 1):
        values = [v for v in range(24) if v % 2 == key]
        for index in range(4):
            run = values[3 * index : 3 * index + 3]
            times = [10 * (v // 4) + v % 4 for v in run]
            out.append(((f"k{key}", run), _pw(index, times[0], times[-1])))
    return out


@case("exactly_once.count_windows_stream", "Exactly-once after failure", observe=("value", "window"),
      expected=_count_windows_of_stepped_input(), requires=(CHECKPOINT_RESTORE,),
      idempotent_key=lambda r: (r[0][0], r[1].index))
def eo_count_windows(p: td.Pipeline, ctx: CaseContext) -> Any:
    """Count windows across a crash after a checkpoint: each key's buffer, count and window index are in the
    checkpoint, so after the restore every window of three holds the right elements and fires once."""
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(9))
    return _stepped_input(p, ctx) | "Crash" >> td.ParDo(crash) | td.WindowInto(window.CountWindows(3)) | "Group" >> td.GroupByKey()


# -- Delta windows ------------------------------------------------------------------------------
@case("delta_windows.threshold_boundary", "Delta (data-driven) windows", observe=_FULL, expected=[
    (("s", [10.0, 11.0, 11.000001]), _pw(0, 1, 3), Timestamp(3), _ONLY),
    (("s", [5.0, 6.0]), _pw(1, 4, 5), Timestamp(5), _ONLY),
])
def delta_boundary(p: td.Pipeline) -> Any:
    """DeltaWindows(1.0, |b - a|): 11.0 is at the threshold and stays; 11.000001 is just over and closes the window."""
    stream = _stream(("s", 10.0, 1), ("s", 11.0, 2), ("s", 11.000001, 3), ("s", 5.0, 4), ("s", 6.0, 5))
    return p | stream | td.WindowInto(window.DeltaWindows(1.0, _gap)) | "Group" >> td.GroupByKey()


@case("delta_windows.initial_value", "Delta (data-driven) windows", observe=("value", "window"), expected=[
    (("a", [0.5, 1.0, 1.5]), _pw(0, 1, 3)), (("b", [2.0]), _pw(0, 4, 4)),
])
def delta_initial(p: td.Pipeline) -> Any:
    """With initial=0.0 a key's first window measures from 0.0: b's first value is already over the threshold."""
    stream = _stream(("a", 0.5, 1), ("a", 1.0, 2), ("a", 1.5, 3), ("b", 2.0, 4))
    return p | stream | td.WindowInto(window.DeltaWindows(1.0, _gap, initial=0.0)) | "Group" >> td.GroupByKey()


def _failing_distance(a: float, b: float) -> float:
    if b == 13.0:
        raise ValueError("no distance to 13")
    return abs(b - a)


@case("delta_windows.distance_fn_raises", "Delta (data-driven) windows",
      error=ExpectedError(td.PipelineExecutionError, "step 'Group'",
                          also=("_failing_distance raised ValueError: no distance to 13", "on element ('s', 13.0)")))
def delta_raises(p: td.Pipeline) -> Any:
    """A distance function that raises fails the job with the step, the function and the element."""
    stream = _stream(("s", 10.0, 1), ("s", 13.0, 2))
    return p | stream | td.WindowInto(window.DeltaWindows(1.0, _failing_distance)) | "Group" >> td.GroupByKey()


# -- Evictors ---------------------------------------------------------------------------------------
def _two_firings(*elements: tuple[Any, float]) -> TestStream:
    items = [TV(("k", v), t) for v, t in elements]
    return TestStream().add_elements(items[:2]).add_elements(items[2:]).advance_watermark_to_infinity()


def _accumulating(evictor: Any) -> td.WindowInto:
    return td.WindowInto(window.FixedWindows(100), trigger=tr.Repeatedly(tr.AfterCount(2)),
                         accumulation_mode=tr.AccumulationMode.ACCUMULATING, evictor=evictor)


@case("evictors.count_before", "Evictors", observe=_FULL, expected=[
    (("k", [2]), W(0, 100), eow(100), early(0)), (("k", [4]), W(0, 100), eow(100), early(1)),
])
def evict_count_before(p: td.Pipeline) -> Any:
    """CountEvictor(1) before the function, accumulating panes of AfterCount(2): each pane sees the last element."""
    return p | _two_firings((1, 1), (2, 2), (3, 3), (4, 4)) | _accumulating(window.CountEvictor(1)) | "Group" >> td.GroupByKey()


@case("evictors.count_after", "Evictors", observe=_FULL, expected=[
    (("k", [1, 2]), W(0, 100), eow(100), early(0)), (("k", [2, 3, 4]), W(0, 100), eow(100), early(1)),
])
def evict_count_after(p: td.Pipeline) -> Any:
    """CountEvictor(1, evict_after=True): the function sees all; the next accumulating pane starts from the last one."""
    into = _accumulating(window.CountEvictor(1, evict_after=True))
    return p | _two_firings((1, 1), (2, 2), (3, 3), (4, 4)) | into | "Group" >> td.GroupByKey()


@case("evictors.time_before", "Evictors", observe=("value", "pane"), expected=[
    (("k", [1, 2]), early(0)), (("k", [4]), early(1)),
])
def evict_time(p: td.Pipeline) -> Any:
    """TimeEvictor(1): elements at or before (latest timestamp - 1 s) leave the buffer."""
    return p | _two_firings((1, 1), (2, 1.5), (3, 3), (4, 4)) | _accumulating(window.TimeEvictor(1)) | "Group" >> td.GroupByKey()


@case("evictors.delta_before", "Evictors", observe=("value", "pane"), expected=[
    (("k", [3]), early(0)), (("k", [3, 2]), early(1)),
])
def evict_delta(p: td.Pipeline) -> Any:
    """DeltaEvictor(2, |a - b|): elements 2 or more from the buffer's last element leave it (1 is exactly 2 from 3)."""
    into = _accumulating(window.DeltaEvictor(2, _gap))
    return p | _two_firings((1, 1), (3, 2), (6, 3), (2, 4)) | into | "Group" >> td.GroupByKey()


@case("evictors.combine_default_trigger", "Evictors", observe=_FULL, expected=[
    (("k", 8), W(0, 10), eow(10), on_time(0, last=True)), (("k", 100), W(10, 20), eow(20), on_time(0, last=True)),
])
def evict_combine(p: td.Pipeline) -> Any:
    """CombinePerKey(sum) under CountEvictor(2): not lifted, it sums the last two elements of each window."""
    stream = _stream(("k", 5, 1), ("k", 1, 2), ("k", 7, 3), ("k", 100, 12))
    return p | stream | td.WindowInto(window.FixedWindows(10), evictor=window.CountEvictor(2)) | "Sum" >> td.CombinePerKey(sum)


@case("evictors.merging_windowfn_rejected", "Evictors",
      error=ExpectedError(td.PipelineError, "step 'Sessions'", also=("cannot be used with the merging WindowFn Sessions(10)",)))
def evict_merging(p: td.Pipeline) -> Any:
    """An evictor with session windows is refused when applied, naming the step."""
    return p | td.Create([("a", 1)]) | "Sessions" >> td.WindowInto(window.Sessions(10), evictor=window.CountEvictor(2))


# -- Windowed join ------------------------------------------------------------------------------------
def _sides(p: td.Pipeline, left: list[tuple[str, Any, float]], right: list[tuple[str, Any, float]]) -> Any:
    lc = p | "Left" >> td.Create([TV((k, v), t) for k, v, t in left])
    rc = p | "Right" >> td.Create([TV((k, v), t) for k, v, t in right])
    return lc, rc


_LEFT: list[tuple[str, Any, float]] = [("a", "l1", 1), ("a", "l2", 2), ("b", "l3", 3), ("a", "l4", 12)]
_RIGHT: list[tuple[str, Any, float]] = [("a", "r1", 4), ("c", "r2", 5)]


@case("windowed_join.inner", "Windowed join", observe=_FULL, expected=[
    (("a", ("l1", "r1")), W(0, 10), eow(10), on_time(0, last=True)),
    (("a", ("l2", "r1")), W(0, 10), eow(10), on_time(0, last=True)),
])
def join_inner(p: td.Pipeline) -> Any:
    """Inner join per 10 s window: a's values pair within [0, 10); l4 at 12 has no partner in [10, 20)."""
    return _sides(p, _LEFT, _RIGHT) | "Join" >> WindowedJoin(windowfn=window.FixedWindows(10))


@case("windowed_join.full_outer", "Windowed join", observe=("value", "window"), expected=[
    (("a", ("l1", "r1")), W(0, 10)), (("a", ("l2", "r1")), W(0, 10)), (("b", ("l3", None)), W(0, 10)),
    (("c", (None, "r2")), W(0, 10)), (("a", ("l4", None)), W(10, 20)),
])
def join_full(p: td.Pipeline) -> Any:
    """Full outer join: each value without a partner in its window pairs with None."""
    return _sides(p, _LEFT, _RIGHT) | "Join" >> WindowedJoin("full", windowfn=window.FixedWindows(10))


@case("windowed_join.empty_right_side", "Windowed join", observe=("value", "window"), expected=[
    (("a", ("l1", None)), W(0, 10)), (("a", ("l4", None)), W(10, 20)),
])
def join_empty_side(p: td.Pipeline) -> Any:
    """Left outer join with an empty right side: every left value, paired with None."""
    left, right = _sides(p, [("a", "l1", 1), ("a", "l4", 12)], [("x", "never", 0)])
    right = right | "Empty" >> td.Filter(lambda kv: False)
    return (left, right) | "Join" >> WindowedJoin("left", windowfn=window.FixedWindows(10))
