"""Cases for the stream sources and sinks of ``tidal.io``: Redis Streams.

The Redis cases need a redis-server. A case gets its URL from
:func:`tidal.testing.redis_server.shared_redis_url`: ``TIDAL_REDIS_URL`` when
it is set (the test session sets it to the server its fixture started),
else a server the process starts on first use, on 127.0.0.1, and stops at
exit. Where neither is possible the case raises :class:`CaseSkipped` with the
command that installs the server, and the matrix shows it as skipped, not
failed. Each case run uses streams named after its own working folder, so
runs never see each other's entries.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterable

import tidal as td
from tidal import window
from tidal.capability_matrix.case import CHECKPOINT_RESTORE, CaseContext, CaseFailure, CaseSkipped, W, case
from tidal.capability_matrix.sinks import RecordTo, read_records
from tidal.model.time import Timestamp

_WINDOWED = ("value", "window")


def _redis(ctx: CaseContext) -> tuple[str, Any, str]:
    """The Redis URL, a client (str responses) and a stream-name prefix unique to this case run."""
    try:
        import redis
    except ImportError as exc:
        raise CaseSkipped("the Redis cases need redis-py: pip install 'tidal[redis]'") from exc
    from tidal.testing.redis_server import RedisServerUnavailable, shared_redis_url

    try:
        url = shared_redis_url()
    except RedisServerUnavailable as exc:
        raise CaseSkipped(f"no Redis server: {exc}; or set TIDAL_REDIS_URL") from exc
    return url, redis.Redis.from_url(url, decode_responses=True), f"{ctx.workdir.name}:"


_CLICKS = [("ada", 1.0), ("bob", 2.5), ("ada", 9.0), ("ada", 12.0), ("bob", 25.0)]


@case("redis.read_event_time_field", "Redis Streams", observe=_WINDOWED,
      expected=[(("ada", 2), W(0, 10)), (("bob", 1), W(0, 10)), (("ada", 1), W(10, 20)), (("bob", 1), W(20, 30))])
def redis_read_field(p: td.Pipeline, ctx: CaseContext) -> Any:
    """ReadFromRedisStream stamps entries with a field (seconds); fixed windows count clicks per user."""
    url, client, prefix = _redis(ctx)
    stream = prefix + "clicks"
    if not client.exists(stream):
        for user, t in _CLICKS:
            client.xadd(stream, {"user": user, "t": t})
    return (
        p
        | td.ReadFromRedisStream(url, stream, timestamp_field="t", max_num_records=len(_CLICKS))
        | td.Map(lambda e: e["user"])
        | td.WindowInto(window.FixedWindows(10))
        | td.combiners.Count.PerElement()
    )


@case("redis.read_entry_id_time", "Redis Streams", observe=("value", "timestamp"),
      expected=[(("1000-0", "a"), Timestamp(1)), (("2500-0", "b"), Timestamp(2.5)), (("2500-1", "c"), Timestamp(2.5))])
def redis_read_ids(p: td.Pipeline, ctx: CaseContext) -> Any:
    """Without a timestamp field an entry's event time is its ID's milliseconds."""
    url, client, prefix = _redis(ctx)
    stream = prefix + "ids"
    if not client.exists(stream):
        for entry_id, name in [("1000-0", "a"), ("2500-0", "b"), ("2500-1", "c")]:
            client.xadd(stream, {"name": name}, id=entry_id)
    read = td.ReadFromRedisStream(url, stream, with_metadata=True, max_num_records=3)
    return p | read | td.Map(lambda e: (e.id, e.fields["name"]))


@case("redis.watermark_per_stream", "Redis Streams", observe=_WINDOWED,
      expected=[(("fast", 1), W(0, 10)), (("slow", 1), W(0, 10)), (("fast", 1), W(20, 30)), (("slow", 1), W(20, 30))])
def redis_two_streams(p: td.Pipeline, ctx: CaseContext) -> Any:
    """Two streams, one far ahead in event time: the watermark is the minimum over the streams, so the
    late-looking entry of the slow stream is still on time (nothing is dropped)."""
    url, client, prefix = _redis(ctx)
    fast, slow = prefix + "fast", prefix + "slow"
    if not client.exists(fast):
        client.xadd(fast, {"n": "fast", "t": 1})
        client.xadd(fast, {"n": "fast", "t": 25})
        client.xadd(slow, {"n": "slow", "t": 2})
        client.xadd(slow, {"n": "slow", "t": 21})
    return (
        p
        | td.ReadFromRedisStream(url, [fast, slow], timestamp_field="t", max_num_records=4)
        | td.Map(lambda e: e["n"])
        | td.WindowInto(window.FixedWindows(10))
        | td.combiners.Count.PerElement()
    )


def _published_check(stream: str, expected: list[str], after_failure: bool = False) -> Any:
    """A drive: run, then compare the lines (field ``line``) of ``stream`` with ``expected``, as a multiset.

    Without a failure nothing may stay staged; after one, the attempt that failed leaves what it
    staged after its last complete checkpoint (never published, as documented).
    """

    def drive(p: td.Pipeline, ctx: CaseContext) -> Any:
        url, client, prefix = _redis(ctx)
        result = p.run()
        result.wait_until_finish(60)
        got = sorted(fields["line"] for _, fields in client.xrange(prefix + stream))
        if got != sorted(expected):
            missing = sorted(set(expected) - set(got))[:3]
            doubled = sorted(line for line in set(got) if got.count(line) > 1)[:3]
            raise CaseFailure(
                f"the stream holds {len(got)} entries, expected {len(expected)} (missing {missing}, twice {doubled})"
            )
        staged = client.keys(prefix + stream + ":tidal-staging:*")
        if staged and not after_failure:
            raise CaseFailure(f"staged entries were left unpublished: {staged}")
        return result

    return drive


@case("redis.write", "Redis Streams", drive=_published_check("out", ["a,3", "b,1", "c,7"]))
def redis_write(p: td.Pipeline, ctx: CaseContext) -> None:
    """WriteToRedisStream appends one entry per element; nothing stays staged after the run."""
    url, _, prefix = _redis(ctx)
    (
        p
        | td.Create([("a", 3), ("b", 1), ("c", 7)])
        | td.MapTuple(lambda k, v: {"line": f"{k},{v}"})
        | td.WriteToRedisStream(url, prefix + "out")
    )


# -- exactly once from Redis to Redis -----------------------------------------------------
_N = 600


def _feed(client: Any, stream: str, reads: str) -> None:
    """The input: 20 entries (event time v / 20 s), then, once the job has read some, 20 more every 0.1 s
    (about 3 s in all), so that checkpoints complete before the crash at 85% of it."""

    def add(start: int) -> None:
        pipe = client.pipeline(transaction=False)
        for v in range(start, start + 20):
            pipe.xadd(stream, {"k": f"k{v % 3}", "v": v, "t": v / 20})
        pipe.execute()

    add(0)
    deadline = time.monotonic() + 60
    while not read_records(reads) and time.monotonic() < deadline:
        time.sleep(0.02)
    for start in range(20, _N, 20):
        time.sleep(0.1)
        add(start)


class _Crash:
    def __call__(self, kv: Any) -> bool:
        return bool(kv[1] == 510)


class _NumberPerKey(td.DoFn):
    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield {"line": f"{kv[0]},{n},{kv[1]}"}


def _exactly_once_drive(p: td.Pipeline, ctx: CaseContext) -> Any:
    result = _published_check("numbers", [f"k{v % 3},{v // 3 + 1},{v}" for v in range(_N)], after_failure=True)(p, ctx)
    attempts = sorted(ctx.workdir.glob("reads-*"), key=lambda f: int(f.name.split("-")[1]))
    if len(attempts) > 1 and len(read_records(attempts[-1])) >= _N:
        raise CaseFailure("after the crash the job read the whole stream again: it did not resume from its positions")
    return result


@case("exactly_once.redis_to_redis", "Exactly-once after failure", requires=(CHECKPOINT_RESTORE,),
      drive=_exactly_once_drive, timeout_s=120.0)
def redis_exactly_once(p: td.Pipeline, ctx: CaseContext) -> None:
    """A live Redis stream numbered per key in keyed state crashes at 85% of its input; the output stream
    WriteToRedisStream published holds every number once, and the restart read on from its positions."""
    url, client, prefix = _redis(ctx)
    stream = prefix + "events"
    attempt = len(list(ctx.workdir.glob("reads-*")))
    reads = ctx.workdir / f"reads-{attempt}"
    reads.mkdir()
    if not ctx.armed:  # the first attempt: the stream starts arriving
        threading.Thread(target=_feed, args=(client, stream, str(reads)), name="tidal-case-feed", daemon=True).start()
    crash = ctx.fail_once(_Crash())
    pairs = (
        p
        | td.ReadFromRedisStream(url, stream, timestamp_field="t", max_num_records=_N)
        | td.Map(lambda e: (e["k"], int(e["v"])))
    )
    _ = pairs | "CountReads" >> td.ParDo(RecordTo(str(reads), ("value",)))
    (
        pairs
        | "Crash" >> td.ParDo(crash)
        | td.ParDo(_NumberPerKey())
        | td.WriteToRedisStream(url, prefix + "numbers")
    )
