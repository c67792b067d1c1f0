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

__all__ = ["throughput_gc", "promote_young"]

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


def promote_young() -> None:
    """Move every young object to the oldest generation without scanning it (inside :func:`throughput_gc`).

    A firing builds millions of acyclic panes with the collector off; switched
    back on, its next young collection would traverse every one of them while
    they wait to be emitted. Frozen and unfrozen at once, they join the oldest
    generation instead, which a full collection still reaches (so cyclic
    garbage among them is found later, not never). Outside a run's policy the
    frozen set is the application's, and nothing is moved.

    >>> import gc
    >>> with throughput_gc():
    ...     young = [[i] for i in range(1000)]
    ...     promote_young()
    ...     gc.get_count()[0] < 1000
    True
    """
    if _depth[0]:
        gc.freeze()
        gc.unfreeze()
