"""The primitive transforms every runner implements; everything else expands into them.

Each primitive validates its input when it is applied (naming the step) and
creates its output PCollections with the right windowing and boundedness.
"""

from __future__ import annotations

import abc
import typing
from typing import Any, Iterable

import cloudpickle

from tidal.model.combinefn import CombineFn
from tidal.model.dofn import CallableDoFn, DoFn, DoFnParam
from tidal.model import typehints
from tidal.model.typehints import IOTypeHints
from tidal.model.pipeline import PipelineError
from tidal.model.ptransform import PrimitiveTransform
from tidal.model.policy import CountEvictor, DeltaEvictor, Evictor, PolicyWindowFn, TimeEvictor
from tidal.model.pvalue import AsSideInput, DoOutputsTuple, PBegin, PCollection
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import DurationLike, duration_to_micros
from tidal.model.trigger import AccumulationMode, DefaultTrigger, Trigger, is_default_trigger
from tidal.model.userstate import StateSpec, TimerSpec
from tidal.model.window import GlobalWindows, TimestampCombiner, WindowFn

__all__ = [
    "Impulse",
    "Read",
    "BoundedSource",
    "UnboundedSource",
    "ParDo",
    "GroupByKey",
    "CombinePerKey",
    "Flatten",
    "WindowInto",
    "check_picklable",
    "uses_state_or_timers",
]


def check_picklable(obj: Any, what: str, label: str) -> None:
    """Raise a clear error naming ``label`` when cloudpickle cannot serialize ``obj``."""
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:  # cloudpickle raises many exception types
        raise PipelineError(
            f"step {label!r}: {what} {obj!r} cannot be pickled ({type(exc).__name__}: {exc}). "
            "tidal ships user code to workers with cloudpickle: create unpicklable objects "
            "(locks, sockets, clients, open files) in DoFn.setup() instead of capturing them"
        ) from exc


class Impulse(PrimitiveTransform):
    """A single empty-bytes element in the global window: the root of other sources.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Impulse(), td.testing.equal_to([b""]))
    """

    def validate_input(self, input_or_inputs: Any, label: str) -> None:
        if not isinstance(input_or_inputs, PBegin):
            raise PipelineError(f"step {label!r}: Impulse is a root transform; apply it to a pipeline")

    def expand(self, pbegin: PBegin) -> PCollection[bytes]:
        return pbegin.pipeline._new_output()


class BoundedSource(abc.ABC):
    """A finite source: ``read()`` yields its elements (plain or TimestampedValue)."""

    is_bounded = True

    @abc.abstractmethod
    def read(self) -> Iterable[Any]:
        """The elements of this source, in order."""

    def split(self, desired_count: int) -> list["BoundedSource"]:
        """Split into up to ``desired_count`` sources whose union is this one."""
        return [self]

    def estimate_size(self) -> int | None:
        return None

    def display_name(self) -> str:
        return type(self).__name__

    def validation_sample(self) -> Any:
        """What apply-time validation pickles to prove the source can be shipped."""
        return self


class UnboundedSource(abc.ABC):
    """An infinite source read through a reader with offsets and a watermark."""

    is_bounded = False

    @abc.abstractmethod
    def open_reader(self, start_offset: Any = None) -> Any:
        """A reader positioned after ``start_offset`` (for replay), or at the start."""

    def split(self, desired_count: int) -> list["UnboundedSource"]:
        """The source's partitions (at most ``desired_count``), each a source of its own; by default one.

        A source with partitions (the partitions of a topic, several streams)
        returns one source per partition, each with its own reader, offsets
        and watermark. A parallel runner reads them on separate workers, at
        most one partition per worker when the parallelism allows, and
        restores each partition's offset wherever it is read after a restore.
        The list must be the same every time for the same source.
        """
        return [self]

    def display_name(self) -> str:
        return type(self).__name__


class Read(PrimitiveTransform):
    """Read a bounded or unbounded source."""

    def __init__(self, source: BoundedSource | UnboundedSource) -> None:
        super().__init__()
        if not isinstance(source, (BoundedSource, UnboundedSource)):
            raise TypeError(f"Read needs a BoundedSource or UnboundedSource, got {source!r}")
        self.source = source

    def default_label(self) -> str:
        return f"Read({self.source.display_name()})"

    def validate_input(self, input_or_inputs: Any, label: str) -> None:
        if not isinstance(input_or_inputs, PBegin):
            raise PipelineError(f"step {label!r}: Read is a root transform; apply it to a pipeline")
        sample = self.source.validation_sample() if isinstance(self.source, BoundedSource) else self.source
        check_picklable(sample, "the source", label)

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin.pipeline._new_output(is_bounded=self.source.is_bounded)


