"""Cases for "When in processing time" and "How refinements relate": triggers, allowed
lateness, timers, and discarding / accumulating panes. TestStream scripts the time."""

from __future__ import annotations

from typing import Any, Iterable

import tidal as td
from tidal import trigger as tr
from tidal import window
from tidal.capability_matrix.case import GW, ExpectedError, W, case, early, eow, late, on_time
from tidal.capability_matrix.cases.common import create_stamped, sort_groups
from tidal.model.metrics import MetricsFilter
from tidal.model.time import Timestamp
from tidal.model.window import TimestampedValue as TV
from tidal.testing import TestStream

DISCARDING = tr.AccumulationMode.DISCARDING
ACCUMULATING = tr.AccumulationMode.ACCUMULATING
_PANES = ("value", "pane")
_FULL = ("value", "window", "timestamp", "pane")


def _kv(*values: int, key: str = "k") -> list[TV]:
    """(key, v) stamped at event time v, for each v."""
    return [TV((key, v), v) for v in values]


def _grouped(p: td.Pipeline, stream: TestStream, **windowing: Any) -> Any:
    return p | stream | td.WindowInto(**windowing) | td.GroupByKey() | sort_groups()


def _summed(p: td.Pipeline, stream: TestStream, **windowing: Any) -> Any:
    return p | stream | td.WindowInto(**windowing) | td.CombinePerKey(sum)


# -- Configurable triggering ------------------------------------------------------------


@case("triggering.repeated_count_in_global_window", "Configurable triggering", observe=_FULL,
      expected=[(("k", [1, 2]), GW, GW.max_timestamp(), early(0)), (("k", [3, 4]), GW, GW.max_timestamp(), early(1))])
def trig_global(p: td.Pipeline) -> Any:
    """A trigger makes an unbounded global window emit panes (here every two elements)."""
    stream = TestStream().add_elements(_kv(1, 2)).add_elements(_kv(3)).add_elements(_kv(4)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.GlobalWindows(), trigger=tr.Repeatedly(tr.AfterCount(2)), accumulation_mode=DISCARDING)


@case("triggering.after_watermark_closes_window", "Configurable triggering", observe=_PANES,
      expected=[(("k", [1]), on_time(0, last=True))])
def trig_after_watermark(p: td.Pipeline) -> Any:
    """AfterWatermark() without late firings fires once and finishes: later data for the window is dropped."""
    stream = TestStream().add_elements(_kv(1)).advance_watermark_to(20).add_elements(_kv(2)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.AfterWatermark(), accumulation_mode=DISCARDING, allowed_lateness=100)


@case("triggering.always", "Configurable triggering", observe=_PANES,
      expected=[(("k", [1]), early(0)), (("k", [2]), early(1))])
def trig_always(p: td.Pipeline) -> Any:
    """Always() fires for every bundle of new data."""
    stream = TestStream().add_elements(_kv(1)).add_elements(_kv(2)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.Always(), accumulation_mode=DISCARDING)


@case("triggering.never", "Configurable triggering", observe=_PANES, expected=[(("k", [1, 2]), on_time(0, last=True))])
def trig_never(p: td.Pipeline) -> Any:
    """Never() fires only when the window expires, with everything at once."""
    stream = TestStream().add_elements(_kv(1)).add_elements(_kv(2)).advance_watermark_to(20).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.Never(), accumulation_mode=DISCARDING)


@case("triggering.default_trigger_explicit", "Configurable triggering", observe=_PANES,
      expected=[(("k", [1, 2]), on_time(0, last=True)), (("k", [15]), on_time(0, last=True))])
def trig_default(p: td.Pipeline) -> Any:
    """WindowInto(trigger=DefaultTrigger()) needs no accumulation mode and fires once per window."""
    stream = TestStream().add_elements(_kv(1, 2, 15)).advance_watermark_to(10).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.DefaultTrigger())


# -- Event-time triggers ----------------------------------------------------------------


@case("event_time.on_time_pane", "Event-time triggers", observe=_FULL,
      expected=[(("k", [1, 2]), W(0, 10), eow(10), on_time(0, last=True)), (("k", [12]), W(10, 20), eow(20), on_time(0, last=True))])
