"""Beam-exact event-time semantics, on every runner (direct, Ray, micro-batch).

Each expected pane below is derived by hand from SEMANTICS.md, as
``(key, values, window, timestamp µs, index, timing, is_first, is_last,
nonspeculative_index)`` (see ``pane_support.P``):

1. pane info does not survive a merge: a merged window's panes start at index 0;
2. ON_TIME only for the firing the watermark causes; a first firing past the
   end of the window that late data causes is LATE;
3. an event-time timer later than its window's expiry is an error;
4. a TestStream watermark must strictly advance;
5. Timestamp / Duration arithmetic stays in [MIN_TIMESTAMP, MAX_TIMESTAMP];
6. dropped input is counted by cause (expired window / closed window);
7. a stateful DoFn over merging windows is rejected, as in Beam Java;
8. capability cases and benchmarks import error types from the public package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any, Iterable

import cloudpickle
import pytest

import tidal as td
from tidal import trigger, window
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, Duration, Timestamp
from tidal.testing import TestStream, assert_that, equal_to
from tidal.trigger import AccumulationMode, PaneInfoTiming

from pane_support import P, RecordPanes

TV = window.TimestampedValue
W = window.IntervalWindow
US = 1_000_000
EARLY, ON_TIME, LATE = PaneInfoTiming.EARLY, PaneInfoTiming.ON_TIME, PaneInfoTiming.LATE
DISCARDING, ACCUMULATING = AccumulationMode.DISCARDING, AccumulationMode.ACCUMULATING
EOW10 = 10 * US - 1  # max_timestamp of [0, 10)

RUNNERS = ["direct", "ray", "microbatch"]


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    """Each test runs on every runner; Ray tests share the session-wide local Ray."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


def kvs(key: str, *times: float) -> list[TV]:
    """Elements (key, t) stamped at t seconds: the value tells which element it is."""
    return [TV((key, t), t) for t in times]


def run_panes(runner: str, stream: TestStream, into: td.WindowInto, expected: list[Any], combine: Any = None) -> td.PipelineResult:
    p = td.Pipeline(runner=runner)
    windowed = p | "Src" >> stream | "Window" >> into
    grouped = windowed | "Group" >> (td.GroupByKey() if combine is None else td.CombinePerKey(combine))
    assert_that(grouped | "Panes" >> td.ParDo(RecordPanes()), equal_to(expected))
    result = p.run()
    result.wait_until_finish()
    return result


def counter(result: td.PipelineResult, name: str, step: str = "Group") -> int:
    query = td.MetricsFilter().with_namespace("tidal").with_name(name).with_step(step)
    return sum(c.committed for c in result.metrics().query(query)["counters"])


# -- 1. pane indices after a merge --------------------------------------------------------
@pytest.mark.parametrize("mode", [DISCARDING, ACCUMULATING], ids=["discarding", "accumulating"])
def test_a_merged_session_starts_its_panes_at_index_0(runner: str, mode: AccumulationMode) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 3))  # [1,11) and [3,13) merge into [1,13): AfterCount(2) fires early, index 0
        .add_elements(kvs("k", 12))  # [12,22) merges [1,13) into [1,22): a new window, count 1, no firing
        .advance_watermark_to_infinity()  # [1,22) on time: its first pane, so index 0 again (not 1)
    )
    acc = mode is ACCUMULATING
    run_panes(
        runner,
        stream,
        td.WindowInto(window.Sessions(10), trigger=trigger.AfterWatermark(early=trigger.AfterCount(2)), accumulation_mode=mode),
        [
            P("k", [1, 3], W(1, 13), 13 * US - 1, 0, EARLY, False, -1),
            # The elements merge (accumulating: all three); the pane history does not.
            P("k", [1, 3, 12] if acc else [12], W(1, 22), 22 * US - 1, 0, ON_TIME, True, 0),
        ],
    )


