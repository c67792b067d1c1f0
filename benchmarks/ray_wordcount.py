"""Word count on the Ray runner against the direct runner, in one run.

The direct runner's benchmark pipeline (1,000,000 ``(index, word)`` pairs,
10,000 distinct words, ``Map(lambda kv: (kv[1], 1)) | CombinePerKey(sum)``)
runs on the direct runner and on Ray at parallelism 1, 2 and 4. Ray's
start-up (``ray.init``) is reported on its own, and so is the fixed cost of a
job (a 10-element run), so the per-element cost is what remains. Every
run's output is compared, outside the timed region, with a plain-Python word
count; a difference stops the benchmark before it prints a figure.

Run: ``python -m tidal.benchmarks.ray_wordcount [--elements N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from typing import Any

import tidal as td
from tidal.benchmarks.ray_session import start_ray
from tidal.benchmarks.verify import BenchmarkMismatch, ExpectedOutput, counted
from tidal.runners.direct import DirectRunner


def make_data(n: int, distinct: int = 10_000, seed: int = 0) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    words = [f"word{i}" for i in range(distinct)]
    return list(enumerate(rng.choice(words) for _ in range(n)))


def run_once(runner: Any, data: list[tuple[int, str]], check: ExpectedOutput | None = None) -> float:
    """Seconds to build and run the word count over ``data``; then (untimed) its output is checked
    against ``check`` (default: a plain-Python count of ``data``)."""
    check = check or ExpectedOutput("word count", counted(data))
    sink = check.sink()
    gc.collect()
    start = time.perf_counter()
    p = td.Pipeline(runner=runner)
    _ = p | td.Create(data) | td.Map(lambda kv: (kv[1], 1)) | td.CombinePerKey(sum) | sink
    p.run().wait_until_finish()
    seconds = time.perf_counter() - start
    check.verify()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parallelism", default="1,2,4")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    import ray

    from tidal.runners.ray import RayRunner

    data = make_data(args.elements)
    small = data[:10]
    check, small_check = ExpectedOutput("ray_wordcount", counted(data)), ExpectedOutput("ray_wordcount (10 elements)", counted(small))
    results: dict[str, Any] = {"elements": args.elements}
    started = not ray.is_initialized()
    results["ray_startup_s"] = start_ray()
    try:  # every run's output is checked before any figure is printed
        direct = [run_once(DirectRunner(), data, check) for _ in range(args.repeats)]
        ray_runs = {}
        for n in (int(x) for x in args.parallelism.split(",")):
            runner = RayRunner(parallelism=n)
            fixed = statistics.median(run_once(runner, small, small_check) for _ in range(args.repeats))
            ray_runs[n] = (fixed, [run_once(runner, data, check) for _ in range(args.repeats)])
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started:
            ray.shutdown()
    print(f"ray.init: {results['ray_startup_s']:.2f} s (reported apart from the runs)")
    d_rate = args.elements / statistics.median(direct)
    results["direct"] = {"times_s": direct, "elements_per_s": d_rate}
    print(f"direct          {d_rate:>12,.0f} elements/s   runs: {', '.join(f'{t:.2f}s' for t in direct)}")
    for n, (fixed, times) in ray_runs.items():
        med = statistics.median(times)
        rate = args.elements / med
        per_element_us = max(med - fixed, 1e-9) / args.elements * 1e6
        steady = 1e6 / per_element_us
        results[f"ray_p{n}"] = {
            "times_s": times,
            "elements_per_s_end_to_end": rate,
            "job_fixed_cost_s": fixed,
            "per_element_us": per_element_us,
            "elements_per_s_after_fixed_cost": steady,
            "ratio_to_direct_end_to_end": rate / d_rate,
            "ratio_to_direct_after_fixed_cost": steady / d_rate,
        }
        print(
            f"ray p={n:<2} end to end {rate:>10,.0f}/s ({rate / d_rate:4.0%} of direct); job fixed cost "
            f"{fixed:.2f} s; per element {per_element_us:.2f} µs = {steady:,.0f}/s ({steady / d_rate:4.0%} of direct)"
            f"   runs: {', '.join(f'{t:.2f}s' for t in times)}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
