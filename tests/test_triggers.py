"""Triggers, panes, lateness and watermark holds, driven by TestStream.

Every expected pane below is derived by hand from SEMANTICS.md: a pane is
``(key, values, window, timestamp µs, index, timing, is_first, is_last,
nonspeculative_index)``. Triggers are evaluated after each bundle (one
``add_elements`` call) for every window that bundle touched.
"""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import tidal as td
from tidal import trigger, window
from tidal.runners.direct import DirectRunner
from tidal.testing import TestStream, assert_that, equal_to
from tidal.trigger import AccumulationMode, PaneInfoTiming

from pane_support import P, RecordPanes

TV = window.TimestampedValue
W = window.IntervalWindow
US = 1_000_000
EARLY, ON_TIME, LATE = PaneInfoTiming.EARLY, PaneInfoTiming.ON_TIME, PaneInfoTiming.LATE
DISCARDING, ACCUMULATING = AccumulationMode.DISCARDING, AccumulationMode.ACCUMULATING


def kvs(key: str, *times: int) -> list[TV]:
    """Elements (key, t) stamped at t seconds: the value tells which element it is."""
    return [TV((key, t), t) for t in times]


def run_panes(stream: TestStream, into: td.WindowInto, expected: list[Any], combine: Any = None) -> td.PipelineResult:
    p = td.Pipeline()
    windowed = p | "Src" >> stream | "Window" >> into
    grouped = windowed | "Group" >> (td.GroupByKey() if combine is None else td.CombinePerKey(combine))
    assert_that(grouped | "Panes" >> td.ParDo(RecordPanes()), equal_to(expected))
    result = p.run()
    result.wait_until_finish()
    return result


def dropped(result: td.PipelineResult, step: str = "Group", cause: str = "dropped_due_to_lateness") -> int:
    query = td.MetricsFilter().with_name(cause).with_step(step)
    return sum(c.committed for c in result.metrics().query(query)["counters"])


def dropped_closed(result: td.PipelineResult, step: str = "Group") -> int:
    """Input dropped because its window's trigger had finished (counted apart from late input)."""
    return dropped(result, step, "dropped_due_to_closed_window")


EOW10 = 10 * US - 1  # max_timestamp of [0, 10)
EOW100 = 100 * US - 1  # max_timestamp of [0, 100)


# -- the default trigger and lateness ------------------------------------------------
def test_default_trigger_fires_on_time_then_once_per_late_bundle_within_lateness() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))
        .advance_watermark_to(10)  # [0,10) on time: wm 10 > max_timestamp 9.999999
        .add_elements(kvs("k", 3))  # late, within lateness (expires when wm > 14.999999)
        .advance_watermark_to(14)
        .add_elements(kvs("k", 4, 6))  # one late bundle -> one late pane
        .advance_watermark_to(16)  # past end + lateness: the window expires
        .add_elements(kvs("k", 5))  # too late: dropped
        .advance_watermark_to_infinity()
    )
    result = run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), allowed_lateness=5),
        [
            P("k", [1, 2], W(0, 10), EOW10, 0, ON_TIME, False, 0),
            P("k", [3], W(0, 10), EOW10, 1, LATE, False, 1),
            P("k", [4, 6], W(0, 10), EOW10, 2, LATE, False, 2),
        ],
    )
    assert dropped(result) == 1


def test_default_trigger_without_lateness_fires_one_final_pane_and_drops_late_data() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 12) + kvs("j", 3))
        .advance_watermark_to(10)
        .add_elements(kvs("k", 4) + kvs("j", 5, 15))  # 4 and 5 are late for [0,10); 15 is on time
        .advance_watermark_to_infinity()
    )
    result = run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10)),
        [
            P("k", [1], W(0, 10), EOW10, 0, ON_TIME, True, 0),
            P("j", [3], W(0, 10), EOW10, 0, ON_TIME, True, 0),
            P("k", [12], W(10, 20), 20 * US - 1, 0, ON_TIME, True, 0),
            P("j", [15], W(10, 20), 20 * US - 1, 0, ON_TIME, True, 0),
        ],
    )
    assert dropped(result) == 2


