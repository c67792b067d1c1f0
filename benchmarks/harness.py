"""The runner comparison harness: every workload on every runner, measured the same way.

For each workload × runner it reports:

* **throughput** — events / end-to-end seconds of a batch run (``Create`` of
  the input, the workload, a sink) at the largest input size;
* **fixed cost and per-event cost** — a least-squares line ``time = fixed +
  per_event × events`` through the batch runs at every size, so a runner's
  start-up (Ray actors) is told apart from its speed; ``1 / per_event`` is the
  steady-state rate;
* **latency** (streaming mode) — the same input replayed by a paced
  ``GeneratorSource`` at ``stream_rate`` events per wall-clock second, its
  watermark trailing by the input's out-of-orderness. The source records when
  each event arrived and the sink when each result reached it. A result that
  comes from one event (pass-through, map, filter, a join's output) waited
  for that event; a windowed result waited for every event up to its
  timestamp (the window's end). Latency = the sink's time − the arrival of the
  last of those events; p50 and p99 over all results. Processing-time panes
  (Q12) carry no event time, so they get no latency;
* **peak memory** — ``tracemalloc``'s peak of Python allocations during one
  extra batch run at the largest size, in this process. For Ray that is the
  driver only (the actors' memory is not counted), and the table says so;
* **same result** — every runner's output, canonicalised (sorted; Q12's panes
  summed per key), must be identical at every size and in streaming mode.

When ``apache_beam`` is importable, the workloads that have a Beam version
also run on Beam's DirectRunner at the largest size, shown as a ratio.

Run it as ``python -m tidal bench`` (see ``--help``) or ``python -m tidal.benchmarks.harness``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from bisect import bisect_right
from hashlib import sha256
from typing import Any, Callable, Sequence

import attrs

import tidal as td
from tidal.benchmarks.collect import Collected, CollectToFolder, read_collected
from tidal.benchmarks.nexmark.generator import PacedEvents
from tidal.benchmarks.workloads import DEFAULT_WORKLOADS, WORKLOADS, Workload
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.model.window import TimestampedValue
from tidal.runners.registry import registered_runners, resolve_runner

__all__ = ["BenchConfig", "run_harness", "fit_line", "percentile", "write_reports", "main"]


@attrs.frozen
class BenchConfig:
    """What to run and where to write it."""

    workloads: tuple[str, ...] = tuple(DEFAULT_WORKLOADS)
    runners: tuple[str, ...] | None = None  # None: every registered runner
    sizes: tuple[int, ...] = (1000, 3000, 10000)
    stream_events: int = 2000
    stream_rate: float = 2000.0
    out_of_orderness: float = 0.05
    out: str = "bench-out"
    quiet: bool = False
    beam: bool = True
    stream_timeout: float = 120.0


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares ``(intercept, slope)`` of ``y = a + b·x``; None with fewer than two distinct x.

    >>> fit_line([(1, 3.0), (2, 5.0), (3, 7.0)])
    (1.0, 2.0)
    """
    xs = [float(x) for x, _ in points]
    if len(set(xs)) < 2:
        return None
    mx = statistics.fmean(xs)
    my = statistics.fmean(float(y) for _, y in points)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (float(y) - my) for x, y in points)
    slope = sxy / sxx
    return (my - slope * mx, slope)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation; None for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _digest(canonical: list[str]) -> str:
    h = sha256()
    for line in canonical:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


