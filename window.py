"""Windowing: ``from tidal import window`` as ``from apache_beam import window``; see :mod:`tidal.transforms.window`."""

from tidal.transforms.window import *  # noqa: F403
from tidal.transforms.window import __all__  # noqa: F401
