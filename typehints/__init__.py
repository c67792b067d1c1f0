"""Type hints at Beam's path ``apache_beam.typehints``: declared types, checked when a pipeline is built.

The hint constructs are Python's ``typing`` ones under Beam's names
(``Tuple``, ``List``, ``KV``, ``Iterable``, ...); see
:mod:`tidal.model.typehints` for the rules.

>>> import tidal as td
>>> from tidal import typehints
>>> @typehints.with_input_types(typehints.Tuple[str, int])
... class Total(td.DoFn):
...     def process(self, kv):
...         yield kv[1]
>>> p = td.Pipeline()
>>> try:
...     _ = p | td.Create(["a"]) | td.ParDo(Total())
... except typehints.TypeCheckError as e:
...     print(str(e).split(" but ")[0])
The transform 'ParDo(Total)' requires PCollections of type 'Tuple[<class 'str'>, <class 'int'>]'
"""

from tidal.typehints.decorators import TypeCheckError, with_input_types, with_output_types
from tidal.typehints.typehints import (
    Any,
    Collection,
    Dict,
    FrozenSet,
    Generator,
    Iterable,
    Iterator,
    KV,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVariable,
    Union,
    is_consistent_with,
)

__all__ = [
    "Any", "Collection", "Dict", "FrozenSet", "Generator", "Iterable", "Iterator", "KV", "List",
    "Optional", "Sequence", "Set", "Tuple", "TypeCheckError", "TypeVariable", "Union",
    "is_consistent_with", "with_input_types", "with_output_types",
]
