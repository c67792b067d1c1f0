"""CSV files in and out: rows as dicts, parsed and written by ``pyarrow.csv``.

``ReadFromCsv(path, **options)`` reads the files ``path`` matches into one
dict per row (column name to value), with the column types pyarrow infers
from the start of each file, or the ones ``dtype`` gives. Files split by
byte range, so a parallel runner reads one file on several workers (unless
``splittable=False``: a quoted value holds a line break). On the micro-batch
runner a batched DoFn reading it gets the parsed Arrow columns directly.
``WriteToCsv(path, ...)`` writes dict rows with a header line, through the
transactional file sink (:mod:`tidal.io.filebasedsink`). Both are also in
:mod:`tidal.io.textio`, as in Beam.

The options are a subset of pandas' ``read_csv``/``to_csv`` names (Beam
passes them to pandas): ``sep`` (or ``delimiter``), ``header`` (0 or
None), ``names``, ``usecols``, ``dtype``, ``skiprows``, ``quotechar``,
``na_values``, ``compression``; an option tidal does not have is an error
that lists the ones it has.

>>> import os, tempfile, tidal as td
>>> folder = tempfile.mkdtemp()
>>> _ = open(os.path.join(folder, "in.csv"), "w").write("city,temp\\nOslo,3.5\\nLima,19\\n")
>>> with td.Pipeline() as p:
...     rows = p | ReadFromCsv(os.path.join(folder, "in.csv"))
...     td.testing.assert_that(rows, td.testing.equal_to([{"city": "Oslo", "temp": 3.5}, {"city": "Lima", "temp": 19.0}]))
...     _ = rows | td.Map(lambda r: {"city": r["city"].upper(), "hot": r["temp"] > 10}) | WriteToCsv(os.path.join(folder, "out"))
>>> print(open(os.path.join(folder, "out-00000-of-00001")).read(), end="")
"city","hot"
"OSLO",false
"LIMA",true
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Sequence

import pyarrow as pa

from tidal.io.filebased import ArrowFileSource, CsvFormat
from tidal.io.filebasedsink import BatchedFileSinkFn, RecordWriter, ShardNaming, SinkFormat, conform, expand_sink, rows_to_table
from tidal.io.filesystems import CompressionTypes
from tidal.model.primitives import Read
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection

__all__ = ["ReadFromCsv", "WriteToCsv", "CsvSource", "CsvSinkFormat", "arrow_type"]

_COMPRESSION = {
    None: CompressionTypes.UNCOMPRESSED, "infer": CompressionTypes.AUTO, "gzip": CompressionTypes.GZIP,
    "bz2": CompressionTypes.BZIP2, "xz": CompressionTypes.LZMA, "zstd": CompressionTypes.ZSTD,
}
_READ_OPTIONS = ("sep", "delimiter", "header", "names", "usecols", "dtype", "skiprows", "quotechar", "na_values", "compression", "compression_type", "validate")
_WRITE_OPTIONS = ("sep", "delimiter", "header", "columns", "file_name_suffix", "shard_name_template", "compression", "compression_type", "skip_if_empty")
_TYPES: dict[Any, pa.DataType] = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_(), bytes: pa.binary()}


def arrow_type(t: Any) -> pa.DataType:
    """An Arrow type from a pyarrow type, a Python type (``int``...) or a name (``"int32"``).

    >>> arrow_type(int), arrow_type("float32"), arrow_type(pa.string())
    (DataType(int64), DataType(float), DataType(string))
    """
    if isinstance(t, pa.DataType):
        return t
    if t in _TYPES:
        return _TYPES[t]
    if isinstance(t, str):
        try:
            return pa.type_for_alias({"str": "string", "object": "string", "int": "int64", "float": "double"}.get(t, t))
        except (ValueError, KeyError):
            pass
    raise TypeError(f"cannot use {t!r} as a column type: give a pyarrow type, int, float, str, bool, bytes or a type name")


def _compression(options: dict[str, Any], what: str) -> str:
    if "compression_type" in options:
        return str(options.pop("compression_type"))
    value = options.pop("compression", "infer")
    if value not in _COMPRESSION:
        raise ValueError(f"{what}: compression={value!r} is not one of {sorted(k for k in _COMPRESSION if k)} or None")
    return _COMPRESSION[value]


def _check_options(what: str, options: dict[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"{what} has no option {unknown[0]!r}; its options are {', '.join(known)}")


class CsvSource(ArrowFileSource):
    """The rows of the CSV files ``path`` matches, as dicts; splits by file and byte range (an ArrowSource)."""

    def __init__(self, path: str, fmt: CsvFormat, validate: bool = True) -> None:
        super().__init__(path, fmt, validate=validate, what="ReadFromCsv")


class ReadFromCsv(PTransform):
    """Reads CSV files into dicts, one per row (column name to value); see the module docs for options.

    ``filename_column`` adds a column holding each row's file path.
    ``splittable=False`` reads each file whole (needed when a quoted value
    holds a line break). A path that matches no file is an error here (pass
    ``validate=False`` to allow it).
    """

    def __init__(self, path: str, *, splittable: bool = True, filename_column: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        _check_options("ReadFromCsv", kwargs, _READ_OPTIONS)
        options = dict(kwargs)
        compression = _compression(options, "ReadFromCsv")
        delimiter = options.pop("sep", options.pop("delimiter", ","))
        header = options.pop("header", 0)
        if header == "infer":
            header = 0 if options.get("names") is None else None
        dtype = options.pop("dtype", None) or {}
        if not isinstance(dtype, dict):
            raise TypeError(f"ReadFromCsv: dtype must map column names to types, got {dtype!r}")
        fmt = CsvFormat(
            compression_type=compression,
            delimiter=delimiter,
            quote_char=options.pop("quotechar", '"'),
            header=header,
            names=options.pop("names", None),
            column_types={name: arrow_type(t) for name, t in dtype.items()},
            include_columns=options.pop("usecols", None),
            null_values=options.pop("na_values", None),
            skip_rows=options.pop("skiprows", 0) or 0,
            splittable=splittable,
            filename_column=filename_column,
        )
        self.path = path
        self.source = CsvSource(path, fmt, validate=options.pop("validate", True))

    def default_label(self) -> str:
        return f"ReadFromCsv({os.path.basename(self.path)})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | "Read" >> Read(self.source)


class _CsvWriter(RecordWriter):
    """Rows to one CSV file: the first rows (or batch) fix its columns and their types."""

    def __init__(self, stream: BinaryIO, spec: "CsvSinkFormat") -> None:
        self.stream = stream
        self.spec = spec
        self.schema: pa.Schema | None = None
        self.writer: Any = None
        self.rows: list[Any] = []

    def write(self, element: Any) -> None:
        self.rows.append(element)
        if len(self.rows) >= 8192:
            self._flush_rows()

    def _flush_rows(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            self.write_batch(rows_to_table(rows, self.schema, "WriteToCsv"))

    def flush(self) -> None:
        self._flush_rows()

    def write_batch(self, batch: Any) -> None:
        if self.rows:
            self._flush_rows()
        if self.schema is None:
            self._start(batch)
        self.writer.write(conform(batch, self.schema, "WriteToCsv"))

    def _start(self, batch: Any) -> None:
        import pyarrow.csv as pcsv

        columns = self.spec.columns
        fields = []
        for name in columns if columns is not None else batch.schema.names:
            index = batch.schema.get_field_index(name)
            t = batch.schema.field(index).type if index >= 0 else pa.string()
            fields.append(pa.field(name, pa.string() if pa.types.is_null(t) else t))
        self.schema = pa.schema(fields)
        options = pcsv.WriteOptions(include_header=self.spec.header, delimiter=self.spec.delimiter)
        self.writer = pcsv.CSVWriter(self.stream, self.schema, write_options=options)

    def close(self) -> None:
        self._flush_rows()
        if self.writer is not None:
            self.writer.close()
        elif self.spec.header and self.spec.columns:
            self.stream.write((self.spec.delimiter.join(f'"{c}"' for c in self.spec.columns) + "\n").encode("utf-8"))


class CsvSinkFormat(SinkFormat):
    """CSV with a header line; ``columns`` picks and orders the columns (default: the first rows' keys)."""

    what = "WriteToCsv"

    def __init__(self, delimiter: str = ",", header: bool = True, columns: Sequence[str] | None = None) -> None:
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise ValueError(f"WriteToCsv: the delimiter must be one character, got {delimiter!r}")
        self.delimiter = delimiter
        self.header = bool(header)
        self.columns = list(columns) if columns is not None else None

    def open(self, stream: BinaryIO) -> RecordWriter:
        return _CsvWriter(stream, self)


class WriteToCsv(PTransform):
    """Writes dict rows to CSV files ``<path>-00000-of-00001`` (Beam's shard names), exactly once under checkpoints.

    Options: ``sep``, ``header`` (default True), ``columns``, and tidal's
    ``file_name_suffix`` and ``shard_name_template``; ``num_shards`` as in
    :class:`~tidal.io.textio.WriteToText`. A file's columns and their types
    are those of its first rows, unless ``columns`` names them.
    """

    def __init__(self, path: str, num_shards: int | None = None, file_naming: Any = None, **kwargs: Any) -> None:
        super().__init__()
        from tidal.io.textio import _unsupported

        _unsupported("WriteToCsv", file_naming=file_naming)
        _check_options("WriteToCsv", kwargs, _WRITE_OPTIONS)
        options = dict(kwargs)
        compression = _compression(options, "WriteToCsv")
        fmt = CsvSinkFormat(options.pop("sep", options.pop("delimiter", ",")), options.pop("header", True), options.pop("columns", None))
        naming = ShardNaming(path, options.pop("shard_name_template", None), options.pop("file_name_suffix", ""))
        self.fn = BatchedFileSinkFn(naming, fmt, compression, num_shards or 0, options.pop("skip_if_empty", False))

    def default_label(self) -> str:
        return f"WriteToCsv({self.fn.naming.basename})"

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return expand_sink(pcoll, self.fn)
