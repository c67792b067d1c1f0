"""Cases for the rows Beam's matrix lacks: TestStream, unbounded sources, bad input,
exactly-once after failure, and measured runner overhead."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Iterable, Iterator

import tidal as td
from tidal import trigger as tr
from tidal import window
from tidal.capability_matrix.case import (
    CHECKPOINT_RESTORE,
    GW,
    CaseContext,
    CaseFailure,
    ExpectedError,
    W,
    case,
    early,
    eow,
    on_time,
)
from tidal.capability_matrix.cases.common import create_stamped, sort_groups
from tidal.model.primitives import UnboundedSource
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP, MIN_TIMESTAMP_US, Timestamp, to_micros
from tidal.model.window import TimestampedValue as TV
from tidal.testing import TestStream
from tidal.typehints import TypeCheckError

_FULL = ("value", "window", "timestamp", "pane")
_WINDOWED = ("value", "window")

# -- TestStream -------------------------------------------------------------------------


@case("teststream.watermark_fires_windows", "TestStream", observe=_FULL,
      expected=[(("k", [1, 2]), W(0, 10), eow(10), on_time(0, last=True)), (("k", [12]), W(10, 20), eow(20), on_time(0, last=True))])
def ts_watermark(p: td.Pipeline) -> Any:
    """Elements and watermark advances replay in order; each advance fires the windows it passes."""
    stream = (TestStream().add_elements([TV(("k", 1), 1), TV(("k", 2), 2)]).advance_watermark_to(10)
              .add_elements([TV(("k", 12), 12)]).advance_watermark_to(20).advance_watermark_to_infinity())
    return p | stream | td.WindowInto(window.FixedWindows(10)) | td.GroupByKey() | sort_groups()


@case("teststream.event_timestamp_argument", "TestStream", observe=("value", "timestamp"), expected=[("a", Timestamp(7)), ("b", Timestamp(7))])
def ts_event_timestamp(p: td.Pipeline) -> Any:
    """add_elements(..., event_timestamp=7) stamps plain values at 7."""
    return p | TestStream().add_elements(["a", "b"], event_timestamp=7).advance_watermark_to_infinity()


@case("teststream.plain_elements", "TestStream", observe=("value", "window", "timestamp"), expected=[(1, GW, MIN_TIMESTAMP), (2, GW, MIN_TIMESTAMP)])
def ts_plain(p: td.Pipeline) -> Any:
    """Plain values without a timestamp are in the global window at the minimum timestamp."""
    return p | TestStream().add_elements([1, 2]).advance_watermark_to_infinity()


@case("teststream.processing_time_does_not_move_watermark", "TestStream", observe=("value", "pane"),
      expected=[(("k", [1]), early(0)), (("k", []), on_time(1, last=True))])
def ts_processing_time(p: td.Pipeline) -> Any:
    """advance_processing_time fires processing-time triggers but leaves the watermark (the pane is EARLY)."""
    stream = TestStream().add_elements([TV(("k", 1), 1)]).advance_processing_time(5).advance_watermark_to_infinity()
    trigger = tr.AfterWatermark(early=tr.AfterProcessingTime(1))
    windowed = p | stream | td.WindowInto(window.FixedWindows(10), trigger=trigger, accumulation_mode=tr.AccumulationMode.DISCARDING)
    return windowed | td.GroupByKey() | sort_groups()


@case("teststream.watermark_must_advance", "TestStream",
      error=ExpectedError(ValueError, "advance_watermark_to(Timestamp(10))", also=("must strictly advance", "already at Timestamp(10)")))
def ts_watermark_must_advance(p: td.Pipeline) -> Any:
    """A watermark advance to a time not later than the previous watermark is refused when the
    TestStream is built, naming both values."""
    return p | TestStream().add_elements([TV(("k", 1), 1)]).advance_watermark_to(10).advance_watermark_to(10)


def _hundred_steps() -> TestStream:
    stream = TestStream()
    for i in range(100):
        stream = stream.add_elements([TV(("k", i), i * 10 + 1)]).advance_watermark_to(i * 10 + 10)
    return stream.advance_watermark_to_infinity()


@case("teststream.many_steps", "TestStream", observe=("value", "window", "pane"),
      expected=[(("k", i), W(10 * i, 10 * i + 10), on_time(0, last=True)) for i in range(100)])
def ts_many(p: td.Pipeline) -> Any:
    """A hundred element and watermark steps: every window fires exactly once, on time."""
    return p | _hundred_steps() | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)


# -- Unbounded sources ------------------------------------------------------------------


def _ticks() -> Iterator[Any]:
    for t in range(10):
        yield TV(("k", 1), t)


@case("unbounded.generator_windows", "Unbounded sources", observe=_WINDOWED, expected=[(("k", 5), W(0, 5)), (("k", 5), W(5, 10))])
def unbounded_generator(p: td.Pipeline) -> Any:
    """A GeneratorSource read as an unbounded stream, counted in fixed windows."""
    return p | td.Read(td.GeneratorSource(_ticks)) | td.WindowInto(window.FixedWindows(5)) | td.CombinePerKey(sum)


class ScriptedSource(UnboundedSource):
    """An unbounded source that hands out scripted bursts: one burst per poll, then the watermark.

    ``bursts`` is a list of (elements, watermark seconds); the offset is the
    number of bursts handed out, so a reader can resume after any of them.
    """

    def __init__(self, bursts: list[tuple[list[Any], float]]) -> None:
        self.bursts = [(list(elements), to_micros(mark, "watermark")) for elements, mark in bursts]

    def open_reader(self, start_offset: Any = None) -> "_ScriptedReader":
        return _ScriptedReader(self.bursts, int(start_offset or 0))


class _ScriptedReader:
    def __init__(self, bursts: list[tuple[list[Any], int]], index: int) -> None:
        self.bursts = bursts
        self.index = index

    def poll(self, max_elements: int) -> list[Any]:
        if self.index >= len(self.bursts):
            return []
        elements, _ = self.bursts[self.index]
        self.index += 1
        return list(elements)

    def watermark(self) -> int:
        if self.index >= len(self.bursts):
            return MAX_TIMESTAMP_US
        return self.bursts[self.index - 1][1] if self.index else MIN_TIMESTAMP_US

    def offset(self) -> int:
        return self.index

    def is_done(self) -> bool:
        return self.index >= len(self.bursts)

    def close(self) -> None:
        pass


@case("unbounded.custom_source", "Unbounded sources", observe=_WINDOWED, expected=[(("k", 3), W(0, 10)), (("k", 30), W(10, 20))])
def unbounded_custom(p: td.Pipeline) -> Any:
    """A user UnboundedSource with its own reader, offsets and watermark."""
    source = ScriptedSource([([TV(("k", 1), 1), TV(("k", 2), 2)], 5), ([TV(("k", 10), 12)], 12), ([TV(("k", 20), 15)], 30)])
    return p | td.Read(source) | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)


@case("unbounded.behind_watermark_dropped", "Unbounded sources", observe=_WINDOWED, expected=[(("k", 1), W(0, 10)), (("k", 20), W(20, 30))])
def unbounded_late(p: td.Pipeline) -> Any:
    """An element behind the source's watermark is late, and dropped with no allowed lateness."""
    source = ScriptedSource([([TV(("k", 1), 1)], 1), ([TV(("k", 20), 20)], 20), ([TV(("k", 2), 2)], 20)])
    return p | td.Read(source) | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)


