"""Standard combiners: Count, Mean, Top, Latest, ToList, ToDict, ToSet, Sample.

Each has its CombineFn (usable with CombinePerKey / CombineGlobally) and
transforms in Beam's shape (``Count.Globally()``, ``Mean.PerKey()``...).

>>> import tidal as td
>>> with td.Pipeline() as p:
...     nums = p | td.Create([1, 2, 3, 4])
...     td.testing.assert_that(nums | Mean.Globally(), td.testing.equal_to([2.5]), label="mean")
...     td.testing.assert_that(nums | Top.Largest(2), td.testing.equal_to([[4, 3]]), label="top")
"""

from __future__ import annotations

import heapq
import random
from typing import Any, Callable, Iterable

from tidal.model.combinefn import CombineFn
from tidal.model.dofn import DoFn
from tidal.model.primitives import CombinePerKey, ParDo
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PCollection
from tidal.transforms.core import Map
from tidal.transforms.core import CombineGlobally

__all__ = [
    "Count",
    "CountCombineFn",
    "Mean",
    "MeanCombineFn",
    "Top",
    "TopCombineFn",
    "Largest",
    "Smallest",
    "Latest",
    "LatestCombineFn",
    "ToList",
    "ToListCombineFn",
    "ToDict",
    "ToDictCombineFn",
    "ToSet",
    "ToSetCombineFn",
    "Sample",
    "SampleCombineFn",
]


class _GloballyPerKey(PTransform):
    """A transform that applies a CombineFn globally or per key."""

    def __init__(self, fn: CombineFn, per_key: bool, name: str, without_defaults: bool = False) -> None:
        super().__init__()
        self.fn = fn
        self.per_key = per_key
        self.name = name
        self._without_defaults = without_defaults

    def default_label(self) -> str:
        return self.name

    def without_defaults(self) -> "_GloballyPerKey":
        self._without_defaults = True
        return self

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        if self.per_key:
            return pcoll | "CombinePerKey" >> CombinePerKey(self.fn)
        combine = CombineGlobally(self.fn)
        if self._without_defaults:
            combine = combine.without_defaults()
        return pcoll | "CombineGlobally" >> combine


# -- Count ---------------------------------------------------------------------------
class CountCombineFn(CombineFn):
    """Counts its inputs."""

    def create_accumulator(self) -> int:
        return 0

    def add_input(self, accumulator: int, element: Any) -> int:
        return accumulator + 1

    def add_inputs(self, accumulator: int, elements: Iterable[Any]) -> int:
        return accumulator + sum(1 for _ in elements)

    def merge_accumulators(self, accumulators: Iterable[int]) -> int:
        return sum(accumulators)

    def extract_output(self, accumulator: int) -> int:
        return accumulator


class Count:
    """Count elements globally, per key, or per distinct element.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     words = p | td.Create(["a", "b", "a"])
    ...     td.testing.assert_that(words | Count.Globally(), td.testing.equal_to([3]), label="g")
    ...     td.testing.assert_that(words | Count.PerElement(), td.testing.equal_to([("a", 2), ("b", 1)]), label="e")
    """

    @staticmethod
    def Globally() -> PTransform:
        return _GloballyPerKey(CountCombineFn(), False, "Count.Globally")

    @staticmethod
    def PerKey() -> PTransform:
        return _GloballyPerKey(CountCombineFn(), True, "Count.PerKey")

    @staticmethod
    def PerElement() -> PTransform:
        return _CountPerElement()


class _CountPerElement(PTransform):
    def default_label(self) -> str:
        return "Count.PerElement"

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll | "PairWithOne" >> Map(lambda x: (x, None)) | "Count" >> CombinePerKey(CountCombineFn())


# -- Mean ----------------------------------------------------------------------------
class MeanCombineFn(CombineFn):
    """The arithmetic mean (NaN for an empty input, as in Beam)."""

    def create_accumulator(self) -> tuple[float, int]:
        return (0, 0)

    def add_input(self, accumulator: tuple[float, int], element: float) -> tuple[float, int]:
        return accumulator[0] + element, accumulator[1] + 1

    def merge_accumulators(self, accumulators: Iterable[tuple[float, int]]) -> tuple[float, int]:
        total: float = 0
        count = 0
        for s, c in accumulators:
            total += s
            count += c
        return total, count

    def extract_output(self, accumulator: tuple[float, int]) -> float:
        total, count = accumulator
        return total / count if count else float("nan")


class Mean:
    """Mean globally or per key.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([("a", 1), ("a", 3)]) | Mean.PerKey()
    ...     td.testing.assert_that(out, td.testing.equal_to([("a", 2.0)]))
    """

    @staticmethod
    def Globally() -> PTransform:
        return _GloballyPerKey(MeanCombineFn(), False, "Mean.Globally")

    @staticmethod
    def PerKey() -> PTransform:
        return _GloballyPerKey(MeanCombineFn(), True, "Mean.PerKey")


