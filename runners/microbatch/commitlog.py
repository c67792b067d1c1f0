"""The commit log: each batch's source range written ahead, and the state after it committed.

As in Spark Structured Streaming, a batch leaves two records in the log folder:

``offsets/batch-<n>.json``
    Written before batch ``n`` is processed: where every source starts and
    ends (offset, watermark, done) and how many records the batch holds. A
    restart that finds no commit for the batch replays exactly this range,
    so the batch is cut the same way the second time.

``commits/chk-<n>/``
    Written after batch ``n`` has run and the transactional sinks have staged
    its output: a checkpoint of :class:`~tidal.runners.core.checkpoint.CheckpointStore`
    whose one part, ``state.pkl``, holds the operators' state, the sinks'
    staged handles and the source positions after the batch. Its manifest
    (with the part's SHA-256) commits the batch; the sinks publish after it.

A restart restores the newest intact commit (a partial or damaged one is
skipped for the one before it with a ``CheckpointWarning`` that says why),
publishes what that commit staged once more (publishing is idempotent), and
replays the batches written ahead after it. The log keeps the newest
``retain`` commits and the offsets from the oldest of them on.

A crash while committing leaves a partial commit whose output was never
published, so skipping it keeps the output exactly once. A commit damaged on
disk after its output was published is different: the batch is replayed
from the commit before it (or from the beginning, when no intact commit is
left), so the restart first asks the sinks to withdraw what later commits
published (``abort_after``; WriteToText removes those files), and the replay
publishes it once more.

>>> import tempfile
>>> log = CommitLog(tempfile.mkdtemp())
>>> log.write_ahead(0, {"start": {}, "end": {}, "records": 0})
>>> log.commit(0, {"ops": []}, {"records": 0})
>>> index, meta, state = log.latest()
>>> index, meta["records"], state
(0, 0, {'ops': []})
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import cloudpickle

from tidal.runners.core.checkpoint import CheckpointError, CheckpointStore, encode_part

__all__ = ["CommitLog"]

_OFFSETS = re.compile(r"^batch-(\d+)\.json$")
#: The one part of a commit's checkpoint.
STATE_PART = "state.pkl"


class CommitLog:
    """A folder of batch offsets (written ahead) and batch commits (state after the batch).

    ``retain`` commits are kept, at least two, so that a damaged newest
    commit has one before it to fall back to.
    """

    def __init__(self, directory: str | os.PathLike[str], retain: int = 2, key: str | bytes | None = None) -> None:
        self.directory = Path(directory)
        self.offsets_dir = self.directory / "offsets"
        try:
            self.offsets_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"the commit log folder {self.directory} cannot be created: {exc.strerror or exc}") from exc
        #: ``key`` (else ``$TIDAL_CHECKPOINT_KEY``) signs each commit's manifest; see the checkpoint module.
        self.commits = CheckpointStore(self.directory / "commits", retain=max(2, retain), key=key)

    def check_writable(self) -> None:
        """Raise :class:`~tidal.runners.core.checkpoint.CheckpointError`, naming the folder, unless it can be written."""
        try:
            fd, probe = tempfile.mkstemp(dir=self.offsets_dir, prefix=".tidal-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise CheckpointError(f"the commit log folder {self.directory} is not writable: {exc.strerror or exc}") from exc
        self.commits.check_writable()

    def finished(self) -> bool:
        """Whether the newest intact commit is the end of the input (the job had finished)."""
        checkpoint = self.commits.latest()
        return checkpoint is not None and checkpoint.final

    # -- offsets: written before a batch runs -----------------------------------------
    def _offsets_path(self, index: int) -> Path:
        return self.offsets_dir / f"batch-{index:09d}.json"

    def write_ahead(self, index: int, record: dict[str, Any]) -> None:
        """Record batch ``index``'s source range (``start``, ``end``, ``records``) before it runs."""
        body = json.dumps(dict(record, batch=index), sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(dir=self.offsets_dir, prefix=".batch-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._offsets_path(index))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def planned_indices(self) -> list[int]:
        """The batches whose source range was written ahead (and is still kept), oldest first."""
        found = (_OFFSETS.match(p.name) for p in self.offsets_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def planned(self, index: int) -> dict[str, Any]:
        """The source range written ahead for batch ``index``."""
        return json.loads(self._offsets_path(index).read_text())  # type: ignore[no-any-return]

    # -- commits: written after a batch ran ---------------------------------------------
    def commit(self, index: int, state: Any, meta: dict[str, Any]) -> None:
        """Commit batch ``index`` with ``state`` (the state after it); older records expire."""
        self.commits.write_part(index, STATE_PART, encode_part(cloudpickle.dumps(state), state.get("needs", []) if isinstance(state, dict) else []))
        self.commits.complete(index, [STATE_PART], meta=dict(meta, batch=index))
        kept = self.commits.ids()
        oldest = min(kept) if kept else index
        for planned in self.planned_indices():
            if planned >= oldest:
                break
            self._offsets_path(planned).unlink(missing_ok=True)

    def committed_indices(self) -> list[int]:
        """Every commit present, intact or not, oldest first."""
        return self.commits.ids()

    def latest(self) -> tuple[int, dict[str, Any], Any] | None:
        """The newest intact commit as (batch, meta, state); None when there is none.

        Partial or damaged commits are skipped with a ``CheckpointWarning``.
        """
        checkpoint = self.commits.latest()
        if checkpoint is None:
            return None
        return checkpoint.id, checkpoint.meta, checkpoint.read_state(STATE_PART)

    def __repr__(self) -> str:
        return f"CommitLog({str(self.directory)!r})"
