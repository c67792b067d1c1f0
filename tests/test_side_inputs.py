"""Side inputs: every view, as positional and keyword extra arguments, and their errors."""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.testing import assert_that, equal_to


class AddSide(td.DoFn):
    def process(self, x: int, side: Any, *, scale: int = 1) -> Iterable[Any]:
        yield x * scale + side


class Lookup(td.DoFn):
    def process(self, key: str, table: dict[str, Any]) -> Iterable[Any]:
        yield key, table.get(key)


# -- AsSingleton --------------------------------------------------------------------
def test_as_singleton_positional_in_map() -> None:
    with td.Pipeline() as p:
        side = p | "side" >> td.Create([100])
        out = p | "main" >> td.Create([1, 2]) | td.Map(lambda x, s: x + s, td.AsSingleton(side))
        assert_that(out, equal_to([101, 102]))


def test_as_singleton_keyword_in_map() -> None:
    with td.Pipeline() as p:
        side = p | "side" >> td.Create([100])
        out = p | "main" >> td.Create([1, 2]) | td.Map(lambda x, offset=0: x + offset, offset=td.AsSingleton(side))
        assert_that(out, equal_to([101, 102]))


def test_as_singleton_in_flatmap() -> None:
    with td.Pipeline() as p:
        n = p | "n" >> td.Create([3])
        out = p | "main" >> td.Create(["a", "b"]) | td.FlatMap(lambda x, k: [x] * k, td.AsSingleton(n))
        assert_that(out, equal_to(["a"] * 3 + ["b"] * 3))


def test_as_singleton_in_pardo_positional_and_keyword_mixed_with_constants() -> None:
    with td.Pipeline() as p:
        side = p | "side" >> td.Create([5])
        factor = p | "factor" >> td.Create([10])
        out = p | "main" >> td.Create([1, 2]) | td.ParDo(AddSide(), td.AsSingleton(side), scale=td.AsSingleton(factor))
        assert_that(out, equal_to([15, 25]), label="both sides")
        constant = p | "main2" >> td.Create([1]) | "Const" >> td.ParDo(AddSide(), td.AsSingleton(side), scale=3)
        assert_that(constant, equal_to([8]), label="side and constant")


def test_as_singleton_default_value_on_empty_side_input() -> None:
    with td.Pipeline() as p:
        empty = p | "empty" >> td.Create([])
        out = p | "main" >> td.Create([1]) | td.Map(lambda x, s: (x, s), td.AsSingleton(empty, default_value="none"))
        assert_that(out, equal_to([(1, "none")]))


def test_as_singleton_default_value_may_be_none() -> None:
    with td.Pipeline() as p:
        empty = p | "empty" >> td.Create([])
        out = p | "main" >> td.Create([1]) | td.Map(lambda x, s: (x, s), td.AsSingleton(empty, default_value=None))
        assert_that(out, equal_to([(1, None)]))


def test_as_singleton_of_empty_without_default_is_an_error() -> None:
    p = td.Pipeline()
    empty = p | "empty" >> td.Create([])
    _ = p | "main" >> td.Create([1]) | "UseEmpty" >> td.Map(lambda x, s: s, td.AsSingleton(empty))
    with pytest.raises(td.PipelineExecutionError) as info:
        p.run()
    message = str(info.value)
    assert message.startswith("step 'UseEmpty': AsSingleton(empty/Read(Create)) is empty and has no default_value")
    assert "default_value=..." in message


def test_as_singleton_over_several_elements_is_an_error_naming_the_step_and_count() -> None:
    p = td.Pipeline()
    side = p | "Several" >> td.Create([1, 2, 3, 4])
    _ = p | "main" >> td.Create([0]) | "UseSingleton" >> td.Map(lambda x, s: x + s, td.AsSingleton(side))
    with pytest.raises(td.PipelineExecutionError) as info:
        p.run()
    message = str(info.value)
    assert message.startswith("step 'UseSingleton': AsSingleton(Several/Read(Create)) has 4 elements (")
    assert ", ...); a singleton side input needs exactly one element" in message
    assert "use AsList / AsIter" in message


# -- AsIter / AsList ----------------------------------------------------------------
def test_as_iter_and_as_list() -> None:
    with td.Pipeline() as p:
        side = p | "side" >> td.Create([3, 1, 2])
        main = p | "main" >> td.Create(["x"])
        assert_that(main | "iter" >> td.Map(lambda x, it: (x, sorted(it)), td.AsIter(side)), equal_to([("x", [1, 2, 3])]), label="check iter")
        assert_that(main | "list" >> td.Map(lambda x, lst: (x, sorted(lst)), td.AsList(side)), equal_to([("x", [1, 2, 3])]), label="check list")


def test_as_list_is_a_list_and_as_iter_can_be_iterated_twice() -> None:
    with td.Pipeline() as p:
        side = p | "side" >> td.Create([1, 2])
        main = p | "main" >> td.Create([0])
        assert_that(main | "list" >> td.Map(lambda x, lst: type(lst).__name__, td.AsList(side)), equal_to(["list"]), label="type")
        assert_that(main | "iter" >> td.Map(lambda x, it: sum(it) + sum(it), td.AsIter(side)), equal_to([6]), label="twice")


