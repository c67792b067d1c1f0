"""FileSystems: Beam's static file API over local paths and fsspec URLs (memory://, file://)."""

from __future__ import annotations

import gzip
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from tidal.io.filesystems import BeamIOError, CompressionTypes, FileMetadata, FileSystems, MatchResult


@pytest.fixture
def mem() -> str:
    """A fresh folder in fsspec's in-memory file system."""
    pytest.importorskip("fsspec")
    return f"memory://t{uuid.uuid4().hex[:8]}"


def write(path: str, data: bytes, compression_type: str = CompressionTypes.AUTO) -> None:
    with FileSystems.create(path, compression_type=compression_type) as f:
        f.write(data)


def read(path: str, compression_type: str = CompressionTypes.AUTO) -> bytes:
    with FileSystems.open(path, compression_type=compression_type) as f:
        return f.read()


# -- local paths -------------------------------------------------------------------------------
def test_match_lists_files_in_path_order_with_size_and_time(tmp_path: Path) -> None:
    before = time.time() - 5
    for name, data in (("b.txt", b"bb"), ("a.txt", b"a"), ("c.csv", b"ccc")):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.txt").write_bytes(b"dddd")
    [result] = FileSystems.match([str(tmp_path / "*.txt")])
    assert isinstance(result, MatchResult)
    assert result.pattern == str(tmp_path / "*.txt")
    assert [(os.path.basename(m.path), m.size_in_bytes) for m in result.metadata_list] == [("a.txt", 1), ("b.txt", 2)]
    assert all(isinstance(m, FileMetadata) and m.last_updated_in_seconds > before for m in result.metadata_list)
    deep = FileSystems.match([str(tmp_path / "**" / "*.txt")])[0].metadata_list
    assert [os.path.relpath(m.path, tmp_path) for m in deep] == ["a.txt", "b.txt", os.path.join("sub", "d.txt")]


def test_match_takes_several_patterns_and_limits(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_bytes(b"x")
    results = FileSystems.match([str(tmp_path / "f*.txt"), str(tmp_path / "none*"), str(tmp_path / "f3.txt")], limits=[2, None, None])
    assert [len(r.metadata_list) for r in results] == [2, 0, 1]
    assert results[2].metadata_list[0].path == str(tmp_path / "f3.txt")
    with pytest.raises(BeamIOError, match="3 patterns but 1 limits"):
        FileSystems.match(["a", "b", "c"], limits=[1])
    with pytest.raises(TypeError, match="a list of patterns"):
        FileSystems.match(str(tmp_path))  # type: ignore[arg-type]


def test_create_makes_folders_and_compresses_by_extension(tmp_path: Path) -> None:
    path = str(tmp_path / "deep" / "er" / "x.txt.gz")
    write(path, b"hello\n")
    assert gzip.decompress(Path(path).read_bytes()) == b"hello\n"
    assert read(path) == b"hello\n"
    assert read(path, CompressionTypes.UNCOMPRESSED) == Path(path).read_bytes()
    plain = str(tmp_path / "y.bin")
    write(plain, b"raw", CompressionTypes.UNCOMPRESSED)
    assert Path(plain).read_bytes() == b"raw"


@pytest.mark.parametrize("ct,suffix", [("gzip", ".gz"), ("bzip2", ".bz2"), ("lzma", ".xz"), ("deflate", ".deflate")])
def test_every_supported_compression_round_trips(tmp_path: Path, ct: str, suffix: str) -> None:
    data = b"".join(b"line %d\n" % i for i in range(20000))
    by_type = str(tmp_path / "explicit.bin")
    write(by_type, data, ct)
    assert Path(by_type).read_bytes() != data
    assert read(by_type, ct) == data
    by_name = str(tmp_path / f"auto{suffix}")
    write(by_name, data)
    assert read(by_name) == data
    assert CompressionTypes.detect_compression_type(by_name) == ct


def test_compression_types_are_beams() -> None:
    assert CompressionTypes.is_valid_compression_type("gzip")
    assert not CompressionTypes.is_valid_compression_type("zip")
    assert CompressionTypes.mime_type(CompressionTypes.GZIP) == "application/x-gzip"
    assert CompressionTypes.detect_compression_type("a.txt") == CompressionTypes.UNCOMPRESSED
    with pytest.raises(ValueError, match="zstd compression is not supported"):
        FileSystems.open("x.zst")


def test_rename_copy_exists_delete(tmp_path: Path) -> None:
    a, b, c = (str(tmp_path / n) for n in ("a", "b", "c"))
    write(a, b"1")
    FileSystems.copy([a], [b])
    assert read(b) == b"1" and FileSystems.exists(a)
    write(c, b"old")
    FileSystems.rename([b], [c])  # replaces c
    assert not FileSystems.exists(b) and read(c) == b"1"
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "x").write_bytes(b"x")
    FileSystems.copy([str(folder)], [str(tmp_path / "dir2")])
    assert (tmp_path / "dir2" / "x").read_bytes() == b"x"
    FileSystems.delete([a, str(folder)])
    assert not FileSystems.exists(a) and not folder.exists()


