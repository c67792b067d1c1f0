"""A pytest plugin for Beam-style test suites: ``--test-pipeline-options`` on the pytest command line.

Enable it in a ``conftest.py`` with ``pytest_plugins = ["tidal.testing.pytest_plugin"]``;
then ``pytest --test-pipeline-options="--runner=ray"`` runs every
:class:`~tidal.testing.test_pipeline.TestPipeline` of the suite on that
runner, as Beam's own test suite does.
"""

from __future__ import annotations

from typing import Any

from tidal.testing.test_pipeline import TestPipeline

__all__ = ["pytest_addoption", "pytest_configure"]


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--test-pipeline-options",
        help="Options for every TestPipeline, e.g. --test-pipeline-options='--runner=ray'",
    )


def pytest_configure(config: Any) -> None:
    TestPipeline.pytest_test_pipeline_options = config.getoption("test_pipeline_options", default=None)
