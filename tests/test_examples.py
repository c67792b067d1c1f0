"""The example scripts run, as plain scripts and through ``python -m tidal run``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, via_cli: bool = False, timeout: float = 120) -> str:
    path = str(EXAMPLES / name)
    cmd = [sys.executable, "-m", "tidal", "run", path, *args] if via_cli else [sys.executable, path, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("via_cli", [False, True], ids=["script", "tidal-run"])
def test_wordcount(via_cli: bool) -> None:
    lines = run_example("wordcount.py", "--top", "3", via_cli=via_cli).splitlines()
    assert lines == ["Top 3 words:", "  the          17", "  and          6", "  is           4"]


def test_wordcount_reads_a_file(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("Ebb and flow, ebb and flow.\nEbb!\n")
    lines = run_example("wordcount.py", "--input", str(text)).splitlines()
    assert lines == ["Top 3 words:", "  ebb          3", "  and          2", "  flow         2"]


@pytest.mark.parametrize("via_cli", [False, True], ids=["script", "tidal-run"])
def test_rolling_wordcount_sliding(via_cli: bool) -> None:
    lines = run_example("rolling_wordcount.py", via_cli=via_cli).splitlines()
    assert lines[0] == "Word counts per 60 s window (one every 30 s), most said first:"
    assert lines[1] == "[08:59:30, 09:00:30)  tide 3, at 1, high 1, is 1, noon 1 (+4 more)"
    assert lines[2] == "[09:00:00, 09:01:00)  is 3, the 3, tide 3, rising 2, at 1 (+8 more)"
    assert lines[-1] == "[09:02:30, 09:03:30)  low 1, tide 1"
    assert len(lines) == 8


def test_rolling_wordcount_fixed() -> None:
    lines = run_example("rolling_wordcount.py", "--every", "0").splitlines()
    assert lines == [
        "Word counts per 60 s window (fixed), most said first:",
        "[09:00:00, 09:01:00)  is 3, the 3, tide 3, rising 2, at 1 (+8 more)",
        "[09:01:00, 09:02:00)  the 3, sea 2, tide 2, and 1, falling 1 (+5 more)",
        "[09:02:00, 09:03:00)  is 1, low 1, moon 1, setting 1, the 1 (+1 more)",
    ]


@pytest.mark.parametrize("via_cli", [False, True], ids=["script", "tidal-run"])
def test_stock_prices(via_cli: bool) -> None:
    lines = run_example("stock_prices.py", via_cli=via_cli).splitlines()
    assert lines == [
        "Per-minute prices, all exchanges:",
        "[09:00, 09:01)  ACME     mean  101.00   min  100.50   max  101.50",
        "[09:00, 09:01)  GLOBEX   mean   55.60   min   55.20   max   56.00",
        "[09:00, 09:01)  INITECH  mean   12.50   min   12.20   max   12.90",
        "[09:01, 09:02)  ACME     mean  101.83   min  101.00   max  102.50",
        "[09:01, 09:02)  GLOBEX   mean   54.90   min   54.80   max   55.00",
        "[09:01, 09:02)  INITECH  mean   12.90   min   12.70   max   13.10",
    ]


def test_every_example_draws_a_graph() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        proc = subprocess.run(
            [sys.executable, "-m", "tidal", "graph", str(path), "--format", "mermaid"],
            capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        first_drawing_line = next(line for line in proc.stdout.splitlines() if not line.startswith("%%"))
        assert first_drawing_line == "flowchart TD", path.name


def test_every_runner_gives_the_same_windowed_counts() -> None:
    lines = run_example("every_runner.py", "--runners", "direct,microbatch").splitlines()
    assert lines[0].startswith("    direct: 23 counts in ")
    assert lines[1].startswith("microbatch: 23 counts in ")
    assert lines[2] == "    [0s, 60s) darkens: 1"
    assert "    [60s, 120s) the: 3" in lines
    assert "    [120s, 180s) the: 2" in lines
    assert lines[-1] == "every runner produced the same result: yes"


@pytest.mark.slow
def test_a_killed_worker_and_a_lost_node_leave_the_output_exactly_once() -> None:
    pytest.importorskip("ray")
    out = run_example("fault_tolerance.py", "--events", "8000", timeout=300)
    # Ray itself reports the lost raylet on standard output; the example's own lines are these.
    ours = ("killing", "removing", "recovered from", "published", "exactly once")
    lines = [line for line in out.splitlines() if line.startswith(ours)]
    assert [line.split(" ")[0] for line in lines] == [
        "killing", "recovered", "published", "exactly", "removing", "recovered", "published", "exactly",
    ]
    assert lines[0] == "killing one worker of the running job ..."
    assert lines[4] == "removing a node of the running job (every worker on it dies with it) ..."
    for recovered in (lines[1], lines[5]):
        assert recovered.startswith("recovered from checkpoint "), recovered
        assert "ActorDiedError" in recovered
    for published, once in (lines[2:4], lines[6:8]):
        assert published == "published 32 window sums: 0 missing, 0 duplicated"
        assert once == "exactly once: yes"


def test_beam_port() -> None:
    lines = run_example("beam_port.py", "--programs", "wordcount,leader_board").splitlines()
    assert lines[0].split() == ["program", "missing", "in", "tidal", "direct", "microbatch"]
    assert [line.split()[:4] for line in lines[1:3]] == [
        ["wordcount", "0", "same", "as"], ["leader_board", "0", "same", "as"],
    ]
    assert lines[-1] == "every ported program wrote exactly what Apache Beam's DirectRunner wrote"
