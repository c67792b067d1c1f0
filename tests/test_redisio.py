"""Redis Streams: ReadFromRedisStream and WriteToRedisStream against a real redis-server.

The session's server comes from the ``redis_url`` fixture (tests/conftest.py);
each test starts from an empty database (``redis_client``). Pipelines run
on every runner through the ``runner`` fixture below; expected values are
worked out by hand from the entries each test writes.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.io.redisio import (
    ReadFromRedisStream,
    RedisStreamReader,
    RedisStreamSinkFn,
    RedisStreamSource,
    StreamEntry,
    WriteToRedisStream,
    _PUBLISH,
)
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner
from tidal.testing import assert_that, equal_to
from tidal.trigger import PaneInfoTiming

from pane_support import P, RecordPanes

W = window.IntervalWindow
US = 1_000_000
DEADLINE_S = 60.0

pytestmark = pytest.mark.usefixtures("redis_url")


@pytest.fixture(params=["direct", "ray", "microbatch"])
def runner(request: pytest.FixtureRequest) -> Any:
    """Each runner in turn; Ray shares the session's local instance."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
        from tidal.runners.ray.runner import RayRunner

        return RayRunner(parallelism=2)
    if request.param == "microbatch":
        return MicroBatchRunner(batch_interval=0.05, max_batch_size=4)
    return DirectRunner()


def run(p: td.Pipeline) -> td.PipelineResult:
    result = p.run()
    state = result.wait_until_finish(DEADLINE_S)
    if state is td.PipelineState.RUNNING:
        result.cancel()
        pytest.fail(f"the pipeline did not finish within {DEADLINE_S} s")
    assert state is td.PipelineState.DONE
    return result


def entries(client: Any, stream: str) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(stream)]


CLICKS = [("ada", 1.0), ("bob", 2.5), ("ada", 9.0), ("ada", 12.0), ("bob", 25.0)]


def add_clicks(client: Any, stream: str = "clicks") -> None:
    for user, t in CLICKS:
        client.xadd(stream, {"user": user, "t": t})


# -- reading, on every runner ------------------------------------------------------------
def test_read_windowed_counts_with_event_time_from_a_field(runner: Any, redis_url: str, redis_client: Any) -> None:
    add_clicks(redis_client)
    p = td.Pipeline(runner=runner)
    panes = (
        p
        | ReadFromRedisStream(redis_url, "clicks", timestamp_field="t", max_num_records=len(CLICKS))
        | td.Map(lambda fields: (fields["user"], float(fields["t"])))
        | td.WindowInto(window.FixedWindows(10))
        | td.GroupByKey()
        | td.ParDo(RecordPanes())
    )
    assert_that(
        panes,
        equal_to(
            [
                P("ada", [1.0, 9.0], W(0, 10), 10 * US - 1),
                P("bob", [2.5], W(0, 10), 10 * US - 1),
                P("ada", [12.0], W(10, 20), 20 * US - 1),
                P("bob", [25.0], W(20, 30), 30 * US - 1),
            ]
        ),
    )
    run(p)


def test_write_entries_on_every_runner(runner: Any, redis_url: str, redis_client: Any) -> None:
    p = td.Pipeline(runner=runner)
    (
        p
        | td.Create([("ada", 3), ("bob", 1), ("cy", 7)])
        | td.MapTuple(lambda user, n: {"user": user, "n": n, "half": n / 2})
        | WriteToRedisStream(redis_url, "totals")
    )
    run(p)
    assert sorted(entries(redis_client, "totals"), key=lambda f: f["user"]) == [
        {"user": "ada", "n": "3", "half": "1.5"},
        {"user": "bob", "n": "1", "half": "0.5"},
        {"user": "cy", "n": "7", "half": "3.5"},
    ]
    assert redis_client.keys("totals:tidal-staging:*") == []


