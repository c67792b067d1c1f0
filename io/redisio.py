"""Redis Streams in and out: :class:`ReadFromRedisStream` and :class:`WriteToRedisStream` (redis-py).

Reading
-------
:class:`ReadFromRedisStream` reads one or more streams with ``XREAD`` on a
background thread and hands out their entries as dicts of fields (or
:class:`StreamEntry` tuples with ``with_metadata=True``). Its offset — what
runners checkpoint — is, per stream, the ID of the last entry handed out,
with the number of records read and the largest event time seen per
stream; a restored job reads on from those IDs, so every entry reaches the
pipeline once per run of the state (exactly-once state on the Ray and
micro-batch runners). The entries must still be in the stream when the job
is restored: trim streams (``MAXLEN``) with room for a restore.

An entry's event time is its ID's millisecond part (the time Redis added it)
or, with ``timestamp_field``, that field read as seconds. The watermark is
bounded out-of-orderness per stream — the largest event time read from the
stream minus ``max_out_of_orderness`` — and the minimum over the streams, so
one stream running ahead does not make another's entries late; a stream that
has had no entry yet holds the watermark back. ``max_num_records`` (Beam's
name, as in KafkaIO) ends the stream after that many records, which makes a
finite job of a live stream.

Writing, exactly once
---------------------
:class:`WriteToRedisStream` is a transactional sink (the contract is in
:mod:`tidal.io.textio`). Each worker appends what it receives to a *staging
stream* of its own in the same Redis, ``<stream>:tidal-staging:<writer>:<n>``,
invisible to readers of ``<stream>``; a checkpoint barrier closes the
staging stream (``prepare_commit``: its name is the handle stored in the
checkpoint), and once the checkpoint is complete ``commit`` moves its
entries into ``<stream>`` with a Lua script. The script runs atomically in
Redis: it copies up to ``commit_chunk`` entries with ``XADD`` (Redis gives
them new IDs) and deletes them from the staging stream in the same step, and
the staging stream is deleted once empty. So a commit interrupted anywhere
leaves every entry either published or still staged, never both, and
running it again (as a restore does) publishes only what is still staged: a
commit that already finished finds nothing and is a no-op. Output staged
after the last complete checkpoint is never published; the replay after the
restore writes it again under a new staging name. Without checkpoints (the
direct runner) the output is published when the run ends.

Limits of this design: the staging streams of a failed attempt stay in
Redis (they are never published and may be deleted); a restore from a
checkpoint older than the newest complete one (a savepoint chosen on
purpose) does not withdraw what later checkpoints published; and the
staging and target keys must live on one node (no Redis Cluster).

The examples on :class:`ReadFromRedisStream` and :class:`WriteToRedisStream`
run against a server of their own when ``redis-server`` is installed.
"""

from __future__ import annotations

import collections
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit, urlunsplit

from tidal.io.unbounded import UnboundedReader
from tidal.model.dofn import DoFn
from tidal.model.primitives import ParDo, Read, UnboundedSource
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, DurationLike, duration_to_micros
from tidal.model.window import TimestampedValue

if TYPE_CHECKING:
    import redis

__all__ = [
    "ReadFromRedisStream", "RedisStreamSource", "RedisStreamSinkFn", "RedisUnreachableError", "StreamEntry",
    "WriteToRedisStream",
]

_SCHEMES = ("redis", "rediss", "unix")


class RedisUnreachableError(ConnectionError):
    """Redis did not answer at the URL within the connect timeout."""


class StreamEntry(NamedTuple):
    """One entry of a Redis stream, as ``ReadFromRedisStream(..., with_metadata=True)`` gives it."""

    stream: str
    id: str
    fields: dict[Any, Any]


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages).

    >>> redact_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_url(url: str, what: str) -> None:
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        raise ValueError(
            f"{what}: {redact_url(url) if isinstance(url, str) else url!r} is not a Redis URL; "
            "use redis://host:port/db, rediss://host:port/db (TLS) or unix:///path/to/socket"
        )


def connect(url: str, timeout: float, read_block_s: float = 0.0) -> "redis.Redis":
    """A redis-py client for ``url`` that has answered PING; fails within ``timeout`` s naming the URL.

    The client does not retry: a lost connection is an error the runner
    handles (a checkpointing runner restores and reads again).
    """
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - redis is a dependency of the redis extra
        raise ImportError("Redis Streams need redis-py: pip install 'tidal[redis]'") from exc
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout + read_block_s, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as exc:
        raise ValueError(f"{redact_url(url)!r} is not a usable Redis URL: {exc}") from exc
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        raise RedisUnreachableError(
            f"cannot reach Redis at {redact_url(url)} within {timeout:g} s: {type(exc).__name__}: {exc}"
        ) from exc
    return client


