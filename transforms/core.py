"""The core transforms, at Beam's path ``apache_beam.transforms.core``.

Create, Map, FlatMap, Filter, Partition, CombineGlobally and CombineValues
are defined here and expand into the primitives of ``tidal.model.primitives``
(runners never see them); DoFn, CombineFn, ParDo, GroupByKey, CombinePerKey,
Flatten, WindowInto and Impulse are the model's own, re-exported under the
names Beam gives them here.

>>> import tidal as td
>>> from tidal.transforms.core import Create, Map
>>> with td.Pipeline() as p:
...     td.testing.assert_that(p | Create([1, 2]) | Map(lambda x: x + 1), td.testing.equal_to([2, 3]))
"""

from __future__ import annotations

import marshal
from typing import Any, Callable, Iterable

from tidal.model import typehints
from tidal.model.combinefn import CombineFn
from tidal.model.dofn import CallableDoFn, DoFn
from tidal.model.pipeline import PipelineError
from tidal.model.primitives import (
    BoundedSource,
    CombinePerKey,
    Flatten,
    GroupByKey,
    Impulse,
    ParDo,
    Read,
    WindowInto,
)
from tidal.model.ptransform import PTransform, label_from_callable
from tidal.model.pvalue import AsList, PBegin, PCollection, TaggedOutput
from tidal.model.window import GlobalWindows, TimestampedValue

__all__ = [
    # defined here
    "Create",
    "CreateSource",
    "Map",
    "MapTuple",
    "FlatMap",
    "FlatMapTuple",
    "Filter",
    "Partition",
    "CombineGlobally",
    "CombineValues",
    # the model's primitives and user-function classes, under Beam's names
    "DoFn",
    "CombineFn",
    "ParDo",
    "GroupByKey",
    "CombinePerKey",
    "Flatten",
    "WindowInto",
    "Impulse",
]


#: The number of values from which a Create's split marshals its values instead of pickling them.
_MARSHAL_FROM = 1024


def _create_source_from_marshal(data: bytes) -> "CreateSource":
    return CreateSource(marshal.loads(data))


