"""Does the cost grow linearly? Throughput at several input sizes, and the memory of a long stream.

Two measurements:

* **throughput by size**: each workload of :mod:`tidal.benchmarks.floor`
  (word count, fixed windows, one session per element, merging sessions) at
  each of ``--elements`` (default 100,000, 1,000,000 and 10,000,000) on the
  runner of ``--runner``; every run's output is checked against the plain
  loop's result (as ``floor`` does) before any figure is printed. The spread
  is the largest median over the smallest, minus one: linear cost keeps it
  within 20%. The sizes take turns, ``--repeats`` rounds of them, so a machine
  whose speed drifts weighs on every size alike, and a size under 1,000,000
  runs several times a round (10 at 100,000). The plain loop of ``floor`` runs
  beside the runner at each size, and its own spread is printed, with the
  spread of the runner's rate over the loop's: where the loop's grows, the
  machine (a working set past the CPU's caches), not the engine, bends the
  curve; the ratio's spread is the engine's own. Each workload keeps the shape it has at 1,000,000 elements at
  every size (``--shape scaled``, the default): the word count draws from
  one distinct word per 100 elements, and the merging sessions spread their
  event times over one second per 1,000 elements, so a key holds as many
  elements, and a session merges as many, at every size. (Fixed windows and
  one session per element have that shape already: their event time grows
  with the element's index.) With ``--shape fixed`` the inputs are the
  ``floor`` benchmark's at every size: 10,000 words, 1,000 s of event time,
  so at 100,000 elements a word is counted 10 times instead of 100, and the
  work per output, not per element, sets the rate.
* **peak memory of a windowed stream**: the fixed-windows workload read from
  an unbounded source whose watermark follows the event time (``--stream``
  lengths, default 1,000,000 and 10,000,000 events), each length in a process
  of its own, which reports its peak RSS (``ru_maxrss``). The windows fire and
  are collected as the watermark passes them, so the peak must not grow with
  the stream's length: the growth is the longest stream's peak over the
  shortest's, minus one. (The peak is the child's ``VmHWM``: ``ru_maxrss``
  would carry the parent's peak across exec.) Each child checks its output (the count and digest
  of every (key, sum) and window, against a plain loop run in the parent) and
  fails before reporting a figure when it differs.

Run: ``python -m tidal.benchmarks.linear [--elements 100000,1000000,10000000]
[--stream 1000000,10000000] [--repeats 1] [--workloads ...] [--runner direct-nonstrict]
[--shape scaled|fixed] [--json PATH]``; ``--elements ''`` or ``--stream ''`` skips a part.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Iterator

import tidal as td
from tidal import window
from tidal.benchmarks import floor
from tidal.benchmarks.direct_wordcount import make_data as make_words
from tidal.benchmarks.direct_windowed import make_events
from tidal.benchmarks.verify import BenchmarkMismatch
from tidal.io.unbounded import GeneratorSource

__all__ = ["spread", "stream_events", "main"]


def spread(rates: list[float]) -> float:
    """The largest rate over the smallest, minus one (0.0 when they are equal).

    >>> round(spread([1_000_000.0, 900_000.0, 950_000.0]), 3)
    0.111
    """
    return max(rates) / min(rates) - 1.0


def stream_events(n: int) -> Iterator[Any]:
    """The fixed-windows workload's input as a stream: element ``i`` at event time ``i / 1000`` s."""
    tv = window.TimestampedValue
    for i in range(n):
        yield tv(i, i / 1000)


