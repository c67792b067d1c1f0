"""Keyed state backends: where the operators keep per-(key, window) state.

Every keyed operator (a stateful DoFn's :class:`~tidal.runners.core.state.KeyedStateStore`,
the window buffers and accumulators of GroupByKey and CombinePerKey in
:class:`~tidal.runners.core.reduce.KeyedWindowReducer`, the per-key buffers of count
and delta windows in :class:`~tidal.runners.core.policy.PolicyWindowReducer`) keeps
its state in *tables*: mutable mappings from a ``(key, window)`` pair (or a key) to
its state.
A backend hands out the tables:

``memory`` (the default)
    Plain Python dicts. Fastest; all state must fit in memory.

``disk``
    An embedded `LMDB <https://lmdb.readthedocs.io>`_ store in a folder of
    its own under ``state_dir`` (one store per executor, so one per Ray
    worker, on that worker's node), with a bounded in-memory cache of live
    objects in front (:class:`SpilledTable`), and timer queues whose later
    entries live on disk (:class:`SpilledHeap`). State can grow past memory:
    reads share one read transaction until the next write batch, and the
    store is reopened every ``REOPEN_AFTER_ACCESSES`` entries so that the
    pages LMDB mapped do not stay in the process's resident memory.

Choose it per pipeline with the options ``state_backend`` and ``state_dir``:
``Pipeline(options={"state_backend": "disk", "state_dir": DIR})`` or the
flags ``--state_backend=disk --state_dir=DIR``. The folder is scratch space:
it is removed when the job's executor goes away, and recovery comes from
checkpoints, which hold the state itself.

Serialization is explicit: a table key is encoded by :func:`encode_key`, a
compact, deterministic encoding of ints, strings, bytes, floats, tuples and
tidal's windows (other keys fall back to pickle, which must then give equal
keys equal bytes); a value is written with ``marshal`` when it is made only
of plain Python values, and with pickle otherwise. Values are only encoded
when the cache evicts them and decoded when a missed key is read back, never
per access.

>>> import tempfile
>>> backend = open_backend(StateBackendSpec("disk", tempfile.mkdtemp(), cache_entries=2))
>>> table = backend.table("counts")
>>> for k in ["a", "b", "c", "d"]:
...     table[(k, None)] = {"n": 1}
>>> table[("a", None)]["n"] += 1     # "a" was evicted to disk; it is read back and stays live
>>> len(table), table[("a", None)], sorted(k for k, _ in table)
(4, {'n': 2}, ['a', 'b', 'c', 'd'])
"""

from __future__ import annotations

import abc
import collections
import heapq
import marshal
import os
import pickle
import shutil
import struct
import tempfile
import uuid
import weakref
from typing import Any, Callable, Iterator, MutableMapping

import attrs

from tidal.model.window import GlobalWindow, IntervalWindow

__all__ = [
    "StateBackendSpec",
    "StateBackend",
    "MemoryBackend",
    "DiskBackend",
    "SpilledTable",
    "SpilledHeap",
    "open_backend",
    "table_snapshot",
    "heap_push",
    "heap_popper",
    "encode_key",
    "decode_key",
    "BACKENDS",
]

#: The names ``state_backend`` accepts.
BACKENDS = ("memory", "disk")
_NOTHING = object()
#: How many live (key, window) entries each table of the disk backend keeps in memory by default.
DEFAULT_CACHE_ENTRIES = 100_000
#: Entries read or written after which the disk backend closes and reopens its store (see DiskBackend._reopen).
REOPEN_AFTER_ACCESSES = 50_000