def test_default_trigger_accumulating_late_panes_hold_everything_so_far() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))
        .advance_watermark_to(10)
        .add_elements(kvs("k", 2))
        .add_elements(kvs("k", 3))
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), accumulation_mode=ACCUMULATING, allowed_lateness=100),
        [
            P("k", [1], W(0, 10), EOW10, 0, ON_TIME, False, 0),
            P("k", [1, 2], W(0, 10), EOW10, 1, LATE, False, 1),
            P("k", [1, 2, 3], W(0, 10), EOW10, 2, LATE, False, 2),
        ],
    )


# -- AfterWatermark with early and late firings -----------------------------------------
@pytest.mark.parametrize("mode", [DISCARDING, ACCUMULATING], ids=["discarding", "accumulating"])
def test_after_watermark_early_and_late_on_fixed_windows(mode: AccumulationMode) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))  # early AfterCount(2) fires
        .add_elements(kvs("k", 3))  # 1 element since: no firing
        .advance_watermark_to(10)  # on time
        .add_elements(kvs("k", 4))  # late AfterCount(2): 1 element, no firing
        .add_elements(kvs("k", 5, 6))  # 3 late elements: fires
        .add_elements(kvs("k", 7))  # waits ...
        .advance_watermark_to(40)  # ... until the window expires (wm > 29.999999): final pane
        .advance_watermark_to_infinity()
    )
    acc = mode is ACCUMULATING
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterWatermark(early=trigger.AfterCount(2), late=trigger.AfterCount(2)),
            accumulation_mode=mode,
            allowed_lateness=20,
        ),
        [
            P("k", [1, 2], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", [1, 2, 3] if acc else [3], W(0, 10), EOW10, 1, ON_TIME, False, 0),
            P("k", [1, 2, 3, 4, 5, 6] if acc else [4, 5, 6], W(0, 10), EOW10, 2, LATE, False, 1),
            P("k", [1, 2, 3, 4, 5, 6, 7] if acc else [7], W(0, 10), EOW10, 3, LATE, True, 2),
        ],
    )


@pytest.mark.parametrize("mode", [DISCARDING, ACCUMULATING], ids=["discarding", "accumulating"])
def test_after_watermark_early_and_late_on_sessions(mode: AccumulationMode) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # session [1,11): early pane
        .add_elements(kvs("k", 5))  # [5,15) merges into [1,15), a new window: its first (early) pane
        .advance_watermark_to(20)  # [1,15) on time
        .add_elements(kvs("k", 8))  # late: [8,18) merges into [1,18), a new window behind the watermark
        .advance_watermark_to_infinity()
    )
    acc = mode is ACCUMULATING
    run_panes(
        stream,
        td.WindowInto(
            window.Sessions(10),
            trigger=trigger.AfterWatermark(early=trigger.AfterCount(1), late=trigger.AfterCount(1)),
            accumulation_mode=mode,
            allowed_lateness=100,
        ),
        [
            P("k", [1], W(1, 11), 11 * US - 1, 0, EARLY, False, -1),
            # Pane info does not survive a merge: each merged window's panes start at index 0.
            P("k", [1, 5] if acc else [5], W(1, 15), 15 * US - 1, 0, EARLY, False, -1),
            # Discarding, nothing new since the early pane: the on-time pane still fires, empty.
            P("k", [1, 5] if acc else [], W(1, 15), 15 * US - 1, 1, ON_TIME, False, 0),
            # Fired by the late element, not by the watermark: LATE, the window's first pane.
            P("k", [1, 5, 8] if acc else [8], W(1, 18), 18 * US - 1, 0, LATE, False, 0),
        ],
    )


def test_discarding_on_time_pane_fires_empty_after_an_early_firing() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))
        .advance_watermark_to(10)
        .add_elements(kvs("k", 2))  # the trigger finished on time: the window is closed
        .advance_watermark_to_infinity()
    )
    result = run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterWatermark(early=trigger.AfterCount(1)),
            accumulation_mode=DISCARDING,
            allowed_lateness=100,
        ),
        [
            P("k", [1], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", [], W(0, 10), EOW10, 1, ON_TIME, True, 0),
        ],
    )
    assert (dropped(result), dropped_closed(result)) == (0, 1)


