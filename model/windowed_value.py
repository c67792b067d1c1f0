"""WindowedValue: a value with its timestamp, windows and pane.

Inside the runners a windowed value is a plain 4-tuple ``(value,
timestamp_us, windows, pane)`` — the cheapest object Python can build in a
hot loop. This class is the readable form user code builds, for example to
emit from ``DoFn.finish_bundle``; runners turn it into the tuple.

>>> from tidal.model.window import GlobalWindow
>>> wv = WindowedValue("x", 5, [GlobalWindow()])
>>> wv.to_tuple()[:2]
('x', 5000000)
"""

from __future__ import annotations

from typing import Any, Iterable

from tidal.model.time import Timestamp, TimestampLike, to_micros
from tidal.model.trigger import PANE_INFO_UNKNOWN, PaneInfo
from tidal.model.window import BoundedWindow

__all__ = ["WindowedValue", "WV_VALUE", "WV_TIMESTAMP", "WV_WINDOWS", "WV_PANE"]

#: Positions in the runners' tuple form.
WV_VALUE, WV_TIMESTAMP, WV_WINDOWS, WV_PANE = 0, 1, 2, 3


class WindowedValue:
    """A value, its event timestamp, the windows it belongs to and its pane."""

    __slots__ = ("value", "timestamp_us", "windows", "pane_info")

    def __init__(
        self,
        value: Any,
        timestamp: TimestampLike,
        windows: Iterable[BoundedWindow],
        pane_info: PaneInfo = PANE_INFO_UNKNOWN,
    ) -> None:
        self.value = value
        self.timestamp_us = to_micros(timestamp)
        self.windows = tuple(windows)
        if not self.windows:
            raise ValueError("a WindowedValue needs at least one window")
        self.pane_info = pane_info

    @property
    def timestamp(self) -> Timestamp:
        return Timestamp.from_micros(self.timestamp_us)

    def to_tuple(self) -> tuple[Any, int, tuple[BoundedWindow, ...], PaneInfo]:
        return (self.value, self.timestamp_us, self.windows, self.pane_info)

    @classmethod
    def from_tuple(cls, wv: tuple[Any, int, tuple[BoundedWindow, ...], PaneInfo]) -> "WindowedValue":
        out = object.__new__(cls)
        out.value, out.timestamp_us, out.windows, out.pane_info = wv
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowedValue) and self.to_tuple() == other.to_tuple()

    def __hash__(self) -> int:
        return hash((self.timestamp_us, self.windows))

    def __repr__(self) -> str:
        return f"WindowedValue({self.value!r}, {self.timestamp!r}, {list(self.windows)!r}, {self.pane_info!r})"