class _UntilStopped:
    """Yields ``elements`` then waits (up to a minute) for the file ``stop`` to appear."""

    def __init__(self, elements: list[Any], stop: str) -> None:
        self.elements = elements
        self.stop = stop

    def __call__(self) -> Iterator[Any]:
        yield from self.elements
        deadline = time.monotonic() + 60
        while not os.path.exists(self.stop) and time.monotonic() < deadline:
            time.sleep(0.01)


def _wait_for(ctx: CaseContext, enough: Callable[[list[Any]], bool], seconds: float) -> list[Any]:
    deadline = time.monotonic() + seconds
    while True:
        got = ctx.outputs()
        if enough(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def _drive_fires_while_running(p: td.Pipeline, ctx: CaseContext) -> Any:
    result = p.run()
    stop = ctx.workdir / "stop"
    try:
        got = _wait_for(ctx, lambda out: any(w == W(0, 10) for _, w in out), 20)
        if not any(w == W(0, 10) for _, w in got):
            raise CaseFailure("the window [0, 10) did not fire while the stream was running (waited 20 s for the watermark)")
    finally:
        stop.touch()
    result.wait_until_finish(30)
    if not result.state.is_terminal:
        result.cancel()
        raise CaseFailure("the stream did not finish after its source ended")
    return result


@case("unbounded.fires_while_running", "Unbounded sources", observe=_WINDOWED,
      expected=[(("k", 3), W(0, 10)), (("k", 15), W(10, 20))], drive=_drive_fires_while_running)
def unbounded_fires(p: td.Pipeline, ctx: CaseContext) -> Any:
    """A window fires as soon as the source's watermark passes it, while the source is still open."""
    source = td.GeneratorSource(_UntilStopped([TV(("k", 1), 1), TV(("k", 2), 2), TV(("k", 15), 15)], str(ctx.workdir / "stop")))
    return p | td.Read(source) | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)


