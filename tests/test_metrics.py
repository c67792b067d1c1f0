"""User metrics: counters, distributions and gauges, reported per step in the result."""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import tidal as td
from tidal.model.metrics import DistributionResult, GaugeResult, MetricKey, MetricName
from tidal.runners.direct import DirectRunner


class Measure(td.DoFn):
    elements = td.Metrics.counter("measure", "elements")
    sizes = td.Metrics.distribution("measure", "sizes")
    last = td.Metrics.gauge("measure", "last")
    bundles = td.Metrics.counter("measure", "bundles")

    def start_bundle(self) -> None:
        self.bundles.inc()

    def process(self, word: str) -> Iterable[str]:
        self.elements.inc()
        self.sizes.update(len(word))
        self.last.set(word)
        yield word


WORDS = ["a", "bbb", "cc", "dddd", "e"]


def run_measure(bundle_size: int = 100) -> td.PipelineResult:
    p = td.Pipeline(runner=DirectRunner(bundle_size=bundle_size))
    _ = p | td.Create(WORDS) | "Measure" >> td.ParDo(Measure())
    return p.run()


def test_counter_by_name() -> None:
    result = run_measure()
    [counter] = result.metrics().query(td.MetricsFilter().with_name("elements"))["counters"]
    assert counter.key == MetricKey("Measure", MetricName("measure", "elements"))
    assert counter.committed == 5
    assert counter.attempted == 5
    assert counter.result == 5


def test_counter_counts_bundles() -> None:
    result = run_measure(bundle_size=2)
    [counter] = result.metrics().query(td.MetricsFilter().with_name("bundles"))["counters"]
    assert counter.committed == 3


def test_distribution_sum_count_min_max_mean() -> None:
    result = run_measure()
    [dist] = result.metrics().query(td.MetricsFilter().with_name("sizes"))["distributions"]
    assert dist.key.step == "Measure"
    assert dist.committed == DistributionResult(sum=11, count=5, min=1, max=4)
    assert dist.committed.sum == 11
    assert dist.committed.count == 5
    assert dist.committed.min == 1
    assert dist.committed.max == 4
    assert dist.committed.mean == pytest.approx(2.2)


def test_distribution_across_bundles_is_merged() -> None:
    result = run_measure(bundle_size=1)
    [dist] = result.metrics().query(td.MetricsFilter().with_name("sizes"))["distributions"]
    assert dist.committed == DistributionResult(sum=11, count=5, min=1, max=4)


def test_gauge_keeps_the_latest_value() -> None:
    result = run_measure()
    [gauge] = result.metrics().query(td.MetricsFilter().with_name("last"))["gauges"]
    assert isinstance(gauge.committed, GaugeResult)
    assert gauge.committed.value == "e"
    assert gauge.committed.timestamp > 0


def test_query_without_filter_returns_every_kind() -> None:
    result = run_measure()
    found = result.metrics().query()
    assert sorted(c.key.metric.name for c in found["counters"]) == ["bundles", "elements"]
    assert [d.key.metric.name for d in found["distributions"]] == ["sizes"]
    assert [g.key.metric.name for g in found["gauges"]] == ["last"]


def test_query_by_namespace() -> None:
    result = run_measure()
    assert len(result.metrics().query(td.MetricsFilter().with_namespace("measure"))["counters"]) == 2
    assert result.metrics().query(td.MetricsFilter().with_namespace("other"))["counters"] == []


def test_query_by_step_separates_steps() -> None:
    counted = td.Metrics.counter("steps", "seen")

    def see(x: int) -> int:
        counted.inc()
        return x

    p = td.Pipeline()
    nums = p | td.Create(range(10))
    _ = nums | "First" >> td.Map(see)
    _ = nums | "Evens" >> td.Filter(lambda x: x % 2 == 0) | "Second" >> td.Map(see)
    result = p.run()
    metrics = result.metrics()
    [first] = metrics.query(td.MetricsFilter().with_name("seen").with_step("First"))["counters"]
    [second] = metrics.query(td.MetricsFilter().with_name("seen").with_step("Second"))["counters"]
    assert (first.key.step, first.committed) == ("First", 10)
    assert (second.key.step, second.committed) == ("Second", 5)
    both = metrics.query(td.MetricsFilter().with_name("seen"))["counters"]
    assert sorted((c.key.step, c.committed) for c in both) == [("First", 10), ("Second", 5)]
    assert metrics.query(td.MetricsFilter().with_step("Nowhere"))["counters"] == []


def test_step_filter_matches_a_composite_label() -> None:
    class Inner(td.PTransform):
        def expand(self, pcoll: Any) -> Any:
            return pcoll | "Count" >> td.ParDo(Measure())

    p = td.Pipeline()
    _ = p | td.Create(WORDS) | "Outer" >> Inner()
    result = p.run()
    [c] = result.metrics().query(td.MetricsFilter().with_step("Outer").with_name("elements"))["counters"]
    assert c.key.step == "Outer/Count"
    assert c.committed == 5
    [c] = result.metrics().query(td.MetricsFilter().with_step("Outer/Count").with_name("elements"))["counters"]
    assert c.committed == 5


