"""The transform library, at Beam's path ``apache_beam.transforms``.

Its modules follow Beam's: :mod:`~tidal.transforms.core` (Create, Map, ParDo,
GroupByKey, ...), :mod:`~tidal.transforms.util` (Keys, Reshuffle,
CoGroupByKey, ...), :mod:`~tidal.transforms.combiners`,
:mod:`~tidal.transforms.window`, :mod:`~tidal.transforms.join`, :mod:`~tidal.transforms.trigger`,
:mod:`~tidal.transforms.userstate`, :mod:`~tidal.transforms.timeutil` and
:mod:`~tidal.transforms.ptransform`. As in Beam, the names of core, util and
ptransform are also importable from this package itself.
"""

from tidal.transforms import combiners, join, ptransform, timeutil, trigger, userstate, window
from tidal.transforms.core import *  # noqa: F403
from tidal.transforms.core import __all__ as _core_all
from tidal.transforms.ptransform import PTransform, ptransform_fn
from tidal.transforms.timeutil import TimeDomain
from tidal.transforms.util import *  # noqa: F403
from tidal.transforms.util import __all__ as _util_all

__all__ = [
    *_core_all, *_util_all, "PTransform", "ptransform_fn", "TimeDomain",
    "combiners", "join", "ptransform", "timeutil", "trigger", "userstate", "window",
]
