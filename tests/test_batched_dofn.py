"""Batched DoFns (``process_batch``): elements to Arrow columns and back, windows,
timestamps and panes, errors, the same results on the direct, micro-batch and Ray
runners, and the micro-batch runner's Arrow input path against the per-element path."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal as td
from tidal import window
from tidal.model.time import MIN_TIMESTAMP, MIN_TIMESTAMP_US
from tidal.model.trigger import PANE_INFO_UNKNOWN, PaneInfo, PaneInfoTiming
from tidal.model.window import GLOBAL_WINDOW, IntervalWindow, TimestampedValue
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError
from tidal.runners.core.plan import build_plan
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchExecutor, MicroBatchRunner
from tidal.testing import TestStream, assert_that, equal_to
from tidal.io.arrowio import ReadArrow

RUNNERS = {
    "direct": lambda: DirectRunner(),
    "direct-small-bundles": lambda: DirectRunner(bundle_size=2),
    "microbatch": lambda: MicroBatchRunner(max_batch_size=3),
}


class Point(NamedTuple):
    x: int
    label: str


# -- DoFns used below ---------------------------------------------------------------------
class Identity(td.DoFn):
    """Yields its batch unchanged: the output elements must equal the input elements."""

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        yield batch


class Describe(td.DoFn):
    """One row per batch: its columns, their Arrow types and its row count."""

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        yield pa.record_batch(
            {
                "columns": [",".join(batch.schema.names)],
                "types": [",".join(str(t) for t in batch.schema.types)],
                "rows": [batch.num_rows],
            }
        )


def _double(column: pa.Array) -> pa.Array:
    return pc.multiply(column, 2) if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) else column


class DoubleNumbers(td.DoFn):
    """Doubles every numeric column, keeps the others."""

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        yield pa.RecordBatch.from_arrays([_double(c) for c in batch.columns], names=batch.schema.names)


class DoubleEach(td.DoFn):
    """The per-element twin of DoubleNumbers."""

    def process(self, element: Any) -> Iterable[Any]:
        if isinstance(element, dict):
            yield {k: _double_value(v) for k, v in element.items()}
        elif isinstance(element, tuple):
            doubled = [_double_value(v) for v in element]
            yield type(element)(*doubled) if hasattr(element, "_fields") else tuple(doubled)
        else:
            yield _double_value(element)


def _double_value(v: Any) -> Any:
    return v * 2 if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _observe(pcoll: td.PCollection[Any], label: str = "observe") -> td.PCollection[Any]:
    """Each element as (repr, timestamp µs, window, pane): repr tells 1 from 1.0 and keeps dict key order."""
    return pcoll | label >> td.Map(
        lambda x, t=td.DoFn.TimestampParam, w=td.DoFn.WindowParam, p=td.DoFn.PaneInfoParam: (repr(x), t.micros, w, p)
    )


def _global(values: Iterable[Any]) -> list[Any]:
    return [(repr(v), MIN_TIMESTAMP_US, GLOBAL_WINDOW, PANE_INFO_UNKNOWN) for v in values]


# -- elements to columns and back -----------------------------------------------------------
ELEMENTS: list[Any] = [
    1, 2, 2.5, "a", None, [1, 2], True,
    {"x": 1, "y": "a"}, {"x": 2, "y": "b"}, {"x": None, "y": "c"}, {"y": "d", "x": 3},
    ("k", 1), ("k", 2.0),
    Point(1, "p"), Point(2, "q"),
]  # fmt: skip


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_every_form_comes_back_unchanged_through_an_identity_batch(runner: str) -> None:
    with td.Pipeline(runner=RUNNERS[runner]()) as p:
        out = p | td.Create(ELEMENTS) | td.ParDo(Identity())
        assert_that(_observe(out), equal_to(_global(ELEMENTS)))


def test_batches_hold_one_form_and_one_python_type_per_column() -> None:
    # One bundle: the batches are exactly the groups of elements of the same form and types.
    expected = [
        {"columns": "value", "types": "int64", "rows": 2},
        {"columns": "value", "types": "double", "rows": 1},
        {"columns": "value", "types": "string", "rows": 1},
        {"columns": "value", "types": "null", "rows": 1},
        {"columns": "value", "types": "list<item: int64>", "rows": 1},
        {"columns": "value", "types": "bool", "rows": 1},
        {"columns": "x,y", "types": "int64,string", "rows": 2},
        {"columns": "x,y", "types": "null,string", "rows": 1},
        {"columns": "y,x", "types": "string,int64", "rows": 1},
        {"columns": "key,value", "types": "string,int64", "rows": 1},
        {"columns": "key,value", "types": "string,double", "rows": 1},
        {"columns": "x,label", "types": "int64,string", "rows": 2},
    ]
    with td.Pipeline() as p:
        assert_that(p | td.Create(ELEMENTS) | td.ParDo(Describe()), equal_to(expected))


class Reshape(td.DoFn):
    """Yields the batch's rows under the columns ``names`` (the first columns of the input, renamed)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        columns = [batch.column(i % batch.num_columns) for i in range(len(self.names))]
        yield pa.RecordBatch.from_arrays(columns, names=self.names)


