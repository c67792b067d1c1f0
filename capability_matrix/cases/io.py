"""Cases for the file sources and sinks: text, CSV, JSON lines and Parquet, their splits, their
bad input, and a Parquet sink that is exactly once after a crash.

Input files are written by plain Python in the case's working folder when
the pipeline is built; what a sink published is read back by plain Python
(and pyarrow) after the run and compared exactly.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import tidal as td
from tidal import window
from tidal.capability_matrix.case import (
    CHECKPOINT_RESTORE,
    CaseContext,
    CaseFailure,
    ExpectedError,
    W,
    case,
    eow,
    on_time,
)
from tidal.capability_matrix.cases.beyond import _paced_input, _PACED_N, _ValueAtLeast
from tidal.io.filesystems import BeamIOError

_ROWS: list[dict[str, Any]] = [{"id": i, "city": ["Oslo", "Lima", "Pune"][i % 3], "temp": i / 4} for i in range(12)]


def _published(folder: Path, prefix: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(prefix) and (folder / n).is_file())


def _check_after_run(check: Callable[[CaseContext], None]) -> Callable[[td.Pipeline, CaseContext], Any]:
    """Run the pipeline, then ``check`` what it wrote (raising CaseFailure with what is wrong)."""

    def drive(p: td.Pipeline, ctx: CaseContext) -> Any:
        result = p.run()
        result.wait_until_finish(60)
        check(ctx)
        return result

    return drive


def _expect(what: str, actual: Any, expected: Any) -> None:
    if actual != expected:
        raise CaseFailure(f"{what}: got {actual!r}, expected {expected!r}")


# -- text ------------------------------------------------------------------------------------
@case("files.text_compressed_with_header", "Text files", expected=["x1", "x2", "y1"])
def text_compressed(p: td.Pipeline, ctx: CaseContext) -> Any:
    """ReadFromText reads a gzip file (by its extension) and a plain one, skipping each file's header line."""
    (ctx.workdir / "in").mkdir()
    (ctx.workdir / "in" / "a.txt.gz").write_bytes(gzip.compress(b"header\nx1\nx2\n"))
    (ctx.workdir / "in" / "b.txt").write_bytes(b"header\r\ny1\r\n")
    return p | td.ReadFromText(str(ctx.workdir / "in" / "*.txt*"), skip_header_lines=1)


def _check_text_shards(ctx: CaseContext) -> None:
    folder = ctx.workdir / "out"
    names = _published(folder, "words")
    _expect("the published files", names, [f"words-{i:05d}-of-00003.txt" for i in range(3)])
    lines = sorted(line for n in names for line in (folder / n).read_text(encoding="utf-8").splitlines() if line != "w")
    _expect("their lines (the header 'w' aside)", lines, sorted([f"word{i}" for i in range(9)] + ["caf\u00e9", "raw"]))
    if not all((folder / n).read_text(encoding="utf-8").startswith("w\n") for n in names):
        raise CaseFailure("a shard does not start with the header line")


@case("files.text_sharded_write_replaces_a_rerun", "Text files", drive=_check_after_run(_check_text_shards))
def text_shards(p: td.Pipeline, ctx: CaseContext) -> None:
    """WriteToText with num_shards=3 and a header writes Beam's shard names (words-00000-of-00003.txt...),
    str as UTF-8 and bytes as they are; the files an earlier run left under the prefix are replaced."""
    out = ctx.workdir / "out"
    out.mkdir()
    for stale in ("words-00000-of-00005.txt", "words-000007-00001-of-00002.txt"):
        (out / stale).write_text("from an earlier run\n")
        os.utime(out / stale, (time.time() - 60, time.time() - 60))
    elements: list[Any] = [f"word{i}" for i in range(9)] + ["caf\u00e9", b"raw"]
    _ = p | td.Create(elements) | td.WriteToText(str(out / "words"), ".txt", num_shards=3, header="w")


# -- CSV, JSON lines, Parquet -------------------------------------------------------------------
def _write_csv(path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "city", "temp"])
        writer.writeheader()
        writer.writerows(_ROWS)


def _check_csv(ctx: CaseContext) -> None:
    folder = ctx.workdir / "out"
    got: list[dict[str, str]] = []
    for name in _published(folder, "hot"):  # one shard per parallel writer
        with open(folder / name, newline="") as f:
            got.extend(csv.DictReader(f))
    want = [{"id": str(r["id"]), "city": r["city"], "hot": "true" if r["temp"] > 1 else "false"} for r in _ROWS]
    _expect("the rows of the CSV written", sorted(got, key=lambda r: int(r["id"])), want)


