"""PCollections, side-input views and tagged outputs: the values a pipeline passes around."""

from __future__ import annotations

import abc
import contextlib

from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

from tidal.model.strategy import DEFAULT_WINDOWING, WindowingStrategy

if TYPE_CHECKING:
    from tidal.model.pipeline import AppliedTransform, Pipeline
    from tidal.model.ptransform import PTransform

__all__ = [
    "PValue",
    "PBegin",
    "PCollection",
    "DoOutputsTuple",
    "TaggedOutput",
    "AsSideInput",
    "AsSingleton",
    "AsIter",
    "AsList",
    "AsDict",
    "AsMultiMap",
    "SideInputError",
]

T = TypeVar("T")


class PValue:
    """Something a transform can be applied to."""

    pipeline: "Pipeline"

    def __or__(self, transform: "PTransform") -> Any:
        return self.pipeline.apply(transform, self)


class PBegin(PValue):
    """The input of a root transform (``p | Create(...)``)."""

    def __init__(self, pipeline: "Pipeline") -> None:
        self.pipeline = pipeline

    def __repr__(self) -> str:
        return "PBegin"


class PCollection(PValue, Generic[T]):
    """A distributed, possibly unbounded collection of elements with timestamps and windows.

    A PCollection is produced by one transform and knows its windowing
    strategy and whether it is bounded.
    """

    def __init__(
        self,
        pipeline: "Pipeline",
        producer: "AppliedTransform | None" = None,
        tag: str | None = None,
        windowing: WindowingStrategy = DEFAULT_WINDOWING,
        is_bounded: bool = True,
    ) -> None:
        self.pipeline = pipeline
        self.producer = producer
        self.tag = tag
        self.windowing = windowing
        self.is_bounded = is_bounded
        self._element_type: Any = Any
        self._element_type_thunk: Callable[[], Any] | None = None

    @property
    def element_type(self) -> Any:
        """The declared or inferred type of the elements (``typing.Any`` when unknown)."""
        if self._element_type_thunk is not None:
            self._element_type = self._element_type_thunk()
            self._element_type_thunk = None
        return self._element_type

    @element_type.setter
    def element_type(self, hint: Any) -> None:
        self._element_type, self._element_type_thunk = hint, None

    def set_element_type_lazily(self, compute: Callable[[], Any]) -> None:
        """Infer the element type with ``compute()`` only if something asks for it."""
        self._element_type_thunk = compute

    @property
    def name(self) -> str:
        base = self.producer.full_label if self.producer is not None else "?"
        return base if self.tag in (None, "main", "out") else f"{base}.{self.tag}"

    def __repr__(self) -> str:
        bounded = "bounded" if self.is_bounded else "unbounded"
        return f"<PCollection {self.name!r} {bounded}>"

    def __reduce_ex__(self, protocol: Any) -> Any:
        if not _graph_pickling[0]:
            raise TypeError(
                f"PCollection {self.name!r} cannot be pickled: it is a description, not data. "
                "Pass it as a side input (AsList, AsDict, ...) to use its contents in a DoFn."
            )
        # A plan shipped to workers needs the description, not the pipeline
        # (which holds every composite and its arguments).
        state = dict(self.__dict__)
        state["pipeline"] = None
        state["_element_type_thunk"] = None  # it may hold the pipeline's data; runners need no types
        return (_new_pcollection, (type(self),), state)


def _new_pcollection(cls: Any) -> Any:
    return cls.__new__(cls)


_graph_pickling = [False]


@contextlib.contextmanager
def pickling_graph() -> Iterator[None]:
    """Allow PCollections to be pickled: a runner shipping a whole plan to workers."""
    previous = _graph_pickling[0]
    _graph_pickling[0] = True
    try:
        yield
    finally:
        _graph_pickling[0] = previous