def test_read_then_write_per_window_sums(runner: Any, redis_url: str, redis_client: Any) -> None:
    add_clicks(redis_client)
    p = td.Pipeline(runner=runner)
    (
        p
        | ReadFromRedisStream(redis_url, "clicks", timestamp_field="t", max_num_records=len(CLICKS))
        | td.Map(lambda fields: (fields["user"], 1))
        | td.WindowInto(window.FixedWindows(10))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda user, n, w=td.DoFn.WindowParam: {"user": user, "window": int(w.start), "clicks": n})
        | WriteToRedisStream(redis_url, "per-window")
    )
    run(p)
    got = sorted((f["user"], f["window"], f["clicks"]) for f in entries(redis_client, "per-window"))
    assert got == [("ada", "0", "2"), ("ada", "10", "1"), ("bob", "0", "1"), ("bob", "20", "1")]


# -- reading: event time, metadata, positions ---------------------------------------------
def test_event_time_from_the_entry_id_and_entries_with_metadata(redis_url: str, redis_client: Any) -> None:
    for ms, user in [(1000, "ada"), (2500, "bob"), (12000, "ada")]:
        redis_client.xadd("ids", {"user": user}, id=f"{ms}-0")
    redis_client.xadd("ids", {"user": "cy"}, id="12000-1")
    p = td.Pipeline()
    stamped = (
        p
        | ReadFromRedisStream(redis_url, "ids", with_metadata=True, max_num_records=4)
        | td.Map(lambda e, t=td.DoFn.TimestampParam: (e, t.micros))
    )
    assert_that(
        stamped,
        equal_to(
            [
                (StreamEntry("ids", "1000-0", {"user": "ada"}), 1 * US),
                (StreamEntry("ids", "2500-0", {"user": "bob"}), 2_500_000),
                (StreamEntry("ids", "12000-0", {"user": "ada"}), 12 * US),
                (StreamEntry("ids", "12000-1", {"user": "cy"}), 12 * US),
            ]
        ),
    )
    run(p)


def test_bytes_fields_when_encoding_is_none(redis_url: str, redis_client: Any) -> None:
    redis_client.xadd("raw", {"blob": "x"})
    redis_client.xadd("raw", {b"blob": b"\xff\x00"})
    p = td.Pipeline()
    assert_that(
        p | ReadFromRedisStream(redis_url, "raw", encoding=None, max_num_records=2),
        equal_to([{b"blob": b"x"}, {b"blob": b"\xff\x00"}]),
    )
    run(p)


def poll_all(reader: Any, n: int, max_elements: int = 1000) -> list[Any]:
    """Poll until ``n`` elements came (or the reader is done); fails after the deadline."""
    import time

    out: list[Any] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(out) < n and not reader.is_done():
        assert time.monotonic() < deadline, f"only {len(out)} of {n} elements arrived"
        got = reader.poll(min(max_elements, n - len(out)))
        out.extend(got)
        if not got:
            time.sleep(0.005)
    return out


def test_a_reader_opened_at_an_offset_reads_on_from_there(redis_url: str, redis_client: Any) -> None:
    for i in range(10):
        redis_client.xadd("s", {"i": i, "t": i})
    source = RedisStreamSource(redis_url, "s", timestamp_field="t", max_out_of_orderness=2)
    first = source.open_reader()
    try:
        got = poll_all(first, 4)
        offset = json.loads(json.dumps(first.offset()))  # what a commit log stores
    finally:
        first.close()
    assert [tv.value["i"] for tv in got] == ["0", "1", "2", "3"]
    ids = [i for i, _ in redis_client.xrange("s")]
    assert offset == {"ids": {"s": ids[3]}, "records": 4, "max_ts": {"s": 3 * US}}
    second = source.open_reader(offset)
    try:
        assert second.watermark() == 1 * US  # 3 s seen, 2 s out of order: restored with the offset
        rest = poll_all(second, 6)
        assert [(tv.value["i"], tv.timestamp_us) for tv in rest] == [(str(i), i * US) for i in range(4, 10)]
        assert second.offset() == {"ids": {"s": ids[9]}, "records": 10, "max_ts": {"s": 9 * US}}
        assert second.watermark() == 7 * US
    finally:
        second.close()


