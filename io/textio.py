"""Text files in and out (compressed or not), with exactly-once output under checkpoints.

:class:`ReadFromText` reads the lines of the files a pattern matches, gzip,
bzip2, lzma or deflate compressed by extension or ``compression_type``,
skipping ``skip_header_lines`` lines at the start of each file; an
uncompressed file is read in byte ranges, so a parallel runner reads it on
several workers (see :mod:`tidal.io.filebased`). ``ReadFromCsv``,
``WriteToCsv``, ``ReadFromJson`` and ``WriteToJson`` are here too, as in Beam
(they live in :mod:`tidal.io.csvio` and :mod:`tidal.io.jsonio`).

:class:`WriteToText` is a *transactional* sink. Each worker writes the lines it
receives to a staged file in a hidden ``.tidal-staging`` folder beside the
output; when a checkpoint barrier passes, the staged file is closed and its
name recorded in the checkpoint; when the checkpoint is complete (every
worker has stored its state) the file is published by an atomic rename to
Beam's shard name, ``<prefix>-00000-of-00001<suffix>`` (see
:mod:`tidal.io.filebasedsink` for the names of checkpointed output and how a
rerun replaces an earlier run's files). Output written after the last
complete checkpoint is never published by a failed attempt, and a restore
re-publishes what the restored checkpoint staged (a rename that already
happened is skipped), so each element reaches the published files exactly
once. Without checkpoints (the direct runner) the files are published when
the run ends. Every file sink of :mod:`tidal.io` (CSV, JSON, Parquet) works
the same way.

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

``set_writer(index, count) -> None`` (optional)
    Called before ``setup``: this copy of the DoFn is parallel instance
    ``index`` of ``count`` of its step (``(0, 1)`` on the direct and
    micro-batch runners). The file sinks name their shards by it.

A sink without these methods sees the elements after the last complete
checkpoint again when a job recovers (at-least-once output). It gets
exactly-once *results* when its writes are idempotent: keyed by something
deterministic (the key and window of a pane, say) and written as an upsert,
so a replay overwrites what the failed attempt wrote.

>>> import os, tempfile, tidal as td
>>> prefix = os.path.join(tempfile.mkdtemp(), "out")
>>> with td.Pipeline() as p:
...     _ = p | td.Create(["a", "b"]) | WriteToText(prefix, file_name_suffix=".txt")
>>> [os.path.basename(f) for f in sorted(os.listdir(os.path.dirname(prefix))) if not f.startswith(".")]
['out-00000-of-00001.txt']
>>> sorted(read_text(prefix + "*.txt"))
['a', 'b']
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Callable

from tidal.io.filebased import ArrowFileSource, TextFormat
from tidal.io.filebasedsink import STAGING_DIR, FileSinkFn, RecordWriter, ShardNaming, SinkFormat, expand_sink
from tidal.io.filesystems import CompressionTypes
from tidal.model.primitives import Read
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection

__all__ = [
    "WriteToText", "ReadFromText", "TextSinkFn", "TextSource", "TextSinkFormat", "read_text", "STAGING_DIR",
    "ReadFromCsv", "WriteToCsv", "ReadFromJson", "WriteToJson",
]


def _escape(line: str) -> str:
    # A reader splits lines at "\n" (and drops a "\r" before it): escape both, so one element stays one line.
    return line.replace("\n", "\\n").replace("\r", "\\r")


class _TextWriter(RecordWriter):
    """Lines to a staged file: bytes as they are, str as UTF-8, anything else through the formatter."""

    def __init__(self, stream: BinaryIO, spec: "TextSinkFormat") -> None:
        self.stream = stream
        self.newline = b"\n" if spec.append_trailing_newlines else b""
        self.coder = spec.coder
        self.formatter = spec.formatter
        self.footer = spec.footer
        self.parts: list[bytes] = []
        if spec.header is not None:
            stream.write(_to_bytes(spec.header) + self.newline)

    def write_many(self, elements: list[Any]) -> None:
        # The sink's hot path, written for speed on purpose: a bundle of str elements without
        # line breaks inside them is joined and encoded at once; anything else goes one by one.
        if self.coder is None and self.newline and set(map(type, elements)) == {str}:
            joined = "\n".join(elements)
            if joined.count("\n") == len(elements) - 1 and "\r" not in joined:
                self._flush()
                self.stream.write(joined.encode("utf-8") + b"\n")
                return
        for element in elements:
            self.write(element)

    def write(self, element: Any) -> None:
        # One element: a class check, escaping only when a line break is there.
        if self.coder is not None:
            data = self.coder.encode(element)
        else:
            cls = element.__class__
            if cls is not str and cls is not bytes:
                element = self.formatter(element)
                cls = element.__class__
            if cls is str:
                if self.newline and ("\n" in element or "\r" in element):
                    element = _escape(element)
                data = element.encode("utf-8")
            elif cls is bytes or isinstance(element, (bytes, bytearray)):
                data = bytes(element)
                if self.newline and (b"\n" in data or b"\r" in data):
                    data = data.replace(b"\n", b"\\n").replace(b"\r", b"\\r")
            else:
                raise TypeError(f"the formatter must return str or bytes, it returned {type(element).__name__}")
        parts = self.parts
        parts.append(data)
        if len(parts) >= 8192:
            self._flush()

    def flush(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self.parts:
            nl = self.newline
            self.stream.write(nl.join(self.parts) + nl)
            self.parts = []

    def close(self) -> None:
        self._flush()
        if self.footer is not None:
            self.stream.write(_to_bytes(self.footer) + self.newline)


def _to_bytes(text: Any) -> bytes:
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


class TextSinkFormat(SinkFormat):
    """Text lines: each element is one line (see :class:`WriteToText`)."""

    what = "WriteToText"

    def __init__(
        self,
        append_trailing_newlines: bool = True,
        coder: Any = None,
        header: str | bytes | None = None,
        footer: str | bytes | None = None,
        formatter: Callable[[Any], Any] = str,
    ) -> None:
        if coder is not None and not callable(getattr(coder, "encode", None)):
            raise TypeError(f"coder must have an encode(element) -> bytes method, got {coder!r}")
        if not callable(formatter):
            raise TypeError(f"formatter must be a function of an element, got {formatter!r}")
        self.append_trailing_newlines = append_trailing_newlines
        self.coder = coder
        self.header = header
        self.footer = footer
        self.formatter = formatter

    def open(self, stream: BinaryIO) -> RecordWriter:
        return _TextWriter(stream, self)


class TextSinkFn(FileSinkFn):
    """The transactional DoFn behind :class:`WriteToText` (a :class:`FileSinkFn` writing lines)."""

    def __init__(
        self,
        file_path_prefix: str,
        file_name_suffix: str = "",
        formatter: Callable[[Any], Any] = str,
        shard_name_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        fmt = TextSinkFormat(
            kwargs.pop("append_trailing_newlines", True), kwargs.pop("coder", None), kwargs.pop("header", None),
            kwargs.pop("footer", None), formatter,
        )
        super().__init__(ShardNaming(file_path_prefix, shard_name_template, file_name_suffix), fmt, **kwargs)

    @property
    def prefix(self) -> str:
        return self.naming.prefix

    @property
    def suffix(self) -> str:
        return self.naming.suffix

    @property
    def staging_folder(self) -> str:
        return self.naming.staging_folder


def _unsupported(what: str, **options: Any) -> None:
    """Reject Beam options tidal's file sinks do not have, with the reason."""
    for name, value in options.items():
        if value is not None:
            reasons = {
                "triggering_frequency": "tidal publishes a file sink's output at every checkpoint (the runner's checkpoint "
                "interval) and at the end of the input, not on a triggering frequency",
                "max_records_per_shard": "a shard is one writer's output; use num_shards for more files",
                "max_bytes_per_shard": "a shard is one writer's output; use num_shards for more files",
                "escapechar": "tidal's text reader has no escape character; records end at the delimiter",
                "file_naming": "tidal names files by file_path_prefix, shard_name_template and file_name_suffix",
            }
            raise ValueError(f"{what}: {name}={value!r} is not supported: {reasons[name]}")