def _id_key(entry_id: str) -> tuple[int, int]:
    """An entry ID ("<ms>-<seq>", or "<ms>") as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _check_start_id(start_id: str, stream: str) -> str:
    if start_id == "$":
        return start_id
    try:
        ms, seq = _id_key(start_id)
    except ValueError:
        ms = seq = -1
    if ms < 0 or seq < 0:
        raise ValueError(
            f"ReadFromRedisStream: start_id {start_id!r} for stream {stream!r} is not an entry ID; "
            "use '0' (from the first entry), '$' (only entries added after the job starts) or '<ms>-<seq>'"
        )
    return f"{ms}-{seq}"


# -- reading ---------------------------------------------------------------------------
class RedisStreamSource(UnboundedSource):
    """The entries of Redis streams (see the module docs and :class:`ReadFromRedisStream`)."""

    def __init__(
        self,
        url: str,
        streams: str | Sequence[str],
        start_id: str | Mapping[str, str] = "0",
        timestamp_field: str | None = None,
        max_out_of_orderness: DurationLike = 0,
        max_num_records: int | None = None,
        with_metadata: bool = False,
        encoding: str | None = "utf-8",
        count: int = 1000,
        block_ms: int = 100,
        connect_timeout: float = 5.0,
    ) -> None:
        _check_url(url, "ReadFromRedisStream")
        names = [streams] if isinstance(streams, str) else list(streams)
        if not names or not all(isinstance(s, str) and s for s in names) or len(set(names)) != len(names):
            raise ValueError(f"ReadFromRedisStream needs one or more distinct stream names, got {streams!r}")
        if isinstance(start_id, str):
            starts = {s: _check_start_id(start_id, s) for s in names}
        else:
            unknown = sorted(set(start_id) - set(names))
            if unknown:
                raise ValueError(f"ReadFromRedisStream: start_id names streams it does not read: {unknown}")
            starts = {s: _check_start_id(start_id.get(s, "0"), s) for s in names}
        if max_num_records is not None and (isinstance(max_num_records, bool) or not isinstance(max_num_records, int) or max_num_records < 0):
            raise ValueError(f"max_num_records must be a non-negative int or None, got {max_num_records!r}")
        for name, value in (("count", count), ("block_ms", block_ms)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive seconds, got {connect_timeout!r}")
        self.url = url
        self.streams = names
        self.start_ids = starts
        self.timestamp_field = timestamp_field
        self.out_of_orderness_us = duration_to_micros(max_out_of_orderness, "max_out_of_orderness")
        if self.out_of_orderness_us < 0:
            raise ValueError("max_out_of_orderness must not be negative")
        self.max_num_records = max_num_records
        self.with_metadata = with_metadata
        self.encoding = encoding
        self.count = count
        self.block_ms = block_ms
        self.connect_timeout = connect_timeout

    def open_reader(self, start_offset: Any = None) -> "RedisStreamReader":
        return RedisStreamReader(self, start_offset)

    def display_name(self) -> str:
        return f"RedisStream({','.join(self.streams)})"


class RedisStreamReader(UnboundedReader):
    """Reads with XREAD on a thread; positions are per-stream entry IDs (see the module docs).

    The offset is ``{"ids": {stream: last ID handed out}, "records": n,
    "max_ts": {stream: largest event time in µs}}``, JSON-serialisable.
    """

    def __init__(self, source: RedisStreamSource, start_offset: Any = None) -> None:
        self._source = source
        self._client: Any = connect(source.url, source.connect_timeout, source.block_ms / 1000)
        if start_offset is None:
            self._ids = {s: self._resolve(s, i) for s, i in source.start_ids.items()}
            self._records = 0
            self._stream_max_ts: dict[str, int] = {}
        else:
            self._ids = dict(start_offset["ids"])
            self._records = int(start_offset["records"])
            self._stream_max_ts = {s: int(t) for s, t in start_offset["max_ts"].items()}
        # Entries taken from the queue but not handed out yet (over max_elements, or past limit_to).
        self._buffer: collections.deque[tuple[str, str, int, Any]] = collections.deque()
        self._end: dict[str, tuple[int, int]] | None = None
        super().__init__(source.out_of_orderness_us, None, queue_size=64)

    def _resolve(self, stream: str, start_id: str) -> str:
        """'$' as the ID of the stream's last entry now, so the offset is a real position."""
        if start_id != "$":
            return start_id
        last = self._client.xrevrange(stream, "+", "-", count=1)
        return last[0][0].decode() if last else "0-0"

    # -- the reader thread --------------------------------------------------------------
    def _produce(self) -> Iterator[list[tuple[str, str, int, Any]]]:
        """Chunks of (stream, entry ID, event time µs, element), one per XREAD."""
        src = self._source
        client = self._client
        cursor = dict(self._ids)
        left = None if src.max_num_records is None else src.max_num_records - self._records
        try:
            while not self._stop.is_set():
                if left is not None and left <= 0:
                    return
                reply = client.xread(cursor, count=src.count if left is None else min(src.count, left), block=src.block_ms)
                if not reply:
                    continue
                chunk = []
                for name, entries in reply.items() if isinstance(reply, dict) else reply:
                    stream = name.decode() if isinstance(name, bytes) else name
                    for raw_id, fields in entries:
                        entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                        chunk.append(self._entry(stream, entry_id, fields))
                        cursor[stream] = entry_id
                if left is not None:
                    chunk = chunk[:left]  # XREAD's COUNT is per stream
                    left -= len(chunk)
                yield chunk
        finally:
            client.close()

    def _entry(self, stream: str, entry_id: str, raw: dict[bytes, bytes]) -> tuple[str, str, int, Any]:
        src = self._source
        enc = src.encoding
        fields: dict[Any, Any] = {k.decode(enc): v.decode(enc) for k, v in raw.items()} if enc else dict(raw)
        field = src.timestamp_field
        if field is None:
            ts = _id_key(entry_id)[0] * 1000
        else:
            value = raw.get(field.encode())
            try:
                if value is None:
                    raise KeyError(field)
                ts = round(float(value) * 1_000_000)
                if not MIN_TIMESTAMP_US <= ts <= MAX_TIMESTAMP_US:
                    raise ValueError("outside [MIN_TIMESTAMP, MAX_TIMESTAMP]")
            except (KeyError, ValueError, OverflowError) as exc:
                shown = "it has no such field" if value is None else f"its value is {value!r} ({exc})"
                raise ValueError(
                    f"entry {entry_id} of Redis stream {stream!r} has no event time in timestamp_field {field!r}: "
                    f"{shown}; the field must hold seconds (an int or a float)"
                ) from exc
        element = StreamEntry(stream, entry_id, fields) if src.with_metadata else fields
        return stream, entry_id, ts, element

    # -- the runner's side --------------------------------------------------------------
    def limit_to(self, offset: Any) -> None:
        self._end = None if offset is None else {s: _id_key(i) for s, i in offset["ids"].items()}

    def poll(self, max_elements: int) -> list[Any]:
        buffer = self._buffer
        if len(buffer) < max_elements and not (self._error_due and buffer):
            for chunk in self._take(1 << 30):
                buffer.extend(chunk)
        end = self._end
        out: list[Any] = []
        held: list[tuple[str, str, int, Any]] = []
        ids, max_ts = self._ids, self._stream_max_ts
        while buffer and len(out) < max_elements:
            item = buffer.popleft()
            stream, entry_id, ts, element = item
            if end is not None and (stream not in end or _id_key(entry_id) > end[stream]):
                held.append(item)  # past the range being replayed; later entries of its stream follow it
                continue
            ids[stream] = entry_id
            if ts > max_ts.get(stream, MIN_TIMESTAMP_US):
                max_ts[stream] = ts
            tv = TimestampedValue.__new__(TimestampedValue)
            tv.value, tv.timestamp_us = element, ts
            out.append(tv)
        buffer.extendleft(reversed(held))
        self._records += len(out)
        return out

    def offset(self) -> Any:
        return {"ids": dict(self._ids), "records": self._records, "max_ts": dict(self._stream_max_ts)}

    def watermark(self) -> int:
        if self.is_done():
            return MAX_TIMESTAMP_US
        max_ts = self._stream_max_ts
        if len(max_ts) < len(self._ids):
            return MIN_TIMESTAMP_US
        return min(max_ts.values()) - self.out_of_orderness_us

    def is_done(self) -> bool:
        # Done at the position where the stream ends, whenever the end marker is taken from the
        # queue, so that a replay ends where the original run did.
        limit = self._source.max_num_records
        return (limit is not None and self._records >= limit) or (self._done and not self._buffer)


