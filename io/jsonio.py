"""JSON lines in and out: one JSON value per line, read with :func:`json.loads`, written with :func:`json.dumps`.

``ReadFromJson(path)`` reads the files ``path`` matches (split by byte range
where they are not compressed), one record per non-blank line: a JSON object
becomes a dict, with its numbers as JSON has them (``1`` an int, ``1.5`` a
float). ``WriteToJson(path)`` writes each element as one line through the
transactional file sink (:mod:`tidal.io.filebasedsink`). Both are also in
:mod:`tidal.io.textio`, as in Beam; only Beam's JSON-lines form
(``orient="records"``, ``lines=True``) exists.

>>> import os, tempfile, tidal as td
>>> prefix = os.path.join(tempfile.mkdtemp(), "events")
>>> with td.Pipeline() as p:
...     _ = p | td.Create([{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}]) | WriteToJson(prefix, file_name_suffix=".jsonl")
>>> with td.Pipeline() as p:
...     rows = p | ReadFromJson(prefix + "-*.jsonl")
...     td.testing.assert_that(rows, td.testing.equal_to([{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}]))
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO

from tidal.io.csvio import _check_options, _compression
from tidal.io.filebased import FileBasedSource, JsonFormat
from tidal.io.filebasedsink import FileSinkFn, RecordWriter, ShardNaming, SinkFormat, expand_sink
from tidal.model.primitives import Read
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection

__all__ = ["ReadFromJson", "WriteToJson", "JsonSource", "JsonSinkFormat"]

_READ_OPTIONS = ("compression", "compression_type", "validate")
_WRITE_OPTIONS = ("file_name_suffix", "shard_name_template", "compression", "compression_type", "skip_if_empty", "force_ascii")


def _records_only(what: str, orient: str, lines: bool | None) -> None:
    if orient != "records" or lines is False:
        raise ValueError(
            f"{what} reads and writes JSON lines (orient='records', lines=True), one value per line; "
            f"got orient={orient!r}, lines={lines!r}"
        )


class JsonSource(FileBasedSource):
    """The JSON values of the lines of the files ``path`` matches; splits by file and byte range."""

    def __init__(self, path: str, fmt: JsonFormat, validate: bool = True) -> None:
        super().__init__(path, fmt, validate=validate, what="ReadFromJson")


class ReadFromJson(PTransform):
    """Reads JSON lines into one element per line (a dict for an object); a bad line names the file and line.

    ``compression`` (pandas' names, default ``"infer"``: by extension) or
    ``compression_type``; ``validate=False`` allows a path that matches no file.
    """

    def __init__(self, path: str, *, orient: str = "records", lines: bool = True, dtype: Any = False, **kwargs: Any) -> None:
        super().__init__()
        _records_only("ReadFromJson", orient, lines)
        if dtype not in (False, None, True):
            raise ValueError("ReadFromJson: dtype is not supported; values keep the types JSON gives them")
        _check_options("ReadFromJson", kwargs, _READ_OPTIONS)
        options = dict(kwargs)
        self.path = path
        self.source = JsonSource(path, JsonFormat(_compression(options, "ReadFromJson")), validate=options.pop("validate", True))

    def default_label(self) -> str:
        return f"ReadFromJson({os.path.basename(self.path)})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | "Read" >> Read(self.source)


class _JsonWriter(RecordWriter):
    def __init__(self, stream: BinaryIO, ensure_ascii: bool) -> None:
        self.stream = stream
        self.ensure_ascii = ensure_ascii
        self.lines: list[str] = []

    def write_many(self, elements: list[Any]) -> None:
        if self.ensure_ascii:
            self.lines.extend(map(json.dumps, elements))
        else:
            self.lines.extend(json.dumps(e, ensure_ascii=False) for e in elements)
        if len(self.lines) >= 8192:
            self._flush()

    def write(self, element: Any) -> None:
        self.lines.append(json.dumps(element, ensure_ascii=self.ensure_ascii))
        if len(self.lines) >= 8192:
            self._flush()

    def flush(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self.lines:
            self.stream.write(("\n".join(self.lines) + "\n").encode("utf-8"))
            self.lines = []

    def close(self) -> None:
        self._flush()


class JsonSinkFormat(SinkFormat):
    """JSON lines: each element is one ``json.dumps`` line."""

    what = "WriteToJson"

    def __init__(self, ensure_ascii: bool = True) -> None:
        self.ensure_ascii = ensure_ascii

    def open(self, stream: BinaryIO) -> RecordWriter:
        return _JsonWriter(stream, self.ensure_ascii)


class WriteToJson(PTransform):
    """Writes each element as a JSON line to ``<path>-00000-of-00001`` (Beam's shard names), exactly once under checkpoints.

    Options: ``num_shards``, tidal's ``file_name_suffix`` and
    ``shard_name_template``, ``compression``, ``skip_if_empty`` and
    ``force_ascii`` (default True, as pandas). A value ``json.dumps`` cannot
    write is an error naming the step and the element.
    """

    def __init__(
        self,
        path: str,
        *,
        num_shards: int | None = None,
        file_naming: Any = None,
        orient: str = "records",
        lines: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from tidal.io.textio import _unsupported

        _unsupported("WriteToJson", file_naming=file_naming)
        _records_only("WriteToJson", orient, lines)
        _check_options("WriteToJson", kwargs, _WRITE_OPTIONS)
        options = dict(kwargs)
        compression = _compression(options, "WriteToJson")
        naming = ShardNaming(path, options.pop("shard_name_template", None), options.pop("file_name_suffix", ""))
        fmt = JsonSinkFormat(options.pop("force_ascii", True))
        self.fn = FileSinkFn(naming, fmt, compression, num_shards or 0, options.pop("skip_if_empty", False))

    def default_label(self) -> str:
        return f"WriteToJson({self.fn.naming.basename})"

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return expand_sink(pcoll, self.fn)
