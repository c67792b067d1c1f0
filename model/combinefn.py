"""CombineFn: an associative, commutative aggregation in four steps.

``create_accumulator`` -> ``add_input`` per value -> ``merge_accumulators``
across partial results -> ``extract_output``. Runners lift a CombineFn:
partial accumulators are built before the shuffle and merged after it.

>>> fn = CombineFn.maybe_from_callable(sum)
>>> fn.extract_output(fn.add_input(fn.add_input(fn.create_accumulator(), 2), 3))
5
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

__all__ = ["CombineFn", "CallableWrapperCombineFn", "SumCombineFn", "MinCombineFn", "MaxCombineFn"]


class CombineFn:
    """Override ``create_accumulator``, ``add_input``, ``merge_accumulators``, ``extract_output``."""

    def setup(self) -> None:
        """Called once before the CombineFn is used."""

    def teardown(self) -> None:
        """Called once when the CombineFn is discarded."""

    def create_accumulator(self) -> Any:
        raise TypeError(f"{type(self).__name__} must define create_accumulator()")

    def add_input(self, mutable_accumulator: Any, element: Any) -> Any:
        raise TypeError(f"{type(self).__name__} must define add_input(accumulator, element)")

    def add_inputs(self, mutable_accumulator: Any, elements: Iterable[Any]) -> Any:
        for element in elements:
            mutable_accumulator = self.add_input(mutable_accumulator, element)
        return mutable_accumulator

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        raise TypeError(f"{type(self).__name__} must define merge_accumulators(accumulators)")

    def compact(self, accumulator: Any) -> Any:
        return accumulator

    def extract_output(self, accumulator: Any) -> Any:
        return accumulator

    def apply(self, elements: Iterable[Any]) -> Any:
        """Combine an iterable of values in one go."""
        return self.extract_output(self.add_inputs(self.create_accumulator(), elements))

    def default_label(self) -> str:
        return type(self).__name__

    @staticmethod
    def maybe_from_callable(fn: "CombineFn | Callable[..., Any]") -> "CombineFn":
        """A CombineFn as is; a callable over an iterable (``sum``, ``max``...) wrapped."""
        if isinstance(fn, CombineFn):
            return fn
        if isinstance(fn, type) and issubclass(fn, CombineFn):
            raise TypeError(f"pass an instance of {fn.__name__}, not the class")
        if not callable(fn):
            raise TypeError(f"expected a CombineFn or a callable, got {fn!r}")
        try:
            known = _KNOWN_CALLABLES.get(fn)  # type: ignore[call-overload]
        except TypeError:  # an unhashable callable object
            known = None
        if known is not None:
            return known()
        return CallableWrapperCombineFn(fn)

    @classmethod
    def from_callable(cls, fn: Callable[..., Any]) -> "CombineFn":
        return cls.maybe_from_callable(fn)


class CallableWrapperCombineFn(CombineFn):
    """Wraps ``fn(iterable) -> value``: buffers inputs, compacting them every so often."""

    _BUFFER_SIZE = 10

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"expected a callable, got {fn!r}")
        self._fn = fn
        self._args = args
        self._kwargs = kwargs

    def create_accumulator(self) -> list[Any]:
        return []

    def add_input(self, accumulator: list[Any], element: Any) -> list[Any]:
        accumulator.append(element)
        if len(accumulator) > self._BUFFER_SIZE:
            accumulator = [self._fn(accumulator, *self._args, **self._kwargs)]
        return accumulator

    def add_inputs(self, accumulator: list[Any], elements: Iterable[Any]) -> list[Any]:
        accumulator.extend(elements)
        return [self._fn(accumulator, *self._args, **self._kwargs)] if accumulator else accumulator

    def merge_accumulators(self, accumulators: Iterable[list[Any]]) -> list[Any]:
        merged = [x for acc in accumulators for x in acc]
        if len(merged) > 1:
            return [self._fn(merged, *self._args, **self._kwargs)]
        return merged

    def compact(self, accumulator: list[Any]) -> list[Any]:
        if len(accumulator) > 1:
            return [self._fn(accumulator, *self._args, **self._kwargs)]
        return accumulator

    def extract_output(self, accumulator: list[Any]) -> Any:
        return self._fn(accumulator, *self._args, **self._kwargs)

    def default_label(self) -> str:
        return getattr(self._fn, "__name__", type(self._fn).__name__)

    def __repr__(self) -> str:
        return f"CallableWrapperCombineFn({self.default_label()})"


class SumCombineFn(CombineFn):
    """``sum`` as a CombineFn whose accumulator is the running total."""

    def create_accumulator(self) -> Any:
        return 0

    def add_input(self, accumulator: Any, element: Any) -> Any:
        return accumulator + element

    def add_inputs(self, accumulator: Any, elements: Iterable[Any]) -> Any:
        return accumulator + sum(elements)

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        return sum(accumulators)

    def default_label(self) -> str:
        return "sum"


class _Empty:
    """The accumulator of min/max before any input."""

    def __repr__(self) -> str:
        return "<empty>"

    def __reduce__(self) -> str:
        return "EMPTY"


EMPTY = _Empty()


class _ExtremeCombineFn(CombineFn):
    _pick: Callable[..., Any]
    _name: str

    def create_accumulator(self) -> Any:
        return EMPTY

    def add_input(self, accumulator: Any, element: Any) -> Any:
        return element if accumulator is EMPTY else type(self)._pick(accumulator, element)

    def add_inputs(self, accumulator: Any, elements: Iterable[Any]) -> Any:
        values = list(elements)
        if accumulator is not EMPTY:
            values.append(accumulator)
        return type(self)._pick(values) if values else EMPTY

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        values = [a for a in accumulators if a is not EMPTY]
        return type(self)._pick(values) if values else EMPTY

    def extract_output(self, accumulator: Any) -> Any:
        if accumulator is EMPTY:
            raise ValueError(f"{self._name}() of an empty input")
        return accumulator

    def default_label(self) -> str:
        return self._name


class MinCombineFn(_ExtremeCombineFn):
    """``min`` as a CombineFn."""

    _pick = staticmethod(min)
    _name = "min"


class MaxCombineFn(_ExtremeCombineFn):
    """``max`` as a CombineFn."""

    _pick = staticmethod(max)
    _name = "max"


_KNOWN_CALLABLES: dict[Any, type[CombineFn]] = {sum: SumCombineFn, min: MinCombineFn, max: MaxCombineFn}
