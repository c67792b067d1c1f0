"""Latency against throughput: each runner swept along its knob and the offered input rate.

A native streaming engine and a micro-batch engine trade latency for
throughput differently, and a knob moves an engine along its own curve: the
bundle size on the direct and Ray runners (how many elements a source hands
on at once), the batch interval on the micro-batch runner. For every runner,
every value of its knob and every offered rate, the workload (by default the
Yahoo benchmark) is streamed from a paced source and measured.

Event time runs in step with the wall clock, as in the original benchmark
(whose generator stamps events with the time it sends them), scaled so that
one 10 s window lasts ``window_wall`` seconds of wall-clock time at every
rate: the windows close as often at 2,000 events/s as at 50,000, and a
point's latency says how long after its window was complete a result came.
Events are out of order by up to ``disorder_wall`` seconds (the watermark
trails by as much).


* **sustained throughput** — input events / (the last result reaching the
  sink − the first event being due). An engine that keeps up sustains the
  offered rate; one that cannot falls behind it;
* **latency p50 / p99** — the workload's latency (for Yahoo: a window's
  result reaching the sink − its last event), counted from when each event was
  *due* at the offered rate, not from when the source managed to release it,
  so an engine that holds its source back pays for the wait (no coordinated
  omission);
* **same result** — the streamed result must equal the one computed in plain
  Python, else the point fails and the command exits with 1.

>>> report = run_latency_sweep(SweepConfig(runners=("direct",), rates=(4000.0,), knobs={"direct": (1000,)}, duration=0.5, quiet=True))
>>> point = report["points"][0]
>>> (point["runner"], point["knob"], point["value"], point["same_result"], point["events"])
('direct', 'bundle_size', 1000, True, 2000)
>>> point["latency_p50_ms"] <= point["latency_p99_ms"] and 0 < point["sustained_events_per_s"] <= 4000 * 1.01
True
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import attrs

from tidal.benchmarks.collect import Collected
from tidal.benchmarks.harness import RunnerSession, latencies, open_runner, percentile, progress_bar, result_digest, run_streaming
from tidal.benchmarks.peers import PEERS, PeerRequest, detect_peers, run_peer
from tidal.benchmarks.workloads import Workload, keyed_sum_workload, yahoo_workload
from tidal.runners.registry import registered_runners
from tidal.runners.runner import Runner

__all__ = ["Knob", "KNOBS", "SweepConfig", "run_latency_sweep", "sweep_table", "sweep_notes", "sweep_chart", "frontier"]


@attrs.frozen
class Knob:
    """A runner's latency/throughput knob: its name, the values swept by default, and a runner set to a value."""

    name: str
    values: tuple[Any, ...]
    make: Callable[[Any], Runner]
    unit: str = ""


def _direct(bundle_size: Any) -> Runner:
    from tidal.runners.direct import DirectRunner

    return DirectRunner(bundle_size=int(bundle_size))


def _ray(bundle_size: Any) -> Runner:
    from tidal.runners.ray import RayRunner

    return RayRunner(bundle_size=int(bundle_size))


def _microbatch(interval: Any) -> Runner:
    from tidal.runners.microbatch import MicroBatchRunner

    return MicroBatchRunner(batch_interval=float(interval))


#: The knob of each runner and the values swept by default.
KNOBS: dict[str, Knob] = {
    "direct": Knob("bundle_size", (10, 1_000, 100_000), _direct),
    "ray": Knob("bundle_size", (10, 1_000, 50_000), _ray),
    "microbatch": Knob("batch_interval", (0.05, 0.25, 1.0), _microbatch, " s"),
}


#: The workloads the sweep can stream, each made for a rate of event time (events per second of event time).
SWEEP_WORKLOADS: dict[str, Callable[[float], Workload]] = {
    "yahoo": lambda events_per_second: yahoo_workload(events_per_second=events_per_second, name="yahoo"),
    "windowed": lambda events_per_second: keyed_sum_workload(100, events_per_second=events_per_second),
}
#: The event-time length of the sweep's windows (both workloads use 10 s windows).
_WINDOW = 10.0


