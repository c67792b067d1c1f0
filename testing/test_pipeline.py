"""TestPipeline at Beam's path ``apache_beam.testing.test_pipeline``.

A pipeline for tests whose options come from the test command line, so one
test file runs on every runner:

    pytest --test-pipeline-options="--runner=ray" tests/

(with ``pytest_plugins = ["tidal.testing.pytest_plugin"]`` in a conftest.py to
register the flag with pytest), or with the ``TIDAL_RUNNER`` environment
variable. As in Beam, ``with TestPipeline() as p:`` runs the pipeline when the
block ends and fails the test if the pipeline fails.

>>> import tidal as td
>>> from tidal.testing.util import assert_that, equal_to
>>> with TestPipeline(argv=[]) as p:
...     assert_that(p | td.Create([1, 2]) | td.Map(lambda x: x * 10), equal_to([10, 20]))
"""

from __future__ import annotations

import argparse
import shlex
import unittest
from typing import TYPE_CHECKING, Any, ClassVar

import cloudpickle

from tidal.model.options import PipelineOptions
from tidal.model.pipeline import Pipeline
from tidal.model.result import PipelineState

if TYPE_CHECKING:
    from tidal.model.result import PipelineResult
    from tidal.runners.runner import Runner

__all__ = ["TestPipeline"]


class TestPipeline(Pipeline):
    """Beam's TestPipeline: a Pipeline whose options come from ``--test-pipeline-options``.

    ``argv`` defaults to ``sys.argv``; the options are the words of its
    ``--test-pipeline-options`` value (or of the value the pytest plugin
    read), plus ``additional_pipeline_args``. An integration test
    (``is_integration_test=True``) is skipped when no test options are given.
    ``blocking`` makes :meth:`run` wait for the pipeline and fail unless it
    finished; ``timeout`` (milliseconds, as in Beam) bounds that wait.
    """

    #: The ``--test-pipeline-options`` value pytest was given (set by the pytest plugin).
    pytest_test_pipeline_options: ClassVar[str | None] = None

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        runner: "str | Runner | None" = None,
        options: PipelineOptions | None = None,
        argv: list[str] | None = None,
        is_integration_test: bool = False,
        blocking: bool = True,
        additional_pipeline_args: list[str] | None = None,
        display_data: dict[str, Any] | None = None,
        timeout: int | None = None,
    ) -> None:
        self.is_integration_test = is_integration_test
        self.not_use_test_runner_api = False
        self.options_list = self._parse_test_option_args(argv) + list(additional_pipeline_args or [])
        self.blocking = blocking
        self.timeout = timeout
        if options is None:
            options = PipelineOptions(self.options_list)
        super().__init__(runner, options, display_data=display_data)

    def run(self, test_runner_api: bool = True) -> "PipelineResult":
        """Run the pipeline; when blocking, wait and fail unless it finished."""
        result = super().run()
        if self.blocking:
            duration = None if self.timeout is None else self.timeout / 1000.0
            state = result.wait_until_finish(duration)
            if state not in (PipelineState.DONE, PipelineState.CANCELLED):
                raise AssertionError(f"Pipeline execution failed: the pipeline ended {state.name}")
        return result

    def get_pipeline_options(self) -> PipelineOptions:
        """The options this pipeline runs with."""
        return self.options

    def _parse_test_option_args(self, argv: list[str] | None) -> list[str]:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--test-pipeline-options", type=str, action="store")
        parser.add_argument("--not-use-test-runner-api", action="store_true", default=False)
        known, _ = parser.parse_known_args(argv)
        test_options = known.test_pipeline_options or TestPipeline.pytest_test_pipeline_options
        if self.is_integration_test and not test_options:
            raise unittest.SkipTest("IT is skipped because --test-pipeline-options is not specified")
        self.not_use_test_runner_api = known.not_use_test_runner_api
        return shlex.split(test_options) if test_options else []

    @classmethod
    def get_options_list(cls, argv: list[str] | None = None) -> list[str]:
        """The words of ``--test-pipeline-options`` in ``argv`` (default: ``sys.argv``)."""
        import sys

        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--test-pipeline-options", type=str, action="store")
        known, _ = parser.parse_known_args(argv if argv is not None else sys.argv)
        opts = known.test_pipeline_options or cls.pytest_test_pipeline_options
        return shlex.split(opts) if opts else []

    def get_full_options_as_args(self, **extra_opts: Any) -> list[str]:
        """The test options as flags, with ``extra_opts`` appended (``--name=value``).

        As in Beam, a false value is left out, a true boolean becomes a bare
        flag, and a value whose name contains "matcher" is pickled.

        >>> TestPipeline(argv=["--test-pipeline-options=--runner=direct"]).get_full_options_as_args(
        ...     output="/tmp/out", streaming=True, skip=None)
        ['--runner=direct', '--output=/tmp/out', '--streaming']
        """
        options = list(self.options_list)
        for k, v in extra_opts.items():
            if not v:
                continue
            if isinstance(v, bool):
                options.append(f"--{k}")
            elif "matcher" in k:
                options.append(f"--{k}={cloudpickle.dumps(v).hex()}")
            else:
                options.append(f"--{k}={v}")
        return options

    def get_option(self, opt_name: str, bool_option: bool = False) -> Any:
        """The value of ``--opt_name`` in the test options, or None.

        >>> TestPipeline(argv=["--test-pipeline-options=--output=/tmp/x"]).get_option("output")
        '/tmp/x'
        """
        parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
        name = opt_name[2:] if opt_name.startswith("--") else opt_name
        if bool_option:
            parser.add_argument("--" + name, action="store_true")
        else:
            parser.add_argument("--" + name, type=str, action="store")
        known, _ = parser.parse_known_args(self.options_list)
        return getattr(known, name.replace("-", "_"), None)
