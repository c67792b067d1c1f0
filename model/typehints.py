"""Type hints: declared element types, checked when a transform is applied, as Beam checks them.

A Beam program declares types with ``.with_input_types(...)`` /
``.with_output_types(...)``, with the ``@with_input_types`` /
``@with_output_types`` decorators on a function or DoFn class, or with
Python annotations on the function (or on ``DoFn.process``). tidal reads
the same declarations, infers the element type of ``Create`` from its
values, carries element types through the primitives that keep them
(WindowInto, Flatten, Reshuffle, GroupByKey), and when a transform is
applied to a PCollection whose type is known and does not fit the declared
input type, raises :class:`TypeCheckError` with Beam's wording:

>>> import tidal as td
>>> p = td.Pipeline()
>>> try:
...     _ = p | "Nums" >> td.Create([1, 2]) | "Upper" >> td.Map(str.upper).with_input_types(str)
... except TypeCheckError as e:
...     print(e)
The transform 'Upper' requires PCollections of type '<class 'str'>' but was applied to a PCollection of type '<class 'int'>' (produced by the transform 'Nums'). 

Hints are Python's own ``typing`` objects (``typing.Tuple[str, int]``,
``list[int]``) or the aliases in :mod:`tidal.typehints` (``KV[str, int]`` is
``Tuple[str, int]``). The rules of consistency are Beam's: ``Any`` and type
variables fit everything, ``int`` fits ``float``, a union fits when each of its
members does, containers compare element by element. tidal does not infer
types from function bodies (Beam's "trivial inference"), so a transform with
no declared output type produces a PCollection of type ``Any``, which every
hint accepts. Hints never change results; they only reject a pipeline that
Beam would reject when it is built. ``--no_pipeline_type_check`` turns the
check off.
"""

from __future__ import annotations

import collections.abc
import inspect
import operator
import typing
from typing import Any, Callable, Iterable

from tidal.model.errors import PipelineError

__all__ = [
    "TypeCheckError",
    "IOTypeHints",
    "KV",
    "TypeVariable",
    "is_consistent_with",
    "format_hint",
    "normalize",
    "instance_to_type",
    "union_of",
    "union_of_instances",
    "with_input_types",
    "with_output_types",
    "get_type_hints",
    "element_type_of_iterable",
    "key_value_types",
    "tuple_of",
    "iterable_of",
    "ANY",
    "check_input_types",
    "check_output_types",
]


class TypeCheckError(PipelineError):
    """A declared type hint does not fit the PCollection a transform is applied to (Beam's error)."""


#: Beam's name for a type variable (``typehints.TypeVariable``): Python's TypeVar.
TypeVariable = typing.TypeVar

#: The key and value type variables of Beam's built-in hints (GroupByKey takes ``KV[K, V]``).
K = typing.TypeVar("K")
V = typing.TypeVar("V")


class _KVFactory:
    """``KV[K, V]``: Beam's name for a key-value pair, the hint ``Tuple[K, V]``."""

    def __getitem__(self, params: Any) -> Any:
        if not isinstance(params, tuple) or len(params) != 2:
            raise TypeError(f"KV[K, V] takes exactly two types, got {params!r}")
        return typing.Tuple[params[0], params[1]]

    def __repr__(self) -> str:
        return "KV"


KV = _KVFactory()


# -- a normal form for hints --------------------------------------------------------------
# A hint is normalised into one of: ANY, a class, ("typevar", name), ("union", frozenset),
# ("tuple", (elements...)), ("tuple...", element), (container kind, element) for list, set,
# frozenset, iterable, iterator, sequence, collection, and ("dict", (key, value)).
ANY = "Any"
_CONTAINERS = {
    list: "list", set: "set", frozenset: "frozenset",
    collections.abc.Iterable: "iterable", collections.abc.Iterator: "iterator",
    collections.abc.Generator: "iterator", collections.abc.Sequence: "sequence",
    collections.abc.Collection: "collection",
}
_NAMES = {
    "list": "List", "set": "Set", "frozenset": "FrozenSet", "iterable": "Iterable",
    "iterator": "Iterator", "sequence": "Sequence", "collection": "Collection",
}


def _union(members: Iterable[Any]) -> Any:
    flat: set[Any] = set()
    for m in members:
        if isinstance(m, tuple) and m and m[0] == "union":
            flat.update(m[1])
        else:
            flat.add(m)
    if ANY in flat:
        return ANY
    if len(flat) == 1:
        return next(iter(flat))
    return ("union", frozenset(flat))