def test_batch_errors_name_each_failed_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    present = str(tmp_path / "present")
    write(present, b"x")
    with pytest.raises(BeamIOError, match="Delete operation failed") as info:
        FileSystems.delete([missing, present])
    assert list(info.value.exception_details) == [missing]  # type: ignore[arg-type]
    assert isinstance(info.value.exception_details[missing], FileNotFoundError)  # type: ignore[index]
    assert not FileSystems.exists(present)  # the others are still deleted
    with pytest.raises(BeamIOError, match="Rename operation failed") as info:
        FileSystems.rename([missing], [present])
    assert (missing, present) in info.value.exception_details  # type: ignore[operator]
    with pytest.raises(BeamIOError, match="as many destinations as sources"):
        FileSystems.copy([missing], [])


def test_join_split_and_mkdirs(tmp_path: Path) -> None:
    assert FileSystems.join("/a", "b", "c.txt") == os.path.join("/a", "b", "c.txt")
    assert FileSystems.split("/a/b/c.txt") == ("/a/b", "c.txt")
    folder = str(tmp_path / "x" / "y")
    FileSystems.mkdirs(folder)
    assert os.path.isdir(folder)
    with pytest.raises(BeamIOError, match="mkdirs of .* failed"):
        FileSystems.mkdirs(folder)  # as in Beam: the leaf must not exist yet


def test_a_failing_listing_is_a_beam_io_error_naming_the_pattern(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import glob as glob_module

    def broken(*args: object, **kwargs: object) -> list[str]:
        raise PermissionError("no listing here")

    monkeypatch.setattr(glob_module, "glob", broken)
    pattern = str(tmp_path / "*.txt")
    with pytest.raises(BeamIOError, match="Match operation failed") as info:
        FileSystems.match([pattern])
    assert list(info.value.exception_details) == [pattern]  # type: ignore[arg-type]


# -- fsspec URLs ----------------------------------------------------------------------------------
def test_a_memory_url_does_everything_a_local_path_does(mem: str) -> None:
    assert FileSystems.get_scheme(mem) == "memory"
    a = FileSystems.join(mem, "in", "a.txt")
    assert a == f"{mem}/in/a.txt"
    assert FileSystems.split(a) == (f"{mem}/in", "a.txt")
    write(a, b"alpha\n")
    write(FileSystems.join(mem, "in", "b.txt.gz"), b"beta\n")
    write(FileSystems.join(mem, "in", "c.csv"), b"c\n")
    [result] = FileSystems.match([FileSystems.join(mem, "in", "*.txt*")])
    assert [m.path for m in result.metadata_list] == [f"{mem}/in/a.txt", f"{mem}/in/b.txt.gz"]
    assert result.metadata_list[0].size_in_bytes == 6
    assert read(f"{mem}/in/b.txt.gz") == b"beta\n"
    assert FileSystems.exists(a)
    FileSystems.copy([a], [f"{mem}/out/a2.txt"])
    FileSystems.rename([f"{mem}/out/a2.txt"], [f"{mem}/out/a3.txt"])
    assert read(f"{mem}/out/a3.txt") == b"alpha\n"
    assert not FileSystems.exists(f"{mem}/out/a2.txt")
    FileSystems.delete([f"{mem}/out/a3.txt"])
    assert not FileSystems.exists(f"{mem}/out/a3.txt")
    with pytest.raises(BeamIOError, match="Delete operation failed"):
        FileSystems.delete([f"{mem}/out/a3.txt"])
    assert FileSystems.match([f"{mem}/none/*.txt"])[0].metadata_list == []


def test_a_file_url_reads_local_files(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    (tmp_path / "x.txt").write_bytes(b"local")
    url = f"file://{tmp_path}/*.txt"
    [m] = FileSystems.match([url])[0].metadata_list
    assert m.path == f"file://{tmp_path}/x.txt"
    assert m.size_in_bytes == 5 and m.last_updated_in_seconds > 0
    assert read(m.path) == b"local"


def test_a_url_without_fsspec_installed_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec now raises ImportError
    with pytest.raises(BeamIOError, match=r"the path 'memory://x/a\.txt' is a URL: .* needs fsspec, which is not installed"):
        FileSystems.open("memory://x/a.txt")
    with pytest.raises(BeamIOError, match="needs fsspec"):
        FileSystems.match(["s3://bucket/*.csv"])
