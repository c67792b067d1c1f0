"""The micro-batch runner's Arrow aggregate: the dense grid, the packed hash group-by,
partials of differently typed keys, firing by the watermark, snapshots, and panes
handed to an Arrow-aware consumer as Arrow rows.

The aggregate is driven batch by batch with watermark advances between the
batches and compared with a plain-Python model of the same windows: every
element in each of its windows, dropped when the window already ended, and a
window's one pane emitted when the watermark reaches its end.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal as td
from tidal import window
from tidal.io.arrowio import ReadArrow
from tidal.io.parquetio import ParquetSource
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.model.trigger import PaneInfo, PaneInfoTiming
from tidal.model.window import GLOBAL_WINDOW, GLOBAL_WINDOWS_TUPLE, IntervalWindow
from tidal.runners.core.batched import ArrowRows, BatchKernel
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner
from tidal.runners.microbatch import columnar
from tidal.runners.microbatch.columnar import ArrowWindowedCombine, DenseGrid, find_arrow_combines

from arrow_support import COMBINERS, WINDOWED

ONLY = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)
SECOND = 1_000_000

WINDOWFNS = {"global": window.GlobalWindows(), **WINDOWED}
KEYS = {
    # Small integers fit the dense grid; far-apart ones go to the hash group-by, packed into one
    # column unless their range is too wide for 62 bits; strings cannot be packed.
    "small": [0, 1, 2, 5],
    "far": [0, 3, -(10**12), 10**12],
    "extreme": [-(2**63), 2**63 - 1, 0],
    "str": ["a", "b", ""],
}


def _aggregate(plan_fn: Any, windowfn: Any, compact_rows: int = 1_000_000) -> ArrowWindowedCombine:
    """The Arrow aggregate of ``ReadArrow | WindowInto(windowfn) | CombinePerKey(plan_fn)``."""
    p = td.Pipeline()
    empty = pa.table({"key": pa.array([], pa.int64()), "value": pa.array([], pa.float64()), "ts": pa.array([], pa.int64())})
    _ = p | ReadArrow(empty, key="key", value="value", timestamp="ts") | td.WindowInto(windowfn) | td.CombinePerKey(plan_fn)
    (plan,) = find_arrow_combines(p.graph())
    return ArrowWindowedCombine(plan, compact_rows=compact_rows)


def _batch(rows: list[tuple[Any, Any, int]], key_type: Any, value_type: Any) -> pa.Table:
    keys, values, ts = zip(*rows)
    return pa.table({"key": pa.array(keys, key_type), "value": pa.array(values, value_type), "ts": pa.array(ts, pa.int64())})


def _windows(windowfn: Any, t_us: int) -> list[tuple[int, int]]:
    """(start, end) in µs of the windows an element at ``t_us`` is in (plain arithmetic)."""
    if isinstance(windowfn, window.GlobalWindows):
        return [(0, 0)]
    if isinstance(windowfn, window.FixedWindows):
        start = t_us - (t_us - windowfn.offset_us) % windowfn.size_us
        return [(start, start + windowfn.size_us)]
    period, size = windowfn.period_us, windowfn.size_us
    last = t_us - (t_us - windowfn.offset_us) % period
    return [(s, s + size) for s in range(last, t_us - size, -period)]


class Model:
    """The windowed keyed aggregate in plain Python, fired by the watermark."""

    def __init__(self, windowfn: Any, cname: str) -> None:
        self.windowfn = windowfn
        self.cname = cname
        self.watermark = MIN_TIMESTAMP_US
        self.open: dict[tuple[Any, int, int], list[Any]] = {}

    def _expired(self, end: int) -> bool:
        if isinstance(self.windowfn, window.GlobalWindows):
            return self.watermark > GLOBAL_WINDOW.max_timestamp_us
        return end <= self.watermark

    def process(self, rows: list[tuple[Any, Any, int]]) -> None:
        for k, v, t in rows:
            for start, end in _windows(self.windowfn, t * SECOND):
                if not self._expired(end):
                    self.open.setdefault((k, start, end), []).append(v)

    def advance(self, watermark: int) -> list[Any]:
        self.watermark = max(self.watermark, watermark)
        out = []
        for (k, start, end), vs in list(self.open.items()):
            if self._expired(end):
                del self.open[(k, start, end)]
                result = {"sum": sum(vs), "count": len(vs), "mean": sum(vs) / len(vs), "min": min(vs), "max": max(vs)}[self.cname]
                if isinstance(self.windowfn, window.GlobalWindows):
                    out.append(((k, result), GLOBAL_WINDOW.max_timestamp_us, GLOBAL_WINDOWS_TUPLE, ONLY))
                else:
                    out.append(((k, result), end - 1, (IntervalWindow.from_micros(start, end),), ONLY))
        return sorted(out, key=repr)


step_strategy = st.one_of(
    st.tuples(
        st.just("rows"),
        st.sampled_from(sorted(KEYS)),
        st.lists(st.tuples(st.integers(0, 3), st.integers(-40, 40), st.integers(-40, 60)), min_size=1, max_size=12),
        st.booleans(),  # int64 values (else float64)
    ),
    st.tuples(st.just("watermark"), st.integers(-50, 80)),
    st.tuples(st.just("snapshot")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step_strategy, max_size=12),
    wname=st.sampled_from(sorted(WINDOWFNS)),
    cname=st.sampled_from(sorted(COMBINERS)),
    small_grid=st.booleans(),
    pack=st.booleans(),
    compact_rows=st.sampled_from([1, 3, 1_000_000]),
)
def test_the_arrow_aggregate_equals_plain_python_across_batches_and_watermarks(
    steps: list[Any], wname: str, cname: str, small_grid: bool, pack: bool, compact_rows: int
) -> None:
    """Batches of integer (dense, far-apart, extreme) and string keys and of int or float values,
    mixed from batch to batch (so one key's partials may sit in tables of different types), with
    watermark advances and snapshot/restore between them: each advance emits exactly the panes
    the Python model emits (values, timestamps, windows, panes), late rows are dropped, and the end
    of input fires the rest. ``small_grid`` caps the dense grid at a few cells, so a (key, window)
    gathers partials both in the grid and in the hash group-by's tables; ``pack`` merges partials with
    key and window packed into one column however few groups there are."""
    windowfn = WINDOWFNS[wname]
    agg = _aggregate(COMBINERS[cname], windowfn, compact_rows)
    model = Model(windowfn, cname)
    saved = (columnar.MIN_GRID_CELLS, columnar.MAX_GRID_CELLS, columnar.PACK_MIN_GROUPS)
    if small_grid:
        columnar.MIN_GRID_CELLS = columnar.MAX_GRID_CELLS = 8
    if pack:
        columnar.PACK_MIN_GROUPS = 0
    try:
        for step in [*steps, ("watermark", None)]:
            if step[0] == "rows":
                keys, int_values = KEYS[step[1]], step[3]
                # (Float values are never whole: a minimum or maximum is one value, whatever the order.)
                rows = [(keys[i % len(keys)], v if int_values else v / 4 + 0.125, t) for i, v, t in step[2]]
                model.process(rows)
                key_type = pa.string() if step[1] == "str" else pa.int64()
                agg.process(_batch(rows, key_type, pa.int64() if int_values else pa.float64()))
            elif step[0] == "watermark":
                wm = MAX_TIMESTAMP_US if step[1] is None else step[1] * SECOND
                assert sorted(agg.advance(wm), key=repr) == model.advance(wm)
            else:
                snap = pickle.loads(pickle.dumps(agg.snapshot()))
                agg = _aggregate(COMBINERS[cname], windowfn, compact_rows)
                agg.restore(snap)
    finally:
        columnar.MIN_GRID_CELLS, columnar.MAX_GRID_CELLS, columnar.PACK_MIN_GROUPS = saved
    assert agg.is_idle()
    assert not model.open


def test_integer_keyed_float_sums_go_to_the_dense_grid_and_strings_to_the_hash_group_by() -> None:
    agg = _aggregate(sum, window.FixedWindows(10))
    agg.process(_batch([(3, 1.5, 1), (7, 2.0, 12), (3, 0.5, 4)], pa.int32(), pa.float64()))
    assert agg.grid is not None and agg.grid.rows == 3 and not agg.partials
    agg.process(_batch([("x", 1.0, 1)], pa.string(), pa.float64()))
    assert agg.grid.rows == 3 and len(agg.partials) == 1
    # The first window: the grid's groups and the string key's, merged by Python key equality.
    assert sorted(agg.advance(10 * SECOND), key=repr) == sorted(
        [((3, 2.0), 10 * SECOND - 1, (IntervalWindow(0, 10),), ONLY), (("x", 1.0), 10 * SECOND - 1, (IntervalWindow(0, 10),), ONLY)],
        key=repr,
    )
    assert agg.grid.rows == 1 and not agg.partials
    assert agg.advance(MAX_TIMESTAMP_US) == [((7, 2.0), 20 * SECOND - 1, (IntervalWindow(10, 20),), ONLY)]
    assert agg.is_idle()


@pytest.mark.parametrize("far", [10**5, 10**9])
def test_a_grid_much_larger_than_its_data_is_not_built(far: int) -> None:
    """Two keys ``far`` apart would make a grid of ``far`` cells for two rows (10**5: more than four
    cells a row and the smallest grid always allowed; 10**9: more than any grid may hold): the hash
    group-by takes them."""
    agg = _aggregate(sum, window.FixedWindows(10))
    agg.process(_batch([(0, 1.0, 1), (far, 2.0, 1)], pa.int64(), pa.float64()))
    assert agg.grid is not None and agg.grid.rows == 0 and len(agg.partials) == 1
    assert sorted(agg.advance(MAX_TIMESTAMP_US), key=repr) == [
        ((0, 1.0), 10 * SECOND - 1, (IntervalWindow(0, 10),), ONLY),
        ((far, 2.0), 10 * SECOND - 1, (IntervalWindow(0, 10),), ONLY),
    ]


def test_the_grid_fires_windows_from_its_front_and_reuses_the_cells() -> None:
    grid = DenseGrid(step=10, sums=True)
    grid.add(np.array([5, 6, 5, 5]), np.array([0, 10, 20, 0]), np.array([1.0, 2.0, 3.0, 4.0]))
    taken = grid.take_through(10)
    assert taken is not None
    k, s, sums, counts = taken
    assert (k.tolist(), s.tolist(), sums.tolist() if sums is not None else None, counts.tolist()) == ([5, 6], [0, 10], [5.0, 2.0], [2, 1])
    assert grid.take_through(10) is None and grid.rows == 1
    taken = grid.take_through(20)
    assert taken is not None and taken[0].tolist() == [5] and grid.rows == 0
    # Emptied, the grid takes the same keys again in its old cells: nothing of the fired windows comes back.
    cells = grid.counts
    grid.add(np.array([5, 6]), np.array([0, 0]), np.array([7.0, 1.0]))
    assert grid.counts is cells
    taken = grid.take_through(100)
    assert taken is not None and taken[2] is not None
    assert (taken[0].tolist(), taken[1].tolist(), taken[2].tolist(), taken[3].tolist()) == ([5, 6], [0, 0], [7.0, 1.0], [1, 1])


def test_the_room_the_grid_keeps_for_later_windows_stays_within_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "MAX_GRID_CELLS", 40)
    grid = DenseGrid(step=10, sums=True)
    grid.add(np.arange(10), np.arange(10) % 4 * 10, np.ones(10))  # 10 keys x 4 windows: all 40 cells
    assert grid.counts.size == 40 and grid.sums is not None and grid.sums.size == 40
    monkeypatch.setattr(columnar, "MAX_GRID_CELLS", 1 << 24)
    grid = DenseGrid(step=10, sums=True)
    grid.add(np.arange(10), np.arange(10) % 4 * 10, np.ones(10))
    assert grid.counts.shape == (6, 10)  # (and room for two more windows)


def test_packing_key_and_window_into_one_column_keeps_the_extreme_keys() -> None:
    agg = _aggregate(max, window.FixedWindows(10))
    keys = pa.array([-(2**63), 2**63 - 1, -(2**63), 4], pa.int64())
    starts = np.array([0, 0, 10, 10], dtype=np.int64) * SECOND
    table = agg._group(keys, starts, {"v": pa.array([1.0, 2.0, 3.0, 4.0])}, [("v", "max")], ["v_max"])
    assert sorted(zip(*(table.column(c).to_pylist() for c in ("k", "s", "v_max")))) == sorted(
        [(-(2**63), 0, 1.0), (2**63 - 1, 0, 2.0), (-(2**63), 10 * SECOND, 3.0), (4, 10 * SECOND, 4.0)]
    )
    # Keys 10**12 apart over windows 50 s apart: packed into one column, and unpacked exactly.
    packed = agg._group(
        pa.array([10**12, -5, 10**12]), np.array([-20, 30, -20]) * SECOND, {"v": pa.array([1.0, 2.0, 5.0])}, [("v", "max")], ["v_max"]
    )
    assert sorted(zip(*(packed.column(c).to_pylist() for c in ("k", "s", "v_max")))) == [(-5, 30 * SECOND, 2.0), (10**12, -20 * SECOND, 5.0)]


NARROW = {
    # Values whose sums do not fit their own type, or lose digits in it.
    "int32": (pa.int32(), [2_000_000_000, 2_000_000_000, 7, 1, 2]),
    "uint8": (pa.uint8(), [200, 100, 7, 1, 2]),
    "float32": (pa.float32(), [0.1, 0.2, 0.3, 0.7, 1.1]),
}


@pytest.mark.parametrize("narrow", sorted(NARROW))
@pytest.mark.parametrize("cname", ["sum", "mean", "max"])
def test_narrow_values_merge_with_the_partials_of_their_aggregate_type(narrow: str, cname: str) -> None:
    """Rows of int32, uint8 or float32 values join the pending partials typed as their aggregate's
    result (a sum of int32 is int64, of float32 a double), so each compaction merges them with the
    state it made before, and a sum that outgrows the values' type is exact."""
    value_type, (a, b, c, d, e) = NARROW[narrow]
    agg = _aggregate(COMBINERS[cname], window.FixedWindows(10), compact_rows=1)
    batches = [[("a", a, 1), ("b", c, 2), ("a", d, 12)], [("a", b, 3), ("b", e, 15)], [("a", c, 4)]]
    by_group: dict[tuple[str, int], list[float]] = {}
    for rows in batches:
        table = _batch(rows, pa.string(), value_type)
        agg.process(table)
        # The values as the per-element path has them: each one's Python value.
        for k, v, t in zip(*(table.column(n).to_pylist() for n in ("key", "value", "ts"))):
            by_group.setdefault((k, t // 10 * 10), []).append(v)
    reduce = {"sum": sum, "mean": lambda vs: sum(vs) / len(vs), "max": max}[cname]
    expected = sorted((((k, reduce(vs)), (s + 10) * SECOND - 1, (IntervalWindow(s, s + 10),), ONLY) for (k, s), vs in by_group.items()), key=repr)
    assert sorted(agg.advance(MAX_TIMESTAMP_US), key=repr) == expected


# -- through the runner ---------------------------------------------------------------------
class _Collect(td.DoFn):
    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, v: Any, t: Any = td.DoFn.TimestampParam, w: Any = td.DoFn.WindowParam, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
        with open(self.path, "ab") as f:
            pickle.dump((v, t.micros, w, pane), f)
        return ()


def _read(path: Path) -> list[Any]:
    out: list[Any] = []
    if path.exists():
        with open(path, "rb") as f:
            while True:
                try:
                    out.append(pickle.load(f))
                except EOFError:
                    break
    return sorted(out, key=repr)


def test_files_whose_key_columns_differ_in_type_give_the_per_element_answer(tmp_path: Path) -> None:
    """One Parquet file keys by int32, another by string, a third has integer values: their partials
    are kept apart and merged when the windows fire, as the per-element path groups the keys."""
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"k": pa.array([1, 2, 1], pa.int32()), "v": [1.0, 2.0, 3.0], "ts": [1, 2, 15]}), folder / "a.parquet")
    pq.write_table(pa.table({"k": ["1", "b"], "v": [10.0, 20.0], "ts": [3, 4]}), folder / "b.parquet")
    # Integer values for key 1: partials of another type, for the same Python key (1.0 + 100 + 3.0).
    pq.write_table(pa.table({"k": pa.array([1], pa.int64()), "v": pa.array([100], pa.int64()), "ts": [5]}), folder / "c.parquet")

    def run(runner: Any, name: str) -> list[Any]:
        p = td.Pipeline(runner=runner)
        rows = p | ReadArrow(ParquetSource(str(folder / "*.parquet")), key="k", value="v", timestamp="ts")
        _ = rows | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum) | td.ParDo(_Collect(str(tmp_path / name)))
        p.run()
        return _read(tmp_path / name)

    w0, w1 = (IntervalWindow(0, 10),), (IntervalWindow(10, 20),)
    expected = sorted(
        [((1, 101.0), 10 * SECOND - 1, w0[0], ONLY), ((2, 2.0), 10 * SECOND - 1, w0[0], ONLY), ((1, 3.0), 20 * SECOND - 1, w1[0], ONLY),
         (("1", 10.0), 10 * SECOND - 1, w0[0], ONLY), (("b", 20.0), 10 * SECOND - 1, w0[0], ONLY)],
        key=repr,
    )
    assert run(MicroBatchRunner(max_batch_size=2), "columnar") == expected
    assert run(MicroBatchRunner(columnar=False), "per_element") == expected
    assert run(DirectRunner(), "direct") == expected