def normalize(hint: Any) -> Any:
    """The normal form of a hint (classes stay classes; typing constructs become tuples)."""
    if hint is None:
        return type(None)
    if hint is typing.Any or hint is ANY:
        return ANY
    if isinstance(hint, typing.TypeVar):
        return ("typevar", hint.__name__)
    if isinstance(hint, tuple) and hint and hint[0] in ("typevar", "union", "tuple", "tuple...", "dict", *_NAMES):
        return hint  # already normal
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        return _union(normalize(a) for a in args)
    if type(hint).__name__ == "UnionType":  # int | str
        return _union(normalize(a) for a in args)
    if origin is tuple or hint is tuple or hint is typing.Tuple:
        if not args:
            return ("tuple...", ("typevar", "T"))
        if len(args) == 2 and args[1] is Ellipsis:
            return ("tuple...", normalize(args[0]))
        if args == ((),):
            return ("tuple", ())
        return ("tuple", tuple(normalize(a) for a in args))
    if origin is dict or hint is dict or hint is typing.Dict:
        if len(args) == 2:
            return ("dict", (normalize(args[0]), normalize(args[1])))
        return ("dict", (("typevar", "KT"), ("typevar", "VT")))
    for cls, kind in _CONTAINERS.items():
        if origin is cls or hint is cls:
            return (kind, normalize(args[0]) if args else ("typevar", "T"))
    for alias, cls in ((typing.List, list), (typing.Set, set), (typing.FrozenSet, frozenset),
                       (typing.Iterable, collections.abc.Iterable), (typing.Iterator, collections.abc.Iterator),
                       (typing.Generator, collections.abc.Generator), (typing.Sequence, collections.abc.Sequence)):
        if hint is alias:
            return (_CONTAINERS[cls], ("typevar", "T"))
    if isinstance(hint, type):
        if hint.__name__ in ("TimestampedValue", "WindowedValue") and hint.__module__.startswith("tidal."):
            return ANY  # a re-stamped element: its value's type is not declared (as in Beam)
        return hint
    return ANY  # a forward reference or a construct tidal does not check: it accepts everything


def format_hint(hint: Any) -> str:
    """A hint written as Beam writes it in its messages.

    >>> format_hint(typing.Tuple[str, int]), format_hint(typing.Optional[int]), format_hint(KV[K, typing.Any])
    ("Tuple[<class 'str'>, <class 'int'>]", "Union[<class 'NoneType'>, <class 'int'>]", 'Tuple[TypeVariable[K], Any]')
    """
    n = normalize(hint)
    if n == ANY:
        return "Any"
    if isinstance(n, type):
        return repr(n)
    kind, body = n
    if kind == "typevar":
        return f"TypeVariable[{body}]"
    if kind == "union":
        return "Union[" + ", ".join(sorted(format_hint(m) for m in body)) + "]"
    if kind == "tuple":
        return "Tuple[" + ", ".join(format_hint(m) for m in body) + "]" if body else "Tuple[()]"
    if kind == "tuple...":
        return f"Tuple[{format_hint(body)}, ...]"
    if kind == "dict":
        return f"Dict[{format_hint(body[0])}, {format_hint(body[1])}]"
    return f"{_NAMES[kind]}[{format_hint(body)}]"


def _element_of(n: Any) -> Any | None:
    """The element type of an iterable normal form (None when it is not iterable as Beam sees it)."""
    if isinstance(n, tuple):
        kind, body = n
        if kind in _NAMES:
            return body
        if kind == "tuple...":
            return body
        if kind == "tuple":
            return _union(body) if body else ANY
    return None


def is_consistent_with(sub: Any, base: Any) -> bool:
    """Whether a value of type ``sub`` fits where ``base`` is required (Beam's rules).

    >>> is_consistent_with(int, float), is_consistent_with(float, int)
    (True, False)
    >>> is_consistent_with(typing.List[int], typing.Iterable[int]), is_consistent_with(str, typing.Iterable[str])
    (True, False)
    """
    s, b = normalize(sub), normalize(base)
    return _consistent(s, b)


