"""The runner comparison harness: every workload on every runner, measured the same way.

For each workload × runner it reports:

* **throughput** — events / end-to-end seconds of a batch run (``Create`` of
  the input, the workload, a sink) at the largest input size, start-up
  included. Every batch run is repeated (``repeats``) and the median counts;
  the spread (max − min over the median) says how much the runs varied;
* **fixed cost and steady-state rate** — a least-squares line ``time = fixed +
  per_event × events`` through the medians at every size, so a runner's
  start-up (Ray's actors, started for each job) is told apart from its speed:
  ``fixed`` is what a job costs before its first event, ``1 / per_event`` the
  rate once it runs. The per-event cost is *resolved* when it adds more time
  from the smallest to the largest size than the repeats of one size spread
  over; otherwise the steady-state rate is only rough;
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
  summed per key), must be identical at every size, in every repeat and in
  streaming mode.

When ``apache_beam`` is importable (``pip install 'tidal[beam]'``), the
workloads that have a Beam version (``Workload.beam_build``) also run on
Beam's DirectRunner at the largest size, as often as the runners do: the
report shows Beam's median time over each runner's as a ratio, and checks
that Beam's result equals the runners'.

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
import uuid
from bisect import bisect_right
from hashlib import sha256
from typing import Any, Callable, Mapping, Sequence

import attrs

import tidal as td
from tidal.benchmarks.collect import Collected, CollectToFolder, read_collected
from tidal.benchmarks.nexmark.generator import PacedEvents
from tidal.benchmarks.ray_session import start_ray
from tidal.benchmarks.peers import PEER_WORKLOADS, PEERS, PeerRequest, detect_peers, run_peer
from tidal.benchmarks.workloads import DEFAULT_WORKLOADS, WORKLOADS, Workload
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.model.window import TimestampedValue
from tidal.runners.registry import registered_runners, resolve_runner
from tidal.runners.runner import Runner

__all__ = ["BenchConfig", "run_harness", "fit_line", "percentile", "cost_summary", "beam_verdict", "write_reports", "main"]


#: Batch sizes of the default run: the largest big enough that Ray's per-event
#: cost begins to show above the run-to-run noise of its per-job start-up, yet
#: every workload on every runner fits in a few minutes on two cores. Two sizes
#: far apart: for a straight line, runs at both ends pin the slope best for
#: their number (a size in the middle only checks that the line is straight,
#: and costs Ray another start-up per run; add one with ``--sizes``).
DEFAULT_SIZES = (3000, 30000)

#: The name under which a workload's result computed in plain Python joins the runners' results.
EXPECTED = "plain Python"


@attrs.frozen
class BenchConfig:
    """What to run and where to write it."""

    workloads: tuple[str, ...] = tuple(DEFAULT_WORKLOADS)
    runners: tuple[str, ...] | None = None  # None: every registered runner
    sizes: tuple[int, ...] = DEFAULT_SIZES
    #: Every batch run (and Beam's) is done this many times; the median counts.
    repeats: int = 3
    stream_events: int = 2000
    stream_rate: float = 2000.0
    out_of_orderness: float = 0.05
    out: str = "bench-out"
    quiet: bool = False
    beam: bool = True
    stream_timeout: float = 120.0
    #: The other engines (tidal.benchmarks.peers), off unless asked for (``python -m tidal bench`` asks unless
    #: --no-peers): which to run (None: every installed one), at what parallelism.
    use_peers: bool = False
    peers: tuple[str, ...] | None = None
    peer_parallelism: int = 2
    #: The idioms to run of each engine (None: all of them); an engine without one of these runs none.
    peer_variants: tuple[str, ...] | None = None
    peer_timeout: float = 3600.0
    #: The further studies, run after the workloads with the same runners (None: not run).
    key_scaling: Any = None  # tidal.benchmarks.keyscaling.KeyScalingConfig
    latency_sweep: Any = None  # tidal.benchmarks.latency.SweepConfig


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


def cost_summary(runs: Mapping[int, Sequence[float]]) -> dict[str, Any]:
    """Throughput, fitted costs and spread of repeated batch runs: ``{events: [seconds of each run]}``.

    Each size's runs reduce to their median; the line through the medians
    gives the fixed cost and the per-event cost (``per_event_resolved`` when
    it adds more time from the smallest to the largest size than the runs of
    any one size spread over). The spread is that of the largest size,
    ``(max - min) / median``; None for a single run.

    >>> s = cost_summary({1000: [1.2, 1.1, 1.9], 10000: [2.0, 2.1, 2.2]})
    >>> s["seconds"], round(s["events_per_s"]), round(s["fixed_cost_s"], 6), round(s["steady_events_per_s"])
    (2.1, 4762, 1.1, 10000)
    >>> round(s["spread_pct"], 2), s["per_event_resolved"]
    (9.52, True)
    """
    if not runs:
        raise ValueError("cost_summary needs the runs of at least one size")
    sizes = sorted(runs)
    medians = [statistics.median(runs[n]) for n in sizes]
    n_max, last, last_runs = sizes[-1], medians[-1], list(runs[sizes[-1]])
    fit = fit_line(list(zip(sizes, medians)))
    noise = max(max(runs[n]) - min(runs[n]) for n in sizes)
    resolved = None if fit is None else fit[1] > 0 and fit[1] * (n_max - sizes[0]) > noise
    return {
        "events": n_max,
        "seconds": last,
        "seconds_min": min(last_runs),
        "seconds_max": max(last_runs),
        "spread_pct": 100.0 * (max(last_runs) - min(last_runs)) / last if len(last_runs) > 1 and last > 0 else None,
        "times": [
            {"events": n, "seconds": m, "min": min(runs[n]), "max": max(runs[n]), "runs": list(runs[n])} for n, m in zip(sizes, medians)
        ],
        "events_per_s": n_max / last if last > 0 else None,
        "fixed_cost_s": fit[0] if fit else None,
        "per_event_us": fit[1] * 1e6 if fit else None,
        "steady_events_per_s": (1.0 / fit[1]) if fit and fit[1] > 0 else None,
        "per_event_resolved": resolved,
    }


def beam_verdict(runner_digests: Mapping[str, str], beam_digest: str | None) -> bool | None:
    """Whether Beam's result equals every runner's (digests of canonical results); None with nothing to compare.

    >>> beam_verdict({"direct": "ab12", "ray": "ab12"}, "ab12"), beam_verdict({"direct": "ab12"}, "ffff")
    (True, False)
    """
    if beam_digest is None or not runner_digests:
        return None
    return all(d == beam_digest for d in runner_digests.values())


def result_digest(canonical: list[str]) -> str:
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


def run_batch(workload: Workload, runner: str | Runner, elements: list[TimestampedValue], trace_memory: bool = False) -> tuple[float, list[Collected], int | None]:
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
    return run_streaming(workload, runner, elements, config.stream_rate, config.out_of_orderness, config.stream_timeout)


def run_streaming(
    workload: Workload,
    runner: str | Runner,
    elements: list[TimestampedValue],
    rate: float,
    out_of_orderness: float,
    timeout: float,
    record_due: bool = False,
) -> tuple[list[Collected], list[tuple[int, float]]]:
    """(outputs, (event timestamp µs, arrival time) of every input) of one run of ``elements`` offered at ``rate`` per second.

    The input comes from a paced ``GeneratorSource`` whose watermark trails by
    ``out_of_orderness`` seconds; ``record_due`` records when each event was
    due rather than when the source released it (see :class:`PacedEvents`).
    """
    folder = tempfile.mkdtemp(prefix="tidal-bench-stream-")
    try:
        arrivals_path = os.path.join(folder, "arrivals.pkl")
        paced = PacedEvents(elements, rate, on_done=_WriteArrivals(arrivals_path), record_due=record_due)
        source = td.GeneratorSource(paced, max_out_of_orderness=out_of_orderness)
        p = td.Pipeline(runner=resolve_runner(runner))
        workload.build(p | "Input" >> td.Read(source)) | "Collect" >> td.ParDo(CollectToFolder(folder))
        result = p.run()
        result.wait_until_finish(timeout)
        if not result.state.is_terminal:
            result.cancel()
            raise TimeoutError(f"the streaming run did not finish within {timeout:g} s")
        with open(arrivals_path, "rb") as f:
            arrivals = pickle.load(f)
        return read_collected(folder), arrivals
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def latencies(
    workload: Workload, outputs: Sequence[Collected], arrivals: Sequence[tuple[int, float]], inputs: Sequence[TimestampedValue] | None = None
) -> list[float]:
    """Seconds from the arrival of the input each result waited for to the result reaching the sink.

    ``arrivals[i]`` is when ``inputs[i]`` arrived (the paced source releases
    the input in order); ``inputs`` is needed for ``latency="last_event"``.

    >>> w = WORKLOADS["windowed"]
    >>> latencies(w, [Collected(None, 1_999_999, 10.5)], [(0, 9.0), (1_000_000, 10.0), (2_500_000, 10.2)])
    [0.5]
    """
    if workload.latency is None or not arrivals:
        return []
    if workload.latency == "last_event":
        if inputs is None or workload.event_key is None or workload.result_key is None:
            raise ValueError(f"{workload.name}: a last-event latency needs the inputs and the workload's event_key and result_key")
        last: dict[Any, float] = {}
        event_key = workload.event_key
        for (stamp, wall), tv in zip(arrivals, inputs):
            if stamp != tv.timestamp_us:
                raise ValueError(f"{workload.name}: the arrivals are not those of the inputs (event at {stamp} µs, input at {tv.timestamp_us} µs)")
            key = event_key(tv.value)
            if key is not None and wall > last.get(key, -math.inf):
                last[key] = wall
        result_key = workload.result_key
        return [o.emitted_at - last[k] for o in outputs if (k := result_key(o.value)) in last]
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
class RunnerSession:
    name: str
    memory_scope: str = "process"
    startup_s: float | None = None
    stop: Callable[[], None] | None = None


def open_runner(name: str) -> RunnerSession:
    """Check that ``name`` can be built; start Ray once for all its runs (reported apart)."""
    resolve_runner(name)
    session = RunnerSession(name)
    if name == "ray":
        import ray

        session.memory_scope = "driver only"
        if not ray.is_initialized():
            session.startup_s = start_ray()
            session.stop = ray.shutdown
    return session


def _beam_version() -> str | None:
    """apache_beam's version, or None when it cannot be imported."""
    try:
        import apache_beam
    except Exception:
        return None
    return str(apache_beam.__version__)


