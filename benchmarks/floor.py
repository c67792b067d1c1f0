"""Per-element and per-window cost against the floor: a plain Python loop doing the same work.

Four workloads over ``--elements`` elements (default 1,000,000) and 10,000 keys:

* ``wordcount``: ``Map(lambda kv: (kv[1], 1)) | CombinePerKey(sum)`` over
  ``(index, word)`` pairs (the input of :mod:`tidal.benchmarks.direct_wordcount`);
* ``fixed``: element ``i`` is key ``i % 10,000`` at event time ``i / 1000`` s,
  ``WindowInto(FixedWindows(60)) | CombinePerKey(sum)`` (each key has 60 elements
  per window, about 170,000 windows in all);
* ``sessions``: element ``i`` is key ``i % 10,000`` at event time ``i / 100`` s,
  ``WindowInto(Sessions(30)) | GroupByKey() | Map(count)``: a key's elements lie
  100 s apart, so every element is its own session and its own pane;
* ``merged``: the sessions workload of :mod:`tidal.benchmarks.direct_windowed`
  (random keys, event times spread over 1,000 s, so sessions merge).

Each runs on the direct runner (strict, its default, and ``strict=False``) and on
the micro-batch runner's per-element path, ``--repeats`` times; the plain loop
computes the same result from the same input and is timed the same way, with the
cyclic collector off (as the engine fires its panes; with it on, the collector's
full passes over a loop's accumulating outputs made the sessions loop 4x slower, so
the floor would not be the fastest loop). Every
run's output is checked, outside the timed region, against the plain loop's
result: the word count element by element, the windowed workloads by a
:class:`Digest` (the number of outputs and an order-free sum of the hashes of
each ``(output, window)``). A difference stops the benchmark before it prints
a figure.

``spark-rdd`` runs the same four workloads as Apache Spark 4.3 RDD jobs with
Python lambdas on ``local[2]`` (Spark's own parallelism, two cores, where tidal's
runners use one): ``parallelize`` of the same input, ``reduceByKey(add)`` for the
word count and the fixed windows (keyed by key and window start),
``groupByKey()`` and the plain loop's cut into sessions for the other two. A
Spark session is started, and warmed up by one small job, for each workload's
Spark runs, outside the timing, and stopped after them (an idle JVM beside the
other runners would weigh on their figures); each timed run goes from ``parallelize`` to the result
collected to the driver, and is checked outside it (the word count element by
element, the windowed workloads by :func:`digest_of` of the collected
``(output, (start µs, end µs))`` pairs). pyspark lives in its own virtualenv
(``make bench-peers``), so run it with ``.venv-spark/bin/python``.

Run: ``python -m tidal.benchmarks.floor [--elements 100000,1000000] [--repeats 3]
[--runners direct,direct-nonstrict,microbatch,spark-rdd] [--workloads ...] [--json PATH]``.
Several sizes show whether the cost grows linearly. It prints, per workload and
size, the median elements/s of each runner and its ratio to the plain loop, by the
wall clock and per CPU-second of this process (on a shared machine the second
counts what the run did, not what other processes took from it). For
``spark-rdd`` this process is Spark's driver: its CPU-seconds leave out the work
of Spark's JVM and Python workers, so only its wall-clock figure compares with
the others.
"""

from __future__ import annotations

import argparse
import gc
import json
import operator
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Iterable

import tidal as td
from tidal import window
from tidal.benchmarks.direct_wordcount import make_data as make_words
from tidal.benchmarks.direct_windowed import make_events
from tidal.benchmarks.verify import BenchmarkMismatch, ExpectedOutput
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner

__all__ = ["Digest", "digest_of", "WORKLOADS", "SPARK_JOBS", "SparkMissing", "require_pyspark", "start_spark", "main"]

KEYS = 10_000
_MASK = (1 << 64) - 1