@case("files.csv_round_trip", "CSV files", expected=_ROWS, drive=_check_after_run(_check_csv))
def csv_round_trip(p: td.Pipeline, ctx: CaseContext) -> Any:
    """ReadFromCsv gives one dict per row with the types pyarrow infers; WriteToCsv writes dict rows with a header."""
    _write_csv(ctx.workdir / "in.csv")
    rows = p | td.ReadFromCsv(str(ctx.workdir / "in.csv"))
    _ = rows | td.Map(lambda r: {"id": r["id"], "city": r["city"], "hot": r["temp"] > 1}) | td.WriteToCsv(str(ctx.workdir / "out" / "hot"))
    return rows


def _check_json(ctx: CaseContext) -> None:
    folder = ctx.workdir / "out"
    got = [json.loads(line) for n in _published(folder, "rows") for line in (folder / n).read_text().splitlines()]
    _expect("the JSON lines written", sorted(got, key=lambda r: r["id"]), _ROWS)


@case("files.json_lines_round_trip", "JSON lines files", expected=_ROWS, drive=_check_after_run(_check_json))
def json_round_trip(p: td.Pipeline, ctx: CaseContext) -> Any:
    """ReadFromJson reads JSON lines (ints stay ints); WriteToJson writes each element as one line."""
    (ctx.workdir / "in.jsonl").write_text("".join(json.dumps(r) + "\n\n" for r in _ROWS))
    rows = p | td.ReadFromJson(str(ctx.workdir / "in.jsonl"))
    _ = rows | td.WriteToJson(str(ctx.workdir / "out" / "rows"))
    return rows


def _check_parquet(ctx: CaseContext) -> None:
    import pyarrow.parquet as pq

    folder = ctx.workdir / "out"
    got = [r for n in _published(folder, "copy") for r in pq.read_table(folder / n).to_pylist()]
    _expect("the Parquet rows written", sorted(got, key=lambda r: r["id"]), _ROWS)


@case("files.parquet_round_trip", "Parquet files", expected=_ROWS, drive=_check_after_run(_check_parquet))
def parquet_round_trip(p: td.Pipeline, ctx: CaseContext) -> Any:
    """ReadFromParquet gives one dict per row of every row group; WriteToParquet writes them back with a schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.int64()), ("city", pa.string()), ("temp", pa.float64())])
    (ctx.workdir / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(_ROWS, schema), ctx.workdir / "in" / "a.parquet", row_group_size=5)
    rows = p | td.ReadFromParquet(str(ctx.workdir / "in" / "*.parquet"))
    _ = rows | td.WriteToParquet(str(ctx.workdir / "out" / "copy"), schema)
    return rows


@case("files.parquet_windowed_sums", "Parquet files", observe=("value", "window", "timestamp", "pane"),
      expected=[(("Lima", 6.0), W(0, 60), eow(60), on_time(0, last=True)), (("Oslo", 3.0), W(0, 60), eow(60), on_time(0, last=True)),
                (("Oslo", 4.0), W(60, 120), eow(120), on_time(0, last=True))])
def parquet_windowed(p: td.Pipeline, ctx: CaseContext) -> Any:
    """ReadArrow over a Parquet folder gives timestamped (key, value) pairs; sums per key and 60 s window."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tidal.io.parquetio import ParquetSource

    (ctx.workdir / "in").mkdir()
    rows = [("Oslo", 1.0, 5), ("Lima", 6.0, 30), ("Oslo", 2.0, 59), ("Oslo", 4.0, 60)]
    table = pa.table({"city": [r[0] for r in rows], "temp": [r[1] for r in rows], "ts": [r[2] for r in rows]})
    pq.write_table(table, ctx.workdir / "in" / "r.parquet", row_group_size=2)
    source = ParquetSource(str(ctx.workdir / "in" / "*.parquet"))
    pairs = p | td.io.ReadArrow(source, key="city", value="temp", timestamp="ts")
    return pairs | td.WindowInto(window.FixedWindows(60)) | td.CombinePerKey(sum)