# -- running one pipeline -------------------------------------------------------------
class _WriteArrivals:
    """Hands the paced source's arrival times to the harness through a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, arrivals: list[tuple[int, float]]) -> None:
        with open(self.path + ".tmp", "wb") as f:
            pickle.dump(arrivals, f)
        os.replace(self.path + ".tmp", self.path)


def _run_batch(workload: Workload, runner: str, elements: list[TimestampedValue], trace_memory: bool = False) -> tuple[float, list[Collected], int | None]:
    """(seconds, outputs, peak traced bytes) of one batch run."""
    folder = tempfile.mkdtemp(prefix="tidal-bench-")
    try:
        gc.collect()
        if trace_memory:
            tracemalloc.start()
        start = time.perf_counter()
        p = td.Pipeline(runner=resolve_runner(runner))
        workload.build(p | "Input" >> td.Create(elements)) | "Collect" >> td.ParDo(CollectToFolder(folder))
        p.run().wait_until_finish()
        seconds = time.perf_counter() - start
        peak = None
        if trace_memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return seconds, read_collected(folder), peak
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _run_streaming(workload: Workload, runner: str, elements: list[TimestampedValue], config: BenchConfig) -> tuple[list[Collected], list[tuple[int, float]]]:
    """(outputs, (event timestamp µs, arrival time) of every input) of one paced streaming run."""
    folder = tempfile.mkdtemp(prefix="tidal-bench-stream-")
    try:
        arrivals_path = os.path.join(folder, "arrivals.pkl")
        paced = PacedEvents(elements, config.stream_rate, on_done=_WriteArrivals(arrivals_path))
        source = td.GeneratorSource(paced, max_out_of_orderness=config.out_of_orderness)
        p = td.Pipeline(runner=resolve_runner(runner))
        workload.build(p | "Input" >> td.Read(source)) | "Collect" >> td.ParDo(CollectToFolder(folder))
        result = p.run()
        result.wait_until_finish(config.stream_timeout)
        if not result.state.is_terminal:
            result.cancel()
            raise TimeoutError(f"the streaming run did not finish within {config.stream_timeout:g} s")
        with open(arrivals_path, "rb") as f:
            arrivals = pickle.load(f)
        return read_collected(folder), arrivals
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def latencies(workload: Workload, outputs: Sequence[Collected], arrivals: Sequence[tuple[int, float]]) -> list[float]:
    """Seconds from the arrival of the input each result waited for to the result reaching the sink.

    >>> w = WORKLOADS["windowed"]
    >>> latencies(w, [Collected(None, 1_999_999, 10.5)], [(0, 9.0), (1_000_000, 10.0), (2_500_000, 10.2)])
    [0.5]
    """
    if workload.latency is None or not arrivals:
        return []
    if workload.latency == "element":
        arrival_of = dict(arrivals)
        return [o.emitted_at - arrival_of[o.timestamp_us] for o in outputs if o.timestamp_us in arrival_of]
    by_time = sorted(arrivals)
    stamps = [t for t, _ in by_time]
    latest: list[float] = []
    running = -math.inf
    for _, wall in by_time:
        running = max(running, wall)
        latest.append(running)
    out = []
    for o in outputs:
        i = len(stamps) if o.timestamp_us >= MAX_TIMESTAMP_US - 1 else bisect_right(stamps, o.timestamp_us)
        if i:
            out.append(o.emitted_at - latest[i - 1])
    return out


# -- runners --------------------------------------------------------------------------
@attrs.define
class _RunnerSession:
    name: str
    memory_scope: str = "process"
    startup_s: float | None = None
    stop: Callable[[], None] | None = None


def _open_runner(name: str) -> _RunnerSession:
    """Check that ``name`` can be built; start Ray once for all its runs (reported apart)."""
    resolve_runner(name)
    session = _RunnerSession(name)
    if name == "ray":
        import ray

        session.memory_scope = "driver only"
        if not ray.is_initialized():
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            start = time.perf_counter()
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            session.startup_s = time.perf_counter() - start
            session.stop = ray.shutdown
    return session


def _beam_available() -> bool:
    try:
        import apache_beam  # noqa: F401
    except Exception:
        return False
    return True


def _run_beam(workload: Workload, elements: list[TimestampedValue]) -> float:
    import apache_beam as beam

    assert workload.beam_build is not None
    pairs = [(tv.value, tv.timestamp_us / 1e6) for tv in elements]
    gc.collect()
    start = time.perf_counter()
    with beam.Pipeline(runner="DirectRunner") as bp:
        stamped = bp | "Input" >> beam.Create(pairs) | "Stamp" >> beam.Map(lambda vt: beam.window.TimestampedValue(vt[0], vt[1]))
        workload.beam_build(beam, stamped)
    return time.perf_counter() - start


# -- the harness ----------------------------------------------------------------------
def _progress(total: int, quiet: bool) -> Any:
    disable = quiet or os.environ.get("TIDAL_NO_PROGRESS", "") not in ("", "0")
    try:
        from tqdm import tqdm
    except ImportError:
        disable = True
    if disable:
        return _NoProgress()
    return tqdm(total=total, desc="bench", unit="run", file=sys.stderr, dynamic_ncols=True)


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def run_harness(config: BenchConfig) -> dict[str, Any]:
    """Run every workload on every runner; return the report (also what the JSON holds)."""
    unknown = [w for w in config.workloads if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    sizes = tuple(sorted(set(config.sizes)))
    requested = list(config.runners) if config.runners else registered_runners()
    sessions: list[_RunnerSession] = []
    skipped: dict[str, str] = {}
    for name in requested:
        if name not in registered_runners():
            skipped[name] = f"not registered (registered: {', '.join(registered_runners())})"
            continue
        try:
            sessions.append(_open_runner(name))
        except Exception as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
    beam = config.beam and _beam_available()
    beam_workloads = [w for w in config.workloads if beam and WORKLOADS[w].beam_build is not None]
    per_runner = len(sizes) + 2
    bar = _progress(len(config.workloads) * len(sessions) * per_runner + len(beam_workloads), config.quiet)
    rows: list[dict[str, Any]] = []
    equality: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        for wname in config.workloads:
            workload = WORKLOADS[wname]
            inputs = {n: workload.make_input(n, 0.0) for n in sizes}
            stream_input = workload.make_input(config.stream_events, config.out_of_orderness)
            digests: dict[str, dict[str, str]] = {}
            wrows: list[dict[str, Any]] = []
            for session in sessions:
                runner = session.name
                row: dict[str, Any] = {"workload": wname, "runner": runner, "memory_scope": session.memory_scope}
                try:
                    times = []
                    for n in sizes:
                        bar.set_postfix_str(f"{wname} on {runner}, {n:,} events")
                        seconds, outputs, _ = _run_batch(workload, runner, inputs[n])
                        times.append((n, seconds))
                        digests.setdefault(f"batch {n:,}", {})[runner] = _digest(workload.canonical([o.value for o in outputs]))
                        bar.update()
                    bar.set_postfix_str(f"{wname} on {runner}, memory")
                    _, _, peak = _run_batch(workload, runner, inputs[sizes[-1]], trace_memory=True)
                    bar.update()
                    lat: list[float] = []
                    if workload.streaming:
                        bar.set_postfix_str(f"{wname} on {runner}, streaming")
                        outputs, arrivals = _run_streaming(workload, runner, stream_input, config)
                        digests.setdefault(f"streaming {config.stream_events:,}", {})[runner] = _digest(
                            workload.canonical([o.value for o in outputs])
                        )
                        lat = latencies(workload, outputs, arrivals)
                    bar.update()
                    fit = fit_line(times)
                    n_max, t_max = times[-1]
                    row.update(
                        events=n_max,
                        seconds=t_max,
                        times=[{"events": n, "seconds": s} for n, s in times],
                        events_per_s=n_max / t_max,
                        fixed_cost_s=fit[0] if fit else None,
                        per_event_us=fit[1] * 1e6 if fit else None,
                        steady_events_per_s=(1.0 / fit[1]) if fit and fit[1] > 0 else None,
                        latency_p50_ms=_ms(percentile(lat, 50)),
                        latency_p99_ms=_ms(percentile(lat, 99)),
                        latency_results=len(lat),
                        peak_memory_mib=peak / 2**20 if peak is not None else None,
                        error=None,
                    )
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    bar.update(0)
                wrows.append(row)
            equality[wname] = _compare(digests)
            if wname in beam_workloads:
                bar.set_postfix_str(f"{wname} on Beam")
                try:
                    beam_s = _run_beam(workload, inputs[sizes[-1]])
                    for row in wrows:
                        if row.get("seconds"):
                            row["beam_seconds"] = beam_s
                            row["vs_beam"] = beam_s / row["seconds"]
                except Exception as exc:
                    for row in wrows:
                        row["beam_error"] = f"{type(exc).__name__}: {exc}"
                bar.update()
            for row in wrows:
                row["same_result"] = equality[wname]["same"]
            rows.extend(wrows)
    finally:
        bar.close()
        for session in sessions:
            if session.stop is not None:
                session.stop()
    import resource

    return {
        "config": {**attrs.asdict(config), "sizes": list(sizes)},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tidal": td.__version__,
        },
        "runners": [s.name for s in sessions],
        "skipped_runners": skipped,
        "runner_startup_s": {s.name: s.startup_s for s in sessions if s.startup_s is not None},
        "beam_reference": "apache_beam DirectRunner" if beam else "apache_beam not installed",
        "results": rows,
        "equality": equality,
        "process_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total_seconds": time.perf_counter() - started,
        "latency_method": (
            "paced GeneratorSource; latency = sink time - arrival of the last input the result waited for "
            "(its own event for element-wise results; every event up to its timestamp for windowed ones)"
        ),
        "memory_method": "tracemalloc peak during one batch run at the largest size, this process (Ray: driver only)",
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _compare(digests: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Whether every runner gave the same canonical result for every run that more than one finished."""
    differing = [run for run, by_runner in digests.items() if len(set(by_runner.values())) > 1]
    runners = sorted({r for by_runner in digests.values() for r in by_runner})
    return {"same": not differing if len(runners) > 1 else None, "runners": runners, "differing_runs": differing, "digests": digests}