@attrs.frozen
class SweepConfig:
    """What the sweep runs: a workload, runners, offered rates, knob values, and how long each point streams."""

    workload: str = "yahoo"
    runners: tuple[str, ...] | None = None  # None: every registered runner that has a knob
    rates: tuple[float, ...] = (2_000.0, 10_000.0, 50_000.0)
    #: Knob values per runner; a runner not named here sweeps its default values (KNOBS).
    knobs: Mapping[str, Sequence[Any]] = attrs.field(factory=dict)
    #: Seconds of input at each rate (at least ``min_events`` events).
    duration: float = 2.0
    min_events: int = 2000
    #: Wall-clock seconds one 10 s event-time window lasts, and how far out of order events are, in wall-clock seconds.
    window_wall: float = 0.25
    disorder_wall: float = 0.005
    timeout: float = 120.0
    quiet: bool = False
    #: Other engines to stream too when installed (``flink``, ``spark``: :mod:`tidal.benchmarks.peers.streaming`), at this parallelism.
    peers: tuple[str, ...] = ()
    peer_parallelism: int = 2
    peer_timeout: float = 1800.0


def peer_knob(name: str) -> Knob:
    """The latency knob of peer engine ``name`` (its module's ``STREAM_KNOB``), as a :class:`Knob` that makes no tidal runner.

    >>> peer_knob("spark").name, peer_knob("flink").name
    ('trigger_interval', 'buffer_timeout_ms')
    """
    import importlib

    knob_name, values = importlib.import_module(f"tidal.benchmarks.peers.{name}").STREAM_KNOB

    def make(value: Any) -> Runner:
        raise TypeError(f"{name} is another engine: it streams in a process of its own, not as a tidal runner")

    return Knob(knob_name, tuple(values), make, " s" if knob_name == "trigger_interval" else " ms")


def _check(config: SweepConfig) -> None:
    if config.workload not in SWEEP_WORKLOADS:
        raise ValueError(f"the latency sweep streams one of {', '.join(SWEEP_WORKLOADS)}, not {config.workload!r}")
    if not config.rates or min(config.rates) <= 0:
        raise ValueError(f"offered rates must be positive, not {list(config.rates)}")
    if config.duration <= 0 or config.window_wall <= 0 or config.disorder_wall < 0:
        raise ValueError(
            f"duration and window_wall must be positive and disorder_wall not negative, not {config.duration}, "
            f"{config.window_wall} and {config.disorder_wall}"
        )
    unknown = [r for r in config.knobs if r not in KNOBS and r not in PEERS]
    if unknown:
        raise ValueError(f"no knob known for runner(s) {unknown}; runners with a knob: {', '.join([*KNOBS, *PEERS])}")
    strangers = [p for p in config.peers if p not in PEERS]
    if strangers:
        raise ValueError(f"unknown engine(s) {strangers}; the other engines are {', '.join(PEERS)}")


