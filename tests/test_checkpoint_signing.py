"""Signed checkpoints: with a key, a checkpoint that was tampered with is refused before anything is unpickled.

Every attack below plants a part whose unpickling would create a file (the
"bomb"); each test proves the file was never created, and that the refusal
says what was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest

import tidal as td
from tidal.runners.core.checkpoint import (
    KEY_ENV,
    MANIFEST,
    CheckpointError,
    CheckpointSignatureError,
    CheckpointStore,
    CheckpointWarning,
    checkpoint_key,
)
from tidal.runners.microbatch import MicroBatchRunner
from tidal.runners.microbatch.commitlog import STATE_PART, CommitLog

KEY = "the-secret"


class _Bomb:
    """Unpickling it creates the file ``path``: proof that a part was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def bomb(tmp_path: Path) -> tuple[bytes, Path]:
    target = tmp_path / "exploded"
    return pickle.dumps(_Bomb(target)), target


def commit(log: CommitLog, index: int, state: Any) -> None:
    log.write_ahead(index, {"start": {}, "end": {}, "records": 0})
    log.commit(index, state, {"records": 0})


def manifest_path(log: CommitLog, index: int) -> Path:
    return Path(log.commits.location) / f"chk-{index:06d}" / MANIFEST


def part_path(log: CommitLog, index: int) -> Path:
    return Path(log.commits.location) / f"chk-{index:06d}" / STATE_PART


def forge(path: Path, part: bytes) -> None:
    """Rewrite a manifest so that its checksum matches ``part`` (an attacker who cannot sign)."""
    manifest = json.loads(path.read_bytes())
    manifest["parts"][STATE_PART] = {"size": len(part), "sha256": hashlib.sha256(part).hexdigest()}
    path.write_text(json.dumps(manifest, sort_keys=True))


# -- signing ---------------------------------------------------------------------------
def test_a_keyed_store_signs_the_manifest_with_hmac_sha256_over_the_rest_of_it(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, key=KEY)
    store.write_part(1, "p", b"state")
    store.complete(1, ["p"])
    manifest = json.loads((tmp_path / "chk-000001" / MANIFEST).read_bytes())
    signature = manifest.pop("signature")
    expected = hmac.new(KEY.encode(), json.dumps(manifest, sort_keys=True).encode(), hashlib.sha256).hexdigest()
    assert signature == expected
    assert manifest["parts"] == {"p": {"size": 5, "sha256": hashlib.sha256(b"state").hexdigest()}}
    cp = store.latest()
    assert cp is not None and cp.read("p") == b"state"


def test_without_a_key_the_manifest_is_unsigned_and_reads_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    store = CheckpointStore(tmp_path)
    assert store.key is None
    store.write_part(1, "p", b"state")
    store.complete(1, ["p"])
    assert "signature" not in json.loads((tmp_path / "chk-000001" / MANIFEST).read_bytes())
    assert store.get(1).read("p") == b"state"


def test_the_key_comes_from_the_environment_when_not_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    assert CheckpointStore(tmp_path).key == KEY.encode()
    assert CheckpointStore(tmp_path, key="other").key == b"other"
    assert checkpoint_key(b"raw") == b"raw"
    with pytest.raises(CheckpointError, match="the checkpoint key is empty"):
        checkpoint_key("")


# -- attacks: each refused before any unpickling ---------------------------------------
def test_a_tampered_part_is_never_unpickled(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / "log", key=KEY)
    commit(log, 0, {"ops": "first"})
    commit(log, 1, {"ops": "second"})
    payload, target = bomb(tmp_path)
    part_path(log, 1).write_bytes(payload)

    with pytest.raises(CheckpointError, match=r"checkpoint 1 .* cannot be restored: its part 'state.pkl' is damaged"):
        log.commits.get(1)
    with pytest.warns(CheckpointWarning, match=r"skipping checkpoint 1 .*its part 'state.pkl' is damaged"):
        restored = log.latest()
    assert restored is not None and restored[0] == 0 and restored[2] == {"ops": "first"}
    assert not target.exists()