def test_early_firings_with_combine_per_key() -> None:
    stream = (
        TestStream()
        .add_elements([TV(("k", 1), 1), TV(("k", 2), 2)])
        .add_elements([TV(("k", 3), 3)])
        .add_elements([TV(("k", 4), 4)])
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterWatermark(early=trigger.AfterCount(2)),
            accumulation_mode=ACCUMULATING,
        ),
        [
            P("k", 3, W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", 10, W(0, 10), EOW10, 1, EARLY, False, -1),
            P("k", 10, W(0, 10), EOW10, 2, ON_TIME, True, 0),
        ],
        combine=sum,
    )


def test_after_watermark_with_processing_time_early_and_late_firings() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # early deadline: processing time 5
        .advance_processing_time(5)  # early pane
        .add_elements(kvs("k", 2))  # early deadline 10 ...
        .advance_watermark_to(10)  # ... but the on-time pane comes first
        .advance_processing_time(5)  # now 10: the stale early deadline fires nothing
        .add_elements(kvs("k", 3))  # late deadline 15
        .advance_processing_time(5)  # late pane
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterWatermark(early=trigger.AfterProcessingTime(5), late=trigger.AfterProcessingTime(5)),
            accumulation_mode=DISCARDING,
            allowed_lateness=100,
        ),
        [
            P("k", [1], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", [2], W(0, 10), EOW10, 1, ON_TIME, False, 0),
            P("k", [3], W(0, 10), EOW10, 2, LATE, False, 1),
        ],
    )


@pytest.mark.parametrize(
    "spelled",
    [trigger.DefaultTrigger(), trigger.Repeatedly(trigger.AfterWatermark())],
    ids=["DefaultTrigger", "Repeatedly(AfterWatermark())"],
)
def test_repeatedly_after_watermark_is_the_default_trigger(spelled: trigger.Trigger) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))
        .advance_watermark_to(10)
        .add_elements(kvs("k", 2))
        .add_elements(kvs("k", 3))
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), trigger=spelled, allowed_lateness=100),
        [
            P("k", [1], W(0, 10), EOW10, 0, ON_TIME, False, 0),
            P("k", [2], W(0, 10), EOW10, 1, LATE, False, 1),
            P("k", [3], W(0, 10), EOW10, 2, LATE, False, 2),
        ],
    )


def test_a_late_element_opening_a_new_window_fires_late_panes_only() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(20)
        .add_elements(kvs("k", 5))  # [0,10) is behind the watermark but within lateness; nothing fired yet
        .add_elements(kvs("k", 6))
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), allowed_lateness=100),
        [
            # The watermark passed the end before the window existed: no end-of-window firing,
            # so no ON_TIME pane; the first pane, fired by late data, is LATE (as in Beam).
            P("k", [5], W(0, 10), EOW10, 0, LATE, False, 0),
            P("k", [6], W(0, 10), EOW10, 1, LATE, False, 1),
        ],
    )


def test_test_stream_event_timestamp_stamps_plain_values() -> None:
    stream = (
        TestStream()
        .add_elements([("k", "a"), ("k", "b")], event_timestamp=5)
        .add_elements([("k", "c"), TV(("k", "d"), 15)], event_timestamp=12)
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10)),
        [
            P("k", ["a", "b"], W(0, 10), EOW10, 0, ON_TIME, True, 0),
            P("k", ["c", "d"], W(10, 20), 20 * US - 1, 0, ON_TIME, True, 0),
        ],
    )


# -- count, processing time and composite triggers ---------------------------------------
def test_after_count_finishes_and_closes_the_window() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 12))
        .add_elements(kvs("k", 2, 3))  # [0,10) holds 3 >= 2: fires and finishes
        .add_elements(kvs("k", 4))  # the window is closed: dropped
        .advance_watermark_to_infinity()  # [10,20) never reached 2: its final pane at expiry
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), trigger=trigger.AfterCount(2), accumulation_mode=DISCARDING),
        [
            P("k", [1, 2, 3], W(0, 10), EOW10, 0, EARLY, True, -1),
            P("k", [12], W(10, 20), 20 * US - 1, 0, ON_TIME, True, 0),
        ],
    )


