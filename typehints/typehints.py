"""The type-hint constructs at Beam's path ``apache_beam.typehints.typehints``.

They are Python's ``typing`` constructs; ``KV[K, V]`` is ``Tuple[K, V]``.

>>> from tidal.typehints.typehints import KV, Tuple, is_consistent_with
>>> KV[str, int] == Tuple[str, int], is_consistent_with(Tuple[str, int], KV[str, float])
(True, True)
"""

from typing import (
    Any,
    Collection,
    Dict,
    FrozenSet,
    Generator,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from tidal.model.typehints import KV, TypeVariable, is_consistent_with

__all__ = [
    "Any", "Collection", "Dict", "FrozenSet", "Generator", "Iterable", "Iterator", "KV", "List",
    "Optional", "Sequence", "Set", "Tuple", "TypeVariable", "Union", "is_consistent_with",
]