class ReadFromRedisStream(PTransform):
    """``p | ReadFromRedisStream(url, streams)``: the entries of Redis streams, as an unbounded PCollection.

    Each element is the entry's fields as a dict (decoded with ``encoding``;
    ``encoding=None`` keeps bytes), or a :class:`StreamEntry` (stream, ID,
    fields) with ``with_metadata=True``. ``start_id`` is ``"0"`` (the first
    entry, the default), ``"$"`` (entries added after the job starts) or an
    entry ID, for every stream or per stream as a dict. Event time is the
    entry ID's milliseconds, or ``timestamp_field`` read as seconds; the
    watermark trails it by ``max_out_of_orderness`` seconds per stream.
    ``max_num_records`` ends the stream after that many records. Positions
    are checkpointed and replayed after a restore (see the module docs).
    An unreachable URL fails the run within ``connect_timeout`` seconds,
    with the URL in the message.

    >>> import tidal as td
    >>> from tidal.testing.redis_server import RedisServer, RedisServerUnavailable
    >>> try:
    ...     server = RedisServer().start()
    ... except RedisServerUnavailable:
    ...     server = None                        # the example needs a redis-server binary
    >>> if server is not None:
    ...     with server:
    ...         import redis
    ...         for user, t in [("ada", 1), ("bob", 2), ("ada", 12)]:
    ...             _ = redis.Redis.from_url(server.url).xadd("clicks", {"user": user, "t": t})
    ...         with td.Pipeline() as p:
    ...             counts = (p | ReadFromRedisStream(server.url, "clicks", timestamp_field="t", max_num_records=3)
    ...                         | td.Map(lambda entry: entry["user"])
    ...                         | td.WindowInto(td.window.FixedWindows(10))
    ...                         | td.combiners.Count.PerElement())
    ...             td.testing.assert_that(counts, td.testing.equal_to([("ada", 1), ("bob", 1), ("ada", 1)]))
    """

    def __init__(self, url: str, streams: str | Sequence[str], **kwargs: Any) -> None:
        super().__init__()
        self.source = RedisStreamSource(url, streams, **kwargs)

    def default_label(self) -> str:
        return f"ReadFromRedisStream({','.join(self.source.streams)})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | Read(self.source)