def event_on_time(p: td.Pipeline) -> Any:
    """The default trigger fires one ON_TIME pane when the watermark passes the end of each window."""
    stream = TestStream().add_elements(_kv(1, 2)).advance_watermark_to(10).add_elements(_kv(12)).advance_watermark_to(20).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10))


@case("event_time.watermark_at_max_timestamp_does_not_fire", "Event-time triggers", observe=_PANES,
      expected=[(("k", [1, 2]), on_time(0, last=True))])
def event_boundary(p: td.Pipeline) -> Any:
    """A watermark at the window's max timestamp has not passed it: a later element still joins the on-time pane."""
    stream = (TestStream().add_elements(_kv(1)).advance_watermark_to(Timestamp(10).predecessor())
              .add_elements([TV(("k", 2), Timestamp(10).predecessor())]).advance_watermark_to(10).advance_watermark_to_infinity())
    return _grouped(p, stream, windowfn=window.FixedWindows(10))


@case("event_time.early_firings", "Event-time triggers", observe=_PANES,
      expected=[(("k", [1]), early(0)), (("k", [2]), early(1)), (("k", []), on_time(2, last=True))])
def event_early(p: td.Pipeline) -> Any:
    """AfterWatermark(early=AfterCount(1)) fires early panes, then an ON_TIME pane (empty when nothing new came)."""
    stream = TestStream().add_elements(_kv(1)).add_elements(_kv(2)).advance_watermark_to(10).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.AfterWatermark(early=tr.AfterCount(1)), accumulation_mode=DISCARDING)


@case("event_time.late_firings", "Event-time triggers", observe=_PANES,
      expected=[(("k", [1]), on_time(0)), (("k", [3]), late(1, 1)), (("k", [4]), late(2, 2))])
def event_late(p: td.Pipeline) -> Any:
    """AfterWatermark(late=AfterCount(1)) fires a LATE pane for each late element within the lateness."""
    stream = (TestStream().add_elements(_kv(1)).advance_watermark_to(10).add_elements(_kv(3)).add_elements(_kv(4))
              .advance_watermark_to(50).advance_watermark_to_infinity())
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.AfterWatermark(late=tr.AfterCount(1)),
                    accumulation_mode=DISCARDING, allowed_lateness=100)


@case("event_time.early_and_late", "Event-time triggers", observe=_PANES,
      expected=[(("k", [1, 2]), early(0)), (("k", [3]), on_time(1)), (("k", [4]), late(2, 1))])
def event_early_late(p: td.Pipeline) -> Any:
    """Early, on-time and late panes of one window, each with the right index."""
    stream = (TestStream().add_elements(_kv(1, 2)).add_elements(_kv(3)).advance_watermark_to(10).add_elements(_kv(4))
              .advance_watermark_to_infinity())
    trigger = tr.AfterWatermark(early=tr.AfterCount(2), late=tr.AfterCount(1))
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=trigger, accumulation_mode=DISCARDING, allowed_lateness=100)


# -- Processing-time triggers -----------------------------------------------------------


@case("processing_time.early_after_delay", "Processing-time triggers", observe=_PANES,
      expected=[(("k", [1, 2]), early(0)), (("k", [3]), on_time(1, last=True))])
def proc_early(p: td.Pipeline) -> Any:
    """AfterProcessingTime(5) fires 5 s of processing time after the pane's first element, not before."""
    stream = (TestStream().add_elements(_kv(1)).advance_processing_time(4).add_elements(_kv(2)).advance_processing_time(2)
              .add_elements(_kv(3)).advance_watermark_to(100).advance_watermark_to_infinity())
    trigger = tr.AfterWatermark(early=tr.AfterProcessingTime(5))
    return _grouped(p, stream, windowfn=window.FixedWindows(100), trigger=trigger, accumulation_mode=DISCARDING)


@case("processing_time.repeated", "Processing-time triggers", observe=_PANES,
      expected=[(("k", [1, 2]), early(0)), (("k", [3]), early(1))])
