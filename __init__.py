"""tidal: write a dataflow pipeline once, run it on interchangeable engines.

``import tidal as td`` gives the Beam-style API: Pipeline, Create, Map,
GroupByKey, CombinePerKey, WindowInto, ... See the README for a tour.
"""

from tidal import coders, combiners, metrics, pvalue, testing, transforms, trigger, typehints, window
from tidal.model.combinefn import CombineFn
from tidal.model.dofn import DoFn
from tidal.model.metrics import Metrics, MetricsFilter
from tidal.model.pipeline import Pipeline, PipelineError
from tidal.model.primitives import (
    BoundedSource,
    CombinePerKey,
    Flatten,
    GroupByKey,
    Impulse,
    ParDo,
    Read,
    UnboundedSource,
    WindowInto,
)
from tidal.model.ptransform import PTransform, ptransform_fn
from tidal.model.pvalue import AsDict, AsIter, AsList, AsMultiMap, AsSingleton, PCollection, TaggedOutput
from tidal.model.result import PipelineResult, PipelineState
from tidal.model.time import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp
from tidal.model.userstate import (
    BagStateSpec,
    CombiningValueStateSpec,
    ReadModifyWriteStateSpec,
    SetStateSpec,
    TimeDomain,
    TimerSpec,
    on_timer,
)
from tidal.model.window import TimestampedValue
from tidal.model.windowed_value import WindowedValue
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError
from tidal.runners.core.queryable import JobFinishedError, StateQueryError
from tidal import io
from tidal.io import (
    GeneratorSource,
    ReadFromCsv,
    ReadFromJson,
    ReadFromParquet,
    ReadFromParquetBatched,
    ReadFromRedisStream,
    ReadFromSocket,
    ReadFromText,
    SocketTextSource,
    WriteToCsv,
    WriteToJson,
    WriteToParquet,
    WriteToParquetBatched,
    WriteToRedisStream,
    WriteToText,
)
from tidal.transforms.core import (
    CombineGlobally,
    CombineValues,
    Create,
    Filter,
    FlatMap,
    FlatMapTuple,
    Map,
    MapTuple,
    Partition,
)
from tidal.transforms.util import (
    CoGroupByKey,
    Distinct,
    Keys,
    KvSwap,
    Reshuffle,
    Values,
    WithKeys,
)

__version__ = "0.1.0"

__all__ = [
    "AsDict", "AsIter", "AsList", "AsMultiMap", "AsSingleton", "BagStateSpec", "BoundedSource",
    "CoGroupByKey", "CombineFn", "CombineGlobally", "CombinePerKey", "CombineValues",
    "CombiningValueStateSpec", "Create", "Distinct", "DoFn", "Duration", "Filter", "FlatMap",
    "FlatMapTuple", "Flatten", "GeneratorSource", "ReadFromText", "WriteToText", "ReadFromCsv", "WriteToCsv",
    "ReadFromJson", "WriteToJson", "ReadFromParquet", "ReadFromParquetBatched", "WriteToParquet",
    "WriteToParquetBatched", "io", "ReadFromSocket", "SocketTextSource", "ReadFromRedisStream", "WriteToRedisStream",
    "GroupByKey", "Impulse", "Keys", "KvSwap", "MAX_TIMESTAMP",
    "MIN_TIMESTAMP", "Map", "MapTuple", "Metrics", "MetricsFilter", "PCollection", "PTransform",
    "ParDo", "Partition", "Pipeline", "PipelineError", "PipelineExecutionError", "PipelineResult",
    "PipelineState", "Read", "ReadModifyWriteStateSpec", "Reshuffle", "SetStateSpec", "TaggedOutput",
    "TimeDomain", "TimerSpec", "Timestamp", "TimestampedValue", "UnboundedSource", "UserCodeError",
    "Values", "WindowInto", "WindowedValue", "WithKeys", "combiners", "on_timer", "ptransform_fn",
    "pvalue", "testing", "trigger", "window", "coders", "metrics", "transforms", "typehints",
    "StateQueryError", "JobFinishedError",
]
