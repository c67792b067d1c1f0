"""Cases for "What is computed": ParDo, GroupByKey, Flatten, Combine, composites,
side inputs, sources, metrics and stateful processing."""

from __future__ import annotations

from typing import Any, Iterable

import tidal as td
from tidal import combiners, window
from tidal.capability_matrix.case import GW, W, case
from tidal.capability_matrix.cases.common import NS, create_stamped, sort_groups
from tidal.model.metrics import Metrics, MetricsFilter
from tidal.model.primitives import BoundedSource
from tidal.model.time import MIN_TIMESTAMP
from tidal.model.windowed_value import WindowedValue

# -- ParDo ------------------------------------------------------------------------------


@case("pardo.map", "ParDo", expected=[10, 20, 30])
def pardo_map(p: td.Pipeline) -> Any:
    """Map applies a function to every element."""
    return p | td.Create([1, 2, 3]) | td.Map(lambda x: x * 10)


@case("pardo.flatmap_zero_or_many", "ParDo", expected=["a", "b", "c"])
def pardo_flatmap(p: td.Pipeline) -> Any:
    """FlatMap emits zero, one or many outputs per element (an empty string gives none)."""
    return p | td.Create(["a b", "", "c"]) | td.FlatMap(str.split)


@case("pardo.filter", "ParDo", expected=[1, 3, 5, 7, 9])
def pardo_filter(p: td.Pipeline) -> Any:
    """Filter keeps the elements the predicate accepts."""
    return p | td.Create(list(range(10))) | td.Filter(lambda x: x % 2 == 1)


@case("pardo.empty_input", "ParDo", expected=[])
def pardo_empty(p: td.Pipeline) -> Any:
    """A ParDo over an empty PCollection outputs nothing."""
    return p | td.Create([]) | td.Map(lambda x: x + 1)


class _Split(td.DoFn):
    def process(self, n: int) -> Iterable[Any]:
        if n % 2:
            yield td.TaggedOutput("odd", n)
        else:
            yield n


@case("pardo.tagged_outputs", "ParDo", expected={"even": [0, 2, 4], "odd": [1, 3]})
def pardo_tagged(p: td.Pipeline) -> Any:
    """A DoFn writes to a main and an additional tagged output."""
    out = p | td.Create(list(range(5))) | td.ParDo(_Split()).with_outputs("odd", main="even")
    return {"even": out.even, "odd": out.odd}


class _Offset(td.DoFn):
    def __init__(self) -> None:
        self.offset: int | None = None

    def setup(self) -> None:
        self.offset = 100

    def process(self, n: int) -> Iterable[int]:
        assert self.offset is not None, "process ran before setup"
        yield n + self.offset


@case("pardo.setup_before_process", "ParDo", expected=[101, 102])
def pardo_setup(p: td.Pipeline) -> Any:
    """DoFn.setup runs before the first element is processed."""
    return p | td.Create([1, 2]) | td.ParDo(_Offset())


class _BufferUntilFinish(td.DoFn):
    def start_bundle(self) -> None:
        self.buffer: list[int] = []

    def process(self, n: int) -> Iterable[int]:
        self.buffer.append(n)
        return ()

    def finish_bundle(self) -> Iterable[Any]:
        for n in self.buffer:
            yield WindowedValue(n * 2, MIN_TIMESTAMP, [window.GlobalWindow()])


@case("pardo.finish_bundle_output", "ParDo", expected=[2, 4, 6, 8])
def pardo_finish_bundle(p: td.Pipeline) -> Any:
    """A DoFn buffers elements per bundle and emits them from finish_bundle."""
    return p | td.Create([1, 2, 3, 4]) | td.ParDo(_BufferUntilFinish())


@case("pardo.many_elements", "ParDo", expected=list(range(1, 20_001)))
def pardo_many(p: td.Pipeline) -> Any:
    """Twenty thousand elements, each mapped exactly once."""
    return p | td.Create(list(range(20_000))) | td.Map(lambda x: x + 1)


# -- GroupByKey -------------------------------------------------------------------------


