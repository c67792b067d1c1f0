"""The capability cases, one module per group of rows; importing this package registers them all."""

from tidal.capability_matrix.cases import beam_source, beyond, io, policy, state, state_layer, streams, what, when, where  # noqa: F401
