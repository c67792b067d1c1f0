"""Windowed direct-runner benchmarks: fixed-window sums and session grouping.

1,000,000 elements over 10,000 keys, with event timestamps spread over
1,000 s of event time (so about 1,000 events/s):

* ``fixed``: ``WindowInto(FixedWindows(60)) | CombinePerKey(sum)``
* ``sessions``: ``WindowInto(Sessions(30)) | GroupByKey()``

Run: ``python -m tidal.benchmarks.direct_windowed [--elements N] [--repeats R]``.
It prints the per-run times and the median elements/s of each workload
(pipeline construction and run, measured together). Every run's output is
recorded and compared, outside the timed region, with the windows worked out
in plain Python (:func:`expected_output`); a difference stops the benchmark
before it prints a figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections import Counter
from typing import Any, Callable

import tidal as td
from tidal import window
from tidal.benchmarks.verify import BenchmarkMismatch, ExpectedOutput
from tidal.capability_matrix.execute import compare_multisets
from tidal.runners.direct import DirectRunner


def make_events(n: int, keys: int = 10_000, span_s: float = 1_000.0, seed: int = 7) -> list[tuple[int, float]]:
    """(key, event time in seconds) pairs, deterministic for a seed."""
    rng = random.Random(seed)
    return [(rng.randrange(keys), round(rng.uniform(0, span_s), 3)) for _ in range(n)]


def _stamp(e: tuple[int, float]) -> Any:
    return window.TimestampedValue((e[0], 1), e[1])


def fixed_window_sum(p: td.Pipeline, events: list[tuple[int, float]]) -> Any:
    return (
        p
        | td.Create(events)
        | td.Map(_stamp)
        | td.WindowInto(window.FixedWindows(60))
        | td.CombinePerKey(sum)
    )


def session_group(p: td.Pipeline, events: list[tuple[int, float]]) -> Any:
    return p | td.Create(events) | td.Map(_stamp) | td.WindowInto(window.Sessions(30)) | td.GroupByKey()


WORKLOADS: dict[str, Callable[[td.Pipeline, list[tuple[int, float]]], Any]] = {
    "fixed": fixed_window_sum,
    "sessions": session_group,
}


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)  # as tidal converts event times


def expected_output(name: str, events: list[tuple[int, float]]) -> ExpectedOutput:
    """What workload ``name`` emits for ``events``, worked out in plain Python.

    ``fixed``: (key, count) for every key and 60 s window holding its events.
    ``sessions``: per key, events closer than 30 s apart chain into one session;
    each session is one (key, [1, 1, ...]) group, compared as (key, count, sum).

    >>> sorted(expected_output("fixed", [(1, 0.5), (1, 59.0), (1, 61.0)]).expected)
    [(1, 1), (1, 2)]
    >>> sorted(expected_output("sessions", [(1, 0.0), (1, 29.9), (1, 60.0), (2, 5.0)]).expected)
    [(1, 1, 1), (1, 2, 2), (2, 1, 1)]
    """
    if name == "fixed":
        windows = Counter((key, _micros(ts) // 60_000_000) for key, ts in events)
        return ExpectedOutput("direct_windowed fixed", [(key, n) for (key, _), n in windows.items()])
    gap = 30_000_000
    times: dict[int, list[int]] = {}
    for key, ts in events:
        times.setdefault(key, []).append(_micros(ts))
    sessions = []
    for key, stamps in times.items():
        stamps.sort()
        n, end = 0, None
        for t in stamps:
            if end is not None and t >= end:  # [t, t + gap) does not meet the session so far
                sessions.append((key, n, n))
                n = 0
            n += 1
            end = t + gap if end is None or n == 1 else max(end, t + gap)
        sessions.append((key, n, n))

    def compare(actual: list[Any], expected: list[Any]) -> str | None:
        return compare_multisets([(key, len(values), sum(values)) for key, values in actual], expected)

    return ExpectedOutput("direct_windowed sessions", sessions, compare)


def measure(build: Callable[[td.Pipeline, list[tuple[int, float]]], Any], events: list[tuple[int, float]], repeats: int,
            strict: bool, check: ExpectedOutput) -> list[float]:
    """Seconds per run; each run's output is checked after it, untimed."""
    times = []
    for _ in range(repeats):
        sink = check.sink()
        gc.collect()  # the previous run's garbage is not this run's cost
        start = time.perf_counter()
        p = td.Pipeline(runner=DirectRunner(strict=strict))
        _ = build(p, events) | sink
        p.run()
        times.append(time.perf_counter() - start)
        check.verify()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default="fixed,sessions")
    parser.add_argument("--no-strict", action="store_true", help="turn off the direct runner's sampled checks")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    events = make_events(args.elements)
    results = {}
    measured = {}
    try:  # every run's output is checked before any figure is printed
        for name in args.workloads.split(","):
            measured[name] = measure(WORKLOADS[name], events, args.repeats, not args.no_strict, expected_output(name, events))
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, times in measured.items():
        rate = args.elements / statistics.median(times)
        results[name] = {"elements": args.elements, "times_s": times, "median_elements_per_s": rate}
        print(f"{name:9s} median {rate:>12,.0f} elements/s   runs: {', '.join(f'{t:.2f}s' for t in times)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