def run_latency_sweep(config: SweepConfig, sessions: Sequence[RunnerSession] | None = None) -> dict[str, Any]:
    """Stream the workload at every offered rate under every knob value of every runner; the report (JSON-ready)."""
    _check(config)
    rates = sorted(set(config.rates))
    own: list[RunnerSession] = []
    skipped: dict[str, str] = {}
    if sessions is None:
        for name in config.runners or [r for r in registered_runners() if r in KNOBS]:
            if name not in registered_runners() or name not in KNOBS:
                skipped[name] = "not registered" if name not in registered_runners() else "no knob known for it"
                continue
            try:
                own.append(open_runner(name))
            except Exception as exc:
                skipped[name] = f"{type(exc).__name__}: {exc}"
        sessions = own
    swept = [s for s in sessions if s.name in KNOBS]
    for s in sessions:
        if s.name not in KNOBS:
            skipped[s.name] = "no knob known for it"
    inputs: dict[float, tuple[Workload, list[Any], str]] = {}
    present, missing = detect_peers(list(config.peers)) if config.peers else ({}, {})
    skipped.update(missing)
    peer_knobs = {name: peer_knob(name) for name in present}
    bar = progress_bar(
        sum(len(config.knobs.get(s.name, KNOBS[s.name].values)) for s in swept) * len(rates)
        + sum(len(config.knobs.get(name, knob.values)) for name, knob in peer_knobs.items()) * len(rates),
        config.quiet,
    )
    points: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for session in swept:
            knob = KNOBS[session.name]
            for value in config.knobs.get(session.name, knob.values):
                for rate in rates:
                    if rate not in inputs:
                        bar.set_postfix_str(f"input at {rate:,.0f} events/s")
                        inputs[rate] = _input(config, rate)
                    workload, elements, expected = inputs[rate]
                    bar.set_postfix_str(f"{session.name}, {knob.name}={value}, {rate:,.0f} events/s")
                    points.append(_point(workload, session.name, knob, value, rate, elements, expected, config))
                    bar.update()
        for name, python in present.items():
            points.extend(_peer_points(name, python, peer_knobs[name], rates, config, bar))
    finally:
        bar.close()
        for session in own:
            if session.stop is not None:
                session.stop()
    knobs = {**{s.name: KNOBS[s.name] for s in swept}, **peer_knobs}
    return {
        "config": {**attrs.asdict(config, filter=lambda a, v: a.name != "knobs"), "knobs": {
            name: list(config.knobs.get(name, knob.values)) for name, knob in knobs.items()
        }, "rates": rates},
        "knob_names": {name: knob.name for name, knob in knobs.items()},
        "workload": config.workload,
        "description": SWEEP_WORKLOADS[config.workload](1.0).description,
        "runners": list(knobs),
        "peers": list(peer_knobs),
        "skipped_runners": skipped,
        "points": points,
        "total_seconds": time.perf_counter() - started,
    }


def _peer_points(name: str, python: Any, knob: Knob, rates: list[float], config: SweepConfig, bar: Any) -> list[dict[str, Any]]:
    """Stream the workload on the other engine ``name`` at every rate and knob value (in one process of its own); its points."""
    specs = []
    for value in config.knobs.get(name, knob.values):
        for rate in rates:
            specs.append({
                "rate": rate, "value": value, "events": max(config.min_events, int(rate * config.duration)),
                "events_per_second": rate * config.window_wall / _WINDOW, "out_of_orderness": config.disorder_wall * _WINDOW / config.window_wall,
                "timeout": config.timeout,
            })
    bar.set_postfix_str(f"{name}: starting")
    done = [0]

    def progress(n: int) -> None:
        if n > done[0]:
            bar.update(n - done[0])
            done[0] = n
            bar.set_postfix_str(f"{name}: {n}/{len(specs)} points")

    request = PeerRequest(workloads=(), sizes=(), repeats=1, parallelism=config.peer_parallelism, stream=tuple(specs), stream_workload=config.workload)
    report = run_peer(name, python, request, config.peer_timeout, on_progress=progress)
    bar.update(max(0, len(specs) - done[0]))
    points: list[dict[str, Any]] = list(report.get("stream_points", []))
    for point in points:
        point.pop("traceback", None)
        point["startup_s"] = report.get("startup_s")
    for spec in specs[len(points):]:  # what the engine never got to
        points.append({
            "runner": name, "knob": knob.name, "value": spec["value"], "offered_events_per_s": spec["rate"], "events": spec["events"],
            "error": report.get("error") or f"the {name} worker stopped before this point", "same_result": None,
        })
    return points