def _find_side_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[AsSideInput, ...]:
    return tuple(a for a in (*args, *kwargs.values()) if isinstance(a, AsSideInput))


class ParDo(PrimitiveTransform):
    """Apply a DoFn to every element; extra arguments may be side-input views.

    A stateful DoFn (one that declares state or timers) keeps its state per key
    and window, so it needs windows that do not merge: over Sessions or another
    merging WindowFn it is rejected when applied, as Beam Java's
    ``StatefulDoFnRunner`` rejects a ``MergingWindowFn``. Group the input first
    (GroupByKey merges the windows) or window it with FixedWindows,
    SlidingWindows or GlobalWindows.

    >>> import tidal as td
    >>> class Halve(td.DoFn):
    ...     def process(self, n):
    ...         yield n // 2
    ...         if n % 2:
    ...             yield td.TaggedOutput("odd", n)
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([1, 4]) | td.ParDo(Halve()).with_outputs("odd", main="halves")
    ...     td.testing.assert_that(out.halves, td.testing.equal_to([0, 2]), label="halves")
    ...     td.testing.assert_that(out.odd, td.testing.equal_to([1]), label="odd")
    """

    def __init__(self, fn: DoFn, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if isinstance(fn, type) and issubclass(fn, DoFn):
            raise TypeError(f"ParDo needs a DoFn instance; did you mean ParDo({fn.__name__}())?")
        if not isinstance(fn, DoFn):
            if callable(fn):
                raise TypeError(
                    f"ParDo needs a DoFn, got the callable {fn!r}; use Map/FlatMap for a function"
                )
            raise TypeError(f"ParDo needs a DoFn, got {fn!r}")
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.side_inputs = _find_side_inputs(args, kwargs)
        self.output_tags: tuple[str, ...] = ()
        self.main_tag = "out"
        self._label_prefix: str | None = None

    _type_check_style = "with_side_inputs"

    def default_label(self) -> str:
        if self._label_prefix is not None:
            return f"{self._label_prefix}({self.fn.default_label()})"
        return f"ParDo({self.fn.default_label()})"

    def default_type_hints(self) -> IOTypeHints:
        fn = self.fn
        if isinstance(fn, CallableDoFn):
            hints = typehints.get_type_hints(fn.fn, output_is_iterable=fn.kind in ("flatmap", "flatmaptuple"))
            if fn.kind in ("maptuple", "flatmaptuple"):
                hints = IOTypeHints(None, hints.output_types)  # the element is unpacked into the arguments
            return hints
        return typehints.get_type_hints(fn)

    def infer_output_type(self, input_type: Any) -> Any:
        if isinstance(self.fn, CallableDoFn) and self.fn.kind == "filter":
            return input_type
        return super().infer_output_type(input_type)

    def _output_type_reads_input(self) -> bool:
        return isinstance(self.fn, CallableDoFn) and self.fn.kind == "filter"

    def with_outputs(self, *tags: str, main: str | None = None) -> "ParDo":
        """Also produce the outputs ``tags`` (from TaggedOutput); the result is a DoOutputsTuple."""
        for tag in tags:
            if not isinstance(tag, str):
                raise TypeError(f"output tags must be strings, got {tag!r}")
        if main is not None and main in tags:
            raise ValueError(f"main output tag {main!r} is also listed as an additional output")
        self.output_tags = tuple(tags)
        self.main_tag = main or "out"
        self._with_outputs = True
        return self

    def state_and_timer_specs(self) -> tuple[list[StateSpec], list[TimerSpec]]:
        """The state and timer specs the DoFn's process method declares."""
        import inspect

        states: list[StateSpec] = []
        timers: list[TimerSpec] = []
        try:
            params = inspect.signature(self.fn.process).parameters.values()
        except (TypeError, ValueError):
            return states, timers
        for param in params:
            d = param.default
            if isinstance(d, DoFnParam) and d.spec is not None:
                (states if isinstance(d.spec, StateSpec) else timers).append(d.spec)
        return states, timers

    def validate_input(self, pcoll: Any, label: str) -> None:
        if not isinstance(pcoll, PCollection):
            raise PipelineError(f"step {label!r}: ParDo applies to a PCollection, got {pcoll!r}")
        check_picklable(self.fn, "the DoFn" if not isinstance(self.fn, CallableDoFn) else "the function", label)
        for a in (*self.args, *self.kwargs.values()):
            if not isinstance(a, AsSideInput):
                check_picklable(a, "the extra argument", label)
        if isinstance(self.fn, CallableDoFn):
            check_picklable(self.fn.fn, "the function", label)
        windowfn = pcoll.windowing.windowfn
        if windowfn.is_merging() and uses_state_or_timers(self.fn):
            raise PipelineError(
                f"step {label!r}: a stateful DoFn (it declares state or timers) cannot run over the merging "
                f"WindowFn {windowfn!r}: MergingWindowFn is not supported for stateful DoFns, as in Beam. "
                "State is kept per key and window, and merging windows have no stable window to keep it in; "
                "group the input first (GroupByKey merges the windows) or window it with a non-merging "
                "WindowFn (FixedWindows, SlidingWindows, GlobalWindows)"
            )

    def expand(self, pcoll: PCollection[Any]) -> Any:
        p = pcoll.pipeline
        main = p._new_output(self.main_tag, pcoll.windowing, pcoll.is_bounded)
        if not getattr(self, "_with_outputs", False):
            return main
        outputs = {self.main_tag: main}
        for tag in self.output_tags:
            outputs[tag] = p._new_output(tag, pcoll.windowing, pcoll.is_bounded)
        return DoOutputsTuple(self.main_tag, outputs)


def uses_state_or_timers(fn: DoFn) -> bool:
    """Whether a DoFn declares state or timers (a ``StateParam``/``TimerParam`` or an ``@on_timer`` method).

    >>> from tidal.model.userstate import BagStateSpec
    >>> class Buffer(DoFn):
    ...     BUF = BagStateSpec("buf")
    ...     def process(self, kv, buf=DoFn.StateParam(BUF)):
    ...         buf.add(kv[1])
    >>> uses_state_or_timers(Buffer()), uses_state_or_timers(CallableDoFn(len, "map"))
    (True, False)
    """
    import inspect

    target = fn.fn if isinstance(fn, CallableDoFn) else fn.process
    try:
        defaults = [p.default for p in inspect.signature(target).parameters.values()]
    except (TypeError, ValueError):
        defaults = []
    if any(isinstance(d, DoFnParam) and isinstance(d.spec, (StateSpec, TimerSpec)) for d in defaults):
        return True
    return any(isinstance(getattr(getattr(type(fn), name, None), "_tidal_timer_spec", None), TimerSpec) for name in dir(type(fn)))


def _check_keyed_windowing(pcoll: PCollection[Any], label: str, what: str) -> None:
    w = pcoll.windowing
    if not pcoll.is_bounded and isinstance(w.windowfn, GlobalWindows) and is_default_trigger(w.trigger):
        raise PipelineError(
            f"step {label!r}: {what} of an unbounded PCollection in the global window with the "
            "default trigger would never fire; apply WindowInto with a window (FixedWindows, "
            "Sessions, ...) or a trigger (for example Repeatedly(AfterProcessingTime(10))) first"
        )


class GroupByKey(PrimitiveTransform):
    """Group (key, value) pairs by key and window: (key, [values]) per pane.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     grouped = p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | td.GroupByKey()
    ...     sorted_ = grouped | td.MapTuple(lambda k, vs: (k, sorted(vs)))
    ...     td.testing.assert_that(sorted_, td.testing.equal_to([("a", [1, 3]), ("b", [2])]))
    """

    def validate_input(self, pcoll: Any, label: str) -> None:
        if not isinstance(pcoll, PCollection):
            raise PipelineError(f"step {label!r}: GroupByKey applies to a PCollection, got {pcoll!r}")
        _check_keyed_windowing(pcoll, label, "GroupByKey")

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll.pipeline._new_output("out", pcoll.windowing, pcoll.is_bounded)

    def default_type_hints(self) -> IOTypeHints:
        return IOTypeHints(((typehints.KV[typehints.K, typehints.V],), {}), None)

    def infer_output_type(self, input_type: Any) -> Any:
        key, value = typehints.key_value_types(input_type)
        return typehints.tuple_of(key, typehints.iterable_of(value))


class CombinePerKey(PrimitiveTransform):
    """Combine the values of each key (and window) with a CombineFn or a callable.

    Runners may lift it: partial combining before the shuffle.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     totals = p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | td.CombinePerKey(sum)
    ...     td.testing.assert_that(totals, td.testing.equal_to([("a", 4), ("b", 2)]))
    """

    def __init__(self, fn: CombineFn | Any, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if args or kwargs:
            if isinstance(fn, CombineFn):
                raise TypeError("extra arguments are only supported for a callable, not a CombineFn")
            from tidal.model.combinefn import CallableWrapperCombineFn

            self.fn: CombineFn = CallableWrapperCombineFn(fn, *args, **kwargs)
        else:
            self.fn = CombineFn.maybe_from_callable(fn)

    _type_check_style = "with_side_inputs"

    def default_label(self) -> str:
        return f"CombinePerKey({self.fn.default_label()})"

    def default_type_hints(self) -> IOTypeHints:
        return IOTypeHints(((typehints.KV[typehints.K, typing.Any],), {}), None)

    def infer_output_type(self, input_type: Any) -> Any:
        key, _ = typehints.key_value_types(input_type)
        output = self.get_type_hints().main_output
        return output if output is not None else typehints.tuple_of(key, typehints.ANY)

    def _output_type_reads_input(self) -> bool:
        return self.get_type_hints().main_output is None

    def validate_input(self, pcoll: Any, label: str) -> None:
        if not isinstance(pcoll, PCollection):
            raise PipelineError(f"step {label!r}: CombinePerKey applies to a PCollection, got {pcoll!r}")
        _check_keyed_windowing(pcoll, label, "CombinePerKey")
        check_picklable(self.fn, "the CombineFn", label)

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll.pipeline._new_output("out", pcoll.windowing, pcoll.is_bounded)


class Flatten(PrimitiveTransform):
    """Merge several PCollections with the same windowing into one.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     a = p | "a" >> td.Create([1])
    ...     b = p | "b" >> td.Create([2])
    ...     td.testing.assert_that((a, b) | td.Flatten(), td.testing.equal_to([1, 2]))
    """

    def __init__(self, pipeline: Any = None) -> None:
        super().__init__()
        self.pipeline = pipeline

    def __ror__(self, left: Any) -> Any:
        if isinstance(left, (list, tuple)) and not left:
            if self.pipeline is None:
                raise ValueError("Flatten of no PCollections needs Flatten(pipeline=p)")
            return self.pipeline.apply(self, ())
        return super().__ror__(left)

    def validate_input(self, pcolls: Any, label: str) -> None:
        if isinstance(pcolls, PCollection):
            pcolls = (pcolls,)
        if not isinstance(pcolls, tuple) or not all(isinstance(p, PCollection) for p in pcolls):
            raise PipelineError(f"step {label!r}: Flatten needs a tuple or list of PCollections")
        fns = {p.windowing.windowfn for p in pcolls}
        if len(fns) > 1:
            raise PipelineError(
                f"step {label!r}: Flatten inputs have different window functions "
                f"({', '.join(sorted(map(repr, fns)))}); apply the same WindowInto to each first"
            )

    def expand(self, pcolls: Any) -> PCollection[Any]:
        if isinstance(pcolls, PCollection):
            pcolls = (pcolls,)
        p = self.pipeline if not pcolls else pcolls[0].pipeline
        windowing = pcolls[0].windowing if pcolls else None
        bounded = all(pc.is_bounded for pc in pcolls)
        return p._new_output("out", windowing, bounded)

    def infer_output_type(self, input_type: Any) -> Any:
        return input_type


class WindowInto(PrimitiveTransform):
    """Assign windows to elements and set the windowing strategy downstream.

    Downstream GroupByKey / CombinePerKey steps fire panes under ``trigger``
    (see :class:`tidal.trigger.PaneInfo` for what a pane's timing and index
    mean). A window expires when the watermark passes its end plus
    ``allowed_lateness``; input for an expired window is dropped and counted
    in the step's ``dropped_due_to_lateness`` counter, and input for a window
    whose trigger finished (closed, not yet expired) in
    ``dropped_due_to_closed_window`` (see :mod:`tidal.model.metrics`).

    ``evictor`` (a :class:`~tidal.window.CountEvictor`, ``TimeEvictor`` or
    ``DeltaEvictor``) removes elements from a window's buffer when it fires,
    before the grouping function or after it (``evict_after=True``). A
    CombinePerKey under an evictor cannot be lifted (combined before the
    shuffle): it buffers the elements and combines what the evictor keeps.
    Policy windows (:class:`~tidal.window.CountWindows`,
    :class:`~tidal.window.DeltaWindows`) close by count or by a value's
    move, per key, in processing order (see :mod:`tidal.model.policy`).

    >>> import tidal as td
    >>> from tidal import window
    >>> with td.Pipeline() as p:
    ...     counts = (p | td.Create([1, 2, 61])
    ...                 | td.Map(lambda t: window.TimestampedValue(("k", 1), t))
    ...                 | td.WindowInto(window.FixedWindows(60))
    ...                 | td.CombinePerKey(sum))
    ...     td.testing.assert_that(counts, td.testing.equal_to([("k", 2), ("k", 1)]))

    An evictor that keeps the last two elements of each window, before the sum:

    >>> with td.Pipeline() as p:
    ...     last_two = (p | td.Create([1, 2, 3, 61])
    ...                   | td.Map(lambda t: window.TimestampedValue(("k", t), t))
    ...                   | td.WindowInto(window.FixedWindows(60), evictor=window.CountEvictor(2))
    ...                   | td.CombinePerKey(sum))
    ...     td.testing.assert_that(last_two, td.testing.equal_to([("k", 5), ("k", 61)]))
    """

    def __init__(
        self,
        windowfn: WindowFn,
        trigger: Trigger | None = None,
        accumulation_mode: AccumulationMode | None = None,
        timestamp_combiner: TimestampCombiner | None = None,
        allowed_lateness: DurationLike = 0,
        evictor: Evictor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(windowfn, WindowFn):
            raise TypeError(f"WindowInto needs a WindowFn, got {windowfn!r}")
        if trigger is not None and not isinstance(trigger, Trigger):
            raise TypeError(f"WindowInto trigger must be a Trigger, got {trigger!r}")
        if evictor is not None and type(evictor) not in (CountEvictor, TimeEvictor, DeltaEvictor):
            raise TypeError(f"WindowInto evictor must be a CountEvictor, TimeEvictor or DeltaEvictor, got {evictor!r}")
        self.evictor = evictor
        self.windowfn = windowfn
        self.trigger = trigger
        self.accumulation_mode = accumulation_mode
        self.timestamp_combiner = timestamp_combiner
        self.allowed_lateness_us = duration_to_micros(allowed_lateness, "allowed_lateness")
        if self.allowed_lateness_us < 0:
            raise ValueError(f"allowed_lateness must not be negative, got {allowed_lateness!r}")

    def default_label(self) -> str:
        return f"WindowInto({self.windowfn!r})"

    def windowing(self) -> WindowingStrategy:
        return WindowingStrategy(
            windowfn=self.windowfn,
            trigger=self.trigger if self.trigger is not None else DefaultTrigger(),
            accumulation_mode=self.accumulation_mode or AccumulationMode.DISCARDING,
            timestamp_combiner=self.timestamp_combiner or TimestampCombiner.OUTPUT_AT_EOW,
            allowed_lateness_us=self.allowed_lateness_us,
            evictor=self.evictor,
        )

    def validate_input(self, pcoll: Any, label: str) -> None:
        if not isinstance(pcoll, PCollection):
            raise PipelineError(f"step {label!r}: WindowInto applies to a PCollection, got {pcoll!r}")
        if (
            self.trigger is not None
            and not is_default_trigger(self.trigger)
            and self.accumulation_mode is None
        ):
            raise PipelineError(
                f"step {label!r}: the trigger {self.trigger!r} needs an accumulation mode; pass "
                "accumulation_mode=AccumulationMode.DISCARDING or ACCUMULATING to WindowInto"
            )
        if self.evictor is not None and self.windowfn.is_merging():
            raise PipelineError(
                f"step {label!r}: an evictor ({self.evictor!r}) cannot be used with the merging WindowFn "
                f"{self.windowfn!r}: a merged window has no single order of its elements to evict by; "
                "use a non-merging WindowFn (FixedWindows, SlidingWindows, CountWindows, ...)"
            )
        if isinstance(self.windowfn, PolicyWindowFn) and (
            (self.trigger is not None and not is_default_trigger(self.trigger))
            or self.accumulation_mode is not None
            or self.allowed_lateness_us
        ):
            raise PipelineError(
                f"step {label!r}: {self.windowfn!r} fires each window once, when its policy closes it; "
                "it takes no trigger, accumulation_mode or allowed_lateness (an evictor and a "
                "timestamp_combiner apply)"
            )
        check_picklable(self.windowfn, "the WindowFn", label)
        if self.evictor is not None:
            check_picklable(self.evictor, "the evictor", label)

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll.pipeline._new_output("out", self.windowing(), pcoll.is_bounded)

    def infer_output_type(self, input_type: Any) -> Any:
        return input_type

