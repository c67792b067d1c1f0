"""The transactional file sink every file format writes through: shard names, staging, publishing.

A file sink is a DoFn that follows the transactional sink contract of
:mod:`tidal.io.textio` (``prepare_commit``, ``commit``, ``abort_after``):
it writes what it receives to *staged* files in a hidden ``.tidal-staging``
folder beside the output, closes them when a checkpoint barrier passes, and
publishes them by rename when the checkpoint completes (a staged file is
synced to disk before a checkpoint records it; the output of the end of a
run without checkpoints is published as written). A format (text, CSV,
JSON lines, Parquet) only says how records become bytes: a
:class:`SinkFormat` opens a :class:`RecordWriter` on a staged file.

**Names.** Published files are named as Beam names them:
``<prefix><shard><suffix>``, where the shard part comes from
``shard_name_template`` (default ``-SSSSS-of-NNNNN``: the shard number and
the shard count, zero-padded to the width of the letters), so a run's output
is ``out-00000-of-00002.txt`` and ``out-00001-of-00002.txt``. Without
``num_shards`` each parallel writer of the step is one shard (one on the
direct and micro-batch runners; the step's parallelism on Ray), and every
shard is written when the input ends, empty if it received nothing (unless
``skip_if_empty``). With ``num_shards=n`` the elements are spread round-robin
over ``n`` shards, each written by exactly one writer (a keyed exchange
routes a shard to its writer). The output of a checkpoint that is not the
end of the input (a Ray checkpoint, a micro-batch batch) carries the
checkpoint's number before the shard part: ``out-000003-00000-of-00002.txt``.

**Reruns.** A run that was not restored from a checkpoint replaces what an
earlier run wrote to the same prefix: before it writes anything, each
writer removes the files named like this sink's output (the prefix, any
checkpoint number, the template, the suffix) that were last modified before
the sink was made, and the earlier runs' abandoned staged files. A run that
is restored keeps them (they are its own earlier output), and withdraws only
what later checkpoints published (``abort_after``).
"""

from __future__ import annotations

import abc
import io
import os
import re
import time
import uuid
from typing import IO, Any, BinaryIO, Iterable

from tidal.io.filesystems import CompressionTypes, FileSystems, is_url
from tidal.model.dofn import DoFn
from tidal.model.userstate import ReadModifyWriteStateSpec

__all__ = [
    "DEFAULT_SHARD_NAME_TEMPLATE",
    "STAGING_DIR",
    "FINAL",
    "ShardNaming",
    "SinkFormat",
    "RecordWriter",
    "FileSinkFn",
    "BatchedFileSinkFn",
    "ShardedFileSinkFn",
    "AssignShards",
]

#: Beam's default shard part of a file name: the shard number and count.
DEFAULT_SHARD_NAME_TEMPLATE = "-SSSSS-of-NNNNN"
#: The hidden folder, beside the output files, that holds staged (unpublished) files.
STAGING_DIR = ".tidal-staging"
#: Checkpoint numbers from this one on stand for the end of the input (no number in the name).
FINAL = 1 << 62
#: The column a batched sink's batches carry the rows' timestamps in (dropped before writing).
TIMESTAMP_COLUMN = "__tidal_timestamp"