def _input(config: SweepConfig, rate: float) -> tuple[Workload, list[Any], str]:
    """The workload with event time in step with the wall clock at ``rate``, its input and its expected result's digest."""
    events_per_second = rate * config.window_wall / _WINDOW  # one window of event time per window_wall of wall time
    workload = SWEEP_WORKLOADS[config.workload](events_per_second)
    n = max(config.min_events, int(rate * config.duration))
    elements = workload.make_input(n, config.disorder_wall * _WINDOW / config.window_wall)
    assert workload.expected is not None
    return workload, elements, result_digest(workload.canonical(workload.expected(elements)))


def _point(workload: Workload, runner: str, knob: Knob, value: Any, rate: float, elements: list[Any], expected: str, config: SweepConfig) -> dict[str, Any]:
    point: dict[str, Any] = {"runner": runner, "knob": knob.name, "value": value, "offered_events_per_s": rate, "events": len(elements)}
    try:
        outputs, arrivals = run_streaming(
            workload, knob.make(value), elements, rate, config.disorder_wall * _WINDOW / config.window_wall, config.timeout, record_due=True
        )
    except Exception as exc:
        point.update(error=f"{type(exc).__name__}: {exc}", same_result=None)
        return point
    point.update(measure_point(workload, outputs, arrivals, elements, expected))
    return point


def measure_point(
    workload: Workload, outputs: Sequence[Collected], arrivals: Sequence[tuple[int, float]], elements: Sequence[Any], expected: str | None = None
) -> dict[str, Any]:
    """A point's measures from what a streamed run gave: sustained throughput, p50/p99 latency, same result.

    ``arrivals`` pairs each input's event timestamp with the wall time it was
    due; ``expected`` is the digest of the right result (computed in plain
    Python from ``elements`` when not given).
    """
    if expected is None:
        assert workload.expected is not None
        expected = result_digest(workload.canonical(workload.expected(list(elements))))
    lat = latencies(workload, outputs, arrivals, elements)
    first_due = min(wall for _, wall in arrivals) if arrivals else None
    last_out = max((o.emitted_at for o in outputs), default=None)
    span = None if first_due is None or last_out is None else last_out - first_due
    return dict(
        error=None,
        same_result=result_digest(workload.canonical([o.value for o in outputs])) == expected,
        results=len(outputs),
        sustained_events_per_s=len(elements) / span if span and span > 0 else None,
        latency_p50_ms=None if not lat else percentile(lat, 50) * 1000.0,  # type: ignore[operator]
        latency_p99_ms=None if not lat else percentile(lat, 99) * 1000.0,  # type: ignore[operator]
        latency_results=len(lat),
    )


def frontier(points: Sequence[dict[str, Any]], runner: str) -> list[dict[str, Any]]:
    """A runner's curve: at each offered rate, the point of the knob value with the lowest p99 latency.

    >>> pts = [{"runner": "r", "offered_events_per_s": 10, "latency_p99_ms": 5.0, "value": 1, "error": None},
    ...        {"runner": "r", "offered_events_per_s": 10, "latency_p99_ms": 2.0, "value": 2, "error": None},
    ...        {"runner": "r", "offered_events_per_s": 20, "latency_p99_ms": 9.0, "value": 1, "error": None}]
    >>> [(p["offered_events_per_s"], p["value"]) for p in frontier(pts, "r")]
    [(10, 2), (20, 1)]
    """
    best: dict[float, dict[str, Any]] = {}
    for p in points:
        if p["runner"] != runner or p.get("error") or p.get("latency_p99_ms") is None:
            continue
        rate = p["offered_events_per_s"]
        if rate not in best or p["latency_p99_ms"] < best[rate]["latency_p99_ms"]:
            best[rate] = p
    return [best[r] for r in sorted(best)]


