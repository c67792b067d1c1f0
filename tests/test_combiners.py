"""tidal.combiners: the standard combining transforms and their CombineFns."""

from __future__ import annotations

import math
from typing import Any

import pytest

import tidal as td
from tidal import combiners, window
from tidal.combiners import (
    Count,
    CountCombineFn,
    Latest,
    LatestCombineFn,
    Mean,
    MeanCombineFn,
    Sample,
    SampleCombineFn,
    ToDict,
    ToDictCombineFn,
    ToList,
    ToListCombineFn,
    ToSet,
    ToSetCombineFn,
    Top,
    TopCombineFn,
)
from tidal.model.combinefn import MaxCombineFn, MinCombineFn, SumCombineFn
from tidal.testing import TestWindowedValue, assert_that, equal_to, is_empty


def at(value: Any, seconds: float) -> window.TimestampedValue:
    return window.TimestampedValue(value, seconds)


# -- Count --------------------------------------------------------------------------
def test_count_globally_per_key_per_element() -> None:
    with td.Pipeline() as p:
        words = p | "words" >> td.Create(["a", "b", "a", "c", "a"])
        assert_that(words | Count.Globally(), equal_to([5]), label="globally")
        assert_that(words | Count.PerElement(), equal_to([("a", 3), ("b", 1), ("c", 1)]), label="per element")
        pairs = p | "pairs" >> td.Create([("x", 10), ("y", 20), ("x", 30)])
        assert_that(pairs | Count.PerKey(), equal_to([("x", 2), ("y", 1)]), label="per key")


def test_count_globally_of_empty_input_is_zero() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([]) | Count.Globally(), equal_to([0]))


def test_count_globally_without_defaults_of_empty_input_is_empty() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([]) | Count.Globally().without_defaults(), is_empty())


def test_count_per_window() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at("a", 1), at("a", 2), at("a", 12)])
            | td.WindowInto(window.FixedWindows(10))
            | Count.PerElement()
        )
        w0, w1 = window.IntervalWindow(0, 10), window.IntervalWindow(10, 20)
        assert_that(
            out,
            equal_to([TestWindowedValue(("a", 2), w0.max_timestamp(), [w0]), TestWindowedValue(("a", 1), w1.max_timestamp(), [w1])]),
            reify_windows=True,
        )


# -- Mean ---------------------------------------------------------------------------
def test_mean_globally_and_per_key() -> None:
    with td.Pipeline() as p:
        assert_that(p | "nums" >> td.Create([1, 2, 3, 4]) | Mean.Globally(), equal_to([2.5]), label="globally")
        pairs = p | "pairs" >> td.Create([("a", 1), ("a", 4), ("b", 10), ("a", 7)])
        assert_that(pairs | Mean.PerKey(), equal_to([("a", 4.0), ("b", 10.0)]), label="per key")


def test_mean_globally_of_empty_input_is_nan() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([]) | Mean.Globally() | td.Map(math.isnan)
        assert_that(out, equal_to([True]))


# -- Top ----------------------------------------------------------------------------
def test_top_largest_and_smallest() -> None:
    with td.Pipeline() as p:
        nums = p | td.Create([5, 1, 9, 3, 7, 9])
        assert_that(nums | Top.Largest(3), equal_to([[9, 9, 7]]), label="largest")
        assert_that(nums | Top.Smallest(2), equal_to([[1, 3]]), label="smallest")
        assert_that(nums | "of" >> Top.Of(2), equal_to([[9, 9]]), label="check of")
        assert_that(nums | "of reverse" >> Top.Of(2, reverse=True), equal_to([[1, 3]]), label="check of reverse")


def test_top_of_with_key() -> None:
    with td.Pipeline() as p:
        words = p | td.Create(["bb", "a", "dddd", "ccc"])
        assert_that(words | Top.Of(2, key=len), equal_to([["dddd", "ccc"]]), label="longest")
        assert_that(words | "shortest" >> Top.Of(2, key=len, reverse=True), equal_to([["a", "bb"]]), label="check shortest")


def test_top_with_more_requested_than_available() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([2, 1]) | Top.Largest(5), equal_to([[2, 1]]))


def test_top_of_empty_input_is_an_empty_list() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([]) | Top.Largest(3), equal_to([[]]))


def test_top_per_key_with_key() -> None:
    with td.Pipeline() as p:
        pairs = p | td.Create([("a", "xx"), ("a", "x"), ("a", "xxx"), ("b", "y")])
        assert_that(pairs | Top.PerKey(2, key=len), equal_to([("a", ["xxx", "xx"]), ("b", ["y"])]), label="per key")
        assert_that(pairs | Top.SmallestPerKey(1), equal_to([("a", ["x"]), ("b", ["y"])]), label="smallest per key")
        assert_that(pairs | Top.LargestPerKey(1), equal_to([("a", ["xxx"]), ("b", ["y"])]), label="largest per key")