class _Events:
    """A picklable factory of :func:`stream_events` for ``n`` events."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.__name__ = f"events_{n}"

    def __call__(self) -> Iterator[Any]:
        return stream_events(self.n)


def make_input(name: str, n: int, shape: str = "scaled") -> Any:
    """Workload ``name``'s input of ``n`` elements, with its 1,000,000-element shape kept (``scaled``) or not.

    >>> len({w for _, w in make_input("wordcount", 10_000)}) <= 100
    True
    >>> max(t for _, t in make_input("merged", 10_000)) <= 10.0
    True
    """
    if shape == "scaled" and name == "wordcount":
        return make_words(n, distinct=max(1, n // 100))
    if shape == "scaled" and name == "merged":
        return make_events(n, span_s=n / 1000)
    return floor.WORKLOADS[name].make(n)


def _stream_child(n: int, expected: tuple[int, int]) -> dict[str, Any]:
    """In its own process: the windowed stream of ``n`` events; its time and peak RSS."""
    check = floor.DigestCheck(f"stream of {n:,} events", expected)
    p = td.Pipeline(runner=floor.RUNNERS["direct-nonstrict"]())
    _ = (
        p
        | td.Read(GeneratorSource(_Events(n)))
        | td.Map(floor._stamp_fixed)
        | td.WindowInto(window.FixedWindows(60))
        | td.CombinePerKey(sum)
        | check.sink()
    )
    start, cpu = time.perf_counter(), time.process_time()
    p.run().wait_until_finish()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    check.verify()  # raises BenchmarkMismatch: the child fails, the parent prints no figure
    return {
        "events": n,
        "seconds": seconds,
        "cpu_s": cpu_seconds,
        "events_per_s": n / seconds,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _peak_rss_mib() -> float:
    """This process's peak resident set: VmHWM, which starts afresh at exec (Linux keeps
    ``ru_maxrss`` across exec, so a child started by a big parent would report the parent's)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stream_in_own_process(n: int) -> dict[str, Any]:
    expected = floor.digest_of(floor._fixed_loop((i % floor.KEYS, round(i / 1000 * 1_000_000)) for i in range(n)))
    proc = subprocess.run(
        [sys.executable, "-m", "tidal.benchmarks.linear", "--child", json.dumps([n, list(expected)])],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchmarkMismatch(f"stream of {n:,} events failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def runs_per_round(n: int) -> int:
    """How many back-to-back runs a size gets in each round: up to 10, about 1,000,000 elements' worth.

    >>> runs_per_round(100_000), runs_per_round(1_000_000), runs_per_round(10_000_000)
    (10, 1, 1)
    """
    return max(1, min(10, 1_000_000 // max(1, n)))


def _throughput(w: floor.Workload, sizes: list[int], repeats: int, runner: str, shape: str) -> list[dict[str, Any]]:
    """Workload ``w`` at each size, the plain loop and the runner, every run's output checked.

    The sizes take turns, round after round (``repeats`` rounds), so a machine whose speed
    drifts over the minutes weighs on every size alike; a small size runs several times
    per round (:func:`runs_per_round`), since one run of 100,000 elements lasts a few
    hundredths of a second.
    """
    inputs = {n: make_input(w.name, n, shape) for n in sizes}
    checks = {}
    for n in sizes:
        _, expected = floor._timed_loop(w, inputs[n])
        checks[n] = w.check(f"linear {w.name} {n}", expected)
        del expected
    loop_times: dict[int, list[float]] = {n: [] for n in sizes}
    runs: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
    for _ in range(repeats):
        for n in sizes:
            for _ in range(runs_per_round(n)):
                loop_times[n].append(floor._timed_loop(w, inputs[n])[0][0])
                runs[n].append(floor._timed_run(w, inputs[n], floor.RUNNERS[runner](), checks[n]))
    return [
        {
            "workload": w.name, "elements": n, "runner": runner, "shape": shape,
            "median_elements_per_s": n / statistics.median(t for t, _ in runs[n]),
            "median_elements_per_cpu_s": n / statistics.median(c for _, c in runs[n]),
            "times_s": [t for t, _ in runs[n]],
            # The plain loop at the same size: the machine's own cost curve (caches)
            "loop_median_elements_per_s": n / statistics.median(loop_times[n]),
        }
        for n in sizes
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", default="100000,1000000,10000000", help="comma-separated input sizes")
    parser.add_argument("--stream", default="1000000,10000000", help="comma-separated stream lengths")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workloads", default="wordcount,fixed,sessions,merged")
    parser.add_argument("--runner", default="direct-nonstrict", choices=sorted(floor.RUNNERS))
    parser.add_argument("--shape", default="scaled", choices=["scaled", "fixed"],
                        help="scaled: each input keeps its 1,000,000-element shape at every size (see above)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        n, expected = json.loads(args.child)
        print(json.dumps(_stream_child(n, (expected[0], expected[1]))))
        return 0
    sizes = [int(s) for s in args.elements.split(",") if s]
    lengths = [int(s) for s in args.stream.split(",") if s]
    results: dict[str, Any] = {"throughput": [], "stream": []}
    try:  # every run's output is checked before any figure is printed
        for name in args.workloads.split(",") if sizes else ():
            results["throughput"] += _throughput(floor.WORKLOADS[name], sizes, args.repeats, args.runner, args.shape)
        for n in lengths:
            results["stream"].append(_stream_in_own_process(n))
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for row in results["throughput"]:
        by_workload.setdefault(row["workload"], []).append(row)
    for name, rows in by_workload.items():
        for row in rows:
            print(f"{name:10s} {row['elements']:>11,} {row['runner']:17s} median {row['median_elements_per_s']:>11,.0f} elements/s"
                  f"  {row['median_elements_per_cpu_s']:>11,.0f} per CPU-s   plain loop {row['loop_median_elements_per_s']:>11,.0f}"
                  f" ({row['median_elements_per_s'] / row['loop_median_elements_per_s']:.2f}x)")
        print(f"{name:10s} spread over sizes: {spread([r['median_elements_per_s'] for r in rows]):.0%} (wall), "
              f"{spread([r['median_elements_per_cpu_s'] for r in rows]):.0%} (CPU); the plain loop's own: "
              f"{spread([r['loop_median_elements_per_s'] for r in rows]):.0%}; the runner's rate over the loop's: "
              f"{spread([r['median_elements_per_s'] / r['loop_median_elements_per_s'] for r in rows]):.0%}")
    for row in results["stream"]:
        print(f"stream     {row['events']:>11,} events  {row['events_per_s']:>11,.0f} events/s  peak RSS {row['peak_rss_mib']:,.0f} MiB")
    if len(results["stream"]) > 1:
        peaks = [r["peak_rss_mib"] for r in results["stream"]]
        growth = peaks[-1] / peaks[0] - 1.0
        results["rss_growth"] = growth
        print(f"stream     peak RSS growth from {results['stream'][0]['events']:,} to {results['stream'][-1]['events']:,} events: {growth:+.0%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
