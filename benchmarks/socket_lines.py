"""How fast the socket source reads very long lines (the line handling is linear in line length).

A local server sends one line of N megabytes (then a short line) in 64 KB
writes; the benchmark times ``SocketTextSource``'s reader from connect to the
end of the stream, and, for comparison, the way lines used to be cut (the
whole buffer re-split after every 64 KB read) on the same bytes in memory,
which grows with the square of the line's length.

    python -m tidal.benchmarks.socket_lines                 # 10, 40 and 100 MB lines
    python -m tidal.benchmarks.socket_lines --sizes 40 --old-sizes 5,10,20
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from typing import Any

from tidal.io.unbounded import SocketTextSource

CHUNK = 65536


def _serve(payload: bytes) -> int:
    server = socket.create_server(("127.0.0.1", 0))
    port = int(server.getsockname()[1])

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            view = memoryview(payload)
            for i in range(0, len(payload), CHUNK):
                conn.sendall(view[i : i + CHUNK])
        server.close()

    threading.Thread(target=run, daemon=True).start()
    return port


def time_reader(megabytes: float) -> float:
    """Seconds for the reader to deliver a line of ``megabytes`` MB and the line after it."""
    line = b"x" * int(megabytes * 1_000_000)
    port = _serve(line + b"\nend\n")
    started = time.perf_counter()
    reader: Any = SocketTextSource("127.0.0.1", port).open_reader()
    got: list[Any] = []
    try:
        while not reader.is_done():
            got.extend(reader.poll(10))
            if not got:
                time.sleep(0.001)
    finally:
        reader.close()
    elapsed = time.perf_counter() - started
    assert [len(tv.value) for tv in got] == [len(line), 3], "the reader did not deliver the line whole"
    return elapsed


def time_old_split(megabytes: float) -> float:
    """Seconds the former line cutting takes on the same bytes: ``buffer += chunk`` then a full re-split."""
    payload = b"x" * int(megabytes * 1_000_000) + b"\nend\n"
    started = time.perf_counter()
    buffer = b""
    lines = 0
    for i in range(0, len(payload), CHUNK):
        buffer += payload[i : i + CHUNK]
        *complete, buffer = buffer.split(b"\n")
        lines += len(complete)
    assert lines == 2
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Socket source: time to read one very long line.")
    parser.add_argument("--sizes", default="10,40,100", help="line sizes in MB for the reader (default 10,40,100)")
    parser.add_argument("--old-sizes", default="5,10,20", help="line sizes in MB for the former line cutting")
    args = parser.parse_args(argv)
    print("| line | SocketTextSource reader | MB/s |")
    print("|---:|---:|---:|")
    for size in (float(s) for s in args.sizes.split(",") if s):
        seconds = time_reader(size)
        print(f"| {size:g} MB | {seconds:.3f} s | {size / seconds:,.0f} |")
    print()
    print("| line | former line cutting (in memory, no socket) |")
    print("|---:|---:|")
    for size in (float(s) for s in args.old_sizes.split(",") if s):
        print(f"| {size:g} MB | {time_old_split(size):.3f} s |")


if __name__ == "__main__":
    main()