def _beam_collector(beam: Any, folder: str) -> Any:
    """A Beam DoFn that writes each bundle's elements to a pickle file in ``folder``."""

    class CollectToFolder(beam.DoFn):  # type: ignore[misc, name-defined]
        def __init__(self, folder: str) -> None:
            self.folder = folder
            self.buffer: list[Any] = []

        def start_bundle(self) -> None:
            self.buffer = []

        def process(self, element: Any) -> Any:
            self.buffer.append(element)
            return ()

        def finish_bundle(self) -> None:
            if self.buffer:
                with open(os.path.join(self.folder, f"out-{uuid.uuid4().hex}.pkl"), "wb") as f:
                    pickle.dump(self.buffer, f, protocol=pickle.HIGHEST_PROTOCOL)
                self.buffer = []

    return CollectToFolder(folder)


def _run_beam(workload: Workload, elements: list[TimestampedValue]) -> tuple[float, list[Any]]:
    """(seconds, output values) of one batch run of the workload's Beam version on Beam's DirectRunner."""
    import apache_beam as beam
    from apache_beam.utils.timestamp import Timestamp

    assert workload.beam_build is not None
    pairs = [(tv.value, tv.timestamp_us) for tv in elements]
    folder = tempfile.mkdtemp(prefix="tidal-bench-beam-")
    try:
        gc.collect()
        start = time.perf_counter()
        with beam.Pipeline(runner="DirectRunner") as bp:
            stamped = (
                bp
                | "Input" >> beam.Create(pairs)
                | "Stamp" >> beam.Map(lambda vu: beam.window.TimestampedValue(vu[0], Timestamp(micros=vu[1])))
            )
            workload.beam_build(beam, stamped) | "Collect" >> beam.ParDo(_beam_collector(beam, folder))
        seconds = time.perf_counter() - start
        values: list[Any] = []
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "rb") as f:
                values.extend(pickle.load(f))
        return seconds, values
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the harness ----------------------------------------------------------------------
def progress_bar(total: int, quiet: bool) -> Any:
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


