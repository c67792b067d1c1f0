"""Unbounded sources: the reader contract, a Python generator, and lines from a TCP socket.

Both sources here read on a background thread into a bounded queue, so a
slow or idle source never blocks the runner, and both report a watermark.

>>> import tidal as td
>>> from tidal import window
>>> def ticks():
...     for t in range(5):
...         yield window.TimestampedValue(("tick", 1), t)
>>> with td.Pipeline() as p:
...     counts = (p | td.Read(GeneratorSource(ticks, max_out_of_orderness=1))
...                 | td.WindowInto(window.FixedWindows(2)) | td.CombinePerKey(sum))
...     td.testing.assert_that(counts, td.testing.equal_to([("tick", 2), ("tick", 2), ("tick", 1)]))

The unbounded reader contract
-----------------------------
An :class:`~tidal.UnboundedSource` is a picklable description (where to
read, how to stamp); ``open_reader(start_offset)`` makes a reader on the
worker that runs the source. Every runner drives a reader the same way
(``runners/core/streaming.py``), so a new system — Kafka, say — is one
source class and one reader class:

``open_reader(start_offset=None)``
    ``None`` reads from the source's configured start; otherwise
    ``start_offset`` is a value this source's reader returned from
    :meth:`~UnboundedReader.offset`, and the reader must hand out exactly
    the records after that position again, in the same order per partition
    (a Kafka partition, a Redis stream). Open connections here and fail with
    an error that names the endpoint within a bounded time: runners report
    it with the step's name.

``poll(max_elements) -> list``
    What has arrived, at most ``max_elements``, without blocking for long:
    plain values (stamped at ``MIN_TIMESTAMP``) or
    :class:`~tidal.TimestampedValue`. An error of the source is raised by
    ``poll`` *after* the records read before it have been handed out.

``offset()``
    The position after the last record ``poll`` handed out: picklable and
    JSON-serialisable (the micro-batch commit log is JSON), e.g. an int, or
    a dict of per-partition positions. Runners checkpoint it with the
    state it produced (Ray: at the aligned barrier; micro-batch: written
    ahead per batch and committed with the batch) and pass it back to
    ``open_reader`` after a restore, so replay resumes there. It must hold
    everything the watermark depends on (see below).

``watermark()``
    Microseconds: a promise that no record older than it follows. It must
    be a function of the records handed out since ``start_offset`` and of
    ``start_offset`` itself, not of wall-clock time, so a replay reaches
    the same watermark at the same offset (the micro-batch runner checks
    that a replayed batch ends where it ended before). The usual choice is
    bounded out-of-orderness: the largest event time seen minus a bound
    (per partition, then the minimum over partitions). At the end of a
    finite stream it is ``MAX_TIMESTAMP``.

``is_done()`` / ``close()``
    Whether the stream has ended (a closed socket, ``max_num_records``
    reached): where the end is a position, say so as soon as the last record
    is handed out, so that a replay ends at the same offset. ``close`` stops
    the reader's thread and releases connections.

``limit_to(offset)`` (optional)
    Hand out no record past ``offset`` until called again with ``None``. A
    reader whose offsets are not plain counts implements it, so that the
    micro-batch runner can replay a batch over exactly its recorded range
    when more records have arrived since.

A reader that must not lose records across a restore needs a source that
can replay from an offset (a broker with retention, files); a socket
cannot, and says so below. Acknowledging records to the system once a
checkpoint is complete (Kafka's committed offsets) is optional: the
offsets in tidal's checkpoints are what a restore uses.
"""

from __future__ import annotations

import abc
import codecs
import collections
import itertools
import socket
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from tidal.model.metrics import Metrics
from tidal.model.primitives import Read, UnboundedSource
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, DurationLike, duration_to_micros
from tidal.model.window import TimestampedValue

__all__ = ["GeneratorSource", "SocketTextSource", "ReadFromSocket", "UnboundedReader"]

_END = object()

#: How undecodable bytes from a socket are handled (see :class:`SocketTextSource`).
DECODE_ERRORS = ("strict", "replace", "skip")

_SKIPPED_LINES = Metrics.counter("tidal.io", "undecodable_lines_skipped")