class _Received(td.DoFn):
    """A batched consumer: records what each ``process_batch`` call was handed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def process_batch(self, batch: Any, w: Any = td.DoFn.WindowParam, t: Any = td.DoFn.TimestampParam, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
        with open(self.path, "ab") as f:
            pickle.dump((type(batch).__name__, batch.schema.names, batch.column(0).to_pylist(), batch.column(1).to_pylist(), w, t.micros, pane), f)
        return ()


KEY_FORMS = {
    "dense": lambda k: pa.array(k),  # the dense grid
    # One row of the third batch (of 1,000 rows) has a far key: that batch goes to the hash group-by, so
    # groups gather partials in the grid and in Arrow tables, merged by a group-by when they fire.
    "dense-and-hash": lambda k: pa.array(np.where(np.arange(len(k)) == 2_500, 10**9, k)),
    "far": lambda k: pa.array(k * 10**9),  # the hash group-by on key and window packed in one column
    "str": lambda k: pa.array([f"k{i}" for i in k.tolist()]),  # the hash group-by on two columns
}


@pytest.mark.parametrize("form", sorted(KEY_FORMS))
def test_an_arrow_consumer_gets_the_aggregate_as_arrow_rows_with_no_python_object_per_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    rng = np.random.default_rng(3)
    n, keys = 5_000, 300
    k = rng.integers(0, keys, n)
    ts = rng.integers(-100, 200, n)
    v = rng.random(n)
    key_column = KEY_FORMS[form](k)
    table = pa.table({"key": key_column, "value": v, "ts": ts})
    # The expected sums in plain Python: one per (key, 60 s window) that has rows.
    expected: dict[tuple[Any, int], float] = {}
    for key, t, value in zip(key_column.to_pylist(), ts.tolist(), v.tolist()):
        expected[(key, t // 60 * 60)] = expected.get((key, t // 60 * 60), 0.0) + value

    handed: list[Any] = []
    arrow_panes = ArrowWindowedCombine._arrow_panes

    def recording(self: ArrowWindowedCombine, fired: pa.Table) -> Any:
        out = arrow_panes(self, fired)
        handed.extend(out)
        return out

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a per-group Python path ran")

    monkeypatch.setattr(ArrowWindowedCombine, "_arrow_panes", recording)
    monkeypatch.setattr(ArrowWindowedCombine, "_results", refuse)  # the aggregates as Python values
    monkeypatch.setattr(ArrowWindowedCombine, "_python_merged_panes", refuse)
    monkeypatch.setattr(BatchKernel, "_encode", refuse)  # Python elements into a batch
    p = td.Pipeline(runner=MicroBatchRunner(max_batch_size=1_000))
    _ = (
        p
        | ReadArrow(table, key="key", value="value", timestamp="ts")
        | td.WindowInto(window.FixedWindows(60))
        | td.CombinePerKey(sum)
        | td.ParDo(_Received(str(tmp_path / "got")))
    )
    p.run()
    got = _read(tmp_path / "got")
    windows = sorted({s for _k, s in expected})
    # One Arrow group per window, handed over as such: no element per (key, window).
    assert len(handed) == len(windows) and all(isinstance(v, ArrowRows) for v, _t, _ws, _p in handed)
    assert sorted(r.batch.num_rows for r, _t, _ws, _p in handed) == sorted(sum(1 for _k, s in expected if s == w) for w in windows)
    assert len(got) == len(windows)
    seen: dict[tuple[Any, int], float] = {}
    for kind, names, ks, vs, win, t, pane in got:
        assert (kind, names, pane) == ("RecordBatch", ["key", "value"], ONLY)
        start = int(win.start.micros // SECOND)
        assert win == IntervalWindow(start, start + 60) and t == (start + 60) * SECOND - 1
        for key, value in zip(ks, vs):
            seen[(key, start)] = value
    assert seen.keys() == expected.keys()
    assert all(np.isclose(seen[g], expected[g], rtol=1e-12) for g in expected)
