"""PTransform: the unit of a pipeline, applied with ``|`` and named with ``'label' >> t``."""

from __future__ import annotations

import abc
import copy
from typing import TYPE_CHECKING, Any

from tidal.model.pvalue import PCollection, PValue

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["PTransform", "PrimitiveTransform", "ptransform_fn", "label_from_callable"]


def label_from_callable(fn: Any) -> str:
    """A readable label for a user function: its name, or its class name."""
    name = getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__name__
    return str(name)


class PTransform(abc.ABC):
    """A transformation from input PValues to output PValues.

    Subclasses override :meth:`expand`, built from other transforms; a
    transform is applied with ``pcoll | transform`` and labelled with
    ``'label' >> transform``.
    """

    label: str | None = None

    def __init__(self, label: str | None = None) -> None:
        if label is not None:
            self.label = label

    def default_label(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def expand(self, input_or_inputs: Any) -> Any:
        """Apply the transforms this one is made of to the input; return the output."""

    def with_label(self, label: str) -> "PTransform":
        """A copy of this transform that applies under ``label``."""
        clone = copy.copy(self)
        clone.label = label
        return clone

    def __rrshift__(self, label: str) -> "PTransform":
        if not isinstance(label, str):
            return NotImplemented
        return self.with_label(label)

    def __ror__(self, left: Any) -> Any:
        pipeline = _pipeline_of(left, self)
        if isinstance(left, (list, tuple)):
            left = tuple(left)
        return pipeline.apply(self, left)

    def __or__(self, right: "PTransform") -> "_ChainedPTransform":
        if not isinstance(right, PTransform):
            return NotImplemented
        return _ChainedPTransform(self, right)

    def __repr__(self) -> str:
        return f"<{self.label or self.default_label()}>"


class _ChainedPTransform(PTransform):
    """``t1 | t2`` before it is applied: a composite that applies both in order."""

    parts: tuple[PTransform, ...]

    def __init__(self, *parts: PTransform) -> None:
        super().__init__()
        flat: list[PTransform] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, _ChainedPTransform) else [part])
        self.parts = tuple(flat)

    def default_label(self) -> str:
        return "|".join(p.label or p.default_label() for p in self.parts)

    def expand(self, pvalue: Any) -> Any:
        for part in self.parts:
            pvalue = pvalue | part
        return pvalue


class PrimitiveTransform(PTransform):
    """A transform every runner implements itself (ParDo, GroupByKey, ...).

    ``expand`` of a primitive only validates the input and creates the
    output PCollections; runners only ever see primitives.
    """

    def validate_input(self, input_or_inputs: Any, label: str) -> None:
        """Raise a clear error naming ``label`` if the input does not fit."""


def _pipeline_of(left: Any, transform: PTransform) -> "Pipeline":
    from tidal.model.pipeline import Pipeline

    if isinstance(left, Pipeline):
        return left
    if isinstance(left, PValue):
        return left.pipeline
    if isinstance(left, (list, tuple)) and left and all(isinstance(x, PCollection) for x in left):
        return left[0].pipeline
    if isinstance(left, dict) and left and all(isinstance(x, PCollection) for x in left.values()):
        return next(iter(left.values())).pipeline
    raise TypeError(
        f"cannot apply {transform!r} to {left!r}: the left side of | must be a Pipeline, "
        "a PCollection, or a list/tuple/dict of PCollections"
    )


def ptransform_fn(fn: Any) -> Any:
    """Turn ``fn(pcoll, *args)`` into a PTransform factory (as Beam's decorator does).

    >>> import tidal as td
    >>> @ptransform_fn
    ... def Double(pcoll):
    ...     return pcoll | td.Map(lambda x: 2 * x)
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([1, 2]) | Double()
    """

    class _FnTransform(PTransform):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__()
            self._args, self._kwargs = args, kwargs

        def default_label(self) -> str:
            return fn.__name__

        def expand(self, pcoll: Any) -> Any:
            return fn(pcoll, *self._args, **self._kwargs)

    _FnTransform.__name__ = fn.__name__
    _FnTransform.__doc__ = fn.__doc__
    return _FnTransform