def _consistent(s: Any, b: Any) -> bool:
    if s == b or s == ANY or b == ANY:
        return True
    if isinstance(s, tuple) and s[0] == "typevar" or isinstance(b, tuple) and b[0] == "typevar":
        return True
    if isinstance(s, tuple) and s[0] == "union":
        return all(_consistent(m, b) for m in s[1])
    if isinstance(b, tuple) and b[0] == "union":
        return any(_consistent(s, m) for m in b[1])
    if isinstance(b, type):
        if isinstance(s, type):
            if b is float and s is int or b is complex and s in (int, float):
                return True
            return issubclass(s, b)
        # a typing construct against a plain class: compare the container class
        kind = s[0]
        cls = {"tuple": tuple, "tuple...": tuple, "dict": dict}.get(kind)
        if cls is None:
            cls = next((c for c, k in _CONTAINERS.items() if k == kind), None)
        return cls is not None and isinstance(cls, type) and issubclass(cls, b)
    kind, body = b
    if isinstance(s, type):
        return False  # a plain class does not fit a parameterised container (str is not Iterable[str] here)
    skind, sbody = s
    if kind == "tuple":
        return skind == "tuple" and len(sbody) == len(body) and all(_consistent(x, y) for x, y in zip(sbody, body))
    if kind == "tuple...":
        if skind == "tuple":
            return all(_consistent(x, body) for x in sbody)
        return skind == "tuple..." and _consistent(sbody, body)
    if kind == "dict":
        return skind == "dict" and _consistent(sbody[0], body[0]) and _consistent(sbody[1], body[1])
    if kind in ("list", "set", "frozenset", "iterator"):
        return skind == kind and _consistent(sbody, body)
    if kind == "sequence":
        return skind in ("list", "tuple", "tuple...", "sequence") and _consistent(_element_of(s), body)
    # iterable and collection accept any container of fitting elements (not a dict: Beam keeps those apart)
    if skind == "dict" or (kind == "collection" and skind == "iterator"):
        return False
    element = _element_of(s)
    return element is not None and _consistent(element, body)


def instance_to_type(value: Any) -> Any:
    """The type hint Beam infers for a value (Create infers its element type this way).

    >>> format_hint(instance_to_type(("a", [1, 2])))
    "Tuple[<class 'str'>, List[<class 'int'>]]"
    """
    t = type(value)
    if value is None:
        return type(None)
    if t is tuple:
        return ("tuple", tuple(instance_to_type(v) for v in value))
    if t is list:
        return ("list", union_of(instance_to_type(v) for v in value))
    if t is set:
        return ("set", union_of(instance_to_type(v) for v in value))
    if t is frozenset:
        return ("frozenset", union_of(instance_to_type(v) for v in value))
    if t is dict:
        return ("dict", (union_of(instance_to_type(k) for k in value), union_of(instance_to_type(v) for v in value.values())))
    return t


_CONTAINER_VALUES = frozenset({tuple, list, set, frozenset, dict})


def union_of_instances(values: Iterable[Any]) -> Any:
    """``union_of(instance_to_type(v) for v in values)``, with C-level passes for the common shapes.

    A value that is not a container is its own class, a tuple of such values is the tuple of
    their classes, and a dict of them the dict of its keys' and values' classes; only values
    nesting containers are inferred one by one.

    >>> format_hint(union_of_instances([("a", 1), ("b", 2), ("c", [1])]))
    "Union[Tuple[<class 'str'>, <class 'int'>], Tuple[<class 'str'>, List[<class 'int'>]]]"
    >>> union_of_instances([1, 2, 3]) is int
    True
    >>> format_hint(union_of_instances([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]))
    "Dict[<class 'str'>, Union[<class 'int'>, <class 'str'>]]"
    """
    values = values if isinstance(values, list) else list(values)
    classes = set(map(type, values))
    hints: set[Any] = {c for c in classes if c not in _CONTAINER_VALUES}
    nested: list[Any] = []
    if tuple in classes:
        tuples = values if len(classes) == 1 else [v for v in values if type(v) is tuple]
        lengths = set(map(len, tuples))
        for n in lengths:
            same = tuples if len(lengths) == 1 else [v for v in tuples if len(v) == n]
            columns = [set(map(type, map(operator.itemgetter(i), same))) for i in range(n)]
            if all(len(c) == 1 for c in columns):
                shapes = {tuple(c.pop() for c in columns)}
            else:  # the combinations that occur, not every product of the columns' classes
                shapes = set(zip(*(map(type, map(operator.itemgetter(i), same)) for i in range(n))))
            for shape in shapes:
                if _CONTAINER_VALUES.isdisjoint(shape):
                    hints.add(("tuple", shape))
                else:
                    nested.extend(v for v in same if tuple(map(type, v)) == shape)
    if dict in classes:  # rows as dicts: one pass per dict for the classes of its keys and values
        dicts = values if len(classes) == 1 else [v for v in values if type(v) is dict]
        for keys, items in {(frozenset(map(type, d)), frozenset(map(type, d.values()))) for d in dicts}:
            if _CONTAINER_VALUES.isdisjoint(keys) and _CONTAINER_VALUES.isdisjoint(items):
                hints.add(("dict", (union_of(keys), union_of(items))))
            else:
                nested.extend(
                    d for d in dicts if frozenset(map(type, d)) == keys and frozenset(map(type, d.values())) == items
                )
    if not classes.isdisjoint(_CONTAINER_VALUES - {tuple, dict}):
        nested.extend(v for v in values if type(v) in _CONTAINER_VALUES and type(v) not in (tuple, dict))
    hints.update(instance_to_type(v) for v in nested)
    return union_of(hints)