@attrs.frozen
class StateBackendSpec:
    """Which backend a job's keyed state uses (picklable: it travels with the plan to Ray workers).

    >>> StateBackendSpec.from_options({"state_backend": "disk", "state_dir": "/tmp/s"}).kind
    'disk'
    >>> StateBackendSpec.from_options({"state_backend": "ssd"})
    Traceback (most recent call last):
    ...
    ValueError: the pipeline option state_backend must be one of memory, disk; got 'ssd'
    """

    kind: str = "memory"
    directory: str | None = None
    cache_entries: int = DEFAULT_CACHE_ENTRIES

    def __attrs_post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ValueError(f"the pipeline option state_backend must be one of {', '.join(BACKENDS)}; got {self.kind!r}")
        if self.cache_entries < 1:
            raise ValueError(f"the state cache must hold at least one entry, got {self.cache_entries}")

    @classmethod
    def from_options(cls, options: Any) -> "StateBackendSpec":
        """The spec the options ``state_backend``/``state_dir`` (and ``state_cache_entries``) name.

        ``options`` is a :class:`~tidal.model.options.PipelineOptions` or a plain dict.
        """
        if isinstance(options, dict):
            values = options
        else:
            from tidal.model.options import StateOptions

            view = options.view_as(StateOptions)
            values = {name: getattr(view, name) for name in ("state_backend", "state_dir", "state_cache_entries")}
        kind = values.get("state_backend") or "memory"
        directory = values.get("state_dir")
        cache = values.get("state_cache_entries") or DEFAULT_CACHE_ENTRIES
        return cls(str(kind), os.fspath(directory) if directory is not None else None, int(cache))


class StateBackend(abc.ABC):
    """Hands out the tables of one executor's keyed operators."""

    #: ``memory`` or ``disk``.
    kind: str

    @abc.abstractmethod
    def table(self, name: str) -> MutableMapping[Any, Any]:
        """A new, empty table; ``name`` (the step's label and what it holds) names it on disk."""

    def heap(self, name: str) -> Any:
        """A new, empty priority queue of timer tuples: a list used with :mod:`heapq`, or a :class:`SpilledHeap`."""
        return []


class MemoryBackend(StateBackend):
    """Tables are dicts."""

    kind = "memory"

    def table(self, name: str) -> MutableMapping[Any, Any]:
        return {}


