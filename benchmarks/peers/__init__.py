"""Other engines as references: Apache Flink (PyFlink) and Apache Spark (PySpark), each in a virtualenv of its own.

Like apache-beam, the engines people would otherwise pick are optional
extras whose pins must not constrain tidal's environment: ``make bench-peers``
makes ``.venv-flink`` (apache-flink) and ``.venv-spark`` (pyspark, pandas < 3),
each with tidal installed too. The harness finds them (or the Pythons that
``TIDAL_FLINK_PYTHON`` / ``TIDAL_SPARK_PYTHON`` name), says which are missing,
and runs each present engine in a process of its own
(``python -m tidal.benchmarks.peers.worker``, see :mod:`.worker`): the same
workloads on the same inputs, written in the engine's own idioms — native
operators (Flink SQL, Spark DataFrames) and Python functions (Flink's
DataStream API, Spark RDDs with lambdas) — and their results compared with
tidal's.

>>> sorted(PEERS), PEERS["flink"].variants
(['flink', 'spark'], ('sql', 'datastream'))
>>> missing = {name: why for name, why in detect_peers(root="/nonexistent")[1].items()}
>>> missing["spark"]
'not installed (no /nonexistent/.venv-spark; `make bench-peers` installs pyspark==4.3.0)'
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import attrs

__all__ = ["Peer", "PEERS", "PEER_WORKLOADS", "INSTALL_COMMAND", "detect_peers", "peer_python", "run_peer", "PeerRequest"]

#: The command that installs the peers' virtualenvs.
INSTALL_COMMAND = "make bench-peers"

#: The workloads the peers implement (each in each variant), in the order the harness runs them.
PEER_WORKLOADS = ("wordcount", "windowed", "sessions", "q0", "q1", "q2", "q5", "yahoo")

#: The repository root (the package's folder: the repository root is the package).
ROOT = Path(__file__).resolve().parent.parent.parent


@attrs.frozen
class Peer:
    """An engine the harness compares tidal with: where it lives and how it describes itself."""

    name: str
    title: str
    venv: str
    requirements: tuple[str, ...]
    env_var: str
    #: Variant names, native first; ``variant_titles`` says what each is.
    variants: tuple[str, ...]
    variant_titles: Mapping[str, str]
    #: The classic comparison's rows: execution model, guarantee, fault tolerance, state, windowing.
    system: Mapping[str, str]


PEERS: dict[str, Peer] = {
    "flink": Peer(
        name="flink",
        title="Apache Flink (PyFlink)",
        venv=".venv-flink",
        requirements=("apache-flink==2.3.0",),
        env_var="TIDAL_FLINK_PYTHON",
        variants=("sql", "datastream"),
        variant_titles={
            "sql": "Flink SQL: native operators (window table functions, joins, aggregates)",
            "datastream": "DataStream API with Python functions (map, filter, key_by, windows, reduce)",
        },
        system={
            "execution_model": "native streaming: pipelined operators, record at a time; batch as a bounded stream",
            "guarantee": "exactly-once state (exactly-once output with transactional sinks)",
            "fault_tolerance": "asynchronous barrier snapshots (Chandy-Lamport) of operator state and source offsets; restart from the last checkpoint",
            "state": "keyed state per key group (heap or RocksDB backend), snapshotted in checkpoints",
            "windowing": "event-time tumbling, sliding, session and custom windows, watermarks, allowed lateness, triggers",
        },
    ),
    "spark": Peer(
        name="spark",
        title="Apache Spark (PySpark)",
        venv=".venv-spark",
        requirements=("pyspark==4.3.0", "pandas<3"),
        env_var="TIDAL_SPARK_PYTHON",
        variants=("dataframe", "structured", "rdd"),
        variant_titles={
            "dataframe": "DataFrames: native operators (window, session_window, joins, aggregates)",
            "structured": "Structured Streaming: the same operators as streaming queries over a folder of Parquet files, "
            "event-time watermarks, update mode, collected by foreachBatch",
            "rdd": "RDDs with Python lambdas (map, filter, reduceByKey, groupByKey)",
        },
        system={
            "execution_model": "micro-batch (Structured Streaming; continuous mode experimental); batch jobs of stages",
            "guarantee": "exactly-once state and output with replayable sources and idempotent or transactional sinks",
            "fault_tolerance": "write-ahead offset log and state-store checkpoints per micro-batch; lineage recomputation of lost partitions",
            "state": "state stores per partition (HDFS-backed or RocksDB), versioned per micro-batch",
            "windowing": "event-time tumbling, sliding and session windows with watermarks; output modes instead of triggers",
        },
    ),
}


def peer_python(peer: Peer, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The Python of the peer's virtualenv: ``$TIDAL_<NAME>_PYTHON``, or the venv once ``make bench-peers`` finished it."""
    if os.environ.get(peer.env_var):
        return Path(os.environ[peer.env_var])
    venv = Path(root if root is not None else ROOT) / peer.venv
    return venv / "bin" / "python" if (venv / ".installed").exists() else None


