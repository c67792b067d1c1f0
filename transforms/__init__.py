"""The user-facing transform library, built from the model's primitives."""

from tidal.transforms.core import Create, FlatMap, FlatMapTuple, Filter, Map, MapTuple, Partition
from tidal.transforms.util import (
    CoGroupByKey,
    CombineGlobally,
    CombineValues,
    Distinct,
    Keys,
    KvSwap,
    Reshuffle,
    Values,
    WithKeys,
)

__all__ = [
    "Create", "Map", "MapTuple", "FlatMap", "FlatMapTuple", "Filter", "Partition",
    "Keys", "Values", "KvSwap", "WithKeys", "Distinct", "Reshuffle", "CoGroupByKey",
    "CombineGlobally", "CombineValues",
]
