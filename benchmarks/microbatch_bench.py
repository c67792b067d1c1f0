"""Micro-batch runner benchmarks: the Arrow fast path, the per-element fallback, word count.

* ``arrow``: 10,000,000 events as Arrow record batches (int64 key with 10,000
  values, int64 timestamp in seconds spread over 1,000 s, float64 value):
  ``ReadArrow | WindowInto(FixedWindows(60)) | CombinePerKey(sum)`` on the
  micro-batch runner, where it runs as Arrow group-by kernels.
* ``fallback``: the same pipeline with the fast path switched off
  (``MicroBatchRunner(columnar=False)``), on fewer events.
* ``wordcount``: the word count of ``direct_wordcount`` (1,000,000 ``(index, word)``
  pairs, 10,000 distinct words, ``Map(lambda kv: (kv[1], 1)) | CombinePerKey(sum)``)
  on the micro-batch runner and on the direct runner.
* ``pyarrow``: the ``arrow`` pipeline against bare pyarrow on the same batches, in
  the same process, at two spans of event time (``--pyarrow-spans``, default
  10,000 s and 1,000 s: about 1.67M and 170k (key, window) groups for 10M events).
  Bare pyarrow computes each batch's window column and
  ``group_by(["key", "window"]).aggregate([("value", "sum")])``, then merges the
  partial aggregates with one more ``group_by``: its result stays an Arrow table.
  tidal's pipeline ends in an Arrow-aware consumer (a batched DoFn, ``BatchTally``),
  which the runner hands each window's aggregate as Arrow rows: the headline ratio
  is tidal to Arrow over bare pyarrow to Arrow. Turning the aggregate into Python
  values is measured apart, on both sides: bare pyarrow turning its table into
  ``((key, sum), window)`` pairs, and tidal with a per-element Python consumer
  (``Tally``) in place of the batched one, which adds the panes as Python tuples and
  a DoFn call per pane. The four runs of one repeat go one after another, so the
  machine's load weighs on each side alike. With ``--pyarrow-key-stride`` the keys are
  spread out, so that tidal's hash group-by runs in place of its dense grid.
* ``batched`` (only when asked for): 1,000,000 Arrow events through a batched DoFn
  that doubles the value column (``process_batch``), against the same work as a
  per-element ``Map``; the batched DoFn runs with the Arrow columns handed to it
  as they are, and with the fast paths off (elements grouped into batches). Every
  output element is counted, so each run also turns 1,000,000 rows into Python pairs.

Each run builds and runs the pipeline; the input is made once, outside the
timing. Every run's output is checked after it, outside the timing: the word
counts against a plain-Python count; the windowed sums and the doubled values
by a :class:`~tidal.benchmarks.verify.Tally` at the end of the pipeline (how
many elements arrived and a weighted sum of their values) against the same
figures worked out with numpy from the input. A difference stops the benchmark
before it prints a figure. Run:
``python -m tidal.benchmarks.microbatch_bench [--events N] [--repeats R]``.
It prints every run and the median events/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import tidal as td
from tidal import window
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner
from tidal.benchmarks.direct_wordcount import make_data as make_words
from tidal.benchmarks.verify import BatchTally, BenchmarkMismatch, ExpectedOutput, Tally, check_tally, counted
from tidal.io.arrowio import ReadArrow


def make_arrow_events(
    n: int, keys: int = 10_000, span_s: int = 1_000, batch_rows: int = 1_000_000, seed: int = 7, key_stride: int = 1
) -> list[pa.RecordBatch]:
    """``n`` events as record batches of ``batch_rows`` rows, deterministic for a seed; the keys are
    ``0, key_stride, 2 * key_stride, ...``."""
    rng = np.random.default_rng(seed)
    batches = []
    for start in range(0, n, batch_rows):
        m = min(batch_rows, n - start)
        batches.append(
            pa.record_batch(
                {
                    "key": rng.integers(0, keys, m, dtype=np.int64) * key_stride,
                    "ts": rng.integers(0, span_s, m, dtype=np.int64),
                    "value": rng.random(m),
                }
            )
        )
    return batches


def _key_weighted(kv: Any) -> float:
    """A (key, value) output's value weighted by its key: a pane routed to a wrong key changes the sum."""
    return float((kv[0] + 1) * kv[1])


