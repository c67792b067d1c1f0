"""ParDo and DoFn: lifecycle, outputs, tagged outputs, re-stamping and parameters."""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.model.trigger import PANE_INFO_UNKNOWN, PaneInfo, PaneInfoTiming
from tidal.runners.direct import DirectRunner
from tidal.testing import TestWindowedValue, assert_that, equal_to, is_empty

GW = window.GlobalWindow()

#: Lifecycle calls recorded by LifecycleDoFn. Each operator runs a cloudpickle
#: copy of the DoFn, so the record lives at module level, not on the instance.
CALLS: list[Any] = []


class LifecycleDoFn(td.DoFn):
    setups = td.Metrics.counter("lifecycle", "setup")
    starts = td.Metrics.counter("lifecycle", "start_bundle")
    processed = td.Metrics.counter("lifecycle", "process")
    finishes = td.Metrics.counter("lifecycle", "finish_bundle")
    teardowns = td.Metrics.counter("lifecycle", "teardown")

    def setup(self) -> None:
        CALLS.append("setup")
        self.setups.inc()
        self.state = "ready"

    def start_bundle(self) -> None:
        CALLS.append("start_bundle")
        self.starts.inc()

    def process(self, x: int) -> Iterable[Any]:
        assert self.state == "ready"
        CALLS.append(("process", x))
        self.processed.inc()
        yield x * 10

    def finish_bundle(self) -> None:
        CALLS.append("finish_bundle")
        self.finishes.inc()

    def teardown(self) -> None:
        CALLS.append("teardown")
        self.teardowns.inc()


def counters(result: td.PipelineResult, namespace: str) -> dict[str, int]:
    found = result.metrics().query(td.MetricsFilter().with_namespace(namespace))["counters"]
    totals: dict[str, int] = {}
    for c in found:
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + c.committed
    return totals


@pytest.fixture(autouse=True)
def clear_calls() -> Iterable[None]:
    CALLS.clear()
    yield
    CALLS.clear()


# -- lifecycle ----------------------------------------------------------------------
def test_lifecycle_in_order_with_one_bundle_per_source_bundle() -> None:
    p = td.Pipeline(runner=DirectRunner(bundle_size=2))
    out = p | td.Create([1, 2, 3, 4, 5]) | "Life" >> td.ParDo(LifecycleDoFn())
    assert_that(out, equal_to([10, 20, 30, 40, 50]))
    result = p.run()
    assert CALLS == [
        "setup",
        "start_bundle", ("process", 1), ("process", 2), "finish_bundle",
        "start_bundle", ("process", 3), ("process", 4), "finish_bundle",
        "start_bundle", ("process", 5), "finish_bundle",
        "teardown",
    ]
    assert counters(result, "lifecycle") == {
        "setup": 1, "start_bundle": 3, "process": 5, "finish_bundle": 3, "teardown": 1,
    }
    [c] = result.metrics().query(td.MetricsFilter().with_name("process").with_step("Life"))["counters"]
    assert c.key.step == "Life"


def test_lifecycle_of_an_empty_input_is_setup_and_teardown() -> None:
    p = td.Pipeline()
    _ = p | td.Create([]) | td.ParDo(LifecycleDoFn())
    p.run()
    assert CALLS == ["setup", "teardown"]


def test_teardown_runs_when_process_fails() -> None:
    class Fails(LifecycleDoFn):
        def process(self, x: int) -> Iterable[Any]:
            raise RuntimeError("boom")

    p = td.Pipeline()
    _ = p | td.Create([1]) | "Fails" >> td.ParDo(Fails())
    with pytest.raises(td.UserCodeError, match="step 'Fails': process raised RuntimeError: boom on element 1"):
        p.run()
    assert CALLS[0] == "setup" and CALLS[-1] == "teardown"


def test_user_instance_is_not_mutated_by_the_run() -> None:
    fn = LifecycleDoFn()
    with td.Pipeline() as p:
        _ = p | td.Create([1]) | td.ParDo(fn)
    assert not hasattr(fn, "state")  # the operator ran a copy
    assert "setup" in CALLS


