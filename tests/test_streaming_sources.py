"""Unbounded sources on the direct runner: GeneratorSource, sockets, and cancellation.

These pipelines run on a thread (``p.run()`` returns a RUNNING result); every
wait has a timeout so a broken run fails instead of hanging.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

import tidal as td
from tidal import window
from tidal.testing import assert_that, equal_to
from tidal.trigger import PaneInfoTiming

from pane_support import P, RecordPanes

TV = window.TimestampedValue
W = window.IntervalWindow
US = 1_000_000
ON_TIME, LATE = PaneInfoTiming.ON_TIME, PaneInfoTiming.LATE

#: A run still going after this long is a hang.
DEADLINE_S = 30.0


class _Record(td.DoFn):
    """Appends each element's repr to a file: how a source learns what fired (DoFns run on copies)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, element: Any) -> Iterable[Any]:
        with open(self.path, "a") as f:
            f.write(f"{element!r}\n")
        yield element


def wait_for_text(path: str, text: str, timeout: float = DEADLINE_S) -> None:
    """Block until ``text`` appears in the file at ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                if text in f.read():
                    return
        time.sleep(0.005)
    raise TimeoutError(f"{text!r} did not appear in {path}")


def finish(result: td.PipelineResult) -> td.PipelineState:
    """Wait for a threaded run to end; cancel it and fail the test if it does not."""
    state = result.wait_until_finish(DEADLINE_S)
    if state is td.PipelineState.RUNNING:
        result.cancel()
        pytest.fail(f"the pipeline did not finish within {DEADLINE_S} s")
    return state


def dropped(result: td.PipelineResult, step: str) -> int:
    query = td.MetricsFilter().with_name("dropped_due_to_lateness").with_step(step)
    return sum(c.committed for c in result.metrics().query(query)["counters"])


# -- GeneratorSource -------------------------------------------------------------------
def late_arrivals(path: str) -> Callable[[], Iterator[Any]]:
    def events() -> Iterator[Any]:
        yield TV(("k", 1), 1)
        yield TV(("k", 3), 3)
        yield TV(("k", 11), 11)  # watermark 11 - 2 = 9
        yield TV(("k", 9.5), 9.5)  # out of order but within the bound: on time
        yield TV(("k", 12), 12)  # watermark 10: [0,10) fires
        wait_for_text(path, "IntervalWindow(0, 10)")
        yield TV(("k", 4), 4)  # behind the watermark: late
        yield TV(("k", 15), 15)

    return events


@pytest.mark.parametrize("lateness", [0, 10])
def test_generator_source_bounded_out_of_orderness_and_late_data(tmp_path: Path, lateness: int) -> None:
    path = str(tmp_path / "fired.txt")
    p = td.Pipeline()
    panes = (
        p
        | "Gen" >> td.Read(td.GeneratorSource(late_arrivals(path), max_out_of_orderness=2))
        | td.WindowInto(window.FixedWindows(10), allowed_lateness=lateness)
        | "Group" >> td.GroupByKey()
        | td.ParDo(RecordPanes())
        | td.ParDo(_Record(path))
    )
    if lateness == 0:
        expected = [
            P("k", [1, 3, 9.5], W(0, 10), 10 * US - 1, 0, ON_TIME, True, 0),
            P("k", [11, 12, 15], W(10, 20), 20 * US - 1, 0, ON_TIME, True, 0),
        ]
    else:
        expected = [
            P("k", [1, 3, 9.5], W(0, 10), 10 * US - 1, 0, ON_TIME, False, 0),
            P("k", [4], W(0, 10), 10 * US - 1, 1, LATE, False, 1),
            P("k", [11, 12, 15], W(10, 20), 20 * US - 1, 0, ON_TIME, True, 0),
        ]
    assert_that(panes, equal_to(expected))
    result = p.run()
    assert finish(result) is td.PipelineState.DONE
    assert dropped(result, "Group") == (1 if lateness == 0 else 0)


def test_generator_source_without_timestamps_and_with_a_plain_iterable() -> None:
    p = td.Pipeline()
    counts = (
        p
        | td.Read(td.GeneratorSource(lambda: ["a", "b", "a"]))
        | td.WindowInto(window.FixedWindows(10))
        | td.combiners.Count.PerElement()
    )
    assert_that(counts, equal_to([("a", 2), ("b", 1)]))
    assert finish(p.run()) is td.PipelineState.DONE


def test_generator_source_error_fails_the_run_naming_the_step() -> None:
    def broken() -> Iterator[Any]:
        yield TV("x", 1)
        raise RuntimeError("the feed broke")

    p = td.Pipeline()
    p | "Feed" >> td.Read(td.GeneratorSource(broken)) | td.Map(lambda x: x)
    result = p.run()
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Feed': .*RuntimeError: the feed broke"):
        finish(result)
    assert result.state is td.PipelineState.FAILED


def test_generator_source_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        td.GeneratorSource([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_out_of_orderness"):
        td.GeneratorSource(lambda: [], max_out_of_orderness=-1)


# -- sockets ---------------------------------------------------------------------------
def serve_once(payload: bytes) -> tuple[int, threading.Thread]:
    """A TCP server on an ephemeral port: accepts one client, sends ``payload``, closes."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(DEADLINE_S)
    port = server.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = server.accept()
            with conn:
                conn.sendall(payload)
        except OSError:
            pass
        finally:
            server.close()

    thread = threading.Thread(target=serve, name="test-socket-server", daemon=True)
    thread.start()
    return port, thread