def _batch_inputs(workload: Workload, sizes: Sequence[int], made: dict[Any, list[TimestampedValue]]) -> dict[int, list[TimestampedValue]]:
    """The workload's batch input at every size: prefixes of one input of the largest size.

    Inputs are prefix-stable (the first n events of a longer input equal an
    input of n), so each input function runs once per harness run (``made``).
    """
    full = made.get(workload.make_input)
    if full is None or len(full) < sizes[-1]:
        full = made[workload.make_input] = workload.make_input(sizes[-1], 0.0)
    return {n: full[:n] for n in sizes}


def one_digest(digests: set[str]) -> str:
    """The digest of every repeat; runs that disagreed give a value no single run can equal."""
    return next(iter(digests)) if len(digests) == 1 else "inconsistent: " + " / ".join(sorted(digests))


def run_harness(config: BenchConfig) -> dict[str, Any]:
    """Run every workload on every runner; return the report (also what the JSON holds)."""
    unknown = [w for w in config.workloads if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    if not config.workloads and config.key_scaling is None and config.latency_sweep is None:
        raise ValueError("nothing to run: no workload, and neither key scaling nor the latency sweep")
    if config.peer_parallelism < 1:
        raise ValueError(f"peer_parallelism must be at least 1, not {config.peer_parallelism}")
    if config.repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {config.repeats}")
    if not config.sizes or min(config.sizes) < 1:
        raise ValueError(f"sizes must be positive event counts, not {list(config.sizes)}")
    sizes = tuple(sorted(set(config.sizes)))
    repeats = config.repeats
    requested = list(config.runners) if config.runners else registered_runners()
    sessions: list[RunnerSession] = []
    skipped: dict[str, str] = {}
    for name in requested:
        if name not in registered_runners():
            skipped[name] = f"not registered (registered: {', '.join(registered_runners())})"
            continue
        try:
            sessions.append(open_runner(name))
        except Exception as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
    beam_version = _beam_version() if config.beam else None
    beam_workloads = [w for w in config.workloads if beam_version and WORKLOADS[w].beam_build is not None]
    per_runner = len(sizes) * repeats + 2
    peer_workloads = [w for w in config.workloads if w in PEER_WORKLOADS]
    present_peers, missing_peers = detect_peers(config.peers) if config.use_peers and peer_workloads else ({}, {})
    peer_runs = {
        name: len(peer_workloads) * len(sizes) * len(_variants_of(name, config)) * repeats for name in present_peers
    }
    bar = progress_bar(
        len(config.workloads) * len(sessions) * per_runner + len(beam_workloads) * repeats + sum(peer_runs.values()), config.quiet
    )
    peer_rows: list[dict[str, Any]] = []
    peer_info: dict[str, Any] = {}
    studies: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    equality: dict[str, Any] = {}
    made: dict[Any, list[TimestampedValue]] = {}
    started = time.perf_counter()
    try:
        for wname in config.workloads:
            workload = WORKLOADS[wname]
            inputs = _batch_inputs(workload, sizes, made)
            stream_input = workload.make_input(config.stream_events, config.out_of_orderness) if workload.streaming else []
            digests: dict[str, dict[str, str]] = {}
            wrows: list[dict[str, Any]] = []
            for session in sessions:
                runner = session.name
                row: dict[str, Any] = {"workload": wname, "runner": runner, "memory_scope": session.memory_scope}
                ticks = 0
                try:
                    runs: dict[int, list[float]] = {n: [] for n in sizes}
                    seen: dict[int, set[str]] = {n: set() for n in sizes}
                    for rep in range(repeats):
                        for n in sizes:
                            bar.set_postfix_str(f"{wname} on {runner}, {n:,} events, run {rep + 1}/{repeats}")
                            seconds, outputs, _ = run_batch(workload, runner, inputs[n])
                            runs[n].append(seconds)
                            seen[n].add(result_digest(workload.canonical([o.value for o in outputs])))
                            bar.update()
                            ticks += 1
                    for n in sizes:
                        digests.setdefault(f"batch {n:,}", {})[runner] = one_digest(seen[n])
                        if workload.expected is not None:
                            digests[f"batch {n:,}"][EXPECTED] = result_digest(workload.canonical(workload.expected(inputs[n])))
                    bar.set_postfix_str(f"{wname} on {runner}, memory")
                    _, _, peak = run_batch(workload, runner, inputs[sizes[-1]], trace_memory=True)
                    bar.update()
                    ticks += 1
                    lat: list[float] = []
                    if workload.streaming:
                        bar.set_postfix_str(f"{wname} on {runner}, streaming")
                        outputs, arrivals = _run_streaming(workload, runner, stream_input, config)
                        digests.setdefault(f"streaming {config.stream_events:,}", {})[runner] = result_digest(
                            workload.canonical([o.value for o in outputs])
                        )
                        lat = latencies(workload, outputs, arrivals, stream_input)
                    bar.update()
                    row.update(cost_summary(runs))
                    row.update(
                        repeats_agree=all(len(d) == 1 for d in seen.values()),
                        latency_p50_ms=_ms(percentile(lat, 50)),
                        latency_p99_ms=_ms(percentile(lat, 99)),
                        latency_results=len(lat),
                        peak_memory_mib=peak / 2**20 if peak is not None else None,
                        error=None,
                    )
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    bar.update(per_runner - ticks)  # the runs it will not do
                wrows.append(row)
            equality[wname] = _compare(digests)
            if wname in beam_workloads:
                equality[wname]["beam"] = beam = _measure_beam(workload, inputs[sizes[-1]], repeats, digests.get(f"batch {sizes[-1]:,}", {}), bar)
                for row in wrows:
                    row["beam_same_result"] = beam.get("same")
                    if "error" in beam:
                        row["beam_error"] = beam["error"]
                        continue
                    row["beam_seconds"] = beam["seconds"]
                    if row.get("seconds") and beam["same"] is not False:  # no ratio between different answers
                        row["vs_beam"] = beam["seconds"] / row["seconds"]
            for row in wrows:
                row["same_result"] = equality[wname]["same"]
            rows.extend(wrows)
        for name, python in present_peers.items():
            peer_info[name], found = _measure_peer(name, python, peer_workloads, sizes, config, equality, bar, peer_runs[name])
            peer_rows.extend(found)
        bar.close()
        if config.key_scaling is not None:
            from tidal.benchmarks.keyscaling import run_key_scaling

            studies["key_scaling"] = run_key_scaling(attrs.evolve(config.key_scaling, quiet=config.quiet), sessions)
        if config.latency_sweep is not None:
            from tidal.benchmarks.latency import run_latency_sweep

            sweep = attrs.evolve(config.latency_sweep, quiet=config.quiet)
            if config.use_peers and not sweep.peers:  # the other engines stream too, when installed
                sweep = attrs.evolve(sweep, peers=tuple(config.peers or PEERS), peer_parallelism=config.peer_parallelism)
            studies["latency_sweep"] = run_latency_sweep(sweep, sessions)
    finally:
        bar.close()
        for session in sessions:
            if session.stop is not None:
                session.stop()
    import resource

    return {
        "config": {**attrs.asdict(config, filter=lambda a, v: a.name not in ("key_scaling", "latency_sweep")), "sizes": list(sizes)},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tidal": td.__version__,
        },
        "runners": [s.name for s in sessions],
        "skipped_runners": skipped,
        "runner_startup_s": {s.name: s.startup_s for s in sessions if s.startup_s is not None},
        "beam_reference": f"apache_beam {beam_version} DirectRunner" if beam_version else (
            "not run (--no-beam)" if not config.beam else "apache_beam not installed"
        ),
        "results": rows,
        "equality": equality,
        "peers": peer_info,
        "missing_peers": missing_peers if config.use_peers else {},
        "peer_results": peer_rows,
        **studies,
        "process_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total_seconds": time.perf_counter() - started,
        "timing_method": (
            f"every batch run {repeats} time(s), the median counts; spread = (max - min) / median at the largest size; "
            "fixed cost and per-event cost from a least-squares line through the medians at every size"
        ),
        "latency_method": (
            "paced GeneratorSource; latency = sink time - arrival of the last input the result waited for "
            "(its own event for element-wise results; every event up to its timestamp for windowed ones)"
        ),
        "memory_method": "tracemalloc peak during one batch run at the largest size, this process (Ray: driver only)",
    }