class CreateSource(BoundedSource):
    """An in-memory list of elements, split into contiguous slices."""

    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def read(self) -> Iterable[Any]:
        return self.values

    def split(self, desired_count: int) -> list[BoundedSource]:
        n = len(self.values)
        if desired_count <= 1 or n <= 1:
            return [self]
        step = -(-n // desired_count)
        return [CreateSource(self.values[i : i + step]) for i in range(0, n, step)]

    def estimate_size(self) -> int:
        return len(self.values)

    def display_name(self) -> str:
        return "Create"

    def __reduce__(self) -> tuple[Any, ...]:
        # A split travels to its worker pickled. Plain data (ints, floats, strings, bytes and
        # tuples, lists, dicts and sets of them) marshals several times faster than it pickles,
        # and comes back equal; anything else (a class instance, a subclass of a plain type)
        # makes marshal refuse, and the values pickle as they are.
        if len(self.values) >= _MARSHAL_FROM:
            try:
                return (_create_source_from_marshal, (marshal.dumps(self.values),))
            except ValueError:
                pass
        return (CreateSource, (self.values,))

    def validation_sample(self) -> Any:
        # Pickling a million elements at apply time costs more than running
        # the pipeline; one element of each type among the first thousand
        # finds the unpicklable kinds (locks, generators, open files).
        by_type: dict[type, Any] = {}
        for v in self.values[:1000]:
            by_type.setdefault(type(v), v)
        return list(by_type.values())


class Create(PTransform):
    """A bounded PCollection of the given values (TimestampedValues keep their time).

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([3, 1, 2]), td.testing.equal_to([1, 2, 3]))
    """

    def __init__(self, values: Iterable[Any], reshuffle: bool = True) -> None:
        super().__init__()
        if isinstance(values, (str, bytes)):
            raise TypeError(f"Create needs an iterable of elements, not a {type(values).__name__}: {values!r}")
        if isinstance(values, dict):
            values = values.items()
        try:
            self.values = list(values)
        except TypeError:
            raise TypeError(f"Create needs an iterable of elements, got {values!r}") from None

    def default_label(self) -> str:
        return "Create"

    def lazy_output_type(self) -> Callable[[], Any] | None:
        # As Beam does, the element type is the union of the values' types; computed only when a
        # type hint downstream asks for it, so a Create of a million values costs nothing here.
        values = self.values

        def infer() -> Any:
            # A TimestampedValue stands for its value (Create unwraps it).
            if any(issubclass(c, TimestampedValue) for c in set(map(type, values))):
                return typehints.union_of_instances([v.value if isinstance(v, TimestampedValue) else v for v in values])
            return typehints.union_of_instances(values)

        return infer

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        if not isinstance(pbegin, PBegin):
            raise TypeError("Create is a root transform; apply it to a pipeline: p | Create(...)")
        return pbegin | Read(CreateSource(self.values))


def _callable_pardo(kind: str, prefix: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> ParDo:
    if not callable(fn):
        raise TypeError(f"{prefix} needs a callable, got {fn!r}")
    pardo = ParDo(CallableDoFn(fn, kind), *args, **kwargs)
    pardo._label_prefix = prefix
    return pardo


def Map(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ParDo:
    """One output per element: ``fn(element, *args)``; extra args may be side inputs.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([1, 2]) | td.Map(lambda x: x * 10),
    ...                            td.testing.equal_to([10, 20]))
    """
    return _callable_pardo("map", "Map", fn, args, kwargs)


def MapTuple(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ParDo:
    """Like Map, with the element unpacked into arguments: ``fn(*element, *args)``.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([("a", 1)]) | td.MapTuple(lambda k, v: f"{k}={v}"),
    ...                            td.testing.equal_to(["a=1"]))
    """
    return _callable_pardo("maptuple", "MapTuple", fn, args, kwargs)


def FlatMap(fn: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> ParDo:
    """Zero or more outputs per element: the iterable ``fn(element, *args)`` returns.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create(["a b", "c"]) | td.FlatMap(str.split),
    ...                            td.testing.equal_to(["a", "b", "c"]))
    """
    if fn is None:
        fn = _identity_iterable
    return _callable_pardo("flatmap", "FlatMap", fn, args, kwargs)


def _identity_iterable(x: Iterable[Any]) -> Iterable[Any]:
    return x


def FlatMapTuple(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ParDo:
    """Like FlatMap, with the element unpacked into arguments.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([("a", 2)]) | td.FlatMapTuple(lambda k, n: [k] * n),
    ...                            td.testing.equal_to(["a", "a"]))
    """
    return _callable_pardo("flatmaptuple", "FlatMapTuple", fn, args, kwargs)


def Filter(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ParDo:
    """Keep the elements for which ``fn(element, *args)`` is true.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([1, 2, 3, 4]) | td.Filter(lambda x: x % 2 == 0),
    ...                            td.testing.equal_to([2, 4]))
    """
    return _callable_pardo("filter", "Filter", fn, args, kwargs)


class _PartitionDoFn(CallableDoFn):
    def __init__(self, fn: Callable[..., Any], n: int) -> None:
        super().__init__(fn, "partition")
        self.n = n

    def process(self, element: Any, *args: Any, **kwargs: Any) -> Iterable[Any]:
        index = self.fn(element, self.n, *args, **kwargs)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.n:
            raise ValueError(
                f"the partition function returned {index!r}; it must return an int in [0, {self.n})"
            )
        return (TaggedOutput(str(index), element),)


class Partition(PTransform):
    """Split a PCollection into ``n`` by ``fn(element, n) -> index``; returns a tuple.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     evens, odds = p | td.Create([1, 2, 3]) | td.Partition(lambda x, n: x % 2, 2)
    ...     td.testing.assert_that(odds, td.testing.equal_to([1, 3]))
    """

    _type_check_style = "with_side_inputs"

    def __init__(self, fn: Callable[..., Any], n: int, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Partition needs a positive number of partitions, got {n!r}")
        self.fn = fn
        self.n = n
        self.args = args
        self.kwargs = kwargs

    def default_label(self) -> str:
        return f"Partition({label_from_callable(self.fn)})"

    def expand(self, pcoll: PCollection[Any]) -> tuple[PCollection[Any], ...]:
        tags = [str(i) for i in range(self.n)]
        pardo = ParDo(_PartitionDoFn(self.fn, self.n), *self.args, **self.kwargs)
        outputs = pcoll | "ParDo" >> pardo.with_outputs(*tags, main="main")
        return tuple(outputs[t] for t in tags)


class CombineGlobally(PTransform):
    """Combine all elements (per window) into one value.

    In the global window an empty input still gives one output (the
    combiner's empty result) unless ``.without_defaults()`` is used.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([1, 2, 3]) | td.CombineGlobally(sum), td.testing.equal_to([6]))
    """

    _type_check_style = "with_side_inputs"

    def __init__(self, fn: CombineFn | Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.has_defaults = True

    def default_label(self) -> str:
        name = self.fn.default_label() if isinstance(self.fn, CombineFn) else getattr(self.fn, "__name__", "fn")
        return f"CombineGlobally({name})"

    def without_defaults(self) -> "CombineGlobally":
        """Emit nothing for an empty input instead of the combiner's empty result."""
        self.has_defaults = False
        return self

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        if self.has_defaults and not isinstance(pcoll.windowing.windowfn, GlobalWindows):
            label = pcoll.pipeline.current_node().full_label
            raise PipelineError(
                f"step {label!r}: CombineGlobally in a non-global window has no sensible default for "
                "empty windows; use CombineGlobally(...).without_defaults()"
            )
        combined = (
            pcoll
            | "KeyWithVoid" >> Map(lambda v: (None, v))
            | "CombinePerKey" >> CombinePerKey(self.fn, *self.args, **self.kwargs)
            | "UnKey" >> Map(_drop_key)
        )
        if not self.has_defaults:
            return combined
        if self.args or self.kwargs:
            from tidal.model.combinefn import CallableWrapperCombineFn

            fn: CombineFn = CallableWrapperCombineFn(self.fn, *self.args, **self.kwargs)  # type: ignore[arg-type]
        else:
            fn = CombineFn.maybe_from_callable(self.fn)
        p = pcoll.pipeline
        seed = p | "DefaultIfEmpty/Seed" >> Create([None])
        return seed | "DefaultIfEmpty" >> FlatMap(_default_if_empty, AsList(combined), fn)


def _default_if_empty(_: Any, results: list[Any], fn: CombineFn) -> list[Any]:
    if results:
        return results
    return [fn.extract_output(fn.create_accumulator())]


class CombineValues(PTransform):
    """Combine the iterable value of each (key, [values]) pair.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([("a", [1, 2]), ("b", [5])]) | td.CombineValues(sum)
    ...     td.testing.assert_that(out, td.testing.equal_to([("a", 3), ("b", 5)]))
    """

    _type_check_style = "with_side_inputs"

    def __init__(self, fn: CombineFn | Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if args or kwargs:
            from tidal.model.combinefn import CallableWrapperCombineFn

            if isinstance(fn, CombineFn):
                raise TypeError("extra arguments are only supported for a callable, not a CombineFn")
            self.fn: CombineFn = CallableWrapperCombineFn(fn, *args, **kwargs)
        else:
            self.fn = CombineFn.maybe_from_callable(fn)

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        fn = self.fn
        return pcoll | "CombineValues" >> MapTuple(lambda k, vs: (k, fn.apply(vs)))


def _drop_key(kv: Any) -> Any:
    return kv[1]