def proc_repeated(p: td.Pipeline) -> Any:
    """Repeatedly(AfterProcessingTime(5)) fires again 5 s after the next pane's first element."""
    stream = (TestStream().add_elements(_kv(1)).advance_processing_time(3).add_elements(_kv(2)).advance_processing_time(3)
              .add_elements(_kv(3)).advance_processing_time(5).advance_watermark_to_infinity())
    trigger = tr.Repeatedly(tr.AfterProcessingTime(5))
    return _grouped(p, stream, windowfn=window.GlobalWindows(), trigger=trigger, accumulation_mode=DISCARDING)


@case("processing_time.not_by_event_time", "Processing-time triggers", observe=_PANES,
      expected=[(("k", [1, 2, 30]), early(0))])
def proc_not_event_time(p: td.Pipeline) -> Any:
    """Event time moving on does not fire a processing-time trigger; only the processing-time clock does."""
    stream = (TestStream().add_elements(_kv(1)).advance_watermark_to(20).add_elements(_kv(2, 30)).advance_watermark_to(40)
              .advance_processing_time(5).advance_watermark_to_infinity())
    trigger = tr.Repeatedly(tr.AfterProcessingTime(5))
    return _grouped(p, stream, windowfn=window.GlobalWindows(), trigger=trigger, accumulation_mode=DISCARDING)


# -- Count triggers ---------------------------------------------------------------------


@case("count.once", "Count triggers", observe=_PANES, expected=[(("k", [1, 2]), early(0, last=True))])
def count_once(p: td.Pipeline) -> Any:
    """AfterCount(2) fires once with two elements and finishes; a third is dropped."""
    stream = TestStream().add_elements(_kv(1)).add_elements(_kv(2)).add_elements(_kv(3)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(100), trigger=tr.AfterCount(2), accumulation_mode=DISCARDING)


@case("count.repeatedly", "Count triggers", observe=_PANES, expected=[(("k", [1, 2, 3]), early(0)), (("k", [4, 5]), early(1))])
def count_repeated(p: td.Pipeline) -> Any:
    """Repeatedly(AfterCount(2)) fires each time two or more new elements arrived (a bundle of three fires together)."""
    stream = TestStream().add_elements(_kv(1, 2, 3)).add_elements(_kv(4)).add_elements(_kv(5)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(100), trigger=tr.Repeatedly(tr.AfterCount(2)), accumulation_mode=DISCARDING)


@case("count.not_reached", "Count triggers", observe=_PANES, expected=[(("k", [1, 2]), on_time(0, last=True))])
def count_not_reached(p: td.Pipeline) -> Any:
    """AfterCount(3) with only two elements emits them when the window expires."""
    stream = TestStream().add_elements(_kv(1)).add_elements(_kv(2)).advance_watermark_to(20).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.AfterCount(3), accumulation_mode=DISCARDING)


@case("count.per_key", "Count triggers", observe=_PANES,
      expected=[(("a", [1, 2]), early(0)), (("b", [1, 2]), early(0))])
def count_per_key(p: td.Pipeline) -> Any:
    """Counts are kept per key: each key fires after its own second element."""
    stream = (TestStream().add_elements([TV(("a", 1), 1), TV(("b", 1), 1)]).add_elements([TV(("a", 2), 2)])
              .add_elements([TV(("b", 2), 2)]).advance_watermark_to_infinity())
    return _grouped(p, stream, windowfn=window.GlobalWindows(), trigger=tr.Repeatedly(tr.AfterCount(2)), accumulation_mode=DISCARDING)


# -- Composite triggers -----------------------------------------------------------------


@case("composite_trigger.after_any", "Composite triggers", observe=_PANES, expected=[(("k", [1]), early(0)), (("k", [2, 3, 4]), early(1))])
def comp_any(p: td.Pipeline) -> Any:
    """Repeatedly(AfterAny(AfterCount(3), AfterProcessingTime(10))) fires on whichever comes first."""
    stream = (TestStream().add_elements(_kv(1)).advance_processing_time(10).add_elements(_kv(2, 3, 4))
              .advance_watermark_to_infinity())
    trigger = tr.Repeatedly(tr.AfterAny(tr.AfterCount(3), tr.AfterProcessingTime(10)))
    return _grouped(p, stream, windowfn=window.GlobalWindows(), trigger=trigger, accumulation_mode=DISCARDING)


