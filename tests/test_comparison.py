"""The engine comparison: key scaling, latency against throughput, the other engines (Flink, Spark) and the report page.

The other engines live in virtualenvs of their own that ``make bench-peers``
makes (``make test`` does not: installing them would take longer than the
rest of the suite); without them the test that runs them is skipped with a
line naming that command. Everything else here runs without them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest

from tidal.benchmarks import harness, keyscaling, latency
from tidal.benchmarks.cli import add_bench_parser, exit_code
from tidal.benchmarks.collect import Collected
from tidal.benchmarks.harness import BenchConfig, result_digest, run_harness, write_reports
from tidal.benchmarks.keyscaling import KeyScalingConfig, run_key_scaling
from tidal.benchmarks.latency import KNOBS, Knob, SweepConfig, frontier, run_latency_sweep
from tidal.benchmarks.nexmark.generator import Auction, Bid, PacedEvents, Person
from tidal.benchmarks.peers import INSTALL_COMMAND, PEER_WORKLOADS, PEERS, PeerRequest, detect_peers, run_peer
from tidal.benchmarks.peers.inputs import input_tables, nexmark_event
from tidal.benchmarks.peers.spark import sessionize
from tidal.benchmarks.report import comparison_columns, load_matrix, to_report_html, write_report_page
from tidal.benchmarks.workloads import WORKLOADS
from tidal.model.window import TimestampedValue
from tidal.runners.direct import DirectRunner

ROOT = Path(__file__).resolve().parent.parent


# -- key scaling ---------------------------------------------------------------------------------
def test_key_scaling_measures_each_workload_at_each_key_count_and_checks_the_result() -> None:
    config = KeyScalingConfig(keys=(3, 400), runners=("direct", "microbatch"), sizes=(300, 1200), repeats=2, events_per_second=100.0, quiet=True)
    report = run_key_scaling(config)
    assert [(r["workload"], r["keys"], r["runner"]) for r in report["results"]] == [
        (w, k, r) for w in ("yahoo", "keyed-sum") for k in (3, 400) for r in ("direct", "microbatch")
    ]
    for row in report["results"]:
        assert row["error"] is None and row["same_result"] is True, row
        assert [len(t["runs"]) for t in row["times"]] == [2, 2]
        workload = keyscaling.scaling_workload(row["workload"], row["keys"], config)
        expected = workload.expected(workload.make_input(1200, 0.0))  # type: ignore[misc]
        assert row["results"] == len(expected)
    # 1,200 events over 12 s of event time: two windows, each holding all 3 keys.
    assert [r["results"] for r in report["results"] if r["workload"] == "keyed-sum" and r["keys"] == 3] == [6, 6]


def test_a_key_scaling_run_whose_output_differs_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = harness.run_batch

    def lossy(*args: Any, **kwargs: Any) -> Any:
        seconds, outputs, peak = real(*args, **kwargs)
        return seconds, outputs[1:], peak

    monkeypatch.setattr(keyscaling, "run_batch", lossy)
    report = run_key_scaling(KeyScalingConfig(keys=(5,), workloads=("keyed-sum",), runners=("direct",), sizes=(100, 200), repeats=1, quiet=True))
    (row,) = report["results"]
    assert row["same_result"] is False and row["differing_sizes"] == [100, 200]
    assert "FAILED or DIFFERENT: keyed-sum at 5 keys on direct." in keyscaling.key_scaling_notes(report)
    assert exit_code({"runners": ["direct"], "results": [], "equality": {}, "key_scaling": report}) == 1


def test_key_scaling_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match=r"unknown key-scaling workloads \['q5'\]; known: yahoo, keyed-sum"):
        run_key_scaling(KeyScalingConfig(workloads=("q5",)))
    with pytest.raises(ValueError, match=r"key counts must be positive, not \[0\]"):
        run_key_scaling(KeyScalingConfig(keys=(0,)))


# -- latency against throughput ------------------------------------------------------------------
def test_a_paced_source_records_when_each_event_was_due_not_when_a_slow_reader_took_it() -> None:
    elements = [TimestampedValue(i, i) for i in range(6)]
    for record_due in (True, False):
        recorded: list[list[tuple[int, float]]] = []
        for _ in PacedEvents(elements, 1000.0, on_done=recorded.append, record_due=record_due)():
            time.sleep(0.01)  # the reader takes ten times longer than the rate allows
        walls = [w for _, w in recorded[0]]
        gaps = [b - a for a, b in zip(walls, walls[1:])]
        if record_due:
            assert gaps == pytest.approx([0.001] * 5, abs=1e-6)  # epoch seconds: about 2e-7 resolution
        else:
            assert min(gaps) >= 0.009


@pytest.fixture
def knob_spy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    made: list[Any] = []

    def direct(bundle_size: Any) -> DirectRunner:
        made.append(bundle_size)
        return DirectRunner(bundle_size=int(bundle_size))

    monkeypatch.setitem(KNOBS, "direct", Knob("bundle_size", (7,), direct))
    return made


def test_the_sweep_streams_every_rate_under_every_knob_value_and_checks_the_result(knob_spy: list[Any]) -> None:
    config = SweepConfig(runners=("direct",), rates=(3000.0, 6000.0), knobs={"direct": (5, 50_000)}, duration=0.4, min_events=1000, quiet=True)
    report = run_latency_sweep(config)
    assert knob_spy == [5, 5, 50_000, 50_000]
    assert [(p["value"], p["offered_events_per_s"], p["events"]) for p in report["points"]] == [
        (5, 3000.0, 1200), (5, 6000.0, 2400), (50_000, 3000.0, 1200), (50_000, 6000.0, 2400)
    ]
    for p in report["points"]:
        assert p["error"] is None and p["same_result"] is True
        assert 0 < p["latency_p50_ms"] <= p["latency_p99_ms"]
        # Events are released no faster than offered: the last result cannot come before the last event was due.
        assert p["sustained_events_per_s"] <= p["offered_events_per_s"] * p["events"] / (p["events"] - 1)
    assert report["knob_names"] == {"direct": "bundle_size"} and report["config"]["knobs"] == {"direct": [5, 50_000]}


def test_a_sweep_point_whose_streamed_result_differs_fails(monkeypatch: pytest.MonkeyPatch, knob_spy: list[Any]) -> None:
    real = latency.run_streaming

    def lossy(*args: Any, **kwargs: Any) -> Any:
        outputs, arrivals = real(*args, **kwargs)
        return outputs[:-1], arrivals

    monkeypatch.setattr(latency, "run_streaming", lossy)
    report = run_latency_sweep(SweepConfig(runners=("direct",), rates=(4000.0,), duration=0.3, min_events=800, quiet=True))
    assert [p["same_result"] for p in report["points"]] == [False]
    assert exit_code({"runners": ["direct"], "results": [], "equality": {}, "latency_sweep": report}) == 1


def test_event_time_keeps_step_with_the_wall_clock_so_windows_close_as_often_at_every_rate() -> None:
    config = SweepConfig(window_wall=0.25, disorder_wall=0.0, duration=1.0, min_events=100)
    slow_workload, slow, _ = latency._input(config, 1000.0)
    fast_workload, fast, _ = latency._input(config, 8000.0)
    # A 10 s window is a quarter of a second of input at either rate: 250 and 2,000 events.
    assert Counter(tv.timestamp_us // 10_000_000 for tv in slow) == {0: 250, 1: 250, 2: 250, 3: 250}
    assert Counter(tv.timestamp_us // 10_000_000 for tv in fast) == {0: 2000, 1: 2000, 2: 2000, 3: 2000}


def test_a_runners_curve_is_its_best_knob_value_at_each_rate() -> None:
    points = [
        {"runner": "r", "offered_events_per_s": 1.0, "value": "a", "latency_p99_ms": 4.0, "error": None},
        {"runner": "r", "offered_events_per_s": 1.0, "value": "b", "latency_p99_ms": 3.0, "error": None},
        {"runner": "r", "offered_events_per_s": 2.0, "value": "a", "latency_p99_ms": 5.0, "error": None},
        {"runner": "r", "offered_events_per_s": 2.0, "value": "b", "latency_p99_ms": 1.0, "error": "TimeoutError"},
        {"runner": "s", "offered_events_per_s": 2.0, "value": "a", "latency_p99_ms": 0.5, "error": None},
    ]
    assert [(p["offered_events_per_s"], p["value"]) for p in frontier(points, "r")] == [(1.0, "b"), (2.0, "a")]


def test_the_sweep_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="the latency sweep streams one of yahoo, windowed, not 'q12'"):
        run_latency_sweep(SweepConfig(workload="q12"))
    with pytest.raises(ValueError, match=r"no knob known for runner\(s\) \['beam'\]"):
        run_latency_sweep(SweepConfig(knobs={"beam": (1,)}))


# -- the other engines: found, run apart, compared ---------------------------------------------------
def test_missing_engines_are_named_with_the_command_that_installs_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for peer in PEERS.values():
        monkeypatch.delenv(peer.env_var, raising=False)
    present, missing = detect_peers(root=tmp_path)
    assert present == {}
    assert missing == {
        "flink": f"not installed (no {tmp_path / '.venv-flink'}; `make bench-peers` installs apache-flink==2.3.0)",
        "spark": f"not installed (no {tmp_path / '.venv-spark'}; `make bench-peers` installs pyspark==4.3.0)",
    }
    (tmp_path / ".venv-spark" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-spark" / ".installed").touch()
    (tmp_path / ".venv-spark" / "bin" / "python").touch()
    monkeypatch.setenv("TIDAL_FLINK_PYTHON", str(tmp_path / "nowhere" / "python"))
    present, missing = detect_peers(root=tmp_path)
    assert present == {"spark": tmp_path / ".venv-spark" / "bin" / "python"}
    assert missing == {"flink": f"not installed (TIDAL_FLINK_PYTHON names {tmp_path / 'nowhere' / 'python'}, which does not exist)"}
    assert detect_peers(["storm"], root=tmp_path)[1] == {"storm": "unknown engine (known: flink, spark)"}


def test_the_makefile_installs_the_pins_the_harness_names() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for peer in PEERS.values():
        assert f'{peer.name} = [{", ".join(json.dumps(r) for r in peer.requirements)}]' in pyproject
        assert peer.venv in makefile
    assert "bench-peers:" in makefile and INSTALL_COMMAND == "make bench-peers"


def test_an_engine_that_cannot_start_is_reported_with_its_output() -> None:
    # This Python has neither pyflink nor pyspark: the worker starts and the engine does not.
    report = run_peer("flink", sys.executable, PeerRequest(workloads=("windowed",), sizes=(10,), repeats=1), timeout=120)
    assert report["error"].startswith("flink did not start: ModuleNotFoundError: No module named 'pyflink'")
    assert report["runs"] == [] and "pyflink" in report["traceback"]


def test_a_worker_that_dies_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'engine exploded' >&2\nexit 3\n")
    fake.chmod(0o755)
    report = run_peer("spark", fake, PeerRequest(workloads=("windowed",), sizes=(10,)), timeout=60)
    assert report == {"error": "the spark worker exited with 3 and wrote no result", "log": "engine exploded\n"}


def test_peer_inputs_are_the_runners_inputs_in_columns() -> None:
    events = WORKLOADS["q0"].make_input(60, 0.0)
    tables = input_tables("q0", events)
    columns = tables["events"]
    assert columns["kind"][:5] == [0, 1, 1, 1, 2] and columns["ts_ms"][:2] == [0, 5]
    rows = [{name: column[i] for name, column in columns.items()} for i in range(60)]
    assert [nexmark_event(r) for r in rows] == [tv.value for tv in events]
    assert {type(nexmark_event(r)) for r in rows} == {Person, Auction, Bid}
    yahoo = input_tables("yahoo", WORKLOADS["yahoo"].make_input(10, 0.0))
    assert len(yahoo["ads"]["ad_id"]) == 1000 and yahoo["ad_table"][yahoo["events"]["ad_id"][0]] in range(100)
    with pytest.raises(ValueError, match="the peer engines keep milliseconds; timestamp 1500 µs has a finer part"):
        input_tables("windowed", [TimestampedValue((1, 1), 0.0015)])


def test_python_sessions_follow_beam_an_event_one_gap_later_starts_a_new_session() -> None:
    # Flink and Spark merge touching windows; Beam and tidal do not.
    assert sessionize(7, [(0, 1), (2_000_000, 2), (3_999_999, 3)]) == [((7, 0.0, 2.0), [1]), ((7, 2.0, 5.999999), [2, 3])]
    assert sessionize(7, [(5_000_000, 1), (1_000_000, 1)]) == [((7, 1.0, 3.0), [1]), ((7, 5.0, 7.0), [1])]


def _fake_peer(monkeypatch: pytest.MonkeyPatch, answer: Any) -> list[PeerRequest]:
    """A pretend Flink whose worker answers ``answer(request)`` (a report of runs, as the worker writes it)."""
    requests: list[PeerRequest] = []

    def run(name: str, python: Any, request: PeerRequest, timeout: float = 0, on_progress: Any = None, folder: Any = None) -> dict[str, Any]:
        requests.append(request)
        if on_progress is not None:
            on_progress(1)
        report = {"engine": name, "version": "apache-flink 0.0-test", "startup_s": 1.5, "session_s": 1.0, "runs": answer(request), "error": None}
        if request.stream:  # the latency sweep's points: a pretend engine with 40 ms + 1 ms per knob unit at p99
            report["stream_points"] = [
                {"runner": name, "knob": "buffer_timeout_ms", "value": spec["value"], "offered_events_per_s": spec["rate"],
                 "events": spec["events"], "error": None, "same_result": True, "results": 3, "sustained_events_per_s": spec["rate"] * 0.9,
                 "latency_p50_ms": 20.0 + spec["value"], "latency_p99_ms": 40.0 + spec["value"], "latency_results": 3}
                for spec in request.stream
            ]
        return report

    def detect(names: Any = None) -> tuple[dict[str, Path], dict[str, str]]:
        found = ({"flink": Path("/fake/python")}, {"spark": "not installed (test)"})
        return found if names is None else ({k: v for k, v in found[0].items() if k in names}, {k: v for k, v in found[1].items() if k in names})

    monkeypatch.setattr(harness, "detect_peers", detect)
    monkeypatch.setattr(harness, "run_peer", run)
    monkeypatch.setattr(latency, "detect_peers", detect)
    monkeypatch.setattr(latency, "run_peer", run)
    return requests


def _runs(request: PeerRequest, digest: Any) -> list[dict[str, Any]]:
    return [
        {"workload": w, "variant": v, "events": n, "seconds": [n / 100] * request.repeats, "digests": [digest(w, n)] * request.repeats,
         "results": 3, "error": None}
        for w in request.workloads for n in request.sizes for v in PEERS["flink"].variants
    ]


def _direct_digest(workload: str, n: int) -> str:
    w = WORKLOADS[workload]
    return result_digest(w.canonical([o.value for o in harness.run_batch(w, "direct", w.make_input(n, 0.0))[1]]))


TINY = dict(sizes=(100, 200), repeats=1, stream_events=100, stream_rate=20_000.0, quiet=True, beam=False, use_peers=True)


def test_an_engine_whose_results_equal_the_runners_is_tabled_beside_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    requests = _fake_peer(monkeypatch, lambda r: _runs(r, _direct_digest))
    report = run_harness(BenchConfig(workloads=("q2", "q3", "windowed"), runners=("direct",), out=str(tmp_path), **TINY))  # type: ignore[arg-type]
    assert requests == [PeerRequest(workloads=("q2", "windowed"), sizes=(100, 200), repeats=1, parallelism=2)]  # q3: no peer version
    assert [(r["workload"], r["label"], r["same_result"]) for r in report["peer_results"]] == [
        ("q2", "flink sql", True), ("q2", "flink datastream", True), ("windowed", "flink sql", True), ("windowed", "flink datastream", True),
    ]
    row = report["peer_results"][0]
    assert (row["events_per_s"], row["fixed_cost_s"], row["steady_events_per_s"]) == pytest.approx((200 / 2.0, 0.0, 100.0))
    assert report["peers"]["flink"]["startup_s"] == 1.5 and report["missing_peers"] == {"spark": "not installed (test)"}
    text = harness.terminal_table(report)
    assert "== Other engines, same inputs and result check" in text
    assert "Other engines' results equal tidal's for 4 of 4 jobs." in text
    assert "Other engine spark: not installed (test)." in text
    assert "Apache Flink (PyFlink) (apache-flink 0.0-test, parallelism 2): start-up 1.5 s" in text
    assert exit_code(report) == 0


def test_an_engine_whose_result_differs_fails_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_peer(monkeypatch, lambda r: _runs(r, lambda w, n: "0000" if n == 200 else _direct_digest(w, n)))
    parser = argparse.ArgumentParser(prog="tidal")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--workloads", "q1", "--runners", "direct", "--sizes", "100,200", "--repeats", "1", "--no-beam",
                              "--stream-events", "50", "--stream-rate", "20000", "--out", str(tmp_path), "-q"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "Other engines' results equal tidal's for 0 of 2 jobs; DIFFERENT: q1 on flink sql, q1 on flink datastream." in out
    assert json.loads((tmp_path / "results.json").read_text())["equality"]["q1"]["peers"] == {"flink sql": False, "flink datastream": False}


def test_a_failed_engine_job_fails_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(request: PeerRequest) -> list[dict[str, Any]]:
        runs = _runs(request, _direct_digest)
        runs[0].update(seconds=[], digests=[], error="Py4JJavaError: boom")
        return runs

    _fake_peer(monkeypatch, broken)
    report = run_harness(BenchConfig(workloads=("q2",), runners=("direct",), out=str(tmp_path), **TINY))  # type: ignore[arg-type]
    assert [(r["label"], r.get("error")) for r in report["peer_results"]] == [("flink sql", "Py4JJavaError: boom"), ("flink datastream", None)]
    assert "q2 on flink sql failed: Py4JJavaError: boom" in harness.terminal_table(report)
    assert exit_code(report) == 1


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(PEERS))
def test_each_installed_engine_gives_the_direct_runners_sessions(engine: str, tmp_path: Path) -> None:
    """Sessions, in every idiom of the engine: the input holds two events of one key exactly one gap apart (event 12,276),
    which Flink and Spark would merge into one session and Beam does not."""
    present, _ = detect_peers([engine])
    if engine not in present:
        pytest.skip(f"{PEERS[engine].title} is not installed: `{INSTALL_COMMAND}` installs the other engines")
    config = {**TINY, "sizes": (13_000,), "use_peers": True, "out": str(tmp_path)}
    report = run_harness(BenchConfig(workloads=("sessions",), runners=("direct",), peers=(engine,), **config))  # type: ignore[arg-type]
    assert report["peers"][engine]["error"] is None, report["peers"][engine].get("log")
    assert [(r["variant"], r.get("error"), r["same_result"]) for r in report["peer_results"]] == [
        (variant, None, True) for variant in PEERS[engine].variants
    ]


@pytest.mark.slow
def test_spark_structured_streaming_gives_the_direct_runners_results(tmp_path: Path) -> None:
    """Every workload Structured Streaming can express, as a streaming query, equals the direct runner; q5 says why not."""
    present, _ = detect_peers(["spark"])
    if "spark" not in present:
        pytest.skip(f"{PEERS['spark'].title} is not installed: `{INSTALL_COMMAND}` installs the other engines")
    workloads = ("wordcount", "windowed", "q1", "q5", "yahoo")
    config = {**TINY, "sizes": (3_000,), "use_peers": True, "out": str(tmp_path)}
    report = run_harness(BenchConfig(workloads=workloads, runners=("direct",), peers=("spark",), peer_variants=("structured",), **config))  # type: ignore[arg-type]
    assert report["peers"]["spark"]["error"] is None, report["peers"]["spark"].get("log")
    got = {r["workload"]: (r.get("error"), r["same_result"]) for r in report["peer_results"]}
    assert got == {
        "wordcount": (None, True), "windowed": (None, True), "q1": (None, True), "yahoo": (None, True),
        "q5": ("no structured version of q5 for spark", None),
    }


# -- the command line ---------------------------------------------------------------------------
def test_the_studies_run_alone_and_write_their_charts(tmp_path: Path, capsys: pytest.CaptureFixture[str], knob_spy: list[Any]) -> None:
    parser = argparse.ArgumentParser(prog="tidal")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--workloads", "none", "--runners", "direct", "--keys", "2,50", "--key-sizes", "100,300",
                              "--repeats", "1", "--rates", "3000", "--sweep-seconds", "0.3", "--no-peers", "--out", str(tmp_path), "-q"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "== Key scaling" in out and "== Latency against throughput" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyscaling.png", "latency.png", "results.json", "results.md"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert [(r["workload"], r["keys"]) for r in data["key_scaling"]["results"]] == [("yahoo", 2), ("yahoo", 50), ("keyed-sum", 2), ("keyed-sum", 50)]
    assert [p["value"] for p in data["latency_sweep"]["points"]] == [7]
    assert "## Key scaling" in (tmp_path / "results.md").read_text()


# -- the report page -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A tiny run of everything: two workloads, key scaling, the sweep, and a pretend Flink whose results are right."""
    monkeypatch = pytest.MonkeyPatch()
    _fake_peer(monkeypatch, lambda r: _runs(r, _direct_digest))
    out = tmp_path_factory.mktemp("report")
    try:
        yield run_harness(BenchConfig(
            workloads=("yahoo", "q5"), runners=("direct", "microbatch"), out=str(out), **TINY,  # type: ignore[arg-type]
            key_scaling=KeyScalingConfig(keys=(2, 30), sizes=(100, 300), repeats=1),
            latency_sweep=SweepConfig(rates=(3000.0,), knobs={"direct": (100,), "microbatch": (0.05,)}, duration=0.3, min_events=600),
        ))
    finally:
        monkeypatch.undo()


