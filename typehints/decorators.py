"""Type-hint decorators and TypeCheckError at Beam's path ``apache_beam.typehints.decorators``."""

from tidal.model.typehints import IOTypeHints, TypeCheckError, with_input_types, with_output_types

__all__ = ["IOTypeHints", "TypeCheckError", "with_input_types", "with_output_types"]
