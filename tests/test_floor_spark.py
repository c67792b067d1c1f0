"""The floor benchmark's ``spark-rdd`` runner: the four workloads pass their checks on a local
Spark, a wrong Spark result stops the benchmark before any figure, and a Python without
pyspark is told where to find it.

The Spark tests run where pyspark is installed (``.venv-spark``, made by ``make bench-peers``)
and are skipped elsewhere; the last test runs only where pyspark is missing.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pytest

from tidal.benchmarks import floor

SMALL = ["--elements", "2000", "--repeats", "1", "--runners", "spark-rdd"]
WORKLOADS = ("wordcount", "fixed", "sessions", "merged")
NO_PYSPARK = "pyspark is installed in .venv-spark only (make bench-peers)"


@pytest.fixture
def pyspark() -> Any:
    return pytest.importorskip("pyspark", reason=NO_PYSPARK)


@pytest.mark.slow
@pytest.mark.usefixtures("pyspark")
def test_the_four_workloads_pass_their_checks_on_spark(capsys: pytest.CaptureFixture[str]) -> None:
    assert floor.main([*SMALL, "--workloads", ",".join(WORKLOADS)]) == 0
    out = capsys.readouterr().out
    for name in WORKLOADS:
        assert re.search(rf"^{name} +2,000 spark-rdd +median +[\d,]+ elements/s", out, re.MULTILINE), out


@pytest.mark.slow
@pytest.mark.usefixtures("pyspark")
@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("sessions", "error: floor sessions 2000 spark-rdd: 1999 output(s) with digest "),
        ("wordcount", "error: floor wordcount 2000 spark-rdd: the output differs from the expected result: "),
    ],
)
def test_a_wrong_spark_result_stops_the_benchmark_before_any_figure(
    name: str, error: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = floor.SPARK_JOBS[name]
    monkeypatch.setitem(floor.SPARK_JOBS, name, lambda sc, data: job(sc, data)[1:])
    assert floor.main([*SMALL, "--workloads", name]) == 1
    captured = capsys.readouterr()
    assert "elements/s" not in captured.out, captured.out
    assert captured.err.startswith(error) and captured.err.count("\n") == 1, captured.err
    assert "expected" in captured.err


def test_without_pyspark_spark_rdd_says_where_to_find_it(capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("pyspark") is not None:
        pytest.skip("pyspark is installed here")
    assert floor.main(["--elements", "2000", "--repeats", "1", "--runners", "direct,spark-rdd"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing was measured
    assert captured.err.startswith("error: spark-rdd needs pyspark") and captured.err.count("\n") == 1, captured.err
    assert "make bench-peers" in captured.err and ".venv-spark" in captured.err