@case("composite_trigger.after_all", "Composite triggers", observe=_PANES, expected=[(("k", [1, 2]), early(0)), (("k", [3, 4]), early(1))])
def comp_all(p: td.Pipeline) -> Any:
    """Repeatedly(AfterAll(AfterCount(2), AfterProcessingTime(5))) waits for both conditions."""
    stream = (TestStream().add_elements(_kv(1, 2)).advance_processing_time(5).add_elements(_kv(3)).advance_processing_time(10)
              .add_elements(_kv(4)).advance_watermark_to_infinity())
    trigger = tr.Repeatedly(tr.AfterAll(tr.AfterCount(2), tr.AfterProcessingTime(5)))
    return _grouped(p, stream, windowfn=window.GlobalWindows(), trigger=trigger, accumulation_mode=DISCARDING)


@case("composite_trigger.after_each", "Composite triggers", observe=_PANES, expected=[(("k", [1]), early(0)), (("k", [2, 3]), early(1, last=True))])
def comp_each(p: td.Pipeline) -> Any:
    """AfterEach(AfterCount(1), AfterCount(2)) runs its triggers in sequence, then finishes."""
    stream = (TestStream().add_elements(_kv(1)).add_elements(_kv(2)).add_elements(_kv(3)).add_elements(_kv(4))
              .advance_watermark_to_infinity())
    trigger = tr.AfterEach(tr.AfterCount(1), tr.AfterCount(2))
    return _grouped(p, stream, windowfn=window.FixedWindows(100), trigger=trigger, accumulation_mode=DISCARDING)


@case("composite_trigger.or_finally", "Composite triggers", observe=_PANES,
      expected=[(("k", [1]), early(0)), (("k", [2]), early(1)), (("k", [3]), early(2, last=True))])
def comp_or_finally(p: td.Pipeline) -> Any:
    """OrFinally(Repeatedly(AfterCount(1)), AfterCount(3)) fires per element until three arrived, then finishes."""
    stream = (TestStream().add_elements(_kv(1)).add_elements(_kv(2)).add_elements(_kv(3)).add_elements(_kv(4))
              .advance_watermark_to_infinity())
    trigger = tr.OrFinally(tr.Repeatedly(tr.AfterCount(1)), tr.AfterCount(3))
    return _grouped(p, stream, windowfn=window.FixedWindows(100), trigger=trigger, accumulation_mode=DISCARDING)


# -- Allowed lateness -------------------------------------------------------------------


def _dropped(result: Any) -> Any:
    found = result.metrics().query(MetricsFilter().with_name("dropped_due_to_lateness"))["counters"]
    return sum(c.committed for c in found)


@case("lateness.within_is_kept", "Allowed lateness", observe=_PANES, expected=[(("k", [1]), on_time(0)), (("k", [2]), late(1, 1))])
def lateness_kept(p: td.Pipeline) -> Any:
    """A late element within the allowed lateness fires a LATE pane."""
    stream = TestStream().add_elements(_kv(1)).advance_watermark_to(15).add_elements(_kv(2)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), allowed_lateness=10)


@case("lateness.beyond_is_dropped", "Allowed lateness", observe=_PANES, expected=[(("k", [1]), on_time(0))],
      probe=_dropped, expected_probe=1)
def lateness_dropped(p: td.Pipeline) -> Any:
    """An element later than the allowed lateness is dropped (and counted in dropped_due_to_lateness)."""
    stream = TestStream().add_elements(_kv(1)).advance_watermark_to(15).advance_watermark_to(25).add_elements(_kv(2)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), allowed_lateness=10)


@case("lateness.zero_drops_late_data", "Allowed lateness", observe=_PANES, expected=[(("k", [1]), on_time(0, last=True)), (("k", [12]), on_time(0, last=True))])
def lateness_zero(p: td.Pipeline) -> Any:
    """With the default lateness of zero, an element behind the watermark is dropped; on-time ones are kept."""
    stream = TestStream().add_elements(_kv(1)).advance_watermark_to(11).add_elements(_kv(2, 12)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10))


