"""Beam's module paths exist in tidal with Beam's names, as re-exports of one implementation."""

from __future__ import annotations

import importlib

import pytest

import tidal
from tidal.model import coders as model_coders
from tidal.model import options as model_options
from tidal.model import typehints as model_typehints

# Beam path (apache_beam replaced by tidal) -> names a Beam program imports from it.
PATHS: dict[str, list[str]] = {
    "tidal": ["Pipeline", "Create", "Map", "FlatMap", "ParDo", "DoFn", "GroupByKey", "CombinePerKey", "CombineGlobally",
              "Flatten", "WindowInto", "Partition", "CoGroupByKey", "Filter", "Keys", "Values", "pvalue", "window",
              "combiners", "io", "coders", "metrics", "typehints", "transforms"],
    "tidal.options.pipeline_options": ["PipelineOptions", "StandardOptions", "SetupOptions", "DirectOptions", "TypeOptions",
                                       "DebugOptions"],
    "tidal.options.value_provider": ["StaticValueProvider", "RuntimeValueProvider", "ValueProvider"],
    "tidal.testing.test_pipeline": ["TestPipeline"],
    "tidal.testing.util": ["assert_that", "equal_to", "is_empty", "is_not_empty", "equal_to_per_window", "BeamAssertException"],
    "tidal.testing.test_stream": ["TestStream"],
    "tidal.transforms": ["DoFn", "ParDo", "Create", "Map", "GroupByKey", "CombinePerKey", "Reshuffle", "PTransform",
                         "ptransform_fn", "window", "trigger", "combiners", "userstate", "core", "util"],
    "tidal.transforms.window": ["FixedWindows", "SlidingWindows", "Sessions", "GlobalWindows", "TimestampedValue",
                                "IntervalWindow", "TimestampCombiner", "WindowFn"],
    "tidal.transforms.trigger": ["AfterWatermark", "AfterCount", "AfterProcessingTime", "Repeatedly", "AccumulationMode",
                                 "AfterAny", "AfterAll", "AfterEach", "OrFinally", "DefaultTrigger"],
    "tidal.transforms.combiners": ["Count", "Mean", "Top", "ToList", "ToDict", "Latest", "Sample"],
    "tidal.transforms.userstate": ["BagStateSpec", "ReadModifyWriteStateSpec", "CombiningValueStateSpec", "SetStateSpec",
                                   "TimerSpec", "on_timer"],
    "tidal.transforms.timeutil": ["TimeDomain"],
    "tidal.transforms.ptransform": ["PTransform", "ptransform_fn"],
    "tidal.transforms.core": ["DoFn", "CombineFn", "ParDo", "Map", "FlatMap", "Filter", "Create", "GroupByKey",
                              "CombinePerKey", "CombineGlobally", "CombineValues", "Flatten", "WindowInto", "Partition", "Impulse"],
    "tidal.transforms.util": ["Keys", "Values", "KvSwap", "WithKeys", "Distinct", "Reshuffle", "CoGroupByKey"],
    "tidal.io": ["ReadFromText", "WriteToText"],
    "tidal.io.textio": ["ReadFromText", "WriteToText"],
    "tidal.metrics": ["Metrics", "MetricsFilter"],
    "tidal.metrics.metric": ["Metrics", "MetricsFilter", "MetricResults"],
    "tidal.pvalue": ["PCollection", "TaggedOutput", "AsSingleton", "AsIter", "AsList", "AsDict"],
    "tidal.coders": ["Coder", "StrUtf8Coder", "VarIntCoder", "BytesCoder", "TupleCoder", "FastPrimitivesCoder", "registry"],
    "tidal.coders.coders": ["Coder", "PickleCoder", "IterableCoder"],
    "tidal.typehints": ["Any", "Tuple", "List", "KV", "Iterable", "Optional", "Union", "with_input_types",
                        "with_output_types", "TypeCheckError"],
    "tidal.typehints.decorators": ["with_input_types", "with_output_types", "TypeCheckError"],
    "tidal.utils.timestamp": ["Timestamp", "Duration", "MIN_TIMESTAMP", "MAX_TIMESTAMP"],
    "tidal.runners": ["DirectRunner", "PipelineState"],
    "tidal.runners.runner": ["PipelineResult", "PipelineState", "PipelineRunner"],
    "tidal.runners.direct.direct_runner": ["DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"],
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_the_beam_path_exists_with_beams_names(path: str) -> None:
    module = importlib.import_module(path)
    missing = [name for name in PATHS[path] if not hasattr(module, name)]
    assert missing == []


def test_the_paths_re_export_one_implementation() -> None:
    from tidal.options import pipeline_options
    from tidal.testing import test_stream
    from tidal.transforms import window as beam_window
    from tidal.typehints import decorators

    assert pipeline_options.PipelineOptions is model_options.PipelineOptions
    assert decorators.TypeCheckError is model_typehints.TypeCheckError
    assert tidal.coders.registry is model_coders.registry
    assert test_stream.TestStream is tidal.testing.TestStream
    assert beam_window.FixedWindows is tidal.window.FixedWindows  # the short path is the same module's names
    assert tidal.transforms.core.GroupByKey is tidal.GroupByKey


def test_the_short_paths_still_work() -> None:
    from tidal import combiners, trigger, window

    assert window.Sessions is tidal.transforms.window.Sessions
    assert trigger.AfterCount is tidal.transforms.trigger.AfterCount
    assert combiners.Count is tidal.transforms.combiners.Count
