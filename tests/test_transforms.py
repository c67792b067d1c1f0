"""The transform library on the direct runner: exact outputs, timestamps and windows."""

from __future__ import annotations

import enum
from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.testing import TestWindowedValue, assert_that, equal_to, is_empty

GW = window.GlobalWindow()


class StampOf(td.DoFn):
    """(element, event timestamp in seconds)."""

    def process(self, x: Any, ts: Any = td.DoFn.TimestampParam) -> Iterable[Any]:
        yield x, ts


def sorted_values(kv: Any) -> Any:
    return kv[0], sorted(kv[1])


def at(value: Any, seconds: float) -> window.TimestampedValue:
    return window.TimestampedValue(value, seconds)


# -- Create / Impulse ---------------------------------------------------------------
def test_create() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([3, 1, 2, 1]), equal_to([1, 1, 2, 3]))


def test_create_keeps_elements_as_they_are() -> None:
    values = [("a", [1, 2]), {"k": "v"}, None, 1.5, b"raw", frozenset({1})]
    with td.Pipeline() as p:
        assert_that(p | td.Create(values), equal_to(values))


def test_create_empty() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([]), is_empty())


def test_create_from_a_dict_gives_its_items() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create({"a": 1, "b": 2}), equal_to([("a", 1), ("b", 2)]))


def test_create_from_a_generator_and_a_range() -> None:
    with td.Pipeline() as p:
        assert_that(p | "gen" >> td.Create(x * x for x in range(4)), equal_to([0, 1, 4, 9]), label="check gen")
        assert_that(p | "range" >> td.Create(range(3)), equal_to([0, 1, 2]), label="check range")


def test_create_rejects_a_string() -> None:
    with pytest.raises(TypeError, match="Create needs an iterable of elements, not a str"):
        td.Create("abc")


def test_create_puts_elements_at_min_timestamp_in_the_global_window() -> None:
    with td.Pipeline() as p:
        out = p | td.Create(["x"])
        assert_that(out, equal_to([TestWindowedValue("x", td.MIN_TIMESTAMP, [GW])]), reify_windows=True)


def test_create_keeps_timestamps_of_timestamped_values() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([at("a", 10), at("b", 20.5), "plain"]) | td.ParDo(StampOf())
        assert_that(
            out,
            equal_to([("a", td.Timestamp(10)), ("b", td.Timestamp(20.5)), ("plain", td.MIN_TIMESTAMP)]),
        )


def test_create_timestamps_through_reify_windows() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([at("a", 1), at("b", 2)])
        assert_that(
            out,
            equal_to([TestWindowedValue("a", td.Timestamp(1), [GW]), TestWindowedValue("b", td.Timestamp(2), [GW])]),
            reify_windows=True,
        )


def test_create_many_elements_in_small_bundles() -> None:
    runner = td.runners.direct.DirectRunner(bundle_size=7)  # type: ignore[attr-defined]
    with td.Pipeline(runner=runner) as p:
        total = p | td.Create(range(1000)) | td.CombineGlobally(sum)
        assert_that(total, equal_to([499500]))


def test_a_create_split_of_plain_values_travels_marshalled_and_comes_back_equal() -> None:
    import math
    import pickle

    import cloudpickle

    from tidal.transforms.core import CreateSource, _create_source_from_marshal

    plain = [
        (i, f"w{i % 7}", i / 3, -0.0, None, True, b"\x00b", 2**80 + i, 10**400, float("nan"), {"k": [i, (1.5, "\ud800")]}, frozenset({i}), {i, -i})
        for i in range(2_000)
    ]
    source = CreateSource(plain)
    assert source.__reduce__()[0] is _create_source_from_marshal
    back = pickle.loads(cloudpickle.dumps(source, protocol=5))
    first = back.values[0]
    assert [v[:9] + v[10:] for v in back.values] == [v[:9] + v[10:] for v in plain]  # nan != nan
    assert all(math.isnan(v[9]) for v in back.values)
    assert [type(x) for x in first] == [type(x) for x in plain[0]] and math.copysign(1.0, first[3]) == -1.0
    assert type(first[5]) is bool and first[10] == {"k": [0, (1.5, "\ud800")]}


class _Pair(tuple):  # type: ignore[type-arg]
    pass


class _Level(enum.IntEnum):
    HIGH = 2


class _Name(str):
    pass


