"""The comparison harness: tiny runs write JSON, Markdown and a PNG, compare runners, fit costs, skip broken runners."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Iterator

import pytest

from tidal.benchmarks.cli import add_bench_parser, run_bench
from tidal.benchmarks.collect import Collected
from tidal.benchmarks.harness import BenchConfig, fit_line, latencies, percentile, run_harness, write_reports
from tidal.benchmarks.workloads import WORKLOADS
from tidal.runners.direct import DirectRunner
from tidal.runners.registry import _FACTORIES, register_runner

TINY = dict(sizes=(40, 80, 160), stream_events=60, stream_rate=20_000.0, quiet=True)


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
        BenchConfig(workloads=("q7",), runners=("direct", "ray"), sizes=(50, 100), stream_events=40, stream_rate=20_000.0, quiet=True, out=str(tmp_path))
    )
    assert report["runners"] == ["direct", "ray"]
    assert report["equality"]["q7"]["same"] is True
    ray_row = [r for r in report["results"] if r["runner"] == "ray"][0]
    assert ray_row["error"] is None and ray_row["memory_scope"] == "driver only"
    assert "runner_startup_s" in report and "ray" not in report["runner_startup_s"]  # the session's Ray was already up