@pytest.mark.parametrize("mode", [DISCARDING, ACCUMULATING], ids=["discarding", "accumulating"])
def test_repeatedly_after_count(mode: AccumulationMode) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))
        .add_elements(kvs("k", 3))
        .add_elements(kvs("k", 4, 5, 6))  # one bundle: one firing, however many it adds
        .add_elements(kvs("k", 7))
        .advance_watermark_to_infinity()  # the unfired 7 goes out in the final pane
    )
    acc = mode is ACCUMULATING
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), trigger=trigger.Repeatedly(trigger.AfterCount(2)), accumulation_mode=mode),
        [
            P("k", [1, 2], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", [1, 2, 3, 4, 5, 6] if acc else [3, 4, 5, 6], W(0, 10), EOW10, 1, EARLY, False, -1),
            P("k", [1, 2, 3, 4, 5, 6, 7] if acc else [7], W(0, 10), EOW10, 2, ON_TIME, True, 0),
        ],
    )


def test_repeatedly_after_processing_time() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # processing time 0: fires at 5
        .advance_processing_time(3)
        .add_elements(kvs("k", 2))  # the pane's first element set the deadline
        .advance_processing_time(2)  # now 5: fires [1, 2]
        .add_elements(kvs("k", 3))  # fires at 10
        .advance_processing_time(10)  # now 15: fires [3]
        .add_elements(kvs("k", 4))  # would fire at 20, but the window expires first
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(100),
            trigger=trigger.Repeatedly(trigger.AfterProcessingTime(5)),
            accumulation_mode=DISCARDING,
        ),
        [
            P("k", [1, 2], W(0, 100), EOW100, 0, EARLY, False, -1),
            P("k", [3], W(0, 100), EOW100, 1, EARLY, False, -1),
            P("k", [4], W(0, 100), EOW100, 2, ON_TIME, True, 0),
        ],
    )


def test_after_processing_time_is_per_window() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # [0,100) fires at 5
        .advance_processing_time(4)
        .add_elements(kvs("k", 101))  # [100,200) fires at 9
        .advance_processing_time(1)  # now 5
        .advance_processing_time(4)  # now 9
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(100), trigger=trigger.AfterProcessingTime(5), accumulation_mode=DISCARDING),
        [
            P("k", [1], W(0, 100), EOW100, 0, EARLY, True, -1),
            P("k", [101], W(100, 200), 200 * US - 1, 0, EARLY, True, -1),
        ],
    )


def test_repeatedly_after_any() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # count 1; processing deadline 10
        .add_elements(kvs("k", 2, 3))  # count 3: fires, and both sub-triggers restart
        .add_elements(kvs("k", 4))  # count 1; deadline 0 + 10
        .advance_processing_time(10)  # the deadline fires [4]
        .add_elements(kvs("k", 5))
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(100),
            trigger=trigger.Repeatedly(trigger.AfterAny(trigger.AfterCount(3), trigger.AfterProcessingTime(10))),
            accumulation_mode=DISCARDING,
        ),
        [
            P("k", [1, 2, 3], W(0, 100), EOW100, 0, EARLY, False, -1),
            P("k", [4], W(0, 100), EOW100, 1, EARLY, False, -1),
            P("k", [5], W(0, 100), EOW100, 2, ON_TIME, True, 0),
        ],
    )


def test_after_all_waits_for_every_sub_trigger() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # count 1; deadline 5
        .advance_processing_time(6)  # the deadline passed, but the count is not there yet
        .add_elements(kvs("k", 2))  # count 2 and past the deadline: fires and finishes
        .add_elements(kvs("k", 3))  # closed: dropped
        .advance_watermark_to_infinity()
    )
    result = run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(100),
            trigger=trigger.AfterAll(trigger.AfterCount(2), trigger.AfterProcessingTime(5)),
            accumulation_mode=DISCARDING,
        ),
        [P("k", [1, 2], W(0, 100), EOW100, 0, EARLY, True, -1)],
    )
    assert (dropped(result), dropped_closed(result)) == (0, 1)