@pytest.mark.parametrize(
    ("elements", "names", "expected"),
    [
        ([1, 2], ["value"], [1, 2]),
        ([1, 2], ["key", "value"], [(1, 1), (2, 2)]),
        ([1, 2], ["n"], [{"n": 1}, {"n": 2}]),
        ([1], ["value", "key"], [{"value": 1, "key": 1}]),
        ([("a", 1)], ["value"], ["a"]),
        ([("a", 1)], ["key", "value"], [("a", 1)]),
        ([("a", 1)], ["k", "v"], [{"k": "a", "v": 1}]),
        ([{"value": 1}], ["value"], [{"value": 1}]),
        ([{"a": 1, "b": 2}], ["key", "value"], [{"key": 1, "value": 2}]),
        ([Point(1, "p")], ["x", "label"], [Point(1, "p")]),
        ([Point(1, "p")], ["label", "x"], [{"label": 1, "x": "p"}]),
        ([Point(1, "p")], ["x"], [{"x": 1}]),
    ],
)
def test_output_rows_take_the_input_form_where_the_columns_allow(elements: list[Any], names: list[str], expected: list[Any]) -> None:
    with td.Pipeline() as p:
        out = p | td.Create(elements) | td.ParDo(Reshape(names))
        assert_that(out | td.Map(repr), equal_to([repr(e) for e in expected]))


def test_a_batched_dofn_may_filter_explode_and_return_tables_and_nothing() -> None:
    class Tricks(td.DoFn):
        def process_batch(self, batch: pa.RecordBatch) -> Iterable[Any]:
            values = batch.column("value")
            yield batch.filter(pc.greater(values, 2))  # a filter
            yield pa.table({"value": pc.multiply(values, 10)})  # a Table
            yield batch.slice(0, 0)  # an empty batch adds nothing
            yield pa.table({"value": pa.array([], pa.int64())})  # nor does an empty table

    class Nothing(td.DoFn):
        def process_batch(self, batch: pa.RecordBatch) -> None:
            return None

    with td.Pipeline() as p:
        nums = p | td.Create([1, 2, 3, 4])
        assert_that(nums | td.ParDo(Tricks()), equal_to([3, 4, 10, 20, 30, 40]))
        assert_that(nums | "nothing" >> td.ParDo(Nothing()), equal_to([]), label="nothing is empty")


def test_batch_schema_types_the_columns_and_keeps_nulls_in_the_batch() -> None:
    class Typed(Describe):
        batch_schema = pa.schema([("x", pa.float64()), ("y", pa.string())])

    class TypedIdentity(Identity):
        batch_schema = pa.schema([("x", pa.float64()), ("y", pa.string())])

    rows = [{"x": 1, "y": "a"}, {"x": 2.5, "y": None}, {"x": None, "y": "c"}]
    with td.Pipeline() as p:
        data = p | td.Create(rows)
        assert_that(data | td.ParDo(Typed()), equal_to([{"columns": "x,y", "types": "double,string", "rows": 3}]))
        out = data | "identity" >> td.ParDo(TypedIdentity()) | td.Map(repr)
        expected = [{"x": 1.0, "y": "a"}, {"x": 2.5, "y": None}, {"x": None, "y": "c"}]
        assert_that(out, equal_to([repr(r) for r in expected]), label="round trip")


def test_extra_arguments_side_inputs_and_tagged_outputs() -> None:
    class Split(td.DoFn):
        def process_batch(self, batch: pa.RecordBatch, factor: int, limit: int) -> Iterable[Any]:
            scaled = pc.multiply(batch.column("value"), factor)
            big = pc.greater(scaled, limit)
            yield pa.record_batch({"value": pc.filter(scaled, pc.invert(big))})
            yield td.TaggedOutput("big", pa.record_batch({"value": pc.filter(scaled, big)}))

    with td.Pipeline() as p:
        limit = p | "limit" >> td.Create([25])
        out = p | td.Create([1, 2, 3, 4]) | td.ParDo(Split(), 10, td.AsSingleton(limit)).with_outputs("big", main="small")
        assert_that(out.small, equal_to([10, 20]), label="small")
        assert_that(out.big, equal_to([30, 40]), label="big")


def test_process_batch_is_used_on_every_runner_when_both_methods_exist() -> None:
    class Both(td.DoFn):
        def process(self, element: Any) -> Iterable[Any]:
            yield ("process", element)

        def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
            yield pa.record_batch({"key": pa.array(["batch"] * batch.num_rows), "value": batch.column("value")})

    for runner in RUNNERS.values():
        with td.Pipeline(runner=runner()) as p:
            assert_that(p | td.Create([1, 2]) | td.ParDo(Both()), equal_to([("batch", 1), ("batch", 2)]))


