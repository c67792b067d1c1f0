"""Arrow all the way: Parquet and CSV files into the micro-batch runner's columnar paths.

On the micro-batch runner a batched DoFn (the Parquet and CSV sinks are
batched DoFns) reading ``ReadFromParquet`` or ``ReadFromCsv`` gets the
files' Arrow columns, and a keyed aggregate of ``ReadArrow(ParquetSource)``
runs on Arrow kernels. These tests prove it by making the per-row paths
fail: the pipelines must still give exactly the per-element answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tidal as td
from tidal.io.filebased import CsvFormat, ParquetFormat, TextFormat
from tidal.io.parquetio import ParquetSource
from tidal.model.trigger import PaneInfo, PaneInfoTiming
from tidal.runners.core.batched import BatchKernel
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner
from tidal.testing import assert_that, equal_to
from tidal.window import FixedWindows, IntervalWindow

ROWS = [{"k": i % 3, "name": f"n{i}", "x": i * 0.5} for i in range(300)]


def write_parquet(folder: Path) -> None:
    folder.mkdir()
    table = pa.Table.from_pylist(ROWS, pa.schema([("k", pa.int32()), ("name", pa.string()), ("x", pa.float64())]))
    pq.write_table(table.slice(0, 200), folder / "a.parquet", row_group_size=64)
    pq.write_table(table.slice(200), folder / "b.parquet", row_group_size=64)


class Shapes(td.DoFn):
    """One row per batch: its column names, its column types, its row count."""

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        yield pa.record_batch(
            {"names": [",".join(batch.schema.names)], "types": [",".join(map(str, batch.schema.types))], "rows": [batch.num_rows]}
        )


class Doubled(td.DoFn):
    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        import pyarrow.compute as pc

        yield pa.record_batch({"name": batch.column("name"), "x2": pc.multiply(batch.column("x"), 2)})


@pytest.fixture
def no_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every per-row path fail: reading records from files, and turning elements into batches."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a per-row path ran")

    monkeypatch.setattr(ParquetFormat, "read_records", refuse)
    monkeypatch.setattr(CsvFormat, "read_records", refuse)
    monkeypatch.setattr(TextFormat, "read_records", refuse)
    monkeypatch.setattr(BatchKernel, "_encode", refuse)


def test_a_batched_dofn_gets_the_parquet_columns_on_microbatch(tmp_path: Path, no_rows: None) -> None:
    write_parquet(tmp_path / "in")
    with td.Pipeline(runner=MicroBatchRunner(max_batch_size=100)) as p:
        rows = p | td.ReadFromParquet(str(tmp_path / "in" / "*.parquet"))
        shapes = rows | "Shapes" >> td.ParDo(Shapes())
        # One batch per bundle of the micro-batch (row groups are joined or cut to fit); int32
        # becomes the int64 the elements would have.
        want = [{"names": "k,name,x", "types": "int64,string,double", "rows": 100}] * 3
        assert_that(shapes, equal_to(want), label="shapes")
        doubled = p | "Again" >> td.ReadFromParquet(str(tmp_path / "in" / "*.parquet")) | td.ParDo(Doubled())
        assert_that(doubled, equal_to([{"name": r["name"], "x2": r["x"] * 2} for r in ROWS]), label="doubled")


def test_csv_to_parquet_is_arrow_all_the_way_on_microbatch(tmp_path: Path, no_rows: None) -> None:
    lines = ["id,city,temp"] + [f"{i},c{i % 7},{i / 4}" for i in range(500)]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    with td.Pipeline(runner=MicroBatchRunner(max_batch_size=128)) as p:
        _ = p | td.ReadFromCsv(str(tmp_path / "in.csv")) | td.WriteToParquet(str(tmp_path / "out"))
    table = pq.read_table(tmp_path / "out-00000-of-00001")
    assert table.schema.names == ["id", "city", "temp"]
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [{"id": i, "city": f"c{i % 7}", "temp": i / 4} for i in range(500)]


def test_parquet_to_parquet_keeps_rows_and_types_on_microbatch(tmp_path: Path, no_rows: None) -> None:
    write_parquet(tmp_path / "in")
    schema = pa.schema([("k", pa.int32()), ("name", pa.string()), ("x", pa.float64())])
    with td.Pipeline(runner=MicroBatchRunner()) as p:
        _ = p | td.ReadFromParquet(str(tmp_path / "in" / "*")) | td.WriteToParquet(str(tmp_path / "out"), schema)
    table = pq.read_table(tmp_path / "out-00000-of-00001")
    assert table.schema == schema
    assert sorted(table.to_pylist(), key=lambda r: r["name"]) == sorted(ROWS, key=lambda r: r["name"])


def test_rows_with_nulls_go_element_by_element_with_the_same_answer(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a,b\n1,x\n,y\n3,\n")
    for runner in (DirectRunner(), MicroBatchRunner()):
        with td.Pipeline(runner=runner) as p:
            shapes = p | td.ReadFromCsv(str(tmp_path / "in.csv")) | td.ParDo(Shapes())
            # A null makes a row's values another form: the kernel's own batches, on every runner.
            assert_that(
                shapes,
                equal_to([
                    {"names": "a,b", "types": "int64,string", "rows": 2},
                    {"names": "a,b", "types": "null,string", "rows": 1},
                ]),
            )


def sums_pipeline(p: td.Pipeline, folder: Path, out: Path | None = None) -> Any:
    source = ParquetSource(str(folder / "*.parquet"))
    sums = (
        p
        | td.io.ReadArrow(source, key="station", value="temp", timestamp="ts")
        | td.WindowInto(FixedWindows(60))
        | td.CombinePerKey(sum)
    )
    return sums


def write_readings(folder: Path) -> list[dict[str, Any]]:
    folder.mkdir()
    readings = [{"station": f"s{i % 4}", "temp": float(i % 11), "ts": i * 7} for i in range(400)]
    pq.write_table(pa.Table.from_pylist(readings), folder / "r.parquet", row_group_size=50)
    return readings


def test_a_keyed_window_aggregate_of_a_parquet_folder_runs_on_arrow_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readings = write_readings(tmp_path / "in")
    expected: dict[tuple[str, int], float] = {}
    for r in readings:
        start = r["ts"] // 60 * 60
        expected[r["station"], start] = expected.get((r["station"], start), 0.0) + r["temp"]

    class Observe(td.DoFn):
        def process(self, kv: Any, w: Any = td.DoFn.WindowParam, t: Any = td.DoFn.TimestampParam, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
            yield kv[0], kv[1], w, t.micros, pane

    want = [
        (k, v, IntervalWindow(s, s + 60), (s + 60) * 1_000_000 - 1, PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0))
        for (k, s), v in expected.items()
    ]
    with td.Pipeline(runner=DirectRunner()) as p:
        assert_that(sums_pipeline(p, tmp_path / "in") | td.ParDo(Observe()), equal_to(want))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a per-row path ran")

    monkeypatch.setattr(ParquetFormat, "read_records", refuse)
    monkeypatch.setattr(td.io.arrowio.ArrowSource, "elements_of", refuse)
    with td.Pipeline(runner=MicroBatchRunner(max_batch_size=64)) as p:
        assert_that(sums_pipeline(p, tmp_path / "in") | td.ParDo(Observe()), equal_to(want))


def test_a_restored_arrow_driver_skips_the_rows_before_its_offset(tmp_path: Path) -> None:
    from tidal.runners.microbatch.columnar import ArrowSourceDriver

    write_parquet(tmp_path / "in")
    source = ParquetSource(str(tmp_path / "in" / "*.parquet"))
    driver = ArrowSourceDriver("read", source, bundle_size=100)
    driver.offset = 150
    driver.open(None)
    got: list[Any] = []
    while not driver.done:
        event = driver.poll(None)
        if event.bundle is not None:
            got.extend(event.bundle.to_pylist())  # type: ignore[attr-defined]
    assert [r["name"] for r in got] == [r["name"] for r in ROWS[150:]]
    assert driver.offset == 300
    assert os.path.exists(tmp_path / "in" / "a.parquet")


def test_a_columnar_aggregate_is_written_to_parquet_without_python_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tidal.runners.microbatch.columnar import ArrowWindowedCombine

    readings = write_readings(tmp_path / "in")
    expected: dict[tuple[str, int], float] = {}
    for r in readings:
        start = r["ts"] // 60 * 60
        expected[r["station"], start] = expected.get((r["station"], start), 0.0) + r["temp"]
    schema = pa.schema([("key", pa.string()), ("value", pa.float64())])

    def run(runner: Any, out: str) -> list[Any]:
        with td.Pipeline(runner=runner) as p:
            _ = sums_pipeline(p, tmp_path / "in") | td.WriteToParquet(str(tmp_path / out), schema)
        return sorted(pq.read_table(tmp_path / f"{out}-00000-of-00001").to_pylist(), key=lambda r: (r["key"], r["value"]))

    want = sorted(({"key": k, "value": v} for (k, _s), v in expected.items()), key=lambda r: (r["key"], r["value"]))
    assert run(DirectRunner(), "direct") == want

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a per-row path ran")

    monkeypatch.setattr(ArrowWindowedCombine, "_results", refuse)  # the panes as Python values
    monkeypatch.setattr(BatchKernel, "_encode", refuse)  # elements into batches
    monkeypatch.setattr(ParquetFormat, "read_records", refuse)
    assert run(MicroBatchRunner(max_batch_size=64), "microbatch") == want


class Lengths(td.DoFn):
    """The batch's column names and type, and each line's length."""

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        import pyarrow.compute as pc

        yield pa.record_batch({"value": pc.utf8_length(batch.column("value"))})


def test_text_lines_reach_a_batched_dofn_as_one_arrow_column_on_microbatch(tmp_path: Path, no_rows: None) -> None:
    lines = ["", "caf\u00e9", "crlf", "x" * 70, "last"]
    (tmp_path / "a.txt").write_bytes("\n".join(lines[:2]).encode() + b"\n" + b"crlf\r\n" + ("x" * 70 + "\nlast").encode())
    with td.Pipeline(runner=MicroBatchRunner(max_batch_size=2)) as p:
        lengths = p | td.ReadFromText(str(tmp_path / "a.txt")) | td.ParDo(Lengths())
        assert_that(lengths, equal_to([len(line) for line in lines]))


def test_invalid_utf8_in_the_arrow_path_still_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"fine\nalso fine\nnot \xff fine\n")
    p = td.Pipeline(runner=MicroBatchRunner())
    _ = p | "Lines" >> td.ReadFromText(str(tmp_path / "a.txt")) | td.ParDo(Lengths())
    with pytest.raises(td.PipelineExecutionError, match=r"step 'Lines/Read'.*a\.txt: line 3 is not valid UTF-8"):
        p.run()
