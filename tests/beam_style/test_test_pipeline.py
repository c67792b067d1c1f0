"""TestPipeline as Beam defines it: options from --test-pipeline-options, blocking runs, skips."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import unittest
from pathlib import Path

import pytest

import tidal as td
from tidal.metrics.metric import MetricResults
from tidal.runners.runner import Runner
from tidal.testing.test_pipeline import TestPipeline
from tidal.testing.util import assert_that, equal_to


def test_options_come_from_the_test_pipeline_options_argument() -> None:
    p = TestPipeline(argv=["prog", "--test-pipeline-options=--runner=microbatch --output=/tmp/o --streaming"])
    assert p.runner.name == "microbatch"
    assert p.options_list == ["--runner=microbatch", "--output=/tmp/o", "--streaming"]
    assert p.get_option("output") == "/tmp/o"
    assert p.get_option("streaming", bool_option=True) is True
    assert p.get_option("missing") is None
    assert p.get_full_options_as_args(input="in", flag=True, empty="") == [
        "--runner=microbatch", "--output=/tmp/o", "--streaming", "--input=in", "--flag",
    ]
    assert TestPipeline.get_options_list(["x", "--test-pipeline-options", "--a=1 --b=2"]) == ["--a=1", "--b=2"]


def test_the_runner_comes_from_tidal_runner_without_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDAL_RUNNER", "microbatch")
    assert TestPipeline(argv=[]).runner.name == "microbatch"


def test_an_integration_test_is_skipped_without_options() -> None:
    with pytest.raises(unittest.SkipTest, match="IT is skipped because --test-pipeline-options is not specified"):
        TestPipeline(argv=[], is_integration_test=True)
    assert TestPipeline(argv=["--test-pipeline-options=--runner=direct"], is_integration_test=True).runner.name == "direct"


def test_a_failing_pipeline_fails_the_with_block() -> None:
    with pytest.raises(td.PipelineExecutionError, match="Failed assert"):
        with TestPipeline(argv=[]) as p:
            assert_that(p | td.Create([1, 2]), equal_to([1, 3]))


class _NeverFinishes(Runner):
    name = "never"

    def run_pipeline(self, pipeline: td.Pipeline) -> td.PipelineResult:
        class Running(td.PipelineResult):
            @property
            def state(self) -> td.PipelineState:
                return td.PipelineState.RUNNING

            def wait_until_finish(self, duration: float | None = None) -> td.PipelineState:
                return td.PipelineState.RUNNING

            def cancel(self) -> td.PipelineState:
                return td.PipelineState.CANCELLED

            def metrics(self) -> MetricResults:
                return MetricResults()

        return Running()


def test_blocking_requires_the_pipeline_to_finish() -> None:
    p = TestPipeline(runner=_NeverFinishes(), argv=[], timeout=10)
    p | td.Create([1])
    with pytest.raises(AssertionError, match="Pipeline execution failed: the pipeline ended RUNNING"):
        p.run()
    p = TestPipeline(runner=_NeverFinishes(), argv=[], blocking=False)
    p | td.Create([1])
    assert p.run().state is td.PipelineState.RUNNING


def test_the_pytest_flag_runs_a_whole_test_file_on_a_runner(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tidal.testing.pytest_plugin"]\n')
    (tmp_path / "test_beam_style.py").write_text(textwrap.dedent('''\
        import tidal as beam
        from tidal.testing.test_pipeline import TestPipeline
        from tidal.testing.util import assert_that, equal_to

        def test_doubles():
            with TestPipeline() as p:
                assert p.runner.name == "microbatch"
                assert_that(p | beam.Create([1, 2]) | beam.Map(lambda x: 2 * x), equal_to([2, 4]))
        '''))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--test-pipeline-options=--runner=microbatch",
         str(tmp_path / "test_beam_style.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
