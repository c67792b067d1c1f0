"""The per-format reading layer: records of whole files and of splits, and the split property.

The property tests write random files and check that, for any number of
splits, the splits' records together are exactly the file's records, in
order, as plain Python reads them.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import re
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidal.io.filebased import (
    CsvFormat,
    FileBasedSource,
    FileFormatError,
    FileRange,
    JsonFormat,
    ParquetFormat,
    TextFormat,
    split_ranges,
)
from tidal.io.filesystems import BeamIOError, FileSystems

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Lines without line breaks; "\r" only where a "\r\n" ending puts it.
line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)


def expected_lines(data: bytes, header: int) -> list[str]:
    """Plain Python: split at "\\n", drop one "\\r" before it, drop the header lines and a final empty piece."""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    lines = [p[:-1] if p.endswith(b"\r") else p for p in parts]
    return [ln.decode("utf-8") for ln in lines[header:]]


def read_split(fmt: object, path: str, parts: int) -> list[object]:
    size = os.path.getsize(path)
    source = FileBasedSource(path, fmt)  # type: ignore[arg-type]
    splits = source.split(parts)
    assert 1 <= len(splits) <= max(1, parts)
    return [r for s in splits for r in s.read()]  # type: ignore[attr-defined]


@SETTINGS
@given(
    lines=st.lists(line_text, max_size=30),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    header=st.integers(0, 3),
    parts=st.integers(1, 40),
)
def test_text_splits_together_are_the_file(tmp_path: Path, lines: list[str], crlf: bool, final_newline: bool, header: int, parts: int) -> None:
    end = "\r\n" if crlf else "\n"
    text = end.join(lines) + (end if final_newline and lines else "")
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    want = expected_lines(text.encode("utf-8"), header)
    fmt = TextFormat(skip_header_lines=header)
    assert list(fmt.read_records(str(path))) == want
    assert read_split(fmt, str(path), parts) == want


@SETTINGS
@given(data=st.binary(max_size=200).map(lambda b: b.replace(b"\x00", b"")), cuts=st.lists(st.integers(0, 220), max_size=8))
def test_any_byte_cuts_of_a_file_read_each_record_once(tmp_path: Path, data: bytes, cuts: list[int]) -> None:
    # Arbitrary bytes (a coder keeps them as bytes) and arbitrary cut points, not just even ones.
    path = tmp_path / "b.bin"
    path.write_bytes(data)

    class Raw:
        def decode(self, b: bytes) -> bytes:
            return b

    fmt = TextFormat(coder=Raw())
    size = len(data)
    points = sorted({0, size, *(c for c in cuts if c <= size)})
    got = [r for a, b in zip(points, points[1:]) for r in fmt.read_records(str(path), a, b)]
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    assert got == [p[:-1] if p.endswith(b"\r") else p for p in parts]


@SETTINGS
@given(records=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), max_size=20), parts=st.integers(1, 20))
def test_a_custom_delimiter_splits_exactly(tmp_path: Path, records: list[str], parts: int) -> None:
    records = [r.replace("|#", "") for r in records]
    records = [r for r in records if not r.endswith("|") and not r.startswith("#")]
    path = tmp_path / "d.txt"
    path.write_bytes("|#".join(records).encode("utf-8") + (b"|#" if records else b""))
    fmt = TextFormat(delimiter=b"|#")
    assert read_split(fmt, str(path), parts) == records


@SETTINGS
@given(
    rows=st.lists(st.tuples(st.integers(-10**6, 10**6), st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=6)), max_size=40),
    parts=st.integers(1, 30),
)
def test_csv_splits_together_are_the_file(tmp_path: Path, rows: list[tuple[int, str]], parts: int) -> None:
    path = tmp_path / "r.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n", "s"])
        w.writerows(rows)
    fmt = CsvFormat(column_types={"s": pa.string()})
    want = [{"n": n, "s": s} for n, s in rows]
    assert read_split(fmt, str(path), parts) == want


@SETTINGS
@given(
    records=st.lists(st.dictionaries(st.sampled_from("abc"), st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats(allow_nan=False))), max_size=25),
    parts=st.integers(1, 30),
)
def test_json_splits_together_are_the_file(tmp_path: Path, records: list[dict[str, object]], parts: int) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert read_split(JsonFormat(), str(path), parts) == records


@SETTINGS
@given(n=st.integers(0, 120), group=st.integers(1, 30), parts=st.integers(1, 12))
def test_parquet_splits_by_row_group_together_are_the_file(tmp_path: Path, n: int, group: int, parts: int) -> None:
    path = tmp_path / "p.parquet"
    table = pa.table({"i": list(range(n)), "s": [f"v{i}" for i in range(n)]})
    pq.write_table(table, path, row_group_size=group)
    want = table.to_pylist()
    fmt = ParquetFormat()
    assert read_split(fmt, str(path), parts) == want
    source = FileBasedSource(str(path), fmt)
    for split in source.split(parts):
        for r in split.file_ranges():  # type: ignore[attr-defined]
            assert r.stop - r.start >= 0


def test_splits_of_splits_stay_exact(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    lines = [f"row {i}" for i in range(500)]
    path.write_text("\n".join(lines) + "\n")
    source = FileBasedSource(str(path), TextFormat())
    first = source.split(3)
    assert len(first) == 3
    again = [s2 for s in first for s2 in s.split(4)]
    assert len(again) == 12
    assert [r for s in again for r in s.read()] == lines


def test_several_files_split_by_size_in_name_order(tmp_path: Path) -> None:
    for name, n in (("b.txt", 100), ("a.txt", 10), ("c.txt", 300)):
        (tmp_path / name).write_text("".join(f"{name}:{i}\n" for i in range(n)))
    source = FileBasedSource(str(tmp_path / "*.txt"), TextFormat())
    assert [os.path.basename(m.path) for m in source.files] == ["a.txt", "b.txt", "c.txt"]
    splits = source.split(4)
    assert len(splits) == 4
    got = [r for s in splits for r in s.read()]
    want = [f"{name}:{i}" for name, n in (("a.txt", 10), ("b.txt", 100), ("c.txt", 300)) for i in range(n)]
    assert got == want
    sizes = [sum(r.stop - r.start for r in s.file_ranges()) for s in splits]
    total = sum(os.path.getsize(tmp_path / n) for n in ("a.txt", "b.txt", "c.txt"))
    assert sum(sizes) == total
    assert max(sizes) <= total / 4 + os.path.getsize(tmp_path / "a.txt")  # about even


def test_split_ranges_cover_every_byte_once(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_bytes(b"a\n" * 1000)
    meta = FileSystems.match([str(tmp_path / "x.txt")])[0].metadata_list
    groups = split_ranges(TextFormat(), meta, 7)
    flat = [r for g in groups for r in g]
    assert flat[0].start == 0 and flat[-1].stop == 2000
    assert all(a.stop == b.start for a, b in zip(flat, flat[1:]))


# -- compression ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "suffix,compress",
    [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress), (".deflate", zlib.compress)],
    ids=["gzip", "bzip2", "lzma", "deflate"],
)
def test_compressed_text_by_extension_with_a_header(tmp_path: Path, suffix: str, compress: object) -> None:
    data = b"header\n" + b"".join(b"line %d\n" % i for i in range(5000))
    path = tmp_path / f"t.txt{suffix}"
    path.write_bytes(compress(data))  # type: ignore[operator]
    fmt = TextFormat(skip_header_lines=1)
    want = [f"line {i}" for i in range(5000)]
    assert list(fmt.read_records(str(path))) == want
    # A compressed file is one split: the other splits read nothing of it.
    assert not fmt.splittable(str(path))
    assert read_split(fmt, str(path), 5) == want


def test_compression_type_overrides_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "t.data"
    path.write_bytes(gzip.compress(b"x\ny\n"))
    assert list(TextFormat(compression_type="gzip").read_records(str(path))) == ["x", "y"]


def test_an_unknown_or_unsupported_compression_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="compression_type 'zip' is not one of"):
        TextFormat(compression_type="zip")
    with pytest.raises(ValueError, match="zstd compression is not supported"):
        TextFormat(compression_type="zstd")


# -- bad input names the file and the line -------------------------------------------------------
def test_invalid_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\nfine\nbad \xff byte\nafter\n")
    with pytest.raises(FileFormatError, match=r"bad\.txt: line 3 is not valid UTF-8 \(byte 12"):
        list(TextFormat().read_records(str(path)))


def test_invalid_json_names_the_file_and_line_in_a_later_split(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(100)) + "{oops\n")
    splits = FileBasedSource(str(path), JsonFormat()).split(3)
    with pytest.raises(FileFormatError, match=r"r\.jsonl: line 101: invalid JSON .*'\{oops'"):
        for s in splits:
            list(s.read())


def test_a_csv_row_with_too_few_columns_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"a,b\n1,x\n2,y\n3\n4,z\n")
    with pytest.raises(FileFormatError, match=r"r\.csv: line 4: cannot parse '3' as CSV: .*Expected 2 columns, got 1"):
        list(CsvFormat().read_records(str(path)))


def test_a_csv_value_that_does_not_fit_its_type_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"a,b\n1,x\n2,y\nq,w\n4,z\n")
    with pytest.raises(FileFormatError, match=r"r\.csv: line 4: cannot parse 'q,w' as CSV: .*invalid value 'q'"):
        list(CsvFormat(column_types={"a": pa.int64()}).read_records(str(path)))


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(FileFormatError, match=r"x\.parquet: not a readable Parquet file"):
        list(ParquetFormat().read_records(str(path)))


def test_a_damaged_row_group_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"s": [f"value-{i:05d}" * 20 for i in range(3000)]}), path, row_group_size=1000, compression="none")
    raw = bytearray(path.read_bytes())
    md = pq.ParquetFile(path).metadata
    col = md.row_group(1).column(0)
    start = col.data_page_offset
    raw[start : start + 64] = b"\xff" * 64  # wreck the second row group's first page header
    path.write_bytes(bytes(raw))
    fmt = ParquetFormat()
    assert len(list(fmt.read_records(str(path), 0, 1))) == 1000
    with pytest.raises(FileFormatError, match=r"p\.parquet: row group 1 cannot be read"):
        list(fmt.read_records(str(path)))


def test_a_pattern_that_matches_nothing_fails_when_the_source_is_made(tmp_path: Path) -> None:
    with pytest.raises(BeamIOError, match=r"ReadFromText: no file matches the pattern '.*nothing-\*\.txt'"):
        FileBasedSource(str(tmp_path / "nothing-*.txt"), TextFormat(), what="ReadFromText")
    # validate=False allows it, and the files are matched again when read.
    source = FileBasedSource(str(tmp_path / "later-*.txt"), TextFormat(), validate=False)
    (tmp_path / "later-1.txt").write_text("now\n")
    assert list(source.read()) == ["now"]


# -- Arrow batches -------------------------------------------------------------------------------
def test_batches_hold_the_same_records(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("a,b\n1,x\n2,y\n")
    batches = list(CsvFormat().read_batches(str(tmp_path / "r.csv")))
    assert pa.Table.from_batches(batches).to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert pa.Table.from_batches(batches).schema.types == [pa.int64(), pa.string()]
    (tmp_path / "r.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    assert pa.Table.from_batches(list(JsonFormat().read_batches(str(tmp_path / "r.jsonl")))).to_pylist() == [{"a": 1}, {"a": 2}]
    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "p.parquet", row_group_size=2)
    tables = list(ParquetFormat().read_tables(str(tmp_path / "p.parquet")))
    assert [t.num_rows for t in tables] == [2, 1]
    assert list(ParquetFormat(columns=["a"]).read_records(str(tmp_path / "p.parquet"), 1, 2)) == [{"a": 3}]


def test_csv_types_come_from_the_start_of_the_file_for_every_split(tmp_path: Path) -> None:
    # The types come from the start of the file, for every split: a float late in an int column
    # is an error naming its line (not a column typed differently by the split that holds it).
    path = tmp_path / "r.csv"
    rows = [f"{i},{i}" for i in range(2000)]
    path.write_text("k,x\n" + "\n".join(rows) + "\n")
    fmt = CsvFormat(infer_bytes=64)
    source = FileBasedSource(str(path), fmt)
    got = [r for s in source.split(5) for r in s.read()]
    assert got == [{"k": i, "x": i} for i in range(2000)]
    rows[1500] = "1500,2.5"
    path.write_text("k,x\n" + "\n".join(rows) + "\n")
    errors = []
    for split in FileBasedSource(str(path), fmt).split(5):
        try:
            list(split.read())
        except FileFormatError as exc:
            errors.append(str(exc))
    [error] = errors  # only the split that holds line 1502
    assert re.match(r".*r\.csv: line 1502: cannot parse '1500,2\.5' as CSV: .*int64", error)


def test_a_compressed_file_belongs_to_the_split_that_starts_it(tmp_path: Path) -> None:
    path = tmp_path / "t.txt.gz"
    path.write_bytes(gzip.compress(b"a\nb\nc\n"))
    fmt = TextFormat()
    assert list(fmt.read_records(str(path), 0, 2)) == ["a", "b", "c"]  # all of it: it cannot be cut
    assert list(fmt.read_records(str(path), 2, 100)) == []


def test_csv_without_a_header_needs_names(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("1,x\n2,y\n")
    assert list(CsvFormat(header=None, names=["n", "s"]).read_records(str(path))) == [{"n": 1, "s": "x"}, {"n": 2, "s": "y"}]
    with pytest.raises(ValueError, match="needs names"):
        CsvFormat(header=None)


def test_a_split_range_outside_the_file_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("a\nb\n")
    assert list(TextFormat().read_records(str(path), 4, 100)) == []
    assert list(TextFormat().read_records(str(path), 3, 4)) == []
    assert list(TextFormat(skip_header_lines=5).read_records(str(path))) == []
    assert FileRange(str(path), 0, 4, 4).stop == 4
