"""Arrow data straight into a batched DoFn: the micro-batch runner's columnar ParDo input.

In a plan fragment ``Read(ArrowSource) -> [WindowInto] -> ParDo(batched
DoFn)`` (a global, fixed or sliding WindowFn; no side inputs, no state) the
source's columns reach ``process_batch`` without becoming Python objects on
the way. For a source of timestamped pairs (``ReadArrow``) the key and value
columns are the batch's ``key`` and ``value``, and each batch of the source
is cut, with numpy, into the same windowed groups the batched kernel would
make from the elements, each a zero-copy slice. For a source of dict rows
(``ReadFromParquet``, ``ReadFromCsv``) the table's columns are the batch's
columns, as the dicts' keys would be, and for a source of values
(``ReadFromText``) its one column is the batch's ``value``; every row has
the minimum timestamp, as a bounded source's plain elements have.

The result is exactly the per-element path's. Columns are given the types
the elements would get (any integer becomes int64, any float float64, large
strings and binaries their plain forms, or the types of ``batch_schema``);
a table with nulls, or with a column the per-element path would type from
its Python values (nested, temporal, decimal...), goes element by element.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pyarrow as pa

from tidal.model.dofn import DoFn
from tidal.model.pipeline import AppliedTransform, PipelineGraph
from tidal.model.primitives import ParDo, Read, WindowInto
from tidal.model.trigger import PANE_INFO_UNKNOWN
from tidal.model.window import GLOBAL_WINDOW, GLOBAL_WINDOWS_TUPLE, FixedWindows, GlobalWindows, SlidingWindows, WindowFn
from tidal.runners.core.batched import KEY_COLUMN, VALUE_COLUMN, ArrowRows, defines_process_batch
from tidal.runners.core.invoker import DoFnSignature
from tidal.runners.core.sources import to_windowed
from tidal.runners.microbatch.columnar import ArrowSourceDriver
from tidal.io.arrowio import ArrowSource, timestamps_us
from tidal.model.time import MIN_TIMESTAMP_US

__all__ = ["ArrowParDoPlan", "find_arrow_pardos", "ArrowRowsSourceDriver"]


@attrs.frozen
class ArrowParDoPlan:
    """A source whose Arrow batches go straight to a batched DoFn."""

    read: AppliedTransform
    window_into: AppliedTransform | None
    pardo: AppliedTransform


def find_arrow_pardos(graph: PipelineGraph) -> list[ArrowParDoPlan]:
    """Every ``Read(ArrowSource) -> [WindowInto] -> ParDo(batched DoFn)`` that can take Arrow columns."""
    consumers = graph.consumers()
    found: list[ArrowParDoPlan] = []
    for node in graph.primitives:
        t = node.transform
        if not (isinstance(t, Read) and isinstance(t.source, ArrowSource) and t.source.arrow_form is not None):
            continue
        (out,) = node.outputs.values()
        users = consumers.get(out, [])
        if len(users) != 1:
            continue
        window_into = None
        nxt = users[0]
        if isinstance(nxt.transform, WindowInto):
            if type(nxt.transform.windowfn) not in (GlobalWindows, FixedWindows, SlidingWindows):
                continue
            window_into = nxt
            users = consumers.get(next(iter(nxt.outputs.values())), [])
            if len(users) != 1:
                continue
            nxt = users[0]
        pardo = nxt.transform
        if not isinstance(pardo, ParDo) or nxt.side_inputs:
            continue
        if not (_takes_arrow_pairs(pardo.fn) if t.source.is_pairs else _takes_arrow_rows(pardo.fn)):
            continue
        found.append(ArrowParDoPlan(node, window_into, nxt))
    return found


def _takes_arrow_pairs(fn: DoFn) -> bool:
    """A batched, stateless DoFn whose batches of (key, value) pairs the columns can stand in for."""
    if not defines_process_batch(fn) or DoFnSignature(fn).is_stateful:
        return False
    schema = fn.batch_schema
    if schema is not None and (not isinstance(schema, pa.Schema) or schema.names != [KEY_COLUMN, VALUE_COLUMN]):
        return False  # the per-element path reports the mismatch
    column = fn.batch_timestamp_column
    return column is None or (isinstance(column, str) and column not in (KEY_COLUMN, VALUE_COLUMN))


def _takes_arrow_rows(fn: DoFn) -> bool:
    """A batched, stateless DoFn: the table's columns can stand in for its dict elements.

    (Whether ``batch_schema`` matches the columns is checked per table: where
    it does not, the rows go element by element, and the kernel reports it.)
    """
    if not defines_process_batch(fn) or DoFnSignature(fn).is_stateful:
        return False
    schema = fn.batch_schema
    return (schema is None or isinstance(schema, pa.Schema)) and (fn.batch_timestamp_column is None or isinstance(fn.batch_timestamp_column, str))


def _element_type(t: pa.DataType) -> pa.DataType | None:
    """The type ``pyarrow.array`` gives the Python values of a column of type ``t``, for simple types."""
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_float32(t) or pa.types.is_float64(t):
        return pa.float64()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_boolean(t):
        return pa.bool_()
    return None


class ArrowRowsSourceDriver(ArrowSourceDriver):
    """Reads an ArrowSource as tables and emits them as :class:`ArrowRows` groups.

    Each group holds the rows that share their windows (and their timestamp,
    unless the DoFn sets ``batch_timestamp_column``), as the batched kernel
    groups elements; pane information is unknown, as for any source.
    """

    def __init__(self, label: str, source: ArrowSource, bundle_size: int, windowfn: WindowFn, dofn: DoFn) -> None:
        super().__init__(label, source, bundle_size)
        self.windowfn = windowfn
        self.by_time = dofn.batch_timestamp_column is None
        self.timestamp_column = dofn.batch_timestamp_column
        schema = dofn.batch_schema
        self.schema_names: list[str] | None = list(schema.names) if schema is not None else None
        self.types: list[pa.DataType] | None = list(schema.types) if schema is not None else None

    def emit(self, bundle: Any, tag: str = "out") -> None:
        """Send ``bundle`` (a table of the source's rows) on as groups of Arrow rows."""
        super().emit(self.groups(bundle), tag)

    def groups(self, table: pa.Table) -> list[Any]:
        """The windowed-value tuples for ``table``: ArrowRows groups, or elements where columns cannot stand in."""
        source = self.source
        if not source.is_pairs:
            return self._row_groups(table, source.arrow_form or "dict")
        assert source.key is not None and source.value is not None and source.timestamp is not None
        ts_col = table.column(source.timestamp)
        columns = self._columns(table.column(source.key), table.column(source.value)) if not ts_col.null_count else None
        if columns is None:
            return self._elements(table)
        ts = timestamps_us(ts_col)
        order, bounds = self._runs(ts)
        if order is not None:
            columns = [c.take(order) for c in columns]
            ts = ts[order]
        batch = pa.RecordBatch.from_arrays(columns, names=[KEY_COLUMN, VALUE_COLUMN])
        assign = self.windowfn._assign_us
        global_windows = type(self.windowfn) is GlobalWindows
        out: list[Any] = []
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            first = int(ts[a])
            ws = GLOBAL_WINDOWS_TUPLE if global_windows else assign(first, None, GLOBAL_WINDOW)
            stamps = ts[a:b]
            t = first if self.by_time else int(stamps.min())
            out.append((ArrowRows(batch.slice(a, b - a), stamps), t, ws, PANE_INFO_UNKNOWN))
        return out

    def _row_groups(self, table: pa.Table, kind: str) -> list[Any]:
        """Dict rows or values: one group of all of ``table``'s rows at the minimum timestamp (or elements)."""
        names = table.schema.names
        if (self.schema_names is not None and self.schema_names != names) or self.timestamp_column in names:
            return self._elements(table)  # the kernel reports the mismatch
        columns = self._columns(*table.columns)
        if columns is None or not table.num_rows:
            return self._elements(table)
        batch = pa.RecordBatch.from_arrays(columns, names=names)
        ws = GLOBAL_WINDOWS_TUPLE if type(self.windowfn) is GlobalWindows else self.windowfn._assign_us(MIN_TIMESTAMP_US, None, GLOBAL_WINDOW)
        stamps = np.full(table.num_rows, MIN_TIMESTAMP_US, dtype=np.int64)
        return [(ArrowRows(batch, stamps, kind), MIN_TIMESTAMP_US, ws, PANE_INFO_UNKNOWN)]

    def _columns(self, *chunks: pa.ChunkedArray) -> list[pa.Array] | None:
        """The columns typed as the elements would make them, or None to go element by element."""
        out = []
        for i, chunked in enumerate(chunks):
            column = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
            if self.types is not None:
                target = self.types[i]
                if column.type != target:
                    try:
                        # What the per-element path does: Python values into the schema's type.
                        column = pa.array(column.to_pylist(), type=target)
                    except (pa.ArrowException, OverflowError, TypeError, ValueError):
                        return None  # the per-element path reports it
            else:
                # Without a schema, a null goes to a batch of its own: leave that to the elements.
                target = _element_type(column.type)
                if target is None or column.null_count:
                    return None
                if column.type != target:
                    try:
                        column = column.cast(target, safe=True)
                    except pa.ArrowException:
                        return None  # (an unsigned value too big for int64)
            out.append(column)
        return out

    def _runs(self, ts: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """A stable order that makes each group contiguous (None if already so), and the group bounds."""
        n = len(ts)
        wfn = self.windowfn
        if self.by_time:
            keys = [ts]
        elif isinstance(wfn, FixedWindows):
            keys = [ts - (ts - wfn.offset_us) % wfn.size_us]
        elif isinstance(wfn, SlidingWindows):
            since = (ts - wfn.offset_us) % wfn.period_us
            keys = [ts - since, -((since - wfn.size_us) // wfn.period_us)]
        else:
            return None, np.array([0, n])
        order: np.ndarray | None = None
        if len(keys) > 1 or (n > 1 and bool((keys[0][1:] < keys[0][:-1]).any())):
            order = np.lexsort(keys[::-1])
            if bool((order == np.arange(n)).all()):
                order = None
            else:
                keys = [k[order] for k in keys]
        change = np.zeros(max(n - 1, 0), dtype=bool)
        for k in keys:
            change |= k[1:] != k[:-1]
        return order, np.concatenate(([0], np.flatnonzero(change) + 1, [n]))

    def _elements(self, table: pa.Table) -> list[Any]:
        """The rows as the per-element path has them: (key, value) elements in their windows."""
        bundle = to_windowed(list(self.source.elements_of(table)))
        if type(self.windowfn) is GlobalWindows:
            return bundle
        assign = self.windowfn._assign_us
        return [(v, t, assign(t, v, GLOBAL_WINDOW), p) for v, t, _ws, p in bundle]