def test_bundle_lifecycle_runs_around_the_batches() -> None:
    class Counted(td.DoFn):
        def start_bundle(self) -> None:
            self.batches = 0

        def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
            self.batches += 1
            yield batch

        def finish_bundle(self) -> Iterable[Any]:
            yield td.WindowedValue(("batches", self.batches), MIN_TIMESTAMP, [GLOBAL_WINDOW])

    with td.Pipeline() as p:
        out = p | td.Create([1, 2, "a", 3]) | td.ParDo(Counted())
        assert_that(out, equal_to([1, 2, "a", 3, ("batches", 2)]))


# -- windows, timestamps and panes ----------------------------------------------------------
class Annotate(td.DoFn):
    """Tags each row with the batch's window, timestamp, pane and size."""

    def process_batch(
        self, batch: pa.RecordBatch, w: Any = td.DoFn.WindowParam, t: Any = td.DoFn.TimestampParam, pane: Any = td.DoFn.PaneInfoParam
    ) -> Iterable[pa.RecordBatch]:
        n = batch.num_rows
        yield pa.record_batch(
            {
                "value": batch.column("value"),
                "window": [str(w)] * n,
                "t": [t.micros] * n,
                "pane": [pane.timing.name] * n,
                "rows": [n] * n,
            }
        )


def test_batches_share_window_pane_and_timestamp_and_outputs_keep_them() -> None:
    events = [TimestampedValue(v, t) for v, t in [(1, 1), (2, 1), (3, 2), (4, 11), (5, 11), (6, 11)]]
    w0, w1 = IntervalWindow(0, 10), IntervalWindow(10, 20)
    expected = [
        ({"value": 1, "window": str(w0), "t": 1_000_000, "pane": "UNKNOWN", "rows": 2}, 1_000_000, w0),
        ({"value": 2, "window": str(w0), "t": 1_000_000, "pane": "UNKNOWN", "rows": 2}, 1_000_000, w0),
        ({"value": 3, "window": str(w0), "t": 2_000_000, "pane": "UNKNOWN", "rows": 1}, 2_000_000, w0),
        ({"value": 4, "window": str(w1), "t": 11_000_000, "pane": "UNKNOWN", "rows": 3}, 11_000_000, w1),
        ({"value": 5, "window": str(w1), "t": 11_000_000, "pane": "UNKNOWN", "rows": 3}, 11_000_000, w1),
        ({"value": 6, "window": str(w1), "t": 11_000_000, "pane": "UNKNOWN", "rows": 3}, 11_000_000, w1),
    ]
    with td.Pipeline() as p:
        out = p | td.Create(events) | td.WindowInto(window.FixedWindows(10)) | td.ParDo(Annotate())
        observed = out | td.Map(lambda x, t=td.DoFn.TimestampParam, w=td.DoFn.WindowParam: (x, t.micros, w))
        assert_that(observed, equal_to(expected))


def test_an_element_in_several_windows_is_processed_once_per_window_with_window_param() -> None:
    class Windows(td.DoFn):
        def process_batch(self, batch: pa.RecordBatch, w: Any = td.DoFn.WindowParam) -> Iterable[pa.RecordBatch]:
            yield pa.record_batch({"key": [str(w)] * batch.num_rows, "value": batch.column("value")})

    with td.Pipeline() as p:
        out = p | td.Create([TimestampedValue(7, 5)]) | td.WindowInto(window.SlidingWindows(10, 5)) | td.ParDo(Windows())
        observed = out | td.Map(lambda x, w=td.DoFn.WindowParam: (x, w))
        w_a, w_b = IntervalWindow(5, 15), IntervalWindow(0, 10)
        assert_that(observed, equal_to([((str(w_a), 7), w_a), ((str(w_b), 7), w_b)]))


def test_without_window_param_an_element_keeps_all_its_windows() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([TimestampedValue(7, 5)]) | td.WindowInto(window.SlidingWindows(10, 5)) | td.ParDo(Describe())
        # One call for the element in two windows; its output is in both windows.
        assert_that(out, equal_to([{"columns": "value", "types": "int64", "rows": 1}]))
        windows = out | td.Map(lambda x, w=td.DoFn.WindowParam: w)
        assert_that(windows, equal_to([IntervalWindow(5, 15), IntervalWindow(0, 10)]), label="windows")


def _late_stream() -> TestStream:
    return (
        TestStream()
        .add_elements([TimestampedValue(("k", 1), 1), TimestampedValue(("j", 5), 2)])
        .advance_watermark_to(5)
        .add_elements([TimestampedValue(("k", 3), 3)])
        .advance_processing_time(10)
        .advance_watermark_to(11)
        .add_elements([TimestampedValue(("k", 4), 4)])
        .advance_watermark_to_infinity()
    )


