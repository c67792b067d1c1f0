"""Coders at Beam's path ``apache_beam.coders``: the Coder classes and ``coders.registry``.

>>> from tidal import coders
>>> coders.StrUtf8Coder().encode("é")
b'\\xc3\\xa9'
"""

from tidal.coders.coders import *  # noqa: F403
from tidal.coders.coders import __all__ as _coders_all
from tidal.coders.typecoders import registry

__all__ = [*_coders_all, "registry"]