# -- reports --------------------------------------------------------------------------
_COLUMNS = [
    ("workload", "workload"),
    ("runner", "runner"),
    ("events/s", "events_per_s"),
    ("fixed cost (ms)", "fixed_cost_s"),
    ("per event (µs)", "per_event_us"),
    ("p50 latency (ms)", "latency_p50_ms"),
    ("p99 latency (ms)", "latency_p99_ms"),
    ("peak memory (MiB)", "peak_memory_mib"),
    ("same result", "same_result"),
]


def _cell(row: dict[str, Any], key: str) -> str:
    if row.get("error") and key not in ("workload", "runner"):
        return "failed" if key == "events_per_s" else ""
    v = row.get(key)
    if key == "same_result":
        return {True: "yes", False: "NO", None: "n/a (one runner)"}[v]
    if v is None:
        return "n/a"
    if key == "fixed_cost_s":
        return f"{max(v, 0.0) * 1000:,.0f}"
    if key == "per_event_us" and v <= 0:
        return "< noise"
    if key == "events_per_s":
        return f"{v:,.0f}"
    if key == "peak_memory_mib":
        return f"{v:.1f}" + (" (driver)" if row.get("memory_scope") == "driver only" else "")
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the results table (the terminal and Markdown tables share them)."""
    columns = list(_COLUMNS)
    if any("vs_beam" in r for r in report["results"]):
        columns.append(("vs Beam direct", "vs_beam"))
    header = [c for c, _ in columns]
    cells = []
    for row in report["results"]:
        line = [_cell(row, key) for _, key in columns]
        if "vs_beam" in row:
            line[-1] = f"{row['vs_beam']:.2f}×"
        elif len(columns) > len(_COLUMNS):
            line[-1] = ""
        cells.append(line)
    return header, cells


def _notes(report: dict[str, Any]) -> list[str]:
    cfg = report["config"]
    notes = [
        f"Batch sizes {', '.join(f'{n:,}' for n in cfg['sizes'])} events; events/s at the largest; "
        "fixed and per-event cost from a least-squares line through all sizes.",
        "A per-event cost shown as '< noise' fitted at zero or below: at these sizes the run-to-run "
        "variation of the fixed cost hides it (raise --sizes to see it).",
        f"Latency: {cfg['stream_events']:,} events streamed at {cfg['stream_rate']:,.0f} events/s "
        f"({cfg['out_of_orderness']:g} s out of order); {report['latency_method']}.",
        f"Peak memory: {report['memory_method']}.",
    ]
    for name, s in report["runner_startup_s"].items():
        notes.append(f"{name} start-up ({s:.1f} s) is outside every measurement.")
    for name, why in report["skipped_runners"].items():
        notes.append(f"Skipped runner {name}: {why}.")
    shown = list(dict.fromkeys(r["workload"] for r in report["results"]))
    batch_only = [w for w in shown if not WORKLOADS[w].streaming]
    if batch_only:
        notes.append(
            f"No latency for {', '.join(batch_only)}: a global-window aggregation of an unbounded input needs "
            "a window or a trigger, so these run in batch only."
        )
    if any(WORKLOADS[w].latency is None for w in shown):
        notes.append("No latency for processing-time panes (q12): their timestamps say nothing of their inputs.")
    same = [w for w, e in report["equality"].items() if e["same"]]
    differ = [w for w, e in report["equality"].items() if e["same"] is False]
    if len(report["runners"]) > 1:
        notes.append(
            f"Results equal on {', '.join(report['runners'])} for {len(same)} of {len(report['equality'])} workloads"
            + (f"; DIFFERENT for {', '.join(differ)}." if differ else ".")
        )
    notes.append(f"Beam reference: {report['beam_reference']}.")
    for row in report["results"]:
        if row.get("error"):
            notes.append(f"{row['workload']} on {row['runner']} failed: {row['error']}")
    return notes


def markdown(report: dict[str, Any]) -> str:
    header, cells = table_rows(report)
    env = report["environment"]
    lines = [
        "# tidal benchmark results",
        "",
        f"Python {env['python']}, {env['cpus']} CPUs, {env['platform']}; total {report['total_seconds']:.0f} s.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" if i < 2 else "---:" for i in range(len(header))) + " |",
    ]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    lines += [""] + [f"- {n}" for n in _notes(report)] + [""]
    return "\n".join(lines)


def terminal_table(report: dict[str, Any]) -> str:
    header, cells = table_rows(report)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    fmt = lambda row: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(c) for c in cells]
    return "\n".join(lines + [""] + _notes(report))


def chart(report: dict[str, Any], path: str) -> None:
    """Throughput and p99 latency per workload, one bar per runner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in report["results"]))
    runners = report["runners"]
    by = {(r["workload"], r["runner"]): r for r in report["results"]}
    fig, axes = plt.subplots(2, 1, figsize=(max(8, len(workloads) * 0.9), 8), constrained_layout=True)
    width = 0.8 / max(1, len(runners))
    for ax, key, label in ((axes[0], "events_per_s", "events/s (log)"), (axes[1], "latency_p99_ms", "p99 latency, ms (log)")):
        for i, runner in enumerate(runners):
            xs, ys = [], []
            for j, w in enumerate(workloads):
                v = by.get((w, runner), {}).get(key)
                if v:
                    xs.append(j + (i - (len(runners) - 1) / 2) * width)
                    ys.append(v)
            ax.bar(xs, ys, width=width, label=runner)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads, rotation=30)
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("tidal: throughput and latency by runner")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_reports(report: dict[str, Any], out: str) -> dict[str, str]:
    """Write results.json, results.md and results.png into ``out``; return their paths."""
    os.makedirs(out, exist_ok=True)
    paths = {kind: os.path.join(out, f"results.{kind}") for kind in ("json", "md", "png")}
    with open(paths["json"], "w") as f:
        json.dump(report, f, indent=2, default=str)
    with open(paths["md"], "w") as f:
        f.write(markdown(report))
    chart(report, paths["png"])
    return paths


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tidal.benchmarks.cli import add_bench_arguments, run_bench

    parser = argparse.ArgumentParser(prog="python -m tidal.benchmarks.harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
