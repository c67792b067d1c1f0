"""The socket source made robust: decoding errors, very long lines, a line-length limit.

A small TCP server sends scripted byte chunks; the pipelines record what
reached them in a file (DoFns run on copies), so a test can tell what was
delivered before a run failed. Every wait has a timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import pytest

import tidal as td
from tidal.io.unbounded import SocketTextSource
from tidal.testing import assert_that, equal_to

DEADLINE_S = 30.0


def serve(*chunks: bytes, pause: float = 0.0, hold: threading.Event | None = None) -> tuple[int, threading.Thread]:
    """A server on an ephemeral port: accepts one client, sends ``chunks`` (``pause`` s apart), closes.

    With ``hold`` the connection stays open after the chunks until the event is set.
    """
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(DEADLINE_S)
    port = server.getsockname()[1]

    def run() -> None:
        try:
            conn, _ = server.accept()
            with conn:
                for chunk in chunks:
                    conn.sendall(chunk)
                    if pause:
                        time.sleep(pause)
                if hold is not None:
                    hold.wait(DEADLINE_S)
        except OSError:
            pass
        finally:
            server.close()

    thread = threading.Thread(target=run, name="test-socket-server", daemon=True)
    thread.start()
    return port, thread


class Record(td.DoFn):
    """Appends each line's repr to a file, so a test sees what was delivered before a failure."""

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, element: Any) -> Iterable[Any]:
        with open(self.path, "a") as f:
            f.write(f"{element!r}\n")
        yield element


