"""The columnar fast path: keyed windowed aggregates computed with Arrow kernels.

A plan fragment ``Read(ArrowSource of pairs) -> [WindowInto] -> CombinePerKey``
with a known combiner (sum, count, mean, min, max), a global, fixed or
sliding WindowFn, the default trigger, no allowed lateness and end-of-window
output timestamps is run here instead of element by element: each batch is
grouped by (key, window start) into partial aggregates that stay columnar
across batches, and when the watermark passes a window's end its rows are
turned into exactly the panes the per-element path would emit.

Sums, counts and means of integer keys are added, one ``np.bincount`` per
batch, into a dense (window x key) grid while the grid stays near the size of
the data it holds; the windows the watermark passed are sliced off its front,
already in window order. Other keys and aggregates go through Arrow's hash
group-by: a batch's rows join the pending partials as they are, and a
compaction groups many batches' rows at once (key and window packed into one
int64 column where the keys are integers and the groups many). Batches whose
key columns have different types (a source's files may differ) keep their
partials apart, and where their windows fire together their groups are
merged by Python key equality, as the per-element path groups them.

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

__all__ = ["ArrowCombinePlan", "find_arrow_combines", "ArrowSourceDriver", "ArrowWindowedCombine", "DenseGrid"]

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


#: The dense grid of partial aggregates never holds more cells than this (16 bytes each for a
#: sum and a count): 256 MiB at most.
MAX_GRID_CELLS = 1 << 24
#: A grid this small is always allowed, however few rows it holds.
MIN_GRID_CELLS = 1 << 16
#: Partials are merged with key and window packed into one column once this many groups are held
#: (measured with pyarrow 26 on one core: about 10% faster from 500k groups, 40% slower at 170k).
PACK_MIN_GROUPS = 1 << 19


class DenseGrid:
    """Partial sums and row counts per (window, integer key), in 2-D numpy arrays.

    Row ``r`` holds the window that starts at ``base + r * step`` and column
    ``c`` the key ``kbase + c``; a cell whose count is zero holds no group.
    Rows ``[lo, hi)`` are live. A batch of rows is added with one
    ``np.bincount`` per aggregate over the batch's own block of the grid, and
    the windows the watermark passed are taken from the front by slicing, in
    window order; the rows after ``hi`` are room for the windows to come.

    >>> grid = DenseGrid(step=10, sums=True)
    >>> grid.add(np.array([1, 2, 1]), np.array([0, 0, 10]), np.array([0.5, 1.0, 2.0]))
    >>> k, s, sums, counts = grid.take_through(0)
    >>> k.tolist(), s.tolist(), sums.tolist(), counts.tolist()
    ([1, 2], [0, 0], [0.5, 1.0], [1, 1])
    >>> grid.rows
    1
    """

    def __init__(self, step: int, sums: bool) -> None:
        self.step = step
        self.kbase = 0
        self.base = 0
        self.lo = self.hi = 0
        self.counts = np.zeros((0, 0), dtype=np.int64)
        self.sums: np.ndarray | None = np.zeros((0, 0)) if sums else None
        #: The elements the grid holds (the sum of its counts); 0 when it is empty.
        self.rows = 0

    def cells_with(self, kmin: int, kmax: int, smin: int, smax: int) -> int:
        """How many cells the live grid spans once keys ``kmin..kmax`` and starts ``smin..smax`` are in it."""
        k0, k1, s0, s1 = self._extent(kmin, kmax, smin, smax)
        return (k1 - k0 + 1) * ((s1 - s0) // self.step + 1)

    def _extent(self, kmin: int, kmax: int, smin: int, smax: int) -> tuple[int, int, int, int]:
        if not self.rows:
            return kmin, kmax, smin, smax
        nk = self.counts.shape[1]
        first, last = self.base + self.lo * self.step, self.base + (self.hi - 1) * self.step
        return min(kmin, self.kbase), max(kmax, self.kbase + nk - 1), min(smin, first), max(smax, last)

    def add(self, k: np.ndarray, s: np.ndarray, values: np.ndarray | None) -> None:
        """Add elements: their keys, window starts and (for a grid of sums) float values."""
        kmin, kmax, smin, smax = int(k.min()), int(k.max()), int(s.min()), int(s.max())
        k0, k1, s0, s1 = self._extent(kmin, kmax, smin, smax)
        step = self.step
        if not self.rows or k0 != self.kbase or k1 - k0 + 1 != self.counts.shape[1] or s0 < self.base or (s1 - self.base) // step >= self.counts.shape[0]:
            self._relayout(k0, k1 - k0 + 1, s0, s1)
        r0, r1 = (smin - self.base) // step, (smax - self.base) // step + 1
        c0, nkb = kmin - self.kbase, kmax - kmin + 1
        # One bincount per aggregate over the batch's own block of the grid.
        idx = (s - smin) // step * nkb + (k - kmin)
        shape = (r1 - r0, nkb)
        size = shape[0] * shape[1]
        self.counts[r0:r1, c0 : c0 + nkb] += np.bincount(idx, minlength=size).reshape(shape)
        if self.sums is not None and values is not None:
            self.sums[r0:r1, c0 : c0 + nkb] += np.bincount(idx, weights=values, minlength=size).reshape(shape)
        if self.rows:
            self.lo, self.hi = min(self.lo, r0), max(self.hi, r1)
        else:
            self.lo, self.hi = r0, r1
        self.rows += len(k)

    def _relayout(self, kbase: int, nk: int, first: int, last: int) -> None:
        """Arrays for keys ``kbase..kbase + nk - 1`` and starts ``first..last`` (and room for later windows)."""
        step = self.step
        need = (last - first) // step + 1
        if not self.rows and self.counts.shape[1] == nk and self.counts.shape[0] >= need:
            self.kbase, self.base, self.lo, self.hi = kbase, first, 0, 0  # (empty: every cell is zero)
            return
        # Room for half as many windows again, within the cap on the grid's cells.
        cap = max(need, min(need + max(need // 2, 1), MAX_GRID_CELLS // nk))
        counts = np.zeros((cap, nk), dtype=np.int64)
        sums = np.zeros((cap, nk)) if self.sums is not None else None
        lo = hi = 0
        if self.rows:
            lo = (self.base + self.lo * step - first) // step
            hi = lo + self.hi - self.lo
            c = self.kbase - kbase
            width = self.counts.shape[1]
            counts[lo:hi, c : c + width] = self.counts[self.lo : self.hi]
            if sums is not None and self.sums is not None:
                sums[lo:hi, c : c + width] = self.sums[self.lo : self.hi]
        self.counts, self.sums = counts, sums
        self.kbase, self.base, self.lo, self.hi = kbase, first, lo, hi

    def take_through(self, last_start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray] | None:
        """Remove the windows starting at or before ``last_start``: their groups' keys, starts, sums and
        counts, in window order (None when there are none)."""
        if not self.rows:
            return None
        stop = min(self.hi, (last_start - self.base) // self.step + 1)
        if stop <= self.lo:
            return None
        block = self.counts[self.lo : stop]
        nk = block.shape[1]
        flat = block.reshape(-1)
        present = np.flatnonzero(flat)
        counts = flat[present]
        keys = present % nk + self.kbase
        starts = (present // nk + self.lo) * self.step + self.base
        sums = None
        if self.sums is not None:
            sum_block = self.sums[self.lo : stop]
            sums = sum_block.reshape(-1)[present]
            sum_block[...] = 0.0
        block[...] = 0  # (zeroed, so the rows can be used again)
        self.lo = stop
        self.rows -= int(counts.sum())
        if not self.rows:
            self.lo = self.hi = 0
        return keys, starts, sums, counts


class _Partials:
    """Partial aggregates of one schema as Arrow tables: compacted ``state`` and newer ``pending`` ones."""

    def __init__(self) -> None:
        self.state: pa.Table | None = None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def is_empty(self) -> bool:
        return self.state is None and not self.pending


class ArrowWindowedCombine:
    """Partial aggregates per (key, window start), fired by the watermark.

    Sums, counts and means of integer keys (float values, for sums and means)
    go into a :class:`DenseGrid` while the keys' range times the open windows
    stays near the number of elements; everything else joins the pending
    partials row by row and is grouped by Arrow's hash group-by when they are
    compacted (once ``compact_rows`` rows, and at least twice as many as the
    groups held, are pending). With ``dense=False`` every batch takes the hash
    group-by.
    """

    def __init__(self, plan: ArrowCombinePlan, compact_rows: int = 1_000_000, dense: bool = True) -> None:
        source: ArrowSource = plan.read.transform.source  # type: ignore[union-attr]
        self.source = source
        self.aggregate = plan.aggregate
        self.arrow_output = plan.arrow_output
        self.windowfn = plan.combine.inputs[0].windowing.windowfn
        self.compact_rows = compact_rows
        wfn = self.windowfn
        #: The distance between window starts (1 for the global window, whose start is 0).
        self.step: int = wfn.period_us if isinstance(wfn, SlidingWindows) else getattr(wfn, "size_us", 1)
        self.grid: DenseGrid | None = DenseGrid(self.step, self.aggregate != "count") if dense and self.aggregate in ("sum", "count", "mean") else None
        #: The schema of the grid's groups as a table (int64 keys), once the grid was used.
        self.grid_schema: pa.Schema | None = None
        #: Partial aggregates outside the grid, by their table's schema (a source's files may type keys differently).
        self.partials: dict[pa.Schema, _Partials] = {}
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
        keys = _int64_keys(keys)
        if self._to_grid(keys, values, starts):
            return
        v = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        raw = self._raw_partial(keys, starts, v)
        if raw is None:
            raw = self._group(keys, starts, {"v": v}, self._first_aggregates(), self._partial_names(), pack=False)
        self._add_partial(raw)

    def _raw_partial(self, keys: Any, starts: np.ndarray, values: Any) -> pa.Table | None:
        """The rows as partial aggregates of one row each, grouped only when the partials are compacted
        (one group-by over many batches' rows, as bare pyarrow's merge); None where a value cannot be
        typed as its aggregate (the batch is grouped at once)."""
        a = self.aggregate
        cols: dict[str, Any] = {"k": keys, "s": starts}
        if a in ("sum", "mean"):
            target = _sum_type(values.type)
            if target is None:
                return None
            try:
                cols["v_sum"] = values if values.type == target else pc.cast(values, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
        elif a != "count":
            cols[f"v_{a}"] = values
        if a in ("count", "mean"):
            cols["count_all"] = np.ones(len(starts), dtype=np.int64)
        return pa.table(cols)

    def _to_grid(self, keys: Any, values: Any, starts: np.ndarray) -> bool:
        """Add the rows to the dense grid, if it takes them (int64 keys, float values, a grid not much
        larger than the elements it holds)."""
        grid = self.grid
        if grid is None or keys.type != pa.int64() or keys.null_count:
            return False
        a = self.aggregate
        if a != "count" and (not pa.types.is_floating(values.type) or values.null_count):
            return False
        k = _numpy(keys)
        kmin, kmax, smin, smax = int(k.min()), int(k.max()), int(starts.min()), int(starts.max())
        if grid.cells_with(kmin, kmax, smin, smax) > min(MAX_GRID_CELLS, max(4 * (len(k) + grid.rows), MIN_GRID_CELLS)):
            return False
        grid.add(k, starts, np.asarray(_numpy(values), dtype=np.float64) if a != "count" else None)
        if self.grid_schema is None:
            self.grid_schema = self._grid_table(k[:0], starts[:0], np.zeros(0), np.zeros(0, np.int64)).schema
        return True

    def _grid_table(self, k: np.ndarray, s: np.ndarray, sums: np.ndarray | None, counts: np.ndarray) -> pa.Table:
        """Groups taken from the grid as a partial-aggregate table (the columns the hash path makes)."""
        cols: dict[str, Any] = {"k": k, "s": s}
        if self.aggregate in ("sum", "mean"):
            cols["v_sum"] = sums
        if self.aggregate in ("count", "mean"):
            cols["count_all"] = counts
        return pa.table(cols)

    def _group(self, k: Any, s: Any, columns: dict[str, Any], aggs: list[tuple[Any, ...]], names: list[str], pack: bool = True) -> pa.Table:
        """``aggs`` over ``columns`` grouped by (k, s), as a table of ``k``, ``s`` and the aggregates, named ``names``.

        With ``pack``, and int64 keys whose range times the windows' fits in 62
        bits, key and window are packed into one int64 column, so the group-by
        hashes one column.
        """
        out_names = [f"{c}_{f}" if c != [] else "count_all" for c, f in aggs]
        if pack and k.type == pa.int64() and not k.null_count and len(s):
            kn, sn = _numpy(k), _numpy(s)
            kmin, kmax, smin, smax = int(kn.min()), int(kn.max()), int(sn.min()), int(sn.max())
            nw = (smax - smin) // self.step + 1
            if (kmax - kmin + 1) * nw < 1 << 62:
                code = (kn - kmin) * nw + (sn - smin) // self.step
                grouped = pa.table({"_c": code, **columns}).group_by(["_c"], use_threads=False).aggregate(aggs)
                c = _numpy(grouped.column("_c"))
                packed: dict[str, Any] = {"k": c // nw + kmin, "s": c % nw * self.step + smin}
                packed.update({n: grouped.column(o) for n, o in zip(names, out_names)})
                return pa.table(packed)
        grouped = pa.table({"k": k, "s": s, **columns}).group_by(["k", "s"], use_threads=False).aggregate(aggs)
        plain: dict[str, Any] = {"k": grouped.column("k"), "s": grouped.column("s")}
        plain.update({n: grouped.column(o) for n, o in zip(names, out_names)})
        return pa.table(plain)

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

    def _partial_names(self) -> list[str]:
        """The columns of a partial-aggregate table after ``k`` and ``s``."""
        a = self.aggregate
        return {"count": ["count_all"], "mean": ["v_sum", "count_all"]}.get(a, [f"v_{a}"])

    def _merge_aggregates(self) -> list[tuple[Any, ...]]:
        a = self.aggregate
        if a in ("count",):
            return [("count_all", "sum")]
        if a == "mean":
            return [("v_sum", "sum"), ("count_all", "sum")]
        return [(f"v_{a}", "sum" if a == "sum" else a)]

    def _add_partial(self, partial: pa.Table) -> None:
        part = self.partials.get(partial.schema)
        if part is None:
            part = self.partials[partial.schema] = _Partials()
        part.pending.append(partial)
        part.pending_rows += partial.num_rows
        state_rows = part.state.num_rows if part.state is not None else 0
        if part.pending_rows >= max(self.compact_rows, 2 * state_rows):
            self._compact(part)

    def _merge(self, tables: list[pa.Table], groups: int) -> pa.Table:
        """One row per (key, window) of partial-aggregate tables of one schema (``groups``: about how
        many groups there are, as far as is known)."""
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        aggs = self._merge_aggregates()
        # Packing pays where the groups are many (the hash table outgrows the caches), and costs
        # more than it saves where they are few: the groups already held tell which.
        pack = groups >= PACK_MIN_GROUPS
        merged = self._group(table.column("k"), table.column("s"), {c: table.column(c) for c, _ in aggs}, aggs, self._partial_names(), pack)
        return merged.cast(table.schema) if merged.schema != table.schema else merged

    def _compact(self, part: _Partials) -> None:
        """Merge the pending partials into the state (one row per key and window)."""
        if not part.pending:
            return
        parts = ([part.state] if part.state is not None else []) + part.pending
        part.pending, part.pending_rows = [], 0
        part.state = self._merge(parts, parts[0].num_rows if part.state is not None else 0)

    # -- watermark ----------------------------------------------------------------------
    def advance(self, watermark: int) -> list[Any]:
        """The input watermark moved: the panes of every window whose end it passed."""
        if watermark <= self.input_watermark:
            return []
        self.input_watermark = watermark
        if self.is_idle():
            return []
        if isinstance(self.windowfn, GlobalWindows):
            if watermark <= GLOBAL_WINDOW.max_timestamp_us:
                return []
            last_start = 0
        else:
            last_start = watermark - self._size_us()  # a window fires when start + size <= watermark
        fired: dict[pa.Schema, list[pa.Table]] = {}
        if self.grid is not None:
            taken = self.grid.take_through(last_start)
            if taken is not None:
                assert self.grid_schema is not None
                fired[self.grid_schema] = [self._grid_table(*taken)]
        for schema, part in list(self.partials.items()):
            self._compact(part)
            state = part.state
            if state is None:
                continue
            due = pc.less_equal(state.column("s"), last_start)
            if not pc.any(due).as_py():
                continue
            fired.setdefault(schema, []).append(state.filter(due))
            rest = state.filter(pc.invert(due))
            part.state = rest if rest.num_rows else None
            if part.is_empty():
                del self.partials[schema]
        if not fired:
            return []
        tables = [ts[0] if len(ts) == 1 else self._merge(ts, max(t.num_rows for t in ts)) for ts in fired.values()]
        if len(tables) > 1:
            return self._python_merged_panes(tables)
        return self._panes(tables[0])

    def _python_merged_panes(self, tables: list[pa.Table]) -> list[Any]:
        """Fired groups from tables whose keys have different types, merged by Python key equality
        (as the per-element path groups them: ``1`` and ``1.0`` are one key)."""
        a = self.aggregate
        merged: dict[tuple[Any, int], Any] = {}
        for table in tables:
            keys = table.column("k").to_pylist()
            starts = table.column("s").to_pylist()
            if a == "mean":
                parts: list[Any] = list(zip(table.column("v_sum").to_pylist(), table.column("count_all").to_pylist()))
            else:
                parts = table.column("count_all" if a == "count" else f"v_{a}").to_pylist()
            for k, s, part in zip(keys, starts, parts):
                old = merged.get((k, s), _ABSENT)
                if old is _ABSENT:
                    merged[(k, s)] = part
                elif a == "mean":
                    merged[(k, s)] = (old[0] + part[0], old[1] + part[1])
                elif a in ("sum", "count"):
                    merged[(k, s)] = old + part
                else:
                    merged[(k, s)] = min(old, part) if a == "min" else max(old, part)
        out: list[Any] = []
        for (k, s), r in merged.items():
            result = r[0] / r[1] if a == "mean" else r
            if isinstance(self.windowfn, GlobalWindows):
                out.append(((k, result), GLOBAL_WINDOW.max_timestamp_us, GLOBAL_WINDOWS_TUPLE, ONLY_PANE))
            else:
                out.append(((k, result), s + self._size_us() - 1, self._window(s), ONLY_PANE))
        return out

    def _window(self, s: int) -> tuple[Any, ...]:
        windows = self._windows
        w = windows.get(s)
        if w is None:
            if len(windows) > 65_536:
                windows.clear()
            w = windows[s] = (IntervalWindow.from_micros(s, s + self._size_us()),)
        return w

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
        window = self._window
        out: list[Any] = []
        append = out.append
        last_s, w = None, None
        for k, r, s in zip(keys, results, fired.column("s").to_pylist()):
            if s != last_s:
                last_s, w = s, window(s)
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
        starts = _numpy(fired.column("s"))
        if len(starts) > 1 and bool((starts[1:] < starts[:-1]).any()):
            order = np.argsort(starts, kind="stable")
            starts = starts[order]
            table = table.take(pa.array(order))
        table = table.combine_chunks()
        batch = table.to_batches()[0] if table.num_rows else None
        if batch is None:
            return []
        size = self._size_us()
        bounds = np.concatenate(([0], np.flatnonzero(starts[1:] != starts[:-1]) + 1, [len(starts)]))
        out = []
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            s = int(starts[lo])
            ts = s + size - 1
            out.append((ArrowRows(batch.slice(lo, hi - lo), np.full(hi - lo, ts, dtype=np.int64), "pair"), ts, self._window(s), ONLY_PANE))
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
        return (self.grid is None or not self.grid.rows) and not self.partials

    # -- checkpoints --------------------------------------------------------------------
    def snapshot(self) -> Any:
        """The open windows' partial aggregates as Arrow tables (the grid's groups as one of them)."""
        tables = []
        if self.grid is not None and self.grid.rows:
            grid = self.grid
            taken = _grid_groups(grid)
            tables.append(self._grid_table(*taken))
        for part in self.partials.values():
            self._compact(part)
            if part.state is not None:
                tables.append(part.state)
        return {"tables": tables, "input_watermark": self.input_watermark, "dropped": self.dropped}

    def restore(self, snap: Any) -> None:
        """Put back a :meth:`snapshot` (its tables become partial aggregates; new rows go to a fresh grid)."""
        self.partials = {}
        if self.grid is not None:
            self.grid = DenseGrid(self.step, self.aggregate != "count")
        tables = snap["tables"] if "tables" in snap else [t for t in (snap["state"],) if t is not None]
        for table in tables:
            part = self.partials.setdefault(table.schema, _Partials())
            part.state = table if part.state is None else self._merge([part.state, table], max(part.state.num_rows, table.num_rows))
        self.input_watermark = snap["input_watermark"]
        self.dropped = snap["dropped"]


_ABSENT = object()


def _grid_groups(grid: DenseGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Every group the grid holds (keys, starts, sums, counts), leaving the grid as it is."""
    block = grid.counts[grid.lo : grid.hi]
    nk = block.shape[1]
    flat = block.reshape(-1)
    present = np.flatnonzero(flat)
    sums = grid.sums[grid.lo : grid.hi].reshape(-1)[present] if grid.sums is not None else None
    return present % nk + grid.kbase, (present // nk + grid.lo) * grid.step + grid.base, sums, flat[present]


_SUM_TYPES: dict[pa.DataType, pa.DataType | None] = {}


def _sum_type(value_type: pa.DataType) -> pa.DataType | None:
    """The type Arrow's grouped sum gives values of ``value_type`` (None where it has none)."""
    if value_type not in _SUM_TYPES:
        empty = pa.table({"k": pa.array([], pa.int64()), "v": pa.array([], value_type)})
        try:
            _SUM_TYPES[value_type] = empty.group_by(["k"], use_threads=False).aggregate([("v", "sum")]).schema.field("v_sum").type
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            _SUM_TYPES[value_type] = None
    return _SUM_TYPES[value_type]


def _numpy(column: Any) -> np.ndarray:
    """An Arrow array or chunked array (no nulls), or a numpy array, as a numpy array."""
    return column if isinstance(column, np.ndarray) else np.asarray(column.to_numpy())


def _int64_keys(keys: Any) -> Any:
    """Integer keys as int64 (as their Python values would be typed); others, and uint64 keys past int64, as they are."""
    if pa.types.is_integer(keys.type) and keys.type != pa.int64():
        try:
            return pc.cast(keys, pa.int64())
        except pa.ArrowInvalid:
            return keys
    return keys


def _concat(parts: list[Any]) -> Any:
    chunks: list[Any] = []
    for p in parts:
        chunks.extend(p.chunks if isinstance(p, pa.ChunkedArray) else [p])
    return pa.chunked_array(chunks) if chunks else pa.chunked_array([], pa.null())