class Digest(td.DoFn):
    """Counts the elements that reach it and sums ``hash((element, window))`` modulo 2**64.

    Equal multisets of (element, window) give equal digests whatever the order;
    each worker writes its digest to ``folder`` when it is torn down. (Hashes of
    ints, tuples and interval windows are the same in every process.)
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.n = 0
        self.total = 0

    def process(self, element: Any, w: Any = td.DoFn.WindowParam) -> Iterable[Any]:
        self.n += 1
        self.total += hash((element, w))
        return ()

    def teardown(self) -> None:
        if self.n:
            path = os.path.join(self.folder, f"digest-{uuid.uuid4().hex}.pkl")
            with open(path + ".tmp", "wb") as f:
                pickle.dump((self.n, self.total & _MASK), f)
            os.replace(path + ".tmp", path)
            self.n, self.total = 0, 0


def digest_of(pairs: Iterable[tuple[Any, Any]]) -> tuple[int, int]:
    """The (count, digest) a :class:`Digest` finds for these (element, window) pairs.

    >>> digest_of([((1, 2), window.IntervalWindow(0, 60))]) == digest_of([((1, 2), (0, 60_000_000))])
    True
    """
    n = total = 0
    for pair in pairs:
        n += 1
        total += hash(pair)
    return n, total & _MASK


class DigestCheck:
    """What a windowed workload must emit, as a digest, and a fresh Digest sink per run."""

    def __init__(self, benchmark: str, expected: tuple[int, int]) -> None:
        self.benchmark = benchmark
        self.expected = expected
        self.folder = ""

    def sink(self) -> td.ParDo:
        self.folder = tempfile.mkdtemp(prefix="tidal-bench-digest-")
        return td.ParDo(Digest(self.folder))

    def verify(self) -> None:
        try:
            n, total = 0, 0
            for name in os.listdir(self.folder):
                if name.startswith("digest-") and name.endswith(".pkl"):
                    with open(os.path.join(self.folder, name), "rb") as f:
                        got = pickle.load(f)
                    n, total = n + got[0], (total + got[1]) & _MASK
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
        if (n, total) != self.expected:
            raise BenchmarkMismatch(
                f"{self.benchmark}: {n} output(s) with digest {total:#x}, expected {self.expected[0]} with {self.expected[1]:#x}"
            )


# -- the workloads: input, pipeline, plain loop ---------------------------------------------------

def _word(kv: tuple[int, str]) -> tuple[str, int]:
    return (kv[1], 1)


def _stamp_fixed(i: int) -> Any:
    return window.TimestampedValue((i % KEYS, 1), i / 1000)


def _stamp_sessions(i: int) -> Any:
    return window.TimestampedValue((i % KEYS, 1), i / 100)


def _stamp_event(e: tuple[int, float]) -> Any:
    return window.TimestampedValue((e[0], 1), e[1])


def _count(kv: Any) -> tuple[Any, int]:
    return (kv[0], len(kv[1]))


# The loops build each output's window as the engine does, without a call per window.
_new = tuple.__new__
_IW = window.IntervalWindow


def _fixed_loop(pairs: Iterable[tuple[Any, int]], size_us: int = 60_000_000) -> list[Any]:
    """Per-(key, window) sums of (key, event time in µs) pairs, each counting 1."""
    sums: dict[tuple[Any, int], int] = {}
    get = sums.get
    for key, t in pairs:
        kw = (key, t - t % size_us)
        sums[kw] = get(kw, 0) + 1
    return [((key, total), _new(_IW, (start, start + size_us))) for (key, start), total in sums.items()]


def _sessions_loop(pairs: Iterable[tuple[Any, int]], gap_us: int = 30_000_000) -> list[Any]:
    """Per key, (key, count) for each session of (key, event time in µs) pairs."""
    per_key: dict[Any, list[int]] = {}
    get = per_key.get
    for key, t in pairs:
        stamps = get(key)
        if stamps is None:
            per_key[key] = [t]
        else:
            stamps.append(t)
    out: list[Any] = []
    append = out.append
    for key, stamps in per_key.items():
        stamps.sort()
        start, end, n = stamps[0], stamps[0] + gap_us, 0
        for t in stamps:
            if t >= end:  # [t, t + gap) does not meet the session so far
                append(((key, n), _new(_IW, (start, end))))
                start, n = t, 0
            n += 1
            if t + gap_us > end:
                end = t + gap_us
        append(((key, n), _new(_IW, (start, end))))
    return out


class Workload:
    def __init__(
        self,
        name: str,
        make: Callable[[int], Any],
        build: Callable[[td.Pipeline, Any], Any],
        loop: Callable[[Any], Any],
        check: Callable[[str, Any], Any],
    ) -> None:
        self.name, self.make, self.build, self.loop, self.check = name, make, build, loop, check


def _wordcount_loop(data: list[tuple[int, str]]) -> list[Any]:
    counts: dict[str, int] = {}
    get = counts.get
    for _, w in data:
        counts[w] = get(w, 0) + 1
    return list(counts.items())


WORKLOADS: dict[str, Workload] = {
    "wordcount": Workload(
        "wordcount",
        make_words,
        lambda p, data: p | td.Create(data) | td.Map(_word) | td.CombinePerKey(sum),
        _wordcount_loop,
        lambda name, result: ExpectedOutput(name, result),
    ),
    "fixed": Workload(
        "fixed",
        lambda n: range(n),
        lambda p, data: p | td.Create(data) | td.Map(_stamp_fixed) | td.WindowInto(window.FixedWindows(60)) | td.CombinePerKey(sum),
        lambda data: _fixed_loop((i % KEYS, round(i / 1000 * 1_000_000)) for i in data),
        lambda name, result: DigestCheck(name, digest_of(result)),
    ),
    "sessions": Workload(
        "sessions",
        lambda n: range(n),
        lambda p, data: p | td.Create(data) | td.Map(_stamp_sessions) | td.WindowInto(window.Sessions(30)) | td.GroupByKey() | td.Map(_count),
        lambda data: _sessions_loop((i % KEYS, round(i / 100 * 1_000_000)) for i in data),
        lambda name, result: DigestCheck(name, digest_of(result)),
    ),
    "merged": Workload(
        "merged",
        make_events,
        lambda p, data: p | td.Create(data) | td.Map(_stamp_event) | td.WindowInto(window.Sessions(30)) | td.GroupByKey() | td.Map(_count),
        lambda data: _sessions_loop((k, round(ts * 1_000_000)) for k, ts in data),
        lambda name, result: DigestCheck(name, digest_of(result)),
    ),
}

RUNNERS: dict[str, Callable[[], Any]] = {
    "direct": DirectRunner,
    "direct-nonstrict": lambda: DirectRunner(strict=False),
    "microbatch": MicroBatchRunner,
}


def _timed_loop(w: Workload, data: Any) -> tuple[tuple[float, float], Any]:
    """The plain loop's seconds (wall clock, CPU) and its result, with the cyclic collector off.

    A floor is the fastest plain loop: with the collector on, a loop that keeps a
    million outputs has them traversed by the collector's full passes as they
    accumulate (the sessions loop ran 4x slower), while the engine fires its panes
    with the collector off.
    """
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        start, cpu = time.perf_counter(), time.process_time()
        result = w.loop(data)
        return (time.perf_counter() - start, time.process_time() - cpu), result
    finally:
        if collecting:
            gc.enable()


def _timed_run(w: Workload, data: Any, runner: Any, check: Any) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run (this process's CPU time: on a shared machine it
    counts what the run did, not what other processes took from it)."""
    sink = check.sink()
    gc.collect()  # the previous run's garbage is not this run's cost
    start, cpu = time.perf_counter(), time.process_time()
    p = td.Pipeline(runner=runner)
    _ = w.build(p, data) | sink
    p.run().wait_until_finish()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    check.verify()
    return seconds, cpu_seconds


