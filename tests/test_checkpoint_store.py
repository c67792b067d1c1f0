"""The checkpoint store: complete checkpoints restore exactly; partial or damaged ones are skipped."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Callable

import pytest

from tidal.runners.core.checkpoint import (
    MANIFEST,
    CheckpointError,
    CheckpointStore,
    CheckpointWarning,
)


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path / "ckpt")


def take(store: CheckpointStore, checkpoint_id: int, parts: dict[str, bytes], savepoint: bool = False) -> None:
    """Write every part of ``checkpoint_id``, then publish it."""
    for name, data in parts.items():
        store.write_part(checkpoint_id, name, data)
    store.complete(checkpoint_id, list(parts), savepoint=savepoint)


def folder(store: CheckpointStore, checkpoint_id: int) -> Path:
    return Path(store.location) / f"chk-{checkpoint_id:06d}"


def skipped(store: CheckpointStore, checkpoint_id: int, reason: str) -> str:
    """The (regex-escaped) warning ``latest()`` gives for a checkpoint it skips."""
    return re.escape(f"skipping checkpoint {checkpoint_id} in {store.location}: {reason}; trying the one before it")


# -- writing and reading back ------------------------------------------------------
def test_a_complete_checkpoint_reads_back_every_part(store: CheckpointStore) -> None:
    store.write_part(1, "stage0-0", b"state of worker 0")
    store.write_part(1, "stage0-1", b"")
    store.write_part(1, "stage1-0", bytes(range(256)))
    store.complete(1, ["stage0-0", "stage0-1", "stage1-0"], meta={"sources": {"Read": 42}})

    cp = store.latest()
    assert cp is not None
    assert cp.id == 1
    assert cp.parts == ("stage0-0", "stage0-1", "stage1-0")
    assert cp.read("stage0-0") == b"state of worker 0"
    assert cp.read("stage0-1") == b""
    assert cp.read("stage1-0") == bytes(range(256))
    assert cp.meta == {"sources": {"Read": 42}}
    assert cp.savepoint is False
    assert cp.location == f"{store.location}/chk-000001"
    assert Path(cp.location).is_dir()


def test_the_manifest_lists_each_part_with_its_size_and_sha256(store: CheckpointStore) -> None:
    take(store, 7, {"a": b"alpha", "b": b"bravo!"})
    manifest = json.loads((folder(store, 7) / MANIFEST).read_bytes())
    assert manifest["id"] == 7
    assert manifest["parts"] == {
        "a": {"size": 5, "sha256": hashlib.sha256(b"alpha").hexdigest()},
        "b": {"size": 6, "sha256": hashlib.sha256(b"bravo!").hexdigest()},
    }
    assert manifest["meta"] == {}
    assert manifest["savepoint"] is False
    assert isinstance(manifest["completed_at"], float)


def test_latest_is_the_newest_complete_checkpoint(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"one"})
    take(store, 2, {"p": b"two"})
    take(store, 3, {"p": b"three"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is skipped, so nothing is said
        cp = store.latest()
    assert cp is not None and cp.id == 3 and cp.read("p") == b"three"
    assert store.get(2).read("p") == b"two"


def test_an_empty_store_has_no_latest_and_numbers_from_one(store: CheckpointStore) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.latest() is None
    assert store.is_empty()
    assert store.ids() == []
    assert store.next_id() == 1
    assert Path(store.location).is_dir()  # the store creates its folder


def test_next_id_counts_partial_checkpoints_too(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"x"})
    store.write_part(4, "p", b"y")  # taken but never completed
    assert store.ids() == [1, 4]
    assert store.next_id() == 5
    assert not store.is_empty()


def test_completed_ids_are_those_with_a_manifest_restorable_or_not(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"x"})
    take(store, 2, {"p": b"y"})
    store.write_part(3, "p", b"z")  # never completed: nothing of it was published
    (Path(store.location) / "chk-000002" / "MANIFEST.json").write_bytes(b"[1,2,3]")  # completed, then damaged
    assert store.ids() == [1, 2, 3]
    assert store.completed_ids() == [1, 2]


def test_parts_lists_what_was_written_without_the_manifest(store: CheckpointStore) -> None:
    store.write_part(3, "stage0-0", b"a")
    store.write_part(3, "stage0-1", b"b")
    assert store.parts(3) == {"stage0-0", "stage0-1"}
    store.complete(3, ["stage0-0", "stage0-1"])
    assert store.parts(3) == {"stage0-0", "stage0-1"}
    assert store.parts(99) == set()


def test_a_part_written_again_replaces_the_first_attempt(store: CheckpointStore) -> None:
    store.write_part(1, "p", b"first attempt, longer")
    store.write_part(1, "p", b"retry")
    store.complete(1, ["p"])
    assert store.get(1).read("p") == b"retry"


def test_a_store_opened_again_on_the_same_folder_sees_the_checkpoints(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"kept"})
    again = CheckpointStore(store.location)
    cp = again.latest()
    assert cp is not None and cp.id == 1 and cp.read("p") == b"kept"


def test_retain_is_at_least_one_and_repr_names_the_location(tmp_path: Path) -> None:
    s = CheckpointStore(tmp_path, retain=0)
    assert s.retain == 1
    assert repr(s) == f"CheckpointStore({str(tmp_path)!r}, retain=1)"


def test_verify_says_none_for_a_good_checkpoint(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"x"})
    assert store.verify(1) is None


# -- partial and damaged checkpoints -------------------------------------------------
def test_a_partial_checkpoint_is_skipped_for_the_one_before_it(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"complete"})
    store.write_part(2, "p", b"the job died before the manifest")
    with pytest.warns(CheckpointWarning, match=skipped(store, 2, "it is incomplete (no manifest: the job stopped while taking it)")) as record:
        cp = store.latest()
    assert cp is not None and cp.id == 1 and cp.read("p") == b"complete"
    assert len(record) == 1
    assert record[0].filename == __file__  # the warning points at the caller of latest()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, other checksum


def _delete(path: Path) -> None:
    path.unlink()


def _append(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"!")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "its part 'w1' is damaged (size or checksum differs from the manifest)"),
        (_append, "its part 'w1' is damaged (size or checksum differs from the manifest)"),
        (_flip_a_byte, "its part 'w1' is damaged (size or checksum differs from the manifest)"),
        (_delete, "its part 'w1' is missing"),
    ],
    ids=["truncated", "appended", "byte-flipped", "deleted"],
)
def test_a_damaged_part_is_skipped_with_the_reason(store: CheckpointStore, damage: Callable[[Path], None], reason: str) -> None:
    take(store, 1, {"w0": b"good zero", "w1": b"good one"})
    take(store, 2, {"w0": b"new zero", "w1": b"new one"})
    damage(folder(store, 2) / "w1")

    assert store.verify(2) == reason
    with pytest.warns(CheckpointWarning, match=skipped(store, 2, reason)):
        cp = store.latest()
    assert cp is not None and cp.id == 1
    assert (cp.read("w0"), cp.read("w1")) == (b"good zero", b"good one")
    with pytest.raises(CheckpointError) as info:
        store.get(2)
    assert str(info.value) == f"checkpoint 2 in {store.location} cannot be restored: {reason}"


@pytest.mark.parametrize(
    "manifest",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"",
        b"null",
        b"[1, 2, 3]",
        b'{"id": 2}',
        b'{"id": 2, "parts": ["w0"]}',
        b'{"id": 2, "parts": {"w0": 9}}',
    ],
    ids=["unparsable", "not-utf8", "empty", "null", "a-list", "no-parts", "parts-a-list", "entry-not-an-object"],
)
def test_a_garbage_manifest_is_skipped(store: CheckpointStore, manifest: bytes) -> None:
    take(store, 1, {"w0": b"good"})
    take(store, 2, {"w0": b"newer"})
    (folder(store, 2) / MANIFEST).write_bytes(manifest)

    assert store.verify(2) == "its manifest is damaged"
    with pytest.warns(CheckpointWarning, match=skipped(store, 2, "its manifest is damaged")):
        cp = store.latest()
    assert cp is not None and cp.id == 1 and cp.read("w0") == b"good"
    with pytest.raises(CheckpointError, match=re.escape("checkpoint 2 in ") + ".*" + re.escape("cannot be restored: its manifest is damaged")):
        store.get(2)


def test_a_garbage_manifest_does_not_break_retention(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=1)
    take(store, 1, {"p": b"a"})
    (folder(store, 1) / MANIFEST).write_bytes(b"[]")
    take(store, 2, {"p": b"b"})  # expires checkpoint 1 whatever its manifest holds
    assert store.ids() == [2]


def test_several_bad_checkpoints_are_skipped_newest_first(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"good"})
    take(store, 2, {"p": b"damaged"})
    _flip_a_byte(folder(store, 2) / "p")
    store.write_part(3, "p", b"partial")
    with pytest.warns(CheckpointWarning) as record:
        cp = store.latest()
    assert cp is not None and cp.id == 1
    assert [str(w.message) for w in record] == [
        f"skipping checkpoint 3 in {store.location}: it is incomplete (no manifest: the job stopped while taking it); trying the one before it",
        f"skipping checkpoint 2 in {store.location}: its part 'p' is damaged (size or checksum differs from the manifest); trying the one before it",
    ]


def test_no_restorable_checkpoint_gives_none_after_the_warnings(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"x"})
    _delete(folder(store, 1) / "p")
    store.write_part(2, "p", b"partial")
    with pytest.warns(CheckpointWarning) as record:
        assert store.latest() is None
    assert len(record) == 2


def test_get_of_a_partial_or_absent_checkpoint_says_why(store: CheckpointStore) -> None:
    store.write_part(1, "p", b"x")
    with pytest.raises(CheckpointError) as info:
        store.get(1)
    assert str(info.value) == (
        f"checkpoint 1 in {store.location} cannot be restored: it is incomplete (no manifest: the job stopped while taking it)"
    )
    with pytest.raises(CheckpointError) as info:
        store.get(5)
    assert str(info.value) == f"checkpoint 5 in {store.location} cannot be restored: it does not exist"


# -- retention and savepoints --------------------------------------------------------
def test_retention_keeps_the_newest_complete_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=2)
    for cid in range(1, 6):
        take(store, cid, {"p": str(cid).encode()})
    assert sorted(os.listdir(tmp_path)) == ["chk-000004", "chk-000005"]
    assert store.ids() == [4, 5]
    assert store.get(4).read("p") == b"4"


def test_retention_defaults_to_three(store: CheckpointStore) -> None:
    for cid in range(1, 6):
        take(store, cid, {"p": b"x"})
    assert store.ids() == [3, 4, 5]


def test_savepoints_survive_retention_and_do_not_use_its_slots(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=1)
    take(store, 1, {"p": b"1"})
    take(store, 2, {"p": b"savepoint"}, savepoint=True)
    take(store, 3, {"p": b"3"})
    take(store, 4, {"p": b"4"})
    assert sorted(os.listdir(tmp_path)) == ["chk-000002", "chk-000004"]
    sp = store.get(2)
    assert sp.savepoint is True and sp.read("p") == b"savepoint"
    latest = store.latest()
    assert latest is not None and latest.id == 4 and latest.savepoint is False


def test_a_savepoint_is_the_latest_when_it_is_newest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=1)
    take(store, 1, {"p": b"1"})
    take(store, 2, {"p": b"sp"}, savepoint=True)
    cp = store.latest()
    assert cp is not None and (cp.id, cp.savepoint, cp.read("p")) == (2, True, b"sp")
    assert store.ids() == [1, 2]  # the savepoint takes no retention slot


def test_retention_removes_older_partial_checkpoints_but_not_newer_ones(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=3)
    store.write_part(1, "p", b"abandoned")
    store.write_part(3, "p", b"still being taken")
    take(store, 2, {"p": b"2"})
    assert store.ids() == [2, 3]
    assert store.parts(3) == {"p"}


# -- atomic writes -------------------------------------------------------------------
def test_a_failed_write_leaves_no_file_behind(store: CheckpointStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        store.write_part(1, "p", b"data")
    assert os.listdir(folder(store, 1)) == []  # not even a hidden temporary file
    assert store.parts(1) == set()


def test_a_failed_manifest_write_leaves_the_checkpoint_partial(store: CheckpointStore, monkeypatch: pytest.MonkeyPatch) -> None:
    take(store, 1, {"p": b"one"})
    store.write_part(2, "p", b"two")
    real_replace = os.replace

    def fail_for_manifest(src: str, dst: str) -> None:
        if os.fspath(dst).endswith(MANIFEST):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_for_manifest)
    with pytest.raises(OSError, match="disk full"):
        store.complete(2, ["p"])
    assert sorted(os.listdir(folder(store, 2))) == ["p"]
    with pytest.warns(CheckpointWarning, match=skipped(store, 2, "it is incomplete (no manifest: the job stopped while taking it)")):
        cp = store.latest()
    assert cp is not None and cp.id == 1


def test_temporary_files_of_a_crashed_writer_are_invisible(store: CheckpointStore) -> None:
    take(store, 1, {"p": b"x"})
    (folder(store, 1) / ".p.abc123.tmp").write_bytes(b"half a")
    (folder(store, 1) / f".{MANIFEST}.def456.tmp").write_bytes(b"{")
    (Path(store.location) / ".chk-000009.tmp").mkdir()
    assert store.parts(1) == {"p"}
    assert store.ids() == [1]
    assert store.verify(1) is None


def test_writes_leave_only_the_final_names(store: CheckpointStore) -> None:
    take(store, 1, {"a": b"1", "b": b"2"})
    assert sorted(os.listdir(folder(store, 1))) == [MANIFEST, "a", "b"]  # os.listdir shows hidden names too


def test_completing_with_a_part_never_written_fails_and_publishes_nothing(store: CheckpointStore) -> None:
    store.write_part(1, "a", b"x")
    with pytest.raises(FileNotFoundError):
        store.complete(1, ["a", "b"])
    assert not (folder(store, 1) / MANIFEST).exists()


# -- URL locations (fsspec) ------------------------------------------------------------
def test_a_url_location_without_fsspec_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # importing it now raises ImportError
    with pytest.raises(CheckpointError) as info:
        CheckpointStore("s3://bucket/ckpt")
    assert str(info.value) == (
        "the checkpoint location 's3://bucket/ckpt' is a URL, which needs the fsspec package "
        "(pip install fsspec, plus the driver for its scheme); use a local or shared folder otherwise"
    )
    assert isinstance(info.value.__cause__, ImportError)
    # A plain folder never needs fsspec.
    assert CheckpointStore(tmp_path).is_empty()


def test_a_file_url_round_trip_through_fsspec(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    url = f"file://{tmp_path}/ckpt"
    store = CheckpointStore(url, retain=2)
    assert store.is_empty() and store.next_id() == 1
    for cid in range(1, 4):
        take(store, cid, {"w0": f"zero {cid}".encode(), "w1": f"one {cid}".encode()})
    take(store, 4, {"w0": b"saved"}, savepoint=True)
    store.write_part(5, "w0", b"partial")

    assert sorted(os.listdir(tmp_path / "ckpt")) == ["chk-000002", "chk-000003", "chk-000004", "chk-000005"]
    assert sorted(os.listdir(tmp_path / "ckpt" / "chk-000003")) == [MANIFEST, "w0", "w1"]  # no temporary files
    assert store.ids() == [2, 3, 4, 5]
    assert store.parts(5) == {"w0"}
    with pytest.warns(CheckpointWarning, match=skipped(store, 5, "it is incomplete (no manifest: the job stopped while taking it)")):
        cp = store.latest()
    assert cp is not None and (cp.id, cp.savepoint, cp.read("w0")) == (4, True, b"saved")
    assert cp.location == f"{url}/chk-000004"
    assert store.get(3).read("w1") == b"one 3"

    _truncate(tmp_path / "ckpt" / "chk-000003" / "w1")
    assert store.verify(3) == "its part 'w1' is damaged (size or checksum differs from the manifest)"
    _delete(tmp_path / "ckpt" / "chk-000002" / "w0")
    assert store.verify(2) == "its part 'w0' is missing"
    assert store.verify(9) == "it does not exist"