@case("gbk.basic", "GroupByKey", expected=[("a", [1, 3]), ("b", [2])])
def gbk_basic(p: td.Pipeline) -> Any:
    """Values of the same key are grouped together."""
    return p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | td.GroupByKey() | sort_groups()


@case("gbk.empty", "GroupByKey", expected=[])
def gbk_empty(p: td.Pipeline) -> Any:
    """Grouping an empty PCollection gives no groups."""
    return p | td.Create([]) | td.GroupByKey()


@case("gbk.one_element", "GroupByKey", expected=[("k", ["v"])])
def gbk_one(p: td.Pipeline) -> Any:
    """A single pair becomes a group of one."""
    return p | td.Create([("k", "v")]) | td.GroupByKey() | sort_groups()


@case("gbk.many_keys", "GroupByKey", expected=[(f"k{i}", [i, i + 1000, i + 2000]) for i in range(1000)])
def gbk_many(p: td.Pipeline) -> Any:
    """A thousand keys with three values each: every key once, with all of its values."""
    pairs = [(f"k{i % 1000}", i) for i in range(3000)]
    return p | td.Create(pairs) | td.GroupByKey() | sort_groups()


@case(
    "gbk.structured_keys",
    "GroupByKey",
    expected=[((1, "x"), [1, 4]), (None, [2]), (0, [3]), ("0", [5]), (b"0", [6])],
)
def gbk_keys(p: td.Pipeline) -> Any:
    """Tuple, None, int, str and bytes keys group by equality (0, "0" and b"0" are three keys)."""
    pairs = [((1, "x"), 1), (None, 2), (0, 3), ((1, "x"), 4), ("0", 5), (b"0", 6)]
    return p | td.Create(pairs) | td.GroupByKey() | sort_groups()


# -- Flatten ----------------------------------------------------------------------------


@case("flatten.two_inputs", "Flatten", expected=[1, 2, 3])
def flatten_two(p: td.Pipeline) -> Any:
    """Flatten holds the elements of both inputs."""
    a = p | "A" >> td.Create([1, 2])
    b = p | "B" >> td.Create([3])
    return (a, b) | td.Flatten()


@case("flatten.with_empty_input", "Flatten", expected=["x", "y"])
def flatten_empty_one(p: td.Pipeline) -> Any:
    """An empty input among the inputs adds nothing."""
    a = p | "A" >> td.Create(["x"])
    b = p | "B" >> td.Create([])
    c = p | "C" >> td.Create(["y"])
    return (a, b, c) | td.Flatten()


@case("flatten.no_inputs", "Flatten", expected=[])
def flatten_none(p: td.Pipeline) -> Any:
    """Flatten of no PCollections is an empty PCollection."""
    return () | td.Flatten(pipeline=p)


@case("flatten.same_input_twice", "Flatten", expected=[1, 1, 2, 2])
def flatten_twice(p: td.Pipeline) -> Any:
    """The same PCollection flattened with itself gives every element twice."""
    a = p | td.Create([1, 2])
    return (a, a) | td.Flatten()


@case("flatten.then_group", "Flatten", expected=[("a", [1, 2]), ("b", [3])])
def flatten_group(p: td.Pipeline) -> Any:
    """Keyed inputs flattened then grouped form one group per key."""
    a = p | "A" >> td.Create([("a", 1), ("b", 3)])
    b = p | "B" >> td.Create([("a", 2)])
    return (a, b) | td.Flatten() | td.GroupByKey() | sort_groups()


# -- Combine ----------------------------------------------------------------------------


@case("combine.per_key", "Combine", expected=[("a", 4), ("b", 2)])
def combine_per_key(p: td.Pipeline) -> Any:
    """CombinePerKey(sum) sums the values of each key."""
    return p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | td.CombinePerKey(sum)


@case("combine.globally", "Combine", expected=[55])
def combine_globally(p: td.Pipeline) -> Any:
    """CombineGlobally(sum) reduces the whole PCollection to one value."""
    return p | td.Create(list(range(1, 11))) | td.CombineGlobally(sum)


@case("combine.globally_empty_default", "Combine", expected=[0])
def combine_globally_empty(p: td.Pipeline) -> Any:
    """CombineGlobally of an empty input gives the CombineFn's default (sum of nothing is 0)."""
    return p | td.Create([]) | td.CombineGlobally(sum)


