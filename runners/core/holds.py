"""Watermark holds: the earliest of many changing holds in O(log n), for a grouping step's output watermark.

A grouping step holds its output watermark back to the earliest timestamp a
pending pane will carry: with the timestamp combiners OUTPUT_AT_EARLIEST and
OUTPUT_AT_LATEST each (key, window) holds at its own time, and a count or
delta window's key holds at its earliest buffered element. Scanning every
owner's hold at every watermark move costs as much as the state is big (and
on the disk backend reads it all back); :class:`HoldIndex` keeps the holds in
a priority queue instead, a heapq list or, on the disk backend, a
:class:`~tidal.runners.core.statebackend.SpilledHeap`.

An owner's new hold is pushed as an entry ``(hold, 0, seq, owner)``; its
older entries stay in the queue and are dropped lazily, when one reaches the
front and no longer equals the owner's current hold (which the index asks
its ``current`` function for). So the front entry that survives is the
earliest current hold. When the queue grows past twice the number of owners
it is compacted: the entries no longer current are dropped at once.

>>> holds = {"a": 5, "b": 3}
>>> index = HoldIndex(holds.get)
>>> index.note("a", 5); index.note("b", 3)
>>> index.earliest(len(holds))
3
>>> holds["b"] = 9; index.note("b", 9)   # b's old entry (3) is now stale
>>> index.earliest(len(holds))
5
>>> del holds["a"]
>>> index.earliest(len(holds)), len(index)
(9, 1)
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, Iterable

from tidal.runners.core.statebackend import heap_popper, heap_push

__all__ = ["HoldIndex"]

#: Entries a queue may hold beyond twice its owners before it is compacted.
_SLACK = 1024


class HoldIndex:
    """The earliest current hold of many owners, kept in a priority queue with lazy deletion.

    ``current(owner)`` gives an owner's hold now (None when it holds nothing
    or no longer exists); ``heap`` is the queue to keep the entries in (a new
    list when None; a SpilledHeap on the disk backend).
    """

    def __init__(self, current: Callable[[Any], int | None], heap: Any = None) -> None:
        self._current = current
        self._heap: Any = [] if heap is None else heap
        self._seq = itertools.count()
        self._compact_at = _SLACK

    def __len__(self) -> int:
        return len(self._heap)

    def note(self, owner: Any, hold: int | None) -> None:
        """``owner`` now holds at ``hold`` (None: nothing; its old entries go stale on their own)."""
        if hold is None:
            return
        heap_push(self._heap, (hold, 0, next(self._seq), owner))

    def earliest(self, owners: int) -> int | None:
        """The earliest current hold (None when no owner holds); ``owners``: how many owners there are now."""
        heap = self._heap
        if len(heap) > 2 * owners + self._compact_at:
            self._compact()
            heap = self._heap
        current = self._current
        pop = heap_popper(heap)
        while heap:
            entry = heap[0]
            if current(entry[3]) == entry[0]:
                return entry[0]  # type: ignore[no-any-return]
            pop(heap)
        return None

    def _compact(self) -> None:
        """Drop every entry that is no longer its owner's current hold."""
        current = self._current
        heap = self._heap
        if type(heap) is list:
            heap = self._heap = [entry for entry in heap if current(entry[3]) == entry[0]]
            heapq.heapify(heap)
        else:
            heap.retain(lambda entry: current(entry[3]) == entry[0])
        # Entries of owners whose hold came back to an earlier value stay current: never compact
        # again before the queue has doubled, so compaction costs O(1) per entry pushed.
        self._compact_at = max(_SLACK, len(heap))

    def reset(self, holds: Iterable[tuple[Any, int | None]]) -> None:
        """Index exactly ``holds`` (owner, hold) pairs, dropping every entry before (after a restore)."""
        self._heap.clear()
        self._seq = itertools.count()
        for owner, hold in holds:
            self.note(owner, hold)
        self._compact_at = _SLACK