class WriteToText(PTransform):
    """Writes each element as a line to text files named as Beam names them, exactly once under checkpoints.

    A ``str`` is written as UTF-8, ``bytes`` as they are, anything else as
    ``formatter(element)`` (default ``str``; a tidal addition) or
    ``coder.encode(element)`` when a coder is given. Line breaks inside a line
    are escaped as ``\\n`` and ``\\r`` (so one element is one line) unless
    ``append_trailing_newlines`` is False. ``header`` and ``footer`` are
    written at the start and end of every file. Files are
    ``<file_path_prefix><shard><file_name_suffix>`` with the shard part from
    ``shard_name_template`` (default ``-SSSSS-of-NNNNN``; ``''`` for one
    file), compressed by the suffix's extension or ``compression_type``; see
    :mod:`tidal.io.filebasedsink` for shards, checkpoints and reruns.
    Returns an empty PCollection.

    >>> import os, tempfile, tidal as td
    >>> prefix = os.path.join(tempfile.mkdtemp(), "words")
    >>> with td.Pipeline() as p:
    ...     _ = p | td.Create([1, 2, 3]) | td.Map(lambda x: x * 10) | WriteToText(prefix, ".txt", header="n")
    >>> open(prefix + "-00000-of-00001.txt").read().split()
    ['n', '10', '20', '30']
    >>> with td.Pipeline() as p:  # a rerun replaces the output, here with three shards
    ...     _ = p | td.Create([b"x", "y", "z"]) | WriteToText(prefix, ".txt", num_shards=3)
    >>> sorted(f for f in os.listdir(os.path.dirname(prefix)) if not f.startswith("."))
    ['words-00000-of-00003.txt', 'words-00001-of-00003.txt', 'words-00002-of-00003.txt']
    >>> sorted(read_text(prefix + "-*"))
    ['x', 'y', 'z']
    """

    def __init__(
        self,
        file_path_prefix: str,
        file_name_suffix: str = "",
        append_trailing_newlines: bool = True,
        num_shards: int = 0,
        shard_name_template: str | None = None,
        coder: Any = None,
        compression_type: str = CompressionTypes.AUTO,
        header: str | bytes | None = None,
        footer: str | bytes | None = None,
        *,
        max_records_per_shard: int | None = None,
        max_bytes_per_shard: int | None = None,
        skip_if_empty: bool = False,
        triggering_frequency: int | None = None,
        formatter: Callable[[Any], Any] = str,
    ) -> None:
        super().__init__()
        _unsupported(
            "WriteToText", max_records_per_shard=max_records_per_shard, max_bytes_per_shard=max_bytes_per_shard,
            triggering_frequency=triggering_frequency,
        )
        self.fn = TextSinkFn(
            file_path_prefix, file_name_suffix, formatter, shard_name_template,
            append_trailing_newlines=append_trailing_newlines, coder=coder, header=header, footer=footer,
            compression_type=compression_type, num_shards=num_shards, skip_if_empty=skip_if_empty,
        )

    def default_label(self) -> str:
        return f"WriteToText({self.fn.naming.basename})"

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return expand_sink(pcoll, self.fn)