def test_a_tampered_manifest_is_refused_not_skipped(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / "log", key=KEY)
    commit(log, 0, {"ops": "first"})
    commit(log, 1, {"ops": "second"})
    payload, target = bomb(tmp_path)
    part_path(log, 1).write_bytes(payload)
    forge(manifest_path(log, 1), payload)  # the checksum now matches the planted part

    message = r"checkpoint 1 in .* is refused: its manifest's signature does not match the checkpoint key"
    with pytest.raises(CheckpointSignatureError, match=message):
        log.latest()
    with pytest.raises(CheckpointSignatureError, match=message):
        log.commits.get(1)
    assert log.commits.verify(1) is not None
    assert not target.exists()


def test_a_wrong_key_is_refused(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / "log", key=KEY)
    commit(log, 0, {"ops": "first"})
    payload, target = bomb(tmp_path)
    part_path(log, 0).write_bytes(payload)
    forge(manifest_path(log, 0), payload)
    signer = CheckpointStore(tmp_path / "log" / "commits", key="the-attackers-key")
    manifest = json.loads(manifest_path(log, 0).read_bytes())
    del manifest["signature"]
    manifest["signature"] = hmac.new(b"the-attackers-key", json.dumps(manifest, sort_keys=True).encode(), hashlib.sha256).hexdigest()
    manifest_path(log, 0).write_text(json.dumps(manifest))
    assert signer.verify(0) is None  # good under the attacker's key

    with pytest.raises(CheckpointSignatureError, match="signature does not match the checkpoint key"):
        CommitLog(tmp_path / "log", key=KEY).latest()
    assert not target.exists()


def test_a_missing_signature_is_refused(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / "log", key=KEY)
    commit(log, 0, {"ops": "first"})
    payload, target = bomb(tmp_path)
    part_path(log, 0).write_bytes(payload)
    forge(manifest_path(log, 0), payload)
    manifest = json.loads(manifest_path(log, 0).read_bytes())
    del manifest["signature"]
    manifest_path(log, 0).write_text(json.dumps(manifest))

    with pytest.raises(CheckpointSignatureError, match="its manifest is not signed, but a checkpoint key is configured"):
        log.latest()
    assert not target.exists()


def test_a_part_swapped_after_verification_is_not_read(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, key=KEY)
    store.write_part(1, "p", b"state")
    store.complete(1, ["p"])
    cp = store.get(1)
    payload, target = bomb(tmp_path)
    (tmp_path / "chk-000001" / "p").write_bytes(payload)
    with pytest.raises(CheckpointError, match=r"its part 'p' changed after the manifest was verified"):
        cp.read("p")
    with pytest.raises(CheckpointError, match=r"its part 'p' changed after the manifest was verified"):
        store.read_part(1, "p", cp.checksums["p"])
    assert not target.exists()


# -- end to end: the pipeline option ----------------------------------------------------
def _run(log: Path, key: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        with td.Pipeline(runner=MicroBatchRunner(commit_log=log), options={"checkpoint_key": key}) as p:
            _ = p | td.Create([1, 2, 3]) | td.Map(lambda x: x * 2)


def test_the_checkpoint_key_option_signs_commits_and_a_rerun_with_another_key_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _run(log, KEY)
    manifests = sorted(log.glob("commits/chk-*/" + MANIFEST))
    assert manifests and all("signature" in json.loads(m.read_bytes()) for m in manifests)
    with pytest.raises(CheckpointSignatureError, match="signature does not match the checkpoint key"):
        _run(log, "another-key")


def test_the_checkpoint_key_flag_is_a_state_option() -> None:
    from tidal.options.pipeline_options import PipelineOptions, StateOptions

    options = PipelineOptions(["--checkpoint_key=abc", "--state_backend=disk", "--state_dir=/tmp/x"]).view_as(StateOptions)
    assert (options.checkpoint_key, options.state_backend, options.state_dir) == ("abc", "disk", "/tmp/x")
    assert PipelineOptions([]).view_as(StateOptions).state_backend == "memory"