# -- Top -----------------------------------------------------------------------------
class TopCombineFn(CombineFn):
    """The ``n`` greatest elements by ``key`` (or the ``n`` least with ``reverse=True``), best first."""

    def __init__(self, n: int, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"Top needs a non-negative count, got {n!r}")
        self.n = n
        self.key = key
        self.reverse = reverse

    def _select(self, items: list[Any]) -> list[Any]:
        if self.reverse:
            return heapq.nsmallest(self.n, items, key=self.key)
        return heapq.nlargest(self.n, items, key=self.key)

    def create_accumulator(self) -> list[Any]:
        return []

    def add_input(self, accumulator: list[Any], element: Any) -> list[Any]:
        accumulator.append(element)
        if len(accumulator) > max(2 * self.n, 16):
            accumulator = self._select(accumulator)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[list[Any]]) -> list[Any]:
        return self._select([x for acc in accumulators for x in acc])

    def compact(self, accumulator: list[Any]) -> list[Any]:
        return self._select(accumulator)

    def extract_output(self, accumulator: list[Any]) -> list[Any]:
        return self._select(accumulator)


class Top:
    """The largest / smallest ``n`` elements, globally or per key.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([5, 1, 4]) | Top.Smallest(2)
    ...     td.testing.assert_that(out, td.testing.equal_to([[1, 4]]))
    """

    @staticmethod
    def Of(n: int, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> PTransform:
        return _GloballyPerKey(TopCombineFn(n, key, reverse), False, f"Top.Of({n})")

    @staticmethod
    def PerKey(n: int, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> PTransform:
        return _GloballyPerKey(TopCombineFn(n, key, reverse), True, f"Top.PerKey({n})")

    @staticmethod
    def Largest(n: int) -> PTransform:
        return _GloballyPerKey(TopCombineFn(n), False, f"Top.Largest({n})")

    @staticmethod
    def Smallest(n: int) -> PTransform:
        return _GloballyPerKey(TopCombineFn(n, reverse=True), False, f"Top.Smallest({n})")

    @staticmethod
    def LargestPerKey(n: int) -> PTransform:
        return _GloballyPerKey(TopCombineFn(n), True, f"Top.LargestPerKey({n})")

    @staticmethod
    def SmallestPerKey(n: int) -> PTransform:
        return _GloballyPerKey(TopCombineFn(n, reverse=True), True, f"Top.SmallestPerKey({n})")


def Largest(n: int) -> TopCombineFn:
    """The CombineFn of the ``n`` largest elements."""
    return TopCombineFn(n)


def Smallest(n: int) -> TopCombineFn:
    """The CombineFn of the ``n`` smallest elements."""
    return TopCombineFn(n, reverse=True)


# -- Latest --------------------------------------------------------------------------
class LatestCombineFn(CombineFn):
    """The element with the latest timestamp; inputs are (value, timestamp_us) pairs."""

    def create_accumulator(self) -> tuple[Any, int] | None:
        return None

    def add_input(self, accumulator: Any, element: tuple[Any, int]) -> Any:
        if accumulator is None or element[1] > accumulator[1]:
            return element
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        best = None
        for acc in accumulators:
            if acc is not None and (best is None or acc[1] > best[1]):
                best = acc
        return best

    def extract_output(self, accumulator: Any) -> Any:
        return None if accumulator is None else accumulator[0]


class _StampDoFn(DoFn):
    def process(self, element: Any, timestamp: Any = DoFn.TimestampParam) -> Iterable[Any]:
        yield element, timestamp.micros


class _StampValueDoFn(DoFn):
    def process(self, kv: Any, timestamp: Any = DoFn.TimestampParam) -> Iterable[Any]:
        yield kv[0], (kv[1], timestamp.micros)


class Latest:
    """The element (or per-key value) with the latest event timestamp.

    >>> import tidal as td
    >>> from tidal.model.window import TimestampedValue
    >>> with td.Pipeline() as p:
    ...     out = (p | td.Create([TimestampedValue("old", 1), TimestampedValue("new", 5)])
    ...              | Latest.Globally())
    ...     td.testing.assert_that(out, td.testing.equal_to(["new"]))
    """

    @staticmethod
    def Globally() -> PTransform:
        return _Latest(per_key=False)

    @staticmethod
    def PerKey() -> PTransform:
        return _Latest(per_key=True)


class _Latest(PTransform):
    def __init__(self, per_key: bool) -> None:
        super().__init__()
        self.per_key = per_key
        self._without_defaults = False

    def default_label(self) -> str:
        return "Latest.PerKey" if self.per_key else "Latest.Globally"

    def without_defaults(self) -> "_Latest":
        """Globally: emit nothing for an empty input (needed in non-global windows)."""
        self._without_defaults = True
        return self

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        if self.per_key:
            return pcoll | "Stamp" >> ParDo(_StampValueDoFn()) | "Combine" >> CombinePerKey(LatestCombineFn())
        combine = CombineGlobally(LatestCombineFn())
        if self._without_defaults:
            combine = combine.without_defaults()
        return pcoll | "Stamp" >> ParDo(_StampDoFn()) | "Combine" >> combine


# -- ToList / ToDict / ToSet ---------------------------------------------------------
class ToListCombineFn(CombineFn):
    """All inputs as a list."""

    def create_accumulator(self) -> list[Any]:
        return []

    def add_input(self, accumulator: list[Any], element: Any) -> list[Any]:
        accumulator.append(element)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[list[Any]]) -> list[Any]:
        return [x for acc in accumulators for x in acc]

    def extract_output(self, accumulator: list[Any]) -> list[Any]:
        return list(accumulator)


class ToDictCombineFn(CombineFn):
    """(key, value) inputs as a dict (a later value for a key wins)."""

    def create_accumulator(self) -> dict[Any, Any]:
        return {}

    def add_input(self, accumulator: dict[Any, Any], element: tuple[Any, Any]) -> dict[Any, Any]:
        key, value = element
        accumulator[key] = value
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[dict[Any, Any]]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for acc in accumulators:
            out.update(acc)
        return out

    def extract_output(self, accumulator: dict[Any, Any]) -> dict[Any, Any]:
        return dict(accumulator)


class ToSetCombineFn(CombineFn):
    """The distinct inputs as a set."""

    def create_accumulator(self) -> set[Any]:
        return set()

    def add_input(self, accumulator: set[Any], element: Any) -> set[Any]:
        accumulator.add(element)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[set[Any]]) -> set[Any]:
        out: set[Any] = set()
        for acc in accumulators:
            out |= acc
        return out

    def extract_output(self, accumulator: set[Any]) -> set[Any]:
        return set(accumulator)