def test_setup_failure_names_the_step() -> None:
    class BadSetup(td.DoFn):
        def setup(self) -> None:
            raise OSError("no connection")

        def process(self, x: int) -> Iterable[int]:
            yield x

    p = td.Pipeline()
    _ = p | td.Create([1]) | "Connect" >> td.ParDo(BadSetup())
    with pytest.raises(td.UserCodeError, match="step 'Connect': setup raised OSError: no connection") as info:
        p.run()
    assert isinstance(info.value.__cause__, OSError)


# -- outputs ------------------------------------------------------------------------
def test_process_may_return_a_list_yield_or_return_none() -> None:
    class Returns(td.DoFn):
        def process(self, x: int) -> list[int] | None:
            return [x, x] if x > 1 else None

    class Yields(td.DoFn):
        def process(self, x: int) -> Iterable[int]:
            if x > 1:
                yield -x

    with td.Pipeline() as p:
        nums = p | td.Create([1, 2])
        assert_that(nums | td.ParDo(Returns()), equal_to([2, 2]), label="returns")
        assert_that(nums | td.ParDo(Yields()), equal_to([-2]), label="yields")


def test_pardo_with_extra_arguments() -> None:
    class Scale(td.DoFn):
        def process(self, x: int, factor: int, offset: int = 0) -> Iterable[int]:
            yield x * factor + offset

    with td.Pipeline() as p:
        out = p | td.Create([1, 2]) | td.ParDo(Scale(), 3, offset=1)
        assert_that(out, equal_to([4, 7]))


def test_finish_bundle_yields_windowed_values() -> None:
    class CountPerBundle(td.DoFn):
        def start_bundle(self) -> None:
            self.n = 0

        def process(self, x: int) -> None:
            self.n += 1

        def finish_bundle(self) -> Iterable[td.WindowedValue]:
            yield td.WindowedValue(("count", self.n), 42, [GW])

    p = td.Pipeline(runner=DirectRunner(bundle_size=3))
    out = p | td.Create(range(7)) | td.ParDo(CountPerBundle())
    assert_that(
        out,
        equal_to([
            TestWindowedValue(("count", 3), td.Timestamp(42), [GW]),
            TestWindowedValue(("count", 3), td.Timestamp(42), [GW]),
            TestWindowedValue(("count", 1), td.Timestamp(42), [GW]),
        ]),
        reify_windows=True,
    )
    p.run()


def test_finish_bundle_can_output_to_a_tag() -> None:
    class Summary(td.DoFn):
        def process(self, x: int) -> Iterable[int]:
            yield x

        def finish_bundle(self) -> Iterable[Any]:
            yield td.TaggedOutput("summary", td.WindowedValue("done", 0, [GW]))

    with td.Pipeline() as p:
        outs = p | td.Create([1, 2]) | td.ParDo(Summary()).with_outputs("summary", main="items")
        assert_that(outs.items, equal_to([1, 2]), label="items")
        assert_that(outs.summary, equal_to(["done"]), label="summary")


def test_finish_bundle_must_yield_windowed_values() -> None:
    class Plain(td.DoFn):
        def process(self, x: int) -> None:
            return None

        def finish_bundle(self) -> Iterable[Any]:
            yield "no window"

    p = td.Pipeline()
    _ = p | td.Create([1]) | "Plain" >> td.ParDo(Plain())
    with pytest.raises(td.PipelineExecutionError, match="step 'Plain': finish_bundle must yield WindowedValue .* got 'no window'"):
        p.run()


# -- tagged outputs -----------------------------------------------------------------
class SplitByParity(td.DoFn):
    def process(self, x: int) -> Iterable[Any]:
        if x < 0:
            yield x  # main output
        elif x % 2:
            yield td.TaggedOutput("a", x)
        else:
            yield td.TaggedOutput("b", x)


