"""The process that runs one peer engine: ``python -m tidal.benchmarks.peers.worker REQUEST.json``.

It runs in the engine's own virtualenv. It starts the engine once and
reports that start-up apart (``startup_s``: the session or environment, and a
tiny warm-up job of each idiom). Then, for every workload, size and variant
of the request, it builds the input the tidal runners read (the same
generator, the same seed), turns it into the engine's tables outside the
timed region, and runs the job ``repeats`` times: each run is timed from
handing the input to the engine to the result collected in this process.
Each run's result, turned back into tidal's tuples, is reduced to the digest
the harness compares with the tidal runners' (the canonical form of
:mod:`tidal.benchmarks.workloads`); the last run's result is kept in a pickle
for a look when they differ.

It writes ``result.json`` into the request's ``out`` folder after every job,
so what finished survives a crash:

``{"engine", "version", "startup_s", "parallelism", "runs": [{"workload",
"variant", "events", "seconds": [...], "digests": [...], "results",
"error"}], "error"}``; with ``stream`` in the request, also ``"stream_points"``:
the latency sweep's points (see :mod:`.streaming`).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pickle
import sys
import time
import traceback
from typing import Any

__all__ = ["main", "run_request"]


def _write(path: str, report: dict[str, Any]) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)


def run_request(request: dict[str, Any]) -> dict[str, Any]:
    """Run everything ``request`` asks for; the report (also written to ``out/result.json`` as it grows)."""
    from tidal.benchmarks.harness import result_digest
    from tidal.benchmarks.peers import PEERS
    from tidal.benchmarks.peers.inputs import input_tables
    from tidal.benchmarks.workloads import WORKLOADS

    name = request["engine"]
    peer = PEERS[name]
    engine = importlib.import_module(f"tidal.benchmarks.peers.{name}")
    out = request["out"]
    result_path = os.path.join(out, "result.json")
    variants = list(request.get("variants") or peer.variants)
    report: dict[str, Any] = {
        "engine": name, "version": None, "python": sys.executable, "startup_s": None,
        "parallelism": request["parallelism"], "runs": [], "error": None,
    }
    try:
        report["version"] = engine.version()
        started = time.perf_counter()
        session = engine.start(request["parallelism"])
        report["session_s"] = time.perf_counter() - started
        engine.warm_up(session)
        report["startup_s"] = time.perf_counter() - started
    except Exception as exc:
        report["error"] = f"{name} did not start: {type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()[-3000:]
        _write(result_path, report)
        return report
    _write(result_path, report)
    sizes = sorted(set(request["sizes"]))
    try:
        if request.get("stream"):
            _stream(engine, session, request, report, result_path)
        for wname in request["workloads"]:
            workload = WORKLOADS[wname]
            full = workload.make_input(sizes[-1], 0.0)
            for n in sizes:
                base = input_tables(wname, full[:n])
                for variant in variants:
                    job = engine.JOBS.get((wname, variant))
                    entry: dict[str, Any] = {"workload": wname, "variant": variant, "events": n, "seconds": [], "digests": [], "error": None}
                    report["runs"].append(entry)
                    if job is None:
                        entry["error"] = f"no {variant} version of {wname} for {name}"
                        continue
                    run, convert = job
                    try:
                        # An idiom that reads its input from somewhere (files, for a streaming query)
                        # gets it put there here, outside the timed region.
                        prepare = getattr(engine, "prepare", None)
                        tables = prepare(session, variant, wname, base) if prepare is not None else base
                        for _ in range(request["repeats"]):
                            gc.collect()
                            t0 = time.perf_counter()
                            collected = run(session, tables)
                            entry["seconds"].append(time.perf_counter() - t0)
                            values = convert(collected)
                            entry["digests"].append(result_digest(workload.canonical(values)))
                            entry["results"] = len(values)
                        with open(os.path.join(out, f"out-{wname}-{variant}-{n}.pkl"), "wb") as f:
                            pickle.dump(values, f, protocol=pickle.HIGHEST_PROTOCOL)
                    except Exception as exc:
                        entry["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
                        entry["traceback"] = traceback.format_exc()[-3000:]
                    _write(result_path, report)
    finally:
        try:
            session.close()
        except Exception:
            pass
    _write(result_path, report)
    return report


def _describe(exc: BaseException) -> str:
    """An error in a line or two: its first line and, for a Java exception, the root cause (the last "Caused by")."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else ""
    causes = [line.strip() for line in text.splitlines() if line.strip().startswith("Caused by:")]
    return f"{type(exc).__name__}: {first[:500]}" + (f" ({causes[-1][:500]})" if causes else "")


def _stream(engine: Any, session: Any, request: dict[str, Any], report: dict[str, Any], result_path: str) -> None:
    """The request's points of the latency sweep: the workload streamed from a paced socket at each rate and knob value."""
    from tidal.benchmarks.peers.streaming import stream_point

    workload = request["stream_workload"]
    job = getattr(engine, "STREAMS", {}).get(workload)
    knob = getattr(engine, "STREAM_KNOB", ("knob", ()))[0]
    points = report.setdefault("stream_points", [])
    for spec in request["stream"]:
        point: dict[str, Any] = {
            "runner": report["engine"], "knob": knob, "value": spec["value"], "offered_events_per_s": spec["rate"], "events": spec["events"],
        }
        points.append(point)
        if job is None:
            point.update(error=f"no paced-stream version of {workload} for {report['engine']}", same_result=None)
        else:
            try:
                gc.collect()
                point.update(stream_point(
                    workload, spec["events_per_second"], spec["events"], spec["out_of_orderness"], spec["rate"],
                    lambda server, info: job(session, server, {**info, "timeout": spec.get("timeout", 300.0)}, spec["value"]),
                    getattr(engine, "STREAM_WAIT", False),
                ))
            except Exception as exc:
                point.update(error=_describe(exc), same_result=None, traceback=traceback.format_exc()[-3000:])
        _write(result_path, report)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tidal.benchmarks.peers.worker REQUEST.json", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        request = json.load(f)
    report = run_request(request)
    return 1 if report["error"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