@case("combine.globally_without_defaults", "Combine", expected=[])
def combine_without_defaults(p: td.Pipeline) -> Any:
    """CombineGlobally(...).without_defaults() of an empty input gives nothing."""
    return p | td.Create([]) | td.CombineGlobally(sum).without_defaults()


class _MeanFn(td.CombineFn):
    def create_accumulator(self) -> tuple[float, int]:
        return 0.0, 0

    def add_input(self, acc: tuple[float, int], x: float) -> tuple[float, int]:
        return acc[0] + x, acc[1] + 1

    def merge_accumulators(self, accs: Iterable[tuple[float, int]]) -> tuple[float, int]:
        sums, counts = zip(*accs)
        return sum(sums), sum(counts)

    def extract_output(self, acc: tuple[float, int]) -> float | None:
        return acc[0] / acc[1] if acc[1] else None


@case("combine.custom_combinefn", "Combine", expected=[("a", 2.0), ("b", 10.0)])
def combine_custom(p: td.Pipeline) -> Any:
    """A CombineFn with an accumulator, merged across partial results."""
    pairs = [("a", 1), ("a", 2), ("a", 3), ("b", 10)]
    return p | td.Create(pairs) | td.CombinePerKey(_MeanFn())


@case("combine.standard_combiners", "Combine", expected={"count": [("a", 3), ("b", 1)], "mean": [("a", 2.0), ("b", 5.0)], "top": [[5, 3]]})
def combine_standard(p: td.Pipeline) -> Any:
    """Count.PerKey, Mean.PerKey and Top.Largest give the library's answers."""
    pairs = p | td.Create([("a", 1), ("a", 2), ("a", 3), ("b", 5)])
    return {
        "count": pairs | "Count" >> combiners.Count.PerKey(),
        "mean": pairs | "Mean" >> combiners.Mean.PerKey(),
        "top": pairs | td.Values() | "Top" >> combiners.Top.Largest(2),
    }


@case("combine.many_keys", "Combine", expected=[(i, 3 * i + 3000) for i in range(1000)])
def combine_many(p: td.Pipeline) -> Any:
    """A thousand keys, each summed on its own."""
    pairs = [(i % 1000, i) for i in range(3000)]
    return p | td.Create(pairs) | td.CombinePerKey(sum)


# -- Composite transforms ---------------------------------------------------------------


class _CountWords(td.PTransform):
    def expand(self, lines: Any) -> Any:
        return lines | "Split" >> td.FlatMap(str.split) | "Count" >> combiners.Count.PerElement()


@case("composite.user_ptransform", "Composite transforms", expected=[("a", 2), ("b", 1)])
def composite_user(p: td.Pipeline) -> Any:
    """A user PTransform subclass expands into other transforms."""
    return p | td.Create(["a b", "a"]) | _CountWords()


@td.ptransform_fn
def _AddThenDouble(pcoll: Any, n: int) -> Any:
    return pcoll | "Add" >> td.Map(lambda x: x + n) | "Double" >> td.Map(lambda x: 2 * x)


@case("composite.ptransform_fn", "Composite transforms", expected=[4, 6])
def composite_fn(p: td.Pipeline) -> Any:
    """A @ptransform_fn composite takes arguments."""
    return p | td.Create([1, 2]) | _AddThenDouble(1)


@case("composite.partition", "Composite transforms", expected={"0": [0, 3, 6], "1": [1, 4], "2": [2, 5]})
def composite_partition(p: td.Pipeline) -> Any:
    """Partition splits a PCollection into n by a function of the element."""
    parts = p | td.Create(list(range(7))) | td.Partition(lambda x, n: x % n, 3)
    return {str(i): part for i, part in enumerate(parts)}


def _sorted_join(kv: Any) -> Any:
    return kv[0], {tag: sorted(values) for tag, values in kv[1].items()}