@case("lateness.just_inside", "Allowed lateness", observe=_PANES, expected=[(("k", [1]), on_time(0)), (("k", [5]), late(1, 1))])
def lateness_edge(p: td.Pipeline) -> Any:
    """With the watermark just short of end + lateness, a late element is still kept."""
    stream = TestStream().add_elements(_kv(1)).advance_watermark_to(19).add_elements(_kv(5)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), allowed_lateness=10)


@case("lateness.session_merges_late", "Allowed lateness", observe=_FULL,
      expected=[(("k", [1]), W(1, 6), eow(6), on_time(0)), (("k", [4]), W(1, 9), eow(9), late(0, 0))])
def lateness_sessions(p: td.Pipeline) -> Any:
    """A late element within the lateness merges into a session that already fired; the merged
    session is a new window, so its LATE pane has index 0."""
    stream = TestStream().add_elements(_kv(1)).advance_watermark_to(10).add_elements(_kv(4)).advance_watermark_to(12).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.Sessions(5), allowed_lateness=100)


@case("lateness.first_firing_by_late_data_is_late", "Allowed lateness", observe=_FULL,
      expected=[(("k", [1, 2]), W(0, 10), eow(10), late(0, 0))])
def lateness_data_fired_is_late(p: td.Pipeline) -> Any:
    """ON_TIME is only the firing the watermark causes: when late data makes Repeatedly(AfterCount(2))
    fire a window the watermark already passed (its end-of-window firing found one element), that first
    pane is LATE."""
    stream = TestStream().add_elements(_kv(1)).advance_watermark_to(10).add_elements(_kv(2)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.Repeatedly(tr.AfterCount(2)),
                    accumulation_mode=DISCARDING, allowed_lateness=100)


def _dropped_by_cause(result: Any) -> Any:
    found = result.metrics().query(MetricsFilter().with_namespace("tidal"))["counters"]
    totals: dict[str, int] = {}
    for c in found:
        if c.key.metric.name.startswith("dropped_due_to_"):
            totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + c.committed
    return totals


@case("lateness.drops_counted_by_cause", "Allowed lateness", observe=_PANES, expected=[(("k", [1]), on_time(0, last=True))],
      probe=_dropped_by_cause, expected_probe={"dropped_due_to_closed_window": 1, "dropped_due_to_lateness": 1})
def lateness_drops_by_cause(p: td.Pipeline) -> Any:
    """Dropped input is counted by cause: input for a window whose trigger finished in
    dropped_due_to_closed_window, input past the allowed lateness in dropped_due_to_lateness."""
    stream = (TestStream().add_elements(_kv(1)).advance_watermark_to(10)  # AfterWatermark() fires on time and finishes
              .add_elements(_kv(2))  # the window is closed (not expired)
              .advance_watermark_to(30)  # [0, 10) expires: end + lateness 10 passed
              .add_elements(_kv(3))  # too late
              .advance_watermark_to_infinity())
    return _grouped(p, stream, windowfn=window.FixedWindows(10), trigger=tr.AfterWatermark(), accumulation_mode=DISCARDING,
                    allowed_lateness=10)


# -- Timers -----------------------------------------------------------------------------


class _SumAtWindowEnd(td.DoFn):
    """Buffers values per key and window; an event-time timer at the window's end emits their sum."""

    BUFFER = td.BagStateSpec("buffer")
    FLUSH = td.TimerSpec("flush", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, w: Any = td.DoFn.WindowParam, buffer: Any = td.DoFn.StateParam(BUFFER),
                flush: Any = td.DoFn.TimerParam(FLUSH)) -> Iterable[Any]:
        buffer.add(kv[1])
        flush.set(w.max_timestamp())
        return ()

    @td.on_timer(FLUSH)
    def on_flush(self, key: Any = td.DoFn.KeyParam, buffer: Any = td.DoFn.StateParam(BUFFER)) -> Iterable[Any]:
        yield key, sum(buffer.read())
        buffer.clear()