class SumGroups(td.DoFn):
    """(key, [values]) -> (key, sum): a batched DoFn over the panes of a GroupByKey."""

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        sums = [sum(vs) for vs in batch.column("value").to_pylist()]
        yield pa.record_batch({"key": batch.column("key"), "value": pa.array(sums)})


def _triggered(p: td.Pipeline) -> td.PCollection[Any]:
    return (
        p
        | "stream" >> _late_stream()
        | "triggered" >> td.WindowInto(
            window.FixedWindows(10),
            trigger=td.trigger.AfterWatermark(early=td.trigger.AfterProcessingTime(5), late=td.trigger.AfterCount(1)),
            accumulation_mode=td.trigger.AccumulationMode.ACCUMULATING,
            allowed_lateness=10,
        )
        | td.GroupByKey()
        | td.ParDo(SumGroups())
    )


def _pane(timing: PaneInfoTiming, index: int, nonspeculative: int, is_first: bool) -> PaneInfo:
    return PaneInfo(is_first, False, timing, index, nonspeculative)


W0 = IntervalWindow(0, 10)
TRIGGERED = [
    (repr(("k", 4)), 9_999_999, W0, _pane(PaneInfoTiming.EARLY, 0, -1, True)),
    (repr(("j", 5)), 9_999_999, W0, _pane(PaneInfoTiming.EARLY, 0, -1, True)),
    (repr(("k", 4)), 9_999_999, W0, _pane(PaneInfoTiming.ON_TIME, 1, 0, False)),
    (repr(("j", 5)), 9_999_999, W0, _pane(PaneInfoTiming.ON_TIME, 1, 0, False)),
    (repr(("k", 8)), 9_999_999, W0, _pane(PaneInfoTiming.LATE, 2, 1, False)),
]


@pytest.mark.parametrize("runner", ["direct", "microbatch"])
def test_panes_of_a_triggered_group_by_key_pass_through_a_batched_dofn(runner: str) -> None:
    with td.Pipeline(runner=RUNNERS[runner]()) as p:
        assert_that(_observe(_triggered(p)), equal_to(TRIGGERED))


# -- batch_timestamp_column -------------------------------------------------------------------
class Shift(td.DoFn):
    """Rows of many timestamps in one batch: moves each one second later, reports the batch size."""

    batch_timestamp_column = "ts"

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        micros = pc.cast(batch.column("ts"), pa.int64())
        later = pc.cast(pc.add(micros, 1_000_000), pa.timestamp("us", tz="UTC"))
        yield pa.record_batch({"value": batch.column("value"), "rows": [batch.num_rows] * batch.num_rows, "ts": later})


def test_a_timestamp_column_batches_across_timestamps_and_stamps_each_row() -> None:
    events = [TimestampedValue(v, t) for v, t in [(1, 1), (2, 2), (3, 3), (4, 11), (5, 12)]]
    w0, w1 = IntervalWindow(0, 10), IntervalWindow(10, 20)
    expected = [
        (repr({"value": 1, "rows": 3}), 2_000_000, w0, PANE_INFO_UNKNOWN),
        (repr({"value": 2, "rows": 3}), 3_000_000, w0, PANE_INFO_UNKNOWN),
        (repr({"value": 3, "rows": 3}), 4_000_000, w0, PANE_INFO_UNKNOWN),
        (repr({"value": 4, "rows": 2}), 12_000_000, w1, PANE_INFO_UNKNOWN),
        (repr({"value": 5, "rows": 2}), 13_000_000, w1, PANE_INFO_UNKNOWN),
    ]
    with td.Pipeline() as p:
        out = p | td.Create(events) | td.WindowInto(window.FixedWindows(10)) | td.ParDo(Shift())
        assert_that(_observe(out), equal_to(expected))


def test_the_timestamp_column_holds_the_element_timestamps_as_utc_microseconds() -> None:
    class Look(td.DoFn):
        batch_timestamp_column = "at"

        def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
            column = batch.column("at")
            yield pa.record_batch({"type": [str(column.type)], "micros": [pc.cast(column, pa.int64()).to_pylist()], "at": column.slice(0, 1)})

    with td.Pipeline() as p:
        out = p | td.Create([TimestampedValue("a", 1.5), TimestampedValue("b", 1.5)]) | td.ParDo(Look())
        assert_that(out, equal_to([{"type": "timestamp[us, tz=UTC]", "micros": [1_500_000, 1_500_000]}]))


