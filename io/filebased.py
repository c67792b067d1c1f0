"""Reading files of each format, whole or one split at a time: the layer every file source shares.

A :class:`FileFormat` knows how to read the records of one file, or of one
*split* of it, as Python records (:meth:`~FileFormat.read_records`) or as
Arrow record batches (:meth:`~FileFormat.read_batches`). A split is a
half-open range ``[start, stop)`` of *positions*, whose unit the format
chooses:

- the line-based formats (:class:`TextFormat`, :class:`CsvFormat`,
  :class:`JsonFormat`) count bytes: a record belongs to the split in which
  its first byte lies, so a split that starts inside a record begins at the
  first record boundary after its start and the record that straddles its end
  is read to its end, as Beam's text source does. Compressed files cannot be
  split: their only split is the whole file.
- :class:`ParquetFormat` counts row groups.

:func:`split_ranges` cuts files into ranges of about a target size, and
:class:`FileBasedSource` is a bounded source over the ranges of the files a
pattern matches, which splits for parallel reading. The ranges of a file
cover it without overlap, so the union of the splits' records is the file's
records, each exactly once.

A record that cannot be parsed is an error naming the file and the line (for
the line-based formats) or the row group (Parquet).

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
>>> _ = open(path, "wb").write(b"one\\ntwo\\r\\nthree\\n")
>>> fmt = TextFormat()
>>> list(fmt.read_records(path))
['one', 'two', 'three']
>>> list(fmt.read_records(path, 1, 6)), list(fmt.read_records(path, 6, 16))
(['two'], ['three'])
>>> fmt.read_batches(path).__next__().column("value").to_pylist()
['one', 'two', 'three']
"""

from __future__ import annotations

import abc
import io
import itertools
import json
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import attrs
import numpy as np
import pyarrow as pa

from tidal.io.arrowio import ArrowSource
from tidal.io.filesystems import BeamIOError, CompressionTypes, FileMetadata, FileSystems, has_glob
from tidal.model.primitives import BoundedSource

__all__ = [
    "FileFormat",
    "TextFormat",
    "CsvFormat",
    "JsonFormat",
    "ParquetFormat",
    "FileRange",
    "FileBasedSource",
    "ArrowFileSource",
    "match_files",
    "split_ranges",
    "FileFormatError",
]

#: How many bytes a line reader reads at a time.
BLOCK_SIZE = 1 << 20
#: How many records a batch holds when records are turned into Arrow batches.
BATCH_ROWS = 65_536


class FileFormatError(ValueError):
    """A file cannot be read as its format: the message names the file and the line or row group."""


@attrs.frozen
class FileRange:
    """Positions ``[start, stop)`` of one file (bytes or row groups, as its format counts them)."""

    path: str
    start: int
    stop: int
    #: The file's size in bytes (the weight of a range when balancing splits).
    size: int


def match_files(file_pattern: str, validate: bool, what: str) -> list[FileMetadata]:
    """The files ``file_pattern`` matches, in path order; none is an error when ``validate``.

    ``what`` names the reader in the message (``"ReadFromText"``).
    """
    if not isinstance(file_pattern, str) or not file_pattern:
        raise ValueError(f"{what} needs a file pattern (a path or a glob such as 'data/*.csv'), got {file_pattern!r}")
    found = FileSystems.match([file_pattern])[0].metadata_list
    if not found and validate:
        kind = "pattern" if has_glob(file_pattern) else "path"
        raise BeamIOError(
            f"{what}: no file matches the {kind} {file_pattern!r} (pass validate=False to allow a pattern "
            "that matches nothing yet)"
        )
    return found


def _check_compression(compression_type: str) -> None:
    """Reject a compression type that is not one of CompressionTypes' supported ones."""
    if compression_type not in CompressionTypes.SUPPORTED:
        if CompressionTypes.is_valid_compression_type(compression_type):
            raise ValueError(f"{compression_type} compression is not supported (supported: gzip, bzip2, lzma, deflate)")
        CompressionTypes.resolve("", compression_type)  # raises the message naming the valid types