def test_a_late_merge_into_a_fired_session_is_a_new_window_with_late_panes(runner: str) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # [1,6)
        .advance_watermark_to(10)  # on time, index 0
        .add_elements(kvs("k", 4))  # late: [4,9) merges into [1,9), a new window behind the watermark
        .add_elements(kvs("k", 2))  # [2,7) falls inside [1,9): the same window, its second pane
        .advance_watermark_to_infinity()
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(window.Sessions(5), allowed_lateness=100),
        [
            P("k", [1], W(1, 6), 6 * US - 1, 0, ON_TIME, False, 0),
            P("k", [4], W(1, 9), 9 * US - 1, 0, LATE, False, 0),
            P("k", [2], W(1, 9), 9 * US - 1, 1, LATE, False, 1),
        ],
    )


class SmallIntoBig(window.WindowFn):
    """A custom merging WindowFn: the value "big" gets [0, 100), others [t, t+1); a small window
    inside a big one merges into it (the big window is the merge result)."""

    def assign(self, context: window.AssignContext) -> list[window.BoundedWindow]:
        t = context.timestamp.micros
        if context.element[1] == "big":
            return [W(0, 100)]
        return [W.from_micros(t, t + US)]

    def merge(self, merge_context: window.MergeContext) -> None:
        windows: list[Any] = list(merge_context.windows)
        for big in [w for w in windows if w[1] - w[0] == 100 * US]:
            inside = [w for w in windows if w != big and big.contains(w)]
            if inside:
                merge_context.merge([big, *inside], big)


def test_a_custom_merging_windowfn_restarts_panes_only_for_a_new_window(runner: str) -> None:
    stream = (
        TestStream()
        .add_elements([TV(("k", "s1"), 7)])  # [7,8): fires, index 0
        .add_elements([TV(("k", "big"), 5)])  # [0,100) absorbs the active [7,8): a new window, index 0
        .add_elements([TV(("k", "s2"), 9)])  # [9,10) merges into the active [0,100): not new, index 1
        .advance_watermark_to_infinity()
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(SmallIntoBig(), trigger=trigger.Repeatedly(trigger.AfterCount(1)), accumulation_mode=DISCARDING),
        [
            P("k", ["s1"], W(7, 8), 8 * US - 1, 0, EARLY, False, -1),
            P("k", ["big"], W(0, 100), 100 * US - 1, 0, EARLY, False, -1),
            P("k", ["s2"], W(0, 100), 100 * US - 1, 1, EARLY, False, -1),
        ],
    )


# -- 2. ON_TIME only for the watermark's firing -------------------------------------------
def test_a_first_firing_past_the_end_caused_by_a_count_is_late(runner: str) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))
        .advance_watermark_to(10)  # the end-of-window firing: AfterCount(2) has 1 element, nothing fires
        .add_elements(kvs("k", 2))  # the count fires the window's first pane: LATE (data caused it)
        .add_elements(kvs("k", 3, 4))
        .advance_watermark_to_infinity()
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.Repeatedly(trigger.AfterCount(2)),
            accumulation_mode=DISCARDING,
            allowed_lateness=100,
        ),
        [
            P("k", [1, 2], W(0, 10), EOW10, 0, LATE, False, 0),
            P("k", [3, 4], W(0, 10), EOW10, 1, LATE, False, 1),
        ],
    )


def test_a_first_firing_past_the_end_caused_by_processing_time_is_late(runner: str) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # processing-time deadline 0 + 5
        .advance_watermark_to(10)  # the end-of-window firing: the deadline has not come, nothing fires
        .advance_processing_time(5)  # the deadline fires the first pane: LATE
        .advance_watermark_to_infinity()
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.Repeatedly(trigger.AfterProcessingTime(5)),
            accumulation_mode=DISCARDING,
            allowed_lateness=100,
        ),
        [P("k", [1], W(0, 10), EOW10, 0, LATE, False, 0)],
    )


