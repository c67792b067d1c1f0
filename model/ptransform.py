"""PTransform: the unit of a pipeline, applied with ``|`` and named with ``'label' >> t``."""

from __future__ import annotations

import abc
import copy
import os
from typing import TYPE_CHECKING, Any, Callable

from tidal.model.pvalue import PCollection, PValue

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline
    from tidal.model.typehints import IOTypeHints

__all__ = ["PTransform", "PrimitiveTransform", "ptransform_fn", "label_from_callable"]


def label_from_callable(fn: Any) -> str:
    """A readable label for a user function, as Beam makes it: its name, a lambda's file and line.

    >>> label_from_callable(len)
    'len'
    """
    if hasattr(fn, "default_label"):
        return str(fn.default_label())
    name = getattr(fn, "__name__", None)
    if name is None:
        return type(fn).__name__
    code = getattr(fn, "__code__", None)
    if name == "<lambda>" and code is not None:
        # As Beam does: lambdas on different lines get different labels.
        return f"<lambda at {os.path.basename(code.co_filename)}:{code.co_firstlineno}>"
    return str(name)


class PTransform(abc.ABC):
    """A transformation from input PValues to output PValues.

    Subclasses override :meth:`expand`, built from other transforms; a
    transform is applied with ``pcoll | transform`` and labelled with
    ``'label' >> transform``.
    """

    label: str | None = None
    #: Type hints given with with_input_types / with_output_types (None: none declared).
    _declared_hints: "IOTypeHints | None" = None
    #: How a failed input type check reads: Beam words it one way for transforms that take
    #: side inputs (ParDo, Map, Combine...) and another for the rest.
    _type_check_style = "plain"

    def __init__(self, label: str | None = None) -> None:
        if label is not None:
            self.label = label

    def default_label(self) -> str:
        return type(self).__name__

    # -- type hints (see tidal.model.typehints) ---------------------------------------------
    def with_input_types(self, input_type_hint: Any, *side_inputs_arg_hints: Any, **side_input_kwarg_hints: Any) -> "PTransform":
        """Declare the type of the input elements; checked when the transform is applied."""
        from tidal.model.typehints import IOTypeHints

        previous = self._declared_hints
        self._declared_hints = IOTypeHints(
            ((input_type_hint, *side_inputs_arg_hints), dict(side_input_kwarg_hints)),
            previous.output_types if previous is not None else None,
        )
        return self

    def with_output_types(self, type_hint: Any) -> "PTransform":
        """Declare the type of the output elements; the next transform's input is checked against it."""
        from tidal.model.typehints import IOTypeHints

        previous = self._declared_hints
        self._declared_hints = IOTypeHints(previous.input_types if previous is not None else None, ((type_hint,), {}))
        return self

    def default_type_hints(self) -> "IOTypeHints":
        """The hints the transform implies when none are declared (its function's, say)."""
        from tidal.model.typehints import IOTypeHints

        return IOTypeHints()

    def get_type_hints(self) -> "IOTypeHints":
        """The declared hints, falling back on :meth:`default_type_hints`."""
        defaults = self.default_type_hints()
        return self._declared_hints.with_defaults(defaults) if self._declared_hints is not None else defaults

    def lazy_output_type(self) -> "Callable[[], Any] | None":
        """A function that infers the output's element type when asked (for costly inference), or None."""
        return None

    def infer_output_type(self, input_type: Any) -> Any:
        """The element type of the main output, given the input's (Any when unknown)."""
        from tidal.model.typehints import ANY

        hint = self.get_type_hints().main_output
        return ANY if hint is None else hint

    def _output_type_reads_input(self) -> bool:
        """Whether :meth:`infer_output_type` reads its input type: when it does not, the input's
        type is not inferred for it (inferring a Create's type scans all of its values)."""
        return type(self).infer_output_type is not PTransform.infer_output_type

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

