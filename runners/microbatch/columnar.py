"""The columnar fast path: keyed windowed aggregates computed with Arrow kernels.

A plan fragment ``Read(ArrowSource of pairs) -> [WindowInto] -> CombinePerKey``
with a known combiner (sum, count, mean, min, max), a global, fixed or
sliding WindowFn, the default trigger, no allowed lateness and end-of-window
output timestamps is run here instead of element by element: each batch is
grouped by (key, window start) into partial aggregates that stay columnar
across batches, and when the watermark passes a window's end its rows are
turned into exactly the panes the per-element path would emit.

When the aggregate's only consumer is a batched DoFn (such as
``WriteToParquet``), the panes of each window go to it as one group of
Arrow rows (``key`` and ``value`` columns) instead of Python tuples, so a
columnar aggregate is written without a Python object per row.
"""

from __future__ import annotations

from typing import Any, Iterator

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.model.combinefn import MaxCombineFn, MinCombineFn, SumCombineFn
from tidal.model.pipeline import AppliedTransform, PipelineGraph
from tidal.model.primitives import CombinePerKey, Read, WindowInto
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.model.trigger import PaneInfo, PaneInfoTiming
from tidal.model.window import (
    GLOBAL_WINDOW,
    GLOBAL_WINDOWS_TUPLE,
    FixedWindows,
    GlobalWindows,
    IntervalWindow,
    SlidingWindows,
    TimestampCombiner,
)
from tidal.runners.core.sources import SourceDriver, SourceEvent
from tidal.io.arrowio import ArrowSource
from tidal.runners.core.errors import UserCodeError
from tidal.transforms.combiners import CountCombineFn, MeanCombineFn

__all__ = ["ArrowCombinePlan", "find_arrow_combines", "ArrowSourceDriver", "ArrowWindowedCombine"]

#: The pane of a window's only firing under the default trigger without lateness.
ONLY_PANE = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)

_AGGREGATE_OF: dict[type, str] = {
    SumCombineFn: "sum",
    CountCombineFn: "count",
    MeanCombineFn: "mean",
    MinCombineFn: "min",
    MaxCombineFn: "max",
}


@attrs.frozen
class ArrowCombinePlan:
    """A fragment of the graph that runs on Arrow kernels."""

    read: AppliedTransform
    window_into: AppliedTransform | None
    combine: AppliedTransform
    aggregate: str
    #: Whether the panes go on as Arrow rows (the only consumer is a batched DoFn that takes them).
    arrow_output: bool = False


def find_arrow_combines(graph: PipelineGraph) -> list[ArrowCombinePlan]:
    """Every ``Read(ArrowSource of pairs) -> [WindowInto] -> CombinePerKey`` the fast path can run."""
    consumers = graph.consumers()
    found: list[ArrowCombinePlan] = []
    for node in graph.primitives:
        t = node.transform
        if not (isinstance(t, Read) and isinstance(t.source, ArrowSource) and t.source.is_pairs):
            continue
        (out,) = node.outputs.values()
        users = consumers.get(out, [])
        if len(users) != 1 or users[0].side_inputs:
            continue
        window_into = None
        nxt = users[0]
        if isinstance(nxt.transform, WindowInto):
            window_into = nxt
            users = consumers.get(next(iter(nxt.outputs.values())), [])
            if len(users) != 1:
                continue
            nxt = users[0]
        if not isinstance(nxt.transform, CombinePerKey) or nxt.side_inputs:
            continue
        aggregate = _AGGREGATE_OF.get(type(nxt.transform.fn))
        w = nxt.inputs[0].windowing
        if (
            aggregate is None
            or type(w.windowfn) not in (GlobalWindows, FixedWindows, SlidingWindows)
            or not w.has_default_trigger
            or w.evictor is not None
            or w.allowed_lateness_us != 0
            or w.timestamp_combiner is not TimestampCombiner.OUTPUT_AT_EOW
        ):
            continue
        after = consumers.get(next(iter(nxt.outputs.values())), [])
        arrow_output = len(after) == 1 and not after[0].side_inputs and _takes_arrow_panes(after[0].transform)
        found.append(ArrowCombinePlan(node, window_into, nxt, aggregate, arrow_output))
    return found


def _takes_arrow_panes(transform: Any) -> bool:
    """A batched, stateless DoFn that takes (key, value) batches: the panes can reach it as Arrow rows."""
    from tidal.model.primitives import ParDo
    from tidal.runners.microbatch.arrow_pardo import _takes_arrow_pairs

    return isinstance(transform, ParDo) and _takes_arrow_pairs(transform.fn)


