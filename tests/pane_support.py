"""Recording panes in tests: a DoFn that turns each pane into a plain tuple, and ``P`` to expect one.

The module is pickled by value, so worker processes need not import it.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

import cloudpickle

import tidal as td
from tidal.model.trigger import PaneInfoTiming

__all__ = ["RecordPanes", "P"]


class RecordPanes(td.DoFn):
    """After a GroupByKey / CombinePerKey: each pane as a plain tuple (grouped values sorted)."""

    def process(
        self,
        kv: Any,
        w: Any = td.DoFn.WindowParam,
        pane: Any = td.DoFn.PaneInfoParam,
        ts: Any = td.DoFn.TimestampParam,
    ) -> Iterable[Any]:
        key, values = kv
        if isinstance(values, list):
            values = sorted(values)
        yield (key, values, w, ts.micros, pane.index, pane.timing, pane.is_first, pane.is_last, pane.nonspeculative_index)


def P(
    key: Any,
    values: Any,
    w: Any,
    ts_us: int,
    index: int = 0,
    timing: PaneInfoTiming = PaneInfoTiming.ON_TIME,
    last: bool = True,
    nonspec: int = 0,
) -> tuple[Any, ...]:
    """An expected pane, as RecordPanes writes it (by default the only, on-time pane); is_first is index == 0."""
    return (key, values, w, ts_us, index, timing, index == 0, last, nonspec)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
