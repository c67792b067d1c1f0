"""Time domains at Beam's path ``apache_beam.transforms.timeutil``."""

from tidal.model.userstate import TimeDomain

__all__ = ["TimeDomain"]