class ArrowSourceDriver(SourceDriver):
    """Reads an ArrowSource as Arrow tables of up to ``bundle_size`` rows; the offset counts rows.

    The source's tables are read as they are needed (a file source is never
    read whole into memory); a restored driver skips the rows before its offset.
    """

    def __init__(self, label: str, source: ArrowSource, bundle_size: int) -> None:
        super().__init__(label)
        self.source = source
        self.bundle_size = bundle_size
        self._tables: Iterator[pa.Table] | None = None
        self._pending: pa.Table | None = None

    def open(self, clock: Any) -> None:
        self._tables = self._read()
        self._pending = None
        skip = int(self.offset or 0)
        while skip > 0:
            table = self._next()
            if table is None:
                break
            if table.num_rows > skip:
                self._pending = table.slice(skip)
            skip -= table.num_rows

    def _read(self) -> Iterator[pa.Table]:
        try:
            yield from self.source.tables()
        except Exception as exc:
            raise UserCodeError(self.label, self.source.read, exc, has_element=False) from exc

    def _next(self) -> pa.Table | None:
        if self._pending is not None:
            table, self._pending = self._pending, None
            return table
        assert self._tables is not None, "open() first"
        for table in self._tables:
            if table.num_rows:
                return table
        return None

    def poll(self, clock: Any) -> SourceEvent:
        if self._tables is None:
            self.open(clock)
        parts: list[pa.Table] = []
        rows = 0
        while rows < self.bundle_size:
            table = self._next()
            if table is None:
                break
            if parts and table.schema != parts[0].schema:
                self._pending = table  # (another file's columns: a bundle of its own)
                break
            take = self.bundle_size - rows
            if table.num_rows > take:
                self._pending = table.slice(take)
                table = table.slice(0, take)
            parts.append(table)
            rows += table.num_rows
        self.offset = int(self.offset or 0) + rows
        if self._pending is None:
            self._pending = self._next()  # look ahead: is there more?
            if self._pending is None:
                self.done = True
                self.watermark = MAX_TIMESTAMP_US
        if not rows:
            return SourceEvent()
        return SourceEvent(parts[0] if len(parts) == 1 else pa.concat_tables(parts))  # type: ignore[arg-type]


