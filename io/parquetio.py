"""Parquet files in and out, as in ``apache_beam.io.parquetio``, Arrow all the way.

``ReadFromParquet`` yields one dict per row; ``ReadFromParquetBatched`` one
``pyarrow.Table`` per row group. Both split by file and row group, so a
parallel runner reads a folder (or one big file) on several workers. On the
micro-batch runner a batched DoFn reading ``ReadFromParquet`` gets the
file's Arrow columns without a Python object per row.

``WriteToParquet`` writes dict rows (checked against ``schema``: a row that
does not fit names the field and the value), ``WriteToParquetBatched``
writes Arrow tables; both through the transactional file sink
(:mod:`tidal.io.filebasedsink`), so the output is exactly once under
checkpoints, and a rerun replaces the prefix's files. Rows reach the
writer as Arrow batches (a batched DoFn), which pyarrow writes as they are.

>>> import os, tempfile, pyarrow as pa, tidal as td
>>> prefix = os.path.join(tempfile.mkdtemp(), "people")
>>> schema = pa.schema([("name", pa.string()), ("age", pa.int64())])
>>> with td.Pipeline() as p:
...     _ = p | td.Create([{"name": "ann", "age": 31}, {"name": "bo", "age": 7}]) | WriteToParquet(prefix, schema, file_name_suffix=".parquet")
>>> os.path.basename(prefix + "-00000-of-00001.parquet") in os.listdir(os.path.dirname(prefix))
True
>>> with td.Pipeline() as p:
...     adults = p | ReadFromParquet(prefix + "-*.parquet") | td.Filter(lambda r: r["age"] >= 18)
...     td.testing.assert_that(adults, td.testing.equal_to([{"name": "ann", "age": 31}]))
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Iterator, Sequence

import pyarrow as pa

from tidal.io.filebased import ArrowFileSource, FileBasedSource, ParquetFormat
from tidal.io.filebasedsink import (
    BatchedFileSinkFn,
    FileSinkFn,
    RecordWriter,
    ShardNaming,
    SinkFormat,
    conform,
    expand_sink,
    rows_to_table,
)
from tidal.io.filesystems import CompressionTypes
from tidal.model.primitives import Read
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection

__all__ = [
    "ReadFromParquet",
    "ReadFromParquetBatched",
    "WriteToParquet",
    "WriteToParquetBatched",
    "ParquetSource",
    "ParquetTableSource",
    "ParquetSinkFormat",
]


class _ParquetTables(ParquetFormat):
    """Parquet read as one Arrow table per row group (the records of ReadFromParquetBatched)."""

    def read_records(self, path: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        return self.read_tables(path, start, stop)


class ParquetSource(ArrowFileSource):
    """The rows (dicts) of the Parquet files ``file_pattern`` matches; splits by file and row group.

    An :class:`~tidal.io.arrowio.ArrowSource`: ``ReadArrow(ParquetSource(...),
    key=..., value=..., timestamp=...)`` reads it as timestamped pairs.
    """

    def __init__(self, file_pattern: str, columns: Sequence[str] | None = None, validate: bool = True) -> None:
        super().__init__(file_pattern, ParquetFormat(columns), validate=validate, what="ReadFromParquet")


class ParquetTableSource(FileBasedSource):
    """One ``pyarrow.Table`` per row group of the Parquet files ``file_pattern`` matches."""

    def __init__(self, file_pattern: str, columns: Sequence[str] | None = None, validate: bool = True) -> None:
        super().__init__(file_pattern, _ParquetTables(columns), validate=validate, what="ReadFromParquetBatched")


class ReadFromParquet(PTransform):
    """Reads Parquet files into one dict per row (column name to value); ``columns`` picks columns.

    A pattern that matches no file is an error here (``validate=False`` allows
    it); a file that is not Parquet, or a row group that cannot be read, is an
    error naming the file (and the row group).
    """

    def __init__(
        self,
        file_pattern: str | None = None,
        min_bundle_size: int = 0,
        validate: bool = True,
        columns: Sequence[str] | None = None,
        as_rows: bool = False,
    ) -> None:
        super().__init__()
        if as_rows:
            raise ValueError("ReadFromParquet: as_rows=True (Beam Rows) is not supported; tidal yields dicts")
        self.file_pattern = file_pattern
        self.source = ParquetSource(file_pattern, columns, validate)  # type: ignore[arg-type]

    def default_label(self) -> str:
        return f"ReadFromParquet({os.path.basename(self.file_pattern or '')})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | "Read" >> Read(self.source)


class ReadFromParquetBatched(PTransform):
    """Reads Parquet files into one ``pyarrow.Table`` per row group.

    >>> import os, tempfile, pyarrow as pa, pyarrow.parquet as pq, tidal as td
    >>> path = os.path.join(tempfile.mkdtemp(), "n.parquet")
    >>> pq.write_table(pa.table({"n": list(range(10))}), path, row_group_size=4)
    >>> with td.Pipeline() as p:
    ...     sizes = p | ReadFromParquetBatched(path) | td.Map(lambda t: t.num_rows)
    ...     td.testing.assert_that(sizes, td.testing.equal_to([4, 4, 2]))
    """

    def __init__(
        self, file_pattern: str | None = None, min_bundle_size: int = 0, validate: bool = True, columns: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        self.file_pattern = file_pattern
        self.source = ParquetTableSource(file_pattern, columns, validate)  # type: ignore[arg-type]

    def default_label(self) -> str:
        return f"ReadFromParquetBatched({os.path.basename(self.file_pattern or '')})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | "Read" >> Read(self.source)


class _ParquetWriter(RecordWriter):
    """Rows, record batches or tables into one Parquet file, in row groups of about ``row_group_buffer_size`` bytes."""

    def __init__(self, stream: BinaryIO, spec: "ParquetSinkFormat") -> None:
        self.stream = stream
        self.spec = spec
        self.schema: pa.Schema | None = spec.schema
        self.rows: list[Any] = []
        self.pending: list[Any] = []
        self.pending_bytes = 0
        self.writer: Any = None

    def write(self, element: Any) -> None:
        if isinstance(element, (pa.Table, pa.RecordBatch)):
            self._flush_rows()
            self.write_batch(element)
            return
        self.rows.append(element)
        if len(self.rows) >= self.spec.record_batch_size:
            self._flush_rows()

    def _flush_rows(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            self.write_batch(rows_to_table(rows, self.schema, "WriteToParquet"))

    def write_batch(self, batch: Any) -> None:
        if self.rows:
            self._flush_rows()
        if self.schema is None:
            self.schema = batch.schema
        batch = conform(batch, self.schema, "WriteToParquet")
        self.pending.append(batch)
        self.pending_bytes += batch.nbytes
        if self.pending_bytes >= self.spec.row_group_buffer_size:
            self._write_group()

    def _write_group(self) -> None:
        if not self.pending:
            return
        import pyarrow.parquet as pq

        assert self.schema is not None
        tables = [b if isinstance(b, pa.Table) else pa.Table.from_batches([b], self.schema) for b in self.pending]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        self.pending, self.pending_bytes = [], 0
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.stream, self.schema, **self.spec.writer_options())
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))

    def close(self) -> None:
        import pyarrow.parquet as pq

        self._flush_rows()
        self._write_group()
        if self.writer is None:  # an empty shard: a file with the schema and no rows
            self.writer = pq.ParquetWriter(self.stream, self.schema or pa.schema([]), **self.spec.writer_options())
        self.writer.close()


class ParquetSinkFormat(SinkFormat):
    """Parquet files with ``schema`` (or the first rows' schema), compressed inside with ``codec``."""

    what = "WriteToParquet"
    compressible = False

    def __init__(
        self,
        schema: pa.Schema | None = None,
        row_group_buffer_size: int = 64 * 1024 * 1024,
        record_batch_size: int = 1000,
        codec: str = "none",
        use_deprecated_int96_timestamps: bool = False,
        use_compliant_nested_type: bool = False,
    ) -> None:
        if schema is not None and not isinstance(schema, pa.Schema):
            raise TypeError(f"WriteToParquet: schema must be a pyarrow.Schema, got {schema!r}")
        if not isinstance(row_group_buffer_size, int) or row_group_buffer_size < 1:
            raise ValueError(f"WriteToParquet: row_group_buffer_size must be a positive number of bytes, got {row_group_buffer_size!r}")
        if not isinstance(record_batch_size, int) or record_batch_size < 1:
            raise ValueError(f"WriteToParquet: record_batch_size must be a positive number of rows, got {record_batch_size!r}")
        self.schema = schema
        self.row_group_buffer_size = row_group_buffer_size
        self.record_batch_size = record_batch_size
        self.codec = codec
        self.use_deprecated_int96_timestamps = use_deprecated_int96_timestamps
        self.use_compliant_nested_type = use_compliant_nested_type

    def writer_options(self) -> dict[str, Any]:
        return {
            "compression": "NONE" if self.codec in (None, "none") else self.codec,
            "use_deprecated_int96_timestamps": self.use_deprecated_int96_timestamps,
            "use_compliant_nested_type": self.use_compliant_nested_type,
        }

    def open(self, stream: BinaryIO) -> RecordWriter:
        return _ParquetWriter(stream, self)


def _check_codec(codec: str) -> None:
    if codec in (None, "none"):
        return
    if not isinstance(codec, str) or not pa.Codec.is_available(codec.lower()):
        raise ValueError(f"WriteToParquet: codec {codec!r} is not one pyarrow can write (such as 'snappy', 'gzip', 'zstd' or 'none')")


class WriteToParquet(PTransform):
    """Writes dict rows to Parquet files ``<prefix>-00000-of-00001<suffix>``, exactly once under checkpoints.

    Each row is a dict (column name to value) checked against ``schema`` (a
    ``pyarrow.Schema``; without one, a file takes the schema of its first
    rows). A row that does not fit fails the step with the field, its type
    and the value, and nothing of the run is published. Rows are written in
    row groups of about ``row_group_buffer_size`` bytes, compressed with
    ``codec``. ``num_shards``, ``shard_name_template`` and the checkpoint
    names are as for :class:`~tidal.io.textio.WriteToText`.
    """

    def __init__(
        self,
        file_path_prefix: str,
        schema: pa.Schema | None = None,
        row_group_buffer_size: int = 64 * 1024 * 1024,
        record_batch_size: int = 1000,
        codec: str = "none",
        use_deprecated_int96_timestamps: bool = False,
        use_compliant_nested_type: bool = False,
        file_name_suffix: str = "",
        num_shards: int = 0,
        shard_name_template: str | None = None,
        mime_type: str = "application/x-parquet",
        triggering_frequency: int | None = None,
    ) -> None:
        super().__init__()
        from tidal.io.textio import _unsupported

        _unsupported("WriteToParquet", triggering_frequency=triggering_frequency)
        _check_codec(codec)
        fmt = ParquetSinkFormat(schema, row_group_buffer_size, record_batch_size, codec, use_deprecated_int96_timestamps, use_compliant_nested_type)
        naming = ShardNaming(file_path_prefix, shard_name_template, file_name_suffix)
        self.fn: FileSinkFn = BatchedFileSinkFn(naming, fmt, CompressionTypes.UNCOMPRESSED, num_shards)

    def default_label(self) -> str:
        return f"{type(self).__name__}({self.fn.naming.basename})"

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return expand_sink(pcoll, self.fn)


class WriteToParquetBatched(WriteToParquet):
    """Writes ``pyarrow.Table`` (or RecordBatch) elements to Parquet files, as :class:`WriteToParquet` writes rows.

    >>> import os, tempfile, pyarrow as pa, pyarrow.parquet as pq, tidal as td
    >>> prefix = os.path.join(tempfile.mkdtemp(), "t")
    >>> with td.Pipeline() as p:
    ...     _ = p | td.Create([pa.table({"x": [1, 2]}), pa.table({"x": [3]})]) | WriteToParquetBatched(prefix)
    >>> sorted(pq.read_table(prefix + "-00000-of-00001").column("x").to_pylist())
    [1, 2, 3]
    """

    def __init__(
        self,
        file_path_prefix: str,
        schema: pa.Schema | None = None,
        codec: str = "none",
        use_deprecated_int96_timestamps: bool = False,
        use_compliant_nested_type: bool = False,
        file_name_suffix: str = "",
        num_shards: int = 0,
        shard_name_template: str | None = None,
        mime_type: str = "application/x-parquet",
        triggering_frequency: int | None = None,
    ) -> None:
        super().__init__(
            file_path_prefix, schema, codec=codec, use_deprecated_int96_timestamps=use_deprecated_int96_timestamps,
            use_compliant_nested_type=use_compliant_nested_type, file_name_suffix=file_name_suffix, num_shards=num_shards,
            shard_name_template=shard_name_template, mime_type=mime_type, triggering_frequency=triggering_frequency,
        )
        fn = self.fn
        self.fn = FileSinkFn(fn.naming, fn.fmt, CompressionTypes.UNCOMPRESSED, num_shards)