def _variants_of(name: str, config: BenchConfig) -> tuple[str, ...]:
    """The idioms of engine ``name`` that ``config`` asks for, in the engine's order."""
    variants = PEERS[name].variants
    return variants if config.peer_variants is None else tuple(v for v in variants if v in config.peer_variants)


def _measure_peer(
    name: str, python: Any, workloads: list[str], sizes: tuple[int, ...], config: BenchConfig, equality: dict[str, Any], bar: Any, runs: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one peer engine on the workloads it implements; (its start-up and version, one row per workload and idiom)."""
    peer = PEERS[name]
    bar.set_postfix_str(f"{peer.title}: starting")
    ticked = [0]

    def progress(done: int) -> None:
        if done > ticked[0]:
            bar.update(done - ticked[0])
            ticked[0] = done
            bar.set_postfix_str(f"{peer.title}: {done}/{runs} runs")

    request = PeerRequest(
        workloads=tuple(workloads), sizes=sizes, repeats=config.repeats, parallelism=config.peer_parallelism,
        variants=None if config.peer_variants is None else _variants_of(name, config),
    )
    report = run_peer(name, python, request, config.peer_timeout, on_progress=progress, folder=os.path.join(config.out, "peers", name))
    bar.update(max(0, runs - ticked[0]))
    info = {
        "title": peer.title,
        "version": report.get("version"),
        "python": str(python),
        "parallelism": config.peer_parallelism,
        "startup_s": report.get("startup_s"),
        "session_s": report.get("session_s"),
        "variants": dict(peer.variant_titles),
        "system": dict(peer.system),
        "error": report.get("error"),
        "log": report.get("log") if report.get("error") else None,
        "files": report.get("folder"),
    }
    rows: list[dict[str, Any]] = []
    by_job: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in report.get("runs", []):
        by_job.setdefault((run["workload"], run["variant"]), []).append(run)
    for (wname, variant), job_runs in by_job.items():
        row: dict[str, Any] = {"workload": wname, "engine": name, "variant": variant, "label": f"{name} {variant}"}
        errors = [r["error"] for r in job_runs if r.get("error")]
        finished = [r for r in job_runs if r["seconds"] and not r.get("error")]
        if errors or len(finished) < len(sizes):
            row["error"] = errors[0] if errors else "not every size ran"
            row["same_result"] = None
        else:
            row.update(cost_summary({r["events"]: r["seconds"] for r in finished}))
            verdicts = []
            for r in finished:
                tidal = {k: v for k, v in equality.get(wname, {}).get("digests", {}).get(f"batch {r['events']:,}", {}).items()}
                verdicts.append(beam_verdict(tidal, one_digest(set(r["digests"]))))
            row.update(error=None, results=finished[-1].get("results"), same_result=None if None in verdicts else all(verdicts))
        equality.setdefault(wname, {}).setdefault("peers", {})[row["label"]] = row["same_result"]
        rows.append(row)
    return info, rows


def _measure_beam(workload: Workload, elements: list[TimestampedValue], repeats: int, runner_digests: Mapping[str, str], bar: Any) -> dict[str, Any]:
    """Beam's median time over ``repeats`` runs and whether its result equals the runners'."""
    bar.set_postfix_str(f"{workload.name} on Beam")
    runs: list[float] = []
    seen: set[str] = set()
    for rep in range(repeats):
        try:
            seconds, values = _run_beam(workload, elements)
            seen.add(result_digest(workload.canonical(values)))
        except Exception as exc:
            bar.update(repeats - rep)  # the runs it will not do
            return {"error": f"{type(exc).__name__}: {exc}", "same": None}
        runs.append(seconds)
        bar.update()
    digest = one_digest(seen)
    return {
        "events": len(elements),
        "seconds": statistics.median(runs),
        "runs": runs,
        "digest": digest,
        "same": beam_verdict(runner_digests, digest),
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
    ("steady-state events/s", "steady_events_per_s"),
    ("spread", "spread_pct"),
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
    if key == "steady_events_per_s":
        if v is None:
            return "in noise" if row.get("per_event_us") is not None else "n/a"
        return f"{v:,.0f}" if row.get("per_event_resolved") else f"~{v:,.0f}"
    if v is None:
        return "n/a"
    if key == "fixed_cost_s":
        return f"{max(v, 0.0) * 1000:,.0f}"
    if key == "spread_pct":
        return f"{v:.0f}%"
    if key == "events_per_s":
        return f"{v:,.0f}"
    if key == "peak_memory_mib":
        return f"{v:.1f}" + (" (driver)" if row.get("memory_scope") == "driver only" else "")
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def _beam_cell(row: dict[str, Any]) -> str:
    if "beam_error" in row:
        return "Beam failed"
    if row.get("beam_same_result") is False:
        return "DIFFERENT result"
    if "vs_beam" in row:
        return f"{row['vs_beam']:.1f}×"
    return ""


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the results table (the terminal and Markdown tables share them)."""
    header = [c for c, _ in _COLUMNS]
    with_beam = any("beam_same_result" in r for r in report["results"])
    if with_beam:
        header.append("vs Beam direct")
    cells = []
    for row in report["results"]:
        line = [_cell(row, key) for _, key in _COLUMNS]
        if with_beam:
            line.append(_beam_cell(row))
        cells.append(line)
    return header, cells


def _notes(report: dict[str, Any]) -> list[str]:
    cfg = report["config"]
    repeats = cfg.get("repeats", 1)
    notes = [
        f"Batch sizes {', '.join(f'{n:,}' for n in cfg['sizes'])} events, every run done {repeats} time(s); "
        "the median counts, and spread is (max - min) / median of the runs at the largest size.",
        "events/s: at the largest size, start-up included. Fixed cost and steady-state events/s: the "
        "least-squares line time = fixed cost + events / steady-state rate through the medians at every size. "
        "The fixed cost is what a job costs before its first event (Ray starts its actors for every job); "
        "the steady-state rate is the speed once it runs.",
        "A steady-state rate shown as '~N' is rough: its per-event cost adds less time from the smallest to the "
        "largest size than the runs of one size spread over; 'in noise': the per-event cost fitted at zero or below. "
        "Larger --sizes resolve it.",
        f"Latency: {cfg['stream_events']:,} events streamed at {cfg['stream_rate']:,.0f} events/s "
        f"({cfg['out_of_orderness']:g} s out of order); {report['latency_method']}.",
        f"Peak memory: {report['memory_method']}.",
    ]
    for name, s in report["runner_startup_s"].items():
        notes.append(f"{name} start-up ({s:.1f} s, once per session) is outside every measurement; its per-job start-up is in the fixed cost.")
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
    for row in report["results"]:
        if row.get("repeats_agree") is False:
            notes.append(f"{row['workload']} on {row['runner']} gave different results in different repeats of one input.")
    beam = {w: e["beam"] for w, e in report["equality"].items() if "beam" in e}
    if beam:
        agree = [w for w, b in beam.items() if b.get("same")]
        beam_differ = [w for w, b in beam.items() if b.get("same") is False]
        notes.append(
            f"Beam reference: {report['beam_reference']}, at {cfg['sizes'][-1]:,} events, {repeats} time(s). "
            "vs Beam direct = Beam's median time / this runner's (above 1: faster than Beam). "
            f"Beam's result equals the runners' for {len(agree)} of {len(beam)} workloads"
            + (f"; DIFFERENT for {', '.join(beam_differ)}." if beam_differ else ".")
        )
        for w, b in beam.items():
            if "error" in b:
                notes.append(f"{w} on Beam failed: {b['error']}")
        without = [w for w in shown if w not in beam and WORKLOADS[w].beam_build is None]
        if without:
            notes.append(f"No Beam version of {', '.join(without)}.")
    else:
        notes.append(f"Beam reference: {report['beam_reference']}.")
    for row in report["results"]:
        if row.get("error"):
            notes.append(f"{row['workload']} on {row['runner']} failed: {row['error']}")
    return notes


def peer_table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the other engines' table: each workload in each engine's idioms, beside tidal's direct runner."""
    header = ["workload", "engine", "idiom", "events/s", "fixed cost (ms)", "steady-state events/s", "spread", "same result"]
    cells = []
    direct = {r["workload"]: r for r in report["results"] if r["runner"] == "direct"}
    shown: set[str] = set()
    for row in report.get("peer_results", []):
        w = row["workload"]
        if w not in shown and w in direct and not direct[w].get("error"):
            shown.add(w)
            d = direct[w]
            cells.append([w, "tidal", "direct runner", _cell(d, "events_per_s"), _cell(d, "fixed_cost_s"),
                          _cell(d, "steady_events_per_s"), _cell(d, "spread_pct"), _cell(d, "same_result")])
        if row.get("error"):
            cells.append([w, row["engine"], row["variant"], "failed", "", "", "", ""])
            continue
        cells.append([
            w, row["engine"], row["variant"], _cell(row, "events_per_s"), _cell(row, "fixed_cost_s"), _cell(row, "steady_events_per_s"),
            _cell(row, "spread_pct"), {True: "yes", False: "NO", None: "n/a"}[row.get("same_result")],
        ])
    return header, cells


def _peer_notes(report: dict[str, Any]) -> list[str]:
    notes = []
    peers = report.get("peers", {})
    for name, info in peers.items():
        if info.get("error"):
            notes.append(f"{info['title']} failed: {info['error']}")
            continue
        notes.append(
            f"{info['title']} ({info['version']}, parallelism {info['parallelism']}): start-up {info['startup_s']:.1f} s "
            f"(session {info['session_s']:.1f} s and a warm-up job), reported apart, once per run; each job is timed from "
            "handing it the input (from pandas, or Python lists for the Python-function idiom) to its result collected in "
            "the driver. Idioms: " + "; ".join(f"{k}: {v}" for k, v in info["variants"].items()) + "."
        )
    rows = report.get("peer_results", [])
    if rows:
        same = [r for r in rows if r.get("same_result")]
        differ = [f"{r['workload']} on {r['label']}" for r in rows if r.get("same_result") is False]
        notes.append(
            f"Other engines' results equal tidal's for {len(same)} of {len(rows)} jobs"
            + (f"; DIFFERENT: {', '.join(differ)}." if differ else ".")
        )
        for r in rows:
            if r.get("error"):
                notes.append(f"{r['workload']} on {r['label']} failed: {r['error'][:300]}")
    for name, why in report.get("missing_peers", {}).items():
        notes.append(f"Other engine {name}: {why}.")
    return notes


def _text_table(header: list[str], cells: list[list[str]], left: int = 2) -> list[str]:
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    fmt = lambda row: "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(c) for c in cells]


def _md_table(header: list[str], cells: list[list[str]], left: int = 2) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" if i < left else "---:" for i in range(len(header))) + " |",
    ] + ["| " + " | ".join(c) + " |" for c in cells]