def _drive_cancel(p: td.Pipeline, ctx: CaseContext) -> Any:
    result = p.run()
    try:
        got = _wait_for(ctx, lambda out: len(out) >= 3, 20)
        if len(got) < 3:
            raise CaseFailure(f"only {len(got)} of 3 elements came through the running pipeline in 20 s")
        state = result.cancel()
    finally:
        (ctx.workdir / "stop").touch()
    if state.name != "CANCELLED":
        raise CaseFailure(f"cancel() left the pipeline {state.name}, not CANCELLED")
    return result


@case("unbounded.cancel", "Unbounded sources", expected=[10, 20, 30], drive=_drive_cancel,
      probe=lambda result: result.state.name, expected_probe="CANCELLED")
def unbounded_cancel(p: td.Pipeline, ctx: CaseContext) -> Any:
    """A pipeline reading a source that never ends can be cancelled; what it emitted stays emitted."""
    source = td.GeneratorSource(_UntilStopped([1, 2, 3], str(ctx.workdir / "stop")))
    return p | td.Read(source) | td.Map(lambda x: x * 10)


# -- Bad input rejected with a clear error ----------------------------------------------


@case("bad_input.group_non_pairs", "Bad input rejected with a clear error",
      error=ExpectedError(td.PipelineExecutionError, "step 'Group'", also=("(key, value)",)))
def bad_gbk(p: td.Pipeline) -> Any:
    """GroupByKey of elements that are not (key, value) pairs is an error that names the GroupByKey step."""
    return p | td.Create([1, 2]) | "Untyped" >> td.Map(lambda x: x) | "Group" >> td.GroupByKey()


@case("bad_input.group_non_pairs_when_built", "Bad input rejected with a clear error",
      error=ExpectedError(TypeCheckError, "Input type hint violation at Group: expected Tuple[TypeVariable[K], "
                          "TypeVariable[V]], got <class 'int'>"))
def bad_gbk_typed(p: td.Pipeline) -> Any:
    """GroupByKey of a PCollection whose elements are known not to be pairs is refused when applied, in Beam's words."""
    return p | td.Create([1, 2]) | "Group" >> td.GroupByKey()


@case("bad_input.unbounded_global_groupbykey", "Bad input rejected with a clear error",
      error=ExpectedError(td.PipelineError, "would never fire"))
def bad_unbounded_global(p: td.Pipeline) -> Any:
    """Grouping an unbounded PCollection in the global window with the default trigger is refused when applied."""
    return p | TestStream().add_elements([("k", 1)]) | td.GroupByKey()


@case("bad_input.trigger_without_accumulation_mode", "Bad input rejected with a clear error",
      error=ExpectedError(td.PipelineError, "needs an accumulation mode"))
def bad_accumulation(p: td.Pipeline) -> Any:
    """A non-default trigger without an accumulation mode is refused when applied."""
    return p | td.Create([("k", 1)]) | td.WindowInto(window.FixedWindows(10), trigger=tr.AfterCount(2))


_LOCK = threading.Lock()


@case("bad_input.unpicklable_function", "Bad input rejected with a clear error",
      error=ExpectedError(td.PipelineError, "step 'HoldsALock'"))
def bad_unpicklable(p: td.Pipeline) -> Any:
    """A function that captures a lock cannot be shipped: refused when applied, naming the step."""
    return p | td.Create([1]) | "HoldsALock" >> td.Map(lambda x: (_LOCK.locked(), x))


@case("bad_input.user_code_raises", "Bad input rejected with a clear error",
      error=ExpectedError(td.UserCodeError, "step 'Invert': <lambda> raised ZeroDivisionError: division by zero on element 0"))
