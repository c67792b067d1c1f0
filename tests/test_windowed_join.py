"""WindowedJoin: inner and outer joins per window, with empty sides, exact on every runner.

Expected pairs are derived by hand: per key and 10 s window, every left
value with every right value; an outer join adds each value that has no
partner in its window, paired with None. Each pair is recorded with its
window and timestamp (the end of its window, as the CoGroupByKey's pane).
"""

from __future__ import annotations

from typing import Any

import pytest

import tidal as td
from tidal import window
from tidal.model.pipeline import PipelineError
from tidal.testing import assert_that, equal_to
from tidal.transforms.join import WindowedJoin

W = window.IntervalWindow
US = 1_000_000
RUNNERS = ["direct", "ray", "microbatch"]

LEFT = [("a", "l1", 1), ("a", "l2", 2), ("b", "l3", 3), ("a", "l4", 12)]
RIGHT = [("a", "r1", 4), ("c", "r2", 5), ("a", "r3", 25)]


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


def _stamp(e: Any) -> Any:
    return window.TimestampedValue((e[0], e[1]), e[2])


def _record(kv: Any, w: Any = td.DoFn.WindowParam, ts: Any = td.DoFn.TimestampParam) -> Any:
    return kv, w, ts.micros


def run_join(runner: str, how: str, left: list[Any], right: list[Any], expected: list[Any]) -> None:
    p = td.Pipeline(runner=runner)
    lc = p | "Left" >> td.Create(left or [("x", "never", 0)])
    rc = p | "Right" >> td.Create(right or [("x", "never", 0)])
    # An empty side: a Create whose element is filtered out keeps the same element type.
    lpc = lc | "StampLeft" >> td.Map(_stamp) | "KeepLeft" >> td.Filter(lambda kv: kv[1] != "never")
    rpc = rc | "StampRight" >> td.Map(_stamp) | "KeepRight" >> td.Filter(lambda kv: kv[1] != "never")
    joined = (lpc, rpc) | "Join" >> WindowedJoin(how, windowfn=window.FixedWindows(10))
    assert_that(joined | "Record" >> td.Map(_record), equal_to(expected))
    p.run().wait_until_finish()


W0, W10, W20 = W(0, 10), W(10, 20), W(20, 30)
E0, E10, E20 = 10 * US - 1, 20 * US - 1, 30 * US - 1
MATCHED = [(("a", ("l1", "r1")), W0, E0), (("a", ("l2", "r1")), W0, E0)]
LEFT_ONLY = [(("b", ("l3", None)), W0, E0), (("a", ("l4", None)), W10, E10)]
RIGHT_ONLY = [(("c", (None, "r2")), W0, E0), (("a", (None, "r3")), W20, E20)]


@pytest.mark.parametrize(
    "how, expected",
    [
        ("inner", MATCHED),
        ("left", MATCHED + LEFT_ONLY),
        ("right", MATCHED + RIGHT_ONLY),
        ("full", MATCHED + LEFT_ONLY + RIGHT_ONLY),
    ],
)
def test_joins_pair_values_of_a_key_within_a_window(runner: str, how: str, expected: list[Any]) -> None:
    run_join(runner, how, LEFT, RIGHT, expected)


@pytest.mark.parametrize(
    "how, expected",
    [
        ("inner", []),
        ("left", [(("a", ("l1", None)), W0, E0), (("a", ("l4", None)), W10, E10)]),
        ("right", []),
        ("full", [(("a", ("l1", None)), W0, E0), (("a", ("l4", None)), W10, E10)]),
    ],
)
def test_an_empty_right_side(runner: str, how: str, expected: list[Any]) -> None:
    run_join(runner, how, [("a", "l1", 1), ("a", "l4", 12)], [], expected)


@pytest.mark.parametrize("how", ["inner", "full"])
def test_an_empty_left_side(runner: str, how: str) -> None:
    expected = [] if how == "inner" else [(("c", (None, "r2")), W0, E0)]
    run_join(runner, how, [], [("c", "r2", 5)], expected)


def test_an_unknown_join_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="WindowedJoin how must be one of inner, left, right, full; got 'outer'"):
        WindowedJoin("outer")


def test_a_join_of_one_pcollection_is_refused() -> None:
    p = td.Pipeline()
    pc = p | td.Create([("a", 1)])
    with pytest.raises(PipelineError, match=r"WindowedJoin applies to a pair \(left, right\) of PCollections"):
        _ = pc | WindowedJoin()
