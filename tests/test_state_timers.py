"""Stateful DoFns: state cells per key and window, event-time and processing-time timers."""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.model.strategy import WindowingStrategy
from tidal.model.trigger import PANE_INFO_UNKNOWN
from tidal.runners.core.stateful import StatefulParDoOperator
from tidal.testing import TestStream, assert_that, equal_to

TV = window.TimestampedValue
W = window.IntervalWindow
US = 1_000_000


def dropped(result: td.PipelineResult, step: str) -> int:
    query = td.MetricsFilter().with_name("dropped_due_to_lateness").with_step(step)
    return sum(c.committed for c in result.metrics().query(query)["counters"])


def run(p: td.Pipeline) -> td.PipelineResult:
    result = p.run()
    result.wait_until_finish()
    return result


# -- state cells ---------------------------------------------------------------------
class RunningCount(td.DoFn):
    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT), w: Any = td.DoFn.WindowParam) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield kv[0], w, n


def test_read_modify_write_state_counts_per_key() -> None:
    with td.Pipeline() as p:
        counts = p | td.Create([("a", "x"), ("a", "y"), ("b", "z"), ("a", "w")]) | td.ParDo(RunningCount())
        gw = window.GlobalWindow()
        assert_that(counts, equal_to([("a", gw, 1), ("a", gw, 2), ("b", gw, 1), ("a", gw, 3)]))


def test_state_is_per_key_and_window() -> None:
    with td.Pipeline() as p:
        counts = (
            p
            | td.Create([("a", 1), ("a", 2), ("a", 12), ("b", 3), ("b", 15)])
            | td.Map(lambda kv: TV(kv, kv[1]))
            | td.WindowInto(window.FixedWindows(10))
            | td.ParDo(RunningCount())
        )
        assert_that(
            counts,
            equal_to([("a", W(0, 10), 1), ("a", W(0, 10), 2), ("a", W(10, 20), 1), ("b", W(0, 10), 1), ("b", W(10, 20), 1)]),
        )


def test_state_is_per_window_for_sliding_windows() -> None:
    with td.Pipeline() as p:
        counts = (
            p
            | td.Create([("a", 7), ("a", 12)])
            | td.Map(lambda kv: TV(kv, kv[1]))
            | td.WindowInto(window.SlidingWindows(10, 5))
            | td.ParDo(RunningCount())
        )
        # 7 is in [0,10) and [5,15); 12 in [5,15) and [10,20).
        assert_that(counts, equal_to([("a", W(0, 10), 1), ("a", W(5, 15), 1), ("a", W(5, 15), 2), ("a", W(10, 20), 1)]))