# -- the workloads as Apache Spark RDD jobs (spark-rdd) ---------------------------------------------

SPARK_RUNNER = "spark-rdd"
#: Spark's own parallelism: ``local[2]``, both cores of the benchmark machine.
SPARK_PARALLELISM = 2
_FIXED_US = 60_000_000
_GAP_US = 30_000_000


class SparkMissing(RuntimeError):
    """``spark-rdd`` was asked for in a Python without pyspark."""


def _fixed_cell(i: int) -> tuple[tuple[int, int], int]:
    """Element ``i`` of the fixed workload as ((key, start of its 60 s window in µs), 1).

    >>> _fixed_cell(60_001)
    ((1, 60000000), 1)
    """
    t = round(i / 1000 * 1_000_000)
    return (i % KEYS, t - t % _FIXED_US), 1


def _sessions_of(kv: tuple[Any, Iterable[int]]) -> list[tuple[tuple[Any, int], tuple[int, int]]]:
    """One key's sessions of 30 s gaps from its event times in µs, cut as the plain loop cuts them:
    ``((key, count), (start, end))`` each.

    >>> _sessions_of((7, [40_000_000, 0, 10_000_000]))
    [((7, 2), (0, 40000000)), ((7, 1), (40000000, 70000000))]
    """
    key, times = kv
    stamps = sorted(times)
    out: list[tuple[tuple[Any, int], tuple[int, int]]] = []
    start, end, n = stamps[0], stamps[0] + _GAP_US, 0
    for t in stamps:
        if t >= end:
            out.append(((key, n), (start, end)))
            start, n = t, 0
        n += 1
        if t + _GAP_US > end:
            end = t + _GAP_US
    out.append(((key, n), (start, end)))
    return out