#: The title of the runner comparison's own table.
RUNNERS_TITLE = "tidal's runners"


def report_sections(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]], int, list[str]]]:
    """(title, header, cells, left-aligned columns, notes) of every table the report has, in order."""
    out = []
    if report["results"]:
        header, cells = table_rows(report)
        out.append((RUNNERS_TITLE, header, cells, 2, _notes(report)))
    if report.get("peer_results") or report.get("peers") or report.get("missing_peers"):
        header, cells = peer_table_rows(report)
        out.append(("Other engines, same inputs and result check", header, cells, 3, _peer_notes(report)))
    if "key_scaling" in report:
        from tidal.benchmarks.keyscaling import key_scaling_notes, key_scaling_table

        header, cells = key_scaling_table(report["key_scaling"])
        out.append(("Key scaling", header, cells, 3, key_scaling_notes(report["key_scaling"])))
    if "latency_sweep" in report:
        from tidal.benchmarks.latency import sweep_notes, sweep_table

        header, cells = sweep_table(report["latency_sweep"])
        out.append(("Latency against throughput", header, cells, 2, sweep_notes(report["latency_sweep"])))
    return out


def markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown: one table per study, each with its notes."""
    env = report["environment"]
    lines = [
        "# tidal benchmark results",
        "",
        f"Python {env['python']}, {env['cpus']} CPUs, {env['platform']}; total {report['total_seconds']:.0f} s.",
    ]
    sections = report_sections(report)
    for i, (title, header, cells, left, notes) in enumerate(sections):
        lines.append("")
        if i or len(sections) > 1 or title != RUNNERS_TITLE:
            lines += [f"## {title}", ""]
        lines += _md_table(header, cells, left)
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines + [""])


def terminal_table(report: dict[str, Any]) -> str:
    """The whole report for the terminal: one table per study, each with its notes."""
    lines: list[str] = []
    sections = report_sections(report)
    for i, (title, header, cells, left, notes) in enumerate(sections):
        if i:
            lines += ["", f"== {title}", ""]
        elif title != RUNNERS_TITLE:
            lines += [f"== {title}", ""]
        lines += _text_table(header, cells, left) + [""] + notes
    return "\n".join(lines)


def chart(report: dict[str, Any], path: str | Any, fmt: str | None = None) -> None:
    """Throughput, steady-state rate, fixed cost and p99 latency per workload, one bar per runner (and per other engine's
    idiom in the throughput panels, where the engines ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = list(report["results"]) + [
        {**r, "runner": r["label"]} for r in report.get("peer_results", []) if not r.get("error")
    ]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    runners = list(dict.fromkeys([*report["runners"], *(r["runner"] for r in rows)]))
    by = {(r["workload"], r["runner"]): r for r in rows}
    panels = (
        ("events_per_s", "events/s (log)"),
        ("steady_events_per_s", "steady-state events/s (log; hatched: rough)"),
        ("fixed_cost_s", "fixed cost, s (log)"),
        ("latency_p99_ms", "p99 latency, ms (log)"),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, len(workloads) * 0.9), 4 * len(panels)), constrained_layout=True)
    width = 0.8 / max(1, len(runners))
    for ax, (key, label) in zip(axes, panels):
        shown = []
        for i, runner in enumerate(runners):
            xs, ys, hatches = [], [], []
            for j, w in enumerate(workloads):
                row = by.get((w, runner), {})
                v = row.get(key)
                if v is not None and v > 0:
                    xs.append(j + (i - (len(runners) - 1) / 2) * width)
                    ys.append(v)
                    hatches.append("//" if key == "steady_events_per_s" and not row.get("per_event_resolved") else "")
            if xs:
                ax.bar(xs, ys, width=width, color=f"C{i % 10}", hatch=hatches)
                shown.append(i)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads, rotation=30)
        ax.legend(handles=[Patch(facecolor=f"C{i % 10}", label=runners[i]) for i in shown], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("tidal: throughput, start-up and latency by runner" + (" and other engines" if report.get("peer_results") else ""))
    fig.savefig(path, dpi=100, format=fmt)
    plt.close(fig)


def write_reports(report: dict[str, Any], out: str) -> dict[str, str]:
    """Write results.json, results.md and results.png into ``out`` (keyscaling.png and latency.png when those
    studies ran); return their paths."""
    os.makedirs(out, exist_ok=True)
    paths = {kind: os.path.join(out, f"results.{kind}") for kind in ("json", "md", "png")}
    with open(paths["json"], "w") as f:
        json.dump(report, f, indent=2, default=str)
    with open(paths["md"], "w") as f:
        f.write(markdown(report))
    if report["results"]:
        chart(report, paths["png"])
    else:
        del paths["png"]
    if "key_scaling" in report:
        from tidal.benchmarks.keyscaling import key_scaling_chart

        paths["keyscaling"] = os.path.join(out, "keyscaling.png")
        key_scaling_chart(report["key_scaling"], paths["keyscaling"])
    if "latency_sweep" in report:
        from tidal.benchmarks.latency import sweep_chart

        paths["latency"] = os.path.join(out, "latency.png")
        sweep_chart(report["latency_sweep"], paths["latency"])
    return paths


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tidal.benchmarks.cli import add_bench_arguments, run_bench

    parser = argparse.ArgumentParser(prog="python -m tidal.benchmarks.harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