def test_limit_to_holds_back_entries_past_the_recorded_end(redis_url: str, redis_client: Any) -> None:
    for i in range(6):
        redis_client.xadd("a", {"i": i, "t": i})
        redis_client.xadd("b", {"i": i, "t": 10 + i})
    source = RedisStreamSource(redis_url, ["a", "b"], timestamp_field="t")
    ids_a = [i for i, _ in redis_client.xrange("a")]
    ids_b = [i for i, _ in redis_client.xrange("b")]
    reader = source.open_reader()
    try:
        reader.limit_to({"ids": {"a": ids_a[1], "b": ids_b[3]}, "records": 6, "max_ts": {}})
        import time

        deadline = time.monotonic() + DEADLINE_S
        got: list[Any] = []
        while len(got) < 6:  # a[0..1] and b[0..3], however XREAD interleaved them
            assert time.monotonic() < deadline
            got.extend(reader.poll(1000))
        time.sleep(0.2)
        assert reader.poll(1000) == []  # nothing past the end, though it has all arrived
        assert sorted((tv.value["i"], tv.timestamp_us) for tv in got) == sorted(
            [("0", 0), ("1", US)] + [(str(i), (10 + i) * US) for i in range(4)]
        )
        assert reader.offset()["ids"] == {"a": ids_a[1], "b": ids_b[3]}
        reader.limit_to(None)
        rest = poll_all(reader, 6)
        by_stream: dict[str, list[str]] = {"a": [], "b": []}
        for tv in rest:
            by_stream["a" if tv.timestamp_us < 10 * US else "b"].append(tv.value["i"])
        assert by_stream == {"a": ["2", "3", "4", "5"], "b": ["4", "5"]}  # each stream still in order
    finally:
        reader.close()


def test_the_watermark_is_the_minimum_over_the_streams(redis_url: str, redis_client: Any) -> None:
    redis_client.xadd("fast", {"t": 50})
    source = RedisStreamSource(redis_url, ["fast", "slow"], timestamp_field="t", max_out_of_orderness=5)
    reader = source.open_reader()
    try:
        assert len(poll_all(reader, 1)) == 1
        assert reader.watermark() == MIN_TIMESTAMP_US  # "slow" has had no entry yet
        redis_client.xadd("slow", {"t": 20})
        assert len(poll_all(reader, 1)) == 1
        assert reader.watermark() == 15 * US
        redis_client.xadd("slow", {"t": 70})
        assert len(poll_all(reader, 1)) == 1
        assert reader.watermark() == 45 * US
    finally:
        reader.close()


def test_start_id_dollar_reads_only_entries_added_after_the_start(redis_url: str, redis_client: Any) -> None:
    redis_client.xadd("live", {"n": "old"})
    reader = RedisStreamSource(redis_url, "live", start_id="$", max_num_records=1).open_reader()
    try:
        redis_client.xadd("live", {"n": "new"})
        assert [tv.value for tv in poll_all(reader, 1)] == [{"n": "new"}]
        poll_all(reader, 1)
        assert reader.is_done() and reader.watermark() == MAX_TIMESTAMP_US
    finally:
        reader.close()


def test_the_reader_is_done_as_soon_as_the_last_record_is_handed_out(redis_url: str, redis_client: Any) -> None:
    """Done at a position, not when the end marker reaches the queue: a replay must end where the run did."""
    from tidal.io import unbounded

    release = threading.Event()

    class EndHeldBack(RedisStreamReader):
        def _put(self, item: Any) -> bool:
            if item is unbounded._END:
                release.wait(DEADLINE_S)
            return super()._put(item)

    for i in range(5):
        redis_client.xadd("s", {"i": i})
    reader = EndHeldBack(RedisStreamSource(redis_url, "s", max_num_records=3))
    try:
        got = poll_all(reader, 3)
        assert [tv.value["i"] for tv in got] == ["0", "1", "2"]
        assert reader.is_done() and reader.watermark() == MAX_TIMESTAMP_US
        assert reader.offset()["records"] == 3
    finally:
        release.set()
        reader.close()


def test_max_num_records_counts_across_streams_and_restores(redis_url: str, redis_client: Any) -> None:
    for i in range(5):
        redis_client.xadd("a", {"i": i})
        redis_client.xadd("b", {"i": i})
    source = RedisStreamSource(redis_url, ["a", "b"], max_num_records=7)
    reader = source.open_reader()
    try:
        first = poll_all(reader, 3, max_elements=3)
        offset = reader.offset()
    finally:
        reader.close()
    again = source.open_reader(offset)
    try:
        rest = poll_all(again, 100)
        assert len(first) + len(rest) == 7 and again.is_done()
    finally:
        again.close()