# -- the same results on every runner -------------------------------------------------------
def _mixed_windowed(p: td.Pipeline) -> td.PCollection[Any]:
    events = [
        TimestampedValue(1, 1), TimestampedValue(2, 1), TimestampedValue(2.5, 1),
        TimestampedValue({"n": 3, "s": "x"}, 4), TimestampedValue({"n": 4, "s": "y"}, 4),
        TimestampedValue(("k", 5), 12), TimestampedValue(Point(6, "z"), 13), TimestampedValue("word", 13),
    ]  # fmt: skip
    return (
        p
        | "mixed" >> td.Create(events)
        | "fixed" >> td.WindowInto(window.FixedWindows(10))
        | "double" >> td.ParDo(DoubleNumbers())
    )


MIXED_WINDOWED = [
    (repr(2), 1_000_000, W0, PANE_INFO_UNKNOWN),
    (repr(4), 1_000_000, W0, PANE_INFO_UNKNOWN),
    (repr(5.0), 1_000_000, W0, PANE_INFO_UNKNOWN),
    (repr({"n": 6, "s": "x"}), 4_000_000, W0, PANE_INFO_UNKNOWN),
    (repr({"n": 8, "s": "y"}), 4_000_000, W0, PANE_INFO_UNKNOWN),
    (repr(("k", 10)), 12_000_000, IntervalWindow(10, 20), PANE_INFO_UNKNOWN),
    (repr(Point(12, "z")), 13_000_000, IntervalWindow(10, 20), PANE_INFO_UNKNOWN),
    (repr("word"), 13_000_000, IntervalWindow(10, 20), PANE_INFO_UNKNOWN),
]


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_mixed_forms_in_a_windowed_pipeline_give_exact_results(runner: str) -> None:
    with td.Pipeline(runner=RUNNERS[runner]()) as p:
        assert_that(_observe(_mixed_windowed(p)), equal_to(MIXED_WINDOWED))


@pytest.mark.usefixtures("ray_session")
def test_the_ray_runner_gives_the_same_results() -> None:
    from tidal.runners.ray import RayRunner

    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        assert_that(_observe(_mixed_windowed(p)), equal_to(MIXED_WINDOWED), label="mixed forms")
        assert_that(_observe(_triggered(p), "observe panes"), equal_to(TRIGGERED), label="triggered panes")
    with pytest.raises(UserCodeError) as info:
        with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
            _ = p | td.Create([1, 2, 3]) | "Explode" >> td.ParDo(Boom())
    assert info.value.step == "Explode"
    assert "process_batch raised ZeroDivisionError: no batch today" in str(info.value)


# -- errors -----------------------------------------------------------------------------------
class Boom(td.DoFn):
    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        raise ZeroDivisionError("no batch today")


@pytest.mark.parametrize("runner", ["direct", "microbatch"])
def test_an_error_in_process_batch_names_the_step_and_the_batch(runner: str) -> None:
    with pytest.raises(UserCodeError) as info:
        with td.Pipeline(runner=RUNNERS[runner]()) as p:
            _ = p | td.Create([1, 2, 3]) | "Explode" >> td.ParDo(Boom())
    err = info.value
    assert str(err).startswith("step 'Explode': process_batch raised ZeroDivisionError: no batch today on element pyarrow.RecordBatch")
    assert err.fn_name == "process_batch"
    assert isinstance(err.element, pa.RecordBatch) and err.element.column("value").to_pylist() == [1, 2, 3]
    assert isinstance(err.__cause__, ZeroDivisionError)


def test_an_error_while_yielding_is_a_user_error_too() -> None:
    class LateBoom(td.DoFn):
        def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
            yield batch
            raise KeyError("after the first batch")

    with pytest.raises(UserCodeError, match=r"^step 'Late': process_batch raised KeyError: 'after the first batch' on element"):
        with td.Pipeline() as p:
            _ = p | td.Create([1]) | "Late" >> td.ParDo(LateBoom())


def _fails_with(dofn: td.DoFn, elements: list[Any], message: str) -> None:
    with pytest.raises(PipelineExecutionError) as info:
        with td.Pipeline() as p:
            _ = p | td.Create(elements) | "Step" >> td.ParDo(dofn)
    assert not isinstance(info.value, UserCodeError)
    assert str(info.value) == message


class Returns(td.DoFn):
    def __init__(self, result: Any) -> None:
        self.result = result

    def process_batch(self, batch: pa.RecordBatch) -> Any:
        return self.result(batch)


def test_returning_a_single_batch_instead_of_an_iterable_is_an_error() -> None:
    _fails_with(
        Returns(lambda b: b),
        [1],
        "step 'Step': Returns.process_batch returned a single RecordBatch; it must return an iterable of "
        "RecordBatches (or Tables): yield the batch, or return [batch]",
    )
    _fails_with(
        Returns(lambda b: pa.Table.from_batches([b])),
        [1],
        "step 'Step': Returns.process_batch returned a single Table; it must return an iterable of "
        "RecordBatches (or Tables): yield the batch, or return [batch]",
    )