def event_time_of(line: str) -> float:
    return float(line.split()[0])


LINES = ["1 a", "2 b", "3 a", "12 a", "13 b", "25 a"]
COUNTS = [
    (("a", 2), W(0, 10)),
    (("b", 1), W(0, 10)),
    (("a", 1), W(10, 20)),
    (("b", 1), W(10, 20)),
    (("a", 1), W(20, 30)),
]


@pytest.mark.parametrize("api", ["SocketTextSource", "ReadFromSocket"])
@pytest.mark.parametrize("trailing_newline", [True, False], ids=["newline", "no-final-newline"])
def test_socket_source_windowed_word_counts(api: str, trailing_newline: bool) -> None:
    payload = ("\r\n".join(LINES) + ("\n" if trailing_newline else "")).encode()
    port, server = serve_once(payload)
    p = td.Pipeline()
    if api == "SocketTextSource":
        lines = p | td.Read(td.SocketTextSource("127.0.0.1", port, timestamp_fn=event_time_of))
    else:
        lines = p | td.ReadFromSocket("127.0.0.1", port, timestamp_fn=event_time_of)
    counts = (
        lines
        | td.Map(lambda line: line.split()[1])
        | td.WindowInto(window.FixedWindows(10))
        | td.combiners.Count.PerElement()
        | td.Map(lambda kv, w=td.DoFn.WindowParam: (kv, w))
    )
    assert_that(counts, equal_to(COUNTS))
    assert finish(p.run()) is td.PipelineState.DONE
    server.join(DEADLINE_S)
    assert not server.is_alive()


def test_socket_lines_are_stamped_with_arrival_time_without_a_timestamp_fn() -> None:
    port, server = serve_once(b"hello\nworld")
    before_us = td.Timestamp.now().micros
    p = td.Pipeline()
    stamped = p | td.ReadFromSocket("127.0.0.1", port) | td.Map(lambda line, t=td.DoFn.TimestampParam: (line, t))

    def arrived_during_the_run(actual: list[Any]) -> None:
        assert sorted(line for line, _ in actual) == ["hello", "world"]
        now_us = td.Timestamp.now().micros
        assert all(before_us <= t.micros <= now_us for _, t in actual), actual

    assert_that(stamped, arrived_during_the_run)
    assert finish(p.run()) is td.PipelineState.DONE
    server.join(DEADLINE_S)


def test_socket_source_that_cannot_connect_fails_the_run() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port now
    p = td.Pipeline()
    p | "Sock" >> td.ReadFromSocket("127.0.0.1", port, connect_timeout=0.3) | td.Map(lambda x: x)
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Sock"):
        finish(p.run())


# -- cancellation ----------------------------------------------------------------------
def forever() -> Iterator[Any]:
    i = 0
    while True:
        yield TV(("k", 1), i / 100)
        i += 1
        if i % 100 == 0:
            time.sleep(0.001)