@case(
    "composite.cogroupbykey",
    "Composite transforms",
    expected=[("amy", {"emails": ["amy@x"], "phones": ["111", "222"]}), ("bob", {"emails": [], "phones": ["333"]})],
)
def composite_cogbk(p: td.Pipeline) -> Any:
    """CoGroupByKey joins two keyed PCollections (a key missing from one side gets an empty list)."""
    emails = p | "Emails" >> td.Create([("amy", "amy@x")])
    phones = p | "Phones" >> td.Create([("amy", "222"), ("bob", "333"), ("amy", "111")])
    return {"emails": emails, "phones": phones} | td.CoGroupByKey() | td.Map(_sorted_join)


@case("composite.distinct", "Composite transforms", expected=[1, 2, 3])
def composite_distinct(p: td.Pipeline) -> Any:
    """Distinct removes duplicate elements."""
    return p | td.Create([3, 1, 2, 3, 1, 1]) | td.Distinct()


# -- Side inputs ------------------------------------------------------------------------


@case("side.singleton", "Side inputs", expected=[10, 20, 30])
def side_singleton(p: td.Pipeline) -> Any:
    """AsSingleton passes the one element of another PCollection."""
    factor = p | "Factor" >> td.Create([10])
    return p | td.Create([1, 2, 3]) | td.Map(lambda x, f: x * f, td.AsSingleton(factor))


@case("side.singleton_default", "Side inputs", expected=[8])
def side_singleton_default(p: td.Pipeline) -> Any:
    """AsSingleton of an empty PCollection gives its default_value."""
    empty = p | "Empty" >> td.Create([])
    return p | td.Create([1]) | td.Map(lambda x, f: x + f, td.AsSingleton(empty, default_value=7))


@case("side.list", "Side inputs", expected=[("x", [1, 2, 3]), ("y", [1, 2, 3])])
def side_list(p: td.Pipeline) -> Any:
    """AsList passes every element of the side input to every main element."""
    side = p | "Side" >> td.Create([3, 1, 2])
    return p | td.Create(["x", "y"]) | td.Map(lambda x, s: (x, sorted(s)), td.AsList(side))


@case("side.dict", "Side inputs", expected=[("a", "apple"), ("c", None)])
def side_dict(p: td.Pipeline) -> Any:
    """AsDict looks keys up in a keyed side input."""
    side = p | "Side" >> td.Create([("a", "apple"), ("b", "banana")])
    return p | td.Create(["a", "c"]) | td.Map(lambda k, d: (k, d.get(k)), td.AsDict(side))


@case("side.computed_from_main", "Side inputs", expected=[0.1, 0.2, 0.3, 0.4])
def side_computed(p: td.Pipeline) -> Any:
    """A side input computed from the main input (each element divided by the total)."""
    nums = p | td.Create([1, 2, 3, 4])
    total = nums | "Total" >> td.CombineGlobally(sum)
    return nums | "Share" >> td.Map(lambda x, t: round(x / t, 6), td.AsSingleton(total))


@case("side.windowed", "Side inputs", expected=[("early", [100]), ("later", [200, 300])])
def side_windowed(p: td.Pipeline) -> Any:
    """A windowed side input: each main element sees only the side values of its own window."""
    main = create_stamped(p, [("early", 1), ("later", 12)], "Main") | "MainWindows" >> td.WindowInto(window.FixedWindows(10))
    side = create_stamped(p, [(100, 2), (200, 15), (300, 19)], "Side") | "SideWindows" >> td.WindowInto(window.FixedWindows(10))
    return main | td.Map(lambda x, s: (x, sorted(s)), td.AsList(side))


# -- Source API -------------------------------------------------------------------------


