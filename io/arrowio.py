"""Arrow sources: bounded sources whose data are Arrow tables, read as rows or as timestamped pairs.

An :class:`ArrowSource` yields its data as Arrow tables (:meth:`~ArrowSource.tables`)
and its elements in one of two forms: *rows* (a dict per row, column name to
value, as ``ReadFromParquet`` and ``ReadFromCsv`` give them) or *pairs*
(``TimestampedValue((key, value), seconds)`` from three named columns).
Every runner reads one element by element; the micro-batch runner reads it
as whole Arrow tables: a batched DoFn after it gets the columns without a
Python object per row (:mod:`tidal.runners.microbatch.arrow_pardo`), and a
keyed sum/count/mean/min/max of pairs over global, fixed or sliding windows
runs on Arrow kernels (:mod:`tidal.runners.microbatch.columnar`).

``ArrowBatchSource`` holds in-memory batches; the Parquet and CSV sources of
:mod:`tidal.io` are ArrowSources over files, and :class:`ReadArrow` reads
either as pairs.

>>> import pyarrow as pa
>>> import tidal as td
>>> table = pa.table({"k": [1, 2, 1], "v": [1.0, 2.0, 3.0], "ts": [0, 10, 20]})
>>> with td.Pipeline() as p:
...     sums = p | ReadArrow(table, key="k", value="v", timestamp="ts") | td.CombinePerKey(sum)
...     td.testing.assert_that(sums, td.testing.equal_to([(1, 4.0), (2, 2.0)]))
"""

from __future__ import annotations

import abc
import copy
from typing import Any, Iterable, Iterator, Sequence, Union

from typing_extensions import TypeAlias

import numpy as np
import pyarrow as pa

from tidal.model.primitives import BoundedSource, Read
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, Timestamp
from tidal.model.window import TimestampedValue

__all__ = ["ArrowSource", "ArrowBatchSource", "ReadArrow", "timestamps_us"]

ArrowData: TypeAlias = Union[pa.Table, pa.RecordBatch, Sequence[pa.RecordBatch]]


