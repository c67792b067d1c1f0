"""FileSystems: one static API over local paths and fsspec URLs, as ``apache_beam.io.filesystems``.

A path with a scheme (``memory://``, ``file://``, ``s3://``, ``gs://``...)
goes through `fsspec <https://filesystem-spec.readthedocs.io>`_ (the ``dev``
extra installs it; a URL without fsspec installed is a clear error); any
other path is a local path. Every file source and sink of :mod:`tidal.io`
reads and writes through this module, so they accept the same paths.

Errors of the batch operations (``delete``, ``rename``, ``copy``) and of a
failed ``match`` are :class:`BeamIOError`, whose ``exception_details`` maps
each failed path to its own exception, as Beam's does. Compression is one of
:class:`CompressionTypes`; ``AUTO`` picks it from the file's extension
(``.gz``, ``.bz2``, ``.xz``/``.lzma``, ``.deflate``).

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> with FileSystems.create(FileSystems.join(folder, "a.txt.gz")) as f:
...     _ = f.write(b"hello\\n")
>>> [m.path for m in FileSystems.match([FileSystems.join(folder, "*.gz")])[0].metadata_list] == [os.path.join(folder, "a.txt.gz")]
True
>>> with FileSystems.open(FileSystems.join(folder, "a.txt.gz")) as f:
...     f.read()
b'hello\\n'
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import os
import re
import shutil
import zlib
from typing import IO, Any, BinaryIO, Iterable, Sequence

import attrs

__all__ = [
    "BeamIOError",
    "CompressionTypes",
    "FileMetadata",
    "FileSystems",
    "MatchResult",
    "has_glob",
    "is_url",
]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
_GLOB_CHARS = re.compile(r"[*?\[]")


class BeamIOError(IOError):
    """A file operation failed; ``exception_details`` maps each failed path (or pattern) to its exception.

    >>> str(BeamIOError("Delete operation failed", {"/x": FileNotFoundError("/x")}))
    "Delete operation failed with exceptions {'/x': FileNotFoundError('/x')}"
    """

    def __init__(self, msg: str, exception_details: dict[Any, Exception] | None = None) -> None:
        message = f"{msg} with exceptions {exception_details}" if exception_details else msg
        super().__init__(message)
        self.exception_details = exception_details


@attrs.frozen
class FileMetadata:
    """A file's path, size in bytes, and last modification time (seconds since the epoch)."""

    path: str
    size_in_bytes: int
    last_updated_in_seconds: float = 0.0


@attrs.frozen
class MatchResult:
    """The files one pattern matched, in path order."""

    pattern: str
    metadata_list: list[FileMetadata]


class CompressionTypes:
    """How a file is compressed: Beam's names; ``AUTO`` decides by the file name's extension."""

    AUTO = "auto"
    BZIP2 = "bzip2"
    DEFLATE = "deflate"
    GZIP = "gzip"
    LZMA = "lzma"
    ZSTD = "zstd"
    SNAPPY = "snappy"
    UNCOMPRESSED = "uncompressed"

    _SUFFIXES = {".bz2": BZIP2, ".deflate": DEFLATE, ".gz": GZIP, ".xz": LZMA, ".lzma": LZMA, ".zst": ZSTD, ".zstd": ZSTD}
    _MIME = {BZIP2: "application/x-bz2", DEFLATE: "application/x-deflate", GZIP: "application/x-gzip", LZMA: "application/lzma", ZSTD: "application/zstd"}
    #: The types this module can read and write (zstd and snappy need libraries tidal does not install).
    SUPPORTED = (AUTO, BZIP2, DEFLATE, GZIP, LZMA, UNCOMPRESSED)

    @classmethod
    def is_valid_compression_type(cls, compression_type: Any) -> bool:
        return compression_type in (cls.AUTO, cls.BZIP2, cls.DEFLATE, cls.GZIP, cls.LZMA, cls.ZSTD, cls.UNCOMPRESSED)

    @classmethod
    def mime_type(cls, compression_type: str, default: str = "application/octet-stream") -> str:
        return cls._MIME.get(compression_type, default)

    @classmethod
    def detect_compression_type(cls, file_path: str) -> str:
        """The compression a file name's extension implies (``UNCOMPRESSED`` when none does).

        >>> CompressionTypes.detect_compression_type("logs/day-1.txt.GZ")
        'gzip'
        """
        lowered = file_path.lower()
        for suffix, ct in cls._SUFFIXES.items():
            if lowered.endswith(suffix):
                return ct
        return cls.UNCOMPRESSED

    @classmethod
    def resolve(cls, path: str, compression_type: str) -> str:
        """The concrete compression of ``path`` (AUTO resolved); an unknown or unsupported type is an error."""
        if not cls.is_valid_compression_type(compression_type):
            raise ValueError(
                f"compression_type {compression_type!r} is not one of {', '.join(repr(c) for c in cls.SUPPORTED)}"
            )
        ct = cls.detect_compression_type(path) if compression_type == cls.AUTO else compression_type
        if ct not in cls.SUPPORTED:
            raise ValueError(f"{path}: {ct} compression is not supported (supported: gzip, bzip2, lzma, deflate)")
        return ct