def test_after_all_of_counts() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))  # AfterCount(2) ready, AfterCount(3) not
        .add_elements(kvs("k", 3))  # both: fires and finishes
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterAll(trigger.AfterCount(2), trigger.AfterCount(3)),
            accumulation_mode=DISCARDING,
        ),
        [P("k", [1, 2, 3], W(0, 10), EOW10, 0, EARLY, True, -1)],
    )


def test_after_all_of_a_count_and_the_watermark() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))
        .advance_watermark_to(10)  # the watermark part is ready, the count (2) is not
        .add_elements(kvs("k", 2))  # now both: the first firing past the end, caused by data: LATE
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterAll(trigger.AfterCount(2), trigger.AfterWatermark()),
            accumulation_mode=DISCARDING,
            allowed_lateness=100,
        ),
        [P("k", [1, 2], W(0, 10), EOW10, 0, LATE, True, 0)],
    )


def test_or_finally_until_the_watermark_fires_an_empty_on_time_pane() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))
        .advance_watermark_to(10)  # until fires on time; nothing new since the early pane
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.OrFinally(trigger.Repeatedly(trigger.AfterCount(2)), trigger.AfterWatermark()),
            accumulation_mode=DISCARDING,
            allowed_lateness=100,
        ),
        [
            P("k", [1, 2], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", [], W(0, 10), EOW10, 1, ON_TIME, True, 0),
        ],
    )


def test_after_each_runs_its_triggers_in_sequence() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))  # AfterCount(2) fires; AfterCount(3) is next
        .add_elements(kvs("k", 3, 4))  # 2 of 3
        .add_elements(kvs("k", 5))  # 3: fires, the sequence is finished
        .add_elements(kvs("k", 6))  # closed: dropped
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(100),
            trigger=trigger.AfterEach(trigger.AfterCount(2), trigger.AfterCount(3)),
            accumulation_mode=DISCARDING,
        ),
        [
            P("k", [1, 2], W(0, 100), EOW100, 0, EARLY, False, -1),
            P("k", [3, 4, 5], W(0, 100), EOW100, 1, EARLY, True, -1),
        ],
    )


def test_after_each_count_then_watermark_then_late_count() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))  # AfterCount(2): early pane
        .add_elements(kvs("k", 3))  # AfterWatermark waits for the end of the window
        .advance_watermark_to(10)  # on time
        .add_elements(kvs("k", 4))  # AfterCount(1): late pane, the sequence finishes
        .add_elements(kvs("k", 5))  # closed: dropped
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterEach(trigger.AfterCount(2), trigger.AfterWatermark(), trigger.AfterCount(1)),
            accumulation_mode=DISCARDING,
            allowed_lateness=50,
        ),
        [
            P("k", [1, 2], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", [3], W(0, 10), EOW10, 1, ON_TIME, False, 0),
            P("k", [4], W(0, 10), EOW10, 2, LATE, True, 1),
        ],
    )


def test_or_finally_fires_as_its_trigger_until_until_fires() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))  # main fires (2); until has 2 of 5
        .add_elements(kvs("k", 3))
        .add_elements(kvs("k", 4))  # main fires (2 since); until 4 of 5
        .add_elements(kvs("k", 5))  # until fires: last pane
        .add_elements(kvs("k", 6))  # closed: dropped
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(100),
            trigger=trigger.OrFinally(trigger.Repeatedly(trigger.AfterCount(2)), trigger.AfterCount(5)),
            accumulation_mode=DISCARDING,
        ),
        [
            P("k", [1, 2], W(0, 100), EOW100, 0, EARLY, False, -1),
            P("k", [3, 4], W(0, 100), EOW100, 1, EARLY, False, -1),
            P("k", [5], W(0, 100), EOW100, 2, EARLY, True, -1),
        ],
    )


