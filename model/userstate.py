"""State and timer specs for stateful DoFns (per key and window).

>>> from tidal.model.dofn import DoFn
>>> class CountPerKey(DoFn):
...     COUNT = CombiningValueStateSpec("count", combine_fn=sum)
...     def process(self, kv, count=DoFn.StateParam(COUNT)):
...         count.add(1)
...         yield kv[0], count.read()
"""

from __future__ import annotations

import enum
from typing import Any, Callable

__all__ = [
    "StateSpec",
    "ReadModifyWriteStateSpec",
    "BagStateSpec",
    "SetStateSpec",
    "CombiningValueStateSpec",
    "TimerSpec",
    "TimeDomain",
    "on_timer",
]


class StateSpec:
    """Declares one named cell of per-key, per-window state."""

    def __init__(self, name: str, coder: Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a state spec needs a non-empty name, got {name!r}")
        self.name = name
        self.coder = coder

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ReadModifyWriteStateSpec(StateSpec):
    """A single value: ``read()``, ``write(v)``, ``clear()``."""


class BagStateSpec(StateSpec):
    """An append-only bag: ``add(v)``, ``read()``, ``clear()``."""


class SetStateSpec(StateSpec):
    """A set: ``add(v)``, ``read()``, ``clear()``."""


class CombiningValueStateSpec(StateSpec):
    """A value combined with a CombineFn (or callable such as ``sum``): ``add``, ``read``, ``clear``."""

    def __init__(self, name: str, coder: Any = None, combine_fn: Any = None) -> None:
        from tidal.model.combinefn import CombineFn

        if combine_fn is None:
            if coder is not None and (callable(coder) or isinstance(coder, CombineFn)):
                # Beam allows CombiningValueStateSpec(name, combine_fn) positionally.
                coder, combine_fn = None, coder
            else:
                raise ValueError(f"CombiningValueStateSpec({name!r}) needs a combine_fn")
        super().__init__(name, coder)
        self.combine_fn = CombineFn.maybe_from_callable(combine_fn)


class TimeDomain(enum.Enum):
    """The clock a timer follows: event time (watermark) or processing time."""

    WATERMARK = "WATERMARK"
    REAL_TIME = "REAL_TIME"
    # Beam's alias names.
    EVENT_TIME = "WATERMARK"
    PROCESSING_TIME = "REAL_TIME"


class TimerSpec:
    """Declares a timer; a method decorated with ``@on_timer(spec)`` handles it."""

    def __init__(self, name: str, time_domain: TimeDomain) -> None:
        if not isinstance(time_domain, TimeDomain):
            raise TypeError(f"TimerSpec({name!r}) needs a TimeDomain, got {time_domain!r}")
        self.name = name
        self.time_domain = time_domain
        self.callback: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"TimerSpec({self.name!r}, {self.time_domain.name})"


def on_timer(timer_spec: TimerSpec) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a DoFn method as the callback of ``timer_spec``."""
    if not isinstance(timer_spec, TimerSpec):
        raise TypeError(f"on_timer needs a TimerSpec, got {timer_spec!r}")

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        method._tidal_timer_spec = timer_spec  # type: ignore[attr-defined]
        return method

    return decorate