class ShardNaming:
    """How a sink names its files: prefix, shard template, suffix, and the checkpoint of non-final output.

    >>> naming = ShardNaming("/out/part", None, ".csv")
    >>> naming.name(1, 4)
    '/out/part-00001-of-00004.csv'
    >>> naming.name(0, 2, checkpoint=7)
    '/out/part-000007-00000-of-00002.csv'
    >>> naming.checkpoint_of("part-000007-00000-of-00002.csv"), naming.checkpoint_of("part-00001-of-00004.csv")
    (7, None)
    >>> naming.checkpoint_of("part-00001-of-00004.txt") is False
    True
    """

    def __init__(self, file_path_prefix: str, shard_name_template: str | None, file_name_suffix: str = "") -> None:
        if not isinstance(file_path_prefix, str) or not file_path_prefix:
            raise ValueError(f"a file sink needs a file_path_prefix (such as 'out/part'), got {file_path_prefix!r}")
        if file_path_prefix.endswith(("/", os.sep)):
            raise ValueError(f"file_path_prefix {file_path_prefix!r} names a folder: add the start of the file names (such as 'part')")
        self.prefix = file_path_prefix if is_url(file_path_prefix) else os.path.abspath(file_path_prefix)
        self.template = DEFAULT_SHARD_NAME_TEMPLATE if shard_name_template is None else shard_name_template
        self.suffix = file_name_suffix or ""
        self.folder, self.basename = FileSystems.split(self.prefix)
        self._format, regex = _parse_template(self.template)
        self._pattern = re.compile(
            "^" + re.escape(self.basename) + r"(?:-(\d{6,}))?" + regex + re.escape(self.suffix) + "$"
        )

    @property
    def single_file(self) -> bool:
        """Whether the template is empty: the output is one file (one shard)."""
        return not self.template

    def name(self, shard: int, num_shards: int, checkpoint: int | None = None) -> str:
        """The published path of ``shard`` of ``num_shards`` (with ``checkpoint`` for non-final output)."""
        epoch = "" if checkpoint is None or checkpoint >= FINAL else f"-{checkpoint:06d}"
        return self.prefix + epoch + self._format.format(s=shard, n=num_shards) + self.suffix

    def checkpoint_of(self, name: str) -> int | None | bool:
        """For a file name in the output folder: its checkpoint (None for final output), or False if not ours."""
        m = self._pattern.match(name)
        if m is None:
            return False
        return int(m.group(1)) if m.group(1) is not None else None

    def published(self) -> list[tuple[str, int | None, float]]:
        """``(path, checkpoint, last modified)`` of every file in the folder named like this sink's output."""
        pattern = FileSystems.join(self.folder, _glob_escape(self.basename) + "*")
        out = []
        for meta in FileSystems.match([pattern])[0].metadata_list:
            cp = self.checkpoint_of(FileSystems.split(meta.path)[1])
            if cp is not False:
                out.append((meta.path, cp if isinstance(cp, int) and not isinstance(cp, bool) else None, meta.last_updated_in_seconds))
        return out

    @property
    def staging_folder(self) -> str:
        return FileSystems.join(self.folder, STAGING_DIR)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _parse_template(template: str) -> tuple[str, str]:
    """The ``str.format`` pattern and the regex of a shard name template (Beam's S and N letters)."""
    if not template:
        return "", ""
    if not isinstance(template, str):
        raise TypeError(f"shard_name_template must be a string, got {template!r}")
    if re.search("S+", template) is None:
        raise ValueError(f"Shard number pattern S+ not found in shard_name_template: {template!r}")
    for letters, what in (("W", "the window"), ("V", "the window"), ("U", "a uuid")):
        if letters in template:
            raise ValueError(
                f"shard_name_template {template!r}: {letters} ({what}) is not supported by tidal's file sinks; "
                "use S (the shard number) and N (the shard count)"
            )
    fmt, regex = [], []
    for run in re.finditer(r"S+|N+|[^SN]+", template):
        text = run.group(0)
        if text[0] == "S" and set(text) == {"S"}:
            fmt.append("{s:0%dd}" % len(text))
            regex.append(r"\d{%d,}" % len(text))
        elif text[0] == "N" and set(text) == {"N"}:
            fmt.append("{n:0%dd}" % len(text))
            regex.append(r"\d{%d,}" % len(text))
        else:
            fmt.append(text.replace("{", "{{").replace("}", "}}"))
            regex.append(re.escape(text))
    return "".join(fmt), "".join(regex)


class RecordWriter(abc.ABC):
    """Writes one format's records to one open (staged) file."""

    @abc.abstractmethod
    def write(self, element: Any) -> None:
        """Write one element."""

    def write_many(self, elements: list[Any]) -> None:
        """Write several elements, in order (a format may do it in one go)."""
        for element in elements:
            self.write(element)

    def write_batch(self, batch: Any) -> None:
        """Write the rows of an Arrow record batch (a format without a columnar path writes them one by one)."""
        self.write_many(batch.to_pylist())

    def flush(self) -> None:
        """Hand buffered records to the file (at the end of a bundle); a columnar format may keep them."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish the file's contents (flush buffers, write a footer); the file itself is closed by the sink."""


class SinkFormat(abc.ABC):
    """How a format's records become a file: opens a :class:`RecordWriter` on a staged file."""

    #: What the sink's messages call it ("WriteToText").
    what: str = "write"
    #: Whether the file is compressed as a whole (text, CSV, JSON) or internally (Parquet: no).
    compressible: bool = True

    @abc.abstractmethod
    def open(self, stream: BinaryIO) -> RecordWriter:
        """A writer for a new file whose bytes go to ``stream``."""


class _StagedFile(io.FileIO):
    """A local staged file that is synced to disk when it is closed, unless ``sync`` was turned off."""

    sync = True

    def close(self) -> None:
        if not self.closed:
            try:
                if self.sync:
                    os.fsync(self.fileno())
            finally:
                super().close()