def test_the_watermark_fires_the_on_time_pane_once_then_late_data_fires_late_panes(runner: str) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))  # early
        .advance_watermark_to(10)  # ON_TIME, even empty (discarding: nothing new since the early pane)
        .add_elements(kvs("k", 3))  # late: LATE
        .advance_watermark_to(20)  # the watermark moves on: no second ON_TIME pane
        .add_elements(kvs("k", 4))
        .advance_watermark_to_infinity()
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterWatermark(early=trigger.AfterCount(2), late=trigger.AfterCount(1)),
            accumulation_mode=DISCARDING,
            allowed_lateness=100,
        ),
        [
            P("k", [1, 2], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", [], W(0, 10), EOW10, 1, ON_TIME, False, 0),
            P("k", [3], W(0, 10), EOW10, 2, LATE, False, 1),
            P("k", [4], W(0, 10), EOW10, 3, LATE, False, 2),
        ],
    )


def test_a_window_opened_by_late_data_has_late_panes_only(runner: str) -> None:
    stream = (
        TestStream()
        .advance_watermark_to(20)
        .add_elements(kvs("k", 5))  # [0,10) is behind the watermark, within lateness: LATE, index 0
        .add_elements(kvs("k", 6))
        .advance_watermark_to_infinity()
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(window.FixedWindows(10), allowed_lateness=100),
        [
            P("k", [5], W(0, 10), EOW10, 0, LATE, False, 0),
            P("k", [6], W(0, 10), EOW10, 1, LATE, False, 1),
        ],
    )


@pytest.mark.parametrize(
    "late_first, timing",
    [(False, ON_TIME), (True, LATE)],
    ids=["window-open-at-its-end", "window-opened-late"],
)
def test_the_expiry_pane_is_on_time_only_for_a_window_the_watermark_reached_open(
    runner: str, late_first: bool, timing: PaneInfoTiming
) -> None:
    # Never fires only at expiry. A window that was open when the watermark passed its end
    # had its end-of-window firing (Never fired nothing): the watermark fires its one pane at
    # expiry, ON_TIME. A window that late data opened never had one: its pane is LATE.
    stream = TestStream()
    if not late_first:
        stream = stream.add_elements(kvs("k", 1))
    stream = (
        stream.advance_watermark_to(10)
        .add_elements(kvs("k", 3))  # late, within lateness: buffered
        .advance_watermark_to(20)  # expiry (wm > 9.999999 + 5): the one final pane
        .advance_watermark_to_infinity()
    )
    run_panes(
        runner,
        stream,
        td.WindowInto(window.FixedWindows(10), trigger=trigger.Never(), accumulation_mode=DISCARDING, allowed_lateness=5),
        [P("k", [3] if late_first else [1, 3], W(0, 10), EOW10, 0, timing, True, 0)],
    )


# -- 3. event-time timers past the window's expiry ------------------------------------------
class TimerAt(td.DoFn):
    """Sets an event-time timer at the window's end plus ``offset`` seconds; the timer emits (key, time)."""

    LATER = td.TimerSpec("later", td.TimeDomain.WATERMARK)

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def process(self, kv: Any, w: Any = td.DoFn.WindowParam, later: Any = td.DoFn.TimerParam(LATER)) -> Iterable[Any]:
        later.set(w.end + self.offset)
        return ()

    @td.on_timer(LATER)
    def on_later(self, key: Any = td.DoFn.KeyParam, ts: Any = td.DoFn.TimestampParam) -> Iterable[Any]:
        yield key, ts.micros


def _timer_pipeline(runner: str, offset: float) -> td.Pipeline:
    p = td.Pipeline(runner=runner)
    stream = TestStream().add_elements([TV(("k", 1), 1)]).advance_watermark_to_infinity()
    fired = p | stream | td.WindowInto(window.FixedWindows(10), allowed_lateness=5) | "SetLate" >> td.ParDo(TimerAt(offset))
    assert_that(fired, equal_to([("k", 15 * US - 1)]))
    return p


def test_a_timer_at_the_window_expiry_is_allowed_and_fires(runner: str) -> None:
    # Expiry of [0,10) with lateness 5: 9.999999 + 5 = 14.999999 = end + 4.999999.
    _timer_pipeline(runner, 4.999999).run().wait_until_finish()