def test_the_system_comparison_has_a_column_per_engine_with_what_it_is_and_what_was_measured(full_report: dict[str, Any]) -> None:
    matrix, _ = load_matrix()
    workload, columns = comparison_columns(full_report, matrix)
    assert workload == "yahoo"
    assert [c["engine"] for c in columns] == ["tidal · direct", "tidal · microbatch", "Apache Flink (PyFlink) · apache-flink 0.0-test"]
    direct, microbatch, flink = columns
    assert direct["execution_model"] == DirectRunner.execution_model and "not checkpointed" in direct["state"]
    assert "snapshotted in checkpoints" in microbatch["state"] and "(matrix: Stateful processing Yes, Timers Yes" in microbatch["state"]
    assert direct["windowing"] == (
        "event-time windows: global, fixed, sliding, session, custom, custom merging; Timestamp control Yes; triggers: 7 of 7 matrix rows Yes"
    )
    yahoo_direct = next(r for r in full_report["results"] if r["runner"] == "direct" and r["workload"] == "yahoo")
    assert direct["throughput"] == f"{yahoo_direct['events_per_s']:,.0f} events/s (200 events, start-up included)"
    assert direct["latency"].startswith(f"p50 {yahoo_direct['latency_p50_ms']:,.1f} ms") and "; sweep: p99 " in direct["latency"]
    assert flink["state"] == PEERS["flink"].system["state"] and flink["startup"].startswith("1.5 s once")
    assert flink["throughput"] == "sql: 100 events/s; datastream: 100 events/s (200 events, session start-up excluded)"
    # The sweep streamed the pretend Flink at each of its knob values: its best (lowest p99) point at the highest rate.
    assert flink["latency"] == "paced socket stream: p50 20.0 ms, p99 40.0 ms at 2,700 events/s sustained (buffer_timeout_ms=0)"