def bad_user_code(p: td.Pipeline) -> Any:
    """An exception in user code fails the run with the step, the function, the error and the element."""
    return p | td.Create([1, 0]) | "Invert" >> td.Map(lambda x: 1 / x)


@case("bad_input.singleton_of_many", "Bad input rejected with a clear error",
      error=ExpectedError(td.PipelineExecutionError, "a singleton side input needs exactly one element"))
def bad_singleton(p: td.Pipeline) -> Any:
    """AsSingleton of a PCollection with two elements fails the run and says what to use instead."""
    side = p | "Side" >> td.Create([1, 2])
    return p | td.Create([1]) | td.Map(lambda x, s: x + s, td.AsSingleton(side))


@case("bad_input.timestamp_out_of_range", "Bad input rejected with a clear error",
      error=ExpectedError(td.UserCodeError, "outside [MIN_TIMESTAMP, MAX_TIMESTAMP]"))
def bad_timestamp(p: td.Pipeline) -> Any:
    """A timestamp beyond MAX_TIMESTAMP is a clear error, not an overflow."""
    return p | td.Create([1]) | td.Map(lambda x: TV(x, 1e30))


class _NeedsState(td.DoFn):
    SEEN = td.ReadModifyWriteStateSpec("seen")

    def process(self, x: Any, seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        yield x


@case("bad_input.stateful_non_pairs", "Bad input rejected with a clear error",
      error=ExpectedError(td.PipelineExecutionError, "step 'NeedsPairs'", also=("(key, value) elements",)))
def bad_stateful(p: td.Pipeline) -> Any:
    """A stateful DoFn over elements that are not (key, value) pairs is an error that names the DoFn's step."""
    return p | td.Create([1]) | "NeedsPairs" >> td.ParDo(_NeedsState())


class _Buffer(td.DoFn):
    BUF = td.BagStateSpec("buf")

    def process(self, kv: Any, buf: Any = td.DoFn.StateParam(BUF)) -> Iterable[Any]:
        buf.add(kv[1])
        yield kv


@case("bad_input.stateful_dofn_over_merging_windows", "Bad input rejected with a clear error",
      error=ExpectedError(td.PipelineError, "step 'Buffer'", also=("MergingWindowFn is not supported for stateful DoFns",)))
def bad_stateful_sessions(p: td.Pipeline) -> Any:
    """A stateful DoFn over Sessions (a merging WindowFn) is refused when applied, as in Beam Java."""
    stamped = p | td.Create([("k", 1)]) | td.Map(lambda kv: TV(kv, kv[1]))
    return stamped | td.WindowInto(window.Sessions(10)) | "Buffer" >> td.ParDo(_Buffer())


@case("bad_input.time_arithmetic_out_of_range", "Bad input rejected with a clear error",
      error=ExpectedError(td.UserCodeError, "step 'Shift'", also=("MAX_TIMESTAMP + Duration(1) is outside [MIN_TIMESTAMP, MAX_TIMESTAMP]",)))
def bad_time_arithmetic(p: td.Pipeline) -> Any:
    """Timestamp arithmetic that leaves [MIN_TIMESTAMP, MAX_TIMESTAMP] is a clear error, not a wrapped-around time."""
    return p | td.Create([1]) | "Shift" >> td.Map(lambda x: td.MAX_TIMESTAMP + td.Duration(x))


# -- Exactly-once after failure ---------------------------------------------------------
#
# Each case injects one failure once the job has a complete checkpoint
# (ctx.fail_after_checkpoint), records what every attempt read
# (ctx.record_reads), and the harness checks that the attempt after the
# failure resumed from a checkpoint: the runner names it, and it read less
# than the whole input. A runner that reruns from scratch fails every case.


class _ValueAtLeast:
    """Predicate: the element's value (of a (key, value) pair, or its first field) is at least ``n``."""

    def __init__(self, n: Any) -> None:
        self.n = n

    def __call__(self, kv: Any) -> bool:
        value = kv[1][0] if isinstance(kv[1], tuple) else kv[1]
        return bool(value >= self.n)


def _pane_id(record: Any) -> Any:
    """An idempotent sink stores a pane under (key, window, pane index)."""
    value, w, pane = record
    return value[0], w, pane.index


_STEPS, _PER_STEP = 6, 4


def _stepped_input(p: td.Pipeline, ctx: CaseContext, steps: int = _STEPS, per_step: int = _PER_STEP) -> Any:
    """Elements (k<i % 2>, value) at increasing event times; the watermark closes a 10 s window per step."""
    stream = TestStream()
    for step in range(steps):
        values = [step * per_step + i for i in range(per_step)]
        stream = stream.add_elements([TV((f"k{v % 2}", v), step * 10 + i) for i, v in enumerate(values)])
        stream = stream.advance_watermark_to(step * 10 + 10)
    return ctx.record_reads(p | stream.advance_watermark_to_infinity(), steps * per_step)


def _stepped_sums(steps: int, per_step: int) -> list[Any]:
    out = []
    for step in range(steps):
        values = [step * per_step + i for i in range(per_step)]
        for key in ("k0", "k1"):
            total = sum(v for v in values if f"k{v % 2}" == key)
            out.append(((key, total), W(step * 10, step * 10 + 10), on_time(0, last=True)))
    return out


@case("exactly_once.windowed_sums_stream", "Exactly-once after failure", observe=("value", "window", "pane"),
      expected=_stepped_sums(_STEPS, _PER_STEP), requires=(CHECKPOINT_RESTORE,), idempotent_key=_pane_id)
def eo_stream(p: td.Pipeline, ctx: CaseContext) -> Any:
    """A stream of windowed sums crashes in its third window, after a checkpoint; the restart resumes
    from the checkpoint and every pane is emitted once, with the right sum."""
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(9))
    return _stepped_input(p, ctx) | "Crash" >> td.ParDo(crash) | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)


