"""Jobs on a warm Ray session: how long a tiny job takes and how fast word counts run.

With the Ray session started (``ray.init`` is reported apart) and one job run
to warm the runner's pool of workers, three figures, each against its target:

* a one-element job (``Create([1]) | Map(...)``, parallelism 2), wall time
  from building the pipeline to the end of ``run()``: target ≤ 50 ms;
* a 10,000-element word count (the ``ray_wordcount`` pipeline, parallelism 2),
  elements per second end to end: target ≥ 200,000/s;
* the 1,000,000-element word count at parallelism 2 against the direct runner
  in the same process, runs alternating: target ≥ 0.7× the direct runner.

Medians of ``--repeats`` runs with the spread (fastest–slowest). Every run's
output is checked, outside the timed region, against a plain-Python result;
a difference stops the benchmark before it prints a figure.

Run: ``python -m tidal.benchmarks.ray_warm [--address ADDR] [--repeats R] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from typing import Any

import tidal as td
from tidal.benchmarks.ray_session import start_ray
from tidal.benchmarks.ray_wordcount import make_data, run_once
from tidal.benchmarks.verify import BenchmarkMismatch, ExpectedOutput, counted
from tidal.runners.direct import DirectRunner

#: The targets: one-element job seconds, 10,000-element elements/s, 1M ratio to the direct runner.
TARGETS = {"one_element_s": 0.050, "wordcount_10k_per_s": 200_000, "wordcount_1m_ratio": 0.7}


def one_element_job(runner: Any, check: ExpectedOutput) -> float:
    gc.collect()
    start = time.perf_counter()
    p = td.Pipeline(runner=runner)
    _ = p | td.Create([1]) | td.Map(lambda x: x + 1) | check.sink()
    p.run().wait_until_finish()
    seconds = time.perf_counter() - start
    check.verify()
    return seconds


def _spread(times: list[float]) -> str:
    return f"{min(times) * 1000:.0f}–{max(times) * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="a Ray cluster to use (default: a local Ray started here)")
    parser.add_argument("--repeats", type=int, default=15, help="runs of each small job (the 1M word count: a third)")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    import ray

    from tidal.runners.ray import RayRunner

    started = not ray.is_initialized()
    init_s = start_ray(args.address)
    runner = RayRunner(address=args.address, parallelism=args.parallelism)
    small, big = make_data(10_000), make_data(1_000_000)
    one_check = ExpectedOutput("one-element job", [2])
    small_check = ExpectedOutput("word count (10,000)", counted(small))
    big_check = ExpectedOutput("word count (1,000,000)", counted(big))
    try:  # every run's output is checked before any figure is printed
        warm = time.perf_counter()
        run_once(runner, small, small_check)  # starts the pool's workers
        warm_s = time.perf_counter() - warm
        one = [one_element_job(runner, one_check) for _ in range(args.repeats)]
        tenk = [run_once(runner, small, small_check) for _ in range(args.repeats)]
        direct, ray_big = [], []
        for _ in range(max(3, args.repeats // 3)):
            direct.append(run_once(DirectRunner(), big, big_check))
            ray_big.append(run_once(runner, big, big_check))
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started:
            ray.shutdown()
    one_s = statistics.median(one)
    tenk_rate = 10_000 / statistics.median(tenk)
    ratios = [d / r for d, r in zip(direct, ray_big)]
    ratio = 1_000_000 / statistics.median(ray_big) / (1_000_000 / statistics.median(direct))
    rows = [
        ("one-element job", f"{one_s * 1000:.1f} ms", _spread(one), "≤ 50 ms", one_s <= TARGETS["one_element_s"]),
        (
            "word count, 10,000 elements",
            f"{tenk_rate:,.0f} elements/s",
            _spread(tenk),
            "≥ 200,000/s",
            tenk_rate >= TARGETS["wordcount_10k_per_s"],
        ),
        (
            "word count, 1,000,000 elements",
            f"{ratio:.2f}× direct ({statistics.median(ray_big):.2f} s vs {statistics.median(direct):.2f} s)",
            f"{min(ratios):.2f}–{max(ratios):.2f}× per pair",
            "≥ 0.7×",
            ratio >= TARGETS["wordcount_1m_ratio"],
        ),
    ]
    print(f"ray.init: {init_s:.2f} s; first job (starts the pooled workers): {warm_s:.2f} s (both reported apart)")
    print(f"parallelism {args.parallelism}, medians of {args.repeats} runs ({len(direct)} for 1,000,000 elements)")
    print(f"| {'job':<30} | {'median':<40} | {'spread':<22} | target | met |")
    print(f"|{'-' * 32}|{'-' * 42}|{'-' * 24}|--------|-----|")
    for name, median, spread, target, met in rows:
        print(f"| {name:<30} | {median:<40} | {spread:<22} | {target:<6} | {'yes' if met else 'no':<3} |")
    if args.json:
        results = {
            "ray_init_s": init_s,
            "first_job_s": warm_s,
            "parallelism": args.parallelism,
            "one_element_job_s": one,
            "wordcount_10k_s": tenk,
            "wordcount_1m_direct_s": direct,
            "wordcount_1m_ray_s": ray_big,
            "targets": TARGETS,
            "met": {name: met for name, *_, met in rows},
        }
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