class Distinct(td.DoFn):
    SEEN = td.SetStateSpec("seen")

    def process(self, kv: Any, seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        key, value = kv
        if value not in seen.read():
            seen.add(value)
            yield key, value, frozenset(seen.read())


def test_set_state() -> None:
    with td.Pipeline() as p:
        firsts = p | td.Create([("a", "x"), ("a", "y"), ("a", "x"), ("b", "x"), ("a", "y")]) | td.ParDo(Distinct())
        assert_that(firsts, equal_to([("a", "x", frozenset("x")), ("a", "y", frozenset("xy")), ("b", "x", frozenset("x"))]))


class RunningTotals(td.DoFn):
    TOTAL = td.CombiningValueStateSpec("total", combine_fn=sum)
    MEAN = td.CombiningValueStateSpec("mean", td.combiners.MeanCombineFn())

    def process(self, kv: Any, total: Any = td.DoFn.StateParam(TOTAL), mean: Any = td.DoFn.StateParam(MEAN)) -> Iterable[Any]:
        key, value = kv
        total.add(value)
        mean.add(value)
        yield key, total.read(), mean.read()
        if value == 0:
            total.clear()


def test_combining_value_state() -> None:
    with td.Pipeline() as p:
        totals = p | td.Create([("a", 1), ("a", 5), ("b", 2), ("a", 0), ("a", 4)]) | td.ParDo(RunningTotals())
        assert_that(totals, equal_to([("a", 1, 1.0), ("a", 6, 3.0), ("b", 2, 2.0), ("a", 6, 2.0), ("a", 4, 2.5)]))


def test_an_empty_combining_state_reads_the_empty_accumulator() -> None:
    class ReadOnly(td.DoFn):
        TOTAL = td.CombiningValueStateSpec("total", sum)

        def process(self, kv: Any, total: Any = td.DoFn.StateParam(TOTAL)) -> Iterable[Any]:
            yield total.read()

    with td.Pipeline() as p:
        assert_that(p | td.Create([("a", 1)]) | td.ParDo(ReadOnly()), equal_to([0]))


def test_bag_state_read_and_clear() -> None:
    class Pairs(td.DoFn):
        BAG = td.BagStateSpec("bag")

        def process(self, kv: Any, bag: Any = td.DoFn.StateParam(BAG)) -> Iterable[Any]:
            bag.add(kv[1])
            values = bag.read()
            if len(values) == 2:
                bag.clear()
                yield kv[0], values

    with td.Pipeline() as p:
        pairs = p | td.Create([("a", 1), ("a", 2), ("b", 3), ("a", 4), ("a", 5), ("a", 6)]) | td.ParDo(Pairs())
        assert_that(pairs, equal_to([("a", [1, 2]), ("a", [4, 5])]))


# -- event-time timers ---------------------------------------------------------------
class BufferUntilEndOfWindow(td.DoFn):
    BUFFER = td.BagStateSpec("buffer")
    FLUSH = td.TimerSpec("flush", td.TimeDomain.WATERMARK)

    def process(
        self,
        kv: Any,
        w: Any = td.DoFn.WindowParam,
        buffer: Any = td.DoFn.StateParam(BUFFER),
        flush: Any = td.DoFn.TimerParam(FLUSH),
    ) -> Iterable[Any]:
        buffer.add(kv[1])
        flush.set(w.max_timestamp())
        return ()

    @td.on_timer(FLUSH)
    def on_flush(
        self,
        key: Any = td.DoFn.KeyParam,
        w: Any = td.DoFn.WindowParam,
        ts: Any = td.DoFn.TimestampParam,
        buffer: Any = td.DoFn.StateParam(BUFFER),
    ) -> Iterable[Any]:
        yield key, w, ts, sorted(buffer.read())
        buffer.clear()


def test_watermark_timer_fires_when_the_watermark_passes_it() -> None:
    stream = (
        TestStream()
        .add_elements([TV(("a", 1), 1), TV(("a", 3), 3), TV(("b", 2), 2)])
        .advance_watermark_to(5)  # the timers (at 9.999999) wait
        .add_elements([TV(("a", 4), 4)])
        .advance_watermark_to(10)  # both timers fire
        .add_elements([TV(("a", 5), 5)])  # late but within lateness: its timer is already due, fires now
        .add_elements([TV(("a", 12), 12)])
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline()
    flushed = (
        p
        | stream
        | td.WindowInto(window.FixedWindows(10), allowed_lateness=20)
        | td.ParDo(BufferUntilEndOfWindow())
        | td.Map(lambda e, t=td.DoFn.TimestampParam: (*e, t))
    )
    eow0, eow1 = window.Timestamp(micros=10 * US - 1), window.Timestamp(micros=20 * US - 1)
    assert_that(
        flushed,
        equal_to(
            [
                ("a", W(0, 10), eow0, [1, 3, 4], eow0),
                ("b", W(0, 10), eow0, [2], eow0),
                ("a", W(0, 10), eow0, [5], eow0),
                ("a", W(10, 20), eow1, [12], eow1),
            ]
        ),
    )
    run(p)


class EmitAfter(td.DoFn):
    """Sets a timer 5 s after each element; the value "cancel" clears it, "later" moves it to +7."""

    TIMER = td.TimerSpec("timer", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, ts: Any = td.DoFn.TimestampParam, timer: Any = td.DoFn.TimerParam(TIMER)) -> Iterable[Any]:
        if kv[1] == "cancel":
            timer.clear()
        elif kv[1] == "later":
            timer.set(ts + 7)
        else:
            timer.set(ts + 5)
        return ()

    @td.on_timer(TIMER)
    def fired(self, key: Any = td.DoFn.KeyParam, ts: Any = td.DoFn.TimestampParam) -> Iterable[Any]:
        yield key, ts


def test_timer_clear_and_reset() -> None:
    stream = (
        TestStream()
        .add_elements([TV(("a", "go"), 1), TV(("b", "go"), 1), TV(("c", "go"), 1)])
        .add_elements([TV(("a", "cancel"), 2), TV(("b", "later"), 2)])  # a: cleared; b: moved to 9
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline()
    fired = p | stream | td.WindowInto(window.FixedWindows(100)) | td.ParDo(EmitAfter())
    assert_that(fired, equal_to([("b", window.Timestamp(9)), ("c", window.Timestamp(6))]))
    run(p)


def test_a_timer_holds_the_output_watermark_for_its_outputs() -> None:
    # The timer output (stamped 6) is on time for a downstream window [5,10): the
    # pending timer held the stateful step's output watermark at 6.
    stream = (
        TestStream()
        .add_elements([TV(("c", "go"), 1)])
        .advance_watermark_to(8)
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline()
    counts = (
        p
        | stream
        | td.WindowInto(window.FixedWindows(100))
        | td.ParDo(EmitAfter())
        | td.WindowInto(window.FixedWindows(5))
        | td.Map(lambda kv: (kv[0], 1))
        | "Count" >> td.CombinePerKey(sum)
        | td.Map(lambda kv, w=td.DoFn.WindowParam: (kv, w))
    )
    assert_that(counts, equal_to([(("c", 1), W(5, 10))]))
    assert dropped(run(p), "Count") == 0


# -- processing-time timers ----------------------------------------------------------
class FlushOnProcessingTime(td.DoFn):
    """Buffers values; flushes at the absolute processing time given by the element (TestStream time starts at 0)."""

    BUFFER = td.BagStateSpec("buffer")
    FLUSH = td.TimerSpec("flush", td.TimeDomain.REAL_TIME)

    def process(self, kv: Any, buffer: Any = td.DoFn.StateParam(BUFFER), flush: Any = td.DoFn.TimerParam(FLUSH)) -> Iterable[Any]:
        value, flush_at = kv[1]
        buffer.add(value)
        flush.set(flush_at)
        return ()

    @td.on_timer(FLUSH)
    def on_flush(self, key: Any = td.DoFn.KeyParam, buffer: Any = td.DoFn.StateParam(BUFFER)) -> Iterable[Any]:
        yield key, sorted(buffer.read())
        buffer.clear()


def test_real_time_timer_driven_by_advance_processing_time() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(2)
        .add_elements([TV(("a", ("x", 5)), 3), TV(("b", ("q", 4)), 3)])  # processing time 0
        .add_elements([TV(("a", ("y", 5)), 4)])
        .advance_processing_time(3)  # now 3: nothing due
        .advance_processing_time(1.5)  # now 4.5: b's timer fires
        .advance_processing_time(1.5)  # now 6: a's timer fires
        .add_elements([TV(("a", ("z", 10)), 5)])
        .advance_processing_time(10)  # now 16
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline()
    flushed = (
        p
        | stream
        | td.WindowInto(window.FixedWindows(100))
        | td.ParDo(FlushOnProcessingTime())
        | td.Map(lambda kv, t=td.DoFn.TimestampParam: (kv, t))
    )
    # A processing-time timer's outputs are stamped with the input watermark (2).
    two = window.Timestamp(2)
    assert_that(flushed, equal_to([(("b", ["q"]), two), (("a", ["x", "y"]), two), (("a", ["z"]), two)]))
    run(p)


def test_real_time_timers_fire_in_processing_time_order() -> None:
    class Order(td.DoFn):
        FLUSH = td.TimerSpec("flush", td.TimeDomain.REAL_TIME)

        def process(self, kv: Any, flush: Any = td.DoFn.TimerParam(FLUSH)) -> Iterable[Any]:
            flush.set(kv[1])
            return ()

        @td.on_timer(FLUSH)
        def on_flush(self, key: Any = td.DoFn.KeyParam) -> Iterable[Any]:
            yield key

    stream = (
        TestStream()
        .add_elements([TV(("late", 9), 1), TV(("early", 2), 1), TV(("middle", 5), 1)])
        .advance_processing_time(20)
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline()
    order = p | stream | td.WindowInto(window.FixedWindows(100)) | td.ParDo(Order())
    # One key per timer: all in one window, so the bag of what fired is in firing order.
    grouped = order | td.Map(lambda k: ("all", k)) | td.GroupByKey()
    assert_that(grouped, equal_to([("all", ["early", "middle", "late"])]))
    run(p)


# -- garbage collection and errors ---------------------------------------------------
def test_state_expires_with_its_window_and_later_input_is_dropped() -> None:
    stream = (
        TestStream()
        .add_elements([TV(("a", 1), 1)])
        .advance_watermark_to(12)
        .add_elements([TV(("a", 2), 2)])  # late, within lateness: the state is still there
        .advance_watermark_to(20)  # expiry: wm > 9.999999 + 5
        .add_elements([TV(("a", 3), 3), TV(("a", 13), 13)])  # 3 is dropped; 13 opens [10,20)
        .advance_watermark_to_infinity()
    )
    p = td.Pipeline()
    counts = p | stream | td.WindowInto(window.FixedWindows(10), allowed_lateness=5) | "Count" >> td.ParDo(RunningCount())
    assert_that(counts, equal_to([("a", W(0, 10), 1), ("a", W(0, 10), 2), ("a", W(10, 20), 1)]))
    assert dropped(run(p), "Count") == 1


def test_stateful_operator_garbage_collects_state_and_timers_at_window_expiry() -> None:
    windowing = WindowingStrategy(windowfn=window.FixedWindows(10), allowed_lateness_us=5 * US)
    op = StatefulParDoOperator("Buffer", td.ParDo(BufferUntilEndOfWindow()), windowing, [])
    out: list[Any] = []
    op.add_receiver("out", out.extend)
    op.open()
    w0 = W(0, 10)
    op.process([(("a", 1), 1 * US, (w0,), PANE_INFO_UNKNOWN), (("b", 2), 2 * US, (w0,), PANE_INFO_UNKNOWN)])
    assert op.store.windows() == {("a", w0), ("b", w0)}
    assert len(op.timers) == 2
    assert op.output_watermark() == op.input_watermark  # MIN: nothing passed yet
    op.advance(10 * US, [], 0)  # the timers fire; the buffers are cleared; the window is not yet expired
    assert sorted(v[0][3] for v in out) == [[1], [2]]
    assert op.timers == {}
    op.process([(("a", 3), 3 * US, (w0,), PANE_INFO_UNKNOWN)])  # late, within lateness: new state and timer
    assert op.store.windows() == {("a", w0)}
    op.advance(16 * US, [], 0)  # past 9.999999 + 5: expired
    assert len(op.store) == 0
    assert op.timers == {}
    op.process([(("a", 4), 4 * US, (w0,), PANE_INFO_UNKNOWN)])  # dropped: nothing is stored again
    assert len(op.store) == 0
    op.close()


def test_a_stateful_dofn_on_non_kv_input_is_an_error_naming_the_step() -> None:
    p = td.Pipeline()
    p | td.Create([1, 2]) | "Counting" >> td.ParDo(RunningCount())
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Counting': .*\(key, value\).*got 1"):
        run(p)


def test_a_timer_without_a_callback_is_an_error_naming_the_step() -> None:
    class NoCallback(td.DoFn):
        TIMER = td.TimerSpec("lonely", td.TimeDomain.WATERMARK)

        def process(self, kv: Any, timer: Any = td.DoFn.TimerParam(TIMER)) -> Iterable[Any]:
            timer.set(0)
            return ()

    p = td.Pipeline()
    p | td.Create([("a", 1)]) | "Lonely" >> td.ParDo(NoCallback())
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Lonely': timer 'lonely' has no callback"):
        run(p)


def test_key_param_in_process() -> None:
    class Keys(td.DoFn):
        def process(self, kv: Any, key: Any = td.DoFn.KeyParam) -> Iterable[Any]:
            yield key

    with td.Pipeline() as p:
        assert_that(p | td.Create([("a", 1), ("b", 2)]) | td.ParDo(Keys()), equal_to(["a", "b"]))