def _open_staged(path: str, compression: str) -> tuple[BinaryIO, _StagedFile | None]:
    """A new staged file, compressed as asked, and (for a local file) the file to sync on close."""
    from tidal.io.filesystems import _compressed

    if is_url(path):
        return FileSystems.create(path, compression_type=compression), None
    for attempt in (1, 2):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            staged = _StagedFile(path, "w")
            break
        except FileNotFoundError:
            if attempt == 2:  # another writer removed the empty folder in between (see teardown): once more
                raise
    raw: IO[bytes] = io.BufferedWriter(staged, buffer_size=1 << 20)
    return _compressed(raw, compression, "wb"), staged


class FileSinkFn(DoFn):
    """The transactional DoFn behind every file sink: one staged file per shard and checkpoint interval.

    ``set_writer(index, count)`` is called by the runner before ``setup``: this
    instance is writer ``index`` of the step's ``count`` parallel instances,
    and (without ``num_shards``) writes shard ``index`` of ``count``.
    """

    def __init__(
        self,
        naming: ShardNaming,
        fmt: SinkFormat,
        compression_type: str = CompressionTypes.AUTO,
        num_shards: int = 0,
        skip_if_empty: bool = False,
    ) -> None:
        if not isinstance(num_shards, int) or num_shards < 0:
            raise ValueError(f"num_shards must be 0 (one shard per writer) or a positive number, got {num_shards!r}")
        if naming.single_file:
            if num_shards > 1:
                raise ValueError(f"shard_name_template '' names a single file, but num_shards is {num_shards}")
            num_shards = 1
        self.naming = naming
        self.fmt = fmt
        self.compression = CompressionTypes.resolve(naming.prefix + naming.suffix, compression_type) if fmt.compressible else CompressionTypes.UNCOMPRESSED
        self.num_shards = num_shards
        self.skip_if_empty = skip_if_empty
        #: When this sink was made: published files older than this belong to earlier runs.
        self.created_at = time.time()
        self._index, self._count = 0, 1
        self._reset()

    def _reset(self) -> None:
        self._token = ""
        self._seq = 0
        self._writers: dict[int, tuple[BinaryIO, RecordWriter, str, _StagedFile | None]] = {}
        self._started = False
        self._restored = False
        self._torn_down = False
        self._pending: list[Any] = []

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_writers"] = {}  # open files never travel with a copy of the sink
        state["_pending"] = []
        state.pop("process", None)  # (bound to the old keeping list by setup)
        return state

    # -- the runner's hooks -----------------------------------------------------------------
    def set_writer(self, index: int, count: int) -> None:
        """This instance is writer ``index`` of ``count`` parallel instances of the step."""
        self._index, self._count = index, count

    def setup(self) -> None:
        self._token = uuid.uuid4().hex[:12]
        self._seq = 0
        self._writers = {}
        self._torn_down = False
        # The sink's hot loop, written for speed on purpose: an element is only kept, and
        # ``process`` is the keeping list's own append (no Python frame per element).
        if type(self).process is FileSinkFn.process:
            self.process = self._pending.append  # type: ignore[method-assign,assignment]

    def teardown(self) -> None:
        # An unpublished file stays staged: it belongs to no complete checkpoint.
        self._torn_down = True
        self._pending.clear()
        for stream, _writer, _path, _staged in self._writers.values():
            try:
                stream.close()
            except Exception:
                pass
        self._writers = {}
        # The staging folder goes when nothing is left in it (a job that published all it wrote);
        # staged files that belong to no complete checkpoint keep it.
        staging = self.naming.staging_folder
        if not is_url(staging):
            try:
                os.rmdir(staging)
            except OSError:
                pass

    # -- writing --------------------------------------------------------------------------
    def process(self, element: Any) -> None:
        # The sink's hot loop: elements are kept, and written a bundle at a time (see _drain).
        self._pending.append(element)

    def _drain(self) -> None:
        """Hand the elements kept since the last drain to this writer's shard."""
        if self._pending:
            pending, self._pending = self._pending, []
            if "process" in self.__dict__:
                self.process = self._pending.append  # type: ignore[method-assign,assignment]
            writer = self._writers.get(self._index)
            (writer[1] if writer is not None else self._open(self._index)).write_many(pending)

    def finish_bundle(self) -> None:
        self._drain()
        for _stream, writer, _path, _staged in self._writers.values():
            writer.flush()

    def _open(self, shard: int) -> RecordWriter:
        if not self._started:
            self._start()
        if not self._token:
            self.setup()
        name = f"{self.naming.basename}-{self._token}-{self._seq:05d}-{shard:05d}{self.naming.suffix}.inprogress"
        path = FileSystems.join(self.naming.staging_folder, name)
        stream, staged = _open_staged(path, self.compression)
        writer = self.fmt.open(stream)
        self._writers[shard] = (stream, writer, path, staged)
        return writer

    def _start(self) -> None:
        """First write or checkpoint of a run: a fresh run replaces an earlier run's output."""
        self._started = True
        if self._restored:
            return
        stale = [p for p, _cp, mtime in self.naming.published() if mtime < self.created_at]
        staging = self.naming.staging_folder
        prefix = self.naming.basename + "-"
        for meta in FileSystems.match([FileSystems.join(staging, _glob_escape(prefix) + "*.inprogress")])[0].metadata_list:
            if meta.last_updated_in_seconds < self.created_at:
                stale.append(meta.path)
        for path in stale:
            try:
                FileSystems.delete([path])
            except OSError:
                pass  # another writer of this step removed it

    # -- the transactional contract -----------------------------------------------------------
    def _shards_to_finish(self, checkpoint_id: int) -> list[int]:
        """The shards this writer publishes even when empty: its own, at the end of the input."""
        if checkpoint_id < FINAL or self.skip_if_empty:
            return []
        if self.num_shards == 0:
            return [self._index]
        if self._count == 1:
            return list(range(self.num_shards))  # the only writer: every shard is its own
        return []

    def _shard_count(self) -> int:
        return self.num_shards or self._count

    def prepare_commit(self, checkpoint_id: int) -> list[tuple[str, str]]:
        """Close the staged files; the handle pairs each with its published name."""
        if self._torn_down:
            return []  # a sink that was torn down has nothing left to stage
        self._drain()
        if not self._started:
            self._start()
        for shard in self._shards_to_finish(checkpoint_id):
            if shard not in self._writers:
                self._open(shard)
        handle = []
        total = self._shard_count()
        for shard in sorted(self._writers):
            stream, writer, path, staged = self._writers[shard]
            writer.close()
            if staged is not None:
                # A handle a checkpoint records must name data on disk; the end of a run
                # without checkpoints is recorded nowhere, and is published as it is.
                staged.sync = checkpoint_id < FINAL
            stream.close()
            handle.append((path, self.naming.name(shard, total, checkpoint_id)))
        self._writers = {}
        self._seq += 1
        return handle

    def commit(self, handle: list[tuple[str, str]]) -> None:
        """Publish the staged files by rename; a file already published is left alone."""
        if not self._started:
            self._restored = self._started = True  # a commit before any write: the run was restored
        for staged, final in handle:
            if FileSystems.exists(staged):
                FileSystems.rename([staged], [final])
            elif not FileSystems.exists(final):
                raise FileNotFoundError(
                    f"the staged output {staged} of a complete checkpoint is gone and was never "
                    f"published to {final}: the staging folder was changed while a job used it"
                )

    def abort_after(self, checkpoint_id: int) -> None:
        """Remove files published for checkpoints after ``checkpoint_id`` (the job went back to it)."""
        if not self._started:
            self._restored = self._started = True
        for path, cp, _mtime in self.naming.published():
            if cp is None or cp > checkpoint_id:
                try:
                    FileSystems.delete([path])
                except OSError:
                    pass  # another instance of the sink removed it


