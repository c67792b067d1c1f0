"""State benchmark: keyed state larger than memory, the disk backend's speed, and incremental checkpoints.

Three measurements, each checked before anything is printed:

**Peak memory.** A per-key counter (a stateful DoFn), a sessions job
(``Sessions(5)`` then a sum per key) and a count-window job
(``CountWindows(2)`` then a sum per key: each key's window closes at its
second event, and the key's window index stays in state) over ``keys``
distinct keys, two events per key, on the direct runner, each run in a
process of its own (``ru_maxrss`` of that process), on the memory and on the
disk backend, with each run's events per second. Every key's count must come
out as 2 (counted in the job, by a metric), else the row fails.

**Throughput.** The counter over ``throughput_keys`` keys on both backends
in one process, one after the other: events per second, and the disk
backend's rate as a fraction of the memory backend's.

**Incremental checkpoints.** The counter on the micro-batch runner with a
commit log over ``checkpoint_keys`` keys: the checkpoint after every key came
once (a full one), and the one after ``changed_fraction`` of the keys came
again (incremental): the bytes of each and the time its commit took.

Targets (from the issue that asked for the disk backend): the disk backend's
peak RSS under 1.5 GiB at 10,000,000 keys; throughput at least 0.3 of the
memory backend's at 1,000,000 keys; the incremental checkpoint at most 5 %
of the full one, in bytes and in time. The report says for each whether it
was met; it does not pretend when it was not.

Run: ``python -m tidal.benchmarks.state_bench --keys 10000000 --throughput-keys 1000000``.

>>> report = run_state_bench(StateBenchConfig(keys=2000, throughput_keys=2000, checkpoint_keys=2000, quiet=True))
>>> sorted(r["job"] + "/" + r["backend"] for r in report["memory"])
['counter/disk', 'counter/memory', 'countwindows/disk', 'countwindows/memory', 'sessions/disk', 'sessions/memory']
>>> all(r["correct"] for r in report["memory"]), report["checkpoint"]["delta_needs"]
(True, True)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Iterable, Iterator

import attrs

import tidal as td
from tidal import window

__all__ = ["StateBenchConfig", "run_state_bench", "main"]

GIB = 1 << 30
#: The peak-memory jobs (see the module's docstring).
JOBS = ("counter", "sessions", "countwindows")


@attrs.frozen
class StateBenchConfig:
    """What the state benchmark measures."""

    keys: int = 10_000_000
    throughput_keys: int = 1_000_000
    checkpoint_keys: int = 1_000_000
    changed_fraction: float = 0.01
    #: Entries of each keyed step the disk backend keeps in memory.
    cache_entries: int = 100_000
    #: Run the peak-memory jobs on the memory backend too (it needs the memory the disk backend saves).
    memory_backend_rss: bool = True
    quiet: bool = False


# -- the jobs -------------------------------------------------------------------------------
class KeyEvents(td.BoundedSource):
    """Two events per key: ``(key, 1)`` at ``i`` seconds and at ``i + 1`` seconds (one session each)."""

    def __init__(self, keys: int, start: int = 0, stop: int | None = None) -> None:
        self.keys = keys
        self.start = start
        self.stop = keys if stop is None else stop

    def read(self) -> Iterable[Any]:
        tv = window.TimestampedValue
        for i in range(self.start, self.stop):
            key = f"key-{i:09d}"
            yield tv((key, 1), i)
            yield tv((key, 1), i + 1)

    def split(self, desired_count: int) -> list[td.BoundedSource]:
        n = max(1, min(desired_count, self.stop - self.start))
        bounds = [self.start + (self.stop - self.start) * j // n for j in range(n + 1)]
        return [KeyEvents(self.keys, a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class CountPerKey(td.DoFn):
    """A per-key counter in keyed state; counts each key that reached 2 (every key, when all is well)."""

    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        n = (count.read() or 0) + kv[1]
        count.write(n)
        if n == 2:
            td.Metrics.counter("state_bench", "keys_done").inc()
        elif n > 2:
            td.Metrics.counter("state_bench", "wrong").inc()
        return ()


class CheckSession(td.DoFn):
    def process(self, kv: Any) -> Iterable[Any]:
        td.Metrics.counter("state_bench", "keys_done" if kv[1] == 2 else "wrong").inc()
        return ()


def _build(p: td.Pipeline, job: str, keys: int) -> None:
    events = p | "Events" >> td.Read(KeyEvents(keys))
    if job == "counter":
        _ = events | "Count" >> td.ParDo(CountPerKey())
    elif job == "countwindows":
        _ = (
            events
            | "CountWindows" >> td.WindowInto(window.CountWindows(2))
            | "SumWindow" >> td.CombinePerKey(sum)
            | "Check" >> td.ParDo(CheckSession())
        )
    else:
        _ = (
            events
            | "Sessions" >> td.WindowInto(window.Sessions(5))
            | "CountSession" >> td.CombinePerKey(sum)
            | "Check" >> td.ParDo(CheckSession())
        )


def _counters(result: Any) -> dict[str, int]:
    found = result.metrics().query(td.MetricsFilter().with_namespace("state_bench"))["counters"]
    out: dict[str, int] = {}
    for c in found:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    return out


def _run_job(job: str, keys: int, backend: str, cache_entries: int) -> dict[str, Any]:
    """One job in this process: its time, and whether every key counted 2."""
    state_dir = tempfile.mkdtemp(prefix="tidal-state-bench-")
    try:
        options = {"state_backend": backend, "state_dir": state_dir, "state_cache_entries": cache_entries}
        p = td.Pipeline(runner="direct", options=options)
        _build(p, job, keys)
        start = time.perf_counter()
        result = p.run()
        result.wait_until_finish()
        seconds = time.perf_counter() - start
        counts = _counters(result)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    return {
        "job": job,
        "backend": backend,
        "keys": keys,
        "events": 2 * keys,
        "seconds": seconds,
        "events_per_s": 2 * keys / seconds if seconds > 0 else 0.0,
        "correct": counts.get("keys_done", 0) == keys and counts.get("wrong", 0) == 0,
    }


def _child(spec: dict[str, Any]) -> None:
    row = _run_job(spec["job"], spec["keys"], spec["backend"], spec["cache_entries"])
    row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(row))


def _in_own_process(job: str, keys: int, backend: str, cache_entries: int) -> dict[str, Any]:
    spec = {"job": job, "keys": keys, "backend": backend, "cache_entries": cache_entries}
    proc = subprocess.run(
        [sys.executable, "-m", "tidal.benchmarks.state_bench", "--child", json.dumps(spec)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return dict(spec, correct=False, error=proc.stderr[-2000:], peak_rss_bytes=None)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- incremental checkpoints -------------------------------------------------------------------
#: The events that open each round of :func:`_two_rounds`, by run.
_ROUNDS: dict[str, list[threading.Event]] = {}


def _two_rounds(run: str, keys: int, changed: int) -> Iterator[Any]:
    rounds = _ROUNDS[run]
    for i in range(keys):
        yield (f"key-{i:09d}", 1)
    rounds[0].wait(600)
    for i in range(changed):
        yield (f"key-{i:09d}", 1)
    rounds[1].wait(600)


def _measure_checkpoints(keys: int, changed: int, cache_entries: int) -> dict[str, Any]:
    """The full checkpoint after every key came once and the incremental one after ``changed`` came again."""
    from tidal.runners.microbatch import MicroBatchRunner
    from tidal.runners.microbatch.executor import MicroBatchExecutor

    # By reference to the importable module (not __main__), so the source pickles without the events.
    from tidal.benchmarks import state_bench as module

    folder = tempfile.mkdtemp(prefix="tidal-state-bench-ckpt-")
    run = os.path.basename(folder)
    rounds = module._ROUNDS[run] = [threading.Event(), threading.Event()]
    commit_seconds: dict[int, float] = {}
    original = MicroBatchExecutor._commit

    def timed(self: MicroBatchExecutor, index: int, meta: dict[str, Any]) -> None:
        start = time.perf_counter()
        original(self, index, meta)
        commit_seconds[index] = time.perf_counter() - start

    log = os.path.join(folder, "log")

    def committed(records: int) -> tuple[int, dict[str, Any]]:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            for name in sorted(os.listdir(os.path.join(log, "commits")) if os.path.isdir(os.path.join(log, "commits")) else []):
                path = os.path.join(log, "commits", name, "MANIFEST.json")
                if os.path.exists(path):
                    with open(path) as f:
                        manifest = json.load(f)
                    if manifest["meta"].get("records") == records:
                        index = int(name.split("-")[1])
                        while index not in commit_seconds and time.monotonic() < deadline:
                            time.sleep(0.01)
                        return index, manifest["parts"]["state.pkl"]
            time.sleep(0.05)
        raise RuntimeError(f"no batch of {records} records committed")

    MicroBatchExecutor._commit = timed  # type: ignore[method-assign]
    try:
        options = {"state_backend": "disk", "state_dir": os.path.join(folder, "state"), "state_cache_entries": cache_entries}
        # Batches close at max_batch_size (the first round), or at the interval (the second round).
        runner = MicroBatchRunner(commit_log=log, max_batch_size=keys, batch_interval=max(2.0, keys / 50_000))
        p = td.Pipeline(runner=runner, options=options)
        _ = p | td.Read(td.GeneratorSource(functools.partial(module._two_rounds, run, keys, changed))) | td.ParDo(CountPerKey())
        result = p.run()
        try:
            full_index, full = committed(keys)
            rounds[0].set()
            delta_index, delta = committed(changed)
        finally:
            rounds[0].set()
            rounds[1].set()
            result.wait_until_finish(600)
    finally:
        MicroBatchExecutor._commit = original  # type: ignore[method-assign]
        module._ROUNDS.pop(run, None)
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "keys": keys,
        "changed": changed,
        "full_bytes": full["size"],
        "delta_bytes": delta["size"],
        "full_seconds": commit_seconds[full_index],
        "delta_seconds": commit_seconds[delta_index],
        "bytes_ratio": delta["size"] / full["size"],
        "seconds_ratio": commit_seconds[delta_index] / commit_seconds[full_index],
        "delta_needs": bool(delta.get("needs")) and not full.get("needs"),
    }


# -- the report ---------------------------------------------------------------------------------
def run_state_bench(config: StateBenchConfig) -> dict[str, Any]:
    """Run the three measurements; raise when a job's result is wrong (nothing is reported then)."""
    memory_rows = []
    for job in JOBS:
        for backend in ("memory", "disk"):
            if backend == "memory" and not config.memory_backend_rss:
                continue
            if not config.quiet:
                print(f"state_bench: {job} on the {backend} backend, {config.keys:,} keys", file=sys.stderr)
            if config.quiet:
                row = _run_job(job, config.keys, backend, config.cache_entries)
                row["peak_rss_bytes"] = None
            else:
                row = _in_own_process(job, config.keys, backend, config.cache_entries)
            memory_rows.append(row)
    throughput = [_run_job("counter", config.throughput_keys, backend, config.cache_entries) for backend in ("memory", "disk")]
    changed = max(1, int(config.checkpoint_keys * config.changed_fraction))
    checkpoint = _measure_checkpoints(config.checkpoint_keys, changed, config.cache_entries)
    wrong = [r for r in memory_rows + throughput if not r["correct"]]
    if wrong:
        raise RuntimeError(f"state_bench: wrong results, nothing reported: {wrong}")
    if not checkpoint["delta_needs"]:
        raise RuntimeError(f"state_bench: the second checkpoint was not incremental: {checkpoint}")
    ratio = throughput[1]["events_per_s"] / throughput[0]["events_per_s"]
    disk_rss = [r["peak_rss_bytes"] for r in memory_rows if r["backend"] == "disk" and r["peak_rss_bytes"] is not None]
    return {
        "config": attrs.asdict(config),
        "memory": memory_rows,
        "throughput": throughput,
        "throughput_ratio": ratio,
        "checkpoint": checkpoint,
        "targets": {
            "disk_peak_rss_under_1.5GiB": bool(disk_rss) and max(disk_rss) < 1.5 * GIB,
            "at_10M_keys": config.keys >= 10_000_000,
            "disk_throughput_at_least_0.3x": ratio >= 0.3,
            "at_1M_keys": config.throughput_keys >= 1_000_000,
            "checkpoint_bytes_at_most_5pct": checkpoint["bytes_ratio"] <= 0.05,
            "checkpoint_time_at_most_5pct": checkpoint["seconds_ratio"] <= 0.05,
        },
    }


