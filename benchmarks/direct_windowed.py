"""Windowed direct-runner benchmarks: fixed-window sums and session grouping.

1,000,000 elements over 10,000 keys, with event timestamps spread over
1,000 s of event time (so about 1,000 events/s):

* ``fixed``: ``WindowInto(FixedWindows(60)) | CombinePerKey(sum)``
* ``sessions``: ``WindowInto(Sessions(30)) | GroupByKey()``

Run: ``python -m tidal.benchmarks.direct_windowed [--elements N] [--repeats R]``.
It prints the per-run times and the median elements/s of each workload
(pipeline construction and run, measured together).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from typing import Any, Callable

import tidal as td
from tidal import window
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


def measure(build: Callable[[td.Pipeline, list[tuple[int, float]]], Any], events: list[tuple[int, float]], repeats: int, strict: bool) -> list[float]:
    times = []
    for _ in range(repeats):
        gc.collect()  # the previous run's garbage is not this run's cost
        start = time.perf_counter()
        p = td.Pipeline(runner=DirectRunner(strict=strict))
        build(p, events)
        p.run()
        times.append(time.perf_counter() - start)
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
    for name in args.workloads.split(","):
        times = measure(WORKLOADS[name], events, args.repeats, strict=not args.no_strict)
        rate = args.elements / statistics.median(times)
        results[name] = {"elements": args.elements, "times_s": times, "median_elements_per_s": rate}
        print(f"{name:9s} median {rate:>12,.0f} elements/s   runs: {', '.join(f'{t:.2f}s' for t in times)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