class BatchedFileSinkFn(FileSinkFn):
    """A file sink that takes Arrow batches (Parquet, CSV): Arrow data is written without Python rows.

    Elements reach it as record batches (the batched-DoFn path of every
    runner); the rows' timestamps ride in a column that is dropped before
    writing, so rows with different timestamps share a batch.
    """

    batch_timestamp_column = TIMESTAMP_COLUMN

    def process_batch(self, batch: Any) -> Iterable[Any]:
        index = batch.schema.get_field_index(TIMESTAMP_COLUMN)
        if index >= 0:
            batch = batch.remove_column(index)
        writer = self._writers.get(self._index)
        (writer[1] if writer is not None else self._open(self._index)).write_batch(batch)
        return ()


#: The sharded sink is keyed by shard; it keeps no state, but declaring one makes the runners route by key.
_SHARD_KEYED = ReadModifyWriteStateSpec("tidal_shard")


class ShardedFileSinkFn(FileSinkFn):
    """A file sink with ``num_shards``: gets ``(shard, element)`` pairs, routed to it by shard."""

    def process(self, kv: Any, _keyed: Any = DoFn.StateParam(_SHARD_KEYED)) -> Iterable[Any]:  # type: ignore[override]
        shard, element = kv
        writer = self._writers.get(shard)
        (writer[1] if writer is not None else self._open(shard)).write(element)
        return ()


