"""The DoFns the harness adds to case pipelines: a recording sink and an injected failure.

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

import os
import pickle
import uuid
from typing import Any, Callable, Iterable

from tidal.model.dofn import DoFn

__all__ = ["RecordTo", "FailOnce", "InjectedFailure", "read_records"]


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
