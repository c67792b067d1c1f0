"""Checkpoint storage: numbered checkpoints of parts, published by a manifest.

A checkpoint is a folder ``chk-<id>`` in the store holding one *part* per
worker (a pickle of its operators' state and source positions). It becomes
*complete* when the coordinator writes ``chk-<id>/MANIFEST.json``, which lists
every part with its size and SHA-256. Restoring reads the newest complete
checkpoint whose parts all match their manifest; a checkpoint without a
manifest (the job died while taking it) or with a damaged part is skipped for
the one before it, with a :class:`CheckpointWarning` that says why.

Parts and manifests are written atomically (a temporary name, then a rename),
so a reader never sees half a file. The store is a local folder by default;
a location with a scheme (``s3://bucket/path``, ``file:///shared/ckpt``) goes
through `fsspec <https://filesystem-spec.readthedocs.io>`_ when it is
installed, so the workers of a cluster can share it.

Savepoints are checkpoints taken on request; retention never removes them.

**Incremental checkpoints.** A part may hold only what changed since an
earlier checkpoint (see :mod:`tidal.runners.core.incremental`); it then
starts with a small header naming the checkpoints it builds on
(:func:`encode_part`), and the manifest lists them as the part's ``needs``.
Retention keeps every checkpoint a retained one needs, :meth:`~CheckpointStore.verify`
checks them too (a checkpoint whose chain is damaged is skipped like a
damaged one), and :meth:`CompletedCheckpoint.read_state` reads a part's
chain and folds it into the full state.

**A checkpoint is code.** Parts are pickles, and unpickling runs whatever
code the pickle names, so restoring a checkpoint that someone else could
write runs their code in your job. The manifest's SHA-256 sums catch damage,
not tampering. Configure a secret key (the environment variable
``TIDAL_CHECKPOINT_KEY`` or the pipeline option ``checkpoint_key``) and every
manifest is signed with HMAC-SHA256 (the manifest lists every part's hash, so
the signature covers the parts too); :meth:`CheckpointStore.verify`,
:meth:`~CheckpointStore.get` and :meth:`~CheckpointStore.latest` check the
signature before anything is read, and a checkpoint whose signature is
missing or wrong is refused with a :class:`CheckpointSignatureError`, never
skipped. **Without a key, a checkpoint location must be as trusted as the
code of the job itself.**

>>> import tempfile
>>> store = CheckpointStore(tempfile.mkdtemp())
>>> store.write_part(1, "stage0-0", b"state")
>>> store.complete(1, ["stage0-0"])
>>> cp = store.latest()
>>> cp.id, cp.read("stage0-0")
(1, b'state')
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import pickle
import shutil
import struct
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "CheckpointStore",
    "CompletedCheckpoint",
    "CheckpointWarning",
    "CheckpointError",
    "CheckpointSignatureError",
    "checkpoint_key",
    "KEY_ENV",
    "encode_part",
    "decode_part",
    "load_chain",
]

_DIR = re.compile(r"^chk-(\d+)$")
MANIFEST = "MANIFEST.json"
#: The environment variable holding the secret that signs checkpoint manifests.
KEY_ENV = "TIDAL_CHECKPOINT_KEY"
#: The manifest field holding its signature (HMAC-SHA256, hex) over the rest of the manifest.
SIGNATURE = "signature"


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped on restore because it is incomplete or damaged."""


class CheckpointError(RuntimeError):
    """The checkpoint store cannot be used (a location that cannot be created or written, no fsspec for a URL)."""


class CheckpointSignatureError(CheckpointError):
    """A checkpoint key is configured and a checkpoint's signature is missing or does not match it.

    Such a checkpoint may have been written by someone else; it is refused, never skipped for an older one.
    """


def checkpoint_key(key: str | bytes | None = None) -> bytes | None:
    """The key that signs manifests: ``key`` when given, else ``$TIDAL_CHECKPOINT_KEY``, else None (unsigned).

    >>> checkpoint_key("s3cret")
    b's3cret'
    """
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not key:
        raise CheckpointError("the checkpoint key is empty; give a secret, or no key to leave checkpoints unsigned")
    return key