def test_returning_something_not_iterable_is_an_error() -> None:
    _fails_with(
        Returns(lambda b: 42),
        [1],
        "step 'Step': Returns.process_batch must return or yield pyarrow RecordBatches (or Tables); it returned int 42",
    )


def test_yielding_something_that_is_not_a_batch_is_an_error() -> None:
    _fails_with(
        Returns(lambda b: [b, {"value": 1}]),
        [1],
        "step 'Step': Returns.process_batch must yield pyarrow RecordBatches (or Tables); it yielded dict {'value': 1}",
    )
    # (The repr of an Array holds its address: the message is checked up to it.)
    with pytest.raises(PipelineExecutionError, match=r"^step 'Step': Returns.process_batch must yield pyarrow RecordBatches \(or Tables\); it yielded Int64Array"):
        with td.Pipeline() as p:
            _ = p | td.Create([1]) | "Step" >> td.ParDo(Returns(lambda b: [b.column(0)]))


def test_elements_that_do_not_map_to_columns_are_errors() -> None:
    _fails_with(
        Identity(),
        [(1, 2, 3)],
        "step 'Step': Identity.process_batch takes dicts, NamedTuples, (key, value) pairs or single values; got the "
        "3-tuple (1, 2, 3) (make it a dict or a NamedTuple to name its columns)",
    )
    _fails_with(
        Identity(),
        [{1: "a"}],
        "step 'Step': Identity.process_batch needs dict elements with string keys (they name the columns); got the "
        "key 1 in {1: 'a'}",
    )
    _fails_with(
        Identity(),
        [2**64],
        "step 'Step': cannot make the Arrow column 'value' for Identity.process_batch from elements like "
        "18446744073709551616: Python int too large to convert to C long",
    )


def test_a_column_arrow_cannot_convert_is_an_error() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "Opaque()"

    with pytest.raises(PipelineExecutionError) as info:
        with td.Pipeline() as p:
            _ = p | td.Create([{"o": Opaque()}]) | "Step" >> td.ParDo(Identity())
    assert str(info.value).startswith(
        "step 'Step': cannot make the Arrow column 'o' for Identity.process_batch from elements like {'o': Opaque()}: "
        "Could not convert Opaque() with type Opaque: did not recognize Python value type"
    )


def test_a_schema_that_does_not_match_the_elements_is_an_error() -> None:
    class Typed(Identity):
        batch_schema = pa.schema([("x", pa.int64())])

    _fails_with(
        Typed(),
        [{"y": 1}],
        "step 'Step': batch_schema has the columns ['x'] but elements like {'y': 1} make the columns ['y']",
    )
    _fails_with(
        Typed(),
        [{"x": "one"}],
        "step 'Step': cannot make the Arrow column 'x' for Typed.process_batch from elements like {'x': 'one'}: "
        "Could not convert 'one' with type str: tried to convert to int64",
    )


def test_output_batches_with_duplicate_columns_are_errors() -> None:
    _fails_with(
        Returns(lambda b: [pa.RecordBatch.from_arrays([b.column(0), b.column(0)], names=["a", "a"])]),
        [1],
        "step 'Step': Returns.process_batch yielded a batch with the column name 'a' more than once: ['a', 'a']",
    )


class Stamped(td.DoFn):
    batch_timestamp_column = "ts"

    def __init__(self, make: Callable[[pa.RecordBatch], Any]) -> None:
        self.make = make

    def process_batch(self, batch: pa.RecordBatch) -> Any:
        yield self.make(batch)


def test_timestamp_column_errors() -> None:
    stamped = [TimestampedValue(1, 5)]
    with pytest.raises(PipelineExecutionError) as info:
        with td.Pipeline() as p:
            _ = p | td.Create(stamped) | td.WindowInto(window.FixedWindows(10)) | "Step" >> td.ParDo(Stamped(lambda b: b.drop_columns(["ts"])))
    assert str(info.value) == (
        "step 'Step': Stamped.process_batch yielded a batch without the timestamp column 'ts' (columns: ['value']); "
        "with batch_timestamp_column set, every output batch carries it"
    )
    with pytest.raises(PipelineExecutionError) as info:
        with td.Pipeline() as p:
            _ = p | td.Create(stamped) | "Step" >> td.ParDo(Stamped(lambda b: b.set_column(1, "ts", pa.array([5]))))
    assert str(info.value) == (
        "step 'Step': the timestamp column 'ts' of a batch from Stamped.process_batch has the type int64; it must be "
        "an Arrow timestamp (such as timestamp[us, tz=UTC])"
    )
    late = pa.array([10_000_000], pa.timestamp("us", tz="UTC"))
    with pytest.raises(PipelineExecutionError) as info:
        with td.Pipeline() as p:
            _ = p | td.Create(stamped) | td.WindowInto(window.FixedWindows(10)) | "Step" >> td.ParDo(Stamped(lambda b: b.set_column(1, "ts", late)))
    assert str(info.value) == (
        "step 'Step': Stamped.process_batch gave a row the timestamp Timestamp(10), outside its batch's window "
        "IntervalWindow(0, 10): output rows keep their batch's windows (re-window them after this step with WindowInto)"
    )
    _fails_with(
        Stamped(lambda b: b),
        [{"ts": 1}],
        "step 'Step': batch_timestamp_column 'ts' is also a column of the elements (like {'ts': 1}); pick another name for it",
    )