class UnboundedReader(abc.ABC):
    """A reader (see the contract in the module docs) that reads on a thread; ``poll`` takes what arrived.

    Subclasses implement :meth:`_produce`, an iterator of elements (plain or
    TimestampedValue) that runs on the reader thread and may block. The
    watermark is the largest event timestamp seen minus
    ``out_of_orderness_us`` (a bounded out-of-orderness watermark, as in
    Flink); the offset counts elements handed out, for replay: a reader
    opened at offset ``n`` skips the first ``n`` elements of ``_produce``.
    """

    def __init__(self, out_of_orderness_us: int, start_offset: Any = None, queue_size: int = 50_000) -> None:
        self.out_of_orderness_us = out_of_orderness_us
        # The hand-over between the reader thread and the runner: a deque, whose append and
        # popleft are atomic, so an element costs no lock (a queue.Queue's put and get took
        # a lock each, and the two threads fought over it for every element). The reader
        # waits on ``_space`` only while ``queue_size`` elements wait.
        self._items: collections.deque[Any] = collections.deque()
        self._capacity = queue_size
        self._space = threading.Event()
        self._space.set()
        self._closed = False  # what ``_stop`` says, read per element without a method call
        self._stop = threading.Event()
        self._done = False
        self._error: BaseException | None = None
        # The error reached the front of the queue while records were being handed out: raised next poll.
        self._error_due = False
        self._max_ts = MIN_TIMESTAMP_US
        self._offset: Any = start_offset or 0
        self._thread = threading.Thread(target=self._run, name=f"tidal-{type(self).__name__}", daemon=True)
        self._thread.start()

    @abc.abstractmethod
    def _produce(self) -> Iterator[Any]:
        """The elements of the source, in arrival order (runs on the reader thread)."""

    def _run(self) -> None:
        try:
            for element in self._produce():
                if not self._put(element):
                    return
        except BaseException as exc:  # handed to the runner by poll, after what came before it
            self._error = exc
        finally:
            self._put(_END)

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting while the queue is full; False once the reader is closed."""
        items = self._items
        while len(items) >= self._capacity:
            if self._closed:
                return False
            self._space.clear()
            if len(items) < self._capacity:  # the runner took some before the clear
                break
            self._space.wait(0.05)
        if self._closed:
            return False
        items.append(item)
        return True

    def _take(self, max_items: int) -> list[Any]:
        """Up to ``max_items`` queued items; notes the end of the stream, and when its error is due."""
        if self._error_due:
            assert self._error is not None
            raise self._error
        items = self._items
        n = min(max_items, len(items))
        if not n:
            return []
        popleft = items.popleft
        out = [popleft() for _ in range(n)]
        self._space.set()
        if out[-1] is _END:  # the last item the reader puts: only ever the last one taken
            out.pop()
            if self._error is None:
                self._done = True
            elif out:
                self._error_due = True  # hand out what came before the error first
            else:
                raise self._error
        return out

    def poll(self, max_elements: int) -> list[Any]:
        out = self._take(max_elements)
        max_ts = self._max_ts
        for item in out:
            if type(item) is TimestampedValue and item.timestamp_us > max_ts:
                max_ts = item.timestamp_us
        self._max_ts = max_ts
        self._offset += len(out)
        return out

    def watermark(self) -> int:
        if self._done:
            return MAX_TIMESTAMP_US
        if self._max_ts == MIN_TIMESTAMP_US:
            return MIN_TIMESTAMP_US
        return self._max_ts - self.out_of_orderness_us

    def offset(self) -> Any:
        return self._offset

    def is_done(self) -> bool:
        return self._done

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._space.set()


class _GeneratorReader(UnboundedReader):
    def __init__(self, factory: Callable[[], Iterable[Any]], out_of_orderness_us: int, start_offset: int | None) -> None:
        self._factory = factory
        self._skip = start_offset or 0
        super().__init__(out_of_orderness_us, start_offset)

    def _produce(self) -> Iterator[Any]:
        return itertools.islice(iter(self._factory()), self._skip, None)


class GeneratorSource(UnboundedSource):
    """Elements from ``factory()`` — a generator function or any callable returning an iterable.

    Yield TimestampedValue for event time; the watermark trails the largest
    timestamp seen by ``max_out_of_orderness`` seconds. When the iterator ends
    the stream ends (the watermark jumps to the end of time). A restored
    reader calls ``factory()`` again and skips the elements already read, so
    the factory must give the same elements each time.
    """

    def __init__(self, factory: Callable[[], Iterable[Any]], max_out_of_orderness: DurationLike = 0) -> None:
        if not callable(factory):
            raise TypeError(
                f"GeneratorSource needs a callable that returns an iterator (a generator function), got {factory!r}"
            )
        self.factory = factory
        self.out_of_orderness_us = duration_to_micros(max_out_of_orderness, "max_out_of_orderness")
        if self.out_of_orderness_us < 0:
            raise ValueError("max_out_of_orderness must not be negative")

    def open_reader(self, start_offset: Any = None) -> UnboundedReader:
        return _GeneratorReader(self.factory, self.out_of_orderness_us, start_offset)

    def display_name(self) -> str:
        return f"GeneratorSource({getattr(self.factory, '__name__', 'fn')})"


class _SocketReader(UnboundedReader):
    def __init__(self, source: "SocketTextSource", start_offset: int | None) -> None:
        self._source = source
        self._skip = start_offset or 0
        self._skipped = 0  # undecodable lines dropped (errors="skip"), counted as a metric by poll
        self._reported = 0
        #: Bytes searched for a line end so far: each received byte once.
        self.searched_bytes = 0
        super().__init__(source.out_of_orderness_us, start_offset)

    def _connect(self) -> socket.socket:
        src = self._source
        deadline = time.monotonic() + src.connect_timeout
        while True:
            try:
                return socket.create_connection((src.host, src.port), timeout=src.connect_timeout)
            except OSError as exc:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise ConnectionError(
                        f"cannot connect to {src.host}:{src.port} within {src.connect_timeout:g} s: {exc}"
                    ) from exc
                time.sleep(0.05)

    def _produce(self) -> Iterator[Any]:
        return itertools.islice(self._lines(), self._skip, None)

    def _lines(self) -> Iterator[Any]:
        # The hot loop of a socket source, written for speed: each received byte is searched
        # for a line end once (only the bytes that arrived since the last search), and the
        # complete lines are cut once, with one C-level split per read, so a line costs time
        # linear in its length however many reads it spans.
        src = self._source
        limit = src.max_line_bytes
        sock = self._connect()
        sock.settimeout(0.2)
        buffer = bytearray()
        consumed = 0  # the stream offset of buffer[0]
        searched = 0  # buffer[:searched] holds no line end
        try:
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(1 << 20)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buffer += chunk
                self.searched_bytes += len(buffer) - searched
                last = buffer.rfind(b"\n", searched)
                if last < 0:
                    searched = len(buffer)
                    if limit is not None and len(buffer) > limit:
                        raise self._too_long(consumed, len(buffer))
                    continue
                now = (time.time_ns() // 1000) / 1e6
                lines = buffer[:last].split(b"\n")
                yield from self._decode(lines, consumed, now)
                consumed += last + 1
                del buffer[: last + 1]
                searched = len(buffer)
                if limit is not None and len(buffer) > limit:
                    raise self._too_long(consumed, len(buffer))
            if buffer:  # the last line, without a final newline
                yield from self._decode([buffer], consumed, (time.time_ns() // 1000) / 1e6)
        finally:
            sock.close()

    def _too_long(self, start: int, length: int) -> ValueError:
        src = self._source
        return ValueError(
            f"a line from {src.host}:{src.port} starting at byte offset {start} is longer than "
            f"max_line_bytes={src.max_line_bytes} ({length} bytes without a line end so far); "
            "raise max_line_bytes or split the input into shorter lines"
        )

    def _decode(self, lines: list[bytearray], start: int, arrival: float) -> Iterator[TimestampedValue]:
        """The lines (without their "\\n"), the first at stream offset ``start``, decoded and stamped."""
        src = self._source
        encoding, limit, stamp = src.encoding, src.max_line_bytes, src.timestamp_fn
        offset = start
        for raw in lines:
            size = len(raw)
            if limit is not None and size > limit:
                raise self._too_long(offset, size)
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                if src.errors == "replace":
                    line = raw.decode(encoding, "replace")
                elif src.errors == "skip":
                    self._skipped += 1
                    offset += size + 1
                    continue
                else:
                    raise ValueError(
                        f"the bytes from {src.host}:{src.port} at byte offset {offset + exc.start} are not valid "
                        f"{encoding} ({exc.reason}: {bytes(raw[exc.start:exc.end])!r}); the lines before it were "
                        "delivered. Pass errors='replace' to substitute U+FFFD or errors='skip' to drop such lines"
                    ) from exc
            offset += size + 1
            yield TimestampedValue(line, arrival if stamp is None else stamp(line))

    def poll(self, max_elements: int) -> list[Any]:
        out = super().poll(max_elements)
        skipped = self._skipped
        if skipped != self._reported:  # poll runs under the source step's metrics
            _SKIPPED_LINES.inc(skipped - self._reported)
            self._reported = skipped
        return out


class SocketTextSource(UnboundedSource):
    """Lines of text from a TCP server (like Flink's socketTextStream).

    Each line is stamped with its arrival time, or with ``timestamp_fn(line)``
    (seconds) when given. A line ends at ``\\n`` (a ``\\r`` before it is
    dropped); the stream ends when the server closes the connection, and a
    last line without a line end is still read.

    ``errors`` says what happens to a line that is not valid ``encoding``:
    ``"strict"`` (the default) fails the run with an error naming the byte
    offset in the stream (the lines before it are delivered first);
    ``"replace"`` substitutes U+FFFD for the bad bytes; ``"skip"`` drops the
    line and counts it in the metric ``tidal.io/undecodable_lines_skipped``.
    ``max_line_bytes`` (default: no limit) fails the run with a clear error
    when a line grows longer, instead of buffering it without bound. Line
    handling is linear in the line's length, so a line of tens of megabytes
    is read as fast as many short ones.

    A socket cannot replay: a restored job reconnects and skips as many
    lines as it had read, which is only right for a server that sends the
    same lines again.

    >>> import socket, threading, tidal as td
    >>> server = socket.create_server(("127.0.0.1", 0))
    >>> def serve():
    ...     conn, _ = server.accept()
    ...     conn.sendall(b"ok\\n\\xff bad\\nfine\\n"); conn.close(); server.close()
    >>> threading.Thread(target=serve, daemon=True).start()
    >>> source = SocketTextSource("127.0.0.1", server.getsockname()[1], errors="skip")
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Read(source), td.testing.equal_to(["ok", "fine"]))
    """

    def __init__(
        self,
        host: str,
        port: int,
        encoding: str = "utf-8",
        timestamp_fn: Callable[[str], float] | None = None,
        max_out_of_orderness: DurationLike = 0,
        connect_timeout: float = 10.0,
        errors: str = "strict",
        max_line_bytes: int | None = None,
    ) -> None:
        if errors not in DECODE_ERRORS:
            raise ValueError(f"errors must be one of {', '.join(map(repr, DECODE_ERRORS))}, got {errors!r}")
        if max_line_bytes is not None and (isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int) or max_line_bytes < 1):
            raise ValueError(f"max_line_bytes must be a positive int (bytes) or None, got {max_line_bytes!r}")
        codecs.lookup(encoding)  # an unknown encoding fails here, not on the reader thread
        self.host = host
        self.port = int(port)
        self.encoding = encoding
        self.timestamp_fn = timestamp_fn
        self.out_of_orderness_us = duration_to_micros(max_out_of_orderness, "max_out_of_orderness")
        self.connect_timeout = connect_timeout
        self.errors = errors
        self.max_line_bytes = max_line_bytes

    def open_reader(self, start_offset: Any = None) -> UnboundedReader:
        return _SocketReader(self, start_offset)

    def display_name(self) -> str:
        return f"Socket({self.host}:{self.port})"


class ReadFromSocket(PTransform):
    """``p | ReadFromSocket(host, port)``: an unbounded PCollection of text lines.

    The keyword arguments are :class:`SocketTextSource`'s (``timestamp_fn``,
    ``errors``, ``max_line_bytes``, ...).
    """

    def __init__(self, host: str, port: int, **kwargs: Any) -> None:
        super().__init__()
        self.source = SocketTextSource(host, port, **kwargs)

    def default_label(self) -> str:
        return f"ReadFromSocket({self.source.host}:{self.source.port})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | Read(self.source)
