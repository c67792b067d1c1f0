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
from typing import Any, Callable, Sequence

import attrs

import tidal as td
from tidal import window
from tidal.benchmarks.nexmark import queries
from tidal.benchmarks.nexmark.beam_queries import BEAM_QUERIES
from tidal.benchmarks.nexmark.generator import NexmarkConfig, generate
from tidal.model.pvalue import PCollection
from tidal.model.window import TimestampedValue

__all__ = ["Workload", "WORKLOADS", "DEFAULT_WORKLOADS", "NEXMARK_RATE", "canonical_repr", "sum_panes"]

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
    end, or the end of the stream for the global window); ``None`` — its
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
}

DEFAULT_WORKLOADS = list(WORKLOADS)