@pytest.mark.parametrize(
    "odd",
    [_Pair((1, 2)), window.TimestampedValue(1, 5), _Level.HIGH, _Name("n")],
    ids=["tuple-subclass", "timestamped", "int-enum", "str-subclass"],
)
def test_a_create_split_that_marshal_cannot_keep_exactly_pickles_its_values_as_they_are(odd: Any) -> None:
    import pickle

    from tidal.transforms.core import CreateSource

    values = [(i, "x") for i in range(1_500)] + [odd]
    back = pickle.loads(pickle.dumps(CreateSource(values)))
    got = back.values[-1]
    assert type(got) is type(odd)
    if isinstance(odd, window.TimestampedValue):
        assert (got.value, got.timestamp_us) == (1, 5_000_000)
    else:
        assert got == odd
    assert back.values[:-1] == values[:-1]


def test_impulse() -> None:
    with td.Pipeline() as p:
        out = p | td.Impulse()
        assert_that(out, equal_to([b""]), label="value")
        assert_that(out, equal_to([TestWindowedValue(b"", td.MIN_TIMESTAMP, [GW])]), reify_windows=True, label="windowed")


def test_impulse_then_flatmap_is_a_source() -> None:
    with td.Pipeline() as p:
        out = p | td.Impulse() | td.FlatMap(lambda _: range(3))
        assert_that(out, equal_to([0, 1, 2]))


# -- element-wise -------------------------------------------------------------------
def test_map() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([1, 2, 3]) | td.Map(lambda x: x * 10), equal_to([10, 20, 30]))


def test_map_with_extra_positional_and_keyword_arguments() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([1, 2]) | td.Map(lambda x, a, b=0: x * a + b, 10, b=5)
        assert_that(out, equal_to([15, 25]))


def test_map_keeps_timestamps_and_windows() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at(1, 3), at(2, 15)])
            | td.WindowInto(window.FixedWindows(10))
            | td.Map(lambda x: x * 100)
        )
        assert_that(
            out,
            equal_to([
                TestWindowedValue(100, td.Timestamp(3), [window.IntervalWindow(0, 10)]),
                TestWindowedValue(200, td.Timestamp(15), [window.IntervalWindow(10, 20)]),
            ]),
            reify_windows=True,
        )


def test_map_returning_none_outputs_none() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([1]) | td.Map(lambda x: None), equal_to([None]))


def test_map_tuple() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([("a", 1), ("b", 2)]) | td.MapTuple(lambda k, v: f"{k}{v}")
        assert_that(out, equal_to(["a1", "b2"]))


def test_map_tuple_with_extra_argument() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([(1, 2), (3, 4)]) | td.MapTuple(lambda a, b, c: a + b + c, 100)
        assert_that(out, equal_to([103, 107]))


def test_flat_map() -> None:
    with td.Pipeline() as p:
        out = p | td.Create(["a b", "c", ""]) | td.FlatMap(str.split)
        assert_that(out, equal_to(["a", "b", "c"]))


def test_flat_map_of_generators_and_none() -> None:
    def upto(n: int) -> Any:
        if n == 0:
            return None
        return (i for i in range(n))

    with td.Pipeline() as p:
        out = p | td.Create([0, 1, 3]) | td.FlatMap(upto)
        assert_that(out, equal_to([0, 0, 1, 2]))


def test_flat_map_without_a_function_flattens_iterables() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([[1, 2], [], [3]]) | td.FlatMap()
        assert_that(out, equal_to([1, 2, 3]))


def test_flat_map_with_extra_argument() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([1, 2]) | td.FlatMap(lambda x, n: [x] * n, 2)
        assert_that(out, equal_to([1, 1, 2, 2]))


def test_flat_map_tuple() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([("a", 2), ("b", 0), ("c", 1)]) | td.FlatMapTuple(lambda k, n: [k] * n)
        assert_that(out, equal_to(["a", "a", "c"]))


def test_filter() -> None:
    with td.Pipeline() as p:
        out = p | td.Create(range(10)) | td.Filter(lambda x: x % 3 == 0)
        assert_that(out, equal_to([0, 3, 6, 9]))


def test_filter_with_extra_argument() -> None:
    with td.Pipeline() as p:
        out = p | td.Create(range(10)) | td.Filter(lambda x, lo: x >= lo, 8)
        assert_that(out, equal_to([8, 9]))