def test_unsupported_parameters_state_and_settings_are_rejected_before_any_element() -> None:
    class WantsKey(td.DoFn):
        def process_batch(self, batch: pa.RecordBatch, key: Any = td.DoFn.KeyParam) -> Iterable[pa.RecordBatch]:
            yield batch

    _fails_with(
        WantsKey(),
        [("k", 1)],
        "step 'Step': process_batch cannot take DoFn.KeyParam (parameter 'key'): a batch has no single element, key, "
        "state or timer; it may take DoFn.WindowParam, DoFn.TimestampParam and DoFn.PaneInfoParam",
    )

    class WantsTimestamp(Stamped):
        def process_batch(self, batch: pa.RecordBatch, t: Any = td.DoFn.TimestampParam) -> Any:
            yield batch

    _fails_with(
        WantsTimestamp(lambda b: b),
        [1],
        "step 'Step': process_batch cannot take DoFn.TimestampParam when batch_timestamp_column is set: the rows' "
        "timestamps are in the column 'ts'",
    )

    class Stateful(td.DoFn):
        COUNT = td.ReadModifyWriteStateSpec("count")

        def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
            yield kv

        def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
            yield batch

    _fails_with(
        Stateful(),
        [("k", 1)],
        "step 'Step': Stateful defines process_batch and declares state or timers: a batched DoFn cannot use state "
        "or timers (use process for a stateful DoFn)",
    )

    class BadSchema(Identity):
        batch_schema = {"x": "int64"}  # type: ignore[assignment]

    _fails_with(BadSchema(), [1], "step 'Step': batch_schema must be a pyarrow.Schema, got {'x': 'int64'}")