def test_top_over_many_elements_is_exact() -> None:
    values = [(i * 7919) % 1000 for i in range(1000)]  # a permutation of 0..999
    with td.Pipeline() as p:
        assert_that(p | td.Create(values) | Top.Largest(4), equal_to([[999, 998, 997, 996]]))


# -- Latest -------------------------------------------------------------------------
def test_latest_globally() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([at("old", 1), at("newest", 30), at("mid", 5)]) | Latest.Globally()
        assert_that(out, equal_to(["newest"]))


def test_latest_per_key() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at(("a", 1), 10), at(("a", 2), 20), at(("b", 3), 5), at(("a", 0), 15)])
            | Latest.PerKey()
        )
        assert_that(out, equal_to([("a", 2), ("b", 3)]))


def test_latest_globally_per_window() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at("a", 1), at("b", 2), at("c", 15), at("d", 12)])
            | td.WindowInto(window.FixedWindows(10))
            | Latest.Globally().without_defaults()
        )
        assert_that(out, equal_to(["b", "c"]))


def test_standard_combiners_per_window_without_defaults() -> None:
    with td.Pipeline() as p:
        windowed = (
            p
            | td.Create([at(5, 1), at(3, 2), at(9, 15)])
            | td.WindowInto(window.FixedWindows(10))
        )
        assert_that(windowed | Top.Largest(1).without_defaults(), equal_to([[5], [9]]), label="top")
        assert_that(windowed | Mean.Globally().without_defaults(), equal_to([4.0, 9.0]), label="mean")
        assert_that(windowed | ToList().without_defaults() | td.Map(sorted), equal_to([[3, 5], [9]]), label="list")
        assert_that(windowed | Count.Globally().without_defaults(), equal_to([2, 1]), label="count")


def test_latest_globally_of_empty_input_is_none() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([]) | Latest.Globally(), equal_to([None]))


# -- ToList / ToDict / ToSet --------------------------------------------------------
def test_to_list_to_dict_to_set() -> None:
    with td.Pipeline() as p:
        nums = p | "nums" >> td.Create([3, 1, 3])
        assert_that(nums | ToList() | td.Map(sorted), equal_to([[1, 3, 3]]), label="list")
        assert_that(nums | ToSet(), equal_to([{1, 3}]), label="set")
        pairs = p | "pairs" >> td.Create([("a", 1), ("b", 2)])
        assert_that(pairs | ToDict(), equal_to([{"a": 1, "b": 2}]), label="dict")


def test_to_list_of_empty_input() -> None:
    with td.Pipeline() as p:
        empty = p | td.Create([])
        assert_that(empty | ToList(), equal_to([[]]), label="list")
        assert_that(empty | ToSet(), equal_to([set()]), label="set")
        assert_that(empty | ToDict(), equal_to([{}]), label="dict")


# -- Sample -------------------------------------------------------------------------
def test_sample_fixed_size_globally() -> None:
    population = list(range(100))
    with td.Pipeline() as p:
        sample = p | td.Create(population) | Sample.FixedSizeGlobally(5)
        check = sample | td.Map(lambda s: (len(s), len(set(s)), set(s) <= set(population)))
        assert_that(check, equal_to([(5, 5, True)]))


def test_sample_larger_than_the_input_is_the_whole_input() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([1, 2, 3]) | Sample.FixedSizeGlobally(10) | td.Map(sorted)
        assert_that(out, equal_to([[1, 2, 3]]))


def test_sample_fixed_size_per_key() -> None:
    pairs = [("a", i) for i in range(50)] + [("b", 100 + i) for i in range(2)]
    with td.Pipeline() as p:
        out = p | td.Create(pairs) | Sample.FixedSizePerKey(3)
        check = out | td.MapTuple(
            lambda k, s: (k, len(s), len(set(s)), all((k == "a" and 0 <= v < 50) or (k == "b" and v in (100, 101)) for v in s))
        )
        assert_that(check, equal_to([("a", 3, 3, True), ("b", 2, 2, True)]))


def test_sample_of_zero() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([1, 2]) | Sample.FixedSizeGlobally(0), equal_to([[]]))


# -- the CombineFns directly ---------------------------------------------------------
def run_fn(fn: td.CombineFn, *parts: list[Any]) -> Any:
    """Accumulate each part separately, merge the accumulators, extract the output."""
    accs = []
    for part in parts:
        acc = fn.create_accumulator()
        for x in part:
            acc = fn.add_input(acc, x)
        accs.append(acc)
    return fn.extract_output(fn.merge_accumulators(accs))