def test_filter_keeps_timestamps() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([at(1, 1), at(2, 2)]) | td.Filter(lambda x: x == 2)
        assert_that(out, equal_to([TestWindowedValue(2, td.Timestamp(2), [GW])]), reify_windows=True)


def test_elementwise_transforms_need_callables() -> None:
    for make in (td.Map, td.FlatMap, td.Filter, td.MapTuple, td.FlatMapTuple):
        with pytest.raises(TypeError, match="needs a callable"):
            make(42)


# -- Partition ----------------------------------------------------------------------
def test_partition() -> None:
    with td.Pipeline() as p:
        parts = p | td.Create(range(10)) | td.Partition(lambda x, n: x % n, 3)
        assert isinstance(parts, tuple) and len(parts) == 3
        zero, one, two = parts
        assert_that(zero, equal_to([0, 3, 6, 9]), label="zero")
        assert_that(one, equal_to([1, 4, 7]), label="one")
        assert_that(two, equal_to([2, 5, 8]), label="two")


def test_partition_with_extra_argument_and_empty_partition() -> None:
    with td.Pipeline() as p:
        small, big = p | td.Create([1, 2, 30]) | td.Partition(lambda x, n, limit: int(x > limit), 2, 100)
        assert_that(small, equal_to([1, 2, 30]), label="small")
        assert_that(big, is_empty(), label="big")


def test_partition_needs_a_positive_count() -> None:
    with pytest.raises(ValueError, match="positive number of partitions, got 0"):
        td.Partition(lambda x, n: 0, 0)


# -- Flatten ------------------------------------------------------------------------
def test_flatten() -> None:
    with td.Pipeline() as p:
        a = p | "a" >> td.Create([1, 2])
        b = p | "b" >> td.Create([3])
        c = p | "c" >> td.Create([])
        assert_that((a, b, c) | td.Flatten(), equal_to([1, 2, 3]))


def test_flatten_of_a_list() -> None:
    with td.Pipeline() as p:
        a = p | "a" >> td.Create([1])
        b = p | "b" >> td.Create([2])
        assert_that([a, b] | td.Flatten(), equal_to([1, 2]))


def test_flatten_the_same_pcollection_twice() -> None:
    with td.Pipeline() as p:
        a = p | td.Create([1, 2])
        assert_that((a, a) | td.Flatten(), equal_to([1, 1, 2, 2]))


def test_flatten_then_group() -> None:
    with td.Pipeline() as p:
        a = p | "a" >> td.Create([("k", 1)])
        b = p | "b" >> td.Create([("k", 2), ("j", 3)])
        grouped = (a, b) | td.Flatten() | td.GroupByKey() | td.Map(sorted_values)
        assert_that(grouped, equal_to([("k", [1, 2]), ("j", [3])]))


def test_flatten_of_nothing_with_pipeline_is_empty() -> None:
    with td.Pipeline() as p:
        empty = () | td.Flatten(pipeline=p)
        assert_that(empty, is_empty())


def test_flatten_of_nothing_without_pipeline_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"Flatten of no PCollections needs Flatten\(pipeline=p\)"):
        () | td.Flatten()


def test_flatten_keeps_timestamps() -> None:
    with td.Pipeline() as p:
        a = p | "a" >> td.Create([at("x", 5)])
        b = p | "b" >> td.Create([at("y", 6)])
        assert_that(
            (a, b) | td.Flatten(),
            equal_to([TestWindowedValue("x", td.Timestamp(5), [GW]), TestWindowedValue("y", td.Timestamp(6), [GW])]),
            reify_windows=True,
        )


def test_flatten_of_different_windowings_is_an_error() -> None:
    p = td.Pipeline()
    a = p | "a" >> td.Create([1]) | "wa" >> td.WindowInto(window.FixedWindows(10))
    b = p | "b" >> td.Create([2])
    with pytest.raises(td.PipelineError, match="step 'Merge': Flatten inputs have different window functions"):
        (a, b) | "Merge" >> td.Flatten()


# -- GroupByKey / CoGroupByKey ------------------------------------------------------
def test_group_by_key() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)])
            | td.GroupByKey()
            | td.Map(sorted_values)
        )
        assert_that(out, equal_to([("a", [1, 3, 5]), ("b", [2]), ("c", [4])]))