def is_url(path: str) -> bool:
    """Whether ``path`` has a scheme (``memory://x``), so it goes through fsspec."""
    return bool(_SCHEME.match(path))


def has_glob(pattern: str) -> bool:
    """Whether ``pattern`` has glob characters (``*``, ``?``, ``[``)."""
    return bool(_GLOB_CHARS.search(pattern))


def _fsspec(path: str) -> tuple[Any, str]:
    """The fsspec filesystem of a URL, and the URL's path inside it."""
    try:
        import fsspec
    except ImportError:
        raise BeamIOError(
            f"the path {path!r} is a URL: reading or writing it needs fsspec, which is not installed "
            "(pip install fsspec, or tidal's dev extra)"
        ) from None
    fs, inner = fsspec.core.url_to_fs(path)
    return fs, inner


class _OwningGzip(gzip.GzipFile):
    def __init__(self, raw: IO[bytes], mode: str) -> None:
        super().__init__(fileobj=raw, mode=mode)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


class _OwningBz2(bz2.BZ2File):
    def __init__(self, raw: IO[bytes], mode: str) -> None:
        super().__init__(raw, mode)  # type: ignore[call-overload]
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


class _OwningLzma(lzma.LZMAFile):
    def __init__(self, raw: IO[bytes], mode: str) -> None:
        super().__init__(raw, mode)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


class _DeflateStream(io.RawIOBase):
    """A zlib (deflate) stream over a raw file, for reading or writing."""

    def __init__(self, raw: IO[bytes], mode: str) -> None:
        self._raw = raw
        self._mode = mode
        self._d = zlib.decompressobj() if mode == "rb" else None
        self._c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED) if mode == "wb" else None
        self._pending = b""

    def readable(self) -> bool:
        return self._mode == "rb"

    def writable(self) -> bool:
        return self._mode == "wb"

    def readinto(self, b: Any) -> int:
        assert self._d is not None
        while not self._pending:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                self._pending = self._d.flush()
                if not self._pending:
                    return 0
                break
            self._pending = self._d.decompress(chunk)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def write(self, b: Any) -> int:
        assert self._c is not None
        self._raw.write(self._c.compress(bytes(b)))
        return len(b)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._c is not None:
                self._raw.write(self._c.flush())
        finally:
            self._raw.close()
            super().close()


def _compressed(raw: IO[bytes], compression: str, mode: str) -> BinaryIO:
    if compression == CompressionTypes.GZIP:
        return _OwningGzip(raw, mode)  # type: ignore[return-value]
    if compression == CompressionTypes.BZIP2:
        return _OwningBz2(raw, mode)  # type: ignore[return-value]
    if compression == CompressionTypes.LZMA:
        return _OwningLzma(raw, mode)  # type: ignore[return-value]
    if compression == CompressionTypes.DEFLATE:
        stream = _DeflateStream(raw, mode)
        return io.BufferedReader(stream) if mode == "rb" else io.BufferedWriter(stream)  # type: ignore[return-value]
    return raw  # type: ignore[return-value]