@case("timers.event_time", "Timers", observe=("value", "window", "timestamp"),
      expected=[(("a", 3), W(0, 10), eow(10)), (("a", 12), W(10, 20), eow(20)), (("b", 5), W(0, 10), eow(10))])
def timers_event(p: td.Pipeline) -> Any:
    """An event-time timer fires when the watermark passes it; its output carries the timer's time."""
    stamped = create_stamped(p, [(("a", 1), 1), (("a", 2), 2), (("a", 12), 12), (("b", 5), 5)])
    return stamped | td.WindowInto(window.FixedWindows(10)) | td.ParDo(_SumAtWindowEnd())


class _BufferUntilProcessingTime(td.DoFn):
    """Buffers values; a processing-time timer, at the time each element names, emits what is buffered."""

    BUFFER = td.BagStateSpec("buffer")
    FLUSH = td.TimerSpec("flush", td.TimeDomain.REAL_TIME)

    def process(self, kv: Any, buffer: Any = td.DoFn.StateParam(BUFFER), flush: Any = td.DoFn.TimerParam(FLUSH)) -> Iterable[Any]:
        value, fire_at = kv[1]
        buffer.add(value)
        flush.set(fire_at)
        return ()

    @td.on_timer(FLUSH)
    def on_flush(self, key: Any = td.DoFn.KeyParam, buffer: Any = td.DoFn.StateParam(BUFFER)) -> Iterable[Any]:
        yield key, sorted(buffer.read())
        buffer.clear()


@case("timers.processing_time", "Timers", observe=("value", "timestamp"),
      expected=[(("k", [1, 2]), Timestamp(2)), (("k", [3]), Timestamp(7))])
def timers_processing(p: td.Pipeline) -> Any:
    """A processing-time timer fires when the processing-time clock (scripted from 0) reaches it, while
    the input is still open: [1, 2] at processing time 6 (the timer was at 5), [3] at 10 (timer at 8),
    each stamped with the input watermark of its firing (2, then 7). Firing only at the end of the
    input would give one pane, [1, 2, 3]."""
    stream = (
        TestStream()
        .add_elements([TV(("k", (1, 5)), 1)])
        .advance_processing_time(3)
        .add_elements([TV(("k", (2, 5)), 2)])
        .advance_watermark_to(2)
        .advance_processing_time(3)
        .add_elements([TV(("k", (3, 8)), 7)])
        .advance_watermark_to(7)
        .advance_processing_time(4)
        .advance_watermark_to_infinity()
    )
    return p | stream | td.ParDo(_BufferUntilProcessingTime())


class _LastTimerWins(td.DoFn):
    ALARM = td.TimerSpec("alarm", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, alarm: Any = td.DoFn.TimerParam(ALARM)) -> Iterable[Any]:
        alarm.set(kv[1])
        return ()

    @td.on_timer(ALARM)
    def on_alarm(self, key: Any = td.DoFn.KeyParam, t: Any = td.DoFn.TimestampParam) -> Iterable[Any]:
        yield key, "fired"


@case("timers.reset_replaces", "Timers", observe=("value", "timestamp"), expected=[(("k", "fired"), Timestamp(30))])
def timers_reset(p: td.Pipeline) -> Any:
    """Setting a timer again replaces it: only the last time set fires, once."""
    stream = TestStream().add_elements([("k", 50)]).add_elements([("k", 30)]).advance_watermark_to_infinity()
    return p | stream | td.ParDo(_LastTimerWins())


class _CancelOnRequest(td.DoFn):
    ALARM = td.TimerSpec("alarm", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, alarm: Any = td.DoFn.TimerParam(ALARM)) -> Iterable[Any]:
        if kv[1] == "set":
            alarm.set(50)
        else:
            alarm.clear()
        yield kv

    @td.on_timer(ALARM)
    def on_alarm(self, key: Any = td.DoFn.KeyParam) -> Iterable[Any]:
        yield key, "fired"


