"""WindowingStrategy: the windowing a PCollection carries from WindowInto onward."""

from __future__ import annotations

import attrs

from tidal.model.policy import Evictor
from tidal.model.trigger import AccumulationMode, DefaultTrigger, Trigger, is_default_trigger
from tidal.model.window import GlobalWindows, TimestampCombiner, WindowFn

__all__ = ["WindowingStrategy", "DEFAULT_WINDOWING"]


@attrs.frozen
class WindowingStrategy:
    """WindowFn, trigger, accumulation mode, timestamp combiner, allowed lateness and evictor."""

    windowfn: WindowFn = attrs.field(factory=GlobalWindows)
    trigger: Trigger = attrs.field(factory=DefaultTrigger)
    accumulation_mode: AccumulationMode = AccumulationMode.DISCARDING
    timestamp_combiner: TimestampCombiner = TimestampCombiner.OUTPUT_AT_EOW
    allowed_lateness_us: int = 0
    #: Removes elements from a window's buffer when it fires (see tidal.model.policy).
    evictor: Evictor | None = None

    @property
    def is_global_default(self) -> bool:
        """Global windows with the default trigger: the batch fast path."""
        return isinstance(self.windowfn, GlobalWindows) and is_default_trigger(self.trigger)

    @property
    def has_default_trigger(self) -> bool:
        return is_default_trigger(self.trigger)

    def describe(self) -> str:
        parts = [repr(self.windowfn)]
        if not is_default_trigger(self.trigger):
            parts.append(f"trigger={self.trigger!r}")
            parts.append(self.accumulation_mode.name)
        if self.timestamp_combiner is not TimestampCombiner.OUTPUT_AT_EOW:
            parts.append(self.timestamp_combiner.name)
        if self.allowed_lateness_us:
            parts.append(f"allowed_lateness={self.allowed_lateness_us / 1e6:g}s")
        if self.evictor is not None:
            parts.append(f"evictor={self.evictor!r}")
        return ", ".join(parts)


DEFAULT_WINDOWING = WindowingStrategy()