class DiskBackend(StateBackend):
    """Tables in one LMDB environment in a fresh folder under ``directory`` (a temporary folder when None)."""

    kind = "disk"

    def __init__(self, directory: str | None = None, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        import lmdb

        base = directory if directory is not None else tempfile.gettempdir()
        try:
            os.makedirs(base, exist_ok=True)
            self.path = tempfile.mkdtemp(prefix=f"tidal-state-{os.getpid()}-", dir=base)
        except OSError as exc:
            raise OSError(f"the state_dir {base} cannot be used for the disk state backend: {exc.strerror or exc}") from exc
        self.cache_entries = cache_entries
        self._tables = 0
        self.tables: list[SpilledTable] = []
        #: While an executor snapshots for a checkpoint: its id, and whether only changes are wanted.
        self.snapshot_id: int | None = None
        self.delta = False
        self.heaps: list[SpilledHeap] = []
        self._lmdb = lmdb
        self.env = self._open()
        self._holder = [self.env]  # the finalizer closes the environment open at the time
        self._finalizer = weakref.finalize(self, _remove_store, self._holder, self.path)
        #: The read transaction the tables share until the next write (LMDB without locks must not
        #: have a reader open while it writes).
        self._reader: Any = None
        #: Entries read or written since the store was last opened, and the iterations under way.
        self._accesses = 0
        self._iterating = 0

    def _open(self) -> Any:
        # No writemap: pages are written with write(), so the process's memory holds only what it reads.
        return self._lmdb.open(
            self.path, map_size=1 << 40, max_dbs=4096, sync=False, metasync=False, lock=False, readahead=False
        )

    def reader(self) -> Any:
        """The shared read transaction (one per write batch, instead of one per read)."""
        self._accesses += 1
        txn = self._reader
        if txn is None:
            if self._accesses > REOPEN_AFTER_ACCESSES and not self._iterating:
                self._reopen()
            txn = self._reader = self.env.begin()
        return txn

    def writer(self, owner: "SpilledTable | SpilledHeap | None" = None, entries: int = 1) -> Any:
        """A write transaction (on ``owner``'s database by default) for about ``entries`` entries.

        It ends the shared read transaction first.
        """
        if self._reader is not None:
            self._reader.abort()
            self._reader = None
        self._accesses += entries
        if self._accesses > REOPEN_AFTER_ACCESSES and not self._iterating:
            self._reopen()
        return self.env.begin(write=True, db=None if owner is None else owner._db)

    def _reopen(self) -> None:
        """Close the store and open it again, so that the pages its reads mapped leave the process's memory.

        LMDB reads through a memory map: every page a read or a write touched stays
        resident in this process (and counts in its RSS) until it is unmapped, so a
        store read all over would hold its whole file in memory.
        """
        self._accesses = 0
        self.env.close()
        self.env = self._holder[0] = self._open()
        for t in self.tables:
            t._reopened(self.env)
        for h in self.heaps:
            h._reopened(self.env)

    def table(self, name: str) -> MutableMapping[Any, Any]:
        self._tables += 1
        table = SpilledTable(self, f"{self._tables}:{name}"[:400], self.cache_entries)
        self.tables.append(table)
        return table

    def heap(self, name: str) -> Any:
        self._tables += 1
        heap = SpilledHeap(self, f"{self._tables}:{name}"[:400], self.cache_entries)
        self.heaps.append(heap)
        return heap

    def begin_snapshot(self, checkpoint_id: int, delta: bool) -> None:
        """The operators' next snapshots are for ``checkpoint_id``: only what changed when ``delta``."""
        self.snapshot_id = checkpoint_id
        self.delta = delta

    def end_snapshot(self) -> None:
        self.snapshot_id = None
        self.delta = False

    def committed(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` completed: every table's next delta is relative to it."""
        for table in self.tables:
            table.committed(checkpoint_id)

    def forget_changes(self) -> None:
        """The state was restored: the next snapshot is a full one."""
        for table in self.tables:
            table.forget_changes()

    def close(self) -> None:
        """Close the store and remove its folder (the state is gone; checkpoints hold what recovery needs)."""
        self._finalizer()


def _remove_store(holder: list[Any], path: str) -> None:
    try:
        holder[0].close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def table_snapshot(table: MutableMapping[Any, Any]) -> tuple[list[tuple[Any, Any]], list[Any] | None]:
    """A table's entries for a snapshot, and the keys deleted since the last one (None: a full snapshot).

    A table of the disk backend taking part in an incremental checkpoint gives only the
    entries read or written since the last committed checkpoint; every other table gives all.
    """
    if isinstance(table, SpilledTable):
        backend = table._backend
        if backend.snapshot_id is not None:
            return table.snapshot_changes(backend.snapshot_id, backend.delta)
    return list(table.items()), None


def heap_push(heap: Any, entry: tuple[Any, ...]) -> None:
    """Push ``entry`` onto a backend heap: a heapq list (memory) or a :class:`SpilledHeap` (disk)."""
    if type(heap) is list:
        heapq.heappush(heap, entry)
    else:
        heap.push(entry)


def heap_popper(heap: Any) -> Callable[[Any], tuple[Any, ...]]:
    """The function that pops a backend heap's earliest entry, bound once before a loop.

    >>> h: list = []
    >>> for entry in [(2, 0, 0, "b"), (1, 0, 1, "a"), (0, 0, 2, "c")]:
    ...     heap_push(h, entry)
    >>> pop = heap_popper(h)
    >>> [pop(h)[3] for _ in range(3)]
    ['c', 'a', 'b']
    """
    return heapq.heappop if type(heap) is list else type(heap).pop  # type: ignore[no-any-return]


def open_backend(spec: StateBackendSpec | None) -> StateBackend:
    """The backend ``spec`` describes (the memory backend when None)."""
    if spec is None or spec.kind == "memory":
        return MemoryBackend()
    return DiskBackend(spec.directory, spec.cache_entries)


class SpilledTable(MutableMapping[Any, Any]):
    """A mapping whose least recently used entries live in an LMDB database.

    The newest ``cache_entries`` entries are live Python objects; callers may
    change them in place (append to a bag, update an accumulator), because an
    entry is encoded only when it leaves the cache, whole, and written back
    then. Each key lives either in the cache or on disk: reading a key back
    moves it into the cache (its disk copy is overwritten at the next
    eviction). Evictions go to disk in batches, one write transaction each;
    a deleted key's disk copy is dropped in the next batch (until then the
    key is remembered as gone), and reads share one read transaction per
    batch (:meth:`DiskBackend.reader`).
    """

    def __init__(self, backend: DiskBackend, name: str, cache_entries: int) -> None:
        self._backend = backend
        self._name = name.encode()
        self._env = backend.env
        self._db = backend.env.open_db(self._name)
        self._capacity = cache_entries
        self._batch = max(1, cache_entries // 8)
        #: key -> live value, least recently used first.
        self._cache: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        #: Cached keys whose disk copy (an older one) exists: the next eviction overwrites it.
        self._stale: set[Any] = set()
        #: Deleted keys whose disk copy is still there (key -> encoded key), until the next write batch drops it.
        self._gone: dict[Any, bytes] = {}
        self._size = 0
        self._on_disk = 0  # live entries with a disk copy (the only one, or a stale one)
        #: Keys read or written since the last snapshot, and those of snapshots not yet committed
        #: (checkpoint id, keys): an incremental snapshot holds what changed since the committed one.
        self._touched: set[Any] = set()
        self._pending: list[tuple[int, set[Any]]] = []
        #: Changes are tracked from the first snapshot on (that one is full): a job that takes no
        #: checkpoints never holds a set of every key it touched.
        self._tracking = False
        #: The key the last read did not find (on disk either), until the next write.
        self._missed: Any = _NOTHING

    # -- the mapping ---------------------------------------------------------------
    # Hot path, written for speed on purpose: a hit is one OrderedDict lookup and move; a miss
    # looks on disk only when something was spilled, and not again for the key it just missed.
    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _NOTHING)
        if value is _NOTHING:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        if self._tracking:
            self._touched.add(key)  # a value read may be changed in place
        cache = self._cache
        value = cache.get(key, _NOTHING)
        if value is not _NOTHING:
            cache.move_to_end(key)
            return value
        value = self._read_back(key)
        return default if value is _NOTHING else value

    def _lookup(self, key: Any) -> Any:
        """The value of ``key`` (KeyError when absent), without tracking it as touched."""
        value = self._cache.get(key, _NOTHING)
        if value is not _NOTHING:
            self._cache.move_to_end(key)
            return value
        value = self._read_back(key)
        if value is _NOTHING:
            raise KeyError(key)
        return value

    def _read_back(self, key: Any) -> Any:
        """A key not in the cache: its disk copy, now live in the cache (or _NOTHING)."""
        if not self._on_disk or key in self._gone or (self._missed is not _NOTHING and self._missed == key):
            return _NOTHING
        data = self._backend.reader().get(encode_key(key), db=self._db)
        if data is None:
            self._missed = key  # a write of it usually follows: it need not look on disk again
            return _NOTHING
        value = decode_value(data)
        self._cache[key] = value
        self._stale.add(key)
        self._evict()
        return value

    def _disk_has(self, key: Any) -> bool:
        if not self._on_disk or key in self._gone or (self._missed is not _NOTHING and self._missed == key):
            return False
        return self._backend.reader().get(encode_key(key), db=self._db) is not None

    def __contains__(self, key: object) -> bool:
        return key in self._cache or self._disk_has(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        if self._tracking:
            self._touched.add(key)
        cache = self._cache
        if key in cache:
            cache[key] = value
            cache.move_to_end(key)
            return
        if key in self._gone:
            # Deleted, its disk copy not yet dropped: the copy is now a stale one of a live key.
            del self._gone[key]
            self._stale.add(key)
            self._on_disk += 1
            self._size += 1
        elif self._disk_has(key):
            self._stale.add(key)
        else:
            self._size += 1
            self._missed = _NOTHING
            cache[key] = value
            self._evict()
            return
        cache[key] = value
        self._evict()

    def __delitem__(self, key: Any) -> None:
        if self.pop(key, _NOTHING) is _NOTHING:
            raise KeyError(key)

    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` and return its value; a spilled value is read without entering the cache."""
        if self._tracking:
            self._touched.add(key)
        value = self._cache.pop(key, _NOTHING)
        if value is not _NOTHING:
            self._size -= 1
            if key in self._stale:
                self._stale.discard(key)
                self._forget_on_disk(key, encode_key(key))
            return value
        if self._on_disk and key not in self._gone and not (self._missed is not _NOTHING and self._missed == key):
            raw = encode_key(key)
            data = self._backend.reader().get(raw, db=self._db)
            if data is not None:
                self._size -= 1
                self._forget_on_disk(key, raw)
                return decode_value(data)
        if default:
            return default[0]
        raise KeyError(key)

    def _forget_on_disk(self, key: Any, raw: bytes) -> None:
        self._on_disk -= 1
        self._gone[key] = raw
        if len(self._gone) >= self._batch:
            self._write_batch(0)

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __iter__(self) -> Iterator[Any]:
        for key, _ in self.items():
            yield key

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        """Every (key, value): the cached ones, then those only on disk (decoded as they are read)."""
        cache = self._cache
        for key, value in list(cache.items()):
            yield key, value
        if not self._on_disk:
            return
        gone = self._gone
        self._backend._iterating += 1  # the store is not reopened under the cursor
        try:
            with self._env.begin(db=self._db) as txn:
                for raw, data in txn.cursor():
                    key = decode_key(bytes(raw))
                    if key not in cache and key not in gone:
                        yield key, decode_value(bytes(data))
        finally:
            self._backend._iterating -= 1

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        for _, value in self.items():
            yield value

    def items_in_pieces(self, size: int) -> Iterator[list[tuple[Any, Any]]]:
        """Every (key, value) in lists of at most ``size``; the caller may read and write the table between pieces.

        Unlike :meth:`items`, no read transaction stays open while the caller holds a
        piece, so it may write each entry back after changing it (a value that came
        from disk is a fresh copy: a change to it counts only once written back). The
        cached entries come first, then the disk's in key order, each piece read afresh
        after the last key of the one before. An entry present from start to end comes
        at least once; one that left the cache while the pieces were read may come again.

        >>> import tempfile
        >>> table = DiskBackend(tempfile.mkdtemp(), cache_entries=2).table("t")
        >>> for k in "abcde":
        ...     table[k] = 0
        >>> for piece in table.items_in_pieces(2):
        ...     for key, value in piece:
        ...         if value == 0:
        ...             table[key] = 1  # written back: a key that comes again is seen as done
        >>> sorted(table.items())
        [('a', 1), ('b', 1), ('c', 1), ('d', 1), ('e', 1)]
        """
        size = max(1, size)
        cached = list(self._cache.items())
        for i in range(0, len(cached), size):
            yield cached[i : i + size]
        after: bytes | None = None
        while self._on_disk:
            piece: list[tuple[Any, Any]] = []
            more = False
            with self._env.begin(db=self._db) as txn:  # the store as now opened (it may reopen between pieces)
                cursor = txn.cursor()
                ok = cursor.first() if after is None else cursor.set_range(after)
                while ok:
                    raw = bytes(cursor.key())
                    if after is not None and raw == after:
                        ok = cursor.next()
                        continue
                    if len(piece) == size:
                        more = True
                        break
                    key = decode_key(raw)
                    if key not in self._cache and key not in self._gone:
                        piece.append((key, decode_value(bytes(cursor.value()))))
                    after = raw
                    ok = cursor.next()
            if piece:
                yield piece
            if not more:
                return

    def peek(self, key: Any, default: Any = None) -> Any:
        """The value of ``key`` (``default`` when absent) without counting it as changed for the next checkpoint.

        For lookups that only read, such as checking whether an index entry is still current.
        """
        try:
            return self._lookup(key)
        except KeyError:
            return default

    def clear(self) -> None:
        if self._tracking:
            self._touched.update(key for key, _ in self.items())
        self._missed = _NOTHING
        self._cache.clear()
        self._stale.clear()
        if self._on_disk or self._gone:
            with self._backend.writer() as txn:
                txn.drop(self._db, delete=False)
        self._gone.clear()
        self._size = 0
        self._on_disk = 0

    # -- incremental snapshots -------------------------------------------------------
    def snapshot_changes(self, checkpoint_id: int, delta: bool) -> tuple[list[tuple[Any, Any]], list[Any] | None]:
        """The entries for checkpoint ``checkpoint_id``: all of them (``delta`` false; gone is None), or
        those read or written since the last committed snapshot, with the keys deleted since (gone)."""
        keys = self._touched
        self._pending.append((checkpoint_id, keys))
        self._touched = set()
        self._tracking = True
        if not delta:
            return list(self.items()), None
        changed: set[Any] = set()
        for _, pending in self._pending:
            changed |= pending
        items: list[tuple[Any, Any]] = []
        gone: list[Any] = []
        for key in changed:
            try:
                items.append((key, self._lookup(key)))
            except KeyError:
                gone.append(key)
        return items, gone

    def committed(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` completed: later deltas are relative to it."""
        self._pending = [(cid, keys) for cid, keys in self._pending if cid > checkpoint_id]

    def forget_changes(self) -> None:
        """The table was restored: the next snapshot is a full one, and nothing before counts."""
        self._touched = set()
        self._pending = []

    # -- spilling ------------------------------------------------------------------
    def _evict(self) -> None:
        if len(self._cache) > self._capacity:
            self._write_batch(min(self._batch, len(self._cache)))

    def _write_batch(self, n: int) -> None:
        """One write transaction: drop the disk copies of deleted keys, write the ``n`` oldest cached entries."""
        self._missed = _NOTHING
        cache = self._cache
        stale = self._stale
        popitem = cache.popitem
        with self._backend.writer(self, n + len(self._gone)) as txn:
            if self._gone:
                delete = txn.delete
                for raw in self._gone.values():
                    delete(raw)
                self._gone.clear()
            put = txn.put
            for _ in range(n):
                key, value = popitem(last=False)
                put(encode_key(key), encode_value(value))
                if key in stale:
                    stale.discard(key)
                else:
                    self._on_disk += 1

    @property
    def cached(self) -> int:
        """How many entries are live in memory now."""
        return len(self._cache)

    def _reopened(self, env: Any) -> None:
        self._env = env
        self._db = env.open_db(self._name)

    def __reduce__(self) -> Any:
        raise TypeError("a disk state table cannot be pickled; snapshot its entries instead")

    def __repr__(self) -> str:
        return f"SpilledTable({self._size} entries, {len(self._cache)} in memory, {self._backend.path})"


class SpilledHeap:
    """A priority queue of tuples ``(timestamp µs, kind, seq, payload...)`` whose later part lives in LMDB.

    ``(timestamp, kind, seq)`` is unique per entry and orders the queue. At
    most about ``cache_entries`` of the earliest entries are Python objects
    in an in-memory heap; when it grows past that, its later half is written
    to disk (keys that sort as the entries do), and when the earliest entry
    is on disk a batch of the earliest disk entries comes back. The payload
    is encoded with :func:`encode_key` (windows, keys and plain values).

    >>> import tempfile
    >>> backend = DiskBackend(tempfile.mkdtemp(), cache_entries=2)
    >>> heap = backend.heap("timers")
    >>> for t in [5, 1, 4, 2, 3]:
    ...     heap.push((t, 1, t, "w%d" % t))
    >>> len(heap), heap.cached, heap[0]
    (5, 1, (1, 1, 1, 'w1'))
    >>> [entry[0] for entry in heap.pop_due(4)], len(heap)
    ([1, 2, 3], 2)
    >>> list(heap)
    [(4, 1, 4, 'w4'), (5, 1, 5, 'w5')]
    """

    def __init__(self, backend: DiskBackend, name: str, cache_entries: int) -> None:
        self._backend = backend
        self._name = name.encode()
        self._env = backend.env
        self._db = backend.env.open_db(self._name)
        self._capacity = max(2, cache_entries)
        self._mem: list[tuple[Any, ...]] = []
        self._disk = 0
        #: The earliest entry on disk (None when the disk holds none).
        self._disk_head: tuple[Any, ...] | None = None

    def __len__(self) -> int:
        return len(self._mem) + self._disk

    def __bool__(self) -> bool:
        return bool(self._mem) or self._disk > 0

    @property
    def cached(self) -> int:
        """How many entries are live in memory now."""
        return len(self._mem)

    def push(self, entry: tuple[Any, ...]) -> None:
        heapq.heappush(self._mem, entry)
        if len(self._mem) > self._capacity:
            self._spill()

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        """``heap[0]``: the earliest entry (as with a heapq list)."""
        if index != 0:
            raise IndexError("a spilled heap gives only its earliest entry, heap[0]")
        self._bring_head()
        return self._mem[0]

    def pop(self) -> tuple[Any, ...]:
        """Remove and return the earliest entry."""
        self._bring_head()
        return heapq.heappop(self._mem)

    def pop_due(self, before: int) -> Iterator[tuple[Any, ...]]:
        """Pop the entries with a timestamp before ``before``, earliest first, as they are iterated."""
        while self and self[0][0] < before:
            yield self.pop()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        """Every entry, earliest first (a sorted list is a valid heap)."""
        on_disk: list[tuple[Any, ...]] = []
        if self._disk:
            with self._env.begin(db=self._db) as txn:
                on_disk = [_decode_entry(bytes(k), bytes(v)) for k, v in txn.cursor()]
        return heapq.merge(sorted(self._mem), on_disk)

    def retain(self, keep: Callable[[tuple[Any, ...]], bool], piece: int = 10_000) -> None:
        """Drop every entry that ``keep`` rejects; the disk's a ``piece`` at a time, so ``keep`` may read other tables.

        >>> import tempfile
        >>> heap = DiskBackend(tempfile.mkdtemp(), cache_entries=2).heap("holds")
        >>> for t in range(6):
        ...     heap.push((t, 0, t, "w"))
        >>> heap.retain(lambda entry: entry[0] % 2 == 1, piece=2)
        >>> list(heap), len(heap)
        ([(1, 0, 1, 'w'), (3, 0, 3, 'w'), (5, 0, 5, 'w')], 3)
        """
        self._mem = [entry for entry in self._mem if keep(entry)]
        heapq.heapify(self._mem)
        after: bytes | None = None
        while self._disk:
            entries: list[tuple[bytes, bytes]] = []
            with self._env.begin(db=self._db) as txn:
                cursor = txn.cursor()
                ok = cursor.first() if after is None else cursor.set_range(after)
                while ok and len(entries) < piece:
                    entries.append((bytes(cursor.key()), bytes(cursor.value())))
                    ok = cursor.next()
            drop = [raw for raw, data in entries if not keep(_decode_entry(raw, data))]
            if drop:
                with self._backend.writer(self, len(drop)) as txn:
                    for raw in drop:
                        txn.delete(raw)
                self._disk -= len(drop)
            if not ok:
                break
            after = entries[-1][0] + b"\x00"  # the next key after the piece's last
        self._disk_head = None
        if self._disk:
            with self._env.begin(db=self._db) as txn:
                cursor = txn.cursor()
                if cursor.first():
                    self._disk_head = _decode_entry(cursor.key(), cursor.value())

    def clear(self) -> None:
        self._mem = []
        if self._disk:
            with self._backend.writer() as txn:
                txn.drop(self._db, delete=False)
        self._disk = 0
        self._disk_head = None

    def _bring_head(self) -> None:
        head = self._disk_head
        if head is not None and (not self._mem or head < self._mem[0]):
            self._load(max(1, self._capacity // 2))
        if not self._mem:
            raise IndexError("the heap is empty")

    def _spill(self) -> None:
        entries = sorted(self._mem)
        keep = self._capacity // 2
        self._mem = entries[:keep]  # sorted: a valid heap
        out = entries[keep:]
        with self._backend.writer(self, len(out)) as txn:
            put = txn.put
            for entry in out:
                put(*_encode_entry(entry))
        self._disk += len(out)
        if self._disk_head is None or out[0] < self._disk_head:
            self._disk_head = out[0]

    def _load(self, n: int) -> None:
        mem = self._mem
        with self._backend.writer(self, n) as txn:
            cursor = txn.cursor()
            ok = cursor.first()
            while ok and n > 0:
                heapq.heappush(mem, _decode_entry(cursor.key(), cursor.value()))
                cursor.delete()  # and moves to the next entry, if there is one
                ok = bool(cursor.key())
                n -= 1
                self._disk -= 1
            self._disk_head = _decode_entry(cursor.key(), cursor.value()) if ok else None

    def _reopened(self, env: Any) -> None:
        self._env = env
        self._db = env.open_db(self._name)

    def __reduce__(self) -> Any:
        raise TypeError("a disk timer heap cannot be pickled; snapshot its entries instead")

    def __repr__(self) -> str:
        return f"SpilledHeap({len(self)} entries, {len(self._mem)} in memory, {self._backend.path})"


_ENTRY = struct.Struct(">QBQ")


def _encode_entry(entry: tuple[Any, ...]) -> tuple[bytes, bytes]:
    # Offset by 2**63 so that the bytes sort as the signed timestamps do.
    return _ENTRY.pack(entry[0] + (1 << 63), entry[1], entry[2]), encode_key(entry[3:])


def _decode_entry(key: bytes, value: bytes) -> tuple[Any, ...]:
    ts, kind, seq = _ENTRY.unpack(key)
    return (ts - (1 << 63), kind, seq, *decode_key(value))


# -- serialization -------------------------------------------------------------------
_INT = struct.Struct(">q")
_LEN = struct.Struct(">I")
_WINDOW = struct.Struct(">qq")
_GLOBAL = GlobalWindow()


def encode_key(key: Any) -> bytes:
    """A deterministic encoding of a table key: equal keys of the supported types give equal bytes.

    >>> from tidal.model.window import IntervalWindow
    >>> decode_key(encode_key(("user-1", IntervalWindow.from_micros(0, 10)))) == ("user-1", IntervalWindow.from_micros(0, 10))
    True
    """
    if type(key) is IntervalWindow:
        return b"W" + _WINDOW.pack(key[0], key[1])
    if type(key) is tuple and len(key) == 2 and type(key[0]) is str:
        # The common (str key, window) pair, without the general recursion.
        data = key[0].encode("utf-8", "surrogatepass")
        w = key[1]
        if w is _GLOBAL:
            return b"(\x00\x00\x00\x02s" + _LEN.pack(len(data)) + data + b"G"
        if type(w) is IntervalWindow:
            return b"(\x00\x00\x00\x02s" + _LEN.pack(len(data)) + data + b"W" + _WINDOW.pack(w[0], w[1])
    out = bytearray()
    _encode(key, out)
    return bytes(out)


def _encode(obj: Any, out: bytearray) -> None:
    t = type(obj)
    if t is str:
        data = obj.encode("utf-8", "surrogatepass")
        out += b"s"
        out += _LEN.pack(len(data))
        out += data
    elif t is int:
        if -(1 << 63) <= obj < (1 << 63):
            out += b"i"
            out += _INT.pack(obj)
        else:
            data = str(obj).encode()
            out += b"I"
            out += _LEN.pack(len(data))
            out += data
    elif t is tuple:
        out += b"("
        out += _LEN.pack(len(obj))
        for item in obj:
            _encode(item, out)
    elif t is IntervalWindow:
        out += b"W"
        out += _WINDOW.pack(obj[0], obj[1])
    elif t is GlobalWindow:
        out += b"G"
    elif obj is None:
        out += b"N"
    elif t is bool:
        out += b"T" if obj else b"F"
    elif t is bytes:
        out += b"b"
        out += _LEN.pack(len(obj))
        out += obj
    elif t is float:
        out += b"f"
        out += struct.pack(">d", obj)
    else:
        data = pickle.dumps(obj, protocol=5)
        out += b"P"
        out += _LEN.pack(len(data))
        out += data


def decode_key(data: bytes) -> Any:
    """The key :func:`encode_key` encoded."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"a state key has {len(data) - end} bytes after its end")
    return value


def _decode(data: bytes, i: int) -> tuple[Any, int]:
    tag = data[i : i + 1]
    i += 1
    if tag == b"s":
        (n,) = _LEN.unpack_from(data, i)
        i += 4
        return data[i : i + n].decode("utf-8", "surrogatepass"), i + n
    if tag == b"i":
        return _INT.unpack_from(data, i)[0], i + 8
    if tag == b"(":
        (n,) = _LEN.unpack_from(data, i)
        i += 4
        items = []
        for _ in range(n):
            item, i = _decode(data, i)
            items.append(item)
        return tuple(items), i
    if tag == b"W":
        start, end = _WINDOW.unpack_from(data, i)
        return IntervalWindow.from_micros(start, end), i + 16
    if tag == b"G":
        return GlobalWindow(), i
    if tag == b"N":
        return None, i
    if tag in (b"T", b"F"):
        return tag == b"T", i
    if tag == b"f":
        return struct.unpack_from(">d", data, i)[0], i + 8
    if tag in (b"b", b"I", b"P"):
        (n,) = _LEN.unpack_from(data, i)
        i += 4
        raw = data[i : i + n]
        if tag == b"b":
            return raw, i + n
        if tag == b"I":
            return int(raw), i + n
        return pickle.loads(raw), i + n
    raise ValueError(f"unknown tag {tag!r} in a state key")


def encode_value(value: Any) -> bytes:
    """A value as bytes: ``marshal`` for plain Python values (faster both ways), pickle for the rest.

    >>> decode_value(encode_value({"count": 3, "seen": [1, 2]}))
    {'count': 3, 'seen': [1, 2]}
    """
    try:
        return b"M" + marshal.dumps(value)
    except ValueError:  # an object marshal does not know (a window, a user class): pickle it
        return b"P" + pickle.dumps(value, protocol=5)


def decode_value(data: bytes) -> Any:
    """The value :func:`encode_value` encoded."""
    if data[:1] == b"M":
        return marshal.loads(data[1:])
    return pickle.loads(data[1:])