class ArrowWindowedCombine:
    """Partial aggregates per (key, window start) as Arrow tables, fired by the watermark."""

    def __init__(self, plan: ArrowCombinePlan, compact_rows: int = 1_000_000) -> None:
        source: ArrowSource = plan.read.transform.source  # type: ignore[union-attr]
        self.source = source
        self.aggregate = plan.aggregate
        self.arrow_output = plan.arrow_output
        self.windowfn = plan.combine.inputs[0].windowing.windowfn
        self.compact_rows = compact_rows
        #: Compacted partial aggregates (one row per key and window start) and newer partials.
        self.state: pa.Table | None = None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.input_watermark = MIN_TIMESTAMP_US
        self.dropped = 0
        self._windows: dict[int, tuple[Any, ...]] = {}

    # -- per batch -----------------------------------------------------------------------
    def process(self, table: pa.Table) -> None:
        """Aggregate one batch into partials; drop rows whose windows already expired."""
        # Vectorized over the whole batch: numpy for window arithmetic, Arrow for the group-by.
        keys, values, ts = self.source.columns(table)  # type: ignore[arg-type]
        wfn = self.windowfn
        if isinstance(wfn, GlobalWindows):
            starts = np.zeros(len(ts), dtype=np.int64)
            if self.input_watermark > GLOBAL_WINDOW.max_timestamp_us:
                self.dropped += len(ts)
                return
        elif isinstance(wfn, FixedWindows):
            starts = ts - (ts - wfn.offset_us) % wfn.size_us
        else:
            keys, values, starts = self._sliding(keys, values, ts)
        if not isinstance(wfn, GlobalWindows) and self.input_watermark > MIN_TIMESTAMP_US:
            live = starts + self._size_us() > self.input_watermark
            if not live.all():
                self.dropped += int(len(live) - live.sum())
                mask = pa.array(live)
                keys, values, starts = pc.filter(keys, mask), pc.filter(values, mask), starts[live]
        if not len(starts):
            return
        partial = self._dense_partial(keys, values, starts)
        if partial is None:
            batch = pa.table({"k": keys, "s": starts, "v": values})
            partial = batch.group_by(["k", "s"], use_threads=False).aggregate(self._first_aggregates())
        self._add_partial(partial)

    def _dense_partial(self, keys: Any, values: Any, starts: np.ndarray) -> pa.Table | None:
        """Sum/count/mean of float values by integer key with ``np.bincount``, when the keys are dense.

        One pass over the rows into a (key, window) grid; used only where the
        grid is not much larger than the batch, else the Arrow hash group-by runs.
        """
        a = self.aggregate
        if a not in ("sum", "count", "mean") or not pa.types.is_integer(keys.type) or keys.null_count:
            return None
        if a != "count" and (not pa.types.is_floating(values.type) or values.null_count):
            return None
        k = np.asarray(keys.to_numpy() if isinstance(keys, pa.Array) else keys.to_numpy(), dtype=np.int64)
        kmin, kmax = int(k.min()), int(k.max())
        smin, smax = int(starts.min()), int(starts.max())
        step = self.windowfn.period_us if isinstance(self.windowfn, SlidingWindows) else getattr(self.windowfn, "size_us", 1)
        nk, nw = kmax - kmin + 1, (smax - smin) // step + 1
        if nk * nw > max(4 * len(k), 1 << 16):
            return None
        idx = (k - kmin) * nw + (starts - smin) // step
        counts = np.bincount(idx, minlength=nk * nw)
        present = np.flatnonzero(counts)
        cols: dict[str, Any] = {"k": present // nw + kmin, "s": (present % nw) * step + smin}
        if a in ("sum", "mean"):
            v = values.to_numpy() if isinstance(values, pa.Array) else values.to_numpy()
            cols["v_sum"] = np.bincount(idx, weights=v, minlength=nk * nw)[present]
        if a in ("count", "mean"):
            cols["count_all"] = counts[present]
        return pa.table(cols)

    def _size_us(self) -> int:
        return self.windowfn.size_us  # type: ignore[attr-defined,no-any-return]

    def _sliding(self, keys: Any, values: Any, ts: np.ndarray) -> tuple[Any, Any, np.ndarray]:
        wfn: SlidingWindows = self.windowfn  # type: ignore[assignment]
        period, size = wfn.period_us, wfn.size_us
        last_start = ts - (ts - wfn.offset_us) % period
        parts_k, parts_v, parts_s = [], [], []
        for i in range(-(-size // period)):
            start = last_start - i * period
            inside = ts < start + size
            if inside.all():
                parts_k.append(keys)
                parts_v.append(values)
                parts_s.append(start)
            elif inside.any():
                mask = pa.array(inside)
                parts_k.append(pc.filter(keys, mask))
                parts_v.append(pc.filter(values, mask))
                parts_s.append(start[inside])
        return _concat(parts_k), _concat(parts_v), np.concatenate(parts_s)

    def _first_aggregates(self) -> list[tuple[Any, ...]]:
        a = self.aggregate
        if a == "count":
            return [([], "count_all")]
        if a == "mean":
            return [("v", "sum"), ([], "count_all")]
        return [("v", a)]

    def _merge_aggregates(self) -> list[tuple[Any, ...]]:
        a = self.aggregate
        if a in ("count",):
            return [("count_all", "sum")]
        if a == "mean":
            return [("v_sum", "sum"), ("count_all", "sum")]
        return [(f"v_{a}", "sum" if a == "sum" else a)]

    def _add_partial(self, partial: pa.Table) -> None:
        self.pending.append(partial)
        self.pending_rows += partial.num_rows
        state_rows = self.state.num_rows if self.state is not None else 0
        if self.pending_rows >= max(self.compact_rows, 2 * state_rows):
            self._compact()

    def _compact(self) -> None:
        """Merge the pending partials into the state (one row per key and window)."""
        if not self.pending:
            return
        parts = ([self.state] if self.state is not None else []) + self.pending
        self.pending, self.pending_rows = [], 0
        table = pa.concat_tables(parts)
        merged = table.group_by(["k", "s"], use_threads=False).aggregate(self._merge_aggregates())
        # Merging names the columns "<column>_<function>": give them back their own names.
        self.state = merged.rename_columns([n if n in ("k", "s") else n.rsplit("_", 1)[0] for n in merged.column_names])

    # -- watermark ----------------------------------------------------------------------
    def advance(self, watermark: int) -> list[Any]:
        """The input watermark moved: the panes of every window whose end it passed."""
        if watermark <= self.input_watermark:
            return []
        self.input_watermark = watermark
        if self.state is None and not self.pending:
            return []
        self._compact()
        state = self.state
        assert state is not None
        if isinstance(self.windowfn, GlobalWindows):
            if watermark <= GLOBAL_WINDOW.max_timestamp_us:
                return []
            fired, self.state = state, None
        else:
            ends = pc.add(state.column("s"), self._size_us())
            due = pc.less_equal(ends, watermark)
            if not pc.any(due).as_py():
                return []
            fired = state.filter(due)
            rest = state.filter(pc.invert(due))
            self.state = rest if rest.num_rows else None
        return self._panes(fired)

    def _panes(self, fired: pa.Table) -> list[Any]:
        if self.arrow_output:
            groups = self._arrow_panes(fired)
            if groups is not None:
                return groups
        keys = fired.column("k").to_pylist()
        results = self._results(fired)
        if isinstance(self.windowfn, GlobalWindows):
            ts, ws = GLOBAL_WINDOW.max_timestamp_us, GLOBAL_WINDOWS_TUPLE
            return [((k, r), ts, ws, ONLY_PANE) for k, r in zip(keys, results)]
        size = self._size_us()
        windows = self._windows
        out: list[Any] = []
        append = out.append
        for k, r, s in zip(keys, results, fired.column("s").to_pylist()):
            w = windows.get(s)
            if w is None:
                if len(windows) > 65_536:
                    windows.clear()
                w = windows[s] = (IntervalWindow.from_micros(s, s + size),)
            append(((k, r), s + size - 1, w, ONLY_PANE))
        return out

    def _arrow_panes(self, fired: pa.Table) -> list[Any] | None:
        """The panes as one ArrowRows group per window (None where the columns cannot stand in for them)."""
        from tidal.runners.core.batched import ArrowRows
        from tidal.runners.microbatch.arrow_pardo import _element_type

        keys = fired.column("k")
        key_type = _element_type(keys.type)
        if key_type is None or keys.null_count:
            return None
        a = self.aggregate
        if a == "count":
            values = fired.column("count_all")
        elif a == "mean":
            values = pc.divide(pc.cast(fired.column("v_sum"), pa.float64()), pc.cast(fired.column("count_all"), pa.float64()))
        else:
            values = fired.column(f"v_{a}")
        value_type = _element_type(values.type)
        if value_type is None or values.null_count or pa.types.is_boolean(value_type):
            return None
        try:
            table = pa.table({"key": pc.cast(keys, key_type), "value": pc.cast(values, value_type)})
        except pa.ArrowInvalid:
            return None  # (an unsigned key too big for int64: the Python panes have it)
        if isinstance(self.windowfn, GlobalWindows):
            ts = GLOBAL_WINDOW.max_timestamp_us
            stamps = np.full(table.num_rows, ts, dtype=np.int64)
            return [(ArrowRows(table.combine_chunks().to_batches()[0], stamps, "pair"), ts, GLOBAL_WINDOWS_TUPLE, ONLY_PANE)]
        starts = np.asarray(fired.column("s").to_numpy(), dtype=np.int64)
        order = np.argsort(starts, kind="stable")
        starts = starts[order]
        table = table.take(pa.array(order)).combine_chunks()
        batch = table.to_batches()[0] if table.num_rows else None
        if batch is None:
            return []
        size = self._size_us()
        bounds = np.concatenate(([0], np.flatnonzero(starts[1:] != starts[:-1]) + 1, [len(starts)]))
        out = []
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            s = int(starts[lo])
            window = self._windows.get(s)
            if window is None:
                window = self._windows[s] = (IntervalWindow.from_micros(s, s + size),)
            ts = s + size - 1
            out.append((ArrowRows(batch.slice(lo, hi - lo), np.full(hi - lo, ts, dtype=np.int64), "pair"), ts, window, ONLY_PANE))
        return out

    def _results(self, fired: pa.Table) -> list[Any]:
        a = self.aggregate
        if a == "count":
            return fired.column("count_all").to_pylist()  # type: ignore[no-any-return]
        if a == "mean":
            sums = fired.column("v_sum").to_pylist()
            counts = fired.column("count_all").to_pylist()
            return [s / c for s, c in zip(sums, counts)]
        return fired.column(f"v_{a}").to_pylist()  # type: ignore[no-any-return]

    def is_idle(self) -> bool:
        return self.state is None and not self.pending

    # -- checkpoints --------------------------------------------------------------------
    def snapshot(self) -> Any:
        self._compact()
        return {"state": self.state, "input_watermark": self.input_watermark, "dropped": self.dropped}

    def restore(self, snap: Any) -> None:
        self.state = snap["state"]
        self.pending, self.pending_rows = [], 0
        self.input_watermark = snap["input_watermark"]
        self.dropped = snap["dropped"]


def _concat(parts: list[Any]) -> Any:
    chunks: list[Any] = []
    for p in parts:
        chunks.extend(p.chunks if isinstance(p, pa.ChunkedArray) else [p])
    return pa.chunked_array(chunks) if chunks else pa.chunked_array([], pa.null())