def _key_weighted_batch(batch: pa.RecordBatch) -> float:
    """:func:`_key_weighted` summed over an Arrow batch of (key, value) rows."""
    keys = np.asarray(batch.column(0).to_numpy(), dtype=np.float64)
    return float(np.dot(keys + 1, batch.column(1).to_numpy()))


def _value(kv: Any) -> float:
    return float(kv[1])


class Expected:
    """How many elements a run must deliver and the sum a Tally must find (worked out before the runs)."""

    def __init__(
        self, benchmark: str, count: int, total: float, weight: Callable[[Any], float], batch_weight: Callable[[Any], float] | None = None
    ) -> None:
        self.benchmark = benchmark
        self.count = count
        self.total = total
        self.weight = weight
        self.batch_weight = batch_weight
        self.folder = ""

    def sink(self) -> td.ParDo:
        """A fresh Tally for one run (apply it to the pipeline's output)."""
        self.folder = tempfile.mkdtemp(prefix="tidal-bench-tally-")
        return td.ParDo(Tally(self.folder, self.weight))

    def batch_sink(self) -> td.ParDo:
        """A fresh BatchTally for one run: an Arrow-aware consumer of the same output."""
        assert self.batch_weight is not None, "no weight for Arrow batches"
        self.folder = tempfile.mkdtemp(prefix="tidal-bench-tally-")
        return td.ParDo(BatchTally(self.folder, self.batch_weight))

    def verify(self) -> None:
        """Raise BenchmarkMismatch unless the last run delivered what was expected."""
        try:
            check_tally(self.benchmark, self.folder, self.count, self.total)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def expected_window_sums(batches: list[pa.RecordBatch], name: str) -> Expected:
    """The panes of the keyed fixed-window (60 s) sum, with numpy: one per (key, window), and the
    sum of (key + 1) * pane over them, which is the sum of (key + 1) * value over the events."""
    keys = np.concatenate([b.column("key").to_numpy() for b in batches])
    windows = np.concatenate([b.column("ts").to_numpy() for b in batches]) // 60
    values = np.concatenate([b.column("value").to_numpy() for b in batches])
    panes = len(np.unique(keys * (int(windows.max()) + 1) + windows)) if len(keys) else 0
    return Expected(name, panes, float(np.sum((keys + 1) * values)), _key_weighted, _key_weighted_batch)


def expected_doubled(batches: list[pa.RecordBatch], name: str) -> Expected:
    """Every row, its value doubled: as many outputs as rows, summing to twice the values."""
    values = np.concatenate([b.column("value").to_numpy() for b in batches])
    return Expected(name, len(values), float(2 * np.sum(values)), _value)


def bare_pyarrow_sums(batches: list[pa.RecordBatch], to_python: bool) -> Any:
    """Keyed sums per fixed 60 s window with pyarrow alone: a group-by per batch, then a merge.

    With ``to_python`` the result is turned into ``((key, sum), (start, end))`` pairs, as a
    Python consumer would need them; else it stays an Arrow table.
    """
    partials = []
    for b in batches:
        t = pa.table({"key": b.column("key"), "w": pc.divide(b.column("ts"), 60), "value": b.column("value")})
        partials.append(t.group_by(["key", "w"], use_threads=False).aggregate([("value", "sum")]))
    merged = pa.concat_tables(partials).group_by(["key", "w"], use_threads=False).aggregate([("value_sum", "sum")])
    if not to_python:
        return merged
    size = 60_000_000
    return [
        ((k, v), (w * size, w * size + size))
        for k, v, w in zip(merged.column("key").to_pylist(), merged.column("value_sum_sum").to_pylist(), merged.column("w").to_pylist())
    ]


def check_bare(result: Any, expected: Expected) -> None:
    """Raise BenchmarkMismatch unless bare pyarrow's result has the expected groups and weighted sum."""
    if isinstance(result, pa.Table):
        n = result.num_rows
        keys = result.column("key").to_numpy()
        total = float(np.sum((keys + 1) * result.column("value_sum_sum").to_numpy()))
    else:
        n = len(result)
        total = sum(expected.weight(kv) for kv, _ in result)
    if n != expected.count or not np.isclose(total, expected.total, rtol=1e-9):
        raise BenchmarkMismatch(f"{expected.benchmark}: bare pyarrow gave {n} groups summing to {total!r}, expected {expected.count} summing to {expected.total!r}")