def test_always_fires_after_every_bundle() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))
        .add_elements(kvs("k", 3))
        .advance_watermark_to(10)  # no new element: nothing fires
        .add_elements(kvs("k", 4))  # first firing past the end of the window, caused by data: LATE
        .add_elements(kvs("k", 5))
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), trigger=trigger.Always(), accumulation_mode=DISCARDING, allowed_lateness=10),
        [
            P("k", [1, 2], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("k", [3], W(0, 10), EOW10, 1, EARLY, False, -1),
            P("k", [4], W(0, 10), EOW10, 2, LATE, False, 0),
            P("k", [5], W(0, 10), EOW10, 3, LATE, False, 1),
        ],
    )


def test_never_fires_only_at_window_expiry() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))
        .advance_watermark_to(10)  # end of window: Never does not fire
        .add_elements(kvs("k", 3))  # late, within lateness: buffered
        .advance_watermark_to(20)  # expiry (wm > 14.999999): the one final pane
        .add_elements(kvs("k", 4))  # too late: dropped
        .advance_watermark_to_infinity()
    )
    result = run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), trigger=trigger.Never(), accumulation_mode=DISCARDING, allowed_lateness=5),
        [P("k", [1, 2, 3], W(0, 10), EOW10, 0, ON_TIME, True, 0)],
    )
    assert dropped(result) == 1


def test_a_finished_trigger_closes_the_window_for_later_input() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))
        .advance_watermark_to(10)  # AfterWatermark() without late: finishes on time
        .add_elements(kvs("k", 2))  # within lateness, but the window is closed
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10), trigger=trigger.AfterWatermark(), accumulation_mode=ACCUMULATING, allowed_lateness=100
        ),
        [P("k", [1], W(0, 10), EOW10, 0, ON_TIME, True, 0)],
    )


def test_repeatedly_after_count_on_sessions_counts_merged_windows_together() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # [1,11): count 1
        .add_elements(kvs("k", 15))  # [15,25): count 1
        .add_elements(kvs("k", 8))  # [8,18) bridges both: [1,25) holds 3 elements
        .add_elements(kvs("k", 30))  # [30,40): count 1, fires only at expiry
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.Sessions(10), trigger=trigger.Repeatedly(trigger.AfterCount(3)), accumulation_mode=DISCARDING),
        [
            P("k", [1, 8, 15], W(1, 25), 25 * US - 1, 0, EARLY, False, -1),
            P("k", [30], W(30, 40), 40 * US - 1, 0, ON_TIME, True, 0),
        ],
    )


def test_processing_time_deadline_survives_a_session_merge() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))  # [1,11) fires at processing time 5
        .advance_processing_time(3)
        .add_elements(kvs("k", 5))  # merges into [1,15); the earlier deadline (5) stays
        .advance_processing_time(2)
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.Sessions(10), trigger=trigger.Repeatedly(trigger.AfterProcessingTime(5)), accumulation_mode=DISCARDING
        ),
        [P("k", [1, 5], W(1, 15), 15 * US - 1, 0, EARLY, False, -1)],
    )


def test_a_closed_session_absorbs_new_input_and_drops_it() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1, 2))  # [1,12) fires and finishes
        .add_elements(kvs("k", 5))  # [5,15) merges into the closed window: dropped
        .add_elements(kvs("k", 50))  # a new session
        .advance_watermark_to_infinity()
    )
    result = run_panes(
        stream,
        td.WindowInto(window.Sessions(10), trigger=trigger.AfterCount(2), accumulation_mode=DISCARDING),
        [
            P("k", [1, 2], W(1, 12), 12 * US - 1, 0, EARLY, True, -1),
            P("k", [50], W(50, 60), 60 * US - 1, 0, ON_TIME, True, 0),
        ],
    )
    assert (dropped(result), dropped_closed(result)) == (0, 1)


def test_on_time_pane_is_last_when_the_window_expires_at_that_firing() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 1))
        .add_elements(kvs("k", 12))
        .advance_watermark_to(10)  # [0,10) on time but expires only when wm > 14.999999
        .advance_watermark_to_infinity()  # [10,20): on time and expired in one move
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.AfterWatermark(early=trigger.AfterCount(5), late=trigger.AfterCount(1)),
            accumulation_mode=DISCARDING,
            allowed_lateness=5,
        ),
        [
            P("k", [1], W(0, 10), EOW10, 0, ON_TIME, False, 0),
            P("k", [12], W(10, 20), 20 * US - 1, 0, ON_TIME, True, 0),
        ],
    )