def test_cancel_stops_a_never_ending_generator_source() -> None:
    before = {t for t in threading.enumerate() if t.name == "tidal-direct"}
    p = td.Pipeline()
    (
        p
        | td.Read(td.GeneratorSource(forever))
        | td.WindowInto(window.FixedWindows(1))
        | td.CombinePerKey(sum)
        | td.Map(lambda kv: kv)
    )
    result = p.run()
    assert result.state is td.PipelineState.RUNNING
    time.sleep(0.05)
    assert result.state is td.PipelineState.RUNNING
    assert result.cancel() is td.PipelineState.CANCELLED
    assert result.state is td.PipelineState.CANCELLED
    assert result.wait_until_finish(DEADLINE_S) is td.PipelineState.CANCELLED
    running = {t for t in threading.enumerate() if t.name == "tidal-direct" and t.is_alive()}
    assert running <= before, "the runner thread is still running after cancel()"


def test_a_finished_generator_run_reports_done() -> None:
    p = td.Pipeline()
    p | td.Read(td.GeneratorSource(lambda: iter([TV(1, 1)]))) | td.Map(lambda x: x)
    result = p.run()
    assert finish(result) is td.PipelineState.DONE
    assert result.state is td.PipelineState.DONE
    assert result.cancel() is td.PipelineState.DONE  # cancelling a finished run changes nothing


def _wait_for(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_reader_holds_at_most_its_queue_size_and_waits_for_the_runner_to_take_some() -> None:
    from tidal.io.unbounded import UnboundedReader

    produced: list[int] = []

    class Endless(UnboundedReader):
        def _produce(self) -> Iterator[Any]:
            i = 0
            while True:
                produced.append(i)
                yield window.TimestampedValue(i, i)
                i += 1

    reader = Endless(0, queue_size=100)
    try:
        _wait_for(lambda: len(produced) == 101)  # 100 queued, the 101st waits to go in
        time.sleep(0.2)
        assert len(produced) == 101
        got = reader.poll(30)
        assert [tv.value for tv in got] == list(range(30))
        assert reader.watermark() == 29_000_000 and reader.offset() == 30
        _wait_for(lambda: len(produced) == 131)
        time.sleep(0.2)
        assert len(produced) == 131
        assert [tv.value for tv in reader.poll(1_000)] == list(range(30, 130))
    finally:
        reader.close()
    reader._thread.join(DEADLINE_S)
    assert not reader._thread.is_alive()  # closed while waiting for room: its thread ends


def test_a_closed_reader_stops_a_slow_producer_at_its_next_element() -> None:
    from tidal.io.unbounded import UnboundedReader

    produced: list[int] = []

    class Slow(UnboundedReader):
        def _produce(self) -> Iterator[Any]:
            i = 0
            while True:
                time.sleep(0.01)
                produced.append(i)
                yield i
                i += 1

    reader = Slow(0)
    _wait_for(lambda: len(produced) >= 3)
    reader.close()
    reader._thread.join(DEADLINE_S)
    assert not reader._thread.is_alive()
    assert len(produced) < 1_000


def test_a_readers_error_comes_after_the_elements_before_it_and_the_end_marks_it_done() -> None:
    from tidal.io.unbounded import UnboundedReader

    class Failing(UnboundedReader):
        def _produce(self) -> Iterator[Any]:
            yield from range(5)
            raise OSError("connection reset")

    class Ending(UnboundedReader):
        def _produce(self) -> Iterator[Any]:
            yield from range(5)

    failing = Failing(0)
    _wait_for(lambda: failing._thread.is_alive() is False)
    assert failing.poll(3) == [0, 1, 2]
    assert failing.poll(100) == [3, 4] and not failing.is_done()
    with pytest.raises(OSError, match="connection reset"):
        failing.poll(100)
    ending = Ending(0)
    _wait_for(lambda: ending._thread.is_alive() is False)
    assert ending.poll(5) == [0, 1, 2, 3, 4] and not ending.is_done()
    assert ending.poll(5) == [] and ending.is_done()
