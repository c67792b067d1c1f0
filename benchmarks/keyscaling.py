"""Key scaling: the throughput of the Yahoo query and of a keyed windowed sum as the number of keys grows.

For each key count (default 100, 10,000 and 1,000,000), each workload and
each runner, the batch input is run at two sizes, ``repeats`` times each, as
the runner comparison does (:func:`tidal.benchmarks.harness.cost_summary`):
the end-to-end rate at the larger size, and a line through the medians that
tells the fixed cost of a job (Ray's actors, the Yahoo ad table) from its
steady-state rate. Every run's result must equal the one computed in plain
Python, else the row fails and the command exits with 1.

The keys are the Yahoo benchmark's campaigns (its ad table grows with them:
``ads_per_campaign`` ads each) and the keyed sum's keys. Event time advances
by ``events_per_second`` events per second, so a 10 s window holds ten
seconds' worth of events and the keyed state of a window holds up to that many
keys; the table says how many (window, key) results each run produced.

>>> report = run_key_scaling(KeyScalingConfig(keys=(10, 1000), runners=("direct",), sizes=(200, 2000), repeats=1, quiet=True))
>>> [(r["workload"], r["keys"], r["same_result"]) for r in report["results"]]
[('yahoo', 10, True), ('yahoo', 1000, True), ('keyed-sum', 10, True), ('keyed-sum', 1000, True)]
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Sequence

import attrs

from tidal.benchmarks.harness import (
    RunnerSession, cost_summary, one_digest, open_runner, progress_bar, result_digest, run_batch,
)
from tidal.benchmarks.workloads import Workload, keyed_sum_workload, yahoo_workload
from tidal.runners.registry import registered_runners

__all__ = ["KeyScalingConfig", "DEFAULT_KEYS", "KEY_WORKLOADS", "scaling_workload", "run_key_scaling", "key_scaling_table", "key_scaling_chart"]

DEFAULT_KEYS = (100, 10_000, 1_000_000)
#: The workloads whose key count is scaled.
KEY_WORKLOADS = ("yahoo", "keyed-sum")


@attrs.frozen
class KeyScalingConfig:
    """What the key-scaling run measures."""

    keys: tuple[int, ...] = DEFAULT_KEYS
    workloads: tuple[str, ...] = KEY_WORKLOADS
    runners: tuple[str, ...] | None = None  # None: every registered runner
    #: Two sizes far apart, for the fit of fixed and per-event cost; the larger gives the end-to-end rate.
    sizes: tuple[int, ...] = (20_000, 200_000)
    repeats: int = 3
    #: Events per second of event time: a 10 s window holds ten times this many events.
    events_per_second: float = 10_000.0
    #: Ads per campaign in the Yahoo ad table (the original has 10; one keeps a million campaigns' table small).
    ads_per_campaign: int = 1
    quiet: bool = False


def scaling_workload(kind: str, keys: int, config: KeyScalingConfig) -> Workload:
    """The workload ``kind`` ("yahoo" or "keyed-sum") at ``keys`` keys.

    >>> scaling_workload("yahoo", 1000, KeyScalingConfig()).name
    'yahoo-1000'
    """
    if kind == "yahoo":
        return yahoo_workload(campaigns=keys, ads_per_campaign=config.ads_per_campaign, events_per_second=config.events_per_second)
    if kind == "keyed-sum":
        return keyed_sum_workload(keys, events_per_second=config.events_per_second)
    raise ValueError(f"unknown key-scaling workload {kind!r}; known: {', '.join(KEY_WORKLOADS)}")


def _check(config: KeyScalingConfig) -> tuple[int, ...]:
    unknown = [w for w in config.workloads if w not in KEY_WORKLOADS]
    if unknown:
        raise ValueError(f"unknown key-scaling workloads {unknown}; known: {', '.join(KEY_WORKLOADS)}")
    if not config.keys or min(config.keys) < 1:
        raise ValueError(f"key counts must be positive, not {list(config.keys)}")
    if config.repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {config.repeats}")
    if not config.sizes or min(config.sizes) < 1:
        raise ValueError(f"sizes must be positive event counts, not {list(config.sizes)}")
    return tuple(sorted(set(config.sizes)))


def run_key_scaling(config: KeyScalingConfig, sessions: Sequence[RunnerSession] | None = None) -> dict[str, Any]:
    """Run every workload at every key count on every runner; the report (JSON-ready).

    ``sessions`` are runners already opened (by the runner comparison); without
    them the runners are opened here and Ray, if started here, is stopped at the end.
    """
    sizes = _check(config)
    own: list[RunnerSession] = []
    skipped: dict[str, str] = {}
    if sessions is None:
        for name in config.runners or registered_runners():
            if name not in registered_runners():
                skipped[name] = f"not registered (registered: {', '.join(registered_runners())})"
                continue
            try:
                own.append(open_runner(name))
            except Exception as exc:
                skipped[name] = f"{type(exc).__name__}: {exc}"
        sessions = own
    bar = progress_bar(len(config.workloads) * len(config.keys) * len(sessions) * len(sizes) * config.repeats, config.quiet)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for kind in config.workloads:
            for keys in config.keys:
                workload = scaling_workload(kind, keys, config)
                bar.set_postfix_str(f"{workload.name}: input")
                full = workload.make_input(sizes[-1], 0.0)
                inputs = {n: full[:n] for n in sizes}
                assert workload.expected is not None
                expected = {n: result_digest(workload.canonical(workload.expected(inputs[n]))) for n in sizes}
                for session in sessions:
                    rows.append(_measure(workload, kind, keys, session, inputs, expected, config.repeats, bar))
    finally:
        bar.close()
        for session in own:
            if session.stop is not None:
                session.stop()
    return {
        "config": {**attrs.asdict(config), "sizes": list(sizes)},
        "runners": [s.name for s in sessions],
        "skipped_runners": skipped,
        "results": rows,
        "total_seconds": time.perf_counter() - started,
        "cpus": os.cpu_count(),
    }


def _measure(
    workload: Workload, kind: str, keys: int, session: RunnerSession, inputs: dict[int, list[Any]], expected: dict[int, str], repeats: int, bar: Any
) -> dict[str, Any]:
    sizes = sorted(inputs)
    row: dict[str, Any] = {"workload": kind, "keys": keys, "runner": session.name, "description": workload.description}
    runs: dict[int, list[float]] = {n: [] for n in sizes}
    seen: dict[int, set[str]] = {n: set() for n in sizes}
    results = 0
    done = 0
    try:
        for rep in range(repeats):
            for n in sizes:
                bar.set_postfix_str(f"{workload.name} on {session.name}, {n:,} events, run {rep + 1}/{repeats}")
                seconds, outputs, _ = run_batch(workload, session.name, inputs[n])
                runs[n].append(seconds)
                seen[n].add(result_digest(workload.canonical([o.value for o in outputs])))
                results = len(outputs)
                bar.update()
                done += 1
    except Exception as exc:
        bar.update(repeats * len(sizes) - done)
        row.update(error=f"{type(exc).__name__}: {exc}", same_result=None)
        return row
    differing = [n for n in sizes if one_digest(seen[n]) != expected[n]]
    row.update(cost_summary(runs))
    row.update(
        error=None,
        results=results,
        same_result=not differing,
        differing_sizes=differing,
        median_seconds_per_size={n: statistics.median(runs[n]) for n in sizes},
    )
    return row


def _rate(v: Any, rough: bool = False) -> str:
    if v is None:
        return "n/a"
    return ("~" if rough else "") + f"{v:,.0f}"


def key_scaling_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the key-scaling table (terminal, Markdown and HTML share them)."""
    header = ["workload", "keys", "runner", "events/s", "fixed cost (ms)", "steady-state events/s", "results", "same as plain Python"]
    cells = []
    for r in report["results"]:
        if r.get("error"):
            cells.append([r["workload"], f"{r['keys']:,}", r["runner"], "failed", "", "", "", r["error"][:60]])
            continue
        fixed = r.get("fixed_cost_s")
        cells.append([
            r["workload"], f"{r['keys']:,}", r["runner"], _rate(r.get("events_per_s")),
            "n/a" if fixed is None else f"{max(fixed, 0.0) * 1000:,.0f}",
            "in noise" if r.get("steady_events_per_s") is None else _rate(r["steady_events_per_s"], not r.get("per_event_resolved")),
            f"{r['results']:,}", "yes" if r["same_result"] else "NO",
        ])
    return header, cells


