"""File sources and sinks on every runner: round trips, shard names, reruns, parallel reads, bad input.

Every round trip writes with one pipeline and reads back with another, on
the same runner, and compares with the input as plain Python has it.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tidal as td
from tidal.io.filebasedsink import STAGING_DIR
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner
from tidal.testing import assert_that, equal_to
from tidal.window import TimestampedValue

ROWS = [{"id": i, "name": f"name {i}", "score": i + 0.25, "ok": i % 3 == 0} for i in range(40)]
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64()), ("ok", pa.bool_())])


def make_runner(name: str) -> Any:
    if name == "direct":
        return DirectRunner(bundle_size=7)
    if name == "microbatch":
        return MicroBatchRunner(max_batch_size=9)
    from tidal.runners.ray import RayRunner

    return RayRunner(parallelism=2)


class RunnerUnderTest:
    """Makes the runner under test; ``writers`` is how many parallel instances a sink step gets on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.writers = 2 if name == "ray" else 1

    def __call__(self) -> Any:
        return make_runner(self.name)


@pytest.fixture(params=["direct", "microbatch", "ray"])
def runner(request: pytest.FixtureRequest) -> RunnerUnderTest:
    """The runner under test (Ray's local instance is started once per session)."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return RunnerUnderTest(request.param)


def published(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and (folder / n).is_file())


def staged(folder: Path) -> list[str]:
    staging = folder / STAGING_DIR
    return sorted(os.listdir(staging)) if staging.is_dir() else []


def shard_names(base: str, count: int, suffix: str = "") -> list[str]:
    return [f"{base}-{i:05d}-of-{count:05d}{suffix}" for i in range(count)]


# -- round trips on every runner ------------------------------------------------------------------
def test_every_format_round_trips_on_every_runner(tmp_path: Path, runner: RunnerUnderTest) -> None:
    out = tmp_path / "out"
    lines = [f"line {i} caf\u00e9" for i in range(40)]
    with td.Pipeline(runner=runner()) as p:
        rows = p | "Rows" >> td.Create(ROWS)
        _ = rows | td.WriteToParquet(str(out / "pq"), SCHEMA, file_name_suffix=".parquet")
        _ = rows | td.WriteToCsv(str(out / "csv"), file_name_suffix=".csv")
        _ = rows | td.WriteToJson(str(out / "json"), file_name_suffix=".jsonl")
        _ = p | "Lines" >> td.Create(lines) | td.WriteToText(str(out / "txt"), ".txt.gz")
        _ = rows | "Tables" >> td.Map(lambda r: pa.Table.from_pylist([r], SCHEMA)) | td.WriteToParquetBatched(str(out / "batched"))
    writers = runner.writers
    assert published(out) == sorted(
        shard_names("batched", writers) + shard_names("csv", writers, ".csv") + shard_names("json", writers, ".jsonl")
        + shard_names("pq", writers, ".parquet") + shard_names("txt", writers, ".txt.gz")
    )
    assert staged(out) == []
    # What the files hold, read by plain Python and pyarrow.
    assert pq.read_table(out / shard_names("pq", writers, ".parquet")[0]).schema == SCHEMA
    plain_txt = [ln for n in shard_names("txt", writers, ".txt.gz") for ln in gzip.decompress((out / n).read_bytes()).decode().splitlines()]
    assert sorted(plain_txt) == sorted(lines)
    plain_json = [json.loads(ln) for n in shard_names("json", writers, ".jsonl") for ln in (out / n).read_text().splitlines()]
    assert sorted(plain_json, key=lambda r: r["id"]) == ROWS

    with td.Pipeline(runner=runner()) as p:
        assert_that(p | td.ReadFromParquet(str(out / "pq-*")), equal_to(ROWS), label="parquet")
        assert_that(p | td.ReadFromCsv(str(out / "csv-*")), equal_to(ROWS), label="csv")
        assert_that(p | td.ReadFromJson(str(out / "json-*")), equal_to(ROWS), label="json")
        assert_that(p | td.ReadFromText(str(out / "txt-*")), equal_to(lines), label="text")
        tables = p | td.ReadFromParquetBatched(str(out / "batched-*")) | td.FlatMap(lambda t: t.to_pylist())
        assert_that(tables, equal_to(ROWS), label="batched")


def test_num_shards_makes_exactly_that_many_files_on_every_runner(tmp_path: Path, runner: RunnerUnderTest) -> None:
    with td.Pipeline(runner=runner()) as p:
        nums = p | td.Create(list(range(30)))
        _ = nums | td.WriteToText(str(tmp_path / "n"), ".txt", num_shards=4)
        _ = nums | td.Map(lambda n: {"n": n}) | td.WriteToParquet(str(tmp_path / "p"), num_shards=3)
    assert published(tmp_path) == sorted(shard_names("n", 4, ".txt") + shard_names("p", 3))
    texts = [(tmp_path / n).read_text().split() for n in shard_names("n", 4, ".txt")]
    assert sorted(int(x) for t in texts for x in t) == list(range(30))
    assert all(texts)  # round-robin: every shard has some
    tables = [pq.read_table(tmp_path / n) for n in shard_names("p", 3)]
    assert sorted(v for t in tables for v in t.column("n").to_pylist()) == list(range(30))


def test_a_rerun_replaces_the_prefix_output_on_every_runner(tmp_path: Path, runner: RunnerUnderTest) -> None:
    prefix = str(tmp_path / "words")
    with td.Pipeline(runner=runner()) as p:
        _ = p | td.Create(["old"] * 10) | td.WriteToText(prefix, num_shards=5)
    assert len(published(tmp_path)) == 5
    (tmp_path / "words-notes.md").write_text("not the sink's\n")  # not named like the sink's output: kept
    with td.Pipeline(runner=runner()) as p:
        _ = p | td.Create(["new", "new"]) | td.WriteToText(prefix)
    assert td.io.read_text(prefix + "-0*") == ["new", "new"]  # once: the earlier run's files are gone
    assert "words-notes.md" in published(tmp_path)


def test_bytes_are_written_as_bytes_and_str_as_utf8_on_every_runner(tmp_path: Path, runner: RunnerUnderTest) -> None:
    with td.Pipeline(runner=runner()) as p:
        _ = p | td.Create([b"raw \xff bytes", "caf\u00e9", 7]) | td.WriteToText(str(tmp_path / "o"), num_shards=1)
    data = (tmp_path / "o-00000-of-00001").read_bytes()
    assert sorted(data.split(b"\n")[:-1]) == sorted([b"raw \xff bytes", "caf\u00e9".encode(), b"7"])


# -- parallel reads on Ray -----------------------------------------------------------------------------
@pytest.mark.usefixtures("ray_session")
def test_ray_reads_one_file_in_byte_ranges_on_several_workers(tmp_path: Path) -> None:
    from tidal.runners.ray import RayRunner

    lines = [f"{i:06d}" for i in range(3000)]
    (tmp_path / "in.txt").write_text("".join(ln + "\n" for ln in lines))
    read = td.ReadFromText(str(tmp_path / "in.txt"))
    # The source is split into max_parallelism (128) byte ranges whatever the parallelism, and
    # each worker reads a contiguous half of them: worker 0 the lines of ranges 0..63.
    first = sum(len(list(piece.read())) for piece in read.source.split(128)[:64])
    assert 1400 < first < 1600
    # The sink is fused with the source: each of the two workers writes the lines of its ranges.
    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        _ = p | read | td.WriteToText(str(tmp_path / "out"))
    parts = [(tmp_path / n).read_text().split() for n in shard_names("out", 2)]
    assert parts == [lines[:first], lines[first:]]


# -- ReadFromText options -----------------------------------------------------------------------------
def test_read_from_text_compression_header_and_delimiter(tmp_path: Path) -> None:
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(b"# header\nx\ny\n"))
    (tmp_path / "b.log").write_bytes(b"# header\nz\n")
    (tmp_path / "c.dat").write_bytes(gzip.compress(b"p|q|"))
    with td.Pipeline() as p:
        assert_that(p | td.ReadFromText(str(tmp_path / "*.log*"), skip_header_lines=1), equal_to(["x", "y", "z"]), label="auto")
        kept = p | "Kept" >> td.ReadFromText(str(tmp_path / "b.log"), strip_trailing_newlines=False)
        assert_that(kept, equal_to(["# header\n", "z\n"]), label="kept")
        delimited = p | "Delim" >> td.ReadFromText(str(tmp_path / "c.dat"), compression_type="gzip", delimiter=b"|")
        assert_that(delimited, equal_to(["p", "q"]), label="delimited")
    with pytest.raises(ValueError, match="escapechar=b'\\\\\\\\' is not supported"):
        td.ReadFromText(str(tmp_path / "b.log"), escapechar=b"\\")


def test_write_to_text_header_footer_compression_and_template(tmp_path: Path) -> None:
    with td.Pipeline() as p:
        _ = p | td.Create(["a", "b"]) | td.WriteToText(str(tmp_path / "one"), ".csv.gz", header="h", footer="f", shard_name_template="")
    assert published(tmp_path) == ["one.csv.gz"]
    assert gzip.decompress((tmp_path / "one.csv.gz").read_bytes()) == b"h\na\nb\nf\n"
    with td.Pipeline() as p:
        _ = p | td.Create(["a"]) | td.WriteToText(str(tmp_path / "t"), shard_name_template="_SS_of_NNN", append_trailing_newlines=False)
    assert (tmp_path / "t_00_of_001").read_bytes() == b"a"
    with pytest.raises(ValueError, match="Shard number pattern S\\+ not found"):
        td.WriteToText(str(tmp_path / "x"), shard_name_template="-NN")
    with pytest.raises(ValueError, match="W \\(the window\\) is not supported"):
        td.WriteToText(str(tmp_path / "x"), shard_name_template="-W-SSSSS-of-NNNNN")
    with pytest.raises(ValueError, match="names a single file, but num_shards is 3"):
        td.WriteToText(str(tmp_path / "x"), shard_name_template="", num_shards=3)
    with pytest.raises(ValueError, match="triggering_frequency=60 is not supported: tidal publishes"):
        td.WriteToText(str(tmp_path / "x"), triggering_frequency=60)


# -- CSV and JSON options --------------------------------------------------------------------------------
def test_csv_options(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("skip me\nid;temp;city\n1;2.5;Oslo\n2;;Lima\n")
    (tmp_path / "b.csv").write_text("7,x\n")
    with td.Pipeline() as p:
        rows = p | td.ReadFromCsv(str(tmp_path / "a.csv"), sep=";", skiprows=1, dtype={"id": "int32", "city": str}, filename_column="file")
        path = str(tmp_path / "a.csv")
        assert_that(rows, equal_to([{"id": 1, "temp": 2.5, "city": "Oslo", "file": path}, {"id": 2, "temp": None, "city": "Lima", "file": path}]))
        named = p | "Named" >> td.ReadFromCsv(str(tmp_path / "b.csv"), header=None, names=["n", "s"], usecols=["s"])
        assert_that(named, equal_to([{"s": "x"}]), label="named")
    with pytest.raises(TypeError, match="ReadFromCsv has no option 'index_col'; its options are sep, delimiter"):
        td.ReadFromCsv(str(tmp_path / "a.csv"), index_col=0)
    with pytest.raises(TypeError, match="cannot use 'complex' as a column type"):
        td.ReadFromCsv(str(tmp_path / "a.csv"), dtype={"id": "complex"})
    with td.Pipeline() as p:
        _ = p | td.Create([{"b": 1, "a": "x,y"}]) | td.WriteToCsv(str(tmp_path / "o"), sep="|", columns=["a", "b"])
    assert (tmp_path / "o-00000-of-00001").read_text() == '"a"|"b"\n"x,y"|1\n'


def test_json_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reads and writes JSON lines"):
        td.ReadFromJson(str(tmp_path / "x"), lines=False, validate=False)
    with pytest.raises(ValueError, match="reads and writes JSON lines"):
        td.WriteToJson(str(tmp_path / "x"), orient="split")
    with td.Pipeline() as p:
        _ = p | td.Create(["caf\u00e9", [1, None]]) | td.WriteToJson(str(tmp_path / "j"), force_ascii=False, compression="gzip")
    assert sorted(gzip.decompress((tmp_path / "j-00000-of-00001").read_bytes()).decode().splitlines()) == ['"caf\u00e9"', "[1, null]"]


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda pat: td.ReadFromText(pat),
        lambda pat: td.ReadFromCsv(pat),
        lambda pat: td.ReadFromJson(pat),
        lambda pat: td.ReadFromParquet(pat),
        lambda pat: td.ReadFromParquetBatched(pat),
    ],
    ids=["ReadFromText", "ReadFromCsv", "ReadFromJson", "ReadFromParquet", "ReadFromParquetBatched"],
)
def test_a_pattern_that_matches_no_file_fails_at_construction(tmp_path: Path, make: Callable[[str], Any], request: pytest.FixtureRequest) -> None:
    what = request.node.callspec.id
    with pytest.raises(td.io.BeamIOError, match=rf"^{what}: no file matches the pattern '.*nothing\*\.x'"):
        make(str(tmp_path / "nothing*.x"))


def test_an_unparsable_file_fails_the_run_naming_the_file_and_line(tmp_path: Path, runner: RunnerUnderTest) -> None:
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": \n')
    p = td.Pipeline(runner=runner())
    _ = p | "Events" >> td.ReadFromJson(str(tmp_path / "a.jsonl")) | td.WriteToJson(str(tmp_path / "out"))
    with pytest.raises(td.PipelineExecutionError) as info:
        p.run().wait_until_finish()
    message = str(info.value)
    assert "step 'Events/Read'" in message
    assert f"{tmp_path / 'a.jsonl'}: line 3: invalid JSON" in message
    assert [n for n in published(tmp_path) if n.startswith("out")] == []  # nothing published


def test_a_row_that_does_not_match_the_parquet_schema_names_field_step_and_value(tmp_path: Path, runner: RunnerUnderTest) -> None:
    rows = [{"id": i, "name": f"n{i}", "score": 1.0, "ok": True} for i in range(20)]
    rows[13] = {"id": "thirteen", "name": "n13", "score": 1.0, "ok": True}
    p = td.Pipeline(runner=runner())
    _ = p | td.Create(rows) | "SaveRows" >> td.WriteToParquet(str(tmp_path / "out"), SCHEMA)
    with pytest.raises(td.UserCodeError) as info:
        p.run().wait_until_finish()
    message = str(info.value)
    assert message.startswith("step 'SaveRows/Write': ")
    assert "the field 'id' (int64) cannot hold the value 'thirteen' (str)" in message
    assert published(tmp_path) == []  # nothing partially published, by any writer


def test_a_missing_non_nullable_field_and_a_non_dict_are_clear_errors(tmp_path: Path) -> None:
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string())])
    p = td.Pipeline()
    _ = p | td.Create([{"name": "no id"}]) | "Save" >> td.WriteToParquet(str(tmp_path / "a"), strict)
    with pytest.raises(td.UserCodeError, match=r"step 'Save/Write': .*without the field 'id' do not match the schema: 'id' \(int64\) is not nullable"):
        p.run()
    p = td.Pipeline()
    _ = p | td.Create([5]) | "Save" >> td.WriteToParquet(str(tmp_path / "b"), strict)
    with pytest.raises(td.UserCodeError, match=r"step 'Save/Write': .*WriteToParquet writes dicts \(column name to value\) or Arrow rows"):
        p.run()
    p = td.Pipeline()  # with num_shards the rows are converted by the sink itself: the same message
    _ = p | td.Create([{"id": 1, "name": 3.5}]) | "Save" >> td.WriteToParquet(str(tmp_path / "c"), strict, num_shards=1)
    with pytest.raises(td.UserCodeError, match=r"step 'Save/Write': .*the row \{'id': 1, 'name': 3\.5\} does not match the schema: the field 'name' \(string\) cannot hold the value 3\.5 \(float\)"):
        p.run()
    assert published(tmp_path) == []