def test_group_by_key_of_empty_input() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([]) | td.GroupByKey(), is_empty())


def test_group_by_key_with_tuple_and_none_keys() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([((1, "x"), "a"), (None, "b"), ((1, "x"), "c")]) | td.GroupByKey() | td.Map(sorted_values)
        assert_that(out, equal_to([((1, "x"), ["a", "c"]), (None, ["b"])]))


def test_group_by_key_in_the_global_window_outputs_at_the_end_of_the_window() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([at(("k", 1), 5)]) | td.GroupByKey()
        # The output of the global window's only pane is at the end of the global window.
        end = GW.max_timestamp()
        assert_that(out, equal_to([TestWindowedValue(("k", [1]), end, [GW])]), reify_windows=True)


def test_group_by_key_per_fixed_window() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at(("k", 1), 1), at(("k", 2), 9), at(("k", 3), 11), at(("j", 4), 12)])
            | td.WindowInto(window.FixedWindows(10))
            | td.GroupByKey()
            | td.Map(sorted_values)
        )
        w0, w1 = window.IntervalWindow(0, 10), window.IntervalWindow(10, 20)
        assert_that(
            out,
            equal_to([
                TestWindowedValue(("k", [1, 2]), w0.max_timestamp(), [w0]),
                TestWindowedValue(("k", [3]), w1.max_timestamp(), [w1]),
                TestWindowedValue(("j", [4]), w1.max_timestamp(), [w1]),
            ]),
            reify_windows=True,
        )


def test_co_group_by_key_dict_form() -> None:
    with td.Pipeline() as p:
        emails = p | "emails" >> td.Create([("amy", "a@x"), ("bob", "b@x"), ("amy", "a2@x")])
        phones = p | "phones" >> td.Create([("amy", "555"), ("cat", "777")])
        joined = {"emails": emails, "phones": phones} | td.CoGroupByKey()
        normalized = joined | td.MapTuple(lambda k, d: (k, {t: sorted(vs) for t, vs in d.items()}))
        assert_that(
            normalized,
            equal_to([
                ("amy", {"emails": ["a2@x", "a@x"], "phones": ["555"]}),
                ("bob", {"emails": ["b@x"], "phones": []}),
                ("cat", {"emails": [], "phones": ["777"]}),
            ]),
        )


def test_co_group_by_key_tuple_form() -> None:
    with td.Pipeline() as p:
        left = p | "left" >> td.Create([("a", 1), ("b", 2), ("a", 3)])
        right = p | "right" >> td.Create([("a", "x"), ("c", "y")])
        joined = (left, right) | td.CoGroupByKey()
        normalized = joined | td.MapTuple(lambda k, groups: (k, tuple(sorted(g) for g in groups)))
        assert_that(
            normalized,
            equal_to([("a", ([1, 3], ["x"])), ("b", ([2], [])), ("c", ([], ["y"]))]),
        )


def test_co_group_by_key_of_the_same_pcollection_twice() -> None:
    with td.Pipeline() as p:
        kv = p | td.Create([("a", 1)])
        joined = (kv, kv) | td.CoGroupByKey()
        assert_that(joined, equal_to([("a", ([1], [1]))]))


def test_co_group_by_key_needs_inputs() -> None:
    p = td.Pipeline()
    with pytest.raises(ValueError, match="CoGroupByKey needs at least one PCollection"):
        p.apply(td.CoGroupByKey(), {})


# -- CombinePerKey ------------------------------------------------------------------
PAIRS = [("a", 3), ("b", 10), ("a", 7), ("a", -2), ("b", 1)]


@pytest.mark.parametrize(
    "fn, expected",
    [
        (sum, [("a", 8), ("b", 11)]),
        (max, [("a", 7), ("b", 10)]),
        (min, [("a", -2), ("b", 1)]),
    ],
    ids=["sum", "max", "min"],
)
def test_combine_per_key_builtins(fn: Any, expected: list[Any]) -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create(PAIRS) | td.CombinePerKey(fn), equal_to(expected))


def test_combine_per_key_with_a_lambda_over_an_iterable() -> None:
    values = [("k", i) for i in range(25)] + [("j", 5)]  # more than the callable wrapper's buffer
    with td.Pipeline() as p:
        out = p | td.Create(values) | td.CombinePerKey(lambda vs: sum(vs) % 97)
        assert_that(out, equal_to([("k", 300 % 97), ("j", 5)]))