def union_of(hints: Iterable[Any]) -> Any:
    """The union of hints (Any for none).

    Equal hints are normalised once: a Create of a million values of a few types costs a
    million hash lookups, not a million normalisations.

    >>> format_hint(union_of([int, str, int]))
    "Union[<class 'int'>, <class 'str'>]"
    """
    hints = list(hints)
    try:
        distinct: Iterable[Any] = dict.fromkeys(hints)
    except TypeError:  # an unhashable hint: normalise each
        distinct = hints
    members = [normalize(h) for h in distinct]
    return _union(members) if members else ANY


def key_value_types(hint: Any) -> tuple[Any, Any]:
    """The key and value types of a (key, value) element type; Any for what is unknown."""
    n = normalize(hint)
    if isinstance(n, tuple) and n[0] == "tuple" and len(n[1]) == 2:
        return n[1][0], n[1][1]
    return ANY, ANY


def tuple_of(*elements: Any) -> Any:
    """The hint ``Tuple[elements...]`` (elements may be hints or normal forms)."""
    return ("tuple", tuple(normalize(e) for e in elements))


def iterable_of(element: Any) -> Any:
    """The hint ``Iterable[element]``."""
    return ("iterable", normalize(element))


def element_type_of_iterable(hint: Any) -> Any:
    """What iterating a value of type ``hint`` yields (Any when unknown): FlatMap's output type."""
    n = normalize(hint)
    element = _element_of(n)
    return ANY if element is None else element


def check_input_types(transform: Any, label: str, pvalueish: Any) -> None:
    """Raise :class:`TypeCheckError` if ``transform``'s declared input type does not fit its input."""
    from tidal.model.pvalue import PCollection

    if not isinstance(pvalueish, PCollection):
        return
    hint = transform.get_type_hints().main_input
    if hint is None or normalize(hint) is ANY:  # everything fits Any: no need to work out the input's type
        return
    actual = pvalueish.element_type
    if is_consistent_with(actual, hint):
        return
    if transform._type_check_style == "with_side_inputs":
        producer = pvalueish.producer.full_label if pvalueish.producer is not None else "?"
        producer_label = "/".join(producer.split("/")[: label.count("/") + 1])
        raise TypeCheckError(
            f"The transform '{label}' requires PCollections of type '{format_hint(hint)}' but was applied "
            f"to a PCollection of type '{format_hint(actual)}' (produced by the transform '{producer_label}'). "
        )
    raise TypeCheckError(f"Input type hint violation at {label}: expected {format_hint(hint)}, got {format_hint(actual)}")


def check_output_types(transform: Any, label: str, output: Any) -> None:
    """Raise :class:`TypeCheckError` if a composite's output does not fit its declared output type."""
    from tidal.model.pvalue import PCollection

    hint = transform._declared_hints.main_output if transform._declared_hints is not None else None
    if hint is None or not isinstance(output, PCollection):
        return
    actual = output.element_type
    if not is_consistent_with(actual, hint):
        raise TypeCheckError(f"Output type hint violation at {label}: expected {format_hint(hint)}, got {format_hint(actual)}")


