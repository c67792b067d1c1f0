"""Matchers and assert_that, at Beam's path ``apache_beam.testing.util``.

>>> import tidal as td
>>> with td.Pipeline() as p:
...     words = p | td.Create(["a", "b", "a"])
...     assert_that(words | td.combiners.Count.PerElement(), equal_to([("a", 2), ("b", 1)]))
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

from tidal.model.dofn import CallableDoFn, DoFn
from tidal.model.primitives import GroupByKey, ParDo, WindowInto
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import AsList, PCollection
from tidal.model.window import BoundedWindow, GlobalWindows
from tidal.transforms.core import Create

__all__ = [
    "assert_that",
    "equal_to",
    "is_empty",
    "is_not_empty",
    "equal_to_per_window",
    "TestWindowedValue",
    "BeamAssertException",
]


class BeamAssertException(AssertionError):
    """An assert_that matcher failed (Beam's name, kept for porting)."""


class TestWindowedValue(NamedTuple):
    """An element with its timestamp and windows, as ``assert_that(..., reify_windows=True)`` sees it."""

    value: Any
    timestamp: Any
    windows: list[BoundedWindow]


TestWindowedValue.__test__ = False  # type: ignore[attr-defined]  # not a pytest test class


def _diff(actual: list[Any], expected: list[Any]) -> tuple[list[Any], list[Any]]:
    """(unexpected, missing) as multisets; works for unhashable elements too."""
    remaining = list(expected)
    unexpected: list[Any] = []
    for a in actual:
        for i, e in enumerate(remaining):
            if e == a:
                del remaining[i]
                break
        else:
            unexpected.append(a)
    return unexpected, remaining


def equal_to(expected: Iterable[Any]) -> Callable[[list[Any]], None]:
    """Matcher: the PCollection holds exactly ``expected``, in any order."""
    expected_list = list(expected)

    def _equal(actual: list[Any]) -> None:
        unexpected, missing = _diff(list(actual), expected_list)
        if unexpected or missing:
            parts = [f"Failed assert: {sorted_repr(actual)} == {sorted_repr(expected_list)}"]
            if unexpected:
                parts.append(f"unexpected elements {sorted_repr(unexpected)}")
            if missing:
                parts.append(f"missing elements {sorted_repr(missing)}")
            raise BeamAssertException(", ".join(parts))

    return _equal


def sorted_repr(values: list[Any]) -> str:
    try:
        return repr(sorted(values))
    except TypeError:
        return repr(values)


def is_empty() -> Callable[[list[Any]], None]:
    """Matcher: the PCollection is empty."""

    def _empty(actual: list[Any]) -> None:
        if actual:
            raise BeamAssertException(f"Failed assert: {sorted_repr(list(actual))} is not empty")

    return _empty


def is_not_empty() -> Callable[[list[Any]], None]:
    """Matcher: the PCollection has at least one element."""

    def _not_empty(actual: list[Any]) -> None:
        if not actual:
            raise BeamAssertException("Failed assert: the PCollection is empty")

    return _not_empty


def equal_to_per_window(expected_window_to_elements: dict[BoundedWindow, Iterable[Any]]) -> Callable[[list[Any]], None]:
    """Matcher (with ``reify_windows=True``): the elements of each window, in any order."""
    expected = {w: list(vs) for w, vs in expected_window_to_elements.items()}

    def _per_window(actual: list[Any]) -> None:
        got: dict[BoundedWindow, list[Any]] = {}
        for twv in actual:
            for w in twv.windows:
                got.setdefault(w, []).append(twv.value)
        problems = []
        for w in sorted(set(got) | set(expected), key=repr):
            unexpected, missing = _diff(got.get(w, []), expected.get(w, []))
            if unexpected or missing:
                problems.append(f"window {w!r}: unexpected {sorted_repr(unexpected)}, missing {sorted_repr(missing)}")
        if problems:
            raise BeamAssertException("Failed assert per window: " + "; ".join(problems))

    return _per_window


class _Reify(DoFn):
    def process(self, v: Any, t: Any = DoFn.TimestampParam, w: Any = DoFn.WindowParam) -> Iterable[Any]:
        yield TestWindowedValue(v, t, [w])


class _Check(DoFn):
    def __init__(self, matcher: Callable[[list[Any]], None]) -> None:
        self.matcher = matcher

    def process(self, _: Any, actual: list[Any]) -> Iterable[Any]:
        self.matcher(actual)
        return ()


class _CheckWindow(DoFn):
    """Runs the matcher on the contents of one window (``use_global_window=False``)."""

    def __init__(self, matcher: Callable[[list[Any]], None]) -> None:
        self.matcher = matcher

    def process(self, kv: Any, w: Any = DoFn.WindowParam) -> Iterable[Any]:
        try:
            self.matcher(list(kv[1]))
        except BeamAssertException as exc:
            raise BeamAssertException(f"in window {w!r}: {exc}") from exc
        return ()


def _to_void_key(v: Any) -> tuple[None, Any]:
    return None, v


class _AssertThat(PTransform):
    def __init__(self, matcher: Callable[[list[Any]], None], reify_windows: bool, use_global_window: bool) -> None:
        super().__init__()
        self.matcher = matcher
        self.reify_windows = reify_windows
        self.use_global_window = use_global_window

    def default_label(self) -> str:
        return "assert_that"

    def expand(self, pcoll: PCollection[Any]) -> None:
        if self.reify_windows:
            pcoll = pcoll | "ReifyWindows" >> ParDo(_Reify())
        if not self.use_global_window and not isinstance(pcoll.windowing.windowfn, GlobalWindows):
            # Check each window on its own: group the whole window under one key.
            grouped = pcoll | "ToVoidKey" >> ParDo(CallableDoFn(_to_void_key, "map")) | "Group" >> GroupByKey()
            grouped | "Match" >> ParDo(_CheckWindow(self.matcher))
            return None
        if self.use_global_window:
            pcoll = pcoll | "WindowIntoGlobal" >> WindowInto(GlobalWindows())
        seed = pcoll.pipeline | "Seed" >> Create([None])
        seed | "Match" >> ParDo(_Check(self.matcher), AsList(pcoll))
        return None


def assert_that(
    actual: PCollection[Any],
    matcher: Callable[[list[Any]], None],
    label: str = "assert_that",
    reify_windows: bool = False,
    use_global_window: bool = True,
) -> None:
    """Check the whole contents of ``actual`` with ``matcher`` when the pipeline runs.

    With ``use_global_window=False`` the matcher checks the contents of each
    window (that has elements) on its own. A failed matcher fails the run
    with an AssertionError that names ``label``.
    """
    if not isinstance(actual, PCollection):
        raise TypeError(f"assert_that needs a PCollection, got {actual!r}")
    actual | label >> _AssertThat(matcher, reify_windows, use_global_window)


