"""Source drivers: turn a Read/Impulse/TestStream node into bundles and a watermark.

A driver is polled by its runner; each poll returns the next bundle (if any)
and the driver reports its watermark, whether it is done, and the offset it
has reached (for replay after a failure).
"""

from __future__ import annotations

import abc
import itertools
from typing import Any, Callable, Iterator

import attrs

from tidal.model.metrics import MetricsContainer, set_current_container
from tidal.model.pipeline import AppliedTransform
from tidal.model.primitives import Impulse, Read
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.model.trigger import PANE_INFO_UNKNOWN
from tidal.model.window import GLOBAL_WINDOWS_TUPLE, TimestampedValue
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError

__all__ = [
    "SourceEvent",
    "SourceDriver",
    "BoundedSourceDriver",
    "ImpulseDriver",
    "AssignedSplits",
    "SplitsDriver",
    "PartitionsDriver",
    "make_source_driver",
    "to_windowed",
    "GlobalValues",
    "windowed",
]


@attrs.define
class SourceEvent:
    """What one poll of a source produced."""

    bundle: list[Any] | None = None
    #: A TestStream asks the runner's clock to move to this processing time.
    processing_time: int | None = None


class GlobalValues:
    """A source's bundle of plain values, each in the global window at the minimum timestamp.

    It stands for the windowed values ``to_windowed(values)`` without building a
    tuple per element: iterating it yields those windowed values (a tuple at a
    time, which CPython's zip reuses when the loop unpacks it), ``values`` are
    the plain values, and :meth:`windowed` builds the list, once, for a
    receiver that needs one. A source driver gives it as it is only to
    receivers that said they take it (a ParDo, whose kernels only iterate
    their bundle); every other receiver gets the list.

    >>> b = GlobalValues(["a", "b"])
    >>> len(b), [v for v, _t, _w, _p in b]
    (2, ['a', 'b'])
    >>> b.windowed() == to_windowed(["a", "b"])
    True
    """

    __slots__ = ("values", "_windowed")

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self._windowed: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[tuple[Any, int, Any, Any]]:
        r = itertools.repeat
        return zip(self.values, r(MIN_TIMESTAMP_US), r(GLOBAL_WINDOWS_TUPLE), r(PANE_INFO_UNKNOWN))

    def windowed(self) -> list[Any]:
        """The windowed values as a list (built on first use)."""
        if self._windowed is None:
            self._windowed = list(self)
        return self._windowed


def windowed(bundle: Any) -> list[Any]:
    """``bundle`` as a list of windowed values (a :class:`GlobalValues` is built out)."""
    return bundle.windowed() if type(bundle) is GlobalValues else bundle


def from_values(values: list[Any]) -> Any:
    """A bundle of plain values (or TimestampedValues): a :class:`GlobalValues` when none is stamped."""
    if TimestampedValue not in set(map(type, values)):
        return GlobalValues(values)
    return to_windowed(values)


def to_windowed(values: list[Any]) -> list[Any]:
    """Plain values (or TimestampedValues) as windowed values in the global window."""
    gw, pane, min_ts = GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN, MIN_TIMESTAMP_US
    if TimestampedValue not in set(map(type, values)):
        return [(v, min_ts, gw, pane) for v in values]
    return [
        (v.value, v.timestamp_us, gw, pane) if type(v) is TimestampedValue else (v, min_ts, gw, pane)
        for v in values
    ]