def test_the_page_is_self_contained(full_report: dict[str, Any]) -> None:
    matrix, note = load_matrix()
    page = to_report_html(full_report, matrix, note)
    assert "<script" not in page and "<link" not in page and "src=" not in page and "href=\"http" not in page
    assert page.count("url(") == page.count("url(#")  # the charts' clip paths, inside the page
    assert page.count("<svg") == 3  # throughput, key scaling, latency against throughput
    no_matrix = to_report_html(full_report, None, "no capability matrix at /x: `python -m tidal matrix --out docs` generates it")
    assert "no capability matrix at /x" in no_matrix and '<table id="matrix">' not in no_matrix


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def test_the_report_page_opens_in_headless_chromium_with_every_table_and_chart(full_report: dict[str, Any], tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'; make test installs it)")
    matrix, note = load_matrix()
    assert matrix is not None, note
    page = write_report_page(full_report, matrix, str(tmp_path / "report.html"), note)
    proc = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", Path(page).resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout.replace("&amp;", "&")
    for table in ("systems", "throughput-table", "engines-table", "keyscaling-table", "latency-table", "matrix", "comparison"):
        assert f'<table class="data" id="{table}">' in dom or f'<table id="{table}">' in dom, table
    assert dom.count("<svg") == 3 and 'id="keyscaling-chart"' in dom and 'id="latency-chart"' in dom
    for label in ("Execution model", "Guarantee", "Fault tolerance", "State", "Windowing", "Throughput (measured)", "Latency (measured)"):
        assert f'<th scope="row">{label}</th>' in dom, label
    assert ">Apache Flink (PyFlink) · apache-flink 0.0-test</th>" in dom and ">tidal · microbatch</th>" in dom
    assert ">Session windows</th>" in dom and ">Exactly-once after failure</th>" in dom  # the matrix's rows
    assert "<td>keyed-sum</td><td>30</td><td>microbatch</td>" in dom
    assert "<td>microbatch</td><td>batch_interval=0.05</td><td class=\"num\">3,000</td>" in dom


def test_the_bench_command_writes_the_report_page(tmp_path: Path, knob_spy: list[Any]) -> None:
    parser = argparse.ArgumentParser(prog="tidal")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--workloads", "windowed", "--runners", "direct", "--sizes", "100,200", "--repeats", "1", "--no-peers",
                              "--keys", "3", "--key-sizes", "100,200", "--rates", "3000", "--sweep-seconds", "0.3", "--stream-events", "100",
                              "--stream-rate", "20000", "--report", "--out", str(tmp_path), "-q"])
    assert args.func(args) == 0
    page = (tmp_path / "report.html").read_text()
    assert '<table id="systems">' in page and '<table id="matrix">' in page and page.count("<svg") == 3