def ToList() -> PTransform:
    """All elements (per window) as one list.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([1]) | ToList()
    ...     td.testing.assert_that(out, td.testing.equal_to([[1]]))
    """
    return _GloballyPerKey(ToListCombineFn(), False, "ToList")


def ToDict() -> PTransform:
    """All (key, value) elements (per window) as one dict.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([("a", 1)]) | ToDict()
    ...     td.testing.assert_that(out, td.testing.equal_to([{"a": 1}]))
    """
    return _GloballyPerKey(ToDictCombineFn(), False, "ToDict")


def ToSet() -> PTransform:
    """The distinct elements (per window) as one set.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create([1, 1, 2]) | ToSet()
    ...     td.testing.assert_that(out, td.testing.equal_to([{1, 2}]))
    """
    return _GloballyPerKey(ToSetCombineFn(), False, "ToSet")


# -- Sample --------------------------------------------------------------------------
class SampleCombineFn(CombineFn):
    """A uniform sample of ``n`` inputs without replacement (reservoir by random keys)."""

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"Sample needs a non-negative size, got {n!r}")
        self.n = n

    def create_accumulator(self) -> list[tuple[float, Any]]:
        return []

    def add_input(self, accumulator: list[tuple[float, Any]], element: Any) -> list[tuple[float, Any]]:
        item = (random.random(), element)
        if len(accumulator) < self.n:
            heapq.heappush(accumulator, item)  # type: ignore[misc]
        elif self.n and item[0] > accumulator[0][0]:
            heapq.heapreplace(accumulator, item)  # type: ignore[misc]
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[list[tuple[float, Any]]]) -> list[tuple[float, Any]]:
        items = [x for acc in accumulators for x in acc]
        best = heapq.nlargest(self.n, items, key=lambda x: x[0])
        heapq.heapify(best)
        return best

    def extract_output(self, accumulator: list[tuple[float, Any]]) -> list[Any]:
        return [v for _, v in accumulator]


class Sample:
    """A uniform random sample of ``n`` elements, globally or per key.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     out = p | td.Create(range(100)) | Sample.FixedSizeGlobally(3) | Map(len)
    ...     td.testing.assert_that(out, td.testing.equal_to([3]))
    """

    @staticmethod
    def FixedSizeGlobally(n: int) -> PTransform:
        return _GloballyPerKey(SampleCombineFn(n), False, f"Sample.FixedSizeGlobally({n})")

    @staticmethod
    def FixedSizePerKey(n: int) -> PTransform:
        return _GloballyPerKey(SampleCombineFn(n), True, f"Sample.FixedSizePerKey({n})")