def test_with_outputs_by_attribute_item_and_unpacking() -> None:
    with td.Pipeline() as p:
        outs = p | td.Create([-1, 1, 2, 3, 4, -5]) | td.ParDo(SplitByParity()).with_outputs("a", "b", main="m")
        assert_that(outs.m, equal_to([-1, -5]), label="attr m")
        assert_that(outs.a, equal_to([1, 3]), label="attr a")
        assert_that(outs["a"], equal_to([1, 3]), label="item a")
        assert_that(outs["b"], equal_to([2, 4]), label="item b")
        assert_that(outs[None], equal_to([-1, -5]), label="item main")
        m, a, b = outs
        assert m is outs.m and a is outs.a and b is outs.b
        assert_that(b, equal_to([2, 4]), label="unpacked b")


def test_with_outputs_default_main_tag() -> None:
    with td.Pipeline() as p:
        outs = p | td.Create([-1, 1, 2]) | td.ParDo(SplitByParity()).with_outputs("a", "b")
        main, a, b = outs
        assert_that(main, equal_to([-1]), label="main")
        assert_that(a, equal_to([1]), label="a")
        assert_that(b, equal_to([2]), label="b")


def test_tagged_outputs_from_map_and_flatmap() -> None:
    with td.Pipeline() as p:
        nums = p | td.Create([1, 2, 3])
        outs = nums | td.FlatMap(lambda x: [x, td.TaggedOutput("sq", x * x)]).with_outputs("sq", main="main")
        assert_that(outs.main, equal_to([1, 2, 3]), label="main")
        assert_that(outs.sq, equal_to([1, 4, 9]), label="squares")
        tagged = nums | td.Map(lambda x: td.TaggedOutput("t", x)).with_outputs("t", main="m")
        assert_that(tagged.t, equal_to([1, 2, 3]), label="t")
        assert_that(tagged.m, is_empty(), label="m")


def test_tagged_output_keeps_timestamp_and_window() -> None:
    with td.Pipeline() as p:
        outs = (
            p
            | td.Create([window.TimestampedValue(1, 12)])
            | td.WindowInto(window.FixedWindows(10))
            | td.ParDo(SplitByParity()).with_outputs("a", "b", main="m")
        )
        w = window.IntervalWindow(10, 20)
        assert_that(outs.a, equal_to([TestWindowedValue(1, td.Timestamp(12), [w])]), reify_windows=True)


class TagWithWindowStart(td.DoFn):
    """Takes its window as the second argument: (element, window start) and a re-stamped pair, or nothing."""

    def process(self, element: Any, w: Any = td.DoFn.WindowParam) -> Iterable[Any]:
        if element < 0:
            return ()  # nothing for negative elements
        return [(element, w.start.micros // 1_000_000), window.TimestampedValue((element, "moved"), 3)]


def test_a_dofn_taking_its_window_emits_into_that_window_for_one_window_and_for_several() -> None:
    """One window per element (fixed) or two (sliding): each output keeps the timestamp and the one
    window it was produced for, a TimestampedValue output is re-stamped in its window, and a process
    that returns () emits nothing."""
    fixed, sliding = window.FixedWindows(10), window.SlidingWindows(10, 5)
    with td.Pipeline() as p:
        stamped = p | td.Create([window.TimestampedValue(1, 12), window.TimestampedValue(-1, 13)])
        one = stamped | "Fixed" >> td.WindowInto(fixed) | "TagOne" >> td.ParDo(TagWithWindowStart())
        two = stamped | "Sliding" >> td.WindowInto(sliding) | "TagTwo" >> td.ParDo(TagWithWindowStart())
        w = window.IntervalWindow
        assert_that(
            one,
            equal_to([
                TestWindowedValue((1, 10), td.Timestamp(12), [w(10, 20)]),
                TestWindowedValue((1, "moved"), td.Timestamp(3), [w(0, 10)]),
            ]),
            reify_windows=True,
            label="OneWindow",
        )
        assert_that(
            two,
            equal_to([
                TestWindowedValue((1, 5), td.Timestamp(12), [w(5, 15)]),
                TestWindowedValue((1, 10), td.Timestamp(12), [w(10, 20)]),
                # called once per window, and each re-stamped output lands in both windows of 3 s
                *[TestWindowedValue((1, "moved"), td.Timestamp(3), [win]) for win in (w(0, 10), w(-5, 5)) * 2],
            ]),
            reify_windows=True,
            label="TwoWindows",
        )


def test_undeclared_tag_is_an_error_naming_the_tag_and_the_step() -> None:
    p = td.Pipeline()
    _ = p | td.Create([1, 2]) | "Split" >> td.ParDo(SplitByParity()).with_outputs("b", main="m")
    with pytest.raises(td.PipelineExecutionError) as info:
        p.run()
    message = str(info.value)
    assert message.startswith("step 'Split': output tag 'a' was not declared")
    assert ".with_outputs('a')" in message
    assert "(declared: ['b'])" in message


def test_tagged_output_without_with_outputs_is_an_error() -> None:
    p = td.Pipeline()
    _ = p | td.Create([1]) | "Split" >> td.ParDo(SplitByParity())
    with pytest.raises(td.PipelineExecutionError, match=r"step 'Split': output tag 'a' was not declared.*\(declared: \[\]\)"):
        p.run()


def test_accessing_an_undeclared_output_is_an_error() -> None:
    p = td.Pipeline()
    outs = p | td.Create([1]) | td.ParDo(SplitByParity()).with_outputs("a", main="m")
    with pytest.raises(KeyError, match=r"no output tagged 'zzz'; declared outputs: \['a', 'm'\]"):
        outs["zzz"]
    with pytest.raises(AttributeError):
        outs.zzz
    assert getattr(outs, "zzz", None) is None


def test_main_tag_listed_as_an_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="main output tag 'a' is also listed"):
        td.ParDo(SplitByParity()).with_outputs("a", main="a")


def test_tagged_output_tag_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="TaggedOutput tag must be a str, got 1"):
        td.TaggedOutput(1, "x")  # type: ignore[arg-type]