def key_scaling_notes(report: dict[str, Any]) -> list[str]:
    """What the key-scaling table's figures are."""
    cfg = report["config"]
    notes = [
        f"Key scaling: batch inputs of {', '.join(f'{n:,}' for n in cfg['sizes'])} events, every run done {cfg['repeats']} time(s), "
        f"the median counts; event time advances {cfg['events_per_second']:,.0f} events per second, so a 10 s window holds "
        f"{cfg['events_per_second'] * 10:,.0f} events. events/s: the larger size, start-up included; fixed cost and "
        "steady-state rate: the line through the medians at both sizes.",
        f"yahoo: keys are campaigns, with {cfg['ads_per_campaign']} ad(s) each in the ad table (a side input); "
        "keyed-sum: (key, value) pairs summed per key in 10 s windows.",
    ]
    bad = [f"{r['workload']} at {r['keys']:,} keys on {r['runner']}" for r in report["results"] if r.get("error") or r.get("same_result") is False]
    notes.append("Every result equals the one computed in plain Python." if not bad else f"FAILED or DIFFERENT: {', '.join(bad)}.")
    for name, why in report.get("skipped_runners", {}).items():
        notes.append(f"Skipped runner {name}: {why}.")
    return notes


def key_scaling_chart(report: dict[str, Any], path: str | Any, fmt: str | None = None) -> None:
    """One chart: events/s against keys (both log), a colour per runner, a line style per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    runners = list(dict.fromkeys(r["runner"] for r in report["results"]))
    styles = {"yahoo": ("-", "o"), "keyed-sum": ("--", "s")}
    for i, runner in enumerate(runners):
        for kind, (line, marker) in styles.items():
            points = sorted(
                (r["keys"], r["events_per_s"]) for r in report["results"]
                if r["runner"] == runner and r["workload"] == kind and not r.get("error") and r.get("events_per_s")
            )
            if points:
                ax.plot([k for k, _ in points], [v for _, v in points], line, marker=marker, color=f"C{i}", label=f"{runner} · {kind}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("keys (campaigns for yahoo)")
    ax.set_ylabel("events/s, end to end (log)")
    ax.set_title("Key scaling: throughput as the number of keys grows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100, format=fmt)
    plt.close(fig)