class _NumberPerKey(td.DoFn):
    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield kv[0], n, kv[1]


@case("exactly_once.keyed_state_stream", "Exactly-once after failure",
      expected=[(f"k{v % 2}", v // 2 + 1, v) for v in range(_STEPS * _PER_STEP)], requires=(CHECKPOINT_RESTORE,),
      idempotent_key=lambda r: (r[0], r[1]))
def eo_state(p: td.Pipeline, ctx: CaseContext) -> Any:
    """Keyed state survives a crash after a checkpoint: resumed from it, each key numbers its elements
    1, 2, 3... with no gap or repeat."""
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(9))
    return _stepped_input(p, ctx) | "Crash" >> td.ParDo(crash) | td.ParDo(_NumberPerKey())


#: Enough elements for several batches (micro-batch: 100,000 each) and bundles (Ray: 50,000 per worker).
_BOUNDED_N = 250_000
_BOUNDED_WINDOW = 10_000


def _bounded_sums() -> list[Any]:
    sums: dict[tuple[str, int], int] = {}
    for v in range(_BOUNDED_N):
        key = (f"k{v % 4}", int(v / 2 // _BOUNDED_WINDOW))
        sums[key] = sums.get(key, 0) + v
    return [((k, total), W(w * _BOUNDED_WINDOW, (w + 1) * _BOUNDED_WINDOW)) for (k, w), total in sums.items()]


@case("exactly_once.bounded_windowed_sums", "Exactly-once after failure", observe=("value", "window"),
      expected=_bounded_sums(), requires=(CHECKPOINT_RESTORE,), idempotent_key=lambda r: (r[0][0], r[1]))
def eo_bounded(p: td.Pipeline, ctx: CaseContext) -> Any:
    """A bounded job of 250,000 elements crashes part-way, after a checkpoint; resumed from it, the
    per-window sums are exact."""
    # Ray reads it in three bundles per worker and checkpoints every second: a bundle paced for
    # longer than that leaves a barrier waiting at the next bundle boundary, so a checkpoint
    # completes while a bundle is still to come.
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(0), pace_s=1.2)
    stamped = ctx.record_reads(create_stamped(p, [((f"k{v % 4}", v), v / 2) for v in range(_BOUNDED_N)]), _BOUNDED_N)
    return stamped | "Crash" >> td.ParDo(crash) | td.WindowInto(window.FixedWindows(_BOUNDED_WINDOW)) | td.CombinePerKey(sum)


class _TimersAcrossRestore(td.DoFn):
    """Per key and window: a total, an event-time timer at the window's end and a processing-time
    timer at the time each element names; each timer is set once (until it fires), so a timer
    that a restore dropped is never set again."""

    TOTAL = td.CombiningValueStateSpec("total", combine_fn=sum)
    ARMED = td.ReadModifyWriteStateSpec("armed")
    FLUSH = td.TimerSpec("flush", td.TimeDomain.WATERMARK)
    PING = td.TimerSpec("ping", td.TimeDomain.REAL_TIME)

    def process(self, kv: Any, w: Any = td.DoFn.WindowParam, total: Any = td.DoFn.StateParam(TOTAL),
                armed: Any = td.DoFn.StateParam(ARMED), flush: Any = td.DoFn.TimerParam(FLUSH),
                ping: Any = td.DoFn.TimerParam(PING)) -> Iterable[Any]:
        value, ping_at = kv[1]
        total.add(value)
        already = armed.read() or frozenset()
        if "flush" not in already:
            flush.set(w.max_timestamp())
        if "ping" not in already:
            ping.set(ping_at)
        armed.write(frozenset({"flush", "ping"}))
        return ()

    @td.on_timer(FLUSH)
    def on_flush(self, key: Any = td.DoFn.KeyParam, w: Any = td.DoFn.WindowParam, t: Any = td.DoFn.TimestampParam,
                 total: Any = td.DoFn.StateParam(TOTAL)) -> Iterable[Any]:
        yield f"{key},{int(w.start)},event,{t.micros},{total.read()}"

    @td.on_timer(PING)
    def on_ping(self, key: Any = td.DoFn.KeyParam, w: Any = td.DoFn.WindowParam, t: Any = td.DoFn.TimestampParam,
                total: Any = td.DoFn.StateParam(TOTAL), armed: Any = td.DoFn.StateParam(ARMED)) -> Iterable[Any]:
        armed.write((armed.read() or frozenset()) - {"ping"})
        yield f"{key},{int(w.start)},processing,{t.micros},{total.read()}"


def _timer_stream() -> TestStream:
    """Six 10 s steps of (k<v % 2>, (v, ping at)) in 30 s windows; each step adds four elements, then
    moves processing time and the watermark on by 10 s. Every timer is pending across step ends."""
    stream = TestStream()
    for step in range(_STEPS):
        values = [step * _PER_STEP + i for i in range(_PER_STEP)]
        stream = stream.add_elements([TV((f"k{v % 2}", (v, step * 10 + 25)), step * 10 + i) for i, v in enumerate(values)])
        stream = stream.advance_processing_time(10).advance_watermark_to(step * 10 + 10)
    return stream.advance_watermark_to_infinity()


def _timer_lines() -> list[str]:
    """Worked out by hand: each (key, 30 s window) sets a processing-time timer at its first
    element (step 0 or 3, at 25 or 55 s), which fires when processing time reaches it (steps 2
    and 5, after their elements), and an event-time timer at its end; both see the window's total."""
    lines = []
    for start in (0, 30):
        for key in ("k0", "k1"):
            total = sum(v for v in range(_STEPS * _PER_STEP) if f"k{v % 2}" == key and start <= v // _PER_STEP * 10 < start + 30)
            lines.append(f"{key},{start},event,{(start + 30) * 1_000_000 - 1},{total}")
            lines.append(f"{key},{start},processing,{(start + 25) * 1_000_000},{total}")
    return sorted(lines)


def _published_exactly(expected_lines: list[str]) -> Callable[[td.Pipeline, CaseContext], Any]:
    """Run the job; once it succeeds, compare the files WriteToText published with ``expected_lines``
    (no folding of duplicates); a difference is reported with the harness's own findings."""

    def drive(p: td.Pipeline, ctx: CaseContext) -> Any:
        result = p.run()
        result.wait_until_finish(60)
        published = sorted(td.io.read_text(str(ctx.workdir / "published" / "out-*")))
        if published != sorted(expected_lines):
            missing = sorted(set(expected_lines) - set(published))[:3]
            doubled = sorted(line for line in set(published) if published.count(line) > 1)[:3]
            extra = sorted(set(published) - set(expected_lines))[:3]
            ctx.report_problem(
                f"the published output has {len(published)} lines, expected {len(expected_lines)} "
                f"(missing {missing}, published twice {doubled}, unexpected {extra})"
            )
        return result

    return drive


@case("exactly_once.timers_stream", "Exactly-once after failure", requires=(CHECKPOINT_RESTORE,),
      drive=_published_exactly(_timer_lines()))
def eo_timers(p: td.Pipeline, ctx: CaseContext) -> None:
    """Event-time and processing-time timers pending at the checkpoint a crash resumes from fire once
    each after the restore, at their own times, with the full totals (published through WriteToText,
    no folding of duplicates)."""
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(9))
    stream = ctx.record_reads(p | _timer_stream(), _STEPS * _PER_STEP)
    (
        stream
        | "Crash" >> td.ParDo(crash)
        | td.WindowInto(window.FixedWindows(30), allowed_lateness=3600)
        | td.ParDo(_TimersAcrossRestore())
        | td.WriteToText(str(ctx.workdir / "published" / "out"))
    )


def _paced_pairs(n: int = 600, per_step: int = 20, pause_s: float = 0.1) -> Iterator[Any]:
    """(k<v % 3>, v) at v / 20 s of event time, in steps with a pause: about 3 s of wall time."""
    for v in range(n):
        if v % per_step == 0:
            time.sleep(pause_s)
        yield TV((f"k{v % 3}", v), v / 20)


_PACED_N = 600


def _paced_input(p: td.Pipeline, ctx: CaseContext) -> Any:
    return ctx.record_reads(p | "Paced" >> td.Read(td.GeneratorSource(_paced_pairs)), _PACED_N)


_PACED_SUMS = sorted(
    f"k{k},{w * 5},{sum(v for v in range(_PACED_N) if v % 3 == k and v // 100 == w)}" for w in range(6) for k in range(3)
)


@case("exactly_once.transactional_sink_windowed", "Exactly-once after failure", requires=(CHECKPOINT_RESTORE,),
      drive=_published_exactly(_PACED_SUMS), timeout_s=120.0)
def eo_transactional_windowed(p: td.Pipeline, ctx: CaseContext) -> None:
    """A 3 s stream of windowed sums crashes at 85% of its input; the files WriteToText published hold
    every sum exactly once (no folding of duplicates), and the restart resumed from a checkpoint."""
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(510))
    (
        _paced_input(p, ctx)
        | "Crash" >> td.ParDo(crash)
        | td.WindowInto(window.FixedWindows(5))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | td.WriteToText(str(ctx.workdir / "published" / "out"))
    )


_PACED_NUMBERS = sorted(f"k{v % 3},{v // 3 + 1},{v}" for v in range(_PACED_N))


@case("exactly_once.transactional_sink_state", "Exactly-once after failure", requires=(CHECKPOINT_RESTORE,),
      drive=_published_exactly(_PACED_NUMBERS), timeout_s=120.0)
def eo_transactional_state(p: td.Pipeline, ctx: CaseContext) -> None:
    """Keyed state numbers each key's elements through a crash at 85% of a 3 s stream; every number is
    published once, none skipped, and the restart resumed from a checkpoint."""
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(510))
    (
        _paced_input(p, ctx)
        | "Crash" >> td.ParDo(crash)
        | td.ParDo(_NumberPerKey())
        | td.Map(lambda r: f"{r[0]},{r[1]},{r[2]}")
        | td.WriteToText(str(ctx.workdir / "published" / "out"))
    )


