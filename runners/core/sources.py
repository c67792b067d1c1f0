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

__all__ = ["SourceEvent", "SourceDriver", "BoundedSourceDriver", "ImpulseDriver", "make_source_driver", "to_windowed"]


@attrs.define
class SourceEvent:
    """What one poll of a source produced."""

    bundle: list[Any] | None = None
    #: A TestStream asks the runner's clock to move to this processing time.
    processing_time: int | None = None


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
        self.receivers: dict[str, list[Callable[[list[Any]], None]]] = {}
        self.watermark = MIN_TIMESTAMP_US
        self.done = False
        self.metrics = MetricsContainer(label)
        self.offset: Any = 0

    def add_receiver(self, tag: str, receiver: Callable[[list[Any]], None]) -> None:
        self.receivers.setdefault(tag, []).append(receiver)

    def emit(self, bundle: list[Any], tag: str = "out") -> None:
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
        return SourceEvent(to_windowed(chunk) if chunk else None)


def make_source_driver(node: AppliedTransform, bundle_size: int, source: Any = None) -> SourceDriver:
    """The driver for a source primitive (Read, Impulse, TestStream).

    ``source`` replaces the node's own source (a split of it, for a parallel worker).
    """
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