class AssignShards(DoFn):
    """Pairs each element with a shard number, round-robin over ``num_shards``."""

    def __init__(self, num_shards: int) -> None:
        self.num_shards = num_shards
        self._next = 0

    def process(self, element: Any) -> Iterable[Any]:
        shard = self._next
        self._next = shard + 1 if shard + 1 < self.num_shards else 0
        return ((shard, element),)


def sharded_copy(fn: FileSinkFn) -> ShardedFileSinkFn:
    """The :class:`ShardedFileSinkFn` with ``fn``'s configuration (for ``num_shards``)."""
    clone = object.__new__(ShardedFileSinkFn)
    clone.__dict__.update(fn.__getstate__())
    return clone


def expand_sink(pcoll: Any, fn: FileSinkFn) -> Any:
    """Apply the sink ``fn`` to ``pcoll``: directly, or through a keyed exchange by shard with ``num_shards``.

    With ``num_shards`` the elements are paired with a shard number and moved
    to the global window (a sink keeps every element; a keyed step would drop
    those of windows that expired), so every shard has exactly one writer.
    """
    from tidal.model.primitives import ParDo, WindowInto
    from tidal.model.window import GlobalWindows

    if not fn.num_shards:
        return pcoll | "Write" >> ParDo(fn)
    keyed = pcoll | "Shard" >> ParDo(AssignShards(fn.num_shards)) | "ToGlobalWindow" >> WindowInto(GlobalWindows())
    return keyed | "Write" >> ParDo(sharded_copy(fn))


# -- rows and batches against a schema (the Arrow-backed formats) ------------------------------------
def rows_to_table(rows: list[Any], schema: Any, what: str) -> Any:
    """Dict rows as an Arrow table of ``schema`` (inferred when None); a row that does not fit is named.

    The error names the field, its type and the value that does not fit it.
    """
    import pyarrow as pa

    from tidal.runners.core.errors import describe_element

    for row in rows:
        if not isinstance(row, dict):
            raise TypeError(f"{what} writes dicts (column name to value), got {describe_element(row)}")
    try:
        table = pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        if schema is None:
            raise TypeError(f"{what} cannot make Arrow columns of rows like {describe_element(rows[0])}: {exc}") from None
        for field in schema:
            for row in rows:
                _check_value(row, field, row.get(field.name))
        raise ValueError(f"rows like {describe_element(rows[0])} do not match the schema {schema}: {exc}") from None
    if schema is not None:
        for field, column in zip(schema, table.columns):
            if not field.nullable and column.null_count:
                row = next(r for r in rows if r.get(field.name) is None)
                raise ValueError(
                    f"the row {describe_element(row)} does not match the schema: the field {field.name!r} "
                    f"({field.type}) is not nullable, and the row has no value for it"
                )
    return table


def _check_value(row: Any, field: Any, value: Any) -> None:
    import pyarrow as pa

    from tidal.runners.core.errors import describe_element

    try:
        pa.array([value], type=field.type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        raise ValueError(
            f"the row {describe_element(row)} does not match the schema: the field {field.name!r} ({field.type}) "
            f"cannot hold the value {value!r} ({type(value).__name__})"
        ) from None


def conform(batch: Any, schema: Any, what: str) -> Any:
    """``batch`` (a RecordBatch or Table) with exactly ``schema``'s columns and types; a value that does not fit is named."""
    import pyarrow as pa

    names = batch.schema.names
    if names in (["value"], ["key", "value"]) and not any(n in schema.names for n in names):
        raise TypeError(
            f"{what} writes dicts (column name to value) or Arrow rows; it got elements that are not dicts "
            f"(they make the columns {names})"
        )
    columns = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            if not field.nullable:
                raise ValueError(f"rows without the field {field.name!r} do not match the schema: {field.name!r} ({field.type}) is not nullable")
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                values = column.to_pylist()
                for i, v in enumerate(values):
                    try:
                        pa.array([v], type=field.type)
                    except (pa.ArrowException, TypeError, ValueError, OverflowError):
                        row = {n: batch.column(j)[i].as_py() for j, n in enumerate(names)}
                        _check_value(row, field, v)
                raise
        if not field.nullable and column.null_count:
            raise ValueError(f"a row has no value for the field {field.name!r} ({field.type}), which is not nullable")
        columns.append(column)
    if isinstance(batch, pa.Table):
        return pa.Table.from_arrays(columns, schema=schema)
    return pa.RecordBatch.from_arrays(columns, schema=schema)
