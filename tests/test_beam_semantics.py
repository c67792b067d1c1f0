"""Beam-exact event-time semantics, on every runner (direct, Ray, micro-batch).

Each expected pane below is derived by hand from SEMANTICS.md, as
``(key, values, window, timestamp µs, index, timing, is_first, is_last,
nonspeculative_index)`` (see ``pane_support.P``):

4. a TestStream watermark must strictly advance;
5. Timestamp / Duration arithmetic stays in [MIN_TIMESTAMP, MAX_TIMESTAMP];
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


cloudpickle.register_pickle_by_value(sys.modules[__name__])