def format_report(report: dict[str, Any]) -> str:
    lines = ["job           backend  keys         seconds   events/s    peak RSS"]
    for r in report["memory"]:
        rss = "-" if r.get("peak_rss_bytes") is None else f"{r['peak_rss_bytes'] / GIB:.2f} GiB"
        lines.append(f"{r['job']:<13} {r['backend']:<8} {r['keys']:<12,} {r['seconds']:<9.1f} {r['events_per_s']:<11,.0f} {rss}")
    m, d = report["throughput"]
    lines.append(
        f"throughput at {m['keys']:,} keys: memory {m['events_per_s']:,.0f}/s, disk {d['events_per_s']:,.0f}/s "
        f"({report['throughput_ratio']:.2f}x)"
    )
    c = report["checkpoint"]
    lines.append(
        f"checkpoints at {c['keys']:,} keys: full {c['full_bytes']:,} B in {c['full_seconds'] * 1000:.0f} ms; "
        f"after {c['changed']:,} changed {c['delta_bytes']:,} B in {c['delta_seconds'] * 1000:.0f} ms "
        f"({c['bytes_ratio']:.1%} of the bytes, {c['seconds_ratio']:.1%} of the time)"
    )
    lines.append("targets: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in report["targets"].items()))
    return "\n".join(lines)


_DEFAULTS = StateBenchConfig()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidal.benchmarks.state_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=_DEFAULTS.keys)
    parser.add_argument("--throughput-keys", type=int, default=_DEFAULTS.throughput_keys)
    parser.add_argument("--checkpoint-keys", type=int, default=_DEFAULTS.checkpoint_keys)
    parser.add_argument("--cache-entries", type=int, default=_DEFAULTS.cache_entries)
    parser.add_argument("--no-memory-backend-rss", action="store_true", help="skip the memory backend's peak-memory runs")
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(json.loads(args.child))
        return 0
    config = StateBenchConfig(
        keys=args.keys,
        throughput_keys=args.throughput_keys,
        checkpoint_keys=args.checkpoint_keys,
        cache_entries=args.cache_entries,
        memory_backend_rss=not args.no_memory_backend_rss,
    )
    try:
        report = run_state_bench(config)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