class _RangeSource(BoundedSource):
    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def read(self) -> Iterable[Any]:
        return iter(range(self.start, self.stop))

    def split(self, desired_count: int) -> list[BoundedSource]:
        n = max(1, min(desired_count, self.stop - self.start))
        bounds = [self.start + (self.stop - self.start) * i // n for i in range(n + 1)]
        return [_RangeSource(a, b) for a, b in zip(bounds, bounds[1:])]

    def estimate_size(self) -> int:
        return self.stop - self.start


@case("source.bounded_read", "Source API", expected=[0, 1, 2, 3, 4])
def source_read(p: td.Pipeline) -> Any:
    """Read of a user BoundedSource yields what read() gives."""
    return p | td.Read(_RangeSource(0, 5))


@case("source.split", "Source API", expected=list(range(1000)))
def source_split(p: td.Pipeline) -> Any:
    """A splittable source is read exactly once in total, however the runner splits it."""
    return p | td.Read(_RangeSource(0, 1000))


class _StampedSource(BoundedSource):
    def read(self) -> Iterable[Any]:
        yield window.TimestampedValue("a", 5)
        yield window.TimestampedValue("b", 17.5)


@case("source.timestamped", "Source API", observe=("value", "timestamp"), expected=[("a", td.Timestamp(5)), ("b", td.Timestamp(17.5))])
def source_stamped(p: td.Pipeline) -> Any:
    """A source that yields TimestampedValue sets the elements' event times."""
    return p | td.Read(_StampedSource())


class _EmptySource(BoundedSource):
    def read(self) -> Iterable[Any]:
        return iter(())


@case("source.empty", "Source API", expected=[])
def source_empty(p: td.Pipeline) -> Any:
    """A source with no elements gives an empty PCollection."""
    return p | td.Read(_EmptySource())


@case("source.impulse", "Source API", observe=("value", "window", "timestamp"), expected=[(b"", GW, MIN_TIMESTAMP)])
def source_impulse(p: td.Pipeline) -> Any:
    """Impulse emits one empty-bytes element in the global window at the minimum timestamp."""
    return p | td.Impulse()


# -- Metrics ----------------------------------------------------------------------------


def _counter_total(name: str, step: str | None = None) -> Any:
    def probe(result: Any) -> Any:
        f = MetricsFilter().with_namespace(NS).with_name(name)
        if step is not None:
            f = f.with_step(step)
        return sum(r.committed for r in result.metrics().query(f)["counters"])

    return probe


class _CountElements(td.DoFn):
    elements = Metrics.counter(NS, "elements")

    def process(self, x: Any) -> Iterable[Any]:
        self.elements.inc()
        yield x


@case("metrics.counter", "Metrics", expected=[1, 2, 3, 4, 5], probe=_counter_total("elements"), expected_probe=5)
def metrics_counter(p: td.Pipeline) -> Any:
    """A counter incremented once per element totals the number of elements."""
    return p | td.Create([1, 2, 3, 4, 5]) | td.ParDo(_CountElements())


class _Sizes(td.DoFn):
    sizes = Metrics.distribution(NS, "sizes")

    def process(self, x: int) -> Iterable[Any]:
        self.sizes.update(x)
        return ()


def _distribution(result: Any) -> Any:
    found = result.metrics().query(MetricsFilter().with_namespace(NS).with_name("sizes"))["distributions"]
    return [(d.committed.sum, d.committed.count, d.committed.min, d.committed.max) for d in found]


@case("metrics.distribution", "Metrics", probe=_distribution, expected_probe=[(9, 3, 1, 5)])
def metrics_distribution(p: td.Pipeline) -> None:
    """A distribution reports the sum, count, min and max of its updates."""
    _ = p | td.Create([1, 5, 3]) | td.ParDo(_Sizes())


class _Last(td.DoFn):
    last = Metrics.gauge(NS, "last")

    def process(self, x: int) -> Iterable[Any]:
        self.last.set(x)
        return ()


def _gauge(result: Any) -> Any:
    found = result.metrics().query(MetricsFilter().with_namespace(NS).with_name("last"))["gauges"]
    return [g.committed.value for g in found]


@case("metrics.gauge", "Metrics", probe=_gauge, expected_probe=[42])
def metrics_gauge(p: td.Pipeline) -> None:
    """A gauge reports the value it was set to."""
    _ = p | td.Create([42]) | td.ParDo(_Last())


@case(
    "metrics.per_step",
    "Metrics",
    expected=[1, 2, 3, 1, 2],
    probe=lambda r: (_counter_total("elements", "First")(r), _counter_total("elements", "Second")(r)),
    expected_probe=(3, 2),
)
def metrics_per_step(p: td.Pipeline) -> Any:
    """The same counter in two steps is reported per step."""
    first = p | "A" >> td.Create([1, 2, 3]) | "First" >> td.ParDo(_CountElements())
    second = p | "B" >> td.Create([1, 2]) | "Second" >> td.ParDo(_CountElements())
    return (first, second) | td.Flatten()


@case("metrics.many_elements", "Metrics", probe=_counter_total("elements"), expected_probe=10_000)
def metrics_many(p: td.Pipeline) -> None:
    """Ten thousand increments, possibly on several workers, add up exactly."""
    _ = p | td.Create(list(range(10_000))) | td.ParDo(_CountElements())


# -- Stateful processing ----------------------------------------------------------------


class _RunningCount(td.DoFn):
    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield kv[0], n


@case("state.value", "Stateful processing", expected=[("a", 1), ("a", 2), ("a", 3), ("b", 1)])
def state_value(p: td.Pipeline) -> Any:
    """ReadModifyWrite state counts the elements of each key."""
    return p | td.Create([("a", "x"), ("b", "y"), ("a", "z"), ("a", "w")]) | td.ParDo(_RunningCount())


class _BagWhenFull(td.DoFn):
    BAG = td.BagStateSpec("bag")

    def process(self, kv: Any, bag: Any = td.DoFn.StateParam(BAG)) -> Iterable[Any]:
        bag.add(kv[1])
        items = list(bag.read())
        if len(items) == 3:
            yield kv[0], sorted(items)
            bag.clear()


@case("state.bag", "Stateful processing", expected=[("a", [1, 2, 3]), ("b", [4, 5, 6])])
def state_bag(p: td.Pipeline) -> Any:
    """Bag state collects values; the DoFn emits and clears the bag when it holds three."""
    pairs = [("a", 1), ("b", 4), ("a", 2), ("b", 5), ("a", 3), ("b", 6)]
    return p | td.Create(pairs) | td.ParDo(_BagWhenFull())


class _FirstSeen(td.DoFn):
    SEEN = td.SetStateSpec("seen")

    def process(self, kv: Any, seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        if kv[1] not in seen.read():
            seen.add(kv[1])
            yield kv


@case("state.set", "Stateful processing", expected=[("a", 1), ("a", 2), ("b", 1)])
def state_set(p: td.Pipeline) -> Any:
    """Set state remembers the values seen per key (a per-key distinct)."""
    pairs = [("a", 1), ("a", 1), ("b", 1), ("a", 2), ("a", 2), ("b", 1)]
    return p | td.Create(pairs) | td.ParDo(_FirstSeen())


class _SumWhenComplete(td.DoFn):
    TOTAL = td.CombiningValueStateSpec("total", combine_fn=sum)
    COUNT = td.CombiningValueStateSpec("count", combine_fn=sum)

    def process(self, kv: Any, total: Any = td.DoFn.StateParam(TOTAL), count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        total.add(kv[1])
        count.add(1)
        if count.read() == 4:
            yield kv[0], total.read()


@case("state.combining", "Stateful processing", expected=[("a", 10), ("b", 100)])
def state_combining(p: td.Pipeline) -> Any:
    """Combining state keeps a running sum; the DoFn emits it after four values."""
    pairs = [("a", 1), ("a", 2), ("a", 3), ("a", 4), ("b", 25), ("b", 25), ("b", 25), ("b", 25)]
    return p | td.Create(pairs) | td.ParDo(_SumWhenComplete())


@case("state.many_keys", "Stateful processing", expected=[(k, n) for k in range(500) for n in (1, 2)])
def state_many(p: td.Pipeline) -> Any:
    """Five hundred keys each keep their own state."""
    pairs = [(i % 500, i) for i in range(1000)]
    return p | td.Create(pairs) | td.ParDo(_RunningCount())


@case(
    "state.per_window",
    "Stateful processing",
    observe=("value", "window"),
    expected=[(("a", 1), W(0, 10)), (("a", 2), W(0, 10)), (("a", 1), W(10, 20))],
)
def state_per_window(p: td.Pipeline) -> Any:
    """State is kept per key and window: a new window starts a new count."""
    stamped = create_stamped(p, [(("a", 1), 1), (("a", 2), 2), (("a", 3), 11)])
    return stamped | td.WindowInto(window.FixedWindows(10)) | td.ParDo(_RunningCount())
