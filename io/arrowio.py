"""Arrow sources: read (key, value) pairs with event timestamps from pyarrow batches.

``ArrowBatchSource`` is an ordinary BoundedSource, so every runner can run
it element by element; the micro-batch runner also reads it as whole Arrow
batches and, for a keyed sum/count/mean/min/max over global, fixed or
sliding windows, aggregates them with Arrow kernels.

>>> import pyarrow as pa
>>> import tidal as td
>>> table = pa.table({"k": [1, 2, 1], "v": [1.0, 2.0, 3.0], "ts": [0, 10, 20]})
>>> with td.Pipeline() as p:
...     sums = p | ReadArrow(table, key="k", value="v", timestamp="ts") | td.CombinePerKey(sum)
...     td.testing.assert_that(sums, td.testing.equal_to([(1, 4.0), (2, 2.0)]))
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence, Union

from typing_extensions import TypeAlias

import numpy as np
import pyarrow as pa

from tidal.model.primitives import BoundedSource, Read
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, Timestamp
from tidal.model.window import TimestampedValue

__all__ = ["ArrowBatchSource", "ReadArrow", "timestamps_us"]

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


class ArrowBatchSource(BoundedSource):
    """Arrow record batches read as ``TimestampedValue((key, value), seconds)`` elements.

    ``key``, ``value`` and ``timestamp`` name columns; the timestamp column
    holds seconds (int64 or float64) or an Arrow timestamp type.
    """

    def __init__(self, batches_or_table: ArrowData, key: str, value: str, timestamp: str) -> None:
        self.batches = _as_batches(batches_or_table)
        self.key = key
        self.value = value
        self.timestamp = timestamp
        schema = self.batches[0].schema if self.batches else None
        if schema is not None:
            missing = [c for c in (key, value, timestamp) if schema.get_field_index(c) < 0]
            if missing:
                raise ValueError(f"ArrowBatchSource: no column {missing[0]!r} in {schema.names}")
            timestamps_us(pa.array([], schema.field(timestamp).type))  # reject a bad type now

    @property
    def num_rows(self) -> int:
        return sum(b.num_rows for b in self.batches)

    def columns(self, batch: pa.RecordBatch) -> tuple[Any, Any, np.ndarray]:
        """The key column, value column and timestamps (µs) of ``batch``."""
        return batch.column(self.key), batch.column(self.value), timestamps_us(batch.column(self.timestamp))

    def read(self) -> Iterator[Any]:
        for batch in self.batches:
            ts_col = batch.column(self.timestamp)
            keys = batch.column(self.key).to_pylist()
            values = batch.column(self.value).to_pylist()
            if pa.types.is_integer(ts_col.type) or pa.types.is_floating(ts_col.type):
                timestamps_us(ts_col)  # range check
                seconds: Iterable[Any] = ts_col.to_pylist()
            else:
                seconds = map(Timestamp.from_micros, timestamps_us(ts_col).tolist())
            for k, v, t in zip(keys, values, seconds):
                yield TimestampedValue((k, v), t)

    def split(self, desired_count: int) -> list[BoundedSource]:
        total = self.num_rows
        if desired_count <= 1 or total == 0:
            return [self]
        table = pa.Table.from_batches(self.batches)
        step = -(-total // desired_count)
        return [
            ArrowBatchSource(table.slice(start, step), self.key, self.value, self.timestamp)
            for start in range(0, total, step)
        ]

    def estimate_size(self) -> int | None:
        return sum(b.nbytes for b in self.batches)

    def validation_sample(self) -> Any:
        # Apply-time validation pickles this: an empty slice with the same schema, not the data.
        empty = [self.batches[0].slice(0, 0)] if self.batches else []
        return ArrowBatchSource(empty, self.key, self.value, self.timestamp)

    def display_name(self) -> str:
        return "ArrowBatchSource"


class ReadArrow(PTransform):
    """Read Arrow data as ``(key, value)`` elements stamped with the timestamp column."""

    def __init__(self, batches_or_table: ArrowData, key: str, value: str, timestamp: str) -> None:
        super().__init__()
        self.source = ArrowBatchSource(batches_or_table, key, value, timestamp)

    def default_label(self) -> str:
        return "ReadArrow"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | Read(self.source)