def test_a_timer_past_the_window_expiry_fails_the_step_naming_the_times(runner: str) -> None:
    with pytest.raises(td.PipelineExecutionError) as info:
        _timer_pipeline(runner, 5).run().wait_until_finish()
    assert info.value.step == "SetLate"
    assert str(info.value) == (
        "step 'SetLate': attempted to set the event-time timer 'later' with a firing timestamp of Timestamp(15) "
        "that is after the expiration of window IntervalWindow(0, 10) at Timestamp(14.999999) (its max_timestamp() "
        "plus the allowed lateness of 5 s); set the timer at or before the expiry, or allow more lateness in WindowInto"
    )


class ResetFromTimer(td.DoFn):
    """The timer callback sets the timer again, past the expiry: the error comes from on_timer too."""

    T = td.TimerSpec("t", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, w: Any = td.DoFn.WindowParam, t: Any = td.DoFn.TimerParam(T)) -> Iterable[Any]:
        t.set(w.max_timestamp())
        return ()

    @td.on_timer(T)
    def again(self, w: Any = td.DoFn.WindowParam, t: Any = td.DoFn.TimerParam(T)) -> Iterable[Any]:
        t.set(w.end + 100)
        return ()


def test_a_timer_set_past_the_expiry_in_a_timer_callback_fails_the_step(runner: str) -> None:
    p = td.Pipeline(runner=runner)
    stream = TestStream().add_elements([TV(("k", 1), 1)]).advance_watermark_to_infinity()
    _ = p | stream | td.WindowInto(window.FixedWindows(10)) | "Again" >> td.ParDo(ResetFromTimer())
    with pytest.raises(td.PipelineExecutionError) as info:
        p.run().wait_until_finish()
    assert info.value.step == "Again"
    assert "firing timestamp of Timestamp(110) that is after the expiration of window IntervalWindow(0, 10) at Timestamp(9.999999)" in str(info.value)


