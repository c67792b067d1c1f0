"""Templated option values at Beam's path ``apache_beam.options.value_provider``."""

from tidal.model.options import RuntimeValueProvider, StaticValueProvider, ValueProvider

__all__ = ["RuntimeValueProvider", "StaticValueProvider", "ValueProvider"]
