"""TestStream: a scripted unbounded source for deterministic streaming tests.

Elements, watermark advances and processing-time advances happen in exactly
the order written, so every trigger — processing-time ones included — can be
tested without sleeping.

>>> import tidal as td
>>> from tidal import window
>>> stream = (TestStream()
...           .add_elements([window.TimestampedValue(("k", 1), 1)])
...           .advance_watermark_to(10)
...           .add_elements([("k", 2)], event_timestamp=12)
...           .advance_watermark_to_infinity())
>>> with td.Pipeline() as p:
...     sums = (p | stream | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum))
...     td.testing.assert_that(sums, td.testing.equal_to([("k", 1), ("k", 2)]))
"""

from __future__ import annotations

from typing import Any, Iterable

import attrs

from tidal.model.pipeline import PipelineError
from tidal.model.primitives import check_picklable
from tidal.model.ptransform import PrimitiveTransform
from tidal.model.pvalue import PBegin, PCollection
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, DurationLike, Timestamp, TimestampLike, duration_to_micros, to_micros
from tidal.model.window import TimestampedValue

__all__ = ["TestStream", "ElementEvent", "WatermarkEvent", "ProcessingTimeEvent"]


@attrs.frozen
class ElementEvent:
    """Elements arriving together, as one bundle: ``(value, timestamp_us)`` pairs."""

    timestamped_values: tuple[tuple[Any, int], ...]


@attrs.frozen
class WatermarkEvent:
    """The source's watermark moves to ``new_watermark_us``."""

    new_watermark_us: int


@attrs.frozen
class ProcessingTimeEvent:
    """Processing time moves forward by ``advance_by_us``."""

    advance_by_us: int


class TestStream(PrimitiveTransform):
    """An unbounded source that replays a script of elements and time advances."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        super().__init__()
        self.events: list[ElementEvent | WatermarkEvent | ProcessingTimeEvent] = []
        self._problem: str | None = None
        self._watermark = MIN_TIMESTAMP_US

    def default_label(self) -> str:
        return "TestStream"

    def add_elements(self, elements: Iterable[Any], tag: str | None = None, event_timestamp: TimestampLike | None = None) -> "TestStream":
        """Add elements as one bundle; plain values get ``event_timestamp`` (default MIN_TIMESTAMP)."""
        if tag is not None:
            raise ValueError("TestStream output tags are not supported; use one TestStream per output")
        default_ts = MIN_TIMESTAMP_US if event_timestamp is None else to_micros(event_timestamp, "event_timestamp")
        values: list[tuple[Any, int]] = []
        for e in elements:
            if isinstance(e, TimestampedValue):
                values.append((e.value, e.timestamp_us))
            else:
                values.append((e, default_ts))
        self.events.append(ElementEvent(tuple(values)))
        return self

    def advance_watermark_to(self, new_watermark: TimestampLike, tag: str | None = None) -> "TestStream":
        """Promise that no element older than ``new_watermark`` follows (later ones are late).

        The watermark must strictly advance, as in Beam: a value not later than
        the previous watermark is an error here, naming both values.

        >>> TestStream().advance_watermark_to(10).advance_watermark_to(10)
        Traceback (most recent call last):
        ...
        ValueError: TestStream.advance_watermark_to(Timestamp(10)): the watermark must strictly advance, but it is already at Timestamp(10)
        """
        micros = to_micros(new_watermark, "watermark")
        self._advance_watermark(micros, f"advance_watermark_to({Timestamp.from_micros(micros)!r})")
        return self

    def advance_watermark_to_infinity(self) -> "TestStream":
        """End the stream: the watermark moves to MAX_TIMESTAMP."""
        self._advance_watermark(MAX_TIMESTAMP_US, "advance_watermark_to_infinity()")
        return self

    def _advance_watermark(self, micros: int, call: str) -> None:
        if micros <= self._watermark:
            raise ValueError(
                f"TestStream.{call}: the watermark must strictly advance, but it is already at "
                f"{Timestamp.from_micros(self._watermark)!r}"
            )
        self._watermark = micros
        self.events.append(WatermarkEvent(micros))

    def advance_processing_time(self, advance_by: DurationLike) -> "TestStream":
        """Move processing time forward by ``advance_by`` seconds."""
        micros = duration_to_micros(advance_by, "advance_processing_time")
        if micros <= 0 and self._problem is None:
            self._problem = f"advance_processing_time needs a positive duration, got {advance_by!r}"
        self.events.append(ProcessingTimeEvent(micros))
        return self

    def validate_input(self, input_or_inputs: Any, label: str) -> None:
        if not isinstance(input_or_inputs, PBegin):
            raise PipelineError(f"step {label!r}: TestStream is a root transform; apply it to a pipeline")
        if self._problem is not None:
            raise PipelineError(f"step {label!r}: {self._problem}")
        for event in self.events:
            if isinstance(event, ElementEvent):
                for value, _ in event.timestamped_values:
                    check_picklable(value, "the element", label)

    def expand(self, pbegin: PBegin) -> PCollection[Any]:
        return pbegin.pipeline._new_output(is_bounded=False)