class FileSystems:
    """Beam's ``FileSystems``: static file operations on local paths and fsspec URLs.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = FileSystems.join(folder, "sub", "x.bin")
    >>> FileSystems.split(path)[1]
    'x.bin'
    >>> with FileSystems.create(path) as f:  # creates the folder "sub"
    ...     _ = f.write(b"abc")
    >>> FileSystems.exists(path), FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    (True, 3)
    >>> FileSystems.rename([path], [path + ".old"])
    >>> FileSystems.exists(path)
    False
    """

    @staticmethod
    def get_scheme(path: str) -> str | None:
        """The URL scheme of ``path`` (``"memory"``), or None for a local path."""
        m = _SCHEME.match(path)
        return m.group(1).lower() if m else None

    @staticmethod
    def join(basepath: str, *paths: str) -> str:
        """``basepath`` and ``paths`` joined with the path separator of their file system."""
        if is_url(basepath):
            out = basepath
            for p in paths:
                out = out.rstrip("/") + "/" + p.lstrip("/")
            return out
        return os.path.join(basepath, *paths)

    @staticmethod
    def split(path: str) -> tuple[str, str]:
        """``(head, tail)``: the folder and the last component of ``path``."""
        if is_url(path):
            scheme_end = path.index("://") + 3
            rest = path[scheme_end:].rstrip("/")
            head, _, tail = rest.rpartition("/")
            return path[:scheme_end] + head, tail
        return os.path.split(path)

    @staticmethod
    def mkdirs(path: str) -> None:
        """Create the folder ``path`` and its parents; it is an error if it exists already (as in Beam)."""
        try:
            if is_url(path):
                fs, inner = _fsspec(path)
                if fs.exists(inner):
                    raise FileExistsError(f"{path} exists already")
                fs.makedirs(inner, exist_ok=False)
            else:
                os.makedirs(path)
        except BeamIOError:
            raise
        except OSError as exc:
            raise BeamIOError(f"mkdirs of {path} failed", {path: exc}) from exc

    @staticmethod
    def match(patterns: Sequence[str], limits: Sequence[int | None] | None = None) -> list[MatchResult]:
        """The files each glob pattern matches (``*``, ``?``, ``[...]``, ``**``), sorted by path.

        A pattern that matches nothing gives an empty ``metadata_list``; a
        listing that fails raises :class:`BeamIOError` naming the pattern.
        """
        if isinstance(patterns, str):
            raise TypeError("FileSystems.match takes a list of patterns, not a single string")
        if limits is None:
            limits = [None] * len(patterns)
        if len(limits) != len(patterns):
            raise BeamIOError(f"match got {len(patterns)} patterns but {len(limits)} limits")
        results: list[MatchResult] = []
        errors: dict[Any, Exception] = {}
        for pattern, limit in zip(patterns, limits):
            try:
                found = _match_one(pattern)
            except BeamIOError:
                raise
            except Exception as exc:  # a listing error of any file system
                errors[pattern] = exc
                continue
            results.append(MatchResult(pattern, found[:limit] if limit is not None else found))
        if errors:
            raise BeamIOError("Match operation failed", errors)
        return results

    @staticmethod
    def create(
        path: str, mime_type: str = "application/octet-stream", compression_type: str = CompressionTypes.AUTO
    ) -> BinaryIO:
        """A binary file open for writing at ``path`` (its folder is created), compressed as asked."""
        compression = CompressionTypes.resolve(path, compression_type)
        if is_url(path):
            fs, inner = _fsspec(path)
            parent = inner.rsplit("/", 1)[0] if "/" in inner else ""
            if parent:
                fs.makedirs(parent, exist_ok=True)
            raw: IO[bytes] = fs.open(inner, "wb")
        else:
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            raw = open(path, "wb")
        return _compressed(raw, compression, "wb")

    @staticmethod
    def open(
        path: str, mime_type: str = "application/octet-stream", compression_type: str = CompressionTypes.AUTO
    ) -> BinaryIO:
        """A binary file open for reading at ``path``, decompressed as asked (AUTO: by extension)."""
        compression = CompressionTypes.resolve(path, compression_type)
        if is_url(path):
            fs, inner = _fsspec(path)
            raw: IO[bytes] = fs.open(inner, "rb")
        else:
            raw = open(path, "rb")
        return _compressed(raw, compression, "rb")

    @staticmethod
    def copy(source_file_names: Sequence[str], destination_file_names: Sequence[str]) -> None:
        """Copy each source file (or folder) to its destination."""
        FileSystems._batch("Copy", source_file_names, destination_file_names, _copy_one)

    @staticmethod
    def rename(source_file_names: Sequence[str], destination_file_names: Sequence[str]) -> None:
        """Rename (move) each source to its destination; an existing destination is replaced."""
        FileSystems._batch("Rename", source_file_names, destination_file_names, _rename_one)

    @staticmethod
    def exists(path: str) -> bool:
        """Whether a file or folder exists at ``path``."""
        if is_url(path):
            fs, inner = _fsspec(path)
            return bool(fs.exists(inner))
        return os.path.exists(path)

    @staticmethod
    def last_updated(path: str) -> float:
        """When ``path`` was last modified, in seconds since the epoch."""
        return FileSystems.metadata(path).last_updated_in_seconds

    @staticmethod
    def metadata(path: str) -> FileMetadata:
        """The FileMetadata of one file."""
        if is_url(path):
            fs, inner = _fsspec(path)
            return _fsspec_metadata(fs, path, fs.info(inner))
        st = os.stat(path)
        return FileMetadata(path, st.st_size, st.st_mtime)

    @staticmethod
    def delete(paths: Sequence[str]) -> None:
        """Delete files (and folders, with their contents); a missing path is an error, as in Beam."""
        errors: dict[Any, Exception] = {}
        for path in paths:
            try:
                if is_url(path):
                    fs, inner = _fsspec(path)
                    if not fs.exists(inner):
                        raise FileNotFoundError(path)
                    fs.rm(inner, recursive=True)
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            except BeamIOError:
                raise
            except Exception as exc:
                errors[path] = exc
        if errors:
            raise BeamIOError("Delete operation failed", errors)

    @staticmethod
    def _batch(what: str, sources: Sequence[str], destinations: Sequence[str], one: Any) -> None:
        if len(sources) != len(destinations):
            raise BeamIOError(f"{what} needs as many destinations as sources ({len(sources)} and {len(destinations)})")
        errors: dict[Any, Exception] = {}
        for src, dst in zip(sources, destinations):
            try:
                one(src, dst)
            except BeamIOError:
                raise
            except Exception as exc:
                errors[(src, dst)] = exc
        if errors:
            raise BeamIOError(f"{what} operation failed", errors)