def test_elements_of_one_bundle_for_many_keys_and_windows_fire_independently() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("a", 1, 2) + kvs("b", 3) + kvs("a", 11))
        .add_elements(kvs("b", 4) + kvs("a", 12))
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), trigger=trigger.Repeatedly(trigger.AfterCount(2)), accumulation_mode=DISCARDING),
        [
            P("a", [1, 2], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("b", [3, 4], W(0, 10), EOW10, 0, EARLY, False, -1),
            P("a", [11, 12], W(10, 20), 20 * US - 1, 0, EARLY, False, -1),
        ],
    )


# -- watermark holds ---------------------------------------------------------------------
def test_output_at_earliest_holds_a_downstream_window_on_time() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 2, 6))
        .advance_watermark_to(10)  # upstream [0,20) still pending: its pane (ts 2) holds the watermark at 2
        .advance_watermark_to(30)
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline()
    up = (
        p
        | stream
        | "Up window" >> td.WindowInto(window.FixedWindows(20), timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_EARLIEST)
        | "Up" >> td.GroupByKey()
    )
    assert_that(up | "Up panes" >> td.ParDo(RecordPanes()), equal_to([P("k", [2, 6], W(0, 20), 2 * US, 0, ON_TIME, True, 0)]), label="up")
    down = (
        up
        | td.MapTuple(lambda k, vs: (k, sum(vs)))
        | "Down window" >> td.WindowInto(window.FixedWindows(5))
        | "Down" >> td.GroupByKey()
    )
    # Without the hold the downstream watermark would reach 10 and drop the pane stamped 2.
    assert_that(
        down | "Down panes" >> td.ParDo(RecordPanes()),
        equal_to([P("k", [8], W(0, 5), 5 * US - 1, 0, ON_TIME, True, 0)]),
        label="down",
    )
    result = p.run()
    result.wait_until_finish()
    assert dropped(result, "Down") == 0


@pytest.mark.parametrize(
    "combiner, on_time_us",
    [
        (window.TimestampCombiner.OUTPUT_AT_EARLIEST, 3 * US),
        (window.TimestampCombiner.OUTPUT_AT_LATEST, 5 * US),
        (window.TimestampCombiner.OUTPUT_AT_EARLIEST_TRANSFORMED, 3 * US),
    ],
    ids=lambda c: getattr(c, "name", ""),
)
def test_an_element_already_late_cannot_hold_its_pane_falls_back_to_end_of_window(
    combiner: window.TimestampCombiner, on_time_us: int
) -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 3, 5))
        .advance_watermark_to(10)
        .add_elements(kvs("k", 4))  # 4 is behind the output watermark (10)
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(window.FixedWindows(10), timestamp_combiner=combiner, allowed_lateness=100),
        [
            P("k", [3, 5], W(0, 10), on_time_us, 0, ON_TIME, False, 0),
            P("k", [4], W(0, 10), EOW10, 1, LATE, False, 1),
        ],
    )


def test_output_at_latest_early_panes_use_the_latest_timestamp_of_the_pane() -> None:
    stream = (
        TestStream()
        .add_elements(kvs("k", 3, 1))
        .add_elements(kvs("k", 2, 4))
        .advance_watermark_to_infinity()
    )
    run_panes(
        stream,
        td.WindowInto(
            window.FixedWindows(10),
            trigger=trigger.Repeatedly(trigger.AfterCount(2)),
            accumulation_mode=DISCARDING,
            timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_LATEST,
        ),
        [
            P("k", [1, 3], W(0, 10), 3 * US, 0, EARLY, False, -1),
            P("k", [2, 4], W(0, 10), 4 * US, 1, EARLY, False, -1),
        ],
    )


# -- CombinePerKey, lifted (pre-combined before the shuffle) or not -----------------------