@case("source.file_splits_read_each_line_once", "Source API", expected=[f"{i:05d}" for i in range(2000)])
def file_splits(p: td.Pipeline, ctx: CaseContext) -> Any:
    """A text file is read in byte-range splits (by several workers where the runner is parallel): every line once."""
    (ctx.workdir / "big.txt").write_text("".join(f"{i:05d}\n" for i in range(2000)))
    return p | td.ReadFromText(str(ctx.workdir / "big.txt"))


# -- bad input ------------------------------------------------------------------------------------
@case("bad_input.file_pattern_matches_nothing", "Bad input rejected with a clear error",
      error=ExpectedError(BeamIOError, "ReadFromParquet: no file matches the pattern", also=("nothing-*.parquet",)))
def bad_no_files(p: td.Pipeline, ctx: CaseContext) -> Any:
    """A file pattern that matches no file is refused when the read is made, naming the pattern."""
    return p | td.ReadFromParquet(str(ctx.workdir / "nothing-*.parquet"))


@case("bad_input.unparsable_file", "Bad input rejected with a clear error",
      error=ExpectedError(td.PipelineExecutionError, "step 'Events/Read'", also=("events.jsonl: line 3: invalid JSON",)))
def bad_json(p: td.Pipeline, ctx: CaseContext) -> Any:
    """A file that cannot be parsed fails the run naming the step, the file and the line."""
    (ctx.workdir / "events.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": oops}\n')
    return p | "Events" >> td.ReadFromJson(str(ctx.workdir / "events.jsonl"))


@case("bad_input.row_does_not_match_parquet_schema", "Bad input rejected with a clear error",
      error=ExpectedError(td.UserCodeError, "step 'SaveRows/Write'", also=("the field 'age' (int64) cannot hold the value 'ten' (str)",)))
def bad_schema(p: td.Pipeline, ctx: CaseContext) -> None:
    """A row that does not fit WriteToParquet's schema fails the run naming the step, the field and the value."""
    import pyarrow as pa

    schema = pa.schema([("name", pa.string()), ("age", pa.int64())])
    rows = [{"name": "ann", "age": 31}, {"name": "bo", "age": "ten"}]
    _ = p | td.Create(rows) | "SaveRows" >> td.WriteToParquet(str(ctx.workdir / "out" / "people"), schema)


# -- exactly once --------------------------------------------------------------------------------
_PACED_SUMS = sorted(
    (f"k{k}", w * 5, sum(v for v in range(_PACED_N) if v % 3 == k and v // 100 == w)) for w in range(6) for k in range(3)
)


def _check_parquet_exactly_once(p: td.Pipeline, ctx: CaseContext) -> Any:
    """Run the job; once it succeeds, compare the rows of the Parquet files it published (no folding)."""
    import pyarrow.parquet as pq

    result = p.run()
    result.wait_until_finish(60)
    folder = ctx.workdir / "published"
    names = _published(folder, "sums") if folder.is_dir() else []
    rows = sorted(tuple(r.values()) for n in names for r in pq.read_table(folder / n).to_pylist())
    if rows != _PACED_SUMS:
        doubled = sorted({r for r in rows if rows.count(r) > 1})[:3]
        missing = sorted(set(_PACED_SUMS) - set(rows))[:3]
        ctx.report_problem(
            f"the published Parquet files hold {len(rows)} rows, expected {len(_PACED_SUMS)} "
            f"(missing {missing}, published twice {doubled})"
        )
    return result


@case("exactly_once.parquet_sink", "Exactly-once after failure", requires=(CHECKPOINT_RESTORE,),
      drive=_check_parquet_exactly_once, timeout_s=120.0)
def eo_parquet(p: td.Pipeline, ctx: CaseContext) -> None:
    """A 3 s stream of windowed sums crashes at 85% of its input, after a checkpoint; the rows of the
    Parquet files WriteToParquet published are every sum exactly once, and the restart resumed from a
    checkpoint."""
    import pyarrow as pa

    crash = ctx.fail_after_checkpoint(_ValueAtLeast(510))
    schema = pa.schema([("key", pa.string()), ("start", pa.int64()), ("total", pa.int64())])
    (
        _paced_input(p, ctx)
        | "Crash" >> td.ParDo(crash)
        | td.WindowInto(window.FixedWindows(5))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: {"key": k, "start": int(w.start), "total": v})
        | td.WriteToParquet(str(ctx.workdir / "published" / "sums"), schema)
    )
