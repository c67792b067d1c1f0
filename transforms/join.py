"""Joins of two keyed PCollections per window, built on CoGroupByKey.

:class:`WindowedJoin` is Flink's ``left.join(right).where(key).equalTo(key)
.window(...)`` in Beam's style: apply it to a pair ``(left, right)`` of
``(key, value)`` PCollections and get ``(key, (left_value, right_value))``
for every pair of values with the same key in the same window (and pane).
An outer join also emits a value that has no partner in its window, with
``None`` on the other side.
"""

from __future__ import annotations

from typing import Any, Iterable

from tidal.model.pipeline import PipelineError
from tidal.model.primitives import WindowInto
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PCollection
from tidal.model.window import WindowFn
from tidal.transforms.core import FlatMap
from tidal.transforms.util import CoGroupByKey

__all__ = ["WindowedJoin", "JOIN_KINDS"]

#: inner: only matched pairs; left / right: also every unmatched value of that side; full: of both.
JOIN_KINDS = ("inner", "left", "right", "full")


def _pairs(kv: Any, how: str) -> Iterable[Any]:
    key, (lefts, rights) = kv
    if lefts and rights:
        for lv in lefts:
            for rv in rights:
                yield key, (lv, rv)
    elif lefts and how in ("left", "full"):
        for lv in lefts:
            yield key, (lv, None)
    elif rights and how in ("right", "full"):
        for rv in rights:
            yield key, (None, rv)


class WindowedJoin(PTransform):
    """Join ``(left, right)`` keyed PCollections per key and window: ``(key, (left_value, right_value))``.

    ``how`` is ``"inner"`` (matched pairs only), ``"left"``, ``"right"`` or
    ``"full"`` (outer joins: a value with no partner in its window pairs with
    ``None``). ``windowfn``, when given, windows both sides first (Flink's
    ``.window(TumblingEventTimeWindows.of(30 s))``); otherwise both must
    already have the same windowing. Pairs come out per pane of the
    underlying CoGroupByKey, in its window, at its pane's timestamp.

    >>> import tidal as td
    >>> from tidal import window
    >>> from tidal.transforms.join import WindowedJoin
    >>> with td.Pipeline() as p:
    ...     prices = p | "Prices" >> td.Create([("ACME", 10, 1), ("ACME", 12, 40), ("INIT", 5, 2)])
    ...     tweets = p | "Tweets" >> td.Create([("ACME", "up!", 3), ("ZZZ", "hm", 4)])
    ...     stamp = lambda e: window.TimestampedValue((e[0], e[1]), e[2])
    ...     left = prices | "StampPrices" >> td.Map(stamp)
    ...     right = tweets | "StampTweets" >> td.Map(stamp)
    ...     inner = (left, right) | "Inner" >> WindowedJoin(windowfn=window.FixedWindows(30))
    ...     full = (left, right) | "Full" >> WindowedJoin("full", windowfn=window.FixedWindows(30))
    ...     td.testing.assert_that(inner, td.testing.equal_to([("ACME", (10, "up!"))]), label="CheckInner")
    ...     td.testing.assert_that(full, td.testing.equal_to([
    ...         ("ACME", (10, "up!")), ("ACME", (12, None)), ("INIT", (5, None)), ("ZZZ", (None, "hm"))]),
    ...         label="CheckFull")
    """

    def __init__(self, how: str = "inner", windowfn: WindowFn | None = None) -> None:
        super().__init__()
        if how not in JOIN_KINDS:
            raise ValueError(f"WindowedJoin how must be one of {', '.join(JOIN_KINDS)}; got {how!r}")
        if windowfn is not None and not isinstance(windowfn, WindowFn):
            raise TypeError(f"WindowedJoin windowfn must be a WindowFn, got {windowfn!r}")
        self.how = how
        self.windowfn = windowfn

    def default_label(self) -> str:
        return f"WindowedJoin({self.how})"

    def expand(self, pcolls: Any) -> PCollection[Any]:
        if not (isinstance(pcolls, (tuple, list)) and len(pcolls) == 2 and all(isinstance(p, PCollection) for p in pcolls)):
            raise PipelineError(f"WindowedJoin applies to a pair (left, right) of PCollections, got {pcolls!r}")
        left, right = pcolls
        if self.windowfn is not None:
            left = left | "WindowLeft" >> WindowInto(self.windowfn)
            right = right | "WindowRight" >> WindowInto(self.windowfn)
        how = self.how
        grouped = (left, right) | "CoGroupByKey" >> CoGroupByKey()
        return grouped | "Pairs" >> FlatMap(_pairs, how)