#: How a part that builds on earlier checkpoints begins (a pickle never does).
_INCREMENTAL = b"TIDAL-INCREMENTAL\n"


def encode_part(payload: bytes, needs: "list[int] | tuple[int, ...]" = ()) -> bytes:
    """A part's bytes: ``payload``, after a header naming the checkpoints it ``needs`` (if any).

    >>> decode_part(encode_part(b"delta", [3, 4]))
    ([3, 4], b'delta')
    >>> encode_part(b"full") == b"full"
    True
    """
    if not needs:
        return payload
    header = json.dumps({"needs": [int(n) for n in needs]}).encode()
    return _INCREMENTAL + struct.pack(">I", len(header)) + header + payload


def decode_part(data: bytes) -> tuple[list[int], bytes]:
    """The checkpoints a part needs, and its payload (see :func:`encode_part`)."""
    if not data.startswith(_INCREMENTAL):
        return [], data
    start = len(_INCREMENTAL)
    (n,) = struct.unpack_from(">I", data, start)
    header = json.loads(data[start + 4 : start + 4 + n])
    return [int(x) for x in header["needs"]], data[start + 4 + n :]


def load_chain(store: "CheckpointStore", part: str, chain: "list[tuple[int, str]]") -> Any:
    """The full state of ``part`` from its chain ``[(checkpoint id, sha256), ...]``, oldest first.

    Each piece is checked against its verified checksum before it is unpickled; deltas are
    folded into the full snapshot before them (:func:`~tidal.runners.core.incremental.collapse`).
    Parts are either executor snapshots or dicts holding one under ``"executor"`` (Ray's).
    """
    from tidal.runners.core.incremental import collapse

    pieces = []
    for checkpoint_id, sha256 in chain:
        _needs, payload = decode_part(store.read_part(checkpoint_id, part, sha256))
        pieces.append(pickle.loads(payload))
    if len(pieces) == 1:
        return pieces[0]  # a full piece: nothing to fold in
    if all(isinstance(p, dict) and "executor" in p for p in pieces):
        return dict(pieces[-1], executor=collapse([p["executor"] for p in pieces]))
    return collapse(pieces)


def _signature(key: bytes, manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    return hmac.new(key, json.dumps(body, sort_keys=True).encode(), hashlib.sha256).hexdigest()


class _LocalFS:
    """Files in a local (or mounted shared) folder."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"the checkpoint folder {root} cannot be created: {_reason(exc)}") from exc

    def write_atomic(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def check_writable(self) -> None:
        try:
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".tidal-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise CheckpointError(f"the checkpoint folder {self.root} is not writable: {_reason(exc)}") from exc

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def listdir(self, rel: str = "") -> list[str]:
        path = self.root / rel
        if not path.is_dir():
            return []
        return [p.name for p in path.iterdir() if not p.name.startswith(".")]

    def remove_tree(self, rel: str) -> None:
        shutil.rmtree(self.root / rel, ignore_errors=True)

    def describe(self) -> str:
        return str(self.root)


class _FsspecFS:
    """Files behind an fsspec URL (object stores, shared file systems)."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec  # type: ignore[import-not-found, import-untyped, unused-ignore]
        except ImportError as exc:
            raise CheckpointError(
                f"the checkpoint location {url!r} is a URL, which needs the fsspec package "
                "(pip install fsspec, plus the driver for its scheme); use a local or shared folder otherwise"
            ) from exc
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.url = url
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"the checkpoint location {url} cannot be created: {_reason(exc)}") from exc

    def _path(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    def write_atomic(self, rel: str, data: bytes) -> None:
        path = self._path(rel)
        parent, name = path.rsplit("/", 1)
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, path)

    def check_writable(self) -> None:
        probe = f".tidal-probe-{uuid.uuid4().hex}"
        try:
            self.write_atomic(probe, b"")
            self.fs.rm(self._path(probe))
        except OSError as exc:
            raise CheckpointError(f"the checkpoint location {self.url} is not writable: {_reason(exc)}") from exc

    def read(self, rel: str) -> bytes:
        with self.fs.open(self._path(rel), "rb") as f:
            return f.read()  # type: ignore[no-any-return]

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self._path(rel)))

    def listdir(self, rel: str = "") -> list[str]:
        path = self._path(rel)
        if not self.fs.exists(path):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        return [n for n in names if not n.startswith(".")]

    def remove_tree(self, rel: str) -> None:
        try:
            self.fs.rm(self._path(rel), recursive=True)
        except FileNotFoundError:
            pass

    def describe(self) -> str:
        return self.url


