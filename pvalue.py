"""PValues and side-input views: ``from tidal import pvalue`` as in Beam."""

from tidal.model.pvalue import (
    AsDict,
    AsIter,
    AsList,
    AsMultiMap,
    AsSideInput,
    AsSingleton,
    DoOutputsTuple,
    PBegin,
    PCollection,
    PValue,
    SideInputError,
    TaggedOutput,
)

__all__ = [
    "AsDict", "AsIter", "AsList", "AsMultiMap", "AsSideInput", "AsSingleton", "DoOutputsTuple",
    "PBegin", "PCollection", "PValue", "SideInputError", "TaggedOutput",
]