def test_count_combine_fn() -> None:
    fn = CountCombineFn()
    assert fn.create_accumulator() == 0
    assert fn.add_input(0, "x") == 1
    assert fn.add_inputs(2, ["a", "b", "c"]) == 5
    assert fn.merge_accumulators([1, 2, 3]) == 6
    assert fn.extract_output(4) == 4
    assert run_fn(fn, ["a", "b"], [], ["c"]) == 3


def test_mean_combine_fn() -> None:
    fn = MeanCombineFn()
    assert fn.create_accumulator() == (0, 0)
    assert fn.add_input((0, 0), 4) == (4, 1)
    assert fn.merge_accumulators([(4, 1), (6, 3)]) == (10, 4)
    assert fn.extract_output((10, 4)) == 2.5
    assert math.isnan(fn.extract_output(fn.create_accumulator()))
    assert run_fn(fn, [1, 2], [3], []) == 2.0
    assert fn.apply([2, 4, 9]) == 5.0


def test_top_combine_fn() -> None:
    fn = TopCombineFn(2)
    acc = fn.create_accumulator()
    assert acc == []
    for x in [5, 1, 8]:
        acc = fn.add_input(acc, x)
    assert fn.extract_output(acc) == [8, 5]
    assert fn.merge_accumulators([[5, 1], [9], [2, 7]]) == [9, 7]
    assert run_fn(fn, list(range(40)), [100, -1]) == [100, 39]
    assert run_fn(TopCombineFn(2, reverse=True), [5, 3], [4, 0]) == [0, 3]
    assert run_fn(TopCombineFn(1, key=lambda s: -len(s)), ["aaa", "b"], ["cc"]) == ["b"]
    assert combiners.Largest(1).apply([3, 9, 4]) == [9]
    assert combiners.Smallest(2).apply([3, 9, 4]) == [3, 4]


def test_top_combine_fn_needs_a_non_negative_count() -> None:
    with pytest.raises(ValueError, match="Top needs a non-negative count, got -1"):
        TopCombineFn(-1)


def test_latest_combine_fn() -> None:
    fn = LatestCombineFn()
    assert fn.create_accumulator() is None
    acc = fn.add_input(None, ("a", 10))
    acc = fn.add_input(acc, ("b", 5))
    assert acc == ("a", 10)
    assert fn.merge_accumulators([None, ("x", 3), ("y", 7)]) == ("y", 7)
    assert fn.extract_output(("y", 7)) == "y"
    assert fn.extract_output(None) is None


def test_to_list_to_dict_to_set_combine_fns() -> None:
    assert sorted(run_fn(ToListCombineFn(), [1, 2], [3])) == [1, 2, 3]
    assert run_fn(ToDictCombineFn(), [("a", 1)], [("b", 2)]) == {"a": 1, "b": 2}
    assert run_fn(ToSetCombineFn(), [1, 2], [2, 3]) == {1, 2, 3}
    assert ToListCombineFn().extract_output(ToListCombineFn().create_accumulator()) == []


def test_sample_combine_fn() -> None:
    fn = SampleCombineFn(3)
    out = run_fn(fn, list(range(10)), list(range(10, 20)))
    assert len(out) == 3 and len(set(out)) == 3 and set(out) <= set(range(20))
    assert sorted(run_fn(SampleCombineFn(5), [1, 2], [3])) == [1, 2, 3]
    with pytest.raises(ValueError, match="Sample needs a non-negative size"):
        SampleCombineFn(-2)


def test_builtin_combine_fns() -> None:
    assert run_fn(SumCombineFn(), [1, 2], [3]) == 6
    assert run_fn(MaxCombineFn(), [1, 7], [], [3]) == 7
    assert run_fn(MinCombineFn(), [4], [2, 9]) == 2
    with pytest.raises(ValueError, match=r"max\(\) of an empty input"):
        run_fn(MaxCombineFn(), [])


def test_maybe_from_callable_maps_builtins_to_combine_fns() -> None:
    assert isinstance(td.CombineFn.maybe_from_callable(sum), SumCombineFn)
    assert isinstance(td.CombineFn.maybe_from_callable(max), MaxCombineFn)
    assert isinstance(td.CombineFn.maybe_from_callable(min), MinCombineFn)
    wrapped = td.CombineFn.maybe_from_callable(lambda vs: sum(vs))
    assert run_fn(wrapped, list(range(15)), [100]) == 205
    with pytest.raises(TypeError, match="expected a CombineFn or a callable"):
        td.CombineFn.maybe_from_callable(3)  # type: ignore[arg-type]