# -- the line reader -----------------------------------------------------------------------
def _record_start_at_or_after(f: BinaryIO, x: int, size: int, delim: bytes) -> int:
    """The first record start >= ``x``: 0, or just after a delimiter; ``size`` if there is none."""
    if x <= 0:
        return 0
    if x >= size:
        return size
    n = len(delim)
    pos = max(0, x - n)
    f.seek(pos)
    tail = b""
    while True:
        block = f.read(1 << 16)
        if not block:
            return size
        data = tail + block
        i = data.find(delim)
        if i >= 0:
            return pos - len(tail) + i + n
        keep = n - 1
        tail = data[-keep:] if keep else b""
        pos += len(block)


def _line_number(path: str, offset: int, compression: str) -> int:
    """The 1-based line number of the byte at ``offset`` (of the decompressed file)."""
    with FileSystems.open(path, compression_type=compression) as f:
        remaining = offset
        lines = 1
        while remaining > 0:
            block = f.read(min(1 << 20, remaining))
            if not block:
                break
            lines += block.count(b"\n")
            remaining -= len(block)
    return lines


class _LineFormat:
    """Reading delimited records of bytes: the part of the line-based formats they share."""

    compression_type: str
    delimiter: bytes | None
    header_lines: int

    @property
    def _delim(self) -> bytes:
        return self.delimiter or b"\n"

    def _compression(self, path: str) -> str:
        return CompressionTypes.resolve(path, self.compression_type)

    def splittable(self, path: str) -> bool:
        """Whether ``path`` can be read in byte ranges (uncompressed)."""
        return self._compression(path) == CompressionTypes.UNCOMPRESSED

    def ranges(self, meta: FileMetadata, target: int) -> list[tuple[int, int]]:
        """Byte ranges of about ``target`` bytes covering the file (the whole file when it is compressed)."""
        size = meta.size_in_bytes
        if not self.splittable(meta.path) or size <= target or target <= 0:
            return [(0, size)]
        return [(s, min(s + target, size)) for s in range(0, size, target)]

    def subdivide(self, r: FileRange, pieces: int) -> list[FileRange]:
        """``r`` cut into up to ``pieces`` byte ranges (itself when the file is compressed)."""
        if pieces <= 1 or not self.splittable(r.path) or r.stop - r.start < 2:
            return [r]
        step = -(-(r.stop - r.start) // pieces)
        return [FileRange(r.path, s, min(s + step, r.stop), r.size) for s in range(r.start, r.stop, step)]

    def _header(self, f: BinaryIO) -> tuple[bytes, bytes]:
        """The header lines at the start of ``f`` (at position 0), and the bytes read past them."""
        delim = self._delim
        buf = b""
        out = io.BytesIO()
        count = self.header_lines
        while count > 0:
            i = buf.find(delim)
            if i >= 0:
                out.write(buf[: i + len(delim)])
                buf = buf[i + len(delim):]
                count -= 1
                continue
            block = f.read(1 << 16)
            if not block:
                out.write(buf)
                buf = b""
                break
            buf += block
        return out.getvalue(), buf

    def _raw_blocks(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(offset, bytes)`` blocks holding exactly the complete records whose first byte is in [start, stop).

        Each block ends at a record boundary (a delimiter), except the last
        record of a file without a final delimiter. The header lines are never
        part of a block. Offsets are in the decompressed file.
        """
        compression = self._compression(path)
        delim = self._delim
        with FileSystems.open(path, compression_type=compression) as f:
            header, rest = self._header(f) if self.header_lines else (b"", b"")
            header_end = len(header)
            carry = b""
            if compression != CompressionTypes.UNCOMPRESSED:
                if start > 0:
                    return  # a compressed file is one split: its records belong to the split at 0
                a, remaining = header_end, None
                carry = rest
            else:
                size = FileSystems.metadata(path).size_in_bytes
                end = size if stop is None else min(stop, size)
                a = header_end if start <= header_end else _record_start_at_or_after(f, start, size, delim)
                b = size if end >= size else _record_start_at_or_after(f, end, size, delim)
                if b <= a:
                    return
                f.seek(a)
                remaining = b - a
            offset = a
            while remaining is None or remaining > 0:
                block = f.read(BLOCK_SIZE if remaining is None else min(BLOCK_SIZE, remaining))
                if not block:
                    break
                if remaining is not None:
                    remaining -= len(block)
                data = carry + block if carry else block
                cut = data.rfind(delim)
                if cut < 0:
                    carry = data
                    continue
                cut += len(delim)
                yield offset, data[:cut]
                offset += cut
                carry = data[cut:]
            if carry:
                yield offset, carry

    def _lines(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, list[str]]]:
        """``(offset of the first, lines)`` of the records in [start, stop), decoded as UTF-8, without delimiters."""
        return self._lines_from(path, self._raw_blocks(path, start, stop))

    def _lines_from(self, path: str, blocks: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, list[str]]]:
        delim = self._delim
        for offset, block in blocks:
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                raise FileFormatError(
                    f"{path}: line {_line_number(path, bad, self._compression(path))} is not valid UTF-8 "
                    f"(byte {bad}: {exc.reason})"
                ) from None
            sep = delim.decode("utf-8")
            lines = text.split(sep)
            if lines and lines[-1] == "":
                lines.pop()  # the block ends with a delimiter
            if self.delimiter is None and "\r" in text:
                lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
            yield offset, lines

    def _error_at(self, path: str, block_offset: int, lines: list[str], index: int, what: str) -> FileFormatError:
        """An error for record ``index`` of a block that starts at ``block_offset``, naming its line."""
        sep = len(self._delim)
        offset = block_offset + sum(len(ln.encode("utf-8")) + sep for ln in lines[:index])
        line = _line_number(path, offset, self._compression(path))
        return FileFormatError(f"{path}: line {line}: {what}")


class FileFormat(abc.ABC):
    """How one format's files are read: whole, or one split at a time, as records or Arrow batches."""

    #: What a split position counts: "bytes" or "row_groups".
    unit: str = "bytes"

    @abc.abstractmethod
    def read_records(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        """The records of ``path`` in positions ``[start, stop)`` (the whole file by default), in file order."""

    @abc.abstractmethod
    def read_batches(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[pa.RecordBatch]:
        """The same records as Arrow record batches (columns named as the records' fields)."""

    @abc.abstractmethod
    def ranges(self, meta: FileMetadata, target: int) -> list[tuple[int, int]]:
        """Ranges of positions covering the file, each of about ``target`` bytes where the file allows it."""

    @abc.abstractmethod
    def subdivide(self, r: FileRange, pieces: int) -> list[FileRange]:
        """``r`` cut into up to ``pieces`` ranges that cover it (``[r]`` when it cannot be cut)."""

    def describe(self) -> str:
        return type(self).__name__.replace("Format", "").lower()


# -- text --------------------------------------------------------------------------------------
class TextFormat(_LineFormat, FileFormat):
    """Lines of text: split at ``\\n`` (a ``\\r`` before it is dropped) or at ``delimiter``.

    ``skip_header_lines`` lines at the start of every file are not records;
    ``strip_trailing_newlines=False`` keeps each record's delimiter. ``coder``
    (anything with ``decode(bytes)``) turns a record's bytes into the record;
    without one a record is its UTF-8 text. Arrow batches have one column,
    ``value``.
    """

    def __init__(
        self,
        compression_type: str = CompressionTypes.AUTO,
        skip_header_lines: int = 0,
        strip_trailing_newlines: bool = True,
        delimiter: bytes | None = None,
        coder: Any = None,
    ) -> None:
        _check_compression(compression_type)
        if not isinstance(skip_header_lines, int) or skip_header_lines < 0:
            raise ValueError(f"skip_header_lines must be a whole number of lines (0 or more), got {skip_header_lines!r}")
        if delimiter is not None and (not isinstance(delimiter, bytes) or not delimiter):
            raise ValueError(f"delimiter must be non-empty bytes (such as b'|'), got {delimiter!r}")
        if coder is not None and not callable(getattr(coder, "decode", None)):
            raise TypeError(f"coder must have a decode(bytes) method, got {coder!r}")
        self.compression_type = compression_type
        self.header_lines = skip_header_lines
        self.strip_trailing_newlines = strip_trailing_newlines
        self.delimiter = delimiter
        self.coder = coder

    def read_records(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        if self.coder is not None:
            delim = self._delim
            for _, block in self._raw_blocks(path, start, stop):
                parts = block.split(delim)
                if parts and parts[-1] == b"":
                    parts.pop()
                for part in parts:
                    if self.delimiter is None and part.endswith(b"\r"):
                        part = part[:-1]
                    yield self.coder.decode(part if self.strip_trailing_newlines else part + delim)
            return
        if self.strip_trailing_newlines:
            for _, lines in self._lines(path, start, stop):
                yield from lines
        else:
            ending = self._delim.decode("utf-8")
            for _, lines in self._lines(path, start, stop):
                for line in lines:
                    yield line + ending

    @property
    def arrow_lines(self) -> bool:
        """Whether records are plain text lines that read_batches cuts with numpy, without Python strings."""
        return self.coder is None and self.strip_trailing_newlines and len(self._delim) == 1

    def read_batches(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[pa.RecordBatch]:
        if not self.arrow_lines:
            for chunk in _chunks(self.read_records(path, start, stop), BATCH_ROWS):
                yield pa.record_batch({"value": pa.array(chunk, pa.string())})
            return
        for offset, block in self._raw_blocks(path, start, stop):
            batch = self._lines_batch(block)
            if batch is None:  # not valid UTF-8: the line-by-line reader names the line
                lines = [ln for _, chunk in self._lines_from(path, [(offset, block)]) for ln in chunk]
                batch = pa.record_batch({"value": pa.array(lines, pa.string())})
            yield batch

    def _lines_batch(self, block: bytes) -> pa.RecordBatch | None:
        """The lines of ``block`` as an Arrow string column, cut with numpy (None if it is not UTF-8).

        Written for speed on purpose: one pass to find the delimiters, one to
        drop them (and a "\\r" before a "\\n"), the rest is Arrow's.
        """
        d = self._delim[0]
        raw = np.frombuffer(block, dtype=np.uint8)
        if len(raw) and raw[-1] != d:
            raw = np.append(raw, np.uint8(d))  # the file's last line, without a delimiter
        ends = np.flatnonzero(raw == d)
        starts = np.concatenate((np.zeros(1, dtype=np.int64), ends[:-1] + 1))
        keep = np.ones(len(raw), dtype=bool)
        keep[ends] = False
        lengths = ends - starts
        if self.delimiter is None:
            cr = ends[(lengths > 0)] - 1
            cr = cr[raw[cr] == 13]
            if len(cr):
                keep[cr] = False
                lengths = lengths - np.isin(ends - 1, cr)
        offsets = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(lengths))).astype(np.int32)
        data = raw[keep]
        column = pa.Array.from_buffers(pa.string(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            return None
        return pa.record_batch([column], names=["value"])


# -- JSON lines ---------------------------------------------------------------------------------
class JsonFormat(_LineFormat, FileFormat):
    """JSON lines: one JSON value per line (blank lines are skipped), read with :func:`json.loads`.

    Arrow batches are made from the records (``pyarrow.Table.from_pylist``), so
    their columns are the records' keys.
    """

    def __init__(self, compression_type: str = CompressionTypes.AUTO) -> None:
        _check_compression(compression_type)
        self.compression_type = compression_type
        self.header_lines = 0
        self.delimiter = None

    def read_records(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        loads = json.loads
        for offset, lines in self._lines(path, start, stop):
            try:
                records = [loads(ln) for ln in lines if ln and not ln.isspace()]
            except json.JSONDecodeError:
                records = []
                for i, ln in enumerate(lines):
                    if not ln or ln.isspace():
                        continue
                    try:
                        records.append(loads(ln))
                    except json.JSONDecodeError as exc:
                        raise self._error_at(path, offset, lines, i, f"invalid JSON ({exc.msg} at column {exc.colno}): {ln[:80]!r}") from None
            yield from records

    def read_batches(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[pa.RecordBatch]:
        for chunk in _chunks(self.read_records(path, start, stop), BATCH_ROWS):
            yield from pa.Table.from_pylist(chunk).to_batches()


# -- CSV ------------------------------------------------------------------------------------------
class CsvFormat(_LineFormat, FileFormat):
    """Comma-separated values read with ``pyarrow.csv``; records are dicts (column name to value).

    The first line names the columns (``header=0``), unless ``header=None``
    and ``names`` gives them. Column types are those pyarrow infers from the
    start of each file (its first ``infer_bytes`` bytes), so every split of a
    file reads with the same types; ``column_types`` fixes some or all of
    them. A value later in the file that does not fit its column's type is an
    error naming the file and line: give that column's type. ``splittable``
    must be False when a quoted value holds a line break (then a file is read
    whole). ``filename_column`` adds a column with each row's file path.
    """

    def __init__(
        self,
        compression_type: str = CompressionTypes.AUTO,
        delimiter: str = ",",
        quote_char: str | None = '"',
        header: int | None = 0,
        names: Sequence[str] | None = None,
        column_types: dict[str, pa.DataType] | None = None,
        include_columns: Sequence[str] | None = None,
        null_values: Sequence[str] | None = None,
        skip_rows: int = 0,
        splittable: bool = True,
        infer_bytes: int = 1 << 20,
        filename_column: str | None = None,
    ) -> None:
        if header not in (0, None):
            raise ValueError(f"header must be 0 (the first line names the columns) or None, got {header!r}")
        if header is None and not names:
            raise ValueError("a CSV without a header line needs names=[...] for its columns")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise ValueError(f"the CSV delimiter must be one character, got {delimiter!r}")
        _check_compression(compression_type)
        self.compression_type = compression_type
        self.csv_delimiter = delimiter
        self.quote_char = quote_char
        self.has_header = header == 0
        self.names = list(names) if names else None
        self.column_types = dict(column_types or {})
        self.include_columns = list(include_columns) if include_columns else None
        self.null_values = list(null_values) if null_values is not None else None
        self.skip_rows = skip_rows
        self.is_splittable = splittable
        self.infer_bytes = infer_bytes
        self.filename_column = filename_column
        self._names_of: dict[bytes, list[str]] = {}  # header line -> column names, parsed once
        self.delimiter = None
        self.header_lines = skip_rows + (1 if self.has_header else 0)

    def splittable(self, path: str) -> bool:
        return self.is_splittable and super().splittable(path)

    def _options(self, header: bytes, types: dict[str, pa.DataType] | None) -> tuple[Any, Any, Any]:
        import pyarrow.csv as pcsv

        names = self.names
        if names is None:
            names = self._names_of.get(header)
            if names is None:
                names = self._names_of[header] = self._header_names(header)
        read = pcsv.ReadOptions(column_names=names, block_size=BLOCK_SIZE, use_threads=True)
        parse = pcsv.ParseOptions(
            delimiter=self.csv_delimiter,
            quote_char=self.quote_char if self.quote_char is not None else False,
            newlines_in_values=not self.is_splittable,
        )
        kwargs: dict[str, Any] = {"column_types": types or {}}
        if self.include_columns is not None:
            kwargs["include_columns"] = self.include_columns
        if self.null_values is not None:
            kwargs["null_values"] = self.null_values
            kwargs["strings_can_be_null"] = True
        convert = pcsv.ConvertOptions(**kwargs)
        return read, parse, convert

    def _header_names(self, header: bytes) -> list[str]:
        import pyarrow.csv as pcsv

        lines = header.split(b"\n")
        line = lines[self.skip_rows] if len(lines) > self.skip_rows else b""
        if not line.strip():
            return []
        table = pcsv.read_csv(
            io.BytesIO(line + b"\n"),
            read_options=pcsv.ReadOptions(autogenerate_column_names=True),
            parse_options=pcsv.ParseOptions(delimiter=self.csv_delimiter, quote_char=self.quote_char or False),
            convert_options=pcsv.ConvertOptions(column_types={}),
        )
        return [str(table.column(i)[0].as_py()).strip("\r") for i in range(table.num_columns)]

    def _sample(self, blocks: Iterator[tuple[int, bytes]]) -> tuple[int, bytes, bytes]:
        """The start of a file's data that types are inferred from: ``(offset, sample, rest of its block)``.

        The first ``infer_bytes`` bytes after the header, cut at a line end;
        every split of the file takes its types from this same sample.
        """
        parts: list[bytes] = []
        size = 0
        offset = -1
        for at, block in blocks:
            if offset < 0:
                offset = at
            parts.append(block)
            size += len(block)
            if size >= self.infer_bytes:
                break
        data = b"".join(parts)
        if len(data) > self.infer_bytes:
            cut = data.rfind(b"\n", 0, self.infer_bytes)
            if cut >= 0:
                return offset, data[: cut + 1], data[cut + 1:]
        return max(offset, 0), data, b""

    def _infer(self, path: str, header: bytes, offset: int, sample: bytes) -> tuple[dict[str, pa.DataType], pa.Table | None]:
        """Column types inferred from ``sample`` (with the given ones on top), and the sample parsed with them."""
        import pyarrow.csv as pcsv

        read, parse, convert = self._options(header, self.column_types)
        if not sample.strip():
            names = read.column_names
            if self.include_columns is not None:
                names = [n for n in names if n in self.include_columns]
            return {n: self.column_types.get(n, pa.string()) for n in names}, None
        try:
            table = pcsv.read_csv(io.BytesIO(sample), read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise self._locate(path, offset, sample, exc, header, self.column_types) from None
        types = {n: (pa.string() if pa.types.is_null(t) else t) for n, t in zip(table.schema.names, table.schema.types)}
        types.update(self.column_types)
        if any(pa.types.is_null(t) for t in table.schema.types):
            return types, None  # (an empty column is read as strings: parse the sample again as such)
        return types, table

    def _types(self, path: str, header: bytes) -> dict[str, pa.DataType]:
        """Column types inferred from the start of the file, with the given ones on top."""
        offset, sample, _rest = self._sample(self._raw_blocks(path, 0, None))
        return self._infer(path, header, offset, sample)[0]

    def _file_header(self, path: str) -> bytes:
        with FileSystems.open(path, compression_type=self._compression(path)) as f:
            return self._header(f)[0]

    def read_batches(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[pa.RecordBatch]:
        header = self._file_header(path)
        blocks = self._raw_blocks(path, start, stop)
        if start <= len(header):
            # This split starts the file: its first block is the sample the types come from.
            offset, sample, rest = self._sample(blocks)
            types, table = self._infer(path, header, offset, sample)
            if table is not None:
                yield from self._finish(path, table)
            elif sample:
                yield from self._parse(path, header, types, offset, sample)
            if rest:
                blocks = itertools.chain([(offset + len(sample), rest)], blocks)
        else:
            types = self._types(path, header)
        for offset, block in _coalesce(blocks, 8 * BLOCK_SIZE):
            yield from self._parse(path, header, types, offset, block)

    def _parse(self, path: str, header: bytes, types: dict[str, pa.DataType], offset: int, block: bytes) -> Iterator[pa.RecordBatch]:
        import pyarrow.csv as pcsv

        read, parse, convert = self._options(header, types)
        try:
            table = pcsv.read_csv(io.BytesIO(block), read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise self._locate(path, offset, block, exc, header, types) from None
        return self._finish(path, table)

    def _finish(self, path: str, table: pa.Table) -> Iterator[pa.RecordBatch]:
        if self.filename_column is not None:
            table = table.append_column(self.filename_column, pa.array([path] * table.num_rows, pa.string()))
        return iter(table.to_batches())

    def read_records(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        for batch in self.read_batches(path, start, stop):
            yield from batch.to_pylist()

    def _locate(
        self, path: str, offset: int, block: bytes, exc: Exception, header: bytes, types: dict[str, pa.DataType] | None = None
    ) -> FileFormatError:
        """The error for a block pyarrow could not parse, naming the first line that fails on its own."""
        import pyarrow.csv as pcsv

        read, parse, convert = self._options(header, types)

        def fails(data: bytes) -> bool:
            try:
                pcsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
                return False
            except pa.ArrowInvalid:
                return True

        lines = block.split(b"\n")
        lo, hi = 1, len(lines)  # the smallest prefix of lines that fails
        while lo < hi:
            mid = (lo + hi) // 2
            if fails(b"\n".join(lines[:mid]) + b"\n"):
                hi = mid
            else:
                lo = mid + 1
        bad = lo - 1
        at = offset + sum(len(ln) + 1 for ln in lines[:bad])
        line = _line_number(path, at, self._compression(path))
        text = lines[bad][:80].decode("utf-8", "replace") if bad < len(lines) else ""
        return FileFormatError(f"{path}: line {line}: cannot parse {text!r} as CSV: {exc}")


# -- Parquet --------------------------------------------------------------------------------------
class ParquetFormat(FileFormat):
    """Parquet files read with ``pyarrow.parquet``; a split is a range of row groups.

    Records are dicts (column name to value); ``columns`` reads only those
    columns. Arrow batches come straight from the file.
    """

    unit = "row_groups"

    def __init__(self, columns: Sequence[str] | None = None, batch_size: int = BATCH_ROWS) -> None:
        self.columns = list(columns) if columns is not None else None
        self.batch_size = batch_size

    def _open(self, path: str) -> Any:
        import pyarrow.parquet as pq

        f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        try:
            return pq.ParquetFile(f)
        except (pa.ArrowInvalid, OSError) as exc:
            f.close()
            raise FileFormatError(f"{path}: not a readable Parquet file ({exc})") from None

    def row_groups(self, path: str) -> list[int]:
        """The (uncompressed) byte size of each row group of ``path``."""
        pf = self._open(path)
        try:
            md = pf.metadata
            return [md.row_group(i).total_byte_size for i in range(md.num_row_groups)]
        finally:
            pf.close()

    def ranges(self, meta: FileMetadata, target: int) -> list[tuple[int, int]]:
        """Row-group ranges: about one per ``target`` bytes of the file, with whole row groups."""
        groups = len(self.row_groups(meta.path))
        if groups <= 1:
            return [(0, groups)]
        pieces = min(groups, max(1, round(meta.size_in_bytes / max(1, target))))
        step = -(-groups // pieces)
        return [(s, min(s + step, groups)) for s in range(0, groups, step)]

    def subdivide(self, r: FileRange, pieces: int) -> list[FileRange]:
        n = r.stop - r.start
        if pieces <= 1 or n <= 1:
            return [r]
        step = -(-n // pieces)
        return [FileRange(r.path, s, min(s + step, r.stop), r.size) for s in range(r.start, r.stop, step)]

    def read_batches(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[pa.RecordBatch]:
        pf = self._open(path)
        try:
            n = pf.metadata.num_row_groups
            for i in range(start, n if stop is None else min(stop, n)):
                try:
                    batches = list(pf.iter_batches(batch_size=self.batch_size, row_groups=[i], columns=self.columns, use_threads=False))
                except (pa.ArrowException, OSError) as exc:
                    raise FileFormatError(f"{path}: row group {i} cannot be read: {exc}") from None
                yield from batches
        finally:
            pf.close()

    def read_tables(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[pa.Table]:
        """One Arrow table per row group, as ``ReadFromParquetBatched`` yields them."""
        pf = self._open(path)
        try:
            n = pf.metadata.num_row_groups
            for i in range(start, n if stop is None else min(stop, n)):
                try:
                    table = pf.read_row_group(i, columns=self.columns, use_threads=False)
                except (pa.ArrowException, OSError) as exc:
                    raise FileFormatError(f"{path}: row group {i} cannot be read: {exc}") from None
                yield table
        finally:
            pf.close()

    def read_records(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        for batch in self.read_batches(path, start, stop):
            yield from batch.to_pylist()


# -- splits and the source ---------------------------------------------------------------------
def split_ranges(fmt: FileFormat, files: Sequence[FileMetadata], desired_count: int) -> list[list[FileRange]]:
    """The files' ranges in up to ``desired_count`` groups of about equal size, in file order.

    Every position of every file is in exactly one range, so the groups'
    records together are the files' records, each once.
    """
    total = sum(m.size_in_bytes for m in files)
    n = max(1, desired_count)
    target = max(1, -(-total // n))
    ranges = [FileRange(m.path, s, e, m.size_in_bytes) for m in files for s, e in fmt.ranges(m, target)]
    return _balance(ranges, n, lambda r: _weight(fmt, r))


def _weight(fmt: FileFormat, r: FileRange) -> int:
    return max(1, r.stop - r.start)  # bytes, or row groups


def _balance(ranges: list[FileRange], n: int, weight: Callable[[FileRange], int]) -> list[list[FileRange]]:
    """Contiguous groups of ``ranges`` with about equal weight (no more groups than ranges)."""
    if not ranges:
        return [[]]
    n = min(n, len(ranges))
    total = sum(weight(r) for r in ranges)
    groups: list[list[FileRange]] = [[]]
    acc = 0
    for i, r in enumerate(ranges):
        left = len(ranges) - i
        # Start a new group when this one has its share, keeping a range for each group still to fill.
        if groups[-1] and len(groups) < n and (acc >= total * len(groups) / n or left <= n - len(groups)):
            groups.append([])
        groups[-1].append(r)
        acc += weight(r)
    return groups


class FileBasedSource(BoundedSource):
    """The records of the files ``file_pattern`` matches, read with ``fmt``; splits by file and range.

    The pattern is matched when the source is made (an error when nothing
    matches and ``validate`` is set; with ``validate=False`` a pattern that
    matched nothing is matched again when the source is read), and that list
    of files is what every split reads. A split holds :class:`FileRange`
    parts of files. ``what`` names the reader in error messages.
    """

    def __init__(self, file_pattern: str, fmt: FileFormat, validate: bool = True, what: str = "read") -> None:
        self.file_pattern = file_pattern
        self.fmt = fmt
        self.validate = validate
        self.what = what
        self._files: list[FileMetadata] = match_files(file_pattern, validate, what)
        self._ranges: list[FileRange] | None = None

    def _matched(self) -> list[FileMetadata]:
        if not self._files and not self.validate:
            self._files = match_files(self.file_pattern, False, self.what)
        return self._files

    @property
    def files(self) -> list[FileMetadata]:
        """The files this source reads (all the pattern matched, or those of its ranges)."""
        if self._ranges is None:
            return list(self._matched())
        paths = {r.path for r in self._ranges}
        return [m for m in self._files if m.path in paths]

    def file_ranges(self) -> list[FileRange]:
        """The ranges this source reads, in order."""
        if self._ranges is not None:
            return list(self._ranges)
        return [FileRange(m.path, s, e, m.size_in_bytes) for m in self._matched() for s, e in self.fmt.ranges(m, 1 << 62)]

    def read(self) -> Iterator[Any]:
        fmt = self.fmt
        for r in self.file_ranges():
            yield from fmt.read_records(r.path, r.start, r.stop)

    def read_batches(self) -> Iterator[pa.RecordBatch]:
        """The records as Arrow record batches, range by range."""
        for r in self.file_ranges():
            yield from self.fmt.read_batches(r.path, r.start, r.stop)

    def with_ranges(self, ranges: list[FileRange]) -> "FileBasedSource":
        """A copy of this source that reads only ``ranges``."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._ranges = list(ranges)
        return clone

    def split(self, desired_count: int) -> list[BoundedSource]:
        if desired_count <= 1:
            return [self]
        if self._ranges is None:
            groups = split_ranges(self.fmt, self._matched(), desired_count)
        else:
            per = -(-desired_count // max(1, len(self._ranges)))
            pieces = [p for r in self._ranges for p in self.fmt.subdivide(r, per)]
            groups = _balance(pieces, desired_count, lambda r: _weight(self.fmt, r))
        return [self.with_ranges(g) for g in groups]

    def estimate_size(self) -> int | None:
        return sum(m.size_in_bytes for m in self.files)

    def display_name(self) -> str:
        return f"{type(self).__name__}({self.file_pattern})"


class ArrowFileSource(FileBasedSource, ArrowSource):
    """A file source whose format reads Arrow batches (Parquet, CSV): an :class:`~tidal.io.arrowio.ArrowSource`.

    Its elements are dict rows, or timestamped pairs once :meth:`as_pairs`
    names the columns (``ReadArrow(source, key=..., value=..., timestamp=...)``).
    """

    def tables(self) -> Iterator[pa.Table]:
        for r in self.file_ranges():
            for batch in self.fmt.read_batches(r.path, r.start, r.stop):
                yield pa.Table.from_batches([batch])

    def read(self) -> Iterator[Any]:
        if self.is_pairs:
            return ArrowSource.read(self)
        return FileBasedSource.read(self)


def _chunks(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _coalesce(blocks: Iterable[tuple[int, bytes]], size: int) -> Iterator[tuple[int, bytes]]:
    """Consecutive blocks joined up to about ``size`` bytes (each still ends at a record boundary)."""
    parts: list[bytes] = []
    start = 0
    length = 0
    for offset, block in blocks:
        if not parts:
            start = offset
        parts.append(block)
        length += len(block)
        if length >= size:
            yield start, b"".join(parts)
            parts, length = [], 0
    if parts:
        yield start, b"".join(parts)
