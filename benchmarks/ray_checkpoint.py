"""What checkpoints cost on Ray, and how long recovery takes.

* **Overhead.** The Ray word count (the direct runner's benchmark pipeline,
  ``--elements`` ``(index, word)`` pairs, 10,000 distinct words) at
  parallelism 2, without checkpoints and with a checkpoint every
  ``--interval`` seconds (aligned barriers, state written to a local folder,
  plus the final checkpoint at the end of input), alternating so both see
  the same machine. Reported: the median time of each and their ratio.
* **Recovery.** A paced stream (``--stream-events`` keyed events, windowed
  sums into WriteToText) with checkpoints every ``--interval`` seconds; one
  worker is killed with ``ray.kill`` two seconds in. Reported: the time from
  noticing the loss until the restarted workers run (``Recovery.seconds``),
  and the whole job against a run without failure.

Every run's output is checked outside the timed region: the word counts
against a plain-Python count, and the files each stream published (the run
without failure and every run with a kill) against the windowed sums worked
out in plain Python. A difference stops the benchmark before it prints a
figure.

Run: ``python -m tidal.benchmarks.ray_checkpoint [--elements N] [--repeats R] [--interval S]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from typing import Any, Iterator

import tidal as td
from tidal.benchmarks.ray_session import start_ray
from tidal.benchmarks.ray_wordcount import make_data, run_once
from tidal.benchmarks.verify import BenchmarkMismatch, ExpectedOutput, counted


def _paced(n: int) -> Any:
    def events() -> Iterator[Any]:
        for v in range(n):
            if v % 500 == 0:
                time.sleep(0.05)
            yield td.TimestampedValue((f"k{v % 50}", v), v / 1000)

    return events


def expected_stream(n: int) -> Counter[str]:
    """The lines the paced stream publishes: per key k<v % 50> and 1 s window, the sum of its values.

    >>> sorted(expected_stream(3))
    ['k0,0,0', 'k1,0,1', 'k2,0,2']
    """
    sums: Counter[tuple[str, int]] = Counter()
    for v in range(n):
        sums[(f"k{v % 50}", v // 1000)] += v  # event time v / 1000 s, in 1 s windows
    return Counter(f"{k},{start},{total}" for (k, start), total in sums.items())


def _check_stream(what: str, got: Counter[str], expected: Counter[str]) -> None:
    if got != expected:
        missing, extra = sorted((expected - got).elements())[:3], sorted((got - expected).elements())[:3]
        raise BenchmarkMismatch(
            f"ray_checkpoint {what}: published {sum(got.values())} lines, expected {sum(expected.values())} "
            f"(missing {missing}, unexpected or repeated {extra})"
        )


def _stream_once(n: int, interval: float, kill_after: float | None) -> tuple[float, Any, Counter[str]]:
    import ray

    from tidal.runners.ray import RayRunner

    folder = tempfile.mkdtemp(prefix="tidal-bench-ckpt-")
    runner = RayRunner(parallelism=2, checkpoint_dir=os.path.join(folder, "ck"), checkpoint_interval=interval, bundle_size=500)
    p = td.Pipeline(runner=runner)
    (
        p
        | td.Read(td.GeneratorSource(_paced(n)))
        | td.WindowInto(td.window.FixedWindows(1))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | td.WriteToText(os.path.join(folder, "out", "o"))
    )
    start = time.perf_counter()
    result = p.run()
    if kill_after is not None:
        time.sleep(kill_after)
        ray.kill(result._actors[-1], no_restart=True)  # type: ignore[attr-defined]
    result.wait_until_finish(600)
    took = time.perf_counter() - start
    return took, result, Counter(td.io.read_text(os.path.join(folder, "out", "o-*")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=3_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between checkpoints (default 1)")
    parser.add_argument("--stream-events", type=int, default=20_000)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    import ray

    from tidal.runners.ray import RayRunner

    started = not ray.is_initialized()
    start_ray()
    try:
        return _measure(args, RayRunner)
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started:
            ray.shutdown()


def _measure(args: argparse.Namespace, RayRunner: Any) -> int:
    """The runs, each checked before any figure is printed; the exit code."""
    data = make_data(args.elements)
    check = ExpectedOutput("ray_checkpoint word count", counted(data))
    results: dict[str, Any] = {"elements": args.elements, "interval_s": args.interval}
    plain, checkpointed = [], []
    run_once(RayRunner(parallelism=2), data[:1000])  # warm the workers' imports
    for _ in range(args.repeats):
        plain.append(run_once(RayRunner(parallelism=2), data, check))
        with tempfile.TemporaryDirectory() as folder:
            runner = RayRunner(parallelism=2, checkpoint_dir=folder, checkpoint_interval=args.interval)
            checkpointed.append(run_once(runner, data, check))

    expected = expected_stream(args.stream_events)
    base_s, _, got = _stream_once(args.stream_events, args.interval, None)
    _check_stream("stream without failure", got, expected)
    recoveries: list[float] = []
    totals: list[float] = []
    for attempt in range(3):
        took, result, got = _stream_once(args.stream_events, args.interval, kill_after=2.0)
        _check_stream(f"stream with a kill (run {attempt + 1})", got, expected)
        totals.append(took)
        recoveries.extend(r.seconds for r in result.recoveries)

    p_med, c_med = statistics.median(plain), statistics.median(checkpointed)
    overhead = c_med / p_med - 1
    results["overhead"] = {
        "without_s": plain,
        "with_s": checkpointed,
        "median_without_s": p_med,
        "median_with_s": c_med,
        "throughput_without": args.elements / p_med,
        "throughput_with": args.elements / c_med,
        "overhead": overhead,
    }
    print(
        f"word count, {args.elements:,} elements, parallelism 2: without checkpoints {p_med:.2f} s "
        f"({args.elements / p_med:,.0f}/s), with a checkpoint every {args.interval:g} s {c_med:.2f} s "
        f"({args.elements / c_med:,.0f}/s): {overhead:+.1%} time"
    )
    print(f"  runs without: {', '.join(f'{t:.2f}' for t in plain)}   with: {', '.join(f'{t:.2f}' for t in checkpointed)}")
    results["recovery"] = {
        "job_without_failure_s": base_s,
        "jobs_with_a_kill_s": totals,
        "recovery_s": recoveries,
        "median_recovery_s": statistics.median(recoveries) if recoveries else None,
        "output_equal": True,
    }
    median_recovery = f"{statistics.median(recoveries):.2f} s" if recoveries else "n/a (no worker loss was noticed)"
    print(
        f"recovery after a killed worker ({args.stream_events:,}-event stream): median {median_recovery} "
        f"from noticing the loss to running again; job {statistics.median(totals):.2f} s against {base_s:.2f} s "
        f"without failure; published output checked: equal to the expected sums in all {len(totals)} runs"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
