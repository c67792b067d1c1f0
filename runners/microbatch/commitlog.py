"""The commit log: one record per batch, written before the batch's results are emitted.

A record holds where every source stood when the batch began and where the
batch ends (offsets, watermarks), the processing time, and a pickle of the
operators' state at the start of the batch. A restarted pipeline restores
that state and re-reads exactly the same batch, then carries on.

Each batch is two files in the log directory, both written atomically
(temporary file, then ``os.replace``): ``batch-<n>.state.pkl`` first, then
``batch-<n>.json``, whose presence commits the batch.

>>> import tempfile
>>> log = CommitLog(tempfile.mkdtemp())
>>> log.write(0, {"sources": {}}, {"ops": []})
>>> log.last()[0]["batch"], log.last()[1]
(0, {'ops': []})
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import cloudpickle

__all__ = ["CommitLog"]

_RECORD = re.compile(r"batch-(\d+)\.json$")


class CommitLog:
    """A directory of batch records; keeps the state pickles of the last ``retain`` batches."""

    def __init__(self, directory: str | os.PathLike[str], retain: int = 2) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retain = max(1, retain)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def write(self, index: int, record: dict[str, Any], state: Any) -> None:
        """Commit batch ``index``: its state at the start of the batch, then its record."""
        self._write_atomic(self.directory / f"batch-{index:09d}.state.pkl", cloudpickle.dumps(state))
        body = dict(record, batch=index)
        self._write_atomic(self.directory / f"batch-{index:09d}.json", json.dumps(body, sort_keys=True, default=repr).encode())
        stale = index - self.retain
        if stale >= 0:
            old = self.directory / f"batch-{stale:09d}.state.pkl"
            if old.exists():
                old.unlink()

    def indices(self) -> list[int]:
        """The committed batch numbers, oldest first."""
        found = (_RECORD.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def record(self, index: int) -> dict[str, Any]:
        return json.loads((self.directory / f"batch-{index:09d}.json").read_text())  # type: ignore[no-any-return]

    def last(self) -> tuple[dict[str, Any], Any] | None:
        """The newest committed record and its state, or None for an empty log."""
        indices = self.indices()
        if not indices:
            return None
        index = indices[-1]
        with open(self.directory / f"batch-{index:09d}.state.pkl", "rb") as f:
            state = pickle.load(f)
        return self.record(index), state
