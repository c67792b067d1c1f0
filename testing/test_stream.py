"""TestStream at Beam's path ``apache_beam.testing.test_stream``.

>>> import tidal as td
>>> from tidal.testing.test_stream import TestStream
>>> stream = TestStream().add_elements([1, 2]).advance_watermark_to_infinity()
"""

from tidal.model.teststream import ElementEvent, ProcessingTimeEvent, TestStream, WatermarkEvent

__all__ = ["ElementEvent", "ProcessingTimeEvent", "TestStream", "WatermarkEvent"]
