"""The comparison harness: tiny runs write JSON, Markdown and a PNG, compare runners, fit costs, skip broken runners.

The Beam reference runs in a virtualenv of its own (``make beam-venv``, which
``make test`` runs first); without it the test that compares Beam's results is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from beam_support import NO_BEAM, beam_python

from tidal.benchmarks import harness
from tidal.benchmarks.cli import add_bench_parser, run_bench
from tidal.benchmarks.collect import Collected
from tidal.benchmarks.harness import (
    BenchConfig, beam_verdict, cost_summary, fit_line, latencies, markdown, percentile, run_harness, terminal_table, write_reports,
)
from tidal.benchmarks.workloads import WORKLOADS, Workload
from tidal.runners.direct import DirectRunner
from tidal.runners.registry import _FACTORIES, register_runner

TINY = dict(sizes=(40, 80, 160), repeats=1, stream_events=60, stream_rate=20_000.0, quiet=True)


@pytest.fixture
def second_direct_runner() -> Iterator[str]:
    """Another execution strategy of the same semantics: no combiner lifting, tiny bundles."""
    register_runner("direct-unlifted", lambda: DirectRunner(lift_combiners=False, bundle_size=7))
    yield "direct-unlifted"
    _FACTORIES.pop("direct-unlifted", None)


@pytest.fixture
def broken_runner() -> Iterator[str]:
    def fail() -> DirectRunner:
        raise ImportError("No module named 'some_engine'")

    register_runner("broken", fail)
    yield "broken"
    _FACTORIES.pop("broken", None)


def test_a_tiny_run_writes_json_markdown_and_png_and_compares_runners(tmp_path: Path, second_direct_runner: str) -> None:
    config = BenchConfig(workloads=("q1", "q5", "q12", "wordcount"), runners=("direct", second_direct_runner), out=str(tmp_path), **TINY)  # type: ignore[arg-type]
    report = run_harness(config)
    paths = write_reports(report, str(tmp_path))
    assert Path(paths["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(Path(paths["json"]).read_text())
    assert data["runners"] == ["direct", "direct-unlifted"]
    assert {w: e["same"] for w, e in data["equality"].items()} == {"q1": True, "q5": True, "q12": True, "wordcount": True}
    rows = data["results"]
    assert [(r["workload"], r["runner"]) for r in rows] == [
        (w, r) for w in ("q1", "q5", "q12", "wordcount") for r in ("direct", "direct-unlifted")
    ]
    for row in rows:
        assert row["error"] is None
        assert [t["events"] for t in row["times"]] == [40, 80, 160]
        for key in ("events_per_s", "fixed_cost_s", "per_event_us", "peak_memory_mib"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), key
        if row["workload"] in ("q12", "wordcount"):
            assert row["latency_p50_ms"] is None
        else:
            assert 0 <= row["latency_p50_ms"] <= row["latency_p99_ms"]
    md = Path(paths["md"]).read_text()
    assert "| q5 | direct-unlifted |" in md
    assert "Results equal on direct, direct-unlifted for 4 of 4 workloads." in md


def test_a_runner_that_cannot_be_built_or_is_unknown_is_skipped_with_the_reason(tmp_path: Path, broken_runner: str) -> None:
    report = run_harness(BenchConfig(workloads=("q0",), runners=("direct", broken_runner, "nosuch"), out=str(tmp_path), **TINY))  # type: ignore[arg-type]
    assert report["runners"] == ["direct"]
    assert report["skipped_runners"]["broken"] == "ImportError: No module named 'some_engine'"
    assert report["skipped_runners"]["nosuch"].startswith("not registered")
    assert report["equality"]["q0"]["same"] is None  # one runner: nothing to compare


def test_the_bench_command_runs_and_writes_its_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="tidal")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["bench", "--workloads", "q2,windowed", "--runners", "direct", "--sizes", "30,60", "--stream-events", "40",
         "--stream-rate", "20000", "--out", str(tmp_path), "--quiet"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr()
    assert "windowed" in out.out and "events/s" in out.out
    assert out.err == ""  # --quiet: no progress bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md", "results.png"]


def test_an_unknown_workload_is_an_error_naming_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="tidal")
    add_bench_parser(parser.add_subparsers(dest="command"))
    assert run_bench(parser.parse_args(["bench", "--workloads", "q99", "--out", str(tmp_path), "-q"])) == 2
    assert "unknown workloads ['q99']; known: q0, q1" in capsys.readouterr().err


def test_fit_line_recovers_fixed_and_per_event_cost() -> None:
    fixed, per_event = fit_line([(1000, 0.5 + 1000 * 2e-6), (3000, 0.5 + 3000 * 2e-6), (10000, 0.5 + 10000 * 2e-6)])  # type: ignore[misc]
    assert fixed == pytest.approx(0.5) and per_event == pytest.approx(2e-6)
    assert fit_line([(5, 1.0)]) is None


def test_percentiles_interpolate() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([], 50) is None


def test_latency_matches_each_result_to_the_input_it_waited_for() -> None:
    arrivals = [(0, 10.0), (2_000_000, 10.3), (1_000_000, 10.2), (12_000_000, 11.0)]
    # Element-wise: a result with the timestamp of one event waited for that event.
    element = latencies(WORKLOADS["q1"], [Collected("x", 2_000_000, 10.35), Collected("y", 1_000_000, 10.5)], arrivals)
    assert element == pytest.approx([0.05, 0.3])
    # Windowed: a window ending at 10 s (timestamp 9.999999 s) waited for every event up to it.
    windowed = latencies(WORKLOADS["windowed"], [Collected("w", 9_999_999, 11.25)], arrivals)
    assert windowed == pytest.approx([0.95])
    # Processing-time panes get no latency.
    assert latencies(WORKLOADS["q12"], [Collected((1, 2), 2**62, 11.5)], arrivals) == []


@pytest.mark.usefixtures("ray_session")
def test_ray_gives_the_direct_runners_results(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    report = run_harness(
        BenchConfig(workloads=("q7",), runners=("direct", "ray"), sizes=(50, 100), repeats=1, stream_events=40, stream_rate=20_000.0, quiet=True, out=str(tmp_path))
    )
    assert report["runners"] == ["direct", "ray"]
    assert report["equality"]["q7"]["same"] is True
    ray_row = [r for r in report["results"] if r["runner"] == "ray"][0]
    assert ray_row["error"] is None and ray_row["memory_scope"] == "driver only"
    assert "runner_startup_s" in report and "ray" not in report["runner_startup_s"]  # the session's Ray was already up


# -- repeats: median, spread, fit --------------------------------------------------------------
def test_cost_summary_takes_the_median_of_each_size_and_fits_through_the_medians() -> None:
    s = cost_summary({10000: [2.0, 2.5, 1.5], 1000: [1.2, 0.9, 1.1]})
    assert s["times"] == [
        {"events": 1000, "seconds": 1.1, "min": 0.9, "max": 1.2, "runs": [1.2, 0.9, 1.1]},
        {"events": 10000, "seconds": 2.0, "min": 1.5, "max": 2.5, "runs": [2.0, 2.5, 1.5]},
    ]
    assert (s["events"], s["seconds"], s["seconds_min"], s["seconds_max"]) == (10000, 2.0, 1.5, 2.5)
    assert s["events_per_s"] == 5000.0
    assert s["spread_pct"] == 50.0  # (2.5 - 1.5) / 2.0
    assert s["fixed_cost_s"] == pytest.approx(1.0)
    assert s["per_event_us"] == pytest.approx(100.0)
    assert s["steady_events_per_s"] == pytest.approx(10_000.0)
    # The per-event cost adds 0.9 s from 1,000 to 10,000 events; the 10,000-event runs spread over 1.0 s.
    assert s["per_event_resolved"] is False


def test_a_per_event_cost_above_the_spread_is_resolved_and_one_at_zero_is_not() -> None:
    resolved = cost_summary({1000: [1.1, 1.1, 1.2], 10000: [2.0, 2.05, 1.95]})
    assert resolved["per_event_resolved"] is True and resolved["spread_pct"] == pytest.approx(5.0)
    flat = cost_summary({1000: [1.0, 1.1, 0.9], 10000: [1.0, 0.95, 1.05]})
    assert flat["per_event_us"] == 0.0
    assert flat["steady_events_per_s"] is None and flat["per_event_resolved"] is False


def test_one_run_has_no_spread_and_one_size_no_fit() -> None:
    single = cost_summary({500: [0.25]})
    assert (single["seconds"], single["events_per_s"], single["spread_pct"]) == (0.25, 2000.0, None)
    assert (single["fixed_cost_s"], single["per_event_us"], single["steady_events_per_s"], single["per_event_resolved"]) == (None, None, None, None)
    with pytest.raises(ValueError, match="at least one size"):
        cost_summary({})


def test_every_batch_run_is_repeated_and_the_median_reported(tmp_path: Path) -> None:
    report = run_harness(BenchConfig(workloads=("q2",), runners=("direct",), out=str(tmp_path), **{**TINY, "repeats": 3}))  # type: ignore[arg-type]
    (row,) = report["results"]
    assert [(t["events"], len(t["runs"])) for t in row["times"]] == [(40, 3), (80, 3), (160, 3)]
    for t in row["times"]:
        assert t["seconds"] == sorted(t["runs"])[1] and (t["min"], t["max"]) == (min(t["runs"]), max(t["runs"]))
    assert row["seconds"] == row["times"][-1]["seconds"] and row["repeats_agree"] is True
    assert report["config"]["repeats"] == 3
    assert "every run done 3 time(s)" in markdown(report)
    with pytest.raises(ValueError, match="repeats must be at least 1, not 0"):
        run_harness(BenchConfig(workloads=("q2",), runners=("direct",), out=str(tmp_path), **{**TINY, "repeats": 0}))  # type: ignore[arg-type]


def test_the_table_shows_throughput_fixed_cost_steady_state_rate_and_spread() -> None:
    report: dict[str, Any] = {
        "config": {"sizes": [1000, 10000], "repeats": 3, "stream_events": 10, "stream_rate": 10.0, "out_of_orderness": 0.0},
        "runners": ["ray"], "skipped_runners": {}, "runner_startup_s": {"ray": 2.5}, "beam_reference": "apache_beam not installed",
        "equality": {"q0": {"same": None}}, "latency_method": "m", "memory_method": "m",
        "results": [
            {"workload": "q0", "runner": "ray", "memory_scope": "driver only", "error": None, "same_result": None,
             "peak_memory_mib": 1.0, "latency_p50_ms": None, "latency_p99_ms": None,
             **cost_summary({1000: [1.1, 1.1, 1.2], 10000: [2.0, 2.05, 1.95]})},
            {"workload": "q0", "runner": "ray", "memory_scope": "driver only", "error": None, "same_result": None,
             "peak_memory_mib": 1.0, "latency_p50_ms": None, "latency_p99_ms": None,
             **cost_summary({1000: [1.2, 0.9, 1.1], 10000: [2.0, 2.5, 1.5]})},
        ],
    }
    lines = terminal_table(report).splitlines()
    assert lines[0].split("  ")[:2] == ["workload", "runner"]
    header = [h.strip() for h in lines[0].split("  ") if h.strip()]
    assert header[2:6] == ["events/s", "fixed cost (ms)", "steady-state events/s", "spread"]
    resolved = [c for c in lines[2].split("  ") if c.strip()]
    rough = [c for c in lines[3].split("  ") if c.strip()]
    assert [c.strip() for c in resolved[2:6]] == ["5,000", "1,000", "10,000", "5%"]
    assert [c.strip() for c in rough[2:6]] == ["5,000", "1,000", "~10,000", "50%"]
    assert "ray start-up (2.5 s, once per session) is outside every measurement; its per-job start-up is in the fixed cost." in lines


def test_inputs_are_prefix_stable_so_every_size_is_a_slice_of_the_largest() -> None:
    for make_input in {w.make_input for w in WORKLOADS.values()}:
        assert make_input(700, 0.0) == make_input(2000, 0.0)[:700], make_input


# -- the Beam reference: its result is compared, not only timed ------------------------------
def test_beam_verdict_compares_with_every_runner() -> None:
    assert beam_verdict({"direct": "a1", "ray": "a1"}, "a1") is True
    assert beam_verdict({"direct": "a1", "ray": "b2"}, "a1") is False
    assert beam_verdict({"direct": "a1"}, "inconsistent: a1 / c3") is False
    assert beam_verdict({}, "a1") is None
    assert beam_verdict({"direct": "a1"}, None) is None


def _fake_beam(monkeypatch: pytest.MonkeyPatch, result: Any) -> list[int]:
    """Pretend apache_beam is installed; its 'run' answers with ``result(workload, elements)``."""
    sizes: list[int] = []

    def run_beam(workload: Workload, elements: list[Any]) -> tuple[float, list[Any]]:
        sizes.append(len(elements))
        return 0.5, result(workload, elements)

    monkeypatch.setattr(harness, "_beam_version", lambda: "0.0-test")
    monkeypatch.setattr(harness, "_run_beam", run_beam)
    return sizes


def _direct_outputs(workload: Workload, elements: list[Any]) -> list[Any]:
    return [o.value for o in harness._run_batch(workload, "direct", elements)[1]]


def test_a_beam_result_equal_to_the_runners_is_shown_as_a_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _fake_beam(monkeypatch, _direct_outputs)
    report = run_harness(BenchConfig(workloads=("q1", "q12"), runners=("direct",), out=str(tmp_path), **{**TINY, "repeats": 2}))  # type: ignore[arg-type]
    assert sizes == [160, 160]  # the largest size, as often as the runners; q12 has no Beam version
    beam = report["equality"]["q1"]["beam"]
    assert (beam["same"], beam["seconds"], beam["runs"], beam["events"]) == (True, 0.5, [0.5, 0.5], 160)
    assert "beam" not in report["equality"]["q12"]
    q1 = report["results"][0]
    assert q1["beam_same_result"] is True and q1["vs_beam"] == 0.5 / q1["seconds"]
    assert report["beam_reference"] == "apache_beam 0.0-test DirectRunner"
    md = markdown(report)
    assert md.splitlines()[4].endswith("| vs Beam direct |")
    assert f"| {q1['vs_beam']:.1f}× |" in md
    assert "Beam's result equals the runners' for 1 of 1 workloads." in md
    assert "No Beam version of q12." in md


def test_a_beam_result_that_differs_is_reported_and_fails_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_beam(monkeypatch, lambda workload, elements: _direct_outputs(workload, elements)[1:])  # one result missing
    parser = argparse.ArgumentParser(prog="tidal")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--workloads", "q1", "--runners", "direct", "--sizes", "30,60", "--repeats", "1",
                              "--stream-events", "20", "--stream-rate", "20000", "--out", str(tmp_path), "-q"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[2].rstrip().endswith("DIFFERENT result")
    assert "Beam's result equals the runners' for 0 of 1 workloads; DIFFERENT for q1." in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["equality"]["q1"]["beam"]["same"] is False and "vs_beam" not in data["results"][0]


def test_a_beam_failure_is_reported_and_fails_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(workload: Workload, elements: list[Any]) -> list[Any]:
        raise RuntimeError("Unable to translate Q1/ToEuro")

    _fake_beam(monkeypatch, broken)
    parser = argparse.ArgumentParser(prog="tidal")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--workloads", "q1", "--runners", "direct", "--sizes", "30", "--repeats", "1",
                              "--stream-events", "20", "--stream-rate", "20000", "--out", str(tmp_path), "-q"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "q1 on Beam failed: RuntimeError: Unable to translate Q1/ToEuro" in out
    assert out.splitlines()[2].rstrip().endswith("Beam failed")


@pytest.mark.slow
def test_beam_direct_runner_gives_the_runners_results_for_every_workload_it_can_run(tmp_path: Path) -> None:
    """The real Beam path, in the virtualenv that ``make beam-venv`` makes (apache-beam's pins stay out of .venv)."""
    python = beam_python()
    if python is None:
        pytest.skip(NO_BEAM)
    beam_workloads = [name for name, w in WORKLOADS.items() if w.beam_build is not None]
    env = {**os.environ, "TIDAL_NO_PROGRESS": "1", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [str(python), "-m", "tidal", "bench", "--workloads", ",".join(beam_workloads), "--runners", "direct",
         "--sizes", "4000", "--repeats", "1", "--stream-events", "20", "--stream-rate", "20000", "--out", str(tmp_path), "-q"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["beam_reference"].startswith("apache_beam ")
    assert {w: e["beam"]["same"] for w, e in data["equality"].items()} == {w: True for w in beam_workloads}
    assert sorted(beam_workloads) == sorted(["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11", "wordcount", "windowed", "sessions"])
