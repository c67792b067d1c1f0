"""Sources and sinks, one module per format or system, as in ``apache_beam.io``.

``from tidal.io import ReadFromText, WriteToText`` and ``tidal.io.textio`` work
as their Beam namesakes do. The modules:

- :mod:`tidal.io.textio`: text files in and out (transactional sink);
- :mod:`tidal.io.arrowio`: in-memory Arrow tables as a source;
- :mod:`tidal.io.unbounded`: a Python generator and a TCP socket as unbounded sources;
- :mod:`tidal.io.filesystems`: ``FileSystems`` over local paths and fsspec URLs.

The transactional sink contract every sink follows is documented in
:mod:`tidal.io.textio`.
"""

from tidal.io.arrowio import ArrowBatchSource, ReadArrow
from tidal.io.textio import ReadFromText, WriteToText, read_text
from tidal.io.unbounded import GeneratorSource, ReadFromSocket, SocketTextSource, UnboundedReader

__all__ = [
    "ArrowBatchSource", "GeneratorSource", "ReadArrow", "ReadFromSocket", "ReadFromText",
    "SocketTextSource", "UnboundedReader", "WriteToText", "read_text",
]