class TextSource(ArrowFileSource):
    """The lines of the files matching ``file_pattern`` (see :class:`ReadFromText`), split by file and byte range.

    An Arrow source of values when its lines are plain text: on the micro-batch
    runner a batched DoFn after it gets them as one Arrow string column.
    """

    @property
    def arrow_form(self) -> str | None:
        return "value" if self.fmt.arrow_lines else None  # type: ignore[attr-defined]

    def __init__(
        self,
        file_pattern: str,
        compression_type: str = CompressionTypes.AUTO,
        skip_header_lines: int = 0,
        strip_trailing_newlines: bool = True,
        delimiter: bytes | None = None,
        coder: Any = None,
        validate: bool = True,
    ) -> None:
        fmt = TextFormat(compression_type, skip_header_lines, strip_trailing_newlines, delimiter, coder)
        super().__init__(file_pattern, fmt, validate=validate, what="ReadFromText")


class ReadFromText(PTransform):
    """Reads the lines of every file matching ``file_pattern`` (a glob), as strings, without line ends.

    Lines end at ``\\n`` (a ``\\r`` before it is dropped) or at ``delimiter``.
    Compressed files (gzip, bzip2, lzma, deflate) are read by extension or by
    ``compression_type``; ``skip_header_lines`` lines at the start of each
    file are skipped. A pattern that matches no file is an error here, unless
    ``validate=False``. ``coder`` (anything with ``decode(bytes)``) turns a
    line's bytes into the element instead of UTF-8 decoding. Files are read
    in parallel splits: an uncompressed file in byte ranges (a line belongs to
    the range its first byte is in), a compressed one whole.

    >>> import os, tempfile, tidal as td
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "a.txt"), "w").write("name\\nx\\ny\\n")
    >>> with td.Pipeline() as p:
    ...     lines = p | ReadFromText(os.path.join(folder, "*.txt"), skip_header_lines=1)
    ...     td.testing.assert_that(lines, td.testing.equal_to(["x", "y"]))
    """

    def __init__(
        self,
        file_pattern: str | None = None,
        min_bundle_size: int = 0,
        compression_type: str = CompressionTypes.AUTO,
        strip_trailing_newlines: bool = True,
        coder: Any = None,
        validate: bool = True,
        skip_header_lines: int = 0,
        delimiter: bytes | None = None,
        escapechar: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _unsupported("ReadFromText", escapechar=escapechar)
        self.file_pattern = file_pattern
        self.source = TextSource(
            file_pattern,  # type: ignore[arg-type]
            compression_type, skip_header_lines, strip_trailing_newlines, delimiter, coder, validate,
        )

    def default_label(self) -> str:
        return f"ReadFromText({os.path.basename(self.file_pattern or '')})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | "Read" >> Read(self.source)


def read_text(file_pattern: str, compression_type: str = CompressionTypes.AUTO) -> list[str]:
    """Every line of the files matching ``file_pattern``, in file-name order; none when nothing matches (handy in tests)."""
    return list(TextSource(file_pattern, compression_type, validate=False).read())


from tidal.io.csvio import ReadFromCsv, WriteToCsv  # noqa: E402  (Beam has them in textio too)
from tidal.io.jsonio import ReadFromJson, WriteToJson  # noqa: E402