def measure_bare(batches: list[pa.RecordBatch], to_python: bool, repeats: int, expected: Expected) -> list[float]:
    """Seconds per run of :func:`bare_pyarrow_sums`; each result is checked after it, untimed."""
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = bare_pyarrow_sums(batches, to_python)
        times.append(time.perf_counter() - start)
        check_bare(result, expected)
        del result
    return times


def windowed_sum(batches: list[pa.RecordBatch]) -> Callable[[td.Pipeline], Any]:
    def build(p: td.Pipeline) -> Any:
        return (
            p
            | ReadArrow(batches, key="key", value="value", timestamp="ts")
            | td.WindowInto(window.FixedWindows(60))
            | td.CombinePerKey(sum)
        )

    return build


class DoubleValues(td.DoFn):
    """A batched DoFn: the value column times two, in one Arrow kernel call per batch."""

    def process_batch(self, batch: pa.RecordBatch) -> Any:
        yield batch.set_column(1, "value", pc.multiply(batch.column("value"), 2.0))


def doubled(batches: list[pa.RecordBatch], batched: bool) -> Callable[[td.Pipeline], Any]:
    """``ReadArrow`` then the value doubled, by a batched DoFn or by a per-element Map."""

    def build(p: td.Pipeline) -> Any:
        rows = p | ReadArrow(batches, key="key", value="value", timestamp="ts")
        double = td.ParDo(DoubleValues()) if batched else td.Map(lambda kv: (kv[0], kv[1] * 2.0))
        return rows | double

    return build


def word_count(data: list[tuple[int, str]]) -> Callable[[td.Pipeline], Any]:
    def build(p: td.Pipeline) -> Any:
        return p | td.Create(data) | td.Map(lambda kv: (kv[1], 1)) | td.CombinePerKey(sum)

    return build


def measure(
    runner: Any, build: Callable[[td.Pipeline], Any], repeats: int, check: Expected | ExpectedOutput, arrow_sink: bool = False
) -> list[float]:
    """Seconds per run of ``build`` (its output into ``check``'s sink, or its batched sink with
    ``arrow_sink``); each run is checked after it, untimed."""
    times = []
    for _ in range(repeats):
        sink = check.batch_sink() if arrow_sink and isinstance(check, Expected) else check.sink()
        gc.collect()
        start = time.perf_counter()
        p = td.Pipeline(runner=runner)
        _ = build(p) | sink
        p.run()
        times.append(time.perf_counter() - start)
        check.verify()
    return times


