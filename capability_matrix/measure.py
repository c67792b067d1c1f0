"""The system comparison: how each runner executes, what it guarantees, and how fast it is.

Execution model, guarantee and fault tolerance are what the runner class
declares (attributes of the same names). Latency and throughput are measured
on one small standard workload by the benchmark harness (``tidal.benchmarks``),
the same way ``python -m tidal bench`` measures every workload.
"""

from __future__ import annotations

from typing import Any

from tidal.capability_matrix.case import CHECKPOINT_RESTORE
from tidal.capability_matrix.execute import runner_label
from tidal.runners.registry import registered_runners, resolve_runner
from tidal.runners.runner import Runner

__all__ = ["COMPARISON_WORKLOAD", "describe_runner", "measure_runner"]

#: The standard workload of the comparison (see tidal.benchmarks.workloads).
COMPARISON_WORKLOAD = "windowed"
_SIZES = (1000, 5000)
_STREAM_EVENTS = 1000
_STREAM_RATE = 2000.0


def describe_runner(runner: str | Runner) -> dict[str, Any]:
    """What a runner declares about itself; ``available`` is False when it cannot even be built."""
    name = runner_label(runner)
    info: dict[str, Any] = {
        "name": name,
        "class": None,
        "available": True,
        "unavailable_reason": None,
        "execution_model": None,
        "guarantee": None,
        "fault_tolerance": None,
        "supports_checkpoint_restore": False,
        "declared_limitations": {},
        "capability_notes": {},
        "comparison": None,
    }
    try:
        instance = runner if isinstance(runner, Runner) else resolve_runner(runner)
    except Exception as exc:
        info.update(available=False, unavailable_reason=f"{type(exc).__name__}: {exc}")
        return info
    cls = type(instance)
    info["class"] = f"{cls.__module__}.{cls.__qualname__}"
    for attr in ("execution_model", "guarantee", "fault_tolerance"):
        value = getattr(instance, attr, None)
        info[attr] = str(value) if value is not None else None
    info["supports_checkpoint_restore"] = bool(getattr(instance, CHECKPOINT_RESTORE, False))
    return info


def measure_runner(name: str) -> dict[str, Any]:
    """Throughput, fixed cost and latency of the standard workload on a registered runner."""
    from tidal.benchmarks.harness import BenchConfig, run_harness
    from tidal.benchmarks.workloads import WORKLOADS

    workload = WORKLOADS[COMPARISON_WORKLOAD]
    out: dict[str, Any] = {
        "workload": f"{workload.name}: {workload.description}",
        "events": None,
        "events_per_s": None,
        "fixed_cost_s": None,
        "steady_events_per_s": None,
        "latency_p50_ms": None,
        "latency_p99_ms": None,
        "error": None,
    }
    if name not in registered_runners():
        out["error"] = "not a registered runner"
        return out
    config = BenchConfig(
        workloads=(COMPARISON_WORKLOAD,), runners=(name,), sizes=_SIZES, stream_events=_STREAM_EVENTS,
        stream_rate=_STREAM_RATE, quiet=True, beam=False,
    )
    try:
        report = run_harness(config)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    rows = [r for r in report["results"] if r["runner"] == name]
    if not rows:
        out["error"] = report["skipped_runners"].get(name, "the harness did not run it")
        return out
    row = rows[0]
    if row.get("error"):
        out["error"] = row["error"]
        return out
    out.update(
        events=row.get("events"),
        events_per_s=row.get("events_per_s"),
        fixed_cost_s=row.get("fixed_cost_s"),
        steady_events_per_s=row.get("steady_events_per_s"),
        latency_p50_ms=row.get("latency_p50_ms"),
        latency_p99_ms=row.get("latency_p99_ms"),
    )
    return out