# -- 4. TestStream watermarks strictly advance -------------------------------------------
@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: TestStream().advance_watermark_to(10).advance_watermark_to(5),
            "TestStream.advance_watermark_to(Timestamp(5)): the watermark must strictly advance, but it is already at Timestamp(10)",
        ),
        (
            lambda: TestStream().advance_watermark_to(10).add_elements([1]).advance_watermark_to(10),
            "TestStream.advance_watermark_to(Timestamp(10)): the watermark must strictly advance, but it is already at Timestamp(10)",
        ),
        (
            lambda: TestStream().advance_watermark_to(td.MIN_TIMESTAMP),
            "TestStream.advance_watermark_to(MIN_TIMESTAMP): the watermark must strictly advance, but it is already at MIN_TIMESTAMP",
        ),
        (
            lambda: TestStream().advance_watermark_to_infinity().advance_watermark_to_infinity(),
            "TestStream.advance_watermark_to_infinity(): the watermark must strictly advance, but it is already at MAX_TIMESTAMP",
        ),
    ],
    ids=["backwards", "equal", "min-timestamp", "infinity-twice"],
)
def test_a_test_stream_watermark_that_does_not_advance_is_an_error_at_construction(runner: str, build: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        with td.Pipeline(runner=runner) as p:
            _ = p | build()
    assert str(info.value) == message


# -- 5. time arithmetic stays in range -----------------------------------------------------
RANGE = "[MIN_TIMESTAMP, MAX_TIMESTAMP] (-9223372036854.775808 s .. 9223372036854.775807 s)"


@pytest.mark.parametrize(
    "compute, expression",
    [
        (lambda: td.MAX_TIMESTAMP + Duration(1), "MAX_TIMESTAMP + Duration(1)"),
        (lambda: Duration(1) + td.MAX_TIMESTAMP, "MAX_TIMESTAMP + Duration(1)"),
        (lambda: td.MAX_TIMESTAMP + 0.5, "MAX_TIMESTAMP + 0.5"),
        (lambda: td.MIN_TIMESTAMP - Duration(1), "MIN_TIMESTAMP - Duration(1)"),
        (lambda: td.MIN_TIMESTAMP - 1, "MIN_TIMESTAMP - 1"),
        (lambda: td.MAX_TIMESTAMP.successor(), "MAX_TIMESTAMP + Duration(0.000001)"),
        (lambda: td.MIN_TIMESTAMP.predecessor(), "MIN_TIMESTAMP - Duration(0.000001)"),
        (lambda: td.MAX_TIMESTAMP - td.MIN_TIMESTAMP, "MAX_TIMESTAMP - MIN_TIMESTAMP"),
        (lambda: Duration(micros=MAX_TIMESTAMP_US) + Duration(micros=1), "Duration(9223372036854.775807) + Duration(0.000001)"),
        (lambda: Duration(micros=MIN_TIMESTAMP_US) - 1, "Duration(-9223372036854.775808) - 1"),
        (lambda: -Duration(micros=MIN_TIMESTAMP_US), "-Duration(-9223372036854.775808)"),
    ],
    ids=["ts+dur", "dur+ts", "ts+seconds", "ts-dur", "ts-seconds", "successor", "predecessor", "ts-ts", "dur+dur", "dur-seconds", "neg"],
)
def test_time_arithmetic_out_of_range_is_a_clear_error(compute: Any, expression: str) -> None:
    with pytest.raises(ValueError) as info:
        compute()
    assert str(info.value) == f"{expression} is outside {RANGE}"


def test_time_arithmetic_up_to_the_bounds_is_exact() -> None:
    assert (td.MAX_TIMESTAMP - Duration(1)) + Duration(1) == td.MAX_TIMESTAMP
    assert (td.MIN_TIMESTAMP + 1) - 1 == td.MIN_TIMESTAMP
    assert td.MAX_TIMESTAMP.predecessor().successor() == td.MAX_TIMESTAMP
    assert td.MAX_TIMESTAMP - Timestamp(0) == Duration(micros=MAX_TIMESTAMP_US)
    assert Timestamp(micros=-1) - td.MIN_TIMESTAMP == Duration(micros=MAX_TIMESTAMP_US)
    assert -Duration(micros=MAX_TIMESTAMP_US) == Duration(micros=MIN_TIMESTAMP_US + 1)
    assert repr(Duration(micros=MAX_TIMESTAMP_US)) == "Duration(9223372036854.775807)"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Duration(float("inf")), "duration inf is not a finite number of seconds"),
        (lambda: Duration(float("nan")), "duration nan is not a finite number of seconds"),
        (lambda: Duration(1e20), f"duration 1e+20 s is outside the range of a Duration, {RANGE}"),
        (lambda: Duration(micros=MAX_TIMESTAMP_US + 1), f"duration 9223372036854775808 µs is outside the range of a Duration, {RANGE}"),
        (lambda: Timestamp(micros=MAX_TIMESTAMP_US + 1), f"timestamp 9223372036854775808 µs is outside {RANGE}"),
    ],
    ids=["inf", "nan", "huge", "duration-micros", "timestamp-micros"],
)
def test_constructing_an_out_of_range_time_is_a_clear_error(make: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_out_of_range_time_arithmetic_in_a_dofn_fails_the_step(runner: str) -> None:
    with pytest.raises(td.UserCodeError) as info:
        with td.Pipeline(runner=runner) as p:
            _ = p | td.Create([1]) | "Shift" >> td.Map(lambda x: td.MAX_TIMESTAMP + Duration(x))
    assert info.value.step == "Shift"
    assert str(info.value) == f"step 'Shift': <lambda> raised ValueError: MAX_TIMESTAMP + Duration(1) is outside {RANGE} on element 1"


# -- 6. drops counted by cause -------------------------------------------------------------
@pytest.mark.parametrize("combine", [None, sum], ids=["GroupByKey", "CombinePerKey"])
def test_drops_are_counted_apart_for_a_closed_and_an_expired_window(runner: str, combine: Any) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))
        .advance_watermark_to(10)  # AfterWatermark() fires on time and finishes: [0,10) is closed
        .add_elements(kvs("k", 2, 3))  # within lateness, but closed: 2 dropped for the closed window
        .advance_watermark_to(30)  # [0,10) expires (wm > 9.999999 + 10)
        .add_elements(kvs("k", 4))  # too late: 1 dropped for lateness
        .add_elements(kvs("k", 35))  # [30,40) is on time
        .advance_watermark_to_infinity()
    )
    result = run_panes(
        runner,
        stream,
        td.WindowInto(window.FixedWindows(10), trigger=trigger.AfterWatermark(), accumulation_mode=DISCARDING, allowed_lateness=10),
        [
            P("k", [1] if combine is None else 1, W(0, 10), EOW10, 0, ON_TIME, True, 0),
            P("k", [35] if combine is None else 35, W(30, 40), 40 * US - 1, 0, ON_TIME, True, 0),
        ],
        combine=combine,
    )
    assert counter(result, "dropped_due_to_closed_window") == 2
    assert counter(result, "dropped_due_to_lateness") == 1


