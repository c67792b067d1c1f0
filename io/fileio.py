"""A watched directory: files read as they appear under a glob (Beam's ``fileio.MatchContinuously``).

:class:`MatchContinuously` emits the :class:`~tidal.io.filesystems.FileMetadata`
of every new file that matches a pattern; :class:`ReadContinuously` reads
those files' records with the per-format reading layer of
:mod:`tidal.io.filebased` — text lines, CSV rows, JSON lines or Parquet rows —
as one unbounded source (Flink's continuously monitoring file source).

How it reads
------------
A thread lists the pattern every ``interval`` seconds; files it has not seen
are read in the order they were found (those found in one listing by
modification time, then path), one at a time, each to its end. A pattern
that matches nothing yet is allowed: the source waits for files. Files are
identified by path: a file is read once, and changing it afterwards does not
read it again. Write a file elsewhere and move it into the watched folder
(an atomic rename) — a file still being written when it is listed may be
read half-written.

Event time, watermark
---------------------
A record's event time is its file's modification time, or with
``timestamp_column`` that column of the record (seconds as an int or float,
or a datetime). The watermark is bounded out-of-orderness: the largest event
time read so far minus ``max_out_of_orderness``. A file whose modification
time is older than that when it appears (a copy that kept an old time) holds
late records.

Checkpoints
-----------
The reader's offset — checkpointed by the runners — holds the files already
read, in the order they were read, the file being read and how many of its
records were handed out, the record count and the largest event time. A
restored job skips the files it has read, reopens the current one and skips
the records already handed out, so nothing is lost or read twice; a replay
of a recorded range (the micro-batch runner) reads the same files in the same
order up to the recorded end. ``max_files`` ends the stream once that many
files have been read, which makes a finite job of a watched folder.

>>> import os, tempfile, tidal as td
>>> folder = tempfile.mkdtemp()
>>> for name, text in [("a.txt", "x\\ny\\n"), ("b.txt", "z\\n")]:
...     _ = open(os.path.join(folder, name), "w").write(text)
>>> with td.Pipeline() as p:
...     lines = p | ReadContinuously(os.path.join(folder, "*.txt"), "text", interval=0.05, max_files=2)
...     td.testing.assert_that(lines, td.testing.equal_to(["x", "y", "z"]))
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
from typing import Any, Callable, Iterator

from tidal.io.filebased import CsvFormat, FileFormat, JsonFormat, ParquetFormat, TextFormat
from tidal.io.filesystems import FileMetadata, FileSystems
from tidal.model.primitives import Read, UnboundedSource
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, DurationLike, duration_to_micros
from tidal.model.window import TimestampedValue

__all__ = ["MatchContinuously", "ReadContinuously", "WatchedFilesReader", "WatchedFilesSource", "FORMATS"]

#: The formats ReadContinuously reads by name, and the FileFormat each names.
FORMATS: dict[str, Callable[..., FileFormat]] = {
    "text": TextFormat,
    "csv": CsvFormat,
    "json": JsonFormat,
    "parquet": ParquetFormat,
}


class _MatchFormat(FileFormat):
    """The "format" of MatchContinuously: one record per file, its FileMetadata."""

    def read_records(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        yield FileSystems.metadata(path)

    def read_batches(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        raise TypeError("MatchContinuously emits file metadata, not Arrow batches")

    def ranges(self, meta: FileMetadata, target: int) -> list[tuple[int, int]]:
        return [(0, 1)]

    def subdivide(self, r: Any, pieces: int) -> list[Any]:
        return [r]

    def describe(self) -> str:
        return "match"


class WatchedFilesSource(UnboundedSource):
    """The records of the files that appear under ``file_pattern`` (see the module docs)."""

    def __init__(
        self,
        file_pattern: str,
        fmt: FileFormat,
        interval: DurationLike = 1.0,
        timestamp_column: str | None = None,
        max_out_of_orderness: DurationLike = 0,
        max_files: int | None = None,
        what: str = "ReadContinuously",
    ) -> None:
        if not isinstance(file_pattern, str) or not file_pattern:
            raise ValueError(f"{what} needs a file pattern (a path or a glob such as 'inbox/*.csv'), got {file_pattern!r}")
        if not isinstance(fmt, FileFormat):
            raise TypeError(f"{what} needs a FileFormat, got {fmt!r}")
        interval_us = duration_to_micros(interval, "interval")
        if interval_us <= 0:
            raise ValueError(f"{what}: interval must be a positive number of seconds, got {interval!r}")
        if timestamp_column is not None and isinstance(fmt, (TextFormat, _MatchFormat)):
            raise ValueError(
                f"{what}: timestamp_column={timestamp_column!r} needs records with columns (csv, json or parquet); "
                f"{fmt.describe()} records are stamped with their file's modification time"
            )
        if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 0):
            raise ValueError(f"{what}: max_files must be a non-negative int or None, got {max_files!r}")
        self.file_pattern = file_pattern
        self.fmt = fmt
        self.interval_s = interval_us / 1e6
        self.timestamp_column = timestamp_column
        self.out_of_orderness_us = duration_to_micros(max_out_of_orderness, "max_out_of_orderness")
        if self.out_of_orderness_us < 0:
            raise ValueError(f"{what}: max_out_of_orderness must not be negative")
        self.max_files = max_files
        self.what = what

    def open_reader(self, start_offset: Any = None) -> "WatchedFilesReader":
        return WatchedFilesReader(self, start_offset)

    def display_name(self) -> str:
        return f"{self.what}({self.file_pattern})"


class WatchedFilesReader:
    """Lists the pattern on a thread; ``poll`` reads the files one at a time (the unbounded reader contract).

    The offset is ``{"files": [paths read, in order], "current": path or None,
    "current_records": records of it handed out, "records": n, "max_ts": µs
    or None}``, JSON-serialisable.
    """

    def __init__(self, source: WatchedFilesSource, start_offset: Any = None) -> None:
        self._source = source
        offset = start_offset or {}
        self._files: list[str] = list(offset.get("files", ()))
        self._seen = set(self._files)
        self._current: str | None = offset.get("current")
        self._current_records = int(offset.get("current_records", 0))
        self._records = int(offset.get("records", 0))
        self._max_ts: int | None = offset.get("max_ts")
        self._end: dict[str, Any] | None = None
        # The file being read: its records (after those already handed out) and its modification time.
        self._it: Iterator[Any] | None = None
        self._mtime_us = MIN_TIMESTAMP_US
        # Files listed but not read yet, in the order they were found.
        self._found: list[FileMetadata] = []
        self._lock = threading.Lock()
        self._listing_error: BaseException | None = None
        self._stop = threading.Event()
        if self._current is not None:
            self._open(self._current, skip=self._current_records)
        self._thread = threading.Thread(target=self._list, name="tidal-WatchedFiles", daemon=True)
        self._thread.start()

    # -- the listing thread ------------------------------------------------------------------
    def _list(self) -> None:
        known: set[str] = set(self._seen)
        if self._current is not None:
            known.add(self._current)
        pattern = self._source.file_pattern
        while not self._stop.is_set():
            try:
                matched = FileSystems.match([pattern])[0].metadata_list
            except BaseException as exc:  # handed to the runner by poll
                self._listing_error = exc
                return
            new = sorted((m for m in matched if m.path not in known), key=lambda m: (m.last_updated_in_seconds, m.path))
            if new:
                known.update(m.path for m in new)
                with self._lock:
                    self._found.extend(new)
            self._stop.wait(self._source.interval_s)

    # -- reading, on the runner's thread -------------------------------------------------------
    def _open(self, path: str, skip: int = 0, meta: FileMetadata | None = None) -> None:
        src = self._source
        try:
            meta = meta or FileSystems.metadata(path)
        except Exception as exc:
            raise FileNotFoundError(
                f"{src.what}({src.file_pattern}): cannot read {path}: {exc} (a file of the watched folder "
                "must stay until it has been read)"
            ) from exc
        self._mtime_us = round(meta.last_updated_in_seconds * 1_000_000)
        records = src.fmt.read_records(path)
        self._it = itertools.islice(records, skip, None) if skip else iter(records)
        self._current = path

    def _next_file(self) -> bool:
        """Open the next file to read; False when there is none (yet)."""
        end = self._end
        if end is not None:  # replaying a recorded range: the recorded files, in the recorded order
            for path in [*end["files"], end["current"]]:
                if path is not None and path not in self._seen and path != self._current:
                    self._open(path)
                    self._current_records = 0
                    return True
            return False
        with self._lock:
            while self._found and self._found[0].path in self._seen:
                self._found.pop(0)
            if not self._found:
                return False
            meta = self._found.pop(0)
        self._open(meta.path, meta=meta)
        self._current_records = 0
        return True

    def _finish_file(self) -> None:
        assert self._current is not None
        self._files.append(self._current)
        self._seen.add(self._current)
        self._current = None
        self._current_records = 0
        self._it = None

    def limit_to(self, offset: Any) -> None:
        self._end = offset

    def _room(self, max_elements: int) -> int:
        """How many records of the current file may be handed out now (the recorded end allows)."""
        end = self._end
        if end is None or self._current is None:
            return max_elements
        if self._current in end["files"]:
            return max_elements
        if self._current == end["current"]:
            return max(0, min(max_elements, end["current_records"] - self._current_records))
        return 0

    def poll(self, max_elements: int) -> list[Any]:
        if self._listing_error is not None:
            raise self._listing_error
        src = self._source
        column = src.timestamp_column
        out: list[Any] = []
        while len(out) < max_elements and not self.is_done():
            if self._it is None and not self._next_file():
                break
            assert self._it is not None
            room = self._room(max_elements - len(out))
            if room == 0:
                break
            chunk = list(itertools.islice(self._it, room))
            for record in chunk:
                ts = self._mtime_us if column is None else _event_time(record, column, self._current)
                tv = TimestampedValue.__new__(TimestampedValue)
                tv.value, tv.timestamp_us = record, ts
                out.append(tv)
                if self._max_ts is None or ts > self._max_ts:
                    self._max_ts = ts
            self._current_records += len(chunk)
            self._records += len(chunk)
            if len(chunk) < room:
                self._finish_file()
        return out

    def offset(self) -> Any:
        return {
            "files": list(self._files),
            "current": self._current,
            "current_records": self._current_records,
            "records": self._records,
            "max_ts": self._max_ts,
        }

    def watermark(self) -> int:
        if self.is_done():
            return MAX_TIMESTAMP_US
        if self._max_ts is None:
            return MIN_TIMESTAMP_US
        return self._max_ts - self._source.out_of_orderness_us

    def is_done(self) -> bool:
        limit = self._source.max_files
        return limit is not None and len(self._files) >= limit

    def close(self) -> None:
        self._stop.set()
        self._it = None


def _event_time(record: Any, column: str, path: str | None) -> int:
    """The event time (µs) in ``record[column]``: seconds, or a datetime."""
    try:
        value = record[column]
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"{path}: a record has no column {column!r} (timestamp_column): {record!r}") from None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return round(value.timestamp() * 1_000_000)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{path}: column {column!r} (timestamp_column) must hold seconds or a datetime, got {value!r} in {record!r}"
        )
    micros = round(value * 1_000_000)
    if not MIN_TIMESTAMP_US <= micros <= MAX_TIMESTAMP_US:
        raise ValueError(f"{path}: column {column!r} holds {value!r}, outside [MIN_TIMESTAMP, MAX_TIMESTAMP]")
    return micros


class MatchContinuously(PTransform):
    """``p | MatchContinuously(pattern)``: the metadata of every file that appears under ``pattern``.

    Beam's ``fileio.MatchContinuously``: an unbounded PCollection of
    :class:`~tidal.io.filesystems.FileMetadata` (path, size, modification
    time), one per new file, stamped with its modification time. The pattern
    is listed every ``interval`` seconds; ``max_files`` ends the stream after
    that many files. See the module docs for checkpoints and the watermark.

    >>> import os, tempfile, tidal as td
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "a.csv"), "w").write("n\\n1\\n")
    >>> with td.Pipeline() as p:
    ...     names = (p | MatchContinuously(os.path.join(folder, "*.csv"), interval=0.05, max_files=1)
    ...                | td.Map(lambda m: os.path.basename(m.path)))
    ...     td.testing.assert_that(names, td.testing.equal_to(["a.csv"]))
    """

    def __init__(
        self,
        file_pattern: str,
        interval: DurationLike = 1.0,
        max_out_of_orderness: DurationLike = 0,
        max_files: int | None = None,
    ) -> None:
        super().__init__()
        self.source = WatchedFilesSource(
            file_pattern, _MatchFormat(), interval, None, max_out_of_orderness, max_files, what="MatchContinuously"
        )

    def default_label(self) -> str:
        return f"MatchContinuously({self.source.file_pattern})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | Read(self.source)


class ReadContinuously(PTransform):
    """``p | ReadContinuously(pattern, "csv")``: the records of every file that appears under ``pattern``.

    ``format`` is ``"text"`` (lines), ``"csv"`` (dicts), ``"json"`` (JSON
    lines) or ``"parquet"`` (dicts), with ``format_options`` passed to its
    reader (``TextFormat``, ``CsvFormat``, ``JsonFormat``, ``ParquetFormat``
    of :mod:`tidal.io.filebased`: ``compression_type``, ``columns``,
    ``column_types``, ...), or a ``FileFormat`` instance. Records are stamped
    with their file's modification time, or with ``timestamp_column``; the
    watermark trails the largest event time by ``max_out_of_orderness``
    seconds. The files read and the position in the current one are part of
    checkpoints (see the module docs).

    >>> import os, tempfile, tidal as td
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "1.csv"), "w").write("user,t\\nada,1\\nbob,12\\n")
    >>> with td.Pipeline() as p:
    ...     counts = (p | ReadContinuously(os.path.join(folder, "*.csv"), "csv", timestamp_column="t", max_files=1)
    ...                 | td.Map(lambda row: row["user"])
    ...                 | td.WindowInto(td.window.FixedWindows(10))
    ...                 | td.combiners.Count.PerElement())
    ...     td.testing.assert_that(counts, td.testing.equal_to([("ada", 1), ("bob", 1)]))
    """

    def __init__(
        self,
        file_pattern: str,
        format: str | FileFormat = "text",
        interval: DurationLike = 1.0,
        timestamp_column: str | None = None,
        max_out_of_orderness: DurationLike = 0,
        max_files: int | None = None,
        **format_options: Any,
    ) -> None:
        super().__init__()
        if isinstance(format, FileFormat):
            if format_options:
                raise ValueError(f"ReadContinuously: options {sorted(format_options)} go to the FileFormat, not beside it")
            fmt = format
        elif format in FORMATS:
            fmt = FORMATS[format](**format_options)
        else:
            raise ValueError(
                f"ReadContinuously: unknown format {format!r}; use one of {', '.join(map(repr, FORMATS))} or a FileFormat"
            )
        self.source = WatchedFilesSource(file_pattern, fmt, interval, timestamp_column, max_out_of_orderness, max_files)

    def default_label(self) -> str:
        return f"ReadContinuously({self.source.file_pattern})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | Read(self.source)