# -- Runner overhead (measured) ---------------------------------------------------------


@case("overhead.one_element", "Runner overhead (measured)", expected=[2], measured=True, elements=1)
def overhead_one(p: td.Pipeline) -> Any:
    """The fixed cost of a run: one element through one Map."""
    return p | td.Create([1]) | td.Map(lambda x: x + 1)


@case("overhead.wordcount_10k", "Runner overhead (measured)", expected=[(f"w{i}", 100) for i in range(100)], measured=True, elements=10_000)
def overhead_wordcount(p: td.Pipeline) -> Any:
    """Word count of 10,000 words (100 distinct): Create, Map, CombinePerKey."""
    words = [f"w{i % 100}" for i in range(10_000)]
    return p | td.Create(words) | td.Map(lambda w: (w, 1)) | td.CombinePerKey(sum)


def _stream_thousand() -> TestStream:
    stream = TestStream()
    for step in range(100):
        stream = stream.add_elements([TV((f"k{i}", 1), step * 10 + i) for i in range(10)]).advance_watermark_to(step * 10 + 10)
    return stream.advance_watermark_to_infinity()


@case("overhead.stream_1000", "Runner overhead (measured)", expected=[10] * 100, measured=True, elements=1000)
def overhead_stream(p: td.Pipeline) -> Any:
    """A stream of 1,000 events in 100 watermark steps, summed per key and 10 s window, then per window."""
    sums = p | _stream_thousand() | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)
    return sums | td.Values() | td.CombineGlobally(sum).without_defaults()