# -- the other engines on a paced stream ------------------------------------------------------------
def test_the_sweep_streams_the_other_engines_it_finds_and_names_those_it_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    requests = _fake_peer(monkeypatch, lambda r: [])
    config = SweepConfig(runners=("direct",), rates=(3000.0, 6000.0), knobs={"direct": (1000,), "flink": (0, 100)}, duration=0.3,
                         min_events=600, quiet=True, peers=("flink", "spark"), peer_parallelism=3)
    report = run_latency_sweep(config)
    (request,) = requests
    assert request.parallelism == 3 and request.stream_workload == "yahoo" and request.workloads == ()
    # Each point is specified as the tidal runners' points are: the same events, event-time rate and disorder at each offered rate.
    assert [(s["value"], s["rate"], s["events"], s["events_per_second"], s["out_of_orderness"]) for s in request.stream] == [
        (0, 3000.0, 900, 75.0, 0.2), (0, 6000.0, 1800, 150.0, 0.2), (100, 3000.0, 900, 75.0, 0.2), (100, 6000.0, 1800, 150.0, 0.2),
    ]
    assert [(p["runner"], p["value"], p["offered_events_per_s"]) for p in report["points"]] == [
        ("direct", 1000, 3000.0), ("direct", 1000, 6000.0),
        ("flink", 0, 3000.0), ("flink", 0, 6000.0), ("flink", 100, 3000.0), ("flink", 100, 6000.0),
    ]
    assert report["runners"] == ["direct", "flink"] and report["knob_names"] == {"direct": "bundle_size", "flink": "buffer_timeout_ms"}
    assert report["config"]["knobs"] == {"direct": [1000], "flink": [0, 100]}
    assert report["skipped_runners"] == {"spark": "not installed (test)"}
    notes = latency.sweep_notes(report)
    assert "Not swept: spark (not installed (test))." in notes
    assert any(n.startswith("Other engines (flink) read the same events at the same rates from a loopback socket") for n in notes)
    with pytest.raises(ValueError, match=r"unknown engine\(s\) \['storm'\]; the other engines are flink, spark"):
        run_latency_sweep(SweepConfig(peers=("storm",)))