# -- declared hints ---------------------------------------------------------------------
class IOTypeHints:
    """The input and output hints declared for a function, DoFn or transform."""

    __slots__ = ("input_types", "output_types")

    def __init__(self, input_types: tuple[tuple[Any, ...], dict[str, Any]] | None = None,
                 output_types: tuple[tuple[Any, ...], dict[str, Any]] | None = None) -> None:
        self.input_types: tuple[tuple[Any, ...], dict[str, Any]] | None = input_types
        self.output_types: tuple[tuple[Any, ...], dict[str, Any]] | None = output_types

    @property
    def main_input(self) -> Any | None:
        """The hint of the main input (the first positional one), or None."""
        if self.input_types and self.input_types[0]:
            return self.input_types[0][0]
        return None

    @property
    def main_output(self) -> Any | None:
        """The hint of the main output, or None."""
        if self.output_types and self.output_types[0]:
            return self.output_types[0][0]
        return None

    def with_defaults(self, other: "IOTypeHints | None") -> "IOTypeHints":
        """These hints, with ``other``'s where these have none."""
        if other is None:
            return self
        return IOTypeHints(self.input_types or other.input_types, self.output_types or other.output_types)

    def __repr__(self) -> str:
        return f"IOTypeHints(input_types={self.input_types!r}, output_types={self.output_types!r})"


def _hints_attr(obj: Any) -> IOTypeHints | None:
    hints = getattr(obj, "_type_hints", None)
    return hints if isinstance(hints, IOTypeHints) else None


def with_input_types(*arg_hints: Any, **kwarg_hints: Any) -> Callable[[Any], Any]:
    """Decorate a function or DoFn class with the type of its input (Beam's decorator).

    >>> @with_input_types(int)
    ... def double(x):
    ...     return 2 * x
    >>> get_type_hints(double).main_input
    <class 'int'>
    """

    def annotate(f: Any) -> Any:
        previous = _hints_attr(f) if "_type_hints" in getattr(f, "__dict__", {}) else None
        f._type_hints = IOTypeHints((arg_hints, kwarg_hints), previous.output_types if previous else None)
        return f

    return annotate


def with_output_types(*return_type_hint: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """Decorate a function or DoFn class with the type of its output elements (Beam's decorator)."""
    if len(return_type_hint) != 1 and not kwargs:
        raise ValueError("with_output_types takes exactly one positional type hint")

    def annotate(f: Any) -> Any:
        previous = _hints_attr(f) if "_type_hints" in getattr(f, "__dict__", {}) else None
        f._type_hints = IOTypeHints(previous.input_types if previous else None, (return_type_hint, kwargs))
        return f

    return annotate


def _from_annotations(fn: Any, *, skip_self: bool, output_is_iterable: bool) -> IOTypeHints | None:
    try:
        signature = inspect.signature(fn)
        resolved = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError, AttributeError, SyntaxError):
        return None
    params = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if skip_self and params and params[0].name == "self":
        params = params[1:]
    input_types: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    if params and params[0].name in resolved:
        input_types = ((resolved[params[0].name],), {})
    output_types: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    if "return" in resolved:
        out = resolved["return"]
        if output_is_iterable:
            out = element_type_of_iterable(out)
        output_types = ((out,), {})
    if input_types is None and output_types is None:
        return None
    return IOTypeHints(input_types, output_types)


def get_type_hints(fn: Any, *, output_is_iterable: bool = False) -> IOTypeHints:
    """The hints declared for a function or DoFn: decorators first, then annotations."""
    declared = _hints_attr(fn)
    if declared is None and not inspect.isfunction(fn) and not inspect.ismethod(fn):
        declared = _hints_attr(type(fn))
    target = fn
    skip_self = False
    process = getattr(fn, "process", None)
    if process is not None and not inspect.isfunction(fn):
        target, output_is_iterable = process, True
    elif not (inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn)):
        return declared or IOTypeHints()
    annotated = _from_annotations(target, skip_self=skip_self, output_is_iterable=output_is_iterable)
    if declared is None:
        return annotated or IOTypeHints()
    if output_is_iterable and declared.main_output is not None and target is fn:
        # A FlatMap function declares what it returns: an iterable of the output elements.
        element = _element_of(normalize(declared.main_output))
        if element is None:
            name = getattr(fn, "__name__", repr(fn))
            raise TypeCheckError(f"Return value not iterable: {name}: {format_hint(declared.main_output)} is not iterable")
        declared = IOTypeHints(declared.input_types, ((element,), {}))
    return declared.with_defaults(annotated)