def test_a_closed_session_counts_merged_input_as_dropped_for_the_closed_window(runner: str) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))  # [1,12) fires and finishes (AfterCount(2))
        .add_elements(kvs("k", 5))  # [5,15) merges into the closed window: dropped, closed
        .advance_watermark_to_infinity()
    )
    result = run_panes(
        runner,
        stream,
        td.WindowInto(window.Sessions(10), trigger=trigger.AfterCount(2), accumulation_mode=DISCARDING),
        [P("k", [1, 2], W(1, 12), 12 * US - 1, 0, EARLY, True, -1)],
    )
    assert (counter(result, "dropped_due_to_closed_window"), counter(result, "dropped_due_to_lateness")) == (1, 0)


class Count(td.DoFn):
    N = td.ReadModifyWriteStateSpec("n")

    def process(self, kv: Any, n: Any = td.DoFn.StateParam(N)) -> Iterable[Any]:
        n.write((n.read() or 0) + 1)
        yield kv[0], n.read()


def test_a_stateful_dofn_counts_expired_input_as_dropped_for_lateness(runner: str) -> None:
    p = td.Pipeline(runner=runner)
    stream = TestStream().add_elements(kvs("k", 1)).advance_watermark_to(20).add_elements(kvs("k", 2)).advance_watermark_to_infinity()
    counts = p | stream | td.WindowInto(window.FixedWindows(10)) | "Count" >> td.ParDo(Count())
    assert_that(counts, equal_to([("k", 1)]))
    result = p.run()
    result.wait_until_finish()
    assert (counter(result, "dropped_due_to_lateness", "Count"), counter(result, "dropped_due_to_closed_window", "Count")) == (1, 0)


# -- 7. stateful DoFns over merging windows --------------------------------------------------
class Buffer(td.DoFn):
    BUF = td.BagStateSpec("buf")

    def process(self, kv: Any, buf: Any = td.DoFn.StateParam(BUF)) -> Iterable[Any]:
        buf.add(kv[1])
        yield kv


class OnlyATimer(td.DoFn):
    T = td.TimerSpec("t", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, t: Any = td.DoFn.TimerParam(T)) -> Iterable[Any]:
        yield kv

    @td.on_timer(T)
    def fire(self) -> Iterable[Any]:
        return ()


@pytest.mark.parametrize("dofn", [Buffer(), OnlyATimer()], ids=["state", "timer"])
@pytest.mark.parametrize("windowfn", [window.Sessions(10), SmallIntoBig()], ids=["Sessions", "custom-merging"])
def test_a_stateful_dofn_over_merging_windows_is_rejected_when_applied(runner: str, dofn: td.DoFn, windowfn: window.WindowFn) -> None:
    p = td.Pipeline(runner=runner)
    windowed = p | td.Create([("k", 1)]) | td.WindowInto(windowfn)
    with pytest.raises(td.PipelineError) as info:
        _ = windowed | "Stateful" >> td.ParDo(dofn)
    assert str(info.value) == (
        f"step 'Stateful': a stateful DoFn (it declares state or timers) cannot run over the merging WindowFn {windowfn!r}: "
        "MergingWindowFn is not supported for stateful DoFns, as in Beam. State is kept per key and window, and merging "
        "windows have no stable window to keep it in; group the input first (GroupByKey merges the windows) or window it "
        "with a non-merging WindowFn (FixedWindows, SlidingWindows, GlobalWindows)"
    )