def _match_one(pattern: str) -> list[FileMetadata]:
    if is_url(pattern):
        fs, inner = _fsspec(pattern)
        if has_glob(inner):
            infos = fs.glob(inner, detail=True)
        elif fs.isfile(inner):
            infos = {inner: fs.info(inner)}
        else:
            infos = {}
        out = [_fsspec_metadata(fs, _with_scheme(pattern, p), info) for p, info in infos.items() if info.get("type") != "directory"]
        return sorted(out, key=lambda m: m.path)
    names: Iterable[str] = glob.glob(pattern, recursive=True) if has_glob(pattern) else [pattern]
    out = []
    for name in sorted(names):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            continue
        if os.path.isfile(name):
            out.append(FileMetadata(name, st.st_size, st.st_mtime))
    return out


def _with_scheme(pattern: str, inner: str) -> str:
    """``inner`` (a path fsspec listed) as a URL with the pattern's scheme."""
    scheme = pattern[: pattern.index("://") + 3]
    rooted = pattern[len(scheme):].startswith("/")
    if rooted and not inner.startswith("/"):
        inner = "/" + inner
    elif not rooted:
        inner = inner.lstrip("/")
    return scheme + inner


def _fsspec_metadata(fs: Any, path: str, info: dict[str, Any]) -> FileMetadata:
    mtime = info.get("mtime", info.get("created", info.get("LastModified", 0.0)))
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    try:
        seconds = float(mtime)
    except (TypeError, ValueError):
        seconds = 0.0
    return FileMetadata(path, int(info.get("size") or 0), seconds)


def _copy_one(src: str, dst: str) -> None:
    if is_url(src) or is_url(dst):
        with FileSystems.open(src, compression_type=CompressionTypes.UNCOMPRESSED) as fin, FileSystems.create(
            dst, compression_type=CompressionTypes.UNCOMPRESSED
        ) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        return
    if os.path.isdir(src):
        shutil.copytree(src, dst)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        shutil.copy2(src, dst)


def _rename_one(src: str, dst: str) -> None:
    if is_url(src) != is_url(dst):
        raise BeamIOError(f"cannot rename {src} to {dst}: they are on different file systems")
    if is_url(src):
        fs, inner_src = _fsspec(src)
        _, inner_dst = _fsspec(dst)
        fs.mv(inner_src, inner_dst)
        return
    os.replace(src, dst)