@pytest.mark.parametrize(
    "lift",
    [True, False],
    ids=["lifted", "unlifted"],
)
def test_lifted_combine_fires_one_late_pane_per_late_bundle(lift: bool) -> None:
    stream = (
        TestStream()
        .add_elements([TV(("k", 1), 1)])
        .advance_watermark_to(10)
        .add_elements([TV(("k", 2), 2)])
        .add_elements([TV(("k", 3), 3)])
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline(runner=DirectRunner(lift_combiners=lift))
    sums = p | stream | td.WindowInto(window.FixedWindows(10), allowed_lateness=100) | td.CombinePerKey(sum)
    assert_that(
        sums | td.ParDo(RecordPanes()),
        equal_to(
            [
                P("k", 1, W(0, 10), EOW10, 0, ON_TIME, False, 0),
                P("k", 2, W(0, 10), EOW10, 1, LATE, False, 1),
                P("k", 3, W(0, 10), EOW10, 2, LATE, False, 2),
            ]
        ),
    )
    p.run().wait_until_finish()


@pytest.mark.parametrize(
    "lift",
    [True, False],
    ids=["lifted", "unlifted"],
)
def test_combine_counts_each_dropped_element(lift: bool) -> None:
    stream = (
        TestStream()
        .advance_watermark_to(20)
        .add_elements([TV(("k", 1), 1), TV(("k", 2), 2)])  # both too late for [0,10)
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline(runner=DirectRunner(lift_combiners=lift))
    p | stream | td.WindowInto(window.FixedWindows(10)) | "Group" >> td.CombinePerKey(sum)
    result = p.run()
    result.wait_until_finish()
    assert dropped(result) == 2


# -- errors at construction --------------------------------------------------------------
def test_non_default_trigger_without_accumulation_mode_names_the_step() -> None:
    p = td.Pipeline()
    pcoll = p | td.Create([("k", 1)])
    with pytest.raises(td.PipelineError, match=r"^step 'Win': the trigger AfterCount\(2\) needs an accumulation mode"):
        pcoll | "Win" >> td.WindowInto(window.FixedWindows(10), trigger=trigger.AfterCount(2))


def test_default_trigger_needs_no_accumulation_mode() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([("k", 1)])
            | td.WindowInto(window.FixedWindows(10), trigger=trigger.DefaultTrigger())
            | td.GroupByKey()
        )
        assert_that(out, equal_to([("k", [1])]))


@pytest.mark.parametrize("make", [td.GroupByKey, lambda: td.CombinePerKey(sum)], ids=["GroupByKey", "CombinePerKey"])
def test_keyed_transform_of_unbounded_global_window_default_trigger_names_the_step(make: Any) -> None:
    p = td.Pipeline()
    stream = p | TestStream().add_elements([("k", 1)]).advance_watermark_to_infinity()
    with pytest.raises(td.PipelineError, match=r"^step 'Keyed': .* of an unbounded PCollection in the global window"):
        stream | "Keyed" >> make()


def test_unbounded_global_window_with_a_trigger_is_accepted() -> None:
    stream = (
        TestStream()
        .add_elements([("k", 1), ("k", 2)])
        .add_elements([("k", 3)])
        .advance_watermark_to_infinity()
    )
    gw_max = window.GlobalWindow().max_timestamp().micros
    run_panes(
        stream,
        td.WindowInto(window.GlobalWindows(), trigger=trigger.Repeatedly(trigger.AfterCount(2)), accumulation_mode=DISCARDING),
        [
            P("k", [1, 2], window.GlobalWindow(), gw_max, 0, EARLY, False, -1),
            P("k", [3], window.GlobalWindow(), gw_max, 1, ON_TIME, True, 0),
        ],
    )


def test_test_stream_watermark_moving_backwards_is_an_error_naming_both_values() -> None:
    with pytest.raises(
        ValueError,
        match=r"^TestStream\.advance_watermark_to\(Timestamp\(5\)\): the watermark must strictly advance, "
        r"but it is already at Timestamp\(10\)$",
    ):
        TestStream().advance_watermark_to(10).advance_watermark_to(5)


def test_test_stream_processing_time_must_advance_names_the_step() -> None:
    stream = TestStream().add_elements([("k", 1)]).advance_processing_time(0)
    p = td.Pipeline()
    with pytest.raises(td.PipelineError, match=r"^step 'Clock': advance_processing_time needs a positive duration, got 0"):
        p | "Clock" >> stream
