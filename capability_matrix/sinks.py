"""The DoFns the harness adds to case pipelines: a recording sink and injected failures.

Both talk to the harness through files, so they work the same on every
runner, in this process or in worker processes on the same machine.

>>> import tempfile, tidal as td
>>> folder = tempfile.mkdtemp()
>>> with td.Pipeline() as p:
...     _ = p | td.Create(["a"]) | td.ParDo(RecordTo(folder, ("value", "window")))
>>> read_records(folder)
[('a', GlobalWindow)]
"""

from __future__ import annotations

import glob
import os
import pickle
import time
import uuid
from typing import Any, Callable, Iterable

from tidal.model.dofn import DoFn

__all__ = ["RecordTo", "RecordValues", "recorder", "FailOnce", "FailAfterCheckpoint", "InjectedFailure", "read_records", "has_complete_checkpoint"]


class RecordTo(DoFn):
    """Writes the observed fields of every element to ``folder`` (one pickle file per bundle).

    A bundle's records are written when the bundle finishes, atomically, so a
    bundle that fails half-way leaves nothing behind (as a transactional sink would).
    """

    #: Written before each file name, so several kinds of recorder can share a folder.
    file_prefix = ""

    def __init__(self, folder: str, observe: tuple[str, ...]) -> None:
        self.folder = folder
        self.observe = tuple(observe)
        self._buffer: list[Any] = []
        self._prefix = ""
        self._seq = 0

    def setup(self) -> None:
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"

    def start_bundle(self) -> None:
        self._buffer = []

    def process(
        self,
        element: Any,
        timestamp: Any = DoFn.TimestampParam,
        window: Any = DoFn.WindowParam,
        pane: Any = DoFn.PaneInfoParam,
    ) -> Iterable[Any]:
        if self.observe == ("value",):
            self._buffer.append(element)
        else:
            fields = {"value": element, "window": window, "timestamp": timestamp, "pane": pane}
            self._buffer.append(tuple(fields[f] for f in self.observe))
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
        path = os.path.join(self.folder, f"{self.file_prefix}{self._prefix}-{self._seq:06d}.pkl")
        with open(path + ".tmp", "wb") as f:
            pickle.dump(self._buffer, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".tmp", path)
        self._buffer = []


class RecordValues(RecordTo):
    """A :class:`RecordTo` that observes the values alone: its ``process`` takes the element only,
    so the runner passes no timestamp, window or pane it would not read.

    >>> import tempfile, tidal as td
    >>> folder = tempfile.mkdtemp()
    >>> with td.Pipeline() as p:
    ...     _ = p | td.Create(["a", "b"]) | td.ParDo(RecordValues(folder))
    >>> sorted(read_records(folder))
    ['a', 'b']
    """

    def __init__(self, folder: str) -> None:
        super().__init__(folder, ("value",))

    def process(self, element: Any) -> Iterable[Any]:  # type: ignore[override]
        self._buffer.append(element)
        return ()


def recorder(folder: str, observe: tuple[str, ...]) -> RecordTo:
    """The recording sink for ``observe``: :class:`RecordValues` for the values alone.

    >>> type(recorder("out", ("value",))).__name__, type(recorder("out", ("value", "window"))).__name__
    ('RecordValues', 'RecordTo')
    """
    return RecordValues(folder) if tuple(observe) == ("value",) else RecordTo(folder, observe)


def read_records(folder: str | os.PathLike[str], file_prefix: str = "") -> list[Any]:
    """Every record the RecordTo sinks (with ``file_prefix``) wrote to ``folder``."""
    records: list[Any] = []
    if not os.path.isdir(folder):
        return records
    for name in sorted(os.listdir(folder)):
        if name.startswith(file_prefix) and name.endswith(".pkl"):
            with open(os.path.join(folder, name), "rb") as f:
                records.extend(pickle.load(f))
    return records


class InjectedFailure(RuntimeError):
    """The failure a FailOnce step raises on purpose."""


class FailOnce(DoFn):
    """Passes elements through; raises InjectedFailure on the first matching one while armed.

    The marker file arms it; the worker that raises removes the marker first,
    so the failure happens once however often the element is replayed.
    """

    def __init__(self, marker: str, predicate: Callable[[Any], bool]) -> None:
        self.marker = marker
        self.predicate = predicate

    def process(self, element: Any) -> Iterable[Any]:
        if self.predicate(element):
            try:
                os.remove(self.marker)
            except FileNotFoundError:
                pass  # already fired: pass the element on
            else:
                raise InjectedFailure(f"injected failure on element {element!r}")
        yield element


def has_complete_checkpoint(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` (a runner's checkpoint folder) holds a complete checkpoint.

    tidal's runners keep checkpoints in a :class:`~tidal.runners.core.checkpoint.CheckpointStore`:
    the Ray runner in the folder itself, the micro-batch runner's commit log in
    ``commits/`` below it. A checkpoint is complete once its ``chk-<n>/MANIFEST.json`` exists.

    >>> import tempfile
    >>> from tidal.runners.core.checkpoint import CheckpointStore
    >>> folder = tempfile.mkdtemp()
    >>> has_complete_checkpoint(folder)
    False
    >>> store = CheckpointStore(os.path.join(folder, "commits"))
    >>> store.write_part(0, "state.pkl", b"")
    >>> store.complete(0, ["state.pkl"])
    >>> has_complete_checkpoint(folder)
    True
    """
    root = os.fspath(folder)
    return any(glob.glob(os.path.join(root, "chk-*", "MANIFEST.json")) or glob.glob(os.path.join(root, "*", "chk-*", "MANIFEST.json")))


class FailAfterCheckpoint(FailOnce):
    """FailOnce that waits for the job to have a complete checkpoint in ``checkpoints``.

    While armed and no checkpoint is complete, matching elements pass on, and
    each bundle first waits ``pace_s`` seconds, so a runner that checkpoints
    by time takes one while the input is still being read (a barrier passes
    between bundles). Once one is complete, the first matching element raises
    InjectedFailure (once), so the restarted job has a checkpoint to resume
    from: a case can then tell a restore from a rerun.
    """

    def __init__(self, marker: str, predicate: Callable[[Any], bool], checkpoints: str, pace_s: float = 0.6) -> None:
        super().__init__(marker, predicate)
        self.checkpoints = checkpoints
        self.pace_s = pace_s
        self._spent = False
        self._complete = False
        self._checked_at = 0.0

    def _armed(self) -> bool:
        if not self._spent and not os.path.exists(self.marker):
            self._spent = True  # fired (here or elsewhere): it never re-arms
        return not self._spent

    def _checkpoint_complete(self) -> bool:
        now = time.monotonic()
        if not self._complete and now - self._checked_at >= 0.01:  # a directory scan at most every 10 ms
            self._checked_at = now
            self._complete = has_complete_checkpoint(self.checkpoints)
        return self._complete

    def start_bundle(self) -> None:
        if self._armed() and not self._checkpoint_complete():
            time.sleep(self.pace_s)

    def process(self, element: Any) -> Iterable[Any]:
        if not self._spent and self.predicate(element) and self._checkpoint_complete() and self._armed():
            try:
                os.remove(self.marker)
            except FileNotFoundError:
                self._spent = True  # another worker fired it first
            else:
                self._spent = True
                raise InjectedFailure(f"injected failure on element {element!r}, after a complete checkpoint")
        yield element