# -- the per-element equivalence property -------------------------------------------------------
class _Collect(td.DoFn):
    """Appends (repr, timestamp, windows, pane) of each element to a file, one pickle per bundle."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.buffer: list[Any] = []

    def process(self, v: Any, t: Any = td.DoFn.TimestampParam, w: Any = td.DoFn.WindowParam, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
        self.buffer.append((repr(v), t.micros, w, pane))
        return ()

    def finish_bundle(self) -> None:
        if self.buffer:
            with open(self.path, "ab") as f:
                pickle.dump(self.buffer, f)
            self.buffer = []


def _collected(runner: Any, build: Callable[[td.Pipeline], Any], path: Path) -> list[Any]:
    p = td.Pipeline(runner=runner)
    build(p) | td.ParDo(_Collect(str(path)))
    p.run().wait_until_finish()
    out: list[Any] = []
    if path.exists():
        with open(path, "rb") as f:
            while True:
                try:
                    out.extend(pickle.load(f))
                except EOFError:
                    break
    return sorted(out, key=repr)


scalar = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False), st.text(max_size=3), st.none(), st.booleans())
element = st.one_of(
    scalar,
    st.fixed_dictionaries({"a": scalar, "b": scalar}),
    st.tuples(st.sampled_from(["k", "j"]), scalar),
    st.builds(Point, st.integers(-100, 100), st.text(max_size=2)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(st.tuples(element, st.integers(0, 30)), max_size=25),
    windowed=st.booleans(),
    bundle=st.integers(1, 8),
)
def test_process_batch_equals_the_per_element_process(tmp_path_factory: Any, items: list[Any], windowed: bool, bundle: int) -> None:
    def build(dofn: td.DoFn) -> Callable[[td.Pipeline], Any]:
        def pipeline(p: td.Pipeline) -> Any:
            pcoll = p | td.Create([TimestampedValue(e, t) for e, t in items])
            if windowed:
                pcoll = pcoll | td.WindowInto(window.SlidingWindows(10, 5))
            return pcoll | td.ParDo(dofn)

        return pipeline

    tmp = tmp_path_factory.mktemp("batched")
    batched = _collected(DirectRunner(bundle_size=bundle), build(DoubleNumbers()), tmp / "batched")
    per_element = _collected(DirectRunner(), build(DoubleEach()), tmp / "per_element")
    assert batched == per_element


# -- the micro-batch runner's Arrow input ---------------------------------------------------------
class Scale(td.DoFn):
    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        yield pa.record_batch({"key": batch.column("key"), "value": pc.multiply(batch.column("value"), 10)})


class ScaleStamped(td.DoFn):
    batch_timestamp_column = "ts"

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        keep = pc.not_equal(batch.column("key"), 3)
        yield pa.record_batch(
            {"key": batch.column("key"), "value": pc.multiply(batch.column("value"), 10), "ts": batch.column("ts")}
        ).filter(keep)


class DescribeStamped(Describe):
    batch_timestamp_column = "ts"

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        for out in super().process_batch(batch.drop_columns(["ts"])):
            yield out.append_column("ts", batch.column("ts").slice(0, 1))


class ScaleTyped(Scale):
    batch_schema = pa.schema([("key", pa.int32()), ("value", pa.float32())])


WINDOWFNS: dict[str, Any] = {
    "global": None,
    "fixed": window.FixedWindows(10),
    "sliding": window.SlidingWindows(10, 4, offset=1),
}
DOFNS: dict[str, Callable[[], td.DoFn]] = {"scale": Scale, "stamped": ScaleStamped, "typed": ScaleTyped}


def _arrow(rows: list[tuple[Any, Any, Any]], float_seconds: bool = False) -> pa.Table:
    return pa.table(
        {
            "k": pa.array([r[0] for r in rows], pa.int32()),
            "v": pa.array([r[1] for r in rows], pa.float64()),
            "ts": pa.array([r[2] / 4 if float_seconds else r[2] for r in rows], pa.float64() if float_seconds else pa.int64()),
        }
    )


def _arrow_pipeline(table: pa.Table, windowfn: Any, dofn: td.DoFn) -> Callable[[td.Pipeline], Any]:
    def build(p: td.Pipeline) -> Any:
        pcoll = p | ReadArrow(table, key="k", value="v", timestamp="ts")
        if windowfn is not None:
            pcoll = pcoll | td.WindowInto(windowfn)
        return pcoll | td.ParDo(dofn)

    return build


def test_the_arrow_input_path_is_taken_only_for_a_batched_dofn_right_after_the_source() -> None:
    def executor(build: Callable[[td.Pipeline], Any]) -> MicroBatchExecutor:
        p = td.Pipeline()
        build(p)
        return MicroBatchExecutor(build_plan(p.graph()), 1.0, 100)

    table = _arrow([(1, 1.0, 1)])
    assert len(executor(_arrow_pipeline(table, window.FixedWindows(10), Scale())).arrow_pardos) == 1
    assert not executor(_arrow_pipeline(table, window.Sessions(10), Scale())).arrow_pardos
    assert not executor(_arrow_pipeline(table, None, DoubleEach())).arrow_pardos
    assert len(executor(lambda p: _arrow_pipeline(table, None, Scale())(p) | "again" >> td.ParDo(Scale())).arrow_pardos) == 1

    def two_readers(p: td.Pipeline) -> None:
        rows = p | ReadArrow(table, key="k", value="v", timestamp="ts")
        _ = rows | "a" >> td.ParDo(Scale())
        _ = rows | "b" >> td.ParDo(Scale())

    assert not executor(two_readers).arrow_pardos


def test_arrow_columns_reach_process_batch_typed_as_the_elements_would_be(tmp_path: Path) -> None:
    table = _arrow([(1, 1.0, 5), (2, 2.0, 5), (3, 3.0, 7)])
    build = _arrow_pipeline(table, None, DescribeStamped())
    expected = [
        (repr({"columns": "key,value", "types": "int64,double", "rows": 3}), 5_000_000, GLOBAL_WINDOW, PANE_INFO_UNKNOWN)
    ]
    assert _collected(MicroBatchRunner(), build, tmp_path / "columnar") == expected
    assert _collected(MicroBatchRunner(columnar=False), build, tmp_path / "per_element") == expected


arrow_rows = st.lists(
    st.tuples(st.sampled_from([0, 1, 2, 3, -(2**31)]), st.integers(-40, 40).map(lambda x: x / 4), st.integers(-30, 60)),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=arrow_rows,
    wname=st.sampled_from(sorted(WINDOWFNS)),
    dname=st.sampled_from(sorted(DOFNS)),
    batch=st.integers(1, 25),
    nulls=st.booleans(),
    float_seconds=st.booleans(),
)
def test_the_arrow_input_path_equals_the_per_element_path(
    tmp_path_factory: Any, rows: list[Any], wname: str, dname: str, batch: int, nulls: bool, float_seconds: bool
) -> None:
    if nulls and rows:
        rows = [(None, *rows[0][1:]), *rows[1:]]  # a null key: that table goes element by element
    tmp = tmp_path_factory.mktemp("arrow_pardo")
    build = _arrow_pipeline(_arrow(rows, float_seconds), WINDOWFNS[wname], DOFNS[dname]())
    columnar = _collected(MicroBatchRunner(max_batch_size=batch), build, tmp / "columnar")
    per_element = _collected(MicroBatchRunner(max_batch_size=batch, columnar=False), build, tmp / "per_element")
    direct = _collected(DirectRunner(), build, tmp / "direct")
    assert columnar == per_element == direct