def test_as_list_of_empty_side_input() -> None:
    with td.Pipeline() as p:
        empty = p | "empty" >> td.Create([])
        out = p | "main" >> td.Create([1]) | td.Map(lambda x, lst: (x, lst), td.AsList(empty))
        assert_that(out, equal_to([(1, [])]))


def test_as_list_keyword_in_flatmap() -> None:
    with td.Pipeline() as p:
        side = p | "side" >> td.Create([10, 20])
        out = p | "main" >> td.Create([1]) | td.FlatMap(lambda x, adds=(): [x + a for a in adds], adds=td.AsList(side))
        assert_that(out, equal_to([11, 21]))


def test_same_side_input_used_twice_in_one_step() -> None:
    with td.Pipeline() as p:
        side = p | "side" >> td.Create([2, 3])
        out = p | "main" >> td.Create([1]) | td.Map(lambda x, a, b: x + sum(a) * len(b), td.AsList(side), td.AsIter(side))
        assert_that(out, equal_to([11]))


# -- AsDict / AsMultiMap ------------------------------------------------------------
def test_as_dict_positional_in_pardo() -> None:
    with td.Pipeline() as p:
        table = p | "table" >> td.Create([("a", 1), ("b", 2)])
        out = p | "keys" >> td.Create(["a", "b", "c"]) | td.ParDo(Lookup(), td.AsDict(table))
        assert_that(out, equal_to([("a", 1), ("b", 2), ("c", None)]))


def test_as_dict_keyword_in_map() -> None:
    with td.Pipeline() as p:
        table = p | "table" >> td.Create({"a": 1})
        out = p | "keys" >> td.Create(["a"]) | td.Map(lambda k, table: table[k], table=td.AsDict(table))
        assert_that(out, equal_to([1]))


def test_as_multimap() -> None:
    with td.Pipeline() as p:
        pairs = p | "pairs" >> td.Create([("a", 1), ("b", 2), ("a", 3)])
        out = p | "keys" >> td.Create(["a", "b", "c"]) | td.Map(
            lambda k, mm: (k, sorted(mm.get(k, []))), td.AsMultiMap(pairs)
        )
        assert_that(out, equal_to([("a", [1, 3]), ("b", [2]), ("c", [])]))


def test_as_multimap_keyword_in_flatmap() -> None:
    with td.Pipeline() as p:
        pairs = p | "pairs" >> td.Create([("a", 1), ("a", 3)])
        out = p | "keys" >> td.Create(["a"]) | td.FlatMap(lambda k, mm=None: mm[k], mm=td.AsMultiMap(pairs))
        assert_that(out, equal_to([1, 3]))


def test_as_dict_of_non_pairs_is_an_error_naming_the_step() -> None:
    p = td.Pipeline()
    bad = p | "bad" >> td.Create([1, 2])
    _ = p | "keys" >> td.Create(["a"]) | "UseDict" >> td.Map(lambda k, d: d, td.AsDict(bad))
    with pytest.raises(td.PipelineExecutionError, match=r"step 'UseDict': AsDict\(bad/Read\(Create\)\) needs \(key, value\) pairs"):
        p.run()


def test_as_multimap_of_unhashable_keys_is_an_error_naming_the_step() -> None:
    p = td.Pipeline()
    bad = p | "bad" >> td.Create([([1], 2)])
    _ = p | "keys" >> td.Create(["a"]) | "UseMulti" >> td.Map(lambda k, d: d, td.AsMultiMap(bad))
    with pytest.raises(td.PipelineExecutionError, match=r"step 'UseMulti': AsMultiMap\(bad/Read\(Create\)\) needs \(key, value\) pairs with hashable keys"):
        p.run()


def test_side_input_view_needs_a_pcollection() -> None:
    with pytest.raises(TypeError, match="AsList needs a PCollection, got"):
        td.AsList([1, 2])  # type: ignore[arg-type]


# -- side inputs computed from the same source --------------------------------------
def test_side_input_from_combine_globally_of_the_same_source() -> None:
    with td.Pipeline() as p:
        nums = p | td.Create([1, 2, 3, 4])
        total = nums | td.CombineGlobally(sum)
        shares = nums | td.Map(lambda x, t: x / t, td.AsSingleton(total))
        assert_that(shares, equal_to([0.1, 0.2, 0.3, 0.4]))


def test_side_input_from_group_by_key_of_the_same_source() -> None:
    with td.Pipeline() as p:
        pairs = p | td.Create([("a", 1), ("b", 2), ("a", 3)])
        groups = pairs | td.GroupByKey() | td.MapTuple(lambda k, vs: (k, sorted(vs)))
        joined = pairs | td.MapTuple(lambda k, v, g: (k, v, g[k]), td.AsDict(groups))
        assert_that(joined, equal_to([("a", 1, [1, 3]), ("b", 2, [2]), ("a", 3, [1, 3])]))