def _wordcount_rdd(sc: Any, data: list[tuple[int, str]]) -> list[Any]:
    collected: list[Any] = sc.parallelize(data, SPARK_PARALLELISM).map(lambda kv: (kv[1], 1)).reduceByKey(operator.add).collect()
    return collected


def _fixed_rdd(sc: Any, data: range) -> list[Any]:
    collected: list[Any] = (
        sc.parallelize(data, SPARK_PARALLELISM)
        .map(_fixed_cell)
        .reduceByKey(operator.add)
        .map(lambda kv: ((kv[0][0], kv[1]), (kv[0][1], kv[0][1] + _FIXED_US)))
        .collect()
    )
    return collected


def _sessions_rdd(sc: Any, data: range) -> list[Any]:
    collected: list[Any] = (
        sc.parallelize(data, SPARK_PARALLELISM)
        .map(lambda i: (i % KEYS, round(i / 100 * 1_000_000)))
        .groupByKey()
        .flatMap(_sessions_of)
        .collect()
    )
    return collected


def _merged_rdd(sc: Any, data: list[tuple[int, float]]) -> list[Any]:
    collected: list[Any] = (
        sc.parallelize(data, SPARK_PARALLELISM)
        .map(lambda e: (e[0], round(e[1] * 1_000_000)))
        .groupByKey()
        .flatMap(_sessions_of)
        .collect()
    )
    return collected


#: workload -> its Spark job: from ``parallelize`` of the workload's input to the result on the driver.
SPARK_JOBS: dict[str, Callable[[Any, Any], list[Any]]] = {
    "wordcount": _wordcount_rdd,
    "fixed": _fixed_rdd,
    "sessions": _sessions_rdd,
    "merged": _merged_rdd,
}


def require_pyspark() -> None:
    """Raise :class:`SparkMissing`, naming where pyspark is installed, when this Python lacks it."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkMissing(
            f"{SPARK_RUNNER} needs pyspark, which {sys.executable} lacks: "
            "install it with `make bench-peers` and run with .venv-spark/bin/python"
        ) from None


def start_spark() -> Any:
    """A local Spark session of :data:`SPARK_PARALLELISM` cores, warmed up by one small job.

    Raises :class:`SparkMissing`, naming where pyspark is installed, when this Python lacks it.
    """
    require_pyspark()
    from tidal.benchmarks.peers.spark import SparkSession

    session = SparkSession(SPARK_PARALLELISM)
    try:
        # Spark's Python workers start here, and load _sessions_of, before any timed run.
        session.sc.parallelize(range(1000), SPARK_PARALLELISM).map(lambda i: (i % 10, i)).groupByKey().flatMap(_sessions_of).collect()
    except BaseException:
        session.close()
        raise
    return session


def _check_spark(check: Any, collected: list[Any]) -> None:
    """Compare what a Spark job collected with the workload's check; raise BenchmarkMismatch if they differ."""
    if isinstance(check, DigestCheck):
        n, total = digest_of(collected)
        if (n, total) != check.expected:
            raise BenchmarkMismatch(
                f"{check.benchmark} {SPARK_RUNNER}: {n} output(s) with digest {total:#x}, "
                f"expected {check.expected[0]} with {check.expected[1]:#x}"
            )
        return
    problem = check.compare(collected, check.expected)
    if problem is not None:
        raise BenchmarkMismatch(f"{check.benchmark} {SPARK_RUNNER}: the output differs from the expected result: {problem}")


