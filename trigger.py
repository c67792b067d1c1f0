"""Triggers: ``from tidal import trigger``; see :mod:`tidal.transforms.trigger`."""

from tidal.transforms.trigger import *  # noqa: F403
from tidal.transforms.trigger import __all__  # noqa: F401