def timestamps_us(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Event times in int64 microseconds from seconds (int or float) or an Arrow timestamp.

    Float seconds round as ``TimestampedValue`` rounds them (half to even).
    """
    t = column.type
    if pa.types.is_timestamp(t):
        us = column.cast(pa.timestamp("us")).cast(pa.int64())
        arr = np.asarray(us.to_numpy(zero_copy_only=False), dtype=np.int64)
    elif pa.types.is_integer(t):
        arr = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64) * 1_000_000
    elif pa.types.is_floating(t):
        arr = np.rint(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64) * 1e6).astype(np.int64)
    else:
        raise TypeError(f"the timestamp column must hold seconds (int or float) or Arrow timestamps, not {t}")
    if len(arr) and (arr.min() < MIN_TIMESTAMP_US or arr.max() > MAX_TIMESTAMP_US):
        raise ValueError("a timestamp in the Arrow timestamp column is outside [MIN_TIMESTAMP, MAX_TIMESTAMP]")
    return arr


def _as_batches(data: Any) -> list[pa.RecordBatch]:
    if isinstance(data, pa.Table):
        return data.to_batches()
    if isinstance(data, pa.RecordBatch):
        return [data]
    batches = list(data)
    for b in batches:
        if not isinstance(b, pa.RecordBatch):
            raise TypeError(f"ArrowBatchSource needs a pyarrow Table, RecordBatch or RecordBatches; got {type(b).__name__}")
    return batches


class ArrowSource(BoundedSource):
    """A bounded source whose data are Arrow tables; its elements are rows (dicts) or timestamped pairs.

    Subclasses give :meth:`tables`. With ``key``, ``value`` and ``timestamp``
    set (see :meth:`as_pairs`) the elements are
    ``TimestampedValue((key, value), seconds)``; without them, one dict per row.
    """

    key: str | None = None
    value: str | None = None
    timestamp: str | None = None

    @abc.abstractmethod
    def tables(self) -> Iterator[pa.Table]:
        """The source's data, in order, as Arrow tables."""

    @property
    def is_pairs(self) -> bool:
        """Whether the elements are ``(key, value)`` pairs with timestamps (else dict rows)."""
        return self.key is not None

    @property
    def arrow_form(self) -> str | None:
        """What a table's rows stand for: ``"pair"``, ``"dict"`` rows, or ``"value"`` (the one column
        ``value`` holds the elements); None where the elements are not what the tables hold."""
        return "pair" if self.key is not None else "dict"

    def as_pairs(self, key: str, value: str, timestamp: str) -> "ArrowSource":
        """A copy of this source whose elements are ``TimestampedValue((row[key], row[value]), row[timestamp])``."""
        clone = copy.copy(self)
        clone.key, clone.value, clone.timestamp = key, value, timestamp
        return clone

    def columns(self, batch: pa.RecordBatch) -> tuple[Any, Any, np.ndarray]:
        """The key column, value column and timestamps (µs) of ``batch`` (pairs only)."""
        assert self.key is not None and self.value is not None and self.timestamp is not None
        return batch.column(self.key), batch.column(self.value), timestamps_us(batch.column(self.timestamp))

    def elements_of(self, table: pa.Table | pa.RecordBatch) -> Iterator[Any]:
        """The elements the rows of ``table`` are."""
        if not self.is_pairs:
            if self.arrow_form == "value":
                yield from table.column("value").to_pylist()
            else:
                yield from table.to_pylist()
            return
        missing = [c for c in (self.key, self.value, self.timestamp) if table.schema.get_field_index(c) < 0]
        if missing:
            raise ValueError(f"{self.display_name()}: no column {missing[0]!r} in {table.schema.names}")
        ts_col = table.column(self.timestamp)
        keys = table.column(self.key).to_pylist()
        values = table.column(self.value).to_pylist()
        if pa.types.is_integer(ts_col.type) or pa.types.is_floating(ts_col.type):
            timestamps_us(ts_col)  # range check
            seconds: Iterable[Any] = ts_col.to_pylist()
        else:
            seconds = map(Timestamp.from_micros, timestamps_us(ts_col).tolist())
        for k, v, t in zip(keys, values, seconds):
            yield TimestampedValue((k, v), t)

    def read(self) -> Iterator[Any]:
        for table in self.tables():
            yield from self.elements_of(table)


class ArrowBatchSource(ArrowSource):
    """In-memory Arrow record batches read as ``TimestampedValue((key, value), seconds)`` elements, or as rows.

    ``key``, ``value`` and ``timestamp`` name columns; the timestamp column
    holds seconds (int64 or float64) or an Arrow timestamp type. Without the
    three, the elements are dict rows (column name to value).
    """

    def __init__(self, batches_or_table: ArrowData, key: str | None = None, value: str | None = None, timestamp: str | None = None) -> None:
        self.batches = _as_batches(batches_or_table)
        named = [c for c in (key, value, timestamp) if c is not None]
        if named and len(named) != 3:
            raise ValueError("ArrowBatchSource: give key, value and timestamp columns together, or none of them for dict rows")
        self.key = key
        self.value = value
        self.timestamp = timestamp
        schema = self.batches[0].schema if self.batches else None
        if schema is not None and key is not None:
            missing = [c for c in (key, value, timestamp) if schema.get_field_index(c) < 0]
            if missing:
                raise ValueError(f"ArrowBatchSource: no column {missing[0]!r} in {schema.names}")
            timestamps_us(pa.array([], schema.field(timestamp).type))  # type: ignore[arg-type]  # reject a bad type now

    @property
    def num_rows(self) -> int:
        return sum(b.num_rows for b in self.batches)

    def tables(self) -> Iterator[pa.Table]:
        if self.batches:
            yield pa.Table.from_batches(self.batches)

    def read(self) -> Iterator[Any]:
        for batch in self.batches:
            yield from self.elements_of(batch)

    def split(self, desired_count: int) -> list[BoundedSource]:
        total = self.num_rows
        if desired_count <= 1 or total == 0:
            return [self]
        table = pa.Table.from_batches(self.batches)
        step = -(-total // desired_count)
        return [
            ArrowBatchSource(table.slice(start, step), self.key, self.value, self.timestamp)  # type: ignore[arg-type]
            for start in range(0, total, step)
        ]

    def estimate_size(self) -> int | None:
        return sum(b.nbytes for b in self.batches)

    def validation_sample(self) -> Any:
        # Apply-time validation pickles this: an empty batch with the same schema, not the data
        # (an empty slice would pickle the whole buffers it shares with the data).
        schema = self.batches[0].schema if self.batches else None
        empty = [pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)] if schema is not None else []
        return ArrowBatchSource(empty, self.key, self.value, self.timestamp)  # type: ignore[arg-type]

    def display_name(self) -> str:
        return "ArrowBatchSource"


class ReadArrow(PTransform):
    """Read Arrow data as ``(key, value)`` elements stamped with the timestamp column, or as dict rows.

    The data are in-memory (a Table, RecordBatches) or an :class:`ArrowSource`
    over files, such as ``tidal.io.parquetio.ParquetSource``: on the
    micro-batch runner a keyed aggregate of a Parquet folder then runs on
    Arrow kernels from the file to the panes. Without ``key``, ``value`` and
    ``timestamp`` the elements are dict rows (in-memory data only).

    >>> import pyarrow as pa, tidal as td
    >>> with td.Pipeline() as p:
    ...     rows = p | ReadArrow(pa.table({"a": [1, 2], "b": ["x", "y"]}))
    ...     td.testing.assert_that(rows, td.testing.equal_to([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]))
    """

    def __init__(
        self, batches_or_table: ArrowData | ArrowSource, key: str | None = None, value: str | None = None, timestamp: str | None = None
    ) -> None:
        super().__init__()
        if isinstance(batches_or_table, ArrowSource):
            if key is None or value is None or timestamp is None:
                raise ValueError("ReadArrow over an ArrowSource needs key, value and timestamp columns (read it with its own transform for rows)")
            self.source: ArrowSource = batches_or_table.as_pairs(key, value, timestamp)
        else:
            self.source = ArrowBatchSource(batches_or_table, key, value, timestamp)

    def default_label(self) -> str:
        return "ReadArrow"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | Read(self.source)
