"""Properties: batch and streaming execution agree, and arrival order does not matter.

For random timestamped (key, value) inputs under the default trigger, the
panes of a batch run (Create), of a streaming run (TestStream in timestamp
order with watermark advances), and of a streaming run with the elements
arriving shuffled (the watermark never passing an element still to come)
all equal the panes an independent model computes from SEMANTICS.md.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal as td
from tidal import window
from tidal.runners.direct import DirectRunner
from tidal.testing import TestStream, assert_that, equal_to
from tidal.trigger import PaneInfoTiming

from pane_support import RecordPanes

US = 1_000_000
TV = window.TimestampedValue

#: (name, WindowFn, model parameters)
WINDOWINGS = [
    ("fixed", window.FixedWindows(10), ("fixed", 10 * US, 0)),
    ("fixed-offset", window.FixedWindows(7, offset=3), ("fixed", 7 * US, 3 * US)),
    ("sliding", window.SlidingWindows(10, 5), ("sliding", 10 * US, 5 * US, 0)),
    ("sliding-uneven", window.SlidingWindows(6, 4, offset=1), ("sliding", 6 * US, 4 * US, 1 * US)),
    ("sessions", window.Sessions(5), ("sessions", 5 * US)),
]

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Elements: (key, value, timestamp in seconds); values are unique so a pane is a sorted list.
timestamps = st.integers(min_value=-20, max_value=120).map(lambda n: n / 2)
element_lists = st.lists(st.tuples(st.sampled_from("abc"), timestamps), min_size=1, max_size=25).map(
    lambda pairs: [(k, i, t) for i, (k, t) in enumerate(pairs)]
)


# -- the model ---------------------------------------------------------------------------
def model_windows(model: tuple[Any, ...], t_us: int) -> list[tuple[int, int]]:
    """The [start, end) windows (µs) of a non-merging WindowFn for a timestamp."""
    if model[0] == "fixed":
        _, size, offset = model
        start = t_us - (t_us - offset) % size
        return [(start, start + size)]
    _, size, period, offset = model
    # Every start offset + k * period with start <= t < start + size.
    k = (t_us - offset) // period
    out = []
    while offset + k * period + size > t_us:
        out.append((offset + k * period, offset + k * period + size))
        k -= 1
    return out


def model_panes(elements: list[tuple[str, int, float]], model: tuple[Any, ...], reduce: Any = sorted) -> list[Any]:
    """The default trigger, lateness 0, nothing late: one on-time, final pane per key and window."""
    groups: dict[tuple[str, tuple[int, int]], list[int]] = defaultdict(list)
    if model[0] == "sessions":
        gap = model[1]
        by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for k, v, t in elements:
            by_key[k].append((round(t * US), v))
        for k, items in by_key.items():
            # Sorted by time, each element either extends the current session or starts the next.
            sessions: list[tuple[int, int, list[int]]] = []
            for t_us, v in sorted(items):
                if sessions and t_us < sessions[-1][1]:
                    start, end, values = sessions[-1]
                    sessions[-1] = (start, max(end, t_us + gap), values + [v])
                else:
                    sessions.append((t_us, t_us + gap, [v]))
            for start, end, values in sessions:
                groups[(k, (start, end))] = values
    else:
        for k, v, t in elements:
            for w in model_windows(model, round(t * US)):
                groups[(k, w)].append(v)
    return [
        (k, reduce(vs), window.IntervalWindow.from_micros(s, e), e - 1, 0, PaneInfoTiming.ON_TIME, True, True, 0)
        for (k, (s, e)), vs in groups.items()
    ]


# -- pipelines ---------------------------------------------------------------------------
def run_batch(
    elements: list[tuple[str, int, float]], windowfn: window.WindowFn, expected: list[Any], expected_sums: list[Any]
) -> None:
    with td.Pipeline() as p:
        windowed = (
            p
            | td.Create(elements)
            | td.Map(lambda e: TV((e[0], e[1]), e[2]))
            | td.WindowInto(windowfn)
        )
        assert_that(windowed | "Group" >> td.GroupByKey() | "Panes" >> td.ParDo(RecordPanes()), equal_to(expected), label="grouped")
        sums = windowed | "Sum" >> td.CombinePerKey(sum) | "Sum panes" >> td.ParDo(RecordPanes())
        assert_that(sums, equal_to(expected_sums), label="sums")


def build_stream(arrivals: list[tuple[str, int, float]], cuts: list[int], advance: list[bool]) -> TestStream:
    """Bundles cut at ``cuts``; after a bundle, maybe advance the watermark to the earliest element still to come."""
    stream = TestStream()
    bounds = sorted({c % (len(arrivals) + 1) for c in cuts} | {0, len(arrivals)})
    watermark: float | None = None
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        stream.add_elements([TV((k, v), t) for k, v, t in arrivals[lo:hi]])
        rest = arrivals[hi:]
        if rest and advance[i % len(advance)]:
            target = min(t for _, _, t in rest)
            if watermark is None or target > watermark:  # a TestStream watermark must strictly advance
                stream.advance_watermark_to(target)
                watermark = target
    return stream.advance_watermark_to_infinity()


def run_stream(stream: TestStream, windowfn: window.WindowFn, expected: list[Any], expected_sums: list[Any]) -> None:
    p = td.Pipeline()
    windowed = p | stream | td.WindowInto(windowfn)
    assert_that(windowed | "Group" >> td.GroupByKey() | "Panes" >> td.ParDo(RecordPanes()), equal_to(expected), label="grouped")
    sums = windowed | "Sum" >> td.CombinePerKey(sum) | "Sum panes" >> td.ParDo(RecordPanes())
    assert_that(sums, equal_to(expected_sums), label="sums")
    p.run().wait_until_finish()


@pytest.mark.parametrize("windowfn, model", [w[1:] for w in WINDOWINGS], ids=[w[0] for w in WINDOWINGS])
@PROPERTY_SETTINGS
@given(
    elements=element_lists,
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=6),
    advance=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_batch_and_streaming_give_the_same_panes(
    windowfn: window.WindowFn, model: tuple[Any, ...], elements: list[tuple[str, int, float]], cuts: list[int], advance: list[bool]
) -> None:
    expected = model_panes(elements, model)
    expected_sums = model_panes(elements, model, reduce=sum)
    run_batch(elements, windowfn, expected, expected_sums)
    in_time_order = sorted(elements, key=lambda e: e[2])
    run_stream(build_stream(in_time_order, cuts, advance), windowfn, expected, expected_sums)


@pytest.mark.parametrize("windowfn, model", [w[1:] for w in WINDOWINGS], ids=[w[0] for w in WINDOWINGS])
@PROPERTY_SETTINGS
@given(
    data=st.data(),
    elements=element_lists,
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=6),
    advance=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_arrival_order_of_on_time_elements_does_not_change_the_panes(
    windowfn: window.WindowFn,
    model: tuple[Any, ...],
    data: st.DataObject,
    elements: list[tuple[str, int, float]],
    cuts: list[int],
    advance: list[bool],
) -> None:
    shuffled = data.draw(st.permutations(elements), label="arrival order")
    expected = model_panes(elements, model)
    run_stream(build_stream(shuffled, cuts, advance), windowfn, expected, model_panes(elements, model, reduce=sum))


def test_the_model_matches_the_semantics_examples() -> None:
    # SEMANTICS.md: SlidingWindows(10, 5), t = 12 -> [10,20) and [5,15).
    assert sorted(model_windows(("sliding", 10 * US, 5 * US, 0), 12 * US)) == [(5 * US, 15 * US), (10 * US, 20 * US)]
    # FixedWindows: start = t - ((t - offset) mod size).
    assert model_windows(("fixed", 10 * US, 3 * US), 2 * US) == [(-7 * US, 3 * US)]
    sessions = model_panes([("a", 0, 0), ("a", 1, 4), ("a", 2, 10), ("b", 3, 1)], ("sessions", 5 * US))
    assert sorted((k, vs, w) for k, vs, w, *_ in sessions) == [
        ("a", [0, 1], window.IntervalWindow(0, 9)),
        ("a", [2], window.IntervalWindow(10, 15)),
        ("b", [3], window.IntervalWindow(1, 6)),
    ]


# -- late data under the default trigger -------------------------------------------------
def model_late_panes(events: list[Any], model: tuple[Any, ...], lateness_us: int, reduce: Any = sorted) -> tuple[list[Any], int]:
    """Replay ``events`` ("wm", t) / ("add", [(k, v, t), ...]) under the default trigger.

    A window fires once when the watermark passes its max timestamp (ON_TIME),
    then once per bundle of late elements (LATE) until the watermark passes
    max timestamp + lateness; later elements are dropped. A window that late
    elements open behind the watermark never had its end-of-window firing:
    its panes are all LATE. A pane is last when the window expires at that
    firing.
    """
    pending: dict[tuple[str, tuple[int, int]], list[int]] = defaultdict(list)
    fired: dict[tuple[str, tuple[int, int]], int] = defaultdict(int)
    panes: list[Any] = []
    drops = 0
    wm = window.MIN_TIMESTAMP.micros

    def fire(kw: tuple[str, tuple[int, int]], by_watermark: bool) -> None:
        k, (s, e) = kw
        n = fired[kw]
        timing = PaneInfoTiming.ON_TIME if by_watermark and n == 0 else PaneInfoTiming.LATE
        last = wm > e - 1 + lateness_us
        panes.append((k, reduce(pending.pop(kw)), window.IntervalWindow.from_micros(s, e), e - 1, n, timing, n == 0, last, n))
        fired[kw] = n + 1

    for kind, payload in events + [("wm", window.MAX_TIMESTAMP.micros)]:
        if kind == "wm":
            wm = payload
            for kw in list(pending):
                if kw[1][1] - 1 < wm:
                    fire(kw, by_watermark=True)
            continue
        touched = []
        for k, v, t in payload:
            for w in model_windows(model, round(t * US)):
                if w[1] - 1 + lateness_us < wm:
                    drops += 1
                    continue
                pending[(k, w)].append(v)
                touched.append((k, w))
        for kw in dict.fromkeys(touched):
            if kw[1][1] - 1 < wm:
                fire(kw, by_watermark=False)
    return panes, drops


event_lists = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.tuples(st.sampled_from("ab"), timestamps), min_size=1, max_size=5)),
        # Watermark steps are positive: a TestStream watermark must strictly advance.
        st.tuples(st.just("wm"), st.integers(min_value=1, max_value=30).map(lambda n: n / 2)),
    ),
    min_size=1,
    max_size=12,
)


NON_MERGING = [w for w in WINDOWINGS if w[0] != "sessions"]


@pytest.mark.parametrize("windowfn, model", [w[1:] for w in NON_MERGING], ids=[w[0] for w in NON_MERGING])
@pytest.mark.parametrize("lateness", [0, 7])
@pytest.mark.parametrize("lift", [True, False], ids=["lifted", "unlifted"])
@PROPERTY_SETTINGS
@given(raw_events=event_lists)
def test_late_data_under_the_default_trigger_matches_the_model(
    windowfn: window.WindowFn, model: tuple[Any, ...], lateness: int, lift: bool, raw_events: list[Any]
) -> None:
    # Number the values, and turn watermark steps into an increasing watermark from -10 s.
    events: list[Any] = []
    stream = TestStream()
    wm = -10.0
    n = 0
    for kind, payload in raw_events:
        if kind == "wm":
            wm += payload
            stream.advance_watermark_to(wm)
            events.append(("wm", round(wm * US)))
        else:
            bundle = []
            for k, t in payload:
                bundle.append((k, n, t))
                n += 1
            stream.add_elements([TV((k, v), t) for k, v, t in bundle])
            events.append(("add", bundle))
    stream.advance_watermark_to_infinity()
    expected, drops = model_late_panes(events, model, lateness * US)
    expected_sums, _ = model_late_panes(events, model, lateness * US, reduce=sum)

    p = td.Pipeline(runner=DirectRunner(lift_combiners=lift))
    windowed = p | stream | td.WindowInto(windowfn, allowed_lateness=lateness)
    assert_that(windowed | "Group" >> td.GroupByKey() | "Panes" >> td.ParDo(RecordPanes()), equal_to(expected), label="grouped")
    sums = windowed | "Sum" >> td.CombinePerKey(sum) | "Sum panes" >> td.ParDo(RecordPanes())
    assert_that(sums, equal_to(expected_sums), label="sums")
    result = p.run()
    result.wait_until_finish()
    for step in ("Group", "Sum"):
        query = td.MetricsFilter().with_name("dropped_due_to_lateness").with_step(step)
        assert sum(c.committed for c in result.metrics().query(query)["counters"]) == drops, step


# -- early and late firings ----------------------------------------------------------------
def model_early_late_panes(
    events: list[Any], model: tuple[Any, ...], lateness_us: int, accumulating: bool, reduce: Any = sorted
) -> list[Any]:
    """Replay ``events`` under AfterWatermark(early=AfterCount(2), late=AfterCount(1)).

    Before the end of the window a pane fires after a bundle that brings the
    elements since the last early pane to 2 or more (EARLY); when the
    watermark passes the end the ON_TIME pane fires, even empty; then every
    bundle of late elements fires a LATE pane until the window expires. A
    window opened by late elements behind the watermark fires LATE panes
    only: its first firing is caused by data, not by the watermark.
    """
    EARLY, ON_TIME, LATE = PaneInfoTiming.EARLY, PaneInfoTiming.ON_TIME, PaneInfoTiming.LATE
    windows: dict[tuple[str, tuple[int, int]], dict[str, Any]] = {}
    panes: list[Any] = []
    wm = window.MIN_TIMESTAMP.micros

    def fire(kw: tuple[str, tuple[int, int]], timing: PaneInfoTiming) -> None:
        st = windows[kw]
        s, e = kw[1]
        index = st["fired"]
        values = st["all"] if accumulating else st["new"]
        last = wm > e - 1 + lateness_us
        nonspec = -1 if timing is EARLY else st["nonspec"]
        w = window.IntervalWindow.from_micros(s, e)
        panes.append((kw[0], reduce(list(values)), w, e - 1, index, timing, index == 0, last, nonspec))
        st["fired"] += 1
        st["nonspec"] += timing is not EARLY
        st["new"] = []

    for kind, payload in events + [("wm", window.MAX_TIMESTAMP.micros)]:
        if kind == "add":
            touched = []
            for k, v, t in payload:
                for w in model_windows(model, round(t * US)):
                    if w[1] - 1 + lateness_us < wm:
                        continue  # expired: dropped
                    st = windows.setdefault((k, w), {"all": [], "new": [], "early": 0, "on_time": False, "fired": 0, "nonspec": 0})
                    st["all"].append(v)
                    st["new"].append(v)
                    st["early"] += not st["on_time"]
                    touched.append((k, w))
            for kw in dict.fromkeys(touched):
                st = windows[kw]
                if st["on_time"]:
                    fire(kw, LATE)
                elif kw[1][1] - 1 < wm:
                    st["on_time"] = True  # the trigger enters its late phase, but data fired this pane
                    fire(kw, LATE)
                elif st["early"] >= 2:
                    st["early"] = 0
                    fire(kw, EARLY)
            continue
        wm = payload
        for kw in list(windows):
            st = windows[kw]
            if not st["on_time"] and kw[1][1] - 1 < wm:
                st["on_time"] = True
                fire(kw, ON_TIME)
            if kw[1][1] - 1 + lateness_us < wm:
                del windows[kw]  # every late bundle already fired: nothing is left for a final pane
    return panes


@pytest.mark.parametrize("windowfn, model", [w[1:] for w in WINDOWINGS if w[0] in ("fixed", "sliding")], ids=["fixed", "sliding"])
@pytest.mark.parametrize("lateness", [0, 7])
@pytest.mark.parametrize("accumulating", [False, True], ids=["discarding", "accumulating"])
@PROPERTY_SETTINGS
@given(raw_events=event_lists)
def test_early_and_late_firings_match_the_model(
    windowfn: window.WindowFn, model: tuple[Any, ...], lateness: int, accumulating: bool, raw_events: list[Any]
) -> None:
    events: list[Any] = []
    stream = TestStream()
    wm = -10.0
    n = 0
    for kind, payload in raw_events:
        if kind == "wm":
            wm += payload
            stream.advance_watermark_to(wm)
            events.append(("wm", round(wm * US)))
        else:
            bundle = [(k, n + i, t) for i, (k, t) in enumerate(payload)]
            n += len(bundle)
            stream.add_elements([TV((k, v), t) for k, v, t in bundle])
            events.append(("add", bundle))
    stream.advance_watermark_to_infinity()
    mode = td.trigger.AccumulationMode.ACCUMULATING if accumulating else td.trigger.AccumulationMode.DISCARDING
    trigger = td.trigger.AfterWatermark(early=td.trigger.AfterCount(2), late=td.trigger.AfterCount(1))

    p = td.Pipeline()
    windowed = p | stream | td.WindowInto(windowfn, trigger=trigger, accumulation_mode=mode, allowed_lateness=lateness)
    expected = model_early_late_panes(events, model, lateness * US, accumulating)
    assert_that(windowed | "Group" >> td.GroupByKey() | "Panes" >> td.ParDo(RecordPanes()), equal_to(expected), label="grouped")
    expected_sums = model_early_late_panes(events, model, lateness * US, accumulating, reduce=sum)
    sums = windowed | "Sum" >> td.CombinePerKey(sum) | "Sum panes" >> td.ParDo(RecordPanes())
    assert_that(sums, equal_to(expected_sums), label="sums")
    p.run().wait_until_finish()