def recorded(path: Path) -> list[str]:
    return [eval(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(source: SocketTextSource, expected: list[str], label: str = "Sock") -> td.PipelineResult:
    """Run the source to its end on the direct runner, checking the lines that reach the pipeline."""
    p = td.Pipeline()
    assert_that(p | label >> td.Read(source), equal_to(expected))
    result = p.run()
    if result.wait_until_finish(DEADLINE_S) is td.PipelineState.RUNNING:
        result.cancel()
        pytest.fail("the run did not finish")
    assert result.state is td.PipelineState.DONE
    return result


def read_all(source: SocketTextSource) -> tuple[list[str], Any]:
    """Poll a reader of ``source`` directly until the stream ends: its lines, in order, and the reader."""
    reader: Any = source.open_reader()
    out: list[str] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not reader.is_done():
            assert time.monotonic() < deadline, "the stream did not end"
            got = reader.poll(1000)
            out.extend(tv.value for tv in got)
            if not got:
                time.sleep(0.002)
    finally:
        reader.close()
    return out, reader


# -- decoding errors ---------------------------------------------------------------------
#: "a" and "b" (4 bytes with their line ends), then a line whose first byte is not UTF-8, then "d".
BAD = b"a\nb\n\xffc\nd\n"


def test_strict_names_the_byte_offset_and_delivers_the_lines_before_it(tmp_path: Path) -> None:
    port, server = serve(BAD)
    path = tmp_path / "seen.txt"
    p = td.Pipeline()
    p | "Sock" >> td.ReadFromSocket("127.0.0.1", port) | td.ParDo(Record(str(path)))
    result = p.run()
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Sock") as failed:
        result.wait_until_finish(DEADLINE_S)
    message = str(failed.value)
    assert f"127.0.0.1:{port} at byte offset 4 are not valid utf-8" in message
    assert "invalid start byte" in message and "b'\\xff'" in message
    assert "errors='replace'" in message and "errors='skip'" in message
    assert result.state is td.PipelineState.FAILED
    assert recorded(path) == ["a", "b"]
    server.join(DEADLINE_S)


def test_the_offset_counts_bytes_across_reads_and_inside_the_line(tmp_path: Path) -> None:
    # Three reads: "first\n" is bytes 0-5, "secé\n" 6-11, and the bad byte is the third of "ok\xfe\n".
    port, server = serve(b"first\n", b"sec\xc3\xa9\n", b"ok\xfe\n", pause=0.05)
    source = SocketTextSource("127.0.0.1", port)
    reader: Any = source.open_reader()
    got: list[str] = []
    with pytest.raises(ValueError, match=r"at byte offset 14 are not valid utf-8") as failed:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            got.extend(tv.value for tv in reader.poll(100))
            time.sleep(0.002)
    reader.close()
    assert got == ["first", "secé"]
    assert isinstance(failed.value.__cause__, UnicodeDecodeError)


def test_replace_substitutes_the_replacement_character() -> None:
    port, _ = serve(BAD)
    run(SocketTextSource("127.0.0.1", port, errors="replace"), ["a", "b", "\ufffdc", "d"])


def test_skip_drops_the_line_and_counts_it() -> None:
    port, _ = serve(BAD, b"\xc3(\n", b"e\n")
    result = run(SocketTextSource("127.0.0.1", port, errors="skip"), ["a", "b", "d", "e"])
    query = td.MetricsFilter().with_name("undecodable_lines_skipped").with_step("Sock")
    assert [c.committed for c in result.metrics().query(query)["counters"]] == [2]


def test_a_character_split_between_two_reads_is_decoded_whole() -> None:
    port, _ = serve(b"caf\xc3", b"\xa9\r\nthe end", pause=0.05)
    lines, _ = read_all(SocketTextSource("127.0.0.1", port))
    assert lines == ["café", "the end"]


# -- long lines --------------------------------------------------------------------------
def test_a_line_of_megabytes_arriving_in_many_reads_is_searched_once() -> None:
    """Each received byte is searched for a line end once: linear in the line's length.

    (Re-splitting the whole buffer on every read, the old way, searches a 6 MB
    line some 150 times over; the timing is in benchmarks/socket_lines.py.)
    """
    big = bytes(range(97, 123)) * (6_000_000 // 26)  # 6 MB of a..z, sent in 64 KB pieces
    pieces = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    port, _ = serve(b"x\n", *pieces, b"\ny\n", pause=0.0)
    lines, reader = read_all(SocketTextSource("127.0.0.1", port))
    assert len(lines) == 3 and lines[0] == "x" and lines[2] == "y"
    assert lines[1] == big.decode()
    assert reader.searched_bytes == 2 + len(big) + 3


def test_max_line_bytes_fails_a_long_line_that_is_still_arriving(tmp_path: Path) -> None:
    hold = threading.Event()
    port, _ = serve(b"short\n", b"z" * 50_000, hold=hold)  # no line end: the line never finishes
    path = tmp_path / "seen.txt"
    p = td.Pipeline()
    p | "Sock" >> td.ReadFromSocket("127.0.0.1", port, max_line_bytes=1000) | td.ParDo(Record(str(path)))
    result = p.run()
    try:  # the server keeps the line open: only the limit can end this run
        with pytest.raises(td.PipelineExecutionError, match=r"^step 'Sock") as failed:
            result.wait_until_finish(10)
    finally:
        hold.set()
        result.cancel()
    message = str(failed.value)
    assert f"a line from 127.0.0.1:{port} starting at byte offset 6 is longer than max_line_bytes=1000" in message
    assert recorded(path) == ["short"]


def test_max_line_bytes_fails_a_complete_line_over_the_limit() -> None:
    port, _ = serve(b"ok\n" + b"y" * 101 + b"\nnever\n")
    with pytest.raises(ValueError, match=r"starting at byte offset 3 is longer than max_line_bytes=100 \(101 bytes"):
        read_all(SocketTextSource("127.0.0.1", port, max_line_bytes=100))


def test_a_line_of_exactly_max_line_bytes_is_read() -> None:
    port, _ = serve(b"y" * 100 + b"\r\n" + b"z" * 100)
    assert read_all(SocketTextSource("127.0.0.1", port, max_line_bytes=101))[0] == ["y" * 100, "z" * 100]


# -- bad arguments -----------------------------------------------------------------------
def test_bad_arguments_are_refused_when_the_source_is_made() -> None:
    with pytest.raises(ValueError, match="errors must be one of 'strict', 'replace', 'skip', got 'ignore'"):
        SocketTextSource("127.0.0.1", 1, errors="ignore")
    with pytest.raises(ValueError, match="max_line_bytes must be a positive int"):
        td.ReadFromSocket("127.0.0.1", 1, max_line_bytes=0)
    with pytest.raises(LookupError, match="no-such-codec"):
        SocketTextSource("127.0.0.1", 1, encoding="no-such-codec")
