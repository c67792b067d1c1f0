"""The coder registry at Beam's path ``apache_beam.coders.typecoders``."""

from tidal.model.coders import CoderRegistry, registry

__all__ = ["CoderRegistry", "registry"]