# -- writing ---------------------------------------------------------------------------
#: Moves up to ARGV[1] entries from the staging stream KEYS[1] to the stream KEYS[2] and
#: deletes them from the staging stream, atomically; deletes the staging stream once it
#: is empty. Returns how many entries are still staged.
_PUBLISH = """
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
local moved = {}
for i, entry in ipairs(entries) do
  if ARGV[2] == '' then
    redis.call('XADD', KEYS[2], '*', unpack(entry[2]))
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], ARGV[2], '*', unpack(entry[2]))
  end
  moved[i] = entry[1]
end
if #moved > 0 then
  redis.call('XDEL', KEYS[1], unpack(moved))
end
local left = redis.call('XLEN', KEYS[1])
if left == 0 then
  redis.call('DEL', KEYS[1])
end
return left
"""

_FIELD_TYPES = (str, bytes, int, float)


class RedisStreamSinkFn(DoFn):
    """The transactional DoFn behind :class:`WriteToRedisStream`: one staging stream per checkpoint interval."""

    #: Entries buffered in memory before they are appended to the staging stream.
    FLUSH_EVERY = 1000

    def __init__(
        self,
        url: str,
        stream: str,
        maxlen: int | None = None,
        approximate: bool = True,
        connect_timeout: float = 5.0,
        commit_chunk: int = 1000,
    ) -> None:
        _check_url(url, "WriteToRedisStream")
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"WriteToRedisStream needs a stream name, got {stream!r}")
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1):
            raise ValueError(f"maxlen must be a positive int or None, got {maxlen!r}")
        if isinstance(commit_chunk, bool) or not isinstance(commit_chunk, int) or commit_chunk < 1:
            raise ValueError(f"commit_chunk must be a positive int, got {commit_chunk!r}")
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.approximate = approximate
        self.connect_timeout = connect_timeout
        self.commit_chunk = commit_chunk
        self._client: Any = None
        self._script: Any = None
        self._writer = ""
        self._seq = 0
        self._buffer: list[dict[Any, Any]] = []
        self._staged = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = state["_script"] = None  # a connection is made where the DoFn runs
        return state

    def _connection(self) -> Any:
        if self._client is None:
            self._client = connect(self.url, self.connect_timeout)
            self._script = self._client.register_script(_PUBLISH)
        return self._client

    def setup(self) -> None:
        self._writer = uuid.uuid4().hex[:12]
        self._seq = 0
        self._connection()

    def staging_stream(self, seq: int | None = None) -> str:
        """The staging stream this writer appends to now (or for interval ``seq``)."""
        return f"{self.stream}:tidal-staging:{self._writer}:{self._seq if seq is None else seq:06d}"

    def process(self, element: Any) -> Iterable[Any]:
        if type(element) is not dict:
            if not isinstance(element, Mapping):
                raise TypeError(
                    f"WriteToRedisStream({self.stream}) writes each element as one entry: a dict of "
                    f"field -> value, got {type(element).__name__} {element!r}"
                )
            element = dict(element)
        if not element:
            raise ValueError(f"WriteToRedisStream({self.stream}): an entry needs at least one field, got an empty dict")
        for field, value in element.items():
            if not isinstance(field, (str, bytes)) or isinstance(value, bool) or not isinstance(value, _FIELD_TYPES):
                raise TypeError(
                    f"WriteToRedisStream({self.stream}): field {field!r} = {value!r} cannot be stored; "
                    "field names are str or bytes, values str, bytes, int or float"
                )
        self._buffer.append(element)
        if len(self._buffer) >= self.FLUSH_EVERY:
            self._flush()
        return ()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if not self._writer:
            self.setup()
        pipe = self._connection().pipeline(transaction=False)
        staging = self.staging_stream()
        for fields in self._buffer:
            pipe.xadd(staging, fields)
        pipe.execute()
        self._buffer.clear()
        self._staged = True

    def finish_bundle(self) -> None:
        self._flush()

    def prepare_commit(self, checkpoint_id: int) -> list[str]:
        """Close this interval's staging stream; the handle is its name (empty when nothing was written)."""
        self._flush()
        if not self._staged:
            return []
        staging = self.staging_stream()
        self._seq += 1
        self._staged = False
        return [staging]

    def commit(self, handle: list[str]) -> None:
        """Move the staged entries into the stream; what was already moved is not moved again."""
        self._connection()
        args = [self.commit_chunk, "" if self.maxlen is None else self.maxlen, "~" if self.approximate else "="]
        for staging in handle:
            while self._script(keys=[staging, self.stream], args=args):
                pass

    def teardown(self) -> None:
        # Entries not yet staged belong to no checkpoint: the replay after a restore writes them again.
        self._buffer.clear()
        if self._client is not None:
            self._client.close()
            self._client = None