def test_side_input_chain_of_two_levels() -> None:
    with td.Pipeline() as p:
        nums = p | td.Create([1, 2, 3])
        mean = nums | "Mean" >> td.combiners.Mean.Globally()
        centered = nums | "Center" >> td.Map(lambda x, m: x - m, td.AsSingleton(mean))
        spread = centered | "Square" >> td.Map(lambda c: c * c) | "Spread" >> td.CombineGlobally(sum)
        out = nums | "Scale" >> td.Map(lambda x, s, m: (x - m) / s, td.AsSingleton(spread), td.AsSingleton(mean))
        assert_that(out, equal_to([-0.5, 0.0, 0.5]))


def test_side_input_read_by_a_dofn_with_lifecycle() -> None:
    class Threshold(td.DoFn):
        def setup(self) -> None:
            self.seen = 0

        def process(self, x: int, limit: int) -> Iterable[int]:
            self.seen += 1
            if x > limit:
                yield x

    with td.Pipeline() as p:
        nums = p | td.Create([1, 5, 9, 2])
        limit = nums | td.CombineGlobally(max) | "Half" >> td.Map(lambda m: m // 2)
        assert_that(nums | td.ParDo(Threshold(), td.AsSingleton(limit)), equal_to([5, 9]))


# -- windowed side inputs -----------------------------------------------------------
def test_side_input_is_read_in_the_matching_window() -> None:
    def stamped(pairs: list[tuple[Any, float]]) -> list[window.TimestampedValue]:
        return [window.TimestampedValue(v, t) for v, t in pairs]

    with td.Pipeline() as p:
        fixed = window.FixedWindows(10)
        side = (
            p
            | "side" >> td.Create(stamped([(100, 1), (200, 15)]))
            | "side windows" >> td.WindowInto(fixed)
        )
        main = (
            p
            | "main" >> td.Create(stamped([(1, 2), (2, 12), (3, 25)]))
            | "main windows" >> td.WindowInto(fixed)
        )
        out = main | td.Map(lambda x, s: x + s, td.AsSingleton(side, default_value=0))
        assert_that(out, equal_to([101, 202, 3]))


def test_global_side_input_for_a_windowed_main_input() -> None:
    with td.Pipeline() as p:
        side = p | "side" >> td.Create([1000])
        main = (
            p
            | "main" >> td.Create([window.TimestampedValue(1, 5), window.TimestampedValue(2, 55)])
            | td.WindowInto(window.FixedWindows(10))
        )
        assert_that(main | td.Map(lambda x, s: x + s, td.AsSingleton(side)), equal_to([1001, 1002]))


# -- side inputs with the other element-wise transforms -------------------------------
def test_side_input_in_filter_and_partition() -> None:
    with td.Pipeline() as p:
        limit = p | "limit" >> td.Create([2])
        nums = p | "nums" >> td.Create([1, 2, 3, 4])
        kept = nums | td.Filter(lambda x, m: x >= m, td.AsSingleton(limit))
        assert_that(kept, equal_to([2, 3, 4]), label="filter")
        low, high = nums | td.Partition(lambda x, n, m: int(x > m), 2, td.AsSingleton(limit))
        assert_that(low, equal_to([1, 2]), label="low")
        assert_that(high, equal_to([3, 4]), label="high")


def test_side_input_with_tagged_outputs() -> None:
    with td.Pipeline() as p:
        limit = p | "limit" >> td.Create([2])
        outs = (
            p
            | "nums" >> td.Create([1, 2, 3])
            | td.FlatMap(lambda x, m: [x] if x < m else [td.TaggedOutput("big", x)], td.AsSingleton(limit))
            .with_outputs("big", main="small")
        )
        assert_that(outs.small, equal_to([1]), label="small")
        assert_that(outs.big, equal_to([2, 3]), label="big")


def test_side_inputs_in_a_diamond_with_small_bundles() -> None:
    from tidal.runners.direct import DirectRunner

    with td.Pipeline(runner=DirectRunner(bundle_size=3)) as p:
        nums = p | td.Create(range(10))
        biggest = nums | "Max" >> td.CombineGlobally(max)
        scaled = nums | "Scale" >> td.Map(lambda x, m: x / m, td.AsSingleton(biggest))
        count_scaled = scaled | "CountScaled" >> td.combiners.Count.Globally()
        count_both = (nums, scaled) | td.Flatten() | "CountBoth" >> td.combiners.Count.Globally()
        out = p | "Seed" >> td.Create([0]) | td.Map(
            lambda _, a, b: (a, b), td.AsSingleton(count_scaled), td.AsSingleton(count_both)
        )
        assert_that(out, equal_to([(10, 20)]), label="counts")
        assert_that(scaled | "Top" >> td.combiners.Top.Largest(1), equal_to([[1.0]]), label="top")
