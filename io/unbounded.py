"""Unbounded sources: a Python generator/iterator, and lines from a TCP socket.

Both read on a background thread into a bounded queue, so a slow or idle
source never blocks the runner, and both report a watermark.

>>> import tidal as td
>>> from tidal import window
>>> def ticks():
...     for t in range(5):
...         yield window.TimestampedValue(("tick", 1), t)
>>> with td.Pipeline() as p:
...     counts = (p | td.Read(GeneratorSource(ticks, max_out_of_orderness=1))
...                 | td.WindowInto(window.FixedWindows(2)) | td.CombinePerKey(sum))
...     td.testing.assert_that(counts, td.testing.equal_to([("tick", 2), ("tick", 2), ("tick", 1)]))
"""

from __future__ import annotations

import abc
import queue
import socket
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from tidal.model.primitives import Read, UnboundedSource
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import PBegin, PCollection
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, DurationLike, duration_to_micros
from tidal.model.window import TimestampedValue

__all__ = ["GeneratorSource", "SocketTextSource", "ReadFromSocket", "UnboundedReader"]

_END = object()


class UnboundedReader(abc.ABC):
    """Reads a source on a thread; ``poll`` takes what has arrived.

    Subclasses implement :meth:`_produce`, an iterator of elements (plain or
    TimestampedValue). The watermark is the largest event timestamp seen
    minus ``out_of_orderness_us`` (a bounded out-of-orderness watermark, as
    in Flink); the offset counts elements handed out, for replay.
    """

    def __init__(self, out_of_orderness_us: int, start_offset: int | None, queue_size: int = 50_000) -> None:
        self.out_of_orderness_us = out_of_orderness_us
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._done = False
        self._error: BaseException | None = None
        self._max_ts = MIN_TIMESTAMP_US
        self._offset = start_offset or 0
        self._skip = start_offset or 0
        self._thread = threading.Thread(target=self._run, name=f"tidal-{type(self).__name__}", daemon=True)
        self._thread.start()

    @abc.abstractmethod
    def _produce(self) -> Iterator[Any]:
        """The elements of the source, in arrival order (runs on the reader thread)."""

    def _run(self) -> None:
        try:
            for i, element in enumerate(self._produce()):
                if i < self._skip:
                    continue
                while not self._stop.is_set():
                    try:
                        self._queue.put(element, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # handed to the runner on the next poll
            self._error = exc
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(_END, timeout=0.05)
                return
            except queue.Full:
                continue

    def poll(self, max_elements: int) -> list[Any]:
        out: list[Any] = []
        for _ in range(max_elements):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                self._done = True
                break
            out.append(item)
            if type(item) is TimestampedValue and item.timestamp_us > self._max_ts:
                self._max_ts = item.timestamp_us
        if self._error is not None and self._done:
            raise self._error
        self._offset += len(out)
        return out

    def watermark(self) -> int:
        if self._done:
            return MAX_TIMESTAMP_US
        if self._max_ts == MIN_TIMESTAMP_US:
            return MIN_TIMESTAMP_US
        return self._max_ts - self.out_of_orderness_us

    def offset(self) -> int:
        return self._offset

    def is_done(self) -> bool:
        return self._done

    def close(self) -> None:
        self._stop.set()


class _GeneratorReader(UnboundedReader):
    def __init__(self, factory: Callable[[], Iterable[Any]], out_of_orderness_us: int, start_offset: int | None) -> None:
        self._factory = factory
        super().__init__(out_of_orderness_us, start_offset)

    def _produce(self) -> Iterator[Any]:
        return iter(self._factory())


class GeneratorSource(UnboundedSource):
    """Elements from ``factory()`` — a generator function or any callable returning an iterable.

    Yield TimestampedValue for event time; the watermark trails the largest
    timestamp seen by ``max_out_of_orderness`` seconds. When the iterator ends
    the stream ends (the watermark jumps to the end of time).
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
        super().__init__(source.out_of_orderness_us, start_offset)

    def _produce(self) -> Iterator[Any]:
        src = self._source
        deadline = time.monotonic() + src.connect_timeout
        while True:
            try:
                sock = socket.create_connection((src.host, src.port), timeout=src.connect_timeout)
                break
            except OSError:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                time.sleep(0.05)
        sock.settimeout(0.2)
        buffer = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                now = (time.time_ns() // 1000) / 1e6
                for raw in lines:
                    yield self._stamp(raw, now)
            if buffer:  # the last line, without a final newline
                yield self._stamp(buffer, (time.time_ns() // 1000) / 1e6)
        finally:
            sock.close()

    def _stamp(self, raw: bytes, arrival: float) -> TimestampedValue:
        src = self._source
        line = raw.decode(src.encoding).rstrip("\r")
        return TimestampedValue(line, arrival if src.timestamp_fn is None else src.timestamp_fn(line))


class SocketTextSource(UnboundedSource):
    """Lines of text from a TCP server (like Flink's socketTextStream).

    Each line is stamped with its arrival time, or with ``timestamp_fn(line)``
    (seconds) when given. The stream ends when the server closes the connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        encoding: str = "utf-8",
        timestamp_fn: Callable[[str], float] | None = None,
        max_out_of_orderness: DurationLike = 0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.encoding = encoding
        self.timestamp_fn = timestamp_fn
        self.out_of_orderness_us = duration_to_micros(max_out_of_orderness, "max_out_of_orderness")
        self.connect_timeout = connect_timeout

    def open_reader(self, start_offset: Any = None) -> UnboundedReader:
        return _SocketReader(self, start_offset)

    def display_name(self) -> str:
        return f"Socket({self.host}:{self.port})"


class ReadFromSocket(PTransform):
    """``p | ReadFromSocket(host, port)``: an unbounded PCollection of text lines."""

    def __init__(self, host: str, port: int, **kwargs: Any) -> None:
        super().__init__()
        self.source = SocketTextSource(host, port, **kwargs)

    def default_label(self) -> str:
        return f"ReadFromSocket({self.source.host}:{self.source.port})"

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin | Read(self.source)