# -- re-stamping --------------------------------------------------------------------
class Restamp(td.DoFn):
    def process(self, x: int) -> Iterable[Any]:
        yield window.TimestampedValue(x, x)


class StampOf(td.DoFn):
    def process(self, x: Any, ts: Any = td.DoFn.TimestampParam, w: Any = td.DoFn.WindowParam) -> Iterable[Any]:
        yield x, ts, w


def test_timestamped_value_restamps_an_element() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([3, 7]) | td.ParDo(Restamp()) | td.ParDo(StampOf())
        assert_that(out, equal_to([(3, td.Timestamp(3), GW), (7, td.Timestamp(7), GW)]))


def test_timestamped_value_from_map_restamps() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([1.5]) | td.Map(lambda x: window.TimestampedValue("v", x))
        assert_that(out, equal_to([TestWindowedValue("v", td.Timestamp(1.5), [GW])]), reify_windows=True)


def test_timestamped_value_from_flatmap_restamps() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([2]) | td.FlatMap(lambda x: [window.TimestampedValue(i, i) for i in range(x)])
        assert_that(
            out,
            equal_to([TestWindowedValue(0, td.Timestamp(0), [GW]), TestWindowedValue(1, td.Timestamp(1), [GW])]),
            reify_windows=True,
        )


def test_restamping_under_fixed_windows_reassigns_the_window() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([window.TimestampedValue(5, 1), window.TimestampedValue(25, 2)])
            | td.WindowInto(window.FixedWindows(10))
            | "Move" >> td.ParDo(Restamp())
        )
        assert_that(
            out,
            equal_to([
                TestWindowedValue(5, td.Timestamp(5), [window.IntervalWindow(0, 10)]),
                TestWindowedValue(25, td.Timestamp(25), [window.IntervalWindow(20, 30)]),
            ]),
            reify_windows=True,
        )


def test_restamped_elements_group_in_their_new_windows() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([1, 2, 11, 12, 13])
            | td.WindowInto(window.FixedWindows(10))
            | td.Map(lambda x: window.TimestampedValue(("k", x), x))
            | td.CombinePerKey(sum)
        )
        assert_that(out, equal_to([("k", 3), ("k", 36)]))