@case("timers.clear", "Timers", expected=[("k", "set"), ("k", "clear"), ("j", "set"), ("j", "fired")])
def timers_clear(p: td.Pipeline) -> Any:
    """A cleared timer does not fire; another key's timer still does."""
    stream = (TestStream().add_elements([TV(("k", "set"), 1), TV(("j", "set"), 1)]).add_elements([TV(("k", "clear"), 2)])
              .advance_watermark_to_infinity())
    return p | stream | td.ParDo(_CancelOnRequest())


class _EchoAtTime(td.DoFn):
    ALARM = td.TimerSpec("alarm", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, alarm: Any = td.DoFn.TimerParam(ALARM)) -> Iterable[Any]:
        alarm.set(kv[1])
        return ()

    @td.on_timer(ALARM)
    def on_alarm(self, key: Any = td.DoFn.KeyParam, t: Any = td.DoFn.TimestampParam) -> Iterable[Any]:
        yield key, t.micros // 1_000_000


@case("timers.many_keys", "Timers", expected=[(k, 100 + k) for k in range(200)])
def timers_many(p: td.Pipeline) -> Any:
    """Two hundred keys each fire their own timer at their own time."""
    return create_stamped(p, [((k, 100 + k), 0) for k in range(200)]) | td.ParDo(_EchoAtTime())


class _EmitAtFive(td.DoFn):
    ALARM = td.TimerSpec("alarm", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, alarm: Any = td.DoFn.TimerParam(ALARM)) -> Iterable[Any]:
        alarm.set(5)
        return ()

    @td.on_timer(ALARM)
    def on_alarm(self, key: Any = td.DoFn.KeyParam) -> Iterable[Any]:
        yield key, "from timer"


@case("timers.hold_watermark", "Timers", observe=_FULL, expected=[(("k", ["from timer"]), W(0, 10), eow(10), on_time(0, last=True))])
def timers_hold(p: td.Pipeline) -> Any:
    """A pending event-time timer holds the watermark: its output at t=5 is on time for a downstream window."""
    stream = TestStream().add_elements([TV(("k", "x"), 1)]).advance_watermark_to(20).advance_watermark_to_infinity()
    fired = p | stream | td.ParDo(_EmitAtFive())
    return fired | td.WindowInto(window.FixedWindows(10)) | td.GroupByKey() | sort_groups()


class _TimerAfterExpiry(td.DoFn):
    """Sets an event-time timer one second after its window's expiry (end + allowed lateness 5)."""

    LATER = td.TimerSpec("later", td.TimeDomain.WATERMARK)

    def process(self, kv: Any, w: Any = td.DoFn.WindowParam, later: Any = td.DoFn.TimerParam(LATER)) -> Iterable[Any]:
        later.set(w.end + 6)
        return ()

    @td.on_timer(LATER)
    def on_later(self) -> Iterable[Any]:
        return ()


@case("timers.past_window_expiry_is_an_error", "Timers",
      error=ExpectedError(td.PipelineExecutionError, "step 'SetLate'",
                          also=("firing timestamp of Timestamp(16)", "after the expiration of window IntervalWindow(0, 10) at Timestamp(14.999999)")))
def timers_past_expiry(p: td.Pipeline) -> Any:
    """An event-time timer later than its window's expiry (max timestamp + allowed lateness) fails the
    step with the timer time and the expiry, as in Beam, instead of being dropped silently."""
    stream = TestStream().add_elements([TV(("k", 1), 1)]).advance_watermark_to_infinity()
    windowed = p | stream | td.WindowInto(window.FixedWindows(10), allowed_lateness=5)
    return windowed | "SetLate" >> td.ParDo(_TimerAfterExpiry())


# -- Discarding -------------------------------------------------------------------------


def _five_then_watermark() -> TestStream:
    """Elements 1 to 5 one by one in window [0, 10), then the watermark passes it."""
    stream = TestStream()
    for v in range(1, 6):
        stream = stream.add_elements(_kv(v))
    return stream.advance_watermark_to(10).advance_watermark_to_infinity()


@case("discarding.early_panes", "Discarding", observe=_PANES,
      expected=[(("k", 3), early(0)), (("k", 7), early(1)), (("k", 5), on_time(2, last=True))])