def _timed_spark(w: Workload, data: Any, sc: Any, check: Any) -> tuple[float, float]:
    """Wall-clock and driver CPU seconds of one Spark job, from ``parallelize`` to the collected
    result; then (untimed) the result is checked."""
    job = SPARK_JOBS[w.name]
    gc.collect()  # the previous run's garbage is not this run's cost
    start, cpu = time.perf_counter(), time.process_time()
    collected = job(sc, data)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    _check_spark(check, collected)
    return seconds, cpu_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", default="1000000", help="comma-separated input sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="wordcount,fixed,sessions,merged")
    parser.add_argument("--runners", default="direct,direct-nonstrict,microbatch")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.elements.split(",")]
    runners = args.runners.split(",")
    unknown = [r for r in runners if r not in RUNNERS and r != SPARK_RUNNER]
    if unknown:
        parser.error(f"unknown runner(s) {', '.join(unknown)}: choose from {', '.join([*RUNNERS, SPARK_RUNNER])}")
    try:
        if SPARK_RUNNER in runners:
            require_pyspark()
    except SparkMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    measured: list[tuple[str, int, str, list[tuple[float, float]]]] = []
    try:  # every run's output is checked before any figure is printed
        for name in args.workloads.split(","):
            w = WORKLOADS[name]
            for n in sizes:
                data = w.make(n)
                loop_times, expected = [], None
                for _ in range(args.repeats):
                    seconds, result = _timed_loop(w, data)
                    loop_times.append(seconds)
                    expected = result if expected is None else expected
                    del result
                # Only the check's digest stays: a million retained outputs per repeat (a
                # gigabyte for one session per element) slowed whichever runner came next.
                check = w.check(f"floor {name} {n}", expected)
                del expected
                measured.append((name, n, "plain loop", loop_times))
                for r in runners:
                    if r == SPARK_RUNNER:
                        # Started for its own runs and stopped after them: an idle JVM and its
                        # Python workers beside the other runners would weigh on their figures.
                        spark = start_spark()
                        try:
                            runs = [_timed_spark(w, data, spark.sc, check) for _ in range(args.repeats)]
                        finally:
                            spark.close()
                    else:
                        runs = [_timed_run(w, data, RUNNERS[r](), check) for _ in range(args.repeats)]
                    measured.append((name, n, r, runs))
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results: list[dict[str, Any]] = []
    floor: dict[tuple[str, int], tuple[float, float]] = {}
    for name, n, runner, pairs in measured:
        times, cpus = [t for t, _ in pairs], [c for _, c in pairs]
        rate, cpu_rate = n / statistics.median(times), n / statistics.median(cpus)
        if runner == "plain loop":
            floor[(name, n)] = (rate, cpu_rate)
        ratio, cpu_ratio = rate / floor[(name, n)][0], cpu_rate / floor[(name, n)][1]
        results.append({
            "workload": name, "elements": n, "runner": runner, "times_s": times, "cpu_s": cpus,
            "median_elements_per_s": rate, "of_floor": ratio, "median_elements_per_cpu_s": cpu_rate, "of_floor_cpu": cpu_ratio,
        })
        print(f"{name:10s} {n:>11,} {runner:17s} median {rate:>11,.0f} elements/s ({ratio:4.2f}x floor)  "
              f"{cpu_rate:>11,.0f} per CPU-s ({cpu_ratio:4.2f}x)   runs: {', '.join(f'{t:.2f}s' for t in times)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
