"""What the Arrow fast path's tests share: the combiners it knows and the windows it takes."""

from __future__ import annotations

from tidal import combiners, window

#: The combiners the Arrow path runs columnar, by name.
COMBINERS = {
    "sum": sum,
    "count": combiners.CountCombineFn(),
    "mean": combiners.MeanCombineFn(),
    "min": min,
    "max": max,
}
#: The non-global windows it takes, by name (each test adds the global window in its own form).
WINDOWED = {
    "fixed": window.FixedWindows(10),
    "fixed-offset": window.FixedWindows(10, offset=3),
    "sliding": window.SlidingWindows(10, 4),
}