def _needed(manifest: dict[str, Any]) -> set[int]:
    """The earlier checkpoints the parts of ``manifest`` build on."""
    parts = manifest.get("parts")
    if not isinstance(parts, dict):
        return set()
    return {n for entry in parts.values() if isinstance(entry, dict) for n in entry.get("needs", ()) if isinstance(n, int)}


def _reason(exc: OSError) -> str:
    """An OSError as a short reason ("Not a directory"), without the path it repeats."""
    return exc.strerror or str(exc)


@attrs.frozen
class CompletedCheckpoint:
    """A complete checkpoint whose parts all matched the manifest."""

    id: int
    parts: tuple[str, ...]
    meta: dict[str, Any]
    savepoint: bool
    _store: "CheckpointStore" = attrs.field(repr=False)
    #: Each part's SHA-256 as the (verified) manifest lists it.
    checksums: dict[str, str] = attrs.field(factory=dict, repr=False)
    #: For each incremental part, the earlier checkpoints it builds on (oldest first).
    needs: dict[str, tuple[int, ...]] = attrs.field(factory=dict, repr=False)

    def read(self, part: str) -> bytes:
        """The bytes of one part as it was written (an incremental one holds only changes), checked as read."""
        return self._store.read_part(self.id, part, self.checksums.get(part))

    def chain(self, part: str) -> list[tuple[int, str]]:
        """The pieces that restore ``part``: (checkpoint id, SHA-256) of each, oldest first, this one last."""
        pieces = []
        for earlier in self.needs.get(part, ()):
            pieces.append((earlier, self._store.get(earlier).checksums[part]))
        pieces.append((self.id, self.checksums[part]))
        return pieces

    def read_state(self, part: str) -> Any:
        """The full state ``part`` restores, unpickled: its chain of incremental pieces folded into one.

        Every piece was verified (checksums, and the signature with a key) before it is unpickled.
        """
        return load_chain(self._store, part, self.chain(part))

    @property
    def final(self) -> bool:
        """Whether it was taken at the end of the input (runners record ``meta["final"]``): the job had finished."""
        return bool(self.meta.get("final"))

    @property
    def store_location(self) -> str:
        """The store (folder or URL) the checkpoint is in."""
        return self._store.location

    @property
    def location(self) -> str:
        """Where the checkpoint lives (a folder or URL)."""
        return f"{self._store.location.rstrip('/')}/chk-{self.id:06d}"