def _plain_python_engine(drop_last: bool) -> Any:
    """An engine written in plain Python for the socket protocol: it reads the lines, counts views per (window, campaign) and
    writes a window's counts once an event 10 s of event time past its end arrived (or at the end of the input)."""
    import socket as socketlib

    def job(server: Any, info: dict[str, Any]) -> list[tuple[Any, float]]:
        campaign = dict(info["ads"])
        counts: dict[float, dict[int, int]] = {}
        rows: list[tuple[Any, float]] = []

        def close(upto: float) -> None:
            for w in sorted(w for w in counts if w + 10.0 <= upto):
                now = time.time()
                rows.extend(((w, c, n), now) for c, n in sorted(counts.pop(w).items()))

        with socketlib.create_connection(("127.0.0.1", server.port)) as conn:
            server.go()
            pending = b""
            while chunk := conn.recv(1 << 16):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    fields = line.decode().split(",")
                    if fields[4] != "view":
                        continue
                    t = int(fields[5]) / 1000
                    w = t - t % 10.0
                    by_campaign = counts.setdefault(w, {})
                    key = campaign[int(fields[2])]
                    by_campaign[key] = by_campaign.get(key, 0) + 1
                    close(t - 10.0 - info["out_of_orderness"])
        close(float("inf"))
        return rows[:-1] if drop_last else rows

    return job