def _num(v: Any, fmt: str = "{:,.0f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def sweep_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the latency-throughput table."""
    header = ["runner", "knob", "offered events/s", "sustained events/s", "p50 latency (ms)", "p99 latency (ms)", "same result"]
    cells = []
    for p in report["points"]:
        knob = f"{p['knob']}={p['value']:g}" if isinstance(p["value"], float) else f"{p['knob']}={p['value']:,}"
        if p.get("error"):
            cells.append([p["runner"], knob, _num(p["offered_events_per_s"]), "failed", "", "", p["error"][:60]])
            continue
        cells.append([
            p["runner"], knob, _num(p["offered_events_per_s"]), _num(p["sustained_events_per_s"]),
            _num(p["latency_p50_ms"], "{:,.1f}"), _num(p["latency_p99_ms"], "{:,.1f}"), "yes" if p["same_result"] else "NO",
        ])
    return header, cells


def sweep_notes(report: dict[str, Any]) -> list[str]:
    """What the latency-throughput figures are."""
    cfg = report["config"]
    notes = [
        f"Latency against throughput: {report['workload']} ({report['description'].split(';')[0]}) streamed from a paced source for "
        f"{cfg['duration']:g} s (at least {cfg['min_events']:,} events) at each offered rate; event time keeps step with the wall "
        f"clock so that a 10 s window lasts {cfg['window_wall']:g} s at every rate, events {cfg['disorder_wall'] * 1000:g} ms out of order. "
        "Sustained events/s = input events / (last result at the sink - first event due). Latency is counted from when each event "
        "was due at the offered rate (an engine that holds its source back pays for the wait): a window's result at the sink - "
        "the window's last event.",
        "Knobs: " + "; ".join(f"{r}: {report['knob_names'][r]} {', '.join(map(str, cfg['knobs'][r]))}" for r in report["runners"]) + ".",
    ]
    bad = [f"{p['runner']} {p['knob']}={p['value']} at {p['offered_events_per_s']:,.0f}/s" for p in report["points"] if p.get("error") or p.get("same_result") is False]
    notes.append("Every streamed result equals the one computed in plain Python." if not bad else f"FAILED or DIFFERENT: {', '.join(bad)}.")
    if report.get("peers"):
        notes.append(
            f"Other engines ({', '.join(report['peers'])}) read the same events at the same rates from a loopback socket (their own "
            "socket sources), in a process of their own at parallelism "
            f"{cfg.get('peer_parallelism', 2)}; their rows come back through a socket sink (Flink) or foreachBatch (Spark) and are timed "
            "on arrival; start-up is not counted (Spark's clock starts after its query's first micro-batch)."
        )
    for name, why in report.get("skipped_runners", {}).items():
        notes.append(f"Not swept: {name} ({why}).")
    return notes


def sweep_chart(report: dict[str, Any], path: str | Any, fmt: str | None = None) -> None:
    """One chart: p99 latency against sustained throughput, a bold curve per runner (its best knob value at each
    offered rate) over faint lines for each knob value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    styles = [":", "-.", "--", (0, (1, 3)), (0, (5, 5))]
    for i, runner in enumerate(report["runners"]):
        mine = [p for p in report["points"] if p["runner"] == runner and not p.get("error") and p.get("latency_p99_ms") is not None]
        values = list(dict.fromkeys(p["value"] for p in mine))
        for j, value in enumerate(values):
            pts = sorted((p for p in mine if p["value"] == value), key=lambda p: p["offered_events_per_s"])
            ax.plot(
                [p["sustained_events_per_s"] for p in pts], [p["latency_p99_ms"] for p in pts], linestyle=styles[j % len(styles)],
                marker=".", color=f"C{i}", alpha=0.45, linewidth=1, label=f"{runner} {report['knob_names'][runner]}={value}",
            )
        best = frontier(report["points"], runner)
        if best:
            ax.plot([p["sustained_events_per_s"] for p in best], [p["latency_p99_ms"] for p in best], "-o", color=f"C{i}", linewidth=2.5, label=f"{runner} (best knob per rate)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sustained throughput, events/s (log)")
    ax.set_ylabel("p99 latency, ms (log)")
    ax.set_title(f"Latency against throughput: {report['workload']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=100, format=fmt)
    plt.close(fig)
