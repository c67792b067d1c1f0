"""Cases for the stream sources and sinks of ``tidal.io``: Redis Streams and a watched directory.

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

import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import tidal as td
from tidal import window
from tidal.capability_matrix.cases.beyond import _ValueAtLeast
from tidal.capability_matrix.case import CHECKPOINT_RESTORE, CaseContext, CaseFailure, CaseSkipped, W, case
from tidal.capability_matrix.sinks import read_records
from tidal.io.fileio import MatchContinuously, ReadContinuously
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
            # Reported rather than raised, so that after a failure the harness still checks the restore.
            ctx.report_problem(
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


class _NumberPerKey(td.DoFn):
    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield {"line": f"{kv[0]},{n},{kv[1]}"}


def _exactly_once_drive(p: td.Pipeline, ctx: CaseContext) -> Any:
    return _published_check("numbers", [f"k{v % 3},{v // 3 + 1},{v}" for v in range(_N)], after_failure=True)(p, ctx)


@case("exactly_once.redis_to_redis", "Exactly-once after failure", requires=(CHECKPOINT_RESTORE,),
      drive=_exactly_once_drive, timeout_s=120.0)
def redis_exactly_once(p: td.Pipeline, ctx: CaseContext) -> None:
    """A live Redis stream numbered per key in keyed state crashes at 85% of its input, after a checkpoint;
    the output stream WriteToRedisStream published holds every number once, and the restart read on from
    the checkpoint's stream positions."""
    url, client, prefix = _redis(ctx)
    stream = prefix + "events"
    if not ctx.armed:  # the first attempt: the stream starts arriving once the job reads
        reads = ctx.workdir / f"reads-{ctx.attempt}"
        threading.Thread(target=_feed, args=(client, stream, str(reads)), name="tidal-case-feed", daemon=True).start()
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(510))
    pairs = ctx.record_reads(
        p
        | td.ReadFromRedisStream(url, stream, timestamp_field="t", max_num_records=_N)
        | td.Map(lambda e: (e["k"], int(e["v"]))),
        _N,
    )
    (
        pairs
        | "Crash" >> td.ParDo(crash)
        | td.ParDo(_NumberPerKey())
        | td.WriteToRedisStream(url, prefix + "numbers")
    )


# -- a watched directory ----------------------------------------------------------------------
def _drop(folder: Path, name: str, data: bytes, mtime: float) -> None:
    """Write a file beside ``folder`` with modification time ``mtime`` and move it in (atomically)."""
    incoming = folder.parent / f".{folder.name}-incoming"
    incoming.mkdir(exist_ok=True)
    tmp = incoming / name
    tmp.write_bytes(data)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, folder / name)


def _drop_later(folder: Path, files: list[tuple[str, bytes, float]], pause: float) -> None:
    def run() -> None:
        for name, data, mtime in files:
            time.sleep(pause)
            _drop(folder, name, data, mtime)

    threading.Thread(target=run, name="tidal-case-files", daemon=True).start()


def _inbox(ctx: CaseContext) -> tuple[Path, bool]:
    """The watched folder of this case run, and whether this is the first attempt (it was just made)."""
    inbox = ctx.workdir / "inbox"
    first = not inbox.exists()
    inbox.mkdir(exist_ok=True)
    return inbox, first


@case("watched.files_appear", "Watched directory", observe=_WINDOWED,
      expected=[(("a", 2), W(0, 10)), (("b", 1), W(0, 10)), (("a", 1), W(10, 20)), (("c", 2), W(20, 30))])
def watched_files_appear(p: td.Pipeline, ctx: CaseContext) -> Any:
    """Text files moved into a watched folder while the job runs are read once each; their lines are
    stamped with the file's modification time and counted per 10 s window."""
    inbox, first = _inbox(ctx)
    if first:
        _drop(inbox, "1.txt", b"a\nb\na\n", 3)
        _drop_later(inbox, [("2.txt", b"a\n", 12), ("3.txt", b"c\nc\n", 25)], pause=0.3)
    return (
        p
        | ReadContinuously(str(inbox / "*.txt"), "text", interval=0.05, max_files=3)
        | td.WindowInto(window.FixedWindows(10))
        | td.combiners.Count.PerElement()
    )


@case("watched.match_continuously", "Watched directory", observe=("value", "timestamp"),
      expected=[("a.csv", Timestamp(5)), ("b.csv", Timestamp(7))])