def detect_peers(names: Sequence[str] | None = None, root: str | os.PathLike[str] | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """The peers that are installed (name → Python) and those that are not (name → why), of ``names`` (default: all)."""
    present: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for name in names or list(PEERS):
        if name not in PEERS:
            missing[name] = f"unknown engine (known: {', '.join(PEERS)})"
            continue
        peer = PEERS[name]
        python = peer_python(peer, root)
        if python is None:
            where = Path(root if root is not None else ROOT) / peer.venv
            missing[name] = f"not installed (no {where}; `{INSTALL_COMMAND}` installs {peer.requirements[0]})"
        elif not python.exists():
            missing[name] = (
                f"not installed ({peer.env_var} names {python}, which does not exist)" if os.environ.get(peer.env_var)
                else f"not installed (no {python}; `{INSTALL_COMMAND}` installs {peer.requirements[0]})"
            )
        else:
            present[name] = python
    return present, missing


@attrs.frozen
class PeerRequest:
    """What a peer process runs: workloads × variants × sizes, each ``repeats`` times, at ``parallelism``."""

    workloads: tuple[str, ...]
    sizes: tuple[int, ...]
    repeats: int = 3
    parallelism: int = 2
    variants: tuple[str, ...] | None = None  # None: every variant of the engine
    #: Points of the latency sweep to stream (rate, knob value, events, events_per_second, out_of_orderness, timeout each).
    stream: tuple[dict[str, Any], ...] = ()
    stream_workload: str = "yahoo"


def run_peer(
    name: str,
    python: str | os.PathLike[str],
    request: PeerRequest,
    timeout: float = 3600.0,
    on_progress: Callable[[int], None] | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run the peer engine ``name`` in its own Python on ``request``; its report (see :mod:`.worker`).

    ``on_progress(runs done)`` is called as the worker's report grows. A
    worker that fails to start, dies or overruns ``timeout`` is reported as
    ``{"error": ...}`` with the end of what it printed. The worker's files
    (its report, its log, the last result of each job) stay in ``folder``;
    without one they go to a temporary folder that is removed.
    """
    if folder is None:
        with tempfile.TemporaryDirectory(prefix=f"tidal-peer-{name}-") as scratch:
            return run_peer(name, python, request, timeout, on_progress, scratch)
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    request_path = os.path.join(folder, "request.json")
    with open(request_path, "w") as f:
        json.dump({**attrs.asdict(request), "engine": name, "out": folder}, f)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # the peer's own virtualenv, not this one's packages
    log_path = os.path.join(folder, "worker.log")
    result_path = os.path.join(folder, "result.json")
    deadline = time.monotonic() + timeout
    try:
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [str(python), "-m", "tidal.benchmarks.peers.worker", request_path],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder,
            )
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    return {"error": f"the {name} worker did not finish within {timeout:g} s", "log": _tail(log_path)}
                time.sleep(0.5)
                if on_progress is not None:
                    on_progress(_runs_done(result_path))
    except OSError as exc:
        return {"error": f"the {name} worker could not start: {exc}", "log": ""}
    if not os.path.exists(result_path):
        return {"error": f"the {name} worker exited with {proc.returncode} and wrote no result", "log": _tail(log_path)}
    with open(result_path) as f:
        report: dict[str, Any] = json.load(f)
    report["folder"] = folder
    if on_progress is not None:
        on_progress(_runs_done(result_path))
    if proc.returncode != 0 and not report.get("error"):
        report["error"] = f"the {name} worker exited with {proc.returncode}"
    if report.get("error"):
        report["log"] = _tail(log_path)
    return report


def _runs_done(result_path: str) -> int:
    try:
        with open(result_path) as f:
            report = json.load(f)
    except (OSError, ValueError):
        return 0
    runs = sum(len(r.get("seconds", ())) or (1 if r.get("error") else 0) for r in report.get("runs", ()))
    return runs + len(report.get("stream_points", ()))


def _tail(path: str, chars: int = 3000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