def test_combine_per_key_with_a_callable_and_extra_argument() -> None:
    values = [("k", i) for i in range(30)]
    with td.Pipeline() as p:
        out = p | td.Create(values) | td.CombinePerKey(lambda vs, cap: min(sum(vs), cap), 100)
        assert_that(out, equal_to([("k", 100)]))


class AverageFn(td.CombineFn):
    def create_accumulator(self) -> tuple[int, int]:
        return 0, 0

    def add_input(self, acc: tuple[int, int], x: int) -> tuple[int, int]:
        return acc[0] + x, acc[1] + 1

    def merge_accumulators(self, accs: Iterable[tuple[int, int]]) -> tuple[int, int]:
        sums, counts = zip(*accs)
        return sum(sums), sum(counts)

    def extract_output(self, acc: tuple[int, int]) -> float:
        return acc[0] / acc[1] if acc[1] else float("nan")


def test_combine_per_key_with_a_custom_combine_fn() -> None:
    with td.Pipeline() as p:
        out = p | td.Create(PAIRS) | td.CombinePerKey(AverageFn())
        assert_that(out, equal_to([("a", 8 / 3), ("b", 5.5)]))


def test_combine_per_key_per_window_outputs_at_end_of_window() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at(("k", 1), 1), at(("k", 2), 2), at(("k", 5), 25)])
            | td.WindowInto(window.FixedWindows(10))
            | td.CombinePerKey(sum)
        )
        w0, w2 = window.IntervalWindow(0, 10), window.IntervalWindow(20, 30)
        assert_that(
            out,
            equal_to([
                TestWindowedValue(("k", 3), w0.max_timestamp(), [w0]),
                TestWindowedValue(("k", 5), w2.max_timestamp(), [w2]),
            ]),
            reify_windows=True,
        )


def test_combine_per_key_rejects_a_combine_fn_class() -> None:
    with pytest.raises(TypeError, match="pass an instance of AverageFn, not the class"):
        td.CombinePerKey(AverageFn)


# -- CombineGlobally ----------------------------------------------------------------
def test_combine_globally() -> None:
    with td.Pipeline() as p:
        nums = p | td.Create([4, 1, 7])
        assert_that(nums | "sum" >> td.CombineGlobally(sum), equal_to([12]), label="check sum")
        assert_that(nums | "max" >> td.CombineGlobally(max), equal_to([7]), label="check max")
        assert_that(nums | "avg" >> td.CombineGlobally(AverageFn()), equal_to([4.0]), label="check avg")


def test_combine_globally_of_empty_input_gives_the_default() -> None:
    with td.Pipeline() as p:
        empty = p | td.Create([])
        assert_that(empty | "sum" >> td.CombineGlobally(sum), equal_to([0]), label="check sum")
        assert_that(empty | "list" >> td.CombineGlobally(lambda vs: sorted(vs)), equal_to([[]]), label="check list")


def test_combine_globally_without_defaults_gives_nothing_for_empty_input() -> None:
    with td.Pipeline() as p:
        empty = p | td.Create([])
        assert_that(empty | td.CombineGlobally(sum).without_defaults(), is_empty())


def test_combine_globally_without_defaults_still_combines() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([1, 2]) | td.CombineGlobally(sum).without_defaults()
        assert_that(out, equal_to([3]))


def test_combine_globally_per_window_needs_without_defaults() -> None:
    p = td.Pipeline()
    windowed = p | td.Create([1]) | td.WindowInto(window.FixedWindows(10))
    with pytest.raises(ValueError, match=r"use CombineGlobally\(...\).without_defaults\(\)"):
        windowed | td.CombineGlobally(sum)


def test_combine_globally_per_window() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at(1, 1), at(2, 5), at(10, 12)])
            | td.WindowInto(window.FixedWindows(10))
            | td.CombineGlobally(sum).without_defaults()
        )
        w0, w1 = window.IntervalWindow(0, 10), window.IntervalWindow(10, 20)
        assert_that(
            out,
            equal_to([TestWindowedValue(3, w0.max_timestamp(), [w0]), TestWindowedValue(10, w1.max_timestamp(), [w1])]),
            reify_windows=True,
        )