def test_metrics_with_a_class_namespace() -> None:
    class Tagged(td.DoFn):
        def process(self, x: int) -> Iterable[int]:
            td.Metrics.counter(Tagged, "hits").inc(x)
            yield x

    p = td.Pipeline()
    _ = p | td.Create([1, 2, 3]) | "Tag" >> td.ParDo(Tagged())
    result = p.run()
    [c] = result.metrics().query(td.MetricsFilter().with_namespace(Tagged))["counters"]
    assert c.committed == 6
    assert c.key.metric.namespace.endswith("Tagged")


def test_counter_inc_by_n_and_dec() -> None:
    class UpDown(td.DoFn):
        counter = td.Metrics.counter("updown", "net")

        def process(self, x: int) -> Iterable[int]:
            self.counter.inc(10)
            self.counter.dec(3)
            self.counter.dec()
            yield x

    p = td.Pipeline()
    _ = p | td.Create([1, 2]) | td.ParDo(UpDown())
    [c] = p.run().metrics().query(td.MetricsFilter().with_name("net"))["counters"]
    assert c.committed == 12


def test_metrics_from_setup_finish_bundle_and_teardown() -> None:
    class Life(td.DoFn):
        def setup(self) -> None:
            td.Metrics.counter("life", "setup").inc()

        def process(self, x: int) -> Iterable[int]:
            yield x

        def finish_bundle(self) -> None:
            td.Metrics.distribution("life", "finish").update(7)

        def teardown(self) -> None:
            td.Metrics.gauge("life", "teardown").set("done")

    p = td.Pipeline(runner=DirectRunner(bundle_size=2))
    _ = p | td.Create([1, 2, 3]) | "Life" >> td.ParDo(Life())
    found = p.run().metrics().query(td.MetricsFilter().with_namespace("life").with_step("Life"))
    assert [c.committed for c in found["counters"]] == [1]
    assert [d.committed for d in found["distributions"]] == [DistributionResult(14, 2, 7, 7)]
    assert [g.committed.value for g in found["gauges"]] == ["done"]


def test_metrics_from_a_combine_fn_in_both_halves_of_a_lifted_combine() -> None:
    class Summing(td.CombineFn):
        def create_accumulator(self) -> int:
            return 0

        def add_input(self, acc: int, x: int) -> int:
            td.Metrics.distribution("combine", "inputs").update(x)
            return acc + x

        def merge_accumulators(self, accs: Iterable[int]) -> int:
            return sum(accs)

        def extract_output(self, acc: int) -> int:
            td.Metrics.counter("combine", "outputs").inc()
            return acc

    p = td.Pipeline()
    _ = p | td.Create([("a", 1), ("a", 5), ("b", 2)]) | "Total" >> td.CombinePerKey(Summing())
    metrics = p.run().metrics()
    [inputs] = metrics.query(td.MetricsFilter().with_name("inputs"))["distributions"]
    [outputs] = metrics.query(td.MetricsFilter().with_name("outputs"))["counters"]
    assert inputs.committed == DistributionResult(8, 3, 1, 5)
    assert inputs.key.step == "Total/Precombine"
    assert (outputs.key.step, outputs.committed) == ("Total", 2)


def test_metrics_from_a_source() -> None:
    class Numbers(td.BoundedSource):
        def read(self) -> Iterable[int]:
            for i in range(4):
                td.Metrics.counter("source", "read").inc()
                yield i

    p = td.Pipeline()
    _ = p | "Numbers" >> td.Read(Numbers())
    [c] = p.run().metrics().query(td.MetricsFilter().with_name("read"))["counters"]
    assert c.committed == 4
    assert c.key.step == "Numbers"


def test_metrics_of_a_with_block_pipeline_via_result() -> None:
    with td.Pipeline() as p:
        _ = p | td.Create(WORDS) | "Measure" >> td.ParDo(Measure())
    assert p.result is not None
    [c] = p.result.metrics().query(td.MetricsFilter().with_name("elements"))["counters"]
    assert c.committed == 5


def test_metric_namespace_must_be_a_string_or_class() -> None:
    with pytest.raises(TypeError, match="metric namespace must be a str or a class, got 3"):
        td.Metrics.counter(3, "x")


def test_metrics_outside_a_pipeline_do_not_fail() -> None:
    Measure.elements.inc()
    Measure.sizes.update(3)
    Measure.last.set("x")
    # ...and do not leak into the next run.
    result = run_measure()
    [c] = result.metrics().query(td.MetricsFilter().with_name("elements"))["counters"]
    assert c.committed == 5
