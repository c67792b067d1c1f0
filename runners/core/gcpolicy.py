"""A garbage-collector policy for the hot loop.

CPython's cyclic collector scans the young generation every 700 container
allocations and, as a pipeline's buffers grow, repeatedly scans the whole
heap; on per-element tuples that costs several times the work itself.
Bundles of windowed values are acyclic, so runners move the objects that
exist when a run starts out of the collector's view (``gc.freeze``) and
collect young objects in bigger, rarer batches. The previous settings come
back when the run ends.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

__all__ = ["throughput_gc"]

_depth = [0]


@contextlib.contextmanager
def throughput_gc(gen0: int = 100_000, gen1: int = 50, gen2: int = 1_000) -> Iterator[None]:
    """Raise the collector's thresholds (and freeze existing objects) for the block."""
    _depth[0] += 1
    if _depth[0] > 1:  # nested runs share the outer policy
        try:
            yield
        finally:
            _depth[0] -= 1
        return
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(gen0, gen1, gen2)
    try:
        yield
    finally:
        _depth[0] -= 1
        gc.set_threshold(*previous)
        gc.unfreeze()
