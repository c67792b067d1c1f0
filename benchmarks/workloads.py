"""The harness's workloads: each a pipeline body, its input and how to compare its results.

A workload makes its input (TimestampedValues in arrival order, so the same
list feeds a batch ``Create`` and a paced streaming source), applies its
transforms to a PCollection, and turns collected outputs into a canonical,
sorted form that must be equal on every runner.

>>> w = WORKLOADS["wordcount"]
>>> len(w.make_input(100, 0.0))
100
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Hashable, Sequence

import attrs

import tidal as td
from tidal import window
from tidal.benchmarks import yahoo
from tidal.benchmarks.nexmark import queries
from tidal.benchmarks.nexmark.beam_queries import BEAM_QUERIES
from tidal.benchmarks.nexmark.generator import NexmarkConfig, generate
from tidal.model.pvalue import PCollection
from tidal.model.window import TimestampedValue

__all__ = [
    "Workload", "WORKLOADS", "DEFAULT_WORKLOADS", "NEXMARK_RATE", "canonical_repr", "sum_panes",
    "yahoo_workload", "keyed_sum_workload", "keyed_sum_input", "expected_keyed_sums",
]

#: Event time advances by one second every NEXMARK_RATE events, so 10 s windows
#: close several times within the harness's small inputs.
NEXMARK_RATE = 200.0


def canonical_repr(outputs: Sequence[Any]) -> list[str]:
    """The outputs as sorted reprs: equal lists mean equal multisets of results."""
    return sorted(map(repr, outputs))


def sum_panes(outputs: Sequence[Any]) -> list[str]:
    """Processing-time panes differ from run to run; what they add up to per key does not."""
    totals: Counter[Any] = Counter()
    for k, v in outputs:
        totals[k] += v
    return canonical_repr(sorted(totals.items()))


def _sorted_groups(outputs: Sequence[Any]) -> list[str]:
    return canonical_repr([(k, sorted(vs)) for k, vs in outputs])


@attrs.frozen
class Workload:
    """One benchmark pipeline.

    ``latency`` says how a result is matched to the input it waited for:
    ``"element"`` — its timestamp is that of the one event it came from;
    ``"window"`` — it depends on every event up to its timestamp (a window's
    end, or the end of the stream for the global window); ``"last_event"`` —
    it waited for the last of the events that ``event_key`` maps to its
    ``result_key`` (the Yahoo benchmark's per-window latency); ``None`` — its
    timestamp says nothing of its inputs (processing-time panes), no latency.
    """

    name: str
    description: str
    make_input: Callable[[int, float], list[TimestampedValue]]
    build: Callable[[PCollection[Any]], PCollection[Any]]
    canonical: Callable[[Sequence[Any]], list[str]] = canonical_repr
    latency: str | None = "window"
    #: False for a global-window aggregation, which an unbounded input cannot have (no latency then).
    streaming: bool = True
    #: Builds the same pipeline with Apache Beam (``beam`` module, PCollection), when Beam can run it.
    beam_build: Callable[[Any, Any], Any] | None = None
    #: For ``latency="last_event"``: the result an input value feeds (None: none), and the key of a result.
    event_key: Callable[[Any], Hashable | None] | None = None
    result_key: Callable[[Any], Hashable] | None = None
    #: The result computed in plain Python from the input values, when the workload has one (checked before a figure).
    expected: Callable[[Sequence[Any]], list[Any]] | None = None


def _nexmark_input(n: int, out_of_orderness: float = 0.0) -> list[TimestampedValue]:
    return generate(NexmarkConfig(seed=42, events_per_second=NEXMARK_RATE, out_of_orderness=out_of_orderness), n)


def _words_input(n: int, out_of_orderness: float = 0.0) -> list[TimestampedValue]:
    rng = random.Random(0)
    words = [f"word{i}" for i in range(1000)]
    return [TimestampedValue(rng.choice(words), i / 1000.0) for i in range(n)]


def _keyed_input(n: int, out_of_orderness: float = 0.0) -> list[TimestampedValue]:
    """(key, 1) pairs over 100 keys, 100 events per second of event time, up to 40 ms out of order.

    Timestamps are whole milliseconds: Beam encodes window bounds in
    milliseconds, so session windows from finer timestamps would not match.
    """
    rng = random.Random(7)
    stamped = [(i / 100.0 + rng.uniform(0, 0.04), rng.randrange(100)) for i in range(n)]
    return [TimestampedValue((key, 1), round(t, 3)) for t, key in stamped]


def _wordcount(words: PCollection[Any]) -> PCollection[Any]:
    return words | "Pair" >> td.Map(lambda w: (w, 1)) | "Count" >> td.CombinePerKey(sum)


def _windowed_count(pairs: PCollection[Any]) -> PCollection[Any]:
    return pairs | "Fixed" >> td.WindowInto(window.FixedWindows(10)) | "Sum" >> td.CombinePerKey(sum) | "WithWindow" >> td.ParDo(_WindowStart())


def _sessions(pairs: PCollection[Any]) -> PCollection[Any]:
    return pairs | "Sessions" >> td.WindowInto(window.Sessions(2)) | "Group" >> td.GroupByKey() | "WithWindow" >> td.ParDo(_SessionBounds())


class _WindowStart(td.DoFn):
    def process(self, kv: Any, w: Any = td.DoFn.WindowParam) -> Any:
        yield (float(w.start), kv[0], kv[1])


class _SessionBounds(td.DoFn):
    def process(self, kv: Any, w: Any = td.DoFn.WindowParam) -> Any:
        yield ((kv[0], float(w.start), float(w.end)), sorted(kv[1]))


def _beam_wordcount(beam: Any, words: Any) -> Any:
    return words | "Pair" >> beam.Map(lambda w: (w, 1)) | "Count" >> beam.CombinePerKey(sum)


def _beam_windowed_count(beam: Any, pairs: Any) -> Any:
    return (
        pairs
        | "Fixed" >> beam.WindowInto(beam.window.FixedWindows(10))
        | "Sum" >> beam.CombinePerKey(sum)
        | "WithWindow" >> beam.Map(lambda kv, w=beam.DoFn.WindowParam: (float(w.start), kv[0], kv[1]))
    )


def _beam_sessions(beam: Any, pairs: Any) -> Any:
    return (
        pairs
        | "Sessions" >> beam.WindowInto(beam.window.Sessions(2))
        | "Group" >> beam.GroupByKey()
        | "WithWindow" >> beam.Map(lambda kv, w=beam.DoFn.WindowParam: ((kv[0], float(w.start), float(w.end)), sorted(kv[1])))
    )


def _beam_yahoo(config: yahoo.YahooConfig) -> Callable[[Any, Any], Any]:
    def build(beam: Any, events: Any) -> Any:
        ads = events.pipeline | "Yahoo/Ads" >> beam.Create(yahoo.ad_table(config))
        return (
            events
            | "Yahoo/Views" >> beam.Filter(lambda e: e.event_type == "view")
            | "Yahoo/Project" >> beam.Map(lambda e: (e.ad_id, e.event_time))
            | "Yahoo/Campaign" >> beam.Map(lambda at, table: (table[at[0]], at[1]), beam.pvalue.AsDict(ads))
            | "Yahoo/Window" >> beam.WindowInto(beam.window.FixedWindows(config.window_size))
            | "Yahoo/One" >> beam.Map(lambda ct: (ct[0], 1))
            | "Yahoo/Count" >> beam.CombinePerKey(sum)
            | "Yahoo/WithWindow" >> beam.Map(lambda kv, w=beam.DoFn.WindowParam: (float(w.start), kv[0], kv[1]))
        )

    return build


def yahoo_workload(
    campaigns: int = 100, ads_per_campaign: int = 10, events_per_second: float = NEXMARK_RATE, name: str | None = None
) -> Workload:
    """The Yahoo Streaming Benchmark (:mod:`tidal.benchmarks.yahoo`) with this many campaigns (its keys).

    >>> w = yahoo_workload(campaigns=5, ads_per_campaign=2)
    >>> w.name, len(w.make_input(30, 0.0)), w.latency
    ('yahoo-5', 30, 'last_event')
    """
    config = yahoo.YahooConfig(campaigns=campaigns, ads_per_campaign=ads_per_campaign, events_per_second=events_per_second)

    def make_input(n: int, out_of_orderness: float = 0.0) -> list[TimestampedValue]:
        return yahoo.generate(attrs.evolve(config, out_of_orderness=out_of_orderness), n)

    return Workload(
        name or f"yahoo-{campaigns}",
        f"Yahoo Streaming Benchmark: views joined with their campaign (side input), counted per campaign in 10 s windows; "
        f"{campaigns:,} campaigns of {ads_per_campaign} ads",
        make_input,
        lambda events: yahoo.query(events, config),
        latency="last_event",
        beam_build=_beam_yahoo(config),
        event_key=yahoo.window_key(config),
        result_key=yahoo.result_key,
        expected=lambda values: yahoo.expected_counts(values, config),
    )


def keyed_sum_input(keys: int, events_per_second: float) -> Callable[[int, float], list[TimestampedValue]]:
    """An input function: ``(key, value)`` pairs, keys uniform over ``range(keys)``, values 1..9, whole-millisecond times.

    >>> make = keyed_sum_input(3, 10.0)
    >>> [tv.timestamp_us for tv in make(3, 0.0)] == [0, 100_000, 200_000], make(5, 0.0)[:2] == make(2, 0.0)
    (True, True)
    """

    def make_input(n: int, out_of_orderness: float = 0.0) -> list[TimestampedValue]:
        rng = random.Random(keys)
        pairs = []
        for i in range(n):
            bits = rng.getrandbits(64)
            pairs.append(TimestampedValue((bits % keys, (bits >> 40) % 9 + 1), round(i / events_per_second, 3)))
        group = max(1, int(round(out_of_orderness * events_per_second)))
        return [pairs[i] for i in yahoo.arrival_order(n, group, keys)]

    return make_input


def expected_keyed_sums(values: Sequence[Any], size: float = 10.0) -> list[tuple[float, Any, int]]:
    """The keyed windowed sum in plain Python: ``(window start, key, sum)`` from ``(key, value)`` elements (TimestampedValue).

    >>> sorted(expected_keyed_sums([TimestampedValue(("a", 2), 1.0), TimestampedValue(("a", 3), 9.0), TimestampedValue(("b", 1), 12.0)]))
    [(0.0, 'a', 5), (10.0, 'b', 1)]
    """
    sums: Counter[tuple[float, Any]] = Counter()
    size_us = int(round(size * 1_000_000))
    for tv in values:
        key, value = tv.value
        sums[((tv.timestamp_us - tv.timestamp_us % size_us) / 1e6, key)] += value
    return [(w, k, v) for (w, k), v in sums.items()]


def keyed_sum_workload(keys: int, events_per_second: float = NEXMARK_RATE) -> Workload:
    """A keyed windowed sum (fixed 10 s windows, ``CombinePerKey(sum)``) over ``keys`` keys.

    >>> w = keyed_sum_workload(1000)
    >>> w.name, len({tv.value[0] for tv in w.make_input(500, 0.0)}) > 300
    ('keyed-sum-1000', True)
    """
    return Workload(
        f"keyed-sum-{keys}",
        f"fixed 10 s windows, sum per key, {keys:,} keys",
        keyed_sum_input(keys, events_per_second),
        _windowed_count,
        beam_build=_beam_windowed_count,
        expected=expected_keyed_sums,
    )


_NEXMARK_DOCS = {
    "q0": "pass-through", "q1": "currency conversion", "q2": "selection", "q3": "local item suggestion (stateful join)",
    "q4": "average price per category", "q5": "hot items (sliding windows)", "q7": "highest bid (fixed windows + side input)",
    "q8": "monitor new users (windowed join)", "q11": "user sessions", "q12": "processing-time panes",
}
_LATENCY = {"q0": "element", "q1": "element", "q2": "element", "q3": "element", "q12": None}


def _nexmark_workloads() -> dict[str, Workload]:
    out = {}
    for name, query in queries.QUERIES.items():
        out[name] = Workload(
            name, f"Nexmark {name.upper()}: {_NEXMARK_DOCS[name]}", _nexmark_input, query,
            canonical=sum_panes if name == "q12" else canonical_repr,
            latency=_LATENCY.get(name, "window"), beam_build=BEAM_QUERIES.get(name), streaming=name != "q4",
        )
    return out


WORKLOADS: dict[str, Workload] = {
    **_nexmark_workloads(),
    "wordcount": Workload("wordcount", "word count (CombinePerKey), 1,000 distinct words", _words_input, _wordcount, beam_build=_beam_wordcount, streaming=False),
    "windowed": Workload("windowed", "fixed 10 s windows, sum per key, 100 keys", _keyed_input, _windowed_count, beam_build=_beam_windowed_count),
    "sessions": Workload(
        "sessions", "session windows (2 s gap), GroupByKey, 100 keys", _keyed_input, _sessions, canonical=_sorted_groups, beam_build=_beam_sessions
    ),
    "yahoo": yahoo_workload(name="yahoo"),
}

DEFAULT_WORKLOADS = list(WORKLOADS)
