"""Triggers, accumulation modes and pane info: when in processing time panes fire.

These classes only describe a trigger; the one state machine that runs them
lives in ``tidal.runners.core``, so every runner fires the same panes.

>>> AfterWatermark(early=AfterCount(2))
AfterWatermark(early=AfterCount(2), late=None)
>>> Repeatedly(AfterCount(3)).may_finish()
False
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from tidal.model.time import DurationLike, duration_to_micros

__all__ = [
    "AccumulationMode",
    "Trigger",
    "DefaultTrigger",
    "AfterWatermark",
    "AfterProcessingTime",
    "AfterCount",
    "Repeatedly",
    "AfterAny",
    "AfterAll",
    "AfterEach",
    "OrFinally",
    "Always",
    "Never",
    "PaneInfo",
    "PaneInfoTiming",
]


class AccumulationMode(enum.Enum):
    """How a pane relates to the earlier panes of its window."""

    DISCARDING = 1
    ACCUMULATING = 2


class PaneInfoTiming(enum.IntEnum):
    """Where a pane fired relative to the watermark (see :class:`PaneInfo`).

    EARLY: the watermark had not passed the window's max timestamp. ON_TIME:
    the one pane the watermark fired by passing it. LATE: any other pane after
    the watermark passed it. UNKNOWN: the element has not been through a
    trigger firing.
    """

    EARLY = 0
    ON_TIME = 1
    LATE = 2
    UNKNOWN = 3


@attrs.frozen(repr=False)
class PaneInfo:
    """Which firing of its window a pane is, and when it fired relative to the watermark.

    A DoFn after a GroupByKey or CombinePerKey reads it with
    ``DoFn.PaneInfoParam``. The rules are Beam's:

    * ``timing`` is EARLY while the input watermark has not passed the
      window's ``max_timestamp()``. It is ON_TIME only for the firing the
      watermark causes by passing it (the end-of-window firing; for a window
      whose end-of-window firing found nothing to fire, the firing at its
      expiry), and at most once per window. Every other firing after the
      watermark passed the window is LATE, including a window's first firing
      when late data caused it (an element count, a processing-time delay),
      and every pane of a window that late data opened behind the watermark.
    * ``index`` counts the window's earlier firings (0 for the first);
      ``is_first`` is ``index == 0``.
    * ``nonspeculative_index`` counts the window's earlier non-early firings
      (the ON_TIME pane has 0, the LATE panes after it 1, 2, ...); it is -1
      for an EARLY pane.
    * ``is_last``: the trigger finished with this firing, or the window
      expired with it (no later pane will come).
    * Merging windows (Sessions, custom merging WindowFns): the merged window
      is a new window, so its panes count again from index 0 (``is_first``)
      and its ``nonspeculative_index`` starts at 0. Its elements, trigger
      state and watermark holds are merged; its pane history is not.

    >>> PaneInfo(True, False, PaneInfoTiming.EARLY, 0, -1)
    PaneInfo(first: True, last: False, timing: EARLY, index: 0, nonspeculative_index: -1)
    """

    is_first: bool
    is_last: bool
    timing: PaneInfoTiming
    index: int
    nonspeculative_index: int

    def __repr__(self) -> str:
        return (
            f"PaneInfo(first: {self.is_first}, last: {self.is_last}, timing: {self.timing.name}, "
            f"index: {self.index}, nonspeculative_index: {self.nonspeculative_index})"
        )


#: The pane of an element that has not been through a trigger firing.
PANE_INFO_UNKNOWN = PaneInfo(True, True, PaneInfoTiming.UNKNOWN, 0, 0)
__all__ += ["PANE_INFO_UNKNOWN"]


class Trigger:
    """Base class of trigger descriptions."""

    def may_finish(self) -> bool:
        """Whether this trigger can ever finish (close its window before expiry)."""
        return True

    def _subtriggers(self) -> tuple["Trigger", ...]:
        return ()

    def uses_processing_time(self) -> bool:
        """Whether some part of this trigger fires on processing time."""
        return any(t.uses_processing_time() for t in self._subtriggers())


@attrs.frozen
class DefaultTrigger(Trigger):
    """Repeatedly(AfterWatermark()): fire once on time, then once per late batch.

    The watermark fires the ON_TIME pane; each bundle of late data within the
    allowed lateness fires a LATE pane. A window that only late data opened
    (the watermark had already passed its end) has LATE panes only.
    """

    def may_finish(self) -> bool:
        return False


@attrs.frozen
class AfterWatermark(Trigger):
    """Fire when the watermark passes the end of the window.

    ``early`` fires (repeatedly) before that, ``late`` (repeatedly) after it.
    Without ``late`` the trigger finishes at the on-time firing. The firing
    the watermark causes is the ON_TIME pane (even empty, with DISCARDING,
    after early panes took everything); the ``early`` panes are EARLY and the
    ``late`` ones LATE (see :class:`PaneInfo`).
    """

    early: Trigger | None = None
    late: Trigger | None = None

    def may_finish(self) -> bool:
        return self.late is None

    def _subtriggers(self) -> tuple[Trigger, ...]:
        return tuple(t for t in (self.early, self.late) if t is not None)


def _delay_micros(value: DurationLike) -> int:
    micros = duration_to_micros(value, "AfterProcessingTime delay")
    if micros < 0:
        raise ValueError(f"AfterProcessingTime delay must not be negative, got {value!r}")
    return micros


@attrs.frozen
class AfterProcessingTime(Trigger):
    """Fire ``delay`` seconds of processing time after the pane's first element."""

    delay_us: int = attrs.field(default=0, converter=_delay_micros, alias="delay")

    @property
    def delay(self) -> float:
        return self.delay_us / 1_000_000

    def uses_processing_time(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"AfterProcessingTime({self.delay_us / 1e6:g})"


def _positive_count(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"AfterCount needs a positive element count, got {value!r}")
    return value


@attrs.frozen
class AfterCount(Trigger):
    """Fire once the pane holds at least ``count`` elements."""

    count: int = attrs.field(converter=_positive_count)

    def __repr__(self) -> str:
        return f"AfterCount({self.count})"


@attrs.frozen
class Repeatedly(Trigger):
    """Fire whenever ``underlying`` fires, restarting it each time; never finishes."""

    underlying: Trigger

    def may_finish(self) -> bool:
        return False

    def _subtriggers(self) -> tuple[Trigger, ...]:
        return (self.underlying,)


def _trigger_tuple(triggers: tuple[Trigger, ...]) -> tuple[Trigger, ...]:
    for t in triggers:
        if not isinstance(t, Trigger):
            raise TypeError(f"expected a Trigger, got {t!r}")
    if not triggers:
        raise ValueError("a composite trigger needs at least one sub-trigger")
    return tuple(triggers)


class _Composite(Trigger):
    triggers: tuple[Trigger, ...]

    def __init__(self, *triggers: Trigger) -> None:
        self.__attrs_init__(_trigger_tuple(triggers))  # type: ignore[attr-defined]

    def _subtriggers(self) -> tuple[Trigger, ...]:
        return self.triggers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.triggers))})"