def test_a_stateless_dofn_over_sessions_and_a_stateful_one_after_grouping_are_accepted(runner: str) -> None:
    with td.Pipeline(runner=runner) as p:
        stamped = p | td.Create([("k", 1), ("k", 4), ("k", 30)]) | td.Map(lambda kv: TV(kv, kv[1]))
        sessions = stamped | td.WindowInto(window.Sessions(10))
        doubled = sessions | "Double" >> td.Map(lambda kv: (kv[0], 2 * kv[1]))
        grouped = doubled | td.GroupByKey() | td.MapTuple(lambda k, vs: (k, sorted(vs)))
        # After the grouping every pane is in one final window; re-window it to count per key.
        counted = grouped | td.WindowInto(window.FixedWindows(100)) | "Count" >> td.ParDo(Count())
        assert_that(counted, equal_to([("k", 1), ("k", 2)]))


# -- 8. capability cases and benchmarks use the public API ----------------------------------
PACKAGE_ROOT = Path(td.__file__).resolve().parent


def _public_api_sources() -> list[Path]:
    cases = sorted((PACKAGE_ROOT / "capability_matrix" / "cases").glob("*.py"))
    benchmarks = sorted((PACKAGE_ROOT / "benchmarks").rglob("*.py"))
    return cases + benchmarks


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every import in the module, nested ones included."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


#: Implementation packages: users import from ``tidal`` and its Beam module paths instead.
INTERNAL = ("tidal.runners.core", "tidal.model")


def _is_internal(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in INTERNAL)


def import_violations(paths: Iterable[Path], root: Path = PACKAGE_ROOT) -> list[str]:
    """Any import from tidal.runners.core, and error types imported from an implementation package.

    Error types must come from the public API: ``tidal`` itself or a Beam module path
    (``tidal.testing.util``, ``tidal.typehints``, ...), never ``tidal.runners.core`` or
    ``tidal.model``, where they happen to be defined.
    """
    import importlib

    problems = []
    for path in paths:
        where = path.relative_to(root)
        for line, module, names in sorted(_imports(path)):
            if module == "tidal.runners.core" or module.startswith("tidal.runners.core."):
                problems.append(f"{where}:{line} imports {module} (runner internals)")
                continue
            if not _is_internal(module):
                continue
            owner = importlib.import_module(module)
            for name in names:
                value = getattr(owner, name, None)
                if isinstance(value, type) and issubclass(value, BaseException):
                    problems.append(f"{where}:{line} imports the error type {name} from {module}, not from tidal")
    return problems


def test_capability_cases_and_benchmarks_import_error_types_from_the_public_package() -> None:
    paths = _public_api_sources()
    assert any(p.name == "beyond.py" for p in paths) and any(p.name == "harness.py" for p in paths)
    assert import_violations(paths) == []


def test_the_import_check_finds_internal_imports(tmp_path: Path) -> None:
    source = tmp_path / "cases" / "bad.py"
    source.parent.mkdir()
    source.write_text(
        "from tidal.runners.core.errors import UserCodeError\n"
        "from tidal.model.pipeline import PipelineError\n"
        "def later():\n"
        "    import tidal.runners.core.reduce\n"
        "import tidal\n"
        "from tidal import PipelineExecutionError\n"
        "from tidal.testing.util import BeamAssertException\n"
        "from tidal.model.window import FixedWindows\n"
    )
    assert import_violations([source], root=tmp_path) == [
        "cases/bad.py:1 imports tidal.runners.core.errors (runner internals)",
        "cases/bad.py:2 imports the error type PipelineError from tidal.model.pipeline, not from tidal",
        "cases/bad.py:4 imports tidal.runners.core.reduce (runner internals)",
    ]


cloudpickle.register_pickle_by_value(sys.modules[__name__])