def discarding_early(p: td.Pipeline) -> Any:
    """Each early and on-time pane sums only the elements since the previous pane."""
    stream = _five_then_watermark()
    trigger = tr.AfterWatermark(early=tr.AfterCount(2))
    return _summed(p, stream, windowfn=window.FixedWindows(10), trigger=trigger, accumulation_mode=DISCARDING)


@case("discarding.late_panes_by_default", "Discarding", observe=_PANES,
      expected=[(("k", 1), on_time(0)), (("k", 2), late(1, 1)), (("k", 3), late(2, 2))])
def discarding_late(p: td.Pipeline) -> Any:
    """Without an accumulation mode, late panes hold only the new late elements."""
    stream = (TestStream().add_elements(_kv(1)).advance_watermark_to(10).add_elements(_kv(2)).advance_watermark_to(11)
              .add_elements(_kv(3)).advance_watermark_to_infinity())
    return _summed(p, stream, windowfn=window.FixedWindows(10), allowed_lateness=100)


@case("discarding.repeated_count", "Discarding", observe=_PANES, expected=[(("k", [1, 2]), early(0)), (("k", [3, 4]), early(1))])
def discarding_count(p: td.Pipeline) -> Any:
    """Repeated count panes in DISCARDING mode never repeat an element."""
    stream = TestStream().add_elements(_kv(1, 2)).add_elements(_kv(3, 4)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.GlobalWindows(), trigger=tr.Repeatedly(tr.AfterCount(2)), accumulation_mode=DISCARDING)


# -- Accumulating -----------------------------------------------------------------------


@case("accumulating.early_panes", "Accumulating", observe=_PANES,
      expected=[(("k", 3), early(0)), (("k", 10), early(1)), (("k", 15), on_time(2, last=True))])
def accumulating_early(p: td.Pipeline) -> Any:
    """Each early and on-time pane sums everything of the window so far."""
    stream = _five_then_watermark()
    trigger = tr.AfterWatermark(early=tr.AfterCount(2))
    return _summed(p, stream, windowfn=window.FixedWindows(10), trigger=trigger, accumulation_mode=ACCUMULATING)


@case("accumulating.late_panes", "Accumulating", observe=_PANES,
      expected=[(("k", 1), on_time(0)), (("k", 3), late(1, 1)), (("k", 6), late(2, 2))])
def accumulating_late(p: td.Pipeline) -> Any:
    """Late panes in ACCUMULATING mode include the on-time data and every earlier late element."""
    stream = (TestStream().add_elements(_kv(1)).advance_watermark_to(10).add_elements(_kv(2)).advance_watermark_to(11)
              .add_elements(_kv(3)).advance_watermark_to_infinity())
    return _summed(p, stream, windowfn=window.FixedWindows(10), trigger=tr.DefaultTrigger(), accumulation_mode=ACCUMULATING, allowed_lateness=100)


@case("accumulating.merged_sessions", "Accumulating", observe=("value", "window"),
      expected=[(("a", [1]), W(1, 6)), (("a", [1, 4]), W(1, 9)), (("a", [1, 4]), W(1, 9))])
def accumulating_sessions(p: td.Pipeline) -> Any:
    """When sessions merge, the accumulated pane holds the elements of both."""
    stream = TestStream().add_elements(_kv(1, key="a")).add_elements(_kv(4, key="a")).advance_watermark_to(20).advance_watermark_to_infinity()
    trigger = tr.AfterWatermark(early=tr.AfterCount(1))
    return _grouped(p, stream, windowfn=window.Sessions(5), trigger=trigger, accumulation_mode=ACCUMULATING)


@case("accumulating.repeated_count", "Accumulating", observe=_PANES, expected=[(("k", [1, 2]), early(0)), (("k", [1, 2, 3, 4]), early(1))])
def accumulating_count(p: td.Pipeline) -> Any:
    """Repeated count panes in ACCUMULATING mode repeat everything so far."""
    stream = TestStream().add_elements(_kv(1, 2)).add_elements(_kv(3, 4)).advance_watermark_to_infinity()
    return _grouped(p, stream, windowfn=window.GlobalWindows(), trigger=tr.Repeatedly(tr.AfterCount(2)), accumulation_mode=ACCUMULATING)
