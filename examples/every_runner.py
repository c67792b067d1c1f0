"""One portable pipeline on every runner, with the results shown equal.

A windowed word count over timestamped lines (fixed 60 s windows, counts
per word and window) runs unchanged on the direct, Ray and micro-batch
runners; each runner's output is gathered through the filesystem (Ray
workers are other processes) and compared.

Run: ``python examples/every_runner.py [--runners direct,ray,microbatch]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import tidal as td
from tidal import window
from tidal.benchmarks.collect import CollectToFolder, read_collected
from tidal.runners import registered_runners

LINES = [
    (5, "the tide rises the tide falls"),
    (42, "the twilight darkens"),
    (61, "the sea in the darkness calls"),
    (95, "the little waves with their soft white hands"),
    (130, "efface the footprints in the sands"),
]


def windowed_counts(p: td.Pipeline, folder: str) -> None:
    """Counts of each word per minute of event time, written to ``folder``."""

    def format_count(kv: tuple[str, int], w: window.IntervalWindow = td.DoFn.WindowParam) -> str:
        return f"[{int(w.start)}s, {int(w.end)}s) {kv[0]}: {kv[1]}"

    (
        p
        | "Lines" >> td.Create([window.TimestampedValue(text, t) for t, text in LINES])
        | "Words" >> td.FlatMap(str.split)
        | "Minutes" >> td.WindowInto(window.FixedWindows(60))
        | "PairWithOne" >> td.Map(lambda w: (w, 1))
        | "Count" >> td.CombinePerKey(sum)
        | "Format" >> td.Map(format_count)
        | "Collect" >> td.ParDo(CollectToFolder(folder))
    )


def _by_window(line: str) -> tuple[int, str]:
    return int(line[1 : line.index("s")]), line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runners", default=",".join(registered_runners()))
    args = parser.parse_args(argv)
    results: dict[str, list[str]] = {}
    for runner in args.runners.split(","):
        folder = tempfile.mkdtemp(prefix=f"tidal-{runner}-")
        start = time.perf_counter()
        with td.Pipeline(runner=runner) as p:
            windowed_counts(p, folder)
        results[runner] = sorted((r.value for r in read_collected(folder)), key=_by_window)
        print(f"{runner:>10}: {len(results[runner])} counts in {time.perf_counter() - start:.2f} s")
    first = next(iter(results.values()))
    for line in first:
        print("   ", line)
    same = all(r == first for r in results.values())
    print(f"every runner produced the same result: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
