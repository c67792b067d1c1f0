"""Sources and sinks, one module per format or system, as in ``apache_beam.io``.

``from tidal.io import ReadFromText, WriteToText`` and ``tidal.io.textio`` work
as their Beam namesakes do. The modules:

- :mod:`tidal.io.textio`: text files in and out (transactional sink);
- :mod:`tidal.io.arrowio`: in-memory Arrow tables as a source;
- :mod:`tidal.io.unbounded`: a Python generator and a TCP socket as unbounded sources,
  and the contract an unbounded reader follows (offsets, checkpoint, replay, watermark);
- :mod:`tidal.io.redisio`: Redis Streams in and out, exactly once (needs ``tidal[redis]``);
- :mod:`tidal.io.filesystems`: ``FileSystems`` over local paths and fsspec URLs.

The transactional sink contract every sink follows is documented in
:mod:`tidal.io.textio`.
"""

from tidal.io.arrowio import ArrowBatchSource, ReadArrow
from tidal.io.redisio import ReadFromRedisStream, WriteToRedisStream
from tidal.io.textio import ReadFromText, WriteToText, read_text
from tidal.io.unbounded import GeneratorSource, ReadFromSocket, SocketTextSource, UnboundedReader

__all__ = [
    "ArrowBatchSource", "GeneratorSource", "ReadArrow", "ReadFromRedisStream", "ReadFromSocket", "ReadFromText",
    "SocketTextSource", "UnboundedReader", "WriteToRedisStream", "WriteToText", "read_text",
]
