"""Word count on the direct runner: the per-element speed of the reference engine.

The input is 1,000,000 ``(index, word)`` pairs over 10,000 distinct words
(deterministic for a seed), built once before any timing. The pipeline is::

    td.Create(data) | td.Map(lambda kv: (kv[1], 1)) | td.CombinePerKey(sum)

Each run times pipeline construction and the run together (construction is
a few microseconds: the time is the run). It runs ``--repeats`` times in
strict mode (the direct runner's default: sampled pickling and mutation
checks) and again with ``strict=False``, and prints each mode's per-run
times and median elements/s. Every run's output (10,000 word counts, recorded
by a sink) is compared with a plain-Python count, outside the timed region;
a difference stops the benchmark before it prints a figure.

Run: ``python -m tidal.benchmarks.direct_wordcount [--elements N] [--repeats R] [--json PATH]``
(or ``python benchmarks/direct_wordcount.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from typing import Any

import tidal as td
from tidal.benchmarks.verify import BenchmarkMismatch, ExpectedOutput, counted
from tidal.runners.direct import DirectRunner

__all__ = ["make_data", "run_once", "measure", "main"]


def make_data(n: int, distinct: int = 10_000, seed: int = 0) -> list[tuple[int, str]]:
    """``n`` pairs ``(i, word)`` with words drawn from ``distinct`` ones, the same for a seed.

    >>> make_data(3, distinct=5)
    [(0, 'word3'), (1, 'word3'), (2, 'word0')]
    """
    rng = random.Random(seed)
    words = [f"word{i}" for i in range(distinct)]
    return list(enumerate(rng.choice(words) for _ in range(n)))


def run_once(data: list[tuple[int, str]], strict: bool, check: ExpectedOutput | None = None) -> float:
    """Seconds to build and run the word count over ``data`` on a DirectRunner; then (untimed) the
    output is checked against ``check`` (default: a plain-Python count of ``data``)."""
    check = check or ExpectedOutput("direct_wordcount", counted(data))
    sink = check.sink()
    gc.collect()  # the previous run's garbage is not this run's cost
    start = time.perf_counter()
    p = td.Pipeline(runner=DirectRunner(strict=strict))
    _ = p | td.Create(data) | td.Map(lambda kv: (kv[1], 1)) | td.CombinePerKey(sum) | sink
    p.run().wait_until_finish()
    seconds = time.perf_counter() - start
    check.verify()
    return seconds


def measure(data: list[tuple[int, str]], repeats: int, strict: bool) -> dict[str, Any]:
    """Per-run times and the median rate of ``repeats`` runs (after one untimed warm-up on a slice)."""
    run_once(data[: min(len(data), 10_000)], strict)  # import and first-call costs stay out
    check = ExpectedOutput("direct_wordcount", counted(data))
    times = [run_once(data, strict, check) for _ in range(repeats)]
    median = statistics.median(times)
    return {
        "strict": strict,
        "times_s": times,
        "median_s": median,
        "median_elements_per_s": len(data) / median if median > 0 else float("inf"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=1_000_000, help="input size (default 1,000,000)")
    parser.add_argument("--distinct", type=int, default=10_000, help="distinct words (default 10,000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per mode (default 5)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.elements < 1 or args.repeats < 1:
        parser.error("--elements and --repeats must be positive")

    data = make_data(args.elements, args.distinct)
    print(
        f"direct runner word count: {args.elements:,} elements, {args.distinct:,} distinct words, "
        f"{args.repeats} runs per mode (construction + run timed together)"
    )
    results = {}
    try:  # every run's output is checked before any figure is printed
        measured = {strict: measure(data, args.repeats, strict) for strict in (True, False)}
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for strict, r in measured.items():
        mode = "strict=True" if strict else "strict=False"
        results[mode] = r
        runs = ", ".join(f"{t:.3f}s" for t in r["times_s"])
        print(f"  {mode:<13} median {r['median_elements_per_s']:>12,.0f} elements/s   runs: {runs}")

    if args.json:
        report = {
            "benchmark": "direct_wordcount",
            "elements": args.elements,
            "distinct_words": args.distinct,
            "repeats": args.repeats,
            "timed": "pipeline construction + run",
            "python": platform.python_version(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
