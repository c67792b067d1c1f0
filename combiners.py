"""Standard combiners: ``from tidal import combiners`` (Count, Mean, Top, ...)."""

from tidal.transforms.combiners import *  # noqa: F403
from tidal.transforms.combiners import __all__  # noqa: F401