class SourceDriver(abc.ABC):
    """Base: receivers, watermark, done flag and metrics of one source step."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.receivers: dict[str, list[Callable[[Any], None]]] = {}
        #: Receivers that take a GlobalValues bundle as it is (see ``add_value_receiver``).
        self.value_receivers: set[Callable[[Any], None]] = set()
        self.watermark = MIN_TIMESTAMP_US
        self.done = False
        self.metrics = MetricsContainer(label)
        self.offset: Any = 0

    def add_receiver(self, tag: str, receiver: Callable[[list[Any]], None]) -> None:
        self.receivers.setdefault(tag, []).append(receiver)

    def add_value_receiver(self, tag: str, receiver: Callable[[Any], None]) -> None:
        """Add a receiver that takes a :class:`GlobalValues` bundle as it is (a plain ParDo)."""
        self.add_receiver(tag, receiver)
        self.value_receivers.add(receiver)

    def emit(self, bundle: Any, tag: str = "out") -> None:
        if type(bundle) is GlobalValues:
            for receiver in self.receivers.get(tag, ()):
                receiver(bundle if receiver in self.value_receivers else bundle.windowed())
            return
        for receiver in self.receivers.get(tag, ()):
            receiver(bundle)

    def open(self, clock: Any) -> None:
        """Start reading (from ``self.offset`` when resuming)."""

    @abc.abstractmethod
    def poll(self, clock: Any) -> SourceEvent:
        """Read what is available now."""

    def close(self) -> None:
        """Stop reading and release the source."""

    def idle_hint(self) -> float | None:
        """Seconds the runner may wait before polling again when nothing happens."""
        return None

    def merge_positions(self, positions: list[dict[str, Any]]) -> dict[str, Any]:
        """This driver's position (offset, watermark, done) from old instances' positions.

        For a restore at another parallelism: a source read by one instance
        (Impulse, TestStream) has one position; drivers that read splits or
        partitions take theirs from whichever old instance read them.
        """
        return positions[0]


class ImpulseDriver(SourceDriver):
    """Impulse: one empty-bytes element, then the watermark jumps to the end."""

    def poll(self, clock: Any) -> SourceEvent:
        self.done = True
        self.watermark = MAX_TIMESTAMP_US
        self.offset = 1
        return SourceEvent([(b"", MIN_TIMESTAMP_US, GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN)])


class BoundedSourceDriver(SourceDriver):
    """Reads a BoundedSource in bundles of ``bundle_size``; the offset counts elements."""

    def __init__(self, label: str, source: Any, bundle_size: int) -> None:
        super().__init__(label)
        self.source = source
        self.bundle_size = bundle_size
        self._it: Iterator[Any] | None = None

    def open(self, clock: Any) -> None:
        previous = set_current_container(self.metrics)
        try:
            self._it = iter(self.source.read())
            if self.offset:
                next(itertools.islice(self._it, self.offset, self.offset), None)
        except Exception as exc:
            raise UserCodeError(self.label, self.source.read, exc, has_element=False) from exc
        finally:
            set_current_container(previous)

    def poll(self, clock: Any) -> SourceEvent:
        assert self._it is not None, "open() first"
        previous = set_current_container(self.metrics)
        try:
            chunk = list(itertools.islice(self._it, self.bundle_size))
        except Exception as exc:
            raise UserCodeError(self.label, self.source.read, exc, has_element=False) from exc
        finally:
            set_current_container(previous)
        if len(chunk) < self.bundle_size:
            self.done = True
            self.watermark = MAX_TIMESTAMP_US
        self.offset += len(chunk)
        return SourceEvent(from_values(chunk) if chunk else None)


@attrs.frozen
class AssignedSplits:
    """The splits (of a bounded source) or partitions (of an unbounded one) one parallel instance reads.

    A parallel runner splits a source once per job, into a number of pieces
    that does not depend on its parallelism (``source.split(max_parallelism)``),
    numbers them, and gives each instance a contiguous range of them; the
    instance's position is recorded per piece, so a checkpoint restores at
    another parallelism: each piece resumes where it was, on its new reader.
    """

    #: (piece number, source) pairs, in reading order.
    pieces: tuple[tuple[int, Any], ...]
    bounded: bool = True

    @staticmethod
    def assign(pieces: list[Any], workers: int, bounded: bool = True) -> list["AssignedSplits"]:
        """Pieces ``0..len-1`` handed out in contiguous ranges to ``workers`` instances.

        >>> [a.ids for a in AssignedSplits.assign(["a", "b", "c"], 2)]
        [(0, 1), (2,)]
        """
        n = len(pieces)
        return [
            AssignedSplits(tuple((k, pieces[k]) for k in range(n) if k * workers // n == i), bounded)
            for i in range(workers)
        ]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(k for k, _ in self.pieces)


#: A split whose elements have all been read.
_DONE = -1


class SplitsDriver(SourceDriver):
    """Reads several splits of a bounded source in turn, filling bundles across them.

    The offset is ``{split number: elements read}`` (``-1`` once a split is
    read to its end), so each split's position survives a restore that gives
    it to another instance.
    """

    def __init__(self, label: str, splits: AssignedSplits, bundle_size: int) -> None:
        super().__init__(label)
        self.splits = list(splits.pieces)
        self.bundle_size = bundle_size
        self.positions: dict[int, int] = {k: 0 for k, _ in self.splits}
        self._current = 0
        self._it: Iterator[Any] | None = None

    @property  # type: ignore[override]
    def offset(self) -> dict[int, int]:
        return dict(getattr(self, "positions", {}))

    @offset.setter
    def offset(self, value: Any) -> None:
        if isinstance(value, dict):  # a restore; the base class sets a plain 0 first
            self.positions.update({k: int(v) for k, v in value.items() if k in self.positions})

    def _read(self, index: int) -> Iterator[Any]:
        number, source = self.splits[index]
        previous = set_current_container(self.metrics)
        try:
            it = iter(source.read())
            skip = self.positions[number]
            if skip:
                next(itertools.islice(it, skip, skip), None)
            return it
        except Exception as exc:
            raise UserCodeError(self.label, source.read, exc, has_element=False) from exc
        finally:
            set_current_container(previous)

    def open(self, clock: Any) -> None:
        self._current = 0
        while self._current < len(self.splits) and self.positions[self.splits[self._current][0]] == _DONE:
            self._current += 1
        self._it = None
        if self._current >= len(self.splits):
            self.done = True
            self.watermark = MAX_TIMESTAMP_US

    def poll(self, clock: Any) -> SourceEvent:
        chunk: list[Any] = []
        while len(chunk) < self.bundle_size and self._current < len(self.splits):
            if self._it is None:
                self._it = self._read(self._current)
            number, source = self.splits[self._current]
            want = self.bundle_size - len(chunk)
            previous = set_current_container(self.metrics)
            try:
                got = list(itertools.islice(self._it, want))
            except Exception as exc:
                raise UserCodeError(self.label, source.read, exc, has_element=False) from exc
            finally:
                set_current_container(previous)
            chunk.extend(got)
            self.positions[number] += len(got)
            if len(got) < want:
                self.positions[number] = _DONE
                self._current += 1
                self._it = None
        if self._current >= len(self.splits):
            self.done = True
            self.watermark = MAX_TIMESTAMP_US
        return SourceEvent(from_values(chunk) if chunk else None)

    def merge_positions(self, positions: list[dict[str, Any]]) -> dict[str, Any]:
        mine: dict[int, int] = {}
        for pos in positions:
            for number, at in (pos["offset"] or {}).items():
                if number in self.positions:
                    mine[number] = at
        done = all(mine.get(k, 0) == _DONE for k in self.positions)
        return {"offset": mine, "watermark": MAX_TIMESTAMP_US if done else MIN_TIMESTAMP_US, "done": done}


class PartitionsDriver(SourceDriver):
    """Reads several partitions of an unbounded source, one reader each; the watermark is their minimum.

    The offset is ``{partition: {"offset", "watermark", "done"}}``, so each
    partition resumes where it was whichever instance reads it after a restore.
    """

    def __init__(self, label: str, partitions: AssignedSplits) -> None:
        super().__init__(label)
        from tidal.runners.core.streaming import UnboundedSourceDriver

        self.parts = [(k, UnboundedSourceDriver(label, source)) for k, source in partitions.pieces]
        for _k, sub in self.parts:
            sub.metrics = self.metrics
        if not self.parts:
            self.done = True
            self.watermark = MAX_TIMESTAMP_US

    @property  # type: ignore[override]
    def offset(self) -> dict[int, dict[str, Any]]:
        return {k: {"offset": d.offset, "watermark": d.watermark, "done": d.done} for k, d in getattr(self, "parts", [])}

    @offset.setter
    def offset(self, value: Any) -> None:
        if not isinstance(value, dict):
            return
        for k, d in self.parts:
            if k in value:
                d.offset, d.watermark, d.done = value[k]["offset"], value[k]["watermark"], value[k]["done"]

    def open(self, clock: Any) -> None:
        for _k, d in self.parts:
            if not d.done:
                d.open(clock)

    def poll(self, clock: Any) -> SourceEvent:
        bundles: list[Any] = []
        for _k, d in self.parts:
            if d.done:
                continue
            event = d.poll(clock)
            if event.bundle:
                bundles.append(event.bundle)
        if self.parts:
            self.watermark = max(self.watermark, min(d.watermark for _k, d in self.parts))
            self.done = all(d.done for _k, d in self.parts)
        if len(bundles) <= 1:
            return SourceEvent(bundles[0] if bundles else None)
        return SourceEvent([wv for b in bundles for wv in windowed(b)])

    def idle_hint(self) -> float | None:
        return 0.002

    def close(self) -> None:
        for _k, d in self.parts:
            d.close()

    def merge_positions(self, positions: list[dict[str, Any]]) -> dict[str, Any]:
        mine = {k: v for pos in positions for k, v in (pos["offset"] or {}).items() if any(k == j for j, _ in self.parts)}
        wms = [v["watermark"] for v in mine.values()]
        done = bool(self.parts) and all(mine.get(k, {}).get("done", False) for k, _ in self.parts)
        return {
            "offset": mine,
            "watermark": min(wms) if len(wms) == len(self.parts) and wms else MIN_TIMESTAMP_US,
            "done": done,
        }


def make_source_driver(node: AppliedTransform, bundle_size: int, source: Any = None) -> SourceDriver:
    """The driver for a source primitive (Read, Impulse, TestStream).

    ``source`` replaces the node's own source: a split of it, or the
    :class:`AssignedSplits` of a parallel instance.
    """
    if isinstance(source, AssignedSplits):
        if source.bounded:
            return SplitsDriver(node.full_label, source, bundle_size)
        return PartitionsDriver(node.full_label, source)
    t = node.transform
    if isinstance(t, Impulse):
        return ImpulseDriver(node.full_label)
    if isinstance(t, Read):
        source = source if source is not None else t.source
        if source.is_bounded:
            return BoundedSourceDriver(node.full_label, source, bundle_size)
        from tidal.runners.core.streaming import UnboundedSourceDriver

        return UnboundedSourceDriver(node.full_label, source)
    from tidal.runners.core.streaming import make_streaming_driver

    driver = make_streaming_driver(node)
    if driver is None:
        raise PipelineExecutionError(node.full_label, f"{type(t).__name__} is not a source")
    return driver
