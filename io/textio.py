"""Text files in and out, with exactly-once output under checkpoints.

:class:`WriteToText` is a *transactional* sink. Each worker writes the lines it
receives to a staged file in a hidden ``.tidal-staging`` folder beside the
output; when a checkpoint barrier passes, the staged file is closed and its
name recorded in the checkpoint; when the checkpoint is complete (every
worker has stored its state) the file is published by an atomic rename to
``<prefix>-<checkpoint>-<writer><suffix>``. Output written after the last complete
checkpoint is never published by a failed attempt, and a restore re-publishes
what the restored checkpoint staged (a rename that already happened is
skipped), so each element reaches the published files exactly once. Without
checkpoints (the direct runner) the files are published when the run ends.

The contract for sinks
----------------------
A DoFn is a transactional sink when it defines both of these methods; the
runners call them between bundles, on the worker that runs the DoFn:

``prepare_commit(checkpoint_id) -> handle``
    A checkpoint barrier passed this step: make everything written since the
    previous call durable but not visible (flush, close, stage) and return a
    picklable *handle* that names it. The handle is stored in the checkpoint.

``commit(handle) -> None``
    The checkpoint that staged ``handle`` is complete: make it visible. It
    must be idempotent: after a failure the runner restores the checkpoint and
    calls ``commit`` again with the same handle.

Data staged after the last complete checkpoint belongs to no checkpoint and
is abandoned by a failure; the replay after the restore writes it again.

``abort_after(checkpoint_id) -> None`` (optional)
    The job was restored from ``checkpoint_id``: withdraw what was published
    for later checkpoints. That only exists when the restore skipped newer
    checkpoints (a damaged one, or an older savepoint chosen on purpose); the
    replay publishes it again, so without this it would appear twice.

A sink without these methods sees the elements after the last complete
checkpoint again when a job recovers (at-least-once output). It gets
exactly-once *results* when its writes are idempotent: keyed by something
deterministic (the key and window of a pane, say) and written as an upsert,
so a replay overwrites what the failed attempt wrote.

>>> import os, tempfile, tidal as td
>>> prefix = os.path.join(tempfile.mkdtemp(), "out")
>>> with td.Pipeline() as p:
...     _ = p | td.Create(["a", "b"]) | WriteToText(prefix, file_name_suffix=".txt")
>>> sorted(read_text(prefix + "*.txt"))
['a', 'b']
"""

from __future__ import annotations

import glob
import os
import re
import uuid
from typing import IO, Any, Callable, Iterable

from tidal.model.dofn import DoFn
from tidal.model.primitives import BoundedSource, ParDo, Read
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection

__all__ = ["WriteToText", "ReadFromText", "TextSinkFn", "TextSource", "read_text", "STAGING_DIR"]

#: The hidden folder, beside the output files, that holds staged (unpublished) files.
STAGING_DIR = ".tidal-staging"


class TextSinkFn(DoFn):
    """The transactional DoFn behind :class:`WriteToText`: one staged file per checkpoint interval."""

    #: Checkpoint numbers from this one on are written as "final" (the end of a run).
    FINAL = 1 << 62

    def __init__(self, file_path_prefix: str, file_name_suffix: str = "", formatter: Callable[[Any], str] = str) -> None:
        if not file_path_prefix:
            raise ValueError("WriteToText needs a file_path_prefix")
        self.prefix = os.path.abspath(file_path_prefix)
        self.suffix = file_name_suffix
        self.formatter = formatter
        self._writer = ""
        self._seq = 0
        self._file: IO[str] | None = None
        self._staged = ""

    @property
    def staging_folder(self) -> str:
        return os.path.join(os.path.dirname(self.prefix), STAGING_DIR)

    def setup(self) -> None:
        self._writer = uuid.uuid4().hex[:12]
        self._seq = 0
        os.makedirs(self.staging_folder, exist_ok=True)

    def process(self, element: Any) -> Iterable[Any]:
        if self._file is None:
            if not self._writer:
                self.setup()
            name = f"{os.path.basename(self.prefix)}-{self._writer}-{self._seq:05d}{self.suffix}.inprogress"
            self._staged = os.path.join(self.staging_folder, name)
            self._file = open(self._staged, "w", encoding="utf-8")
        line = self.formatter(element)
        if "\n" in line or "\r" in line:
            # A reader splits lines at "\r" as well as "\n": escape both, so one element stays one line.
            line = line.replace("\n", "\\n").replace("\r", "\\r")
        self._file.write(line + "\n")
        return ()

    def finish_bundle(self) -> None:
        if self._file is not None:
            self._file.flush()

    def prepare_commit(self, checkpoint_id: int) -> list[tuple[str, str]]:
        """Close the staged file; the handle pairs it with its published name."""
        if self._file is None:
            return []
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self._seq += 1
        epoch = "final" if checkpoint_id >= self.FINAL else f"{checkpoint_id:06d}"
        final = f"{self.prefix}-{epoch}-{self._writer}{self.suffix}"
        return [(self._staged, final)]

    def commit(self, handle: list[tuple[str, str]]) -> None:
        """Publish the staged files by rename; a file already published is left alone."""
        for staged, final in handle:
            if os.path.exists(staged):
                os.replace(staged, final)
            elif not os.path.exists(final):
                raise FileNotFoundError(
                    f"the staged output {staged} of a complete checkpoint is gone and was never "
                    f"published to {final}: the staging folder was changed while a job used it"
                )

    def abort_after(self, checkpoint_id: int) -> None:
        """Remove files published for checkpoints after ``checkpoint_id`` (the job went back to it)."""
        pattern = re.compile(re.escape(os.path.basename(self.prefix)) + r"-(\d+|final)-[0-9a-f]{12}" + re.escape(self.suffix) + "$")
        folder = os.path.dirname(self.prefix)
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            match = pattern.match(name)
            if match and (match.group(1) == "final" or int(match.group(1)) > checkpoint_id):
                try:
                    os.remove(os.path.join(folder, name))
                except FileNotFoundError:
                    pass  # another instance of the sink removed it

    def teardown(self) -> None:
        # An unpublished file stays staged: it belongs to no complete checkpoint.
        if self._file is not None:
            self._file.close()
            self._file = None


