"""Testing helpers, at Beam's paths: ``tidal.testing.util`` (assert_that, equal_to, ...),
``tidal.testing.test_stream`` (TestStream) and ``tidal.testing.test_pipeline``
(TestPipeline); :mod:`tidal.testing.pytest_plugin` adds Beam's
``--test-pipeline-options`` flag to pytest.

>>> import tidal as td
>>> from tidal.testing import assert_that, equal_to
>>> with td.Pipeline() as p:
...     words = p | td.Create(["a", "b", "a"])
...     assert_that(words | td.combiners.Count.PerElement(), equal_to([("a", 2), ("b", 1)]))
"""

from tidal.testing.test_pipeline import TestPipeline
from tidal.testing.test_stream import TestStream
from tidal.testing.util import (
    BeamAssertException,
    TestWindowedValue,
    assert_that,
    equal_to,
    equal_to_per_window,
    is_empty,
    is_not_empty,
)

__all__ = [
    "BeamAssertException", "TestPipeline", "TestStream", "TestWindowedValue", "assert_that", "equal_to",
    "equal_to_per_window", "is_empty", "is_not_empty",
]