# -- DoFn parameters ----------------------------------------------------------------
def test_timestamp_window_and_pane_params_in_the_global_window() -> None:
    class Params(td.DoFn):
        def process(
            self,
            x: Any,
            ts: Any = td.DoFn.TimestampParam,
            w: Any = td.DoFn.WindowParam,
            pane: Any = td.DoFn.PaneInfoParam,
        ) -> Iterable[Any]:
            yield x, ts, w, pane

    with td.Pipeline() as p:
        out = p | td.Create([window.TimestampedValue("a", 4)]) | td.ParDo(Params())
        assert_that(out, equal_to([("a", td.Timestamp(4), GW, PANE_INFO_UNKNOWN)]))


def test_params_after_a_group_by_key_see_the_pane() -> None:
    class Params(td.DoFn):
        def process(self, kv: Any, ts: Any = td.DoFn.TimestampParam, w: Any = td.DoFn.WindowParam, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
            yield kv[0], ts, w, pane

    with td.Pipeline() as p:
        out = (
            p
            | td.Create([window.TimestampedValue(("k", 1), 3)])
            | td.WindowInto(window.FixedWindows(10))
            | td.GroupByKey()
            | td.ParDo(Params())
        )
        w = window.IntervalWindow(0, 10)
        only = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)
        assert_that(out, equal_to([("k", td.Timestamp(9.999999), w, only)]))


def test_pane_info_fields() -> None:
    class Pane(td.DoFn):
        def process(self, kv: Any, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
            yield pane.is_first, pane.is_last, pane.timing, pane.index, pane.nonspeculative_index

    with td.Pipeline() as p:
        out = p | td.Create([("k", 1)]) | td.GroupByKey() | td.ParDo(Pane())
        assert_that(out, equal_to([(True, True, PaneInfoTiming.ON_TIME, 0, 0)]))


def test_window_param_explodes_an_element_in_several_windows() -> None:
    with td.Pipeline() as p:
        out = (
            p
            | td.Create([window.TimestampedValue("x", 7)])
            | td.WindowInto(window.SlidingWindows(10, 5))
            | td.ParDo(StampOf())
        )
        assert_that(
            out,
            equal_to([
                ("x", td.Timestamp(7), window.IntervalWindow(0, 10)),
                ("x", td.Timestamp(7), window.IntervalWindow(5, 15)),
            ]),
        )


def test_timestamp_param_is_a_timestamp() -> None:
    class Seconds(td.DoFn):
        def process(self, x: Any, ts: Any = td.DoFn.TimestampParam) -> Iterable[Any]:
            assert isinstance(ts, td.Timestamp)
            yield ts.micros

    with td.Pipeline() as p:
        out = p | td.Create([window.TimestampedValue(0, 2.5)]) | td.ParDo(Seconds())
        assert_that(out, equal_to([2_500_000]))


# -- construction errors ------------------------------------------------------------
def test_pardo_of_a_dofn_class_suggests_an_instance() -> None:
    with pytest.raises(TypeError, match=r"did you mean ParDo\(LifecycleDoFn\(\)\)"):
        td.ParDo(LifecycleDoFn)  # type: ignore[arg-type]


def test_pardo_of_a_function_suggests_map() -> None:
    with pytest.raises(TypeError, match="use Map/FlatMap for a function"):
        td.ParDo(lambda x: x)  # type: ignore[arg-type]


def test_dofn_without_process() -> None:
    class NoProcess(td.DoFn):
        pass

    p = td.Pipeline()
    _ = p | td.Create([1]) | "Empty" >> td.ParDo(NoProcess())
    with pytest.raises(td.UserCodeError, match=r"step 'Empty': process raised TypeError: NoProcess must define process"):
        p.run()


def test_map_function_can_take_dofn_parameters_like_beam() -> None:
    from tidal import window

    with td.Pipeline() as p:
        out = (
            p
            | td.Create([window.TimestampedValue("a", 5), window.TimestampedValue("b", 15)])
            | td.WindowInto(window.FixedWindows(10))
            | td.Map(lambda x, w=td.DoFn.WindowParam, t=td.DoFn.TimestampParam: (x, w, t))
        )
        assert_that(
            out,
            equal_to([("a", window.IntervalWindow(0, 10), td.Timestamp(5)), ("b", window.IntervalWindow(10, 20), td.Timestamp(15))]),
        )
