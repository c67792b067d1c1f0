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
* ``batched`` (only when asked for): 1,000,000 Arrow events through a batched DoFn
  that doubles the value column (``process_batch``), against the same work as a
  per-element ``Map``; the batched DoFn runs with the Arrow columns handed to it
  as they are, and with the fast paths off (elements grouped into batches). Every
  output element is counted, so each run also turns 1,000,000 rows into Python pairs.

Each run builds and runs the pipeline; the input is made once, outside the
timing. Run: ``python -m tidal.benchmarks.microbatch_bench [--events N] [--repeats R]``.
It prints every run and the median events/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
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
from tidal.io.arrowio import ReadArrow


def make_arrow_events(n: int, keys: int = 10_000, span_s: int = 1_000, batch_rows: int = 1_000_000, seed: int = 7) -> list[pa.RecordBatch]:
    """``n`` events as record batches of ``batch_rows`` rows, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    batches = []
    for start in range(0, n, batch_rows):
        m = min(batch_rows, n - start)
        batches.append(
            pa.record_batch(
                {
                    "key": rng.integers(0, keys, m, dtype=np.int64),
                    "ts": rng.integers(0, span_s, m, dtype=np.int64),
                    "value": rng.random(m),
                }
            )
        )
    return batches


class _Count(td.DoFn):
    """Counts the panes that reach the end of the pipeline (so they are built and delivered)."""

    def __init__(self) -> None:
        self.n = 0

    def process(self, element: Any) -> Any:
        self.n += 1
        return ()


def windowed_sum(batches: list[pa.RecordBatch]) -> Callable[[td.Pipeline], Any]:
    def build(p: td.Pipeline) -> Any:
        return (
            p
            | ReadArrow(batches, key="key", value="value", timestamp="ts")
            | td.WindowInto(window.FixedWindows(60))
            | td.CombinePerKey(sum)
            | td.ParDo(_Count())
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
        return rows | double | td.ParDo(_Count())

    return build


def word_count(data: list[tuple[int, str]]) -> Callable[[td.Pipeline], Any]:
    def build(p: td.Pipeline) -> Any:
        return p | td.Create(data) | td.Map(lambda kv: (kv[1], 1)) | td.CombinePerKey(sum)

    return build


def measure(runner: Any, build: Callable[[td.Pipeline], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        p = td.Pipeline(runner=runner)
        build(p)
        p.run()
        times.append(time.perf_counter() - start)
    return times


def _report(name: str, n: int, times: list[float]) -> dict[str, Any]:
    rate = n / statistics.median(times)
    print(f"{name:42s} {n:>11,} events  median {rate:>13,.0f} events/s   runs: {', '.join(f'{t:.3f}s' for t in times)}")
    return {"events": n, "times_s": times, "median_events_per_s": rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--fallback-events", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=1_000_000)
    parser.add_argument("--batched-events", type=int, default=1_000_000)
    parser.add_argument("--max-batch-size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default="arrow,fallback,wordcount", help="any of arrow,fallback,wordcount,batched")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--threads", type=int, default=1, help="Arrow's CPU thread pool size (1: one core)")
    args = parser.parse_args(argv)
    pa.set_cpu_count(args.threads)
    workloads = args.workloads.split(",")
    results: dict[str, Any] = {"max_batch_size": args.max_batch_size}
    mb = MicroBatchRunner(max_batch_size=args.max_batch_size)
    if "arrow" in workloads:
        batches = make_arrow_events(args.events)
        results["arrow"] = _report("arrow: fixed-window sum (columnar)", args.events, measure(mb, windowed_sum(batches), args.repeats))
        del batches
    if "fallback" in workloads:
        batches = make_arrow_events(args.fallback_events)
        fallback = MicroBatchRunner(max_batch_size=args.max_batch_size, columnar=False)
        results["fallback"] = _report("fallback: same, per element", args.fallback_events, measure(fallback, windowed_sum(batches), args.repeats))
    if "wordcount" in workloads:
        data = make_words(args.words)
        results["wordcount_direct"] = _report("word count, direct runner", args.words, measure(DirectRunner(), word_count(data), args.repeats))
        results["wordcount_direct_nonstrict"] = _report(
            "word count, direct (strict=False)", args.words, measure(DirectRunner(strict=False), word_count(data), args.repeats)
        )
        results["wordcount_microbatch"] = _report(
            f"word count, micro-batch ({args.max_batch_size:,}/batch)", args.words, measure(mb, word_count(data), args.repeats)
        )
        small = MicroBatchRunner(max_batch_size=100_000)
        results["wordcount_microbatch_100k"] = _report("word count, micro-batch (100,000/batch)", args.words, measure(small, word_count(data), args.repeats))
    if "batched" in workloads:
        n = args.batched_events
        batches = make_arrow_events(n)
        per_element = MicroBatchRunner(max_batch_size=args.max_batch_size, columnar=False)
        results["batched_arrow"] = _report("batched DoFn, Arrow columns in", n, measure(mb, doubled(batches, True), args.repeats))
        results["batched_elements"] = _report("batched DoFn, elements in", n, measure(per_element, doubled(batches, True), args.repeats))
        results["batched_map"] = _report("per-element Map, same work", n, measure(mb, doubled(batches, False), args.repeats))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