class DoOutputsTuple:
    """The outputs of ``ParDo(...).with_outputs(...)``: by attribute, index or unpacking."""

    def __init__(self, main_tag: str, outputs: dict[str, PCollection[Any]]) -> None:
        self._main_tag = main_tag
        self._outputs = outputs

    def __getattr__(self, tag: str) -> PCollection[Any]:
        if tag.startswith("_"):
            raise AttributeError(tag)
        try:
            return self[tag]
        except KeyError as exc:
            raise AttributeError(exc.args[0]) from None

    def __getitem__(self, tag: str | None) -> PCollection[Any]:
        if tag is None:
            tag = self._main_tag
        try:
            return self._outputs[tag]
        except KeyError:
            raise KeyError(
                f"no output tagged {tag!r}; declared outputs: {sorted(self._outputs)}"
            ) from None

    def __iter__(self) -> Iterator[PCollection[Any]]:
        return iter(self._outputs.values())

    def __len__(self) -> int:
        return len(self._outputs)

    def __repr__(self) -> str:
        return f"DoOutputsTuple(main={self._main_tag!r}, tags={list(self._outputs)})"


class TaggedOutput:
    """An output of a DoFn to the output with this tag (see ``ParDo.with_outputs``)."""

    __slots__ = ("tag", "value")

    def __init__(self, tag: str, value: Any) -> None:
        if not isinstance(tag, str):
            raise TypeError(f"TaggedOutput tag must be a str, got {tag!r}")
        self.tag = tag
        self.value = value

    def __repr__(self) -> str:
        return f"TaggedOutput({self.tag!r}, {self.value!r})"


class SideInputError(ValueError):
    """A side input's contents do not fit the view it is read through."""


_NO_DEFAULT = object()


class AsSideInput(abc.ABC):
    """A view of a PCollection passed to a DoFn as an extra argument.

    The runner gathers the side input's elements for the main element's
    window and hands them to :meth:`materialize`.
    """

    def __init__(self, pcoll: PCollection[Any]) -> None:
        if not isinstance(pcoll, PCollection):
            raise TypeError(f"{type(self).__name__} needs a PCollection, got {pcoll!r}")
        self.pcoll = pcoll

    @abc.abstractmethod
    def materialize(self, values: list[Any]) -> Any:
        """The value the DoFn receives, built from the side input's elements."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pcoll.name})"


class AsSingleton(AsSideInput):
    """The single element of the side input (or ``default_value`` when it is empty)."""

    def __init__(self, pcoll: PCollection[Any], default_value: Any = _NO_DEFAULT) -> None:
        super().__init__(pcoll)
        self.default_value = default_value

    def materialize(self, values: list[Any]) -> Any:
        if len(values) == 1:
            return values[0]
        if not values:
            if self.default_value is _NO_DEFAULT:
                raise SideInputError(
                    f"AsSingleton({self.pcoll.name}) is empty and has no default_value; "
                    "pass AsSingleton(pcoll, default_value=...)"
                )
            return self.default_value
        shown = ", ".join(repr(v) for v in values[:3])
        raise SideInputError(
            f"AsSingleton({self.pcoll.name}) has {len(values)} elements ({shown}"
            f"{', ...' if len(values) > 3 else ''}); a singleton side input needs exactly one "
            "element: combine it first, or use AsList / AsIter"
        )


class AsIter(AsSideInput):
    """The side input's elements as an iterable."""

    def materialize(self, values: list[Any]) -> Any:
        return tuple(values)


class AsList(AsSideInput):
    """The side input's elements as a list."""

    def materialize(self, values: list[Any]) -> Any:
        return list(values)


class AsDict(AsSideInput):
    """The side input's (key, value) elements as a dict."""

    def materialize(self, values: list[Any]) -> Any:
        try:
            return dict(values)
        except (TypeError, ValueError) as exc:
            raise SideInputError(
                f"AsDict({self.pcoll.name}) needs (key, value) pairs with hashable keys: {exc}"
            ) from exc


class AsMultiMap(AsSideInput):
    """The side input's (key, value) elements as a dict of key -> list of values."""

    def materialize(self, values: list[Any]) -> Any:
        out: dict[Any, list[Any]] = {}
        try:
            for k, v in values:
                out.setdefault(k, []).append(v)
        except (TypeError, ValueError) as exc:
            raise SideInputError(
                f"AsMultiMap({self.pcoll.name}) needs (key, value) pairs with hashable keys: {exc}"
            ) from exc
        return out
