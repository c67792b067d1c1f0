"""User state and timers at Beam's path ``apache_beam.transforms.userstate``.

>>> from tidal.transforms.userstate import BagStateSpec, TimerSpec, on_timer
>>> from tidal.transforms.timeutil import TimeDomain
>>> TimerSpec("flush", TimeDomain.WATERMARK).name
'flush'
"""

from tidal.model.userstate import (
    BagStateSpec,
    CombiningValueStateSpec,
    ReadModifyWriteStateSpec,
    SetStateSpec,
    StateSpec,
    TimeDomain,
    TimerSpec,
    on_timer,
)

__all__ = [
    "BagStateSpec", "CombiningValueStateSpec", "ReadModifyWriteStateSpec", "SetStateSpec",
    "StateSpec", "TimeDomain", "TimerSpec", "on_timer",
]
