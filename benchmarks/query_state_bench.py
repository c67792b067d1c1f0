"""Queryable state: what a query costs the caller, and what a stream of queries costs the job.

A stream of ``--elements`` (key, value) pairs over ``--keys`` keys (read from
a GeneratorSource as fast as it goes) runs through a stateful counter on each
runner twice: once alone, once while another thread queries the counter of a
random key back to back with ``result.query_state``. It prints, per runner,
the elements/s of both runs (the median of ``--repeats``) and the latency of
the queries (median and 99th percentile). Each query's answer is checked
outside the timed region: a key's counts never go back, and no count exceeds
what that key received; the job's output must hold every element once.

Run: ``python -m tidal.benchmarks.query_state_bench [--elements N] [--keys K] [--runners direct,microbatch,ray]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from typing import Any, Iterable, Iterator

import tidal as td
from tidal.benchmarks.verify import BenchmarkMismatch
from tidal.capability_matrix.sinks import RecordTo, read_records
from tidal.state import JobFinishedError


class _Stream:
    """(k<i % keys>, i) for i < n."""

    def __init__(self, n: int, keys: int) -> None:
        self.n = n
        self.keys = keys

    def __call__(self) -> Iterator[Any]:
        keys = self.keys
        for i in range(self.n):
            yield f"k{i % keys}", i


class _Count(td.DoFn):
    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield n


def _runner(name: str) -> Any:
    if name == "microbatch":
        from tidal.runners.microbatch.runner import MicroBatchRunner

        return MicroBatchRunner(batch_interval=0.2)
    return name


def run_once(runner: str, elements: int, keys: int, query: bool, out: str) -> tuple[float, list[float]]:
    """(elements/s, query latencies in seconds) of one run; checks the answers and the output."""
    p = td.Pipeline(runner=_runner(runner))
    counts = p | td.Read(td.GeneratorSource(_Stream(elements, keys))) | "Count" >> td.ParDo(_Count())
    _ = counts | td.Filter(lambda n: n == -(-elements // keys)) | td.ParDo(RecordTo(out, ("value",)))
    latencies: list[float] = []
    answers: list[tuple[str, Any]] = []
    started = time.perf_counter()
    result = p.run()
    done = threading.Event()

    def hammer() -> None:
        rng = random.Random(1)
        while not done.is_set():
            key = f"k{rng.randrange(keys)}"
            t = time.perf_counter()
            try:
                value = result.query_state("Count", "count", key)
            except JobFinishedError:
                return
            latencies.append(time.perf_counter() - t)
            answers.append((key, value))

    thread = threading.Thread(target=hammer, daemon=True) if query else None
    if thread is not None:
        thread.start()
    result.wait_until_finish()
    elapsed = time.perf_counter() - started
    done.set()
    if thread is not None:
        thread.join(30)
    last: dict[str, int] = {}
    for key, value in answers:
        n = value or 0
        if n < last.get(key, 0) or n > -(-elements // keys):
            raise BenchmarkMismatch(f"{runner}: query_state read {n} for {key} after {last.get(key, 0)}")
        last[key] = n
    finished = len(read_records(out))
    if finished != min(keys, elements):
        raise BenchmarkMismatch(f"{runner}: {finished} keys reached their final count, expected {min(keys, elements)}")
    return elements / elapsed, latencies


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--elements", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runners", default="direct,microbatch")
    args = parser.parse_args(argv)
    for runner in [r.strip() for r in args.runners.split(",") if r.strip()]:
        alone, queried, latencies = [], [], []
        for _ in range(args.repeats):
            rate, _lat = run_once(runner, args.elements, args.keys, False, tempfile.mkdtemp())
            alone.append(rate)
            rate, lat = run_once(runner, args.elements, args.keys, True, tempfile.mkdtemp())
            queried.append(rate)
            latencies.extend(lat)
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan")
        print(
            f"{runner}: {statistics.median(alone):,.0f} elements/s alone, {statistics.median(queried):,.0f} elements/s "
            f"while queried; {len(latencies)} queries, latency median {statistics.median(latencies) * 1e3:.2f} ms, "
            f"p99 {p99 * 1e3:.2f} ms" if latencies else f"{runner}: no query was answered"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
