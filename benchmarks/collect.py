"""A sink that works on every runner: outputs, their timestamps and emission times, written to a folder.

Each DoFn instance writes the elements of a bundle to its own file when the
bundle finishes, so workers in other processes (Ray actors) on the same
machine hand their outputs back through the filesystem.

>>> import tempfile, tidal as td
>>> folder = tempfile.mkdtemp()
>>> with td.Pipeline() as p:
...     _ = p | td.Create([3, 1, 2]) | td.ParDo(CollectToFolder(folder))
>>> sorted(r.value for r in read_collected(folder))
[1, 2, 3]
"""

from __future__ import annotations

import time
from typing import Any, Iterable, NamedTuple

import tidal as td
from tidal.capability_matrix.sinks import RecordTo, read_records

__all__ = ["CollectToFolder", "Collected", "read_collected"]


class Collected(NamedTuple):
    """One output element: its value, event timestamp (µs) and the wall time it reached the sink."""

    value: Any
    timestamp_us: int
    emitted_at: float


class CollectToFolder(RecordTo):
    """Records every element it sees into ``folder`` (one pickle file per bundle, as RecordTo)."""

    file_prefix = "out-"

    def __init__(self, folder: str) -> None:
        super().__init__(folder, ("value", "timestamp"))

    def process(self, element: Any, t: Any = td.DoFn.TimestampParam) -> Iterable[Any]:  # type: ignore[override]
        self._buffer.append((element, t.micros, time.time()))
        return ()


def read_collected(folder: str) -> list[Collected]:
    """Everything the sinks wrote to ``folder``, in emission order."""
    rows = [Collected(*r) for r in read_records(folder, CollectToFolder.file_prefix)]
    rows.sort(key=lambda r: r.emitted_at)
    return rows
