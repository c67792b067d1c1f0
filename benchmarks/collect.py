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

import os
import pickle
import time
import uuid
from typing import Any, Iterable, NamedTuple

import tidal as td

__all__ = ["CollectToFolder", "Collected", "read_collected"]


class Collected(NamedTuple):
    """One output element: its value, event timestamp (µs) and the wall time it reached the sink."""

    value: Any
    timestamp_us: int
    emitted_at: float


class CollectToFolder(td.DoFn):
    """Records every element it sees into ``folder`` (one pickle file per bundle)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._buffer: list[tuple[Any, int, float]] = []
        self._prefix = ""
        self._seq = 0

    def setup(self) -> None:
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, element: Any, t: Any = td.DoFn.TimestampParam) -> Iterable[Any]:
        self._buffer.append((element, t.micros, time.time()))
        return ()

    def finish_bundle(self) -> None:
        self._flush()

    def teardown(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if not self._prefix:
            self.setup()
        self._seq += 1
        path = os.path.join(self.folder, f"out-{self._prefix}-{self._seq}.pkl")
        with open(path + ".tmp", "wb") as f:
            pickle.dump(self._buffer, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".tmp", path)
        self._buffer = []


def read_collected(folder: str) -> list[Collected]:
    """Everything the sinks wrote to ``folder``, in emission order."""
    rows: list[Collected] = []
    for name in os.listdir(folder):
        if name.startswith("out-") and name.endswith(".pkl"):
            with open(os.path.join(folder, name), "rb") as f:
                rows.extend(Collected(*r) for r in pickle.load(f))
    rows.sort(key=lambda r: r.emitted_at)
    return rows