class CheckpointStore:
    """Numbered checkpoints in a folder or fsspec URL; keeps the newest ``retain`` and every savepoint."""

    def __init__(self, location: str | os.PathLike[str], retain: int = 3, key: str | bytes | None = None) -> None:
        self.location = os.fspath(location)
        self.retain = max(1, retain)
        #: The secret that signs and verifies manifests (``key``, else ``$TIDAL_CHECKPOINT_KEY``); None: unsigned.
        self.key = checkpoint_key(key)
        self._fs: Any = _FsspecFS(self.location) if "://" in self.location else _LocalFS(self.location)

    def check_writable(self) -> None:
        """Raise :class:`CheckpointError`, naming the location, unless a file can be written there."""
        self._fs.check_writable()

    @staticmethod
    def _dir(checkpoint_id: int) -> str:
        return f"chk-{checkpoint_id:06d}"

    # -- writing ------------------------------------------------------------------
    def write_part(self, checkpoint_id: int, part: str, data: bytes) -> None:
        """Store one worker's part of checkpoint ``checkpoint_id``."""
        self._fs.write_atomic(f"{self._dir(checkpoint_id)}/{part}", data)

    def read_part(self, checkpoint_id: int, part: str, sha256: str | None = None) -> bytes:
        """The bytes of one part of ``checkpoint_id`` (a worker restoring reads its own parts).

        With ``sha256`` (the checksum a verified manifest lists) bytes that differ raise
        :class:`CheckpointError` instead of being returned, so nothing unverified is unpickled.
        """
        data = bytes(self._fs.read(f"{self._dir(checkpoint_id)}/{part}"))
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise CheckpointError(
                f"checkpoint {checkpoint_id} in {self.location}: its part {part!r} changed after the manifest was "
                "verified (checksum differs); it is not read"
            )
        return data

    def parts(self, checkpoint_id: int) -> set[str]:
        """The parts of ``checkpoint_id`` written so far."""
        return {n for n in self._fs.listdir(self._dir(checkpoint_id)) if n != MANIFEST}

    def complete(self, checkpoint_id: int, parts: list[str], meta: dict[str, Any] | None = None, savepoint: bool = False) -> None:
        """Publish ``checkpoint_id``: its manifest names every part with its checksum."""
        entries = {}
        for part in parts:
            data = self._fs.read(f"{self._dir(checkpoint_id)}/{part}")
            entries[part] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            needs, _ = decode_part(data)
            if needs:
                entries[part]["needs"] = needs
        manifest = {
            "id": checkpoint_id,
            "parts": entries,
            "meta": meta or {},
            "savepoint": savepoint,
            "completed_at": time.time(),
        }
        if self.key is not None:
            manifest[SIGNATURE] = _signature(self.key, manifest)
        self._fs.write_atomic(f"{self._dir(checkpoint_id)}/{MANIFEST}", json.dumps(manifest, sort_keys=True).encode())
        self._expire(checkpoint_id)

    def _expire(self, newest: int) -> None:
        kept = 0
        needed: set[int] = set()
        for cid in sorted(self.ids(), reverse=True):
            if cid > newest:
                continue
            manifest = self._manifest(cid)
            if manifest is not None and (manifest.get("savepoint") or kept < self.retain):
                kept += not manifest.get("savepoint")
                needed |= _needed(manifest)
                continue
            if cid in needed and manifest is not None:
                needed |= _needed(manifest)  # an incremental checkpoint a retained one builds on
                continue
            self._fs.remove_tree(self._dir(cid))

    # -- reading ------------------------------------------------------------------
    def ids(self) -> list[int]:
        """Every checkpoint number present, complete or not, oldest first."""
        found = (_DIR.match(n) for n in self._fs.listdir())
        return sorted(int(m.group(1)) for m in found if m)

    def completed_ids(self) -> list[int]:
        """The checkpoints whose manifest was written (they completed), restorable now or not, oldest first.

        What they staged may have been published; a checkpoint without a manifest never completed,
        so nothing of it was.
        """
        return [cid for cid in self.ids() if self._fs.exists(f"{self._dir(cid)}/{MANIFEST}")]

    def next_id(self) -> int:
        """A number after every checkpoint present."""
        return max(self.ids(), default=0) + 1

    def _manifest(self, checkpoint_id: int) -> dict[str, Any] | None:
        try:
            manifest = json.loads(self._fs.read(f"{self._dir(checkpoint_id)}/{MANIFEST}"))
        except (FileNotFoundError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def verify(self, checkpoint_id: int) -> str | None:
        """Why checkpoint ``checkpoint_id`` cannot be restored, or None when it can.

        With a key, the manifest's signature is checked first, before any part is read.
        """
        return self._problem(checkpoint_id)[0]

    def _signature_problem(self, manifest: dict[str, Any]) -> str | None:
        if self.key is None:
            return None
        signature = manifest.get(SIGNATURE)
        if not isinstance(signature, str):
            return (
                "its manifest is not signed, but a checkpoint key is configured "
                f"(an unsigned checkpoint is refused; restore it without {KEY_ENV} / checkpoint_key only if "
                "you trust whoever can write the location)"
            )
        if not hmac.compare_digest(signature, _signature(self.key, manifest)):
            return "its manifest's signature does not match the checkpoint key (tampered with, or signed with another key)"
        return None

    def _problem(self, checkpoint_id: int) -> tuple[str | None, bool]:
        """Why the checkpoint cannot be restored (or None), and whether that is a signature failure."""
        rel = self._dir(checkpoint_id)
        if not self._fs.exists(rel):
            return "it does not exist", False
        if not self._fs.exists(f"{rel}/{MANIFEST}"):
            return "it is incomplete (no manifest: the job stopped while taking it)", False
        manifest = self._manifest(checkpoint_id)
        if manifest is not None:
            signed = self._signature_problem(manifest)
            if signed is not None:
                return signed, True
        problem = self._part_problem(checkpoint_id, manifest)
        if problem is None and manifest is not None:
            return self._chain_problem(checkpoint_id, manifest)
        return problem, False

    def _part_problem(self, checkpoint_id: int, manifest: dict[str, Any] | None) -> str | None:
        rel = self._dir(checkpoint_id)
        parts = manifest.get("parts") if manifest is not None else None
        if not isinstance(parts, dict) or not all(isinstance(entry, dict) for entry in parts.values()):
            return "its manifest is damaged"
        for part, entry in sorted(parts.items()):
            try:
                data = self._fs.read(f"{rel}/{part}")
            except FileNotFoundError:
                return f"its part {part!r} is missing"
            if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                return f"its part {part!r} is damaged (size or checksum differs from the manifest)"
        return None

    def _chain_problem(self, checkpoint_id: int, manifest: dict[str, Any]) -> tuple[str | None, bool]:
        """Why an incremental checkpoint's earlier pieces cannot be restored (and whether by signature)."""
        for part, entry in sorted(manifest["parts"].items()):
            for earlier in entry.get("needs", ()):
                if not isinstance(earlier, int) or earlier >= checkpoint_id:
                    return "its manifest is damaged", False
                problem, signature = self._problem(earlier)
                if problem is None:
                    earlier_manifest = self._manifest(earlier)
                    if earlier_manifest is None or part not in earlier_manifest.get("parts", {}):
                        problem = f"it has no part {part!r}"
                if problem is not None:
                    return f"its part {part!r} builds on checkpoint {earlier}, which cannot be restored ({problem})", signature
        return None, False

    def latest(self) -> CompletedCheckpoint | None:
        """The newest restorable checkpoint; damaged or partial ones are skipped with a warning.

        With a key, a checkpoint whose signature is missing or wrong raises
        :class:`CheckpointSignatureError`: it is refused, not skipped.
        """
        for cid in sorted(self.ids(), reverse=True):
            problem, signature = self._problem(cid)
            if signature:
                raise CheckpointSignatureError(f"checkpoint {cid} in {self.location} is refused: {problem}")
            if problem is not None:
                warnings.warn(
                    f"skipping checkpoint {cid} in {self.location}: {problem}; trying the one before it",
                    CheckpointWarning,
                    stacklevel=2,
                )
                continue
            return self.get(cid)
        return None

    def get(self, checkpoint_id: int) -> CompletedCheckpoint:
        """Checkpoint ``checkpoint_id``, which must be complete (see :meth:`verify`)."""
        problem, signature = self._problem(checkpoint_id)
        if signature:
            raise CheckpointSignatureError(f"checkpoint {checkpoint_id} in {self.location} is refused: {problem}")
        if problem is not None:
            raise CheckpointError(f"checkpoint {checkpoint_id} in {self.location} cannot be restored: {problem}")
        manifest = self._manifest(checkpoint_id)
        assert manifest is not None
        parts = manifest["parts"]
        return CompletedCheckpoint(
            checkpoint_id,
            tuple(sorted(parts)),
            dict(manifest.get("meta", {})),
            bool(manifest.get("savepoint")),
            self,
            {name: str(entry.get("sha256")) for name, entry in parts.items()},
            {name: tuple(entry["needs"]) for name, entry in parts.items() if entry.get("needs")},
        )

    def is_empty(self) -> bool:
        """No checkpoint of any kind is present."""
        return not self.ids()

    def __repr__(self) -> str:
        return f"CheckpointStore({self.location!r}, retain={self.retain})"
