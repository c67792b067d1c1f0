"""DoFn: the user's per-element function, with its lifecycle and parameters.

>>> class Split(DoFn):
...     def process(self, element, timestamp=DoFn.TimestampParam):
...         for word in element.split():
...             yield word
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterable

from tidal.model.userstate import StateSpec, TimerSpec

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DoFn", "DoFnParam", "CallableDoFn"]


class DoFnParam:
    """A marker default value: ``def process(self, x, w=DoFn.WindowParam)``."""

    __slots__ = ("kind", "spec")

    def __init__(self, kind: str, spec: Any = None) -> None:
        self.kind = kind
        self.spec = spec

    def __repr__(self) -> str:
        return f"DoFn.{self.kind}" + (f"({self.spec!r})" if self.spec is not None else "")

    def __call__(self, spec: Any) -> "DoFnParam":
        if self.kind == "StateParam" and not isinstance(spec, StateSpec):
            raise TypeError(f"DoFn.StateParam needs a state spec, got {spec!r}")
        if self.kind == "TimerParam" and not isinstance(spec, TimerSpec):
            raise TypeError(f"DoFn.TimerParam needs a TimerSpec, got {spec!r}")
        return DoFnParam(self.kind, spec)


class DoFn:
    """Processes elements one at a time; override :meth:`process` (or :meth:`process_batch`).

    Lifecycle: ``setup`` once per instance, ``start_bundle`` / ``finish_bundle``
    around each bundle, ``process`` per element, ``teardown`` at the end.
    ``process`` may return an iterable of outputs or yield them; an output
    may be a :class:`~tidal.TaggedOutput` or a ``TimestampedValue``.

    A *batched* DoFn overrides :meth:`process_batch` instead: it gets the
    elements of a bundle as pyarrow record batches and yields record batches
    whose rows become the output elements. A dict maps to columns by key, a
    NamedTuple by field, a ``(key, value)`` pair to the columns ``key`` and
    ``value``, any other value to the column ``value``; output rows come back
    in the input's form. The rows of a batch share their windows, pane and
    timestamp, unless :attr:`batch_timestamp_column` is set.
    When a DoFn defines both methods, every runner calls ``process_batch``
    (so its results never depend on the runner) and ``process`` is not used.
    :mod:`tidal.runners.core.batched` has the full rules.

    >>> import pyarrow.compute as pc
    >>> import tidal as td
    >>> class Double(DoFn):
    ...     def process_batch(self, batch):
    ...         yield batch.set_column(0, "value", pc.multiply(batch.column("value"), 2))
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([1, 2, 3]) | td.ParDo(Double())
    ...     td.testing.assert_that(out, td.testing.equal_to([2, 4, 6]))
    """

    #: A batched DoFn that sets this to a column name gets batches whose rows may
    #: have different timestamps: each input row's timestamp is in that column (an
    #: Arrow ``timestamp("us", tz="UTC")``), and every output batch must have the
    #: column too, giving each output row its timestamp.
    batch_timestamp_column: str | None = None
    #: The Arrow schema of a batched DoFn's input batches (without the timestamp
    #: column). ``None`` infers the column types from the values.
    batch_schema: "pa.Schema | None" = None

    ElementParam = DoFnParam("ElementParam")
    TimestampParam = DoFnParam("TimestampParam")
    WindowParam = DoFnParam("WindowParam")
    PaneInfoParam = DoFnParam("PaneInfoParam")
    KeyParam = DoFnParam("KeyParam")
    StateParam = DoFnParam("StateParam")
    TimerParam = DoFnParam("TimerParam")

    def setup(self) -> None:
        """Called once per DoFn instance before any bundle."""

    def start_bundle(self) -> None:
        """Called before each bundle of elements."""

    def process(self, element: Any, *args: Any, **kwargs: Any) -> Iterable[Any] | None:
        """Process one element; return or yield the outputs."""
        raise TypeError(f"{type(self).__name__} must define process(self, element, ...) (or process_batch(self, batch))")

    def process_batch(self, batch: "pa.RecordBatch", *args: Any, **kwargs: Any) -> Iterable[Any] | None:
        """Process a batch of elements as Arrow columns; return or yield record batches.

        Override it instead of :meth:`process` to make a batched DoFn. It may
        take extra arguments and side inputs, and ``DoFn.WindowParam``,
        ``DoFn.PaneInfoParam`` and ``DoFn.TimestampParam`` (all shared by the
        whole batch; no timestamp parameter with ``batch_timestamp_column``);
        an output batch may be wrapped in :class:`~tidal.TaggedOutput`.
        """
        raise TypeError(f"{type(self).__name__} does not define process_batch(self, batch); it is not a batched DoFn")

    def finish_bundle(self) -> Iterable[Any] | None:
        """Called after each bundle; may yield WindowedValue outputs."""

    def teardown(self) -> None:
        """Called once when the DoFn instance is discarded."""

    def default_label(self) -> str:
        return type(self).__name__

    @staticmethod
    def unbounded_per_element() -> Callable[[Any], Any]:  # Beam-compatible no-op decorator
        return lambda f: f


class CallableDoFn(DoFn):
    """A DoFn made from a plain function by Map, FlatMap, Filter and friends.

    ``kind`` tells the invoker which fast kernel to use: "map" (one output),
    "flatmap" (an iterable of outputs), "filter" (keep when true), and the
    ``*_tuple`` variants that unpack the element into arguments.
    """

    def __init__(self, fn: Callable[..., Any], kind: str) -> None:
        if not callable(fn):
            raise TypeError(f"expected a callable, got {fn!r}")
        self.fn = fn
        self.kind = kind

    def process(self, element: Any, *args: Any, **kwargs: Any) -> Iterable[Any] | None:
        kind = self.kind
        if kind == "map":
            return (self.fn(element, *args, **kwargs),)
        if kind == "flatmap":
            return self.fn(element, *args, **kwargs)
        if kind == "filter":
            return (element,) if self.fn(element, *args, **kwargs) else ()
        if kind == "maptuple":
            return (self.fn(*element, *args, **kwargs),)
        if kind == "flatmaptuple":
            return self.fn(*element, *args, **kwargs)
        raise ValueError(f"unknown CallableDoFn kind {kind!r}")

    def default_label(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        code = getattr(self.fn, "__code__", None)
        if name == "<lambda>" and code is not None:
            # As Beam does: lambdas on different lines get different labels.
            return f"<lambda at {os.path.basename(code.co_filename)}:{code.co_firstlineno}>"
        return str(name)

    def __repr__(self) -> str:
        return f"{self.kind}({self.default_label()})"