class WriteToText(PTransform):
    """Writes each element as a line (``formatter(element)``, default ``str``) to text files.

    Files are named ``<file_path_prefix>-<checkpoint>-<writer><file_name_suffix>``
    (the checkpoint is ``final`` for the end of a run without checkpoints):
    one per worker and checkpoint interval, published atomically when the
    checkpoint completes (see the module docs), so the output is exactly
    once on runners with checkpoints. Line breaks inside a line are escaped
    as ``\\n`` and ``\\r``. Returns an empty PCollection.

    >>> import os, tempfile, tidal as td
    >>> prefix = os.path.join(tempfile.mkdtemp(), "words")
    >>> with td.Pipeline() as p:
    ...     _ = p | td.Create([1, 2, 3]) | td.Map(lambda x: x * 10) | WriteToText(prefix)
    >>> sorted(read_text(prefix + "-*"), key=int)
    ['10', '20', '30']
    """

    def __init__(self, file_path_prefix: str, file_name_suffix: str = "", formatter: Callable[[Any], str] = str) -> None:
        super().__init__()
        self.fn = TextSinkFn(file_path_prefix, file_name_suffix, formatter)

    def default_label(self) -> str:
        return f"WriteToText({os.path.basename(self.fn.prefix)})"

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll | "Write" >> ParDo(self.fn)


class TextSource(BoundedSource):
    """The lines of the files matching ``file_pattern`` (without line ends), file by file in name order."""

    def __init__(self, file_pattern: str, files: list[str] | None = None) -> None:
        self.file_pattern = file_pattern
        self._files = files

    def files(self) -> list[str]:
        return self._files if self._files is not None else sorted(glob.glob(self.file_pattern))

    def read(self) -> Iterable[str]:
        for path in self.files():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    yield line.rstrip("\n")

    def split(self, desired_count: int) -> list[BoundedSource]:
        files = self.files()
        n = max(1, min(desired_count, len(files)))
        return [TextSource(self.file_pattern, files[i::n]) for i in range(n)]

    def display_name(self) -> str:
        return f"TextSource({self.file_pattern})"


class ReadFromText(PTransform):
    """Reads the lines of every file matching ``file_pattern`` (a glob), as strings.

    >>> import os, tempfile, tidal as td
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "a.txt"), "w").write("x\\ny\\n")
    >>> with td.Pipeline() as p:
    ...     lines = p | ReadFromText(os.path.join(folder, "*.txt"))
    ...     td.testing.assert_that(lines, td.testing.equal_to(["x", "y"]))
    """

    def __init__(self, file_pattern: str) -> None:
        super().__init__()
        self.file_pattern = file_pattern

    def default_label(self) -> str:
        return f"ReadFromText({os.path.basename(self.file_pattern)})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | "Read" >> Read(TextSource(self.file_pattern))


def read_text(file_pattern: str) -> list[str]:
    """Every line of the files matching ``file_pattern``, in file-name order (handy in tests)."""
    return list(TextSource(file_pattern).read())