def test_a_paced_socket_stream_is_measured_as_the_runners_streams_are() -> None:
    from tidal.benchmarks.peers.streaming import stream_point

    point = stream_point("yahoo", 100.0, 2000, 0.2, 4000.0, _plain_python_engine(drop_last=False), wait=True)
    assert point["error"] is None and point["same_result"] is True
    assert point["results"] == point["latency_results"] > 0
    assert 0 < point["latency_p50_ms"] <= point["latency_p99_ms"]
    # The lines go out no faster than offered: the last result cannot come before the last line was due.
    assert point["sustained_events_per_s"] <= 4000.0 * 2000 / 1999
    assert stream_point("yahoo", 100.0, 2000, 0.2, 4000.0, _plain_python_engine(drop_last=True))["same_result"] is False


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(PEERS))
def test_each_installed_engine_streams_the_yahoo_query_with_the_direct_runners_counts(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real engines, whatever a module-wide pretend engine put in their place.
    monkeypatch.setattr(latency, "detect_peers", detect_peers)
    monkeypatch.setattr(latency, "run_peer", run_peer)
    present, _ = detect_peers([engine])
    if engine not in present:
        pytest.skip(f"{PEERS[engine].title} is not installed: `{INSTALL_COMMAND}` installs the other engines")
    knob = latency.peer_knob(engine)
    config = SweepConfig(runners=(), rates=(3000.0,), knobs={engine: knob.values[1:2]}, duration=1.0, quiet=True, peers=(engine,))
    report = run_latency_sweep(config, sessions=[])  # the engine alone
    assert report["runners"] == [engine] and report["skipped_runners"] == {}
    (point,) = report["points"]
    assert (point["runner"], point["knob"], point["value"]) == (engine, knob.name, knob.values[1])
    assert point["error"] is None and point["same_result"] is True, point
    assert 0 < point["latency_p50_ms"] <= point["latency_p99_ms"] and point["latency_results"] == point["results"] > 0


def test_paced_lines_arrive_whole_and_in_order_and_a_rounded_down_count_still_sends_the_due_line() -> None:
    """At the due time of line i, the count of lines due can round below i + 1: the sender must send line i then, not an
    empty write (an engine's parser reads an empty line as an event without a time)."""
    import socket as socketlib

    from tidal.benchmarks.peers.streaming import PacedLines, lines_due

    assert 0.29999999999999993 / 0.1 < 3 and lines_due(3, 0.29999999999999993, 0.1, 10) == 4
    assert [lines_due(i, 0.25, 0.1, 10) for i in (0, 1, 2, 3)] == [3, 3, 3, 4]
    lines = [f"{i},x" for i in range(5_000)]
    server = PacedLines(lines, rate=50_000.0)
    with socketlib.create_connection(("127.0.0.1", server.port)) as client:
        data = b"".join(iter(lambda: client.recv(1 << 16), b""))
    server.join(10.0)
    assert data.decode().split("\n") == [*lines, ""] and len(server.due) == len(lines) and server.error is None
    assert server.due == sorted(server.due)