def _report(name: str, n: int, times: list[float]) -> dict[str, Any]:
    rate = n / statistics.median(times)
    print(f"{name:48s} {n:>11,} events  median {rate:>13,.0f} events/s   runs: {', '.join(f'{t:.3f}s' for t in times)}")
    return {"events": n, "times_s": times, "median_events_per_s": rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--fallback-events", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=1_000_000)
    parser.add_argument("--batched-events", type=int, default=1_000_000)
    parser.add_argument("--max-batch-size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default="arrow,fallback,wordcount", help="any of arrow,fallback,wordcount,pyarrow,batched")
    parser.add_argument("--pyarrow-spans", default="10000,1000", help="event-time spans (s) of the pyarrow comparison")
    parser.add_argument(
        "--pyarrow-key-stride", type=int, default=1,
        help="the pyarrow comparison's keys are 0, N, 2N...: with N large (say 1000000) no dense grid fits, and "
        "tidal's hash group-by runs (key and window packed in one column)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--threads", type=int, default=1, help="Arrow's CPU thread pool size (1: one core)")
    args = parser.parse_args(argv)
    pa.set_cpu_count(args.threads)
    workloads = args.workloads.split(",")
    results: dict[str, Any] = {"max_batch_size": args.max_batch_size}
    mb = MicroBatchRunner(max_batch_size=args.max_batch_size)
    runs: list[tuple[str, str, int, list[float]]] = []  # (key, name, events, times), printed once all are checked
    try:
        if "arrow" in workloads:
            batches = make_arrow_events(args.events)
            sums = expected_window_sums(batches, "microbatch_bench arrow")
            runs.append(("arrow", "arrow: fixed-window sum (columnar)", args.events, measure(mb, windowed_sum(batches), args.repeats, sums)))
            del batches
        if "fallback" in workloads:
            batches = make_arrow_events(args.fallback_events)
            fallback = MicroBatchRunner(max_batch_size=args.max_batch_size, columnar=False)
            sums = expected_window_sums(batches, "microbatch_bench fallback")
            runs.append(("fallback", "fallback: same, per element", args.fallback_events, measure(fallback, windowed_sum(batches), args.repeats, sums)))
        if "wordcount" in workloads:
            data = make_words(args.words)
            words = ExpectedOutput("microbatch_bench wordcount", counted(data))
            small = MicroBatchRunner(max_batch_size=100_000)
            for key, name, runner in (
                ("wordcount_direct", "word count, direct runner", DirectRunner()),
                ("wordcount_direct_nonstrict", "word count, direct (strict=False)", DirectRunner(strict=False)),
                ("wordcount_microbatch", f"word count, micro-batch ({args.max_batch_size:,}/batch)", mb),
                ("wordcount_microbatch_100k", "word count, micro-batch (100,000/batch)", small),
            ):
                runs.append((key, name, args.words, measure(runner, word_count(data), args.repeats, words)))
        if "pyarrow" in workloads:
            for span in (int(x) for x in args.pyarrow_spans.split(",")):
                batches = make_arrow_events(args.events, span_s=span, key_stride=args.pyarrow_key_stride)
                sums = expected_window_sums(batches, f"microbatch_bench pyarrow span {span}")
                sides: dict[str, list[float]] = {"tidal": [], "tidal_python": [], "bare": [], "bare_python": []}
                for _ in range(args.repeats):  # (one run of each side in turn: the load weighs on all alike)
                    sides["tidal"] += measure(mb, windowed_sum(batches), 1, sums, arrow_sink=True)
                    sides["tidal_python"] += measure(mb, windowed_sum(batches), 1, sums)
                    sides["bare"] += measure_bare(batches, False, 1, sums)
                    sides["bare_python"] += measure_bare(batches, True, 1, sums)
                for side, name in (
                    ("tidal", "tidal Arrow path, Arrow consumer"),
                    ("bare", "bare pyarrow, Arrow result"),
                    ("tidal_python", "tidal Arrow path, Python consumer"),
                    ("bare_python", "bare pyarrow + to Python"),
                ):
                    runs.append((f"pyarrow_{span}_{side}", f"span {span:,} s: {name}", args.events, sides[side]))
                del batches
        if "batched" in workloads:
            n = args.batched_events
            batches = make_arrow_events(n)
            twice = expected_doubled(batches, "microbatch_bench batched")
            per_element = MicroBatchRunner(max_batch_size=args.max_batch_size, columnar=False)
            runs.append(("batched_arrow", "batched DoFn, Arrow columns in", n, measure(mb, doubled(batches, True), args.repeats, twice)))
            runs.append(("batched_elements", "batched DoFn, elements in", n, measure(per_element, doubled(batches, True), args.repeats, twice)))
            runs.append(("batched_map", "per-element Map, same work", n, measure(mb, doubled(batches, False), args.repeats, twice)))
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, name, events, times in runs:
        results[key] = _report(name, events, times)
    for span in (x for x in args.pyarrow_spans.split(",") if "pyarrow" in workloads):
        seconds = {side: statistics.median(results[f"pyarrow_{span}_{side}"]["times_s"]) for side in ("tidal", "tidal_python", "bare", "bare_python")}
        results[f"pyarrow_{span}_ratio_to_arrow"] = seconds["bare"] / seconds["tidal"]
        results[f"pyarrow_{span}_ratio_to_python"] = seconds["bare_python"] / seconds["tidal_python"]
        results[f"pyarrow_{span}_to_python_s"] = {"tidal": seconds["tidal_python"] - seconds["tidal"], "bare": seconds["bare_python"] - seconds["bare"]}
        print(f"span {int(span):,} s: tidal / bare pyarrow, both to Arrow: {seconds['bare'] / seconds['tidal']:.2f}x "
              f"({seconds['tidal']:.3f}s against {seconds['bare']:.3f}s)")
        print(f"span {int(span):,} s: to Python values, apart: tidal +{seconds['tidal_python'] - seconds['tidal']:.3f}s "
              f"(panes as Python tuples and a DoFn call each), bare pyarrow +{seconds['bare_python'] - seconds['bare']:.3f}s "
              f"(pairs in a list); with them, tidal / bare pyarrow {seconds['bare_python'] / seconds['tidal_python']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
