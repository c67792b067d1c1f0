"""The other engines on a paced stream: their latency against throughput, measured as tidal's runners are.

The latency sweep (:mod:`tidal.benchmarks.latency`) streams the Yahoo query
from a paced source and counts each window's latency from when its last event
was *due*. An engine of its own reads the same events, in the same order, at
the same offered rate, from a loopback TCP socket (the source both Flink and
Spark ship: Flink's ``SocketTextStreamFunction``, Spark's ``socket`` source):
:class:`PacedLines` serves one line per event at its due time and records
when each was due, so an engine that does not read fast enough holds the
sender back and pays for the wait, as tidal's paced source makes a runner pay.
Each engine's job (``STREAMS`` in its module) gives back its result rows with
the wall time each reached this process; :func:`stream_point` reduces them to
the sweep's point (sustained throughput, p50/p99 latency, same result).

A line is the event's fields, comma-separated, the event time in whole
milliseconds (the generator's times are whole milliseconds):

>>> from tidal.benchmarks.workloads import yahoo_workload
>>> events = yahoo_workload(events_per_second=1000.0).make_input(2, 0.0)
>>> line = event_line(events[0].value)
>>> fields = line.split(",")
>>> len(fields), fields[4] in ("view", "click", "purchase"), int(fields[5]) * 1000 == events[0].timestamp_us
(7, True, True)
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Sequence

import attrs

from tidal.benchmarks.collect import Collected

__all__ = ["PacedLines", "LineCollector", "lines_due", "event_line", "stream_point", "LINE_FIELDS"]

#: The fields of a line, in order (``ts_ms`` is the event time in milliseconds).
LINE_FIELDS = ("user_id", "page_id", "ad_id", "ad_type", "event_type", "ts_ms", "ip_address")


def event_line(event: Any) -> str:
    """One Yahoo event as a line of :data:`LINE_FIELDS`."""
    ts_ms = round(event.event_time * 1000)
    return f"{event.user_id},{event.page_id},{event.ad_id},{event.ad_type},{event.event_type},{ts_ms},{event.ip_address}"


def lines_due(i: int, elapsed: float, interval: float, n: int) -> int:
    """Where the lines to send now end: every one due ``elapsed`` seconds in (one per ``interval``), and line ``i`` at least.

    Once the sender slept until line ``i`` was due, the count can still round
    to below it (``0.3 / 0.1`` is 2.9999999999999996): it must then send line
    ``i`` rather than an empty write, which would reach the engine as an
    empty line.

    >>> lines_due(0, 0.0, 0.1, 10), lines_due(2, 0.55, 0.1, 10), lines_due(3, 0.29999999999999993, 0.1, 10), lines_due(8, 5.0, 0.1, 10)
    (1, 6, 4, 10)
    """
    return max(i + 1, min(n, int(elapsed / interval) + 1))


class PacedLines:
    """A loopback TCP server that sends ``lines`` at ``rate`` per second to the first client that connects.

    Line ``i`` is due ``i / rate`` seconds after the client connected; every
    line due by now goes out in one write, then the server sleeps until the
    next is due. ``due`` holds the wall time (``time.time()``) each line was
    due. The connection is closed after the last line (the engine's source
    sees the end of its input). ``error`` holds what stopped the sender early.
    With ``wait``, the server sends its ``preamble`` (lines the job ignores)
    and holds the rest until :meth:`go`: an engine whose first micro-batch
    sets up the query starts the clock only once it is running, as tidal's
    runners and Flink start it once their source runs.

    >>> server = PacedLines(["a", "b", "c"], rate=1000.0)
    >>> with socket.create_connection(("127.0.0.1", server.port)) as client:
    ...     data = b"".join(iter(lambda: client.recv(1024), b""))
    >>> server.join(5.0)
    >>> data.decode().splitlines(), len(server.due), server.error
    (['a', 'b', 'c'], 3, None)
    """

    def __init__(
        self, lines: Sequence[str], rate: float, accept_timeout: float = 120.0, preamble: Sequence[str] = (), wait: bool = False
    ) -> None:
        if rate <= 0:
            raise ValueError(f"the offered rate must be positive, not {rate}")
        self.lines = lines
        self.rate = rate
        self.preamble = preamble
        self.accept_timeout = accept_timeout
        self._go = threading.Event()
        if not wait:
            self._go.set()
        self.due: list[float] = []
        self.error: str | None = None
        self.finished_at: float | None = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(accept_timeout)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="paced-lines", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:
            self.error = f"no engine connected to 127.0.0.1:{self.port}: {exc}"
            self._listener.close()
            return
        self._listener.close()
        lines, n, interval = self.lines, len(self.lines), 1.0 / self.rate
        try:
            with conn:
                if self.preamble:
                    conn.sendall(("\n".join(self.preamble) + "\n").encode())
                if not self._go.wait(self.accept_timeout):
                    self.error = f"the engine did not start reading within {self.accept_timeout:g} s"
                    return
                start = time.perf_counter()
                wall0 = time.time() - start
                i = 0
                while i < n:
                    now = time.perf_counter()
                    due_i = start + i * interval
                    if due_i > now:
                        time.sleep(due_i - now)
                        now = time.perf_counter()
                    j = lines_due(i, now - start, interval, n)
                    self.due.extend(wall0 + start + k * interval for k in range(i, j))
                    conn.sendall(("\n".join(lines[i:j]) + "\n").encode())
                    i = j
                conn.shutdown(socket.SHUT_WR)
                self.finished_at = time.time()
                # Wait for the reader to close its side, so its source reads every line before the end.
                conn.settimeout(600.0)
                while conn.recv(4096):
                    pass
        except OSError as exc:
            if len(self.due) < n:
                self.error = f"the engine stopped reading after {len(self.due)} of {n} lines: {exc}"

    def go(self) -> None:
        """Start pacing the lines (a server made with ``wait=True`` sends only its preamble until then)."""
        self._go.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass


def stream_point(
    workload_name: str,
    events_per_second: float,
    events: int,
    out_of_orderness: float,
    rate: float,
    job: Callable[[PacedLines, dict[str, Any]], list[tuple[Any, float]]],
    wait: bool = False,
) -> dict[str, Any]:
    """Stream ``events`` of the sweep's workload at ``rate`` into ``job``; the sweep's measures of what it returned.

    ``job(server, info)`` connects the engine's source to ``server.port``
    and returns ``(result row as tidal's tuple, wall time it reached this
    process)`` pairs, once per row (an engine that updates a window's row
    returns its last update). ``info`` holds ``out_of_orderness`` (event-time
    seconds), ``ads`` (the (ad, campaign) table) and ``views`` (how many view
    events the lines hold). With ``wait``, the server first sends one line of
    an event type the query drops, and paces the rest once the job calls
    ``server.go()``.
    """
    from tidal.benchmarks import yahoo

    from tidal.benchmarks.latency import SWEEP_WORKLOADS, measure_point

    workload = SWEEP_WORKLOADS[workload_name](events_per_second)
    elements = workload.make_input(events, out_of_orderness)
    lines = [event_line(tv.value) for tv in elements]
    # The preamble: the first event again, of an event type the query drops.
    preamble = [event_line(attrs.evolve(elements[0].value, event_type="warmup"))] if wait else []
    info = {
        "out_of_orderness": out_of_orderness,
        "ads": yahoo.ad_table(yahoo.YahooConfig(events_per_second=events_per_second)),
        "views": sum(1 for tv in elements if tv.value.event_type == "view"),
    }
    server = PacedLines(lines, rate, preamble=preamble, wait=wait)
    try:
        rows = job(server, info)
        server.join(5.0)
    finally:
        server.close()
    if server.error:
        raise RuntimeError(server.error)
    if len(server.due) != len(elements):
        raise RuntimeError(f"the engine read {len(server.due)} of {len(elements)} lines")
    arrivals = [(tv.timestamp_us, due) for tv, due in zip(elements, server.due)]
    outputs = [Collected(value, 0, emitted_at) for value, emitted_at in rows]
    return measure_point(workload, outputs, arrivals, elements)


class LineCollector:
    """A loopback TCP server that reads the lines an engine's socket sink writes and notes when each arrived.

    Used as a context manager: it listens on ``port`` from the start; every
    connection is read on a thread of its own until the engine closes it.
    :meth:`lines` waits for every connection to close and returns
    ``(line, wall time it arrived)`` pairs, in arrival order per connection.

    >>> with LineCollector() as collector:
    ...     with socket.create_connection(("127.0.0.1", collector.port)) as sink:
    ...         sink.sendall(b"1,2,3\\n4,5,6\\n")
    ...     got = collector.lines()
    >>> [line for line, _ in got]
    ['1,2,3', '4,5,6']
    """

    def __init__(self, timeout: float = 600.0) -> None:
        self.timeout = timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._received: list[list[tuple[str, float]]] = []
        self._readers: list[threading.Thread] = []
        self._closing = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="line-collector", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            got: list[tuple[str, float]] = []
            self._received.append(got)
            reader = threading.Thread(target=self._read, args=(conn, got), daemon=True)
            self._readers.append(reader)
            reader.start()

    def _read(self, conn: socket.socket, got: list[tuple[str, float]]) -> None:
        pending = b""
        conn.settimeout(self.timeout)
        with conn:
            while True:
                try:
                    chunk = conn.recv(1 << 16)
                except OSError:
                    break
                if not chunk:
                    break
                now = time.time()
                pending += chunk
                *complete, pending = pending.split(b"\n")
                got.extend((line.decode(), now) for line in complete if line)

    def lines(self) -> list[tuple[str, float]]:
        """Every line received, once every connection so far has closed."""
        self._closing.set()
        self._acceptor.join(self.timeout)
        for reader in list(self._readers):
            reader.join(self.timeout)
        return [pair for got in self._received for pair in got]

    def __enter__(self) -> "LineCollector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closing.set()
        try:
            self._listener.close()
        except OSError:
            pass
