"""Streaming source drivers: TestStream scripts and unbounded sources.

A TestStream driver replays one scripted event per poll (elements as one
bundle, a watermark move, or a processing-time move), so the runner moves
watermarks between events exactly as scripted. An unbounded-source driver
polls a reader for what has arrived and reports the reader's watermark; its
offset is the reader's position, recorded for replay.
"""

from __future__ import annotations

from typing import Any

from tidal.model.metrics import set_current_container
from tidal.model.pipeline import AppliedTransform
from tidal.model.teststream import ElementEvent, ProcessingTimeEvent, TestStream, WatermarkEvent
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.model.trigger import PANE_INFO_UNKNOWN
from tidal.model.window import GLOBAL_WINDOWS_TUPLE
from tidal.runners.core.errors import UserCodeError
from tidal.runners.core.sources import SourceDriver, SourceEvent, to_windowed

__all__ = ["TestStreamDriver", "UnboundedSourceDriver", "make_streaming_driver"]


class TestStreamDriver(SourceDriver):
    """Replays a TestStream; the offset is the index of the next event."""

    __test__ = False

    def __init__(self, label: str, stream: TestStream) -> None:
        super().__init__(label)
        self.events = list(stream.events)

    def poll(self, clock: Any) -> SourceEvent:
        if self.offset >= len(self.events):
            self.done = True
            self.watermark = MAX_TIMESTAMP_US
            return SourceEvent()
        event = self.events[self.offset]
        self.offset += 1
        result = SourceEvent()
        if isinstance(event, ElementEvent):
            gw, pane = GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN
            result.bundle = [(v, t, gw, pane) for v, t in event.timestamped_values]
        elif isinstance(event, WatermarkEvent):
            self.watermark = max(self.watermark, event.new_watermark_us)
        elif isinstance(event, ProcessingTimeEvent):
            result.processing_time = clock.now_us() + event.advance_by_us
        if self.offset >= len(self.events):
            self.done = True
            self.watermark = MAX_TIMESTAMP_US
        return result


class UnboundedSourceDriver(SourceDriver):
    """Polls an UnboundedSource's reader; the reader owns offsets and the watermark."""

    def __init__(self, label: str, source: Any, max_bundle: int = 10_000) -> None:
        super().__init__(label)
        self.source = source
        self.max_bundle = max_bundle
        self.reader: Any = None
        self.offset = None
        #: Read no record past this offset (a replay of a recorded range), when the reader
        #: can tell positions apart (``limit_to``); None reads on.
        self.read_end: Any = None

    def open(self, clock: Any) -> None:
        previous = set_current_container(self.metrics)
        try:
            self.reader = self.source.open_reader(self.offset)
        except Exception as exc:
            raise UserCodeError(self.label, self.source.open_reader, exc, has_element=False) from exc
        finally:
            set_current_container(previous)

    def poll(self, clock: Any) -> SourceEvent:
        previous = set_current_container(self.metrics)
        try:
            limit_to = getattr(self.reader, "limit_to", None)
            if limit_to is not None:
                limit_to(self.read_end)
            values = self.reader.poll(self.max_bundle)
            self.watermark = max(self.watermark, self.reader.watermark())
            self.offset = self.reader.offset()
            if self.reader.is_done():
                self.done = True
                self.watermark = MAX_TIMESTAMP_US
        except Exception as exc:
            raise UserCodeError(self.label, self.reader.poll, exc, has_element=False) from exc
        finally:
            set_current_container(previous)
        return SourceEvent(to_windowed(values) if values else None)

    def idle_hint(self) -> float | None:
        return 0.002

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


def make_streaming_driver(node: AppliedTransform) -> SourceDriver | None:
    if isinstance(node.transform, TestStream):
        return TestStreamDriver(node.full_label, node.transform)
    return None
