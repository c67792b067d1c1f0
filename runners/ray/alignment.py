"""AlignmentBuffer: what a worker holds back while it aligns checkpoint barriers, bounded in memory.

While a worker waits for barrier ``n`` on its other input channels, the calls
(bundles, watermarks, later barriers) that come on a channel whose barrier
already came must wait. They are pickled as they come and kept in memory up
to ``max_bytes``; beyond that they go to a spill file on local disk, so a
slow channel never makes the worker's memory grow with what the fast ones
send. :meth:`release` hands them back in arrival order.

>>> buf = AlignmentBuffer(max_bytes=64)
>>> buf.hold(("push", "e", 0, list(range(100))))   # too big for memory: spilled
>>> buf.hold(("watermark", "e", 0, 5, 0))
>>> [call[0] for call in buf.release()]
['push', 'watermark']
>>> buf.spilled_bytes > 0, buf.peak_bytes <= 64
(True, True)
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import IO, Any, Iterator

from tidal.runners.ray.exchange import pack_bundle

__all__ = ["AlignmentBuffer", "DEFAULT_ALIGNMENT_BUFFER_BYTES"]

#: What a worker keeps in memory while aligning, unless the runner says otherwise.
DEFAULT_ALIGNMENT_BUFFER_BYTES = 64 * 1024 * 1024


class AlignmentBuffer:
    """Held calls in arrival order: in memory up to ``max_bytes`` (pickled), spilled to disk beyond."""

    def __init__(self, max_bytes: int = DEFAULT_ALIGNMENT_BUFFER_BYTES, spill_dir: str | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"the alignment buffer needs max_bytes >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.spill_dir = spill_dir
        #: In order: pickled calls held in memory, or (offset, length) in the spill file.
        self._entries: list[bytes | tuple[int, int]] = []
        self._in_memory = 0
        self._file: IO[bytes] | None = None
        self._end = 0
        #: The most bytes ever held in memory at once, and the bytes written to disk, since creation.
        self.peak_bytes = 0
        self.spilled_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def hold(self, call: tuple[Any, ...]) -> None:
        """Keep ``call`` (a method name and its arguments) until :meth:`release`."""
        blob = pack_bundle(call)  # pickle, or cloudpickle for what pickle writes only by value
        if self._in_memory + len(blob) <= self.max_bytes:
            self._entries.append(blob)
            self._in_memory += len(blob)
            self.peak_bytes = max(self.peak_bytes, self._in_memory)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="tidal-alignment-", dir=self.spill_dir)
        self._file.seek(self._end)
        self._file.write(blob)
        self._entries.append((self._end, len(blob)))
        self._end += len(blob)
        self.spilled_bytes += len(blob)

    def release(self) -> Iterator[tuple[Any, ...]]:
        """Every held call, oldest first; the buffer is empty (and may hold again) at once."""
        entries, spill = self._entries, self._file
        self._entries, self._in_memory, self._file, self._end = [], 0, None, 0
        return self._replay(entries, spill)

    @staticmethod
    def _replay(entries: list[bytes | tuple[int, int]], spill: IO[bytes] | None) -> Iterator[tuple[Any, ...]]:
        try:
            for entry in entries:
                if isinstance(entry, bytes):
                    yield pickle.loads(entry)
                else:
                    assert spill is not None
                    offset, length = entry
                    spill.seek(offset)
                    yield pickle.loads(spill.read(length))
        finally:
            if spill is not None:
                spill.close()

    def close(self) -> None:
        """Drop what is held (a job that ends mid-alignment) and its spill file."""
        if self._file is not None:
            self._file.close()
        self._entries, self._in_memory, self._file, self._end = [], 0, None, 0

    def stats(self) -> dict[str, int]:
        return {"peak_held_bytes": self.peak_bytes, "spilled_bytes": self.spilled_bytes}


def spill_folder() -> str | None:
    """Where spill files go: ``TIDAL_SPILL_DIR`` when set, else the system's temporary folder."""
    folder = os.environ.get("TIDAL_SPILL_DIR")
    return folder or None