class WriteToRedisStream(PTransform):
    """Appends each element — a dict of field -> value — as an entry of the Redis stream ``stream``.

    Exactly once on runners with checkpoints: entries are staged per
    checkpoint and published atomically when it completes (see the module
    docs). Redis assigns the entry IDs at publication; ``maxlen`` caps the
    stream's length (``approximate=True`` uses ``MAXLEN ~``, cheaper).
    Field names are str or bytes, values str, bytes, int or float; anything
    else fails the step naming the field. Returns an empty PCollection.

    >>> import tidal as td
    >>> from tidal.testing.redis_server import RedisServer, RedisServerUnavailable
    >>> try:
    ...     server = RedisServer().start()
    ... except RedisServerUnavailable:
    ...     server = None                        # the example needs a redis-server binary
    >>> if server is not None:
    ...     with server:
    ...         with td.Pipeline() as p:
    ...             _ = (p | td.Create([("ada", 3), ("bob", 1)])
    ...                    | td.MapTuple(lambda user, n: {"user": user, "clicks": n})
    ...                    | WriteToRedisStream(server.url, "totals"))
    ...         import redis
    ...         entries = redis.Redis.from_url(server.url, decode_responses=True).xrange("totals")
    ...         assert sorted(fields["user"] for _, fields in entries) == ["ada", "bob"]
    """

    def __init__(self, url: str, stream: str, **kwargs: Any) -> None:
        super().__init__()
        self.fn = RedisStreamSinkFn(url, stream, **kwargs)

    def default_label(self) -> str:
        return f"WriteToRedisStream({self.fn.stream})"

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll | "Write" >> ParDo(self.fn)