# -- CombineValues, Reshuffle, Keys, Values, KvSwap, Distinct, WithKeys -------------
def test_combine_values() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([("a", [1, 2, 3]), ("b", []), ("c", [5])]) | td.CombineValues(sum)
        assert_that(out, equal_to([("a", 6), ("b", 0), ("c", 5)]))


def test_combine_values_after_group_by_key() -> None:
    with td.Pipeline() as p:
        out = p | td.Create(PAIRS) | td.GroupByKey() | td.CombineValues(AverageFn())
        assert_that(out, equal_to([("a", 8 / 3), ("b", 5.5)]))


def test_reshuffle_keeps_elements() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([1, 2, 2, 3]) | td.Reshuffle()
        assert_that(out, equal_to([1, 2, 2, 3]))


def test_reshuffle_keeps_timestamps_and_windows() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at("a", 1), at("b", 15)])
            | td.WindowInto(window.FixedWindows(10))
            | td.Reshuffle()
        )
        assert out.windowing.windowfn == window.FixedWindows(10)
        assert_that(
            out,
            equal_to([
                TestWindowedValue("a", td.Timestamp(1), [window.IntervalWindow(0, 10)]),
                TestWindowedValue("b", td.Timestamp(15), [window.IntervalWindow(10, 20)]),
            ]),
            reify_windows=True,
        )


def test_reshuffle_then_group_by_window() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at(("k", 1), 1), at(("k", 2), 2), at(("k", 3), 15)])
            | td.WindowInto(window.FixedWindows(10))
            | td.Reshuffle()
            | td.CombinePerKey(sum)
        )
        assert_that(out, equal_to([("k", 3), ("k", 3)]))


def test_keys_values_kvswap() -> None:
    with td.Pipeline() as p:
        kvs = p | td.Create([("a", 1), ("b", 2)])
        assert_that(kvs | td.Keys(), equal_to(["a", "b"]), label="keys")
        assert_that(kvs | td.Values(), equal_to([1, 2]), label="values")
        assert_that(kvs | td.KvSwap(), equal_to([(1, "a"), (2, "b")]), label="swap")


def test_distinct() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([3, 1, 3, 2, 1, 3, (1, 2), (1, 2)]) | td.Distinct()
        assert_that(out, equal_to([1, 2, 3, (1, 2)]))


def test_distinct_per_window() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at("x", 1), at("x", 2), at("x", 11), at("y", 12)])
            | td.WindowInto(window.FixedWindows(10))
            | td.Distinct()
        )
        assert_that(out, equal_to(["x", "x", "y"]))


def test_with_keys_constant_and_function() -> None:
    with td.Pipeline() as p:
        words = p | td.Create(["ab", "c"])
        assert_that(words | "const" >> td.WithKeys("k"), equal_to([("k", "ab"), ("k", "c")]), label="check const")
        assert_that(words | "fn" >> td.WithKeys(len), equal_to([(2, "ab"), (1, "c")]), label="check fn")


def test_with_keys_rejects_a_side_input() -> None:
    p = td.Pipeline()
    side = p | "side" >> td.Create([1])
    with pytest.raises(TypeError, match="WithKeys does not take a side input"):
        p | "main" >> td.Create([1]) | td.WithKeys(td.AsSingleton(side))


# -- WindowInto ---------------------------------------------------------------------
def test_window_into_sliding_windows_assigns_several_windows() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([at(("k", 1), 7)]) | td.WindowInto(window.SlidingWindows(10, 5)) | td.CombinePerKey(sum)
        w0, w1 = window.IntervalWindow(0, 10), window.IntervalWindow(5, 15)
        assert_that(
            out,
            equal_to([TestWindowedValue(("k", 1), w0.max_timestamp(), [w0]), TestWindowedValue(("k", 1), w1.max_timestamp(), [w1])]),
            reify_windows=True,
        )


def test_window_into_sessions() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([at(("k", 1), 1), at(("k", 2), 4), at(("k", 3), 20)])
            | td.WindowInto(window.Sessions(5))
            | td.GroupByKey()
            | td.Map(sorted_values)
        )
        s0, s1 = window.IntervalWindow(1, 9), window.IntervalWindow(20, 25)
        assert_that(
            out,
            equal_to([TestWindowedValue(("k", [1, 2]), s0.max_timestamp(), [s0]), TestWindowedValue(("k", [3]), s1.max_timestamp(), [s1])]),
            reify_windows=True,
        )