# -- writing: the transactional protocol ----------------------------------------------------
@pytest.fixture
def sink(redis_url: str) -> Iterable[RedisStreamSinkFn]:
    fn = RedisStreamSinkFn(redis_url, "out", commit_chunk=2)
    fn.setup()
    yield fn
    fn.teardown()


def write(fn: RedisStreamSinkFn, *values: int) -> None:
    for v in values:
        assert list(fn.process({"v": v})) == []
    fn.finish_bundle()


def values_in(client: Any, stream: str = "out") -> list[str]:
    return [fields["v"] for _, fields in client.xrange(stream)]


def test_staged_entries_are_invisible_until_commit(sink: RedisStreamSinkFn, redis_client: Any) -> None:
    write(sink, 1, 2, 3)
    handle = sink.prepare_commit(1)
    assert handle == [sink.staging_stream(0)]
    assert values_in(redis_client) == [] and redis_client.xlen(handle[0]) == 3
    sink.commit(handle)
    assert values_in(redis_client) == ["1", "2", "3"]
    assert redis_client.exists(handle[0]) == 0


def test_commit_is_idempotent(sink: RedisStreamSinkFn, redis_client: Any) -> None:
    write(sink, 1, 2, 3, 4, 5)
    handle = sink.prepare_commit(1)
    sink.commit(handle)
    sink.commit(handle)  # a restore commits the restored checkpoint's handle again
    assert values_in(redis_client) == ["1", "2", "3", "4", "5"]


def test_a_commit_interrupted_between_chunks_publishes_the_rest_once(sink: RedisStreamSinkFn, redis_client: Any) -> None:
    write(sink, 1, 2, 3, 4, 5)
    handle = sink.prepare_commit(1)
    left = redis_client.eval(_PUBLISH, 2, handle[0], "out", 2, "", "~")  # one chunk, then the worker died
    assert left == 3 and values_in(redis_client) == ["1", "2"]
    sink.commit(handle)
    assert values_in(redis_client) == ["1", "2", "3", "4", "5"]


def test_each_checkpoint_interval_stages_apart_and_nothing_is_staged_for_an_empty_one(
    sink: RedisStreamSinkFn, redis_client: Any
) -> None:
    write(sink, 1)
    first = sink.prepare_commit(1)
    assert sink.prepare_commit(2) == []
    write(sink, 2, 3)
    third = sink.prepare_commit(3)
    assert first != third
    sink.commit(third)
    sink.commit(first)
    assert values_in(redis_client) == ["2", "3", "1"]


def test_output_after_the_last_checkpoint_is_never_published(redis_url: str, redis_client: Any) -> None:
    fn = RedisStreamSinkFn(redis_url, "out")
    fn.setup()
    write(fn, 1)
    fn.commit(fn.prepare_commit(1))
    write(fn, 2)  # staged, but its checkpoint never completes
    fn.process({"v": 3})  # not even staged
    fn.teardown()
    assert values_in(redis_client) == ["1"]


def test_maxlen_caps_the_stream(redis_url: str, redis_client: Any) -> None:
    fn = RedisStreamSinkFn(redis_url, "out", maxlen=3, approximate=False)
    fn.setup()
    write(fn, *range(10))
    fn.commit(fn.prepare_commit(1))
    fn.teardown()
    assert values_in(redis_client) == ["7", "8", "9"]


def test_a_sink_pickles_without_its_connection(sink: RedisStreamSinkFn) -> None:
    import cloudpickle

    copy = cloudpickle.loads(cloudpickle.dumps(sink))
    assert copy._client is None and copy.url == sink.url


# -- bad input ---------------------------------------------------------------------------------
def test_an_element_that_is_not_a_dict_fails_naming_the_step(redis_url: str) -> None:
    p = td.Pipeline()
    p | td.Create(["plain"]) | "Out" >> WriteToRedisStream(redis_url, "out")
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Out/Write': .*TypeError: WriteToRedisStream\(out\) writes each element as one entry: a dict of field -> value, got str 'plain'"):
        p.run()