def watched_match(p: td.Pipeline, ctx: CaseContext) -> Any:
    """MatchContinuously emits the metadata of each new file matching the pattern (others are ignored),
    stamped with its modification time."""
    inbox, first = _inbox(ctx)
    if first:
        _drop(inbox, "a.csv", b"n\n1\n", 5)
        _drop(inbox, "notes.txt", b"not matched", 6)
        _drop_later(inbox, [("b.csv", b"n\n2\n", 7)], pause=0.3)
    return p | MatchContinuously(str(inbox / "*.csv"), interval=0.05, max_files=2) | td.Map(lambda m: os.path.basename(m.path))


@case("watched.csv_event_time_column", "Watched directory", observe=_WINDOWED,
      expected=[(("ada", 5), W(0, 10)), (("bob", 2), W(0, 10)), (("ada", 7), W(10, 20))])
def watched_csv(p: td.Pipeline, ctx: CaseContext) -> Any:
    """CSV files of a watched folder, with event time from a column: sums per user and 10 s window."""
    inbox, first = _inbox(ctx)
    if first:
        _drop(inbox, "1.csv", b"user,n,t\nada,2,1.5\nbob,2,3\n", 100)
        _drop_later(inbox, [("2.csv", b"user,n,t\nada,3,9\nada,7,15\n", 200)], pause=0.3)
    return (
        p
        | ReadContinuously(str(inbox / "*.csv"), "csv", interval=0.05, timestamp_column="t", max_files=2)
        | td.Map(lambda row: (row["user"], row["n"]))
        | td.WindowInto(window.FixedWindows(10))
        | td.CombinePerKey(sum)
    )


_FILES, _PER_FILE = 30, 20


def _feed_files(inbox: Path, reads: str) -> None:
    """Two files, then, once the job has read some, a file of 20 rows every 0.1 s (about 3 s in all)."""

    def data(f: int) -> bytes:
        rows = "".join(f"k{v % 3},{v},{v / 20}\n" for v in range(f * _PER_FILE, (f + 1) * _PER_FILE))
        return ("k,v,t\n" + rows).encode()

    _drop(inbox, "000.csv", data(0), 1000)
    _drop(inbox, "001.csv", data(1), 1001)
    deadline = time.monotonic() + 60
    while not read_records(reads) and time.monotonic() < deadline:
        time.sleep(0.02)
    for f in range(2, _FILES):
        time.sleep(0.1)
        _drop(inbox, f"{f:03d}.csv", data(f), 1000 + f)


def _watched_exactly_once(p: td.Pipeline, ctx: CaseContext) -> Any:
    n = _FILES * _PER_FILE
    result = p.run()
    result.wait_until_finish(60)
    expected = sorted(f"k{v % 3},{v // 3 + 1},{v}" for v in range(n))
    published = sorted(td.io.read_text(str(ctx.workdir / "published" / "numbers-*")))
    if published != expected:
        missing = sorted(set(expected) - set(published))[:3]
        doubled = sorted(line for line in set(published) if published.count(line) > 1)[:3]
        ctx.report_problem(
            f"the published output has {len(published)} lines, expected {n} (missing {missing}, twice {doubled})"
        )
    return result


@case("exactly_once.watched_directory", "Exactly-once after failure", requires=(CHECKPOINT_RESTORE,),
      drive=_watched_exactly_once, timeout_s=120.0)
def watched_exactly_once(p: td.Pipeline, ctx: CaseContext) -> None:
    """CSV files arrive in a watched folder for 3 s; the job numbers each key's rows in keyed state and
    crashes at 85% of them, after a checkpoint; the files WriteToText published hold every number once, and the restart
    read on from the files and the position it had checkpointed."""
    inbox, first = _inbox(ctx)
    if first:
        reads = ctx.workdir / f"reads-{ctx.attempt}"
        threading.Thread(target=_feed_files, args=(inbox, str(reads)), name="tidal-case-files", daemon=True).start()
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(int(0.85 * _FILES * _PER_FILE)))
    pairs = ctx.record_reads(
        p
        | ReadContinuously(str(inbox / "*.csv"), "csv", interval=0.05, timestamp_column="t", max_files=_FILES)
        | td.Map(lambda row: (row["k"], int(row["v"]))),
        _FILES * _PER_FILE,
    )
    (
        pairs
        | "Crash" >> td.ParDo(crash)
        | td.ParDo(_NumberPerKey())
        | td.Map(lambda entry: entry["line"])
        | td.WriteToText(str(ctx.workdir / "published" / "numbers"))
    )