@attrs.frozen(init=False, repr=False)
class AfterAny(_Composite):
    """Fire (and finish) when any sub-trigger fires."""

    triggers: tuple[Trigger, ...]

    def may_finish(self) -> bool:
        return any(t.may_finish() for t in self.triggers)


@attrs.frozen(init=False, repr=False)
class AfterAll(_Composite):
    """Fire (and finish) when every sub-trigger has fired."""

    triggers: tuple[Trigger, ...]

    def may_finish(self) -> bool:
        return all(t.may_finish() for t in self.triggers)


@attrs.frozen(init=False, repr=False)
class AfterEach(_Composite):
    """Run the sub-triggers one after another; finish when the last one does."""

    triggers: tuple[Trigger, ...]

    def may_finish(self) -> bool:
        return self.triggers[-1].may_finish()


@attrs.frozen
class OrFinally(Trigger):
    """Fire as ``trigger`` until ``until`` fires; then fire once more and finish."""

    trigger: Trigger
    until: Trigger

    def _subtriggers(self) -> tuple[Trigger, ...]:
        return (self.trigger, self.until)


@attrs.frozen
class Always(Trigger):
    """Fire after every element (Repeatedly(AfterCount(1)))."""

    def may_finish(self) -> bool:
        return False


@attrs.frozen
class Never(Trigger):
    """Never fire, except the final pane when the window expires."""

    def may_finish(self) -> bool:
        return False


def is_default_trigger(trigger: Any) -> bool:
    """True for DefaultTrigger and its spelled-out form Repeatedly(AfterWatermark())."""
    return isinstance(trigger, DefaultTrigger) or trigger == Repeatedly(AfterWatermark())


__all__ += ["is_default_trigger"]