@pytest.mark.parametrize(
    "element, message",
    [
        ({"ok": 1, "flag": True}, "field 'flag' = True cannot be stored"),
        ({"ok": 1, "none": None}, "field 'none' = None cannot be stored"),
        ({3: "x"}, "field 3 = 'x' cannot be stored"),
        ({}, "an entry needs at least one field"),
    ],
)
def test_a_field_redis_cannot_store_fails_naming_the_field(redis_url: str, redis_client: Any, element: Any, message: str) -> None:
    p = td.Pipeline()
    p | td.Create([{"ok": 0}, element]) | "Out" >> WriteToRedisStream(redis_url, "out")
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Out/Write'") as failed:
        p.run()
    assert message in str(failed.value)
    assert redis_client.xlen("out") == 0  # nothing partially published


def test_bad_arguments_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="ReadFromRedisStream: 'http://h:1' is not a Redis URL; use redis://"):
        ReadFromRedisStream("http://h:1", "s")
    with pytest.raises(ValueError, match=r"WriteToRedisStream: 'localhost:6379' is not a Redis URL"):
        WriteToRedisStream("localhost:6379", "s")
    with pytest.raises(ValueError, match="start_id 'latest' for stream 's' is not an entry ID"):
        ReadFromRedisStream("redis://h", "s", start_id="latest")
    with pytest.raises(ValueError, match="one or more distinct stream names"):
        ReadFromRedisStream("redis://h", [])
    with pytest.raises(ValueError, match="start_id names streams it does not read: \\['t'\\]"):
        ReadFromRedisStream("redis://h", "s", start_id={"t": "0"})
    with pytest.raises(ValueError, match="max_num_records must be a non-negative int"):
        ReadFromRedisStream("redis://h", "s", max_num_records=-1)
    with pytest.raises(ValueError, match="maxlen must be a positive int"):
        WriteToRedisStream("redis://h", "s", maxlen=0)


def test_a_missing_or_bad_timestamp_field_fails_naming_the_entry(redis_url: str, redis_client: Any) -> None:
    redis_client.xadd("s", {"t": 1})
    bad = redis_client.xadd("s", {"t": "soon"})
    p = td.Pipeline()
    p | "In" >> ReadFromRedisStream(redis_url, "s", timestamp_field="t") | td.Map(lambda x: x)
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'In/Read\(RedisStream\(s\)\)'") as failed:
        run_failing(p)
    assert f"entry {bad} of Redis stream 's' has no event time in timestamp_field 't': its value is b'soon'" in str(failed.value)


def run_failing(p: td.Pipeline) -> None:
    result = p.run()
    result.wait_until_finish(DEADLINE_S)
    if result.state is td.PipelineState.RUNNING:
        result.cancel()
        pytest.fail("the pipeline did not fail")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def silent_server() -> tuple[str, threading.Event]:
    """A TCP server that accepts connections and never answers: a Redis that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue
        for conn in held:
            conn.close()
        server.close()

    threading.Thread(target=accept, daemon=True).start()
    return f"redis://127.0.0.1:{server.getsockname()[1]}/0", stop


@pytest.mark.parametrize("where", ["refused", "silent"])
@pytest.mark.parametrize("direction", ["read", "write"])
def test_an_unreachable_redis_fails_within_the_timeout_naming_the_url(where: str, direction: str) -> None:
    if where == "refused":
        url, stop = f"redis://:hunter2@127.0.0.1:{closed_port()}/0", threading.Event()
        shown = url.replace("hunter2", "***")
    else:
        url, stop = silent_server()
        shown = url
    p = td.Pipeline()
    if direction == "read":
        p | "In" >> ReadFromRedisStream(url, "s", connect_timeout=0.5) | td.Map(lambda x: x)
        step = "In/Read"
    else:
        p | td.Create([{"a": 1}]) | "Out" >> WriteToRedisStream(url, "s", connect_timeout=0.5)
        step = "Out/Write"
    try:
        with pytest.raises(td.PipelineExecutionError, match=rf"^step '{step}") as failed:
            run_failing(p)
    finally:
        stop.set()
    message = str(failed.value)
    assert f"RedisUnreachableError: cannot reach Redis at {shown} within 0.5 s" in message
    assert "hunter2" not in message
