"""Sources and sinks, one module per format or system, as in ``apache_beam.io``.

``from tidal.io import ReadFromText, WriteToText`` and ``tidal.io.textio`` work
as their Beam namesakes do. The modules:

- :mod:`tidal.io.textio`: text files in and out (compressed or not), and CSV and JSON as in Beam;
- :mod:`tidal.io.csvio`, :mod:`tidal.io.jsonio`: CSV and JSON lines in and out;
- :mod:`tidal.io.parquetio`: Parquet in and out, as rows or Arrow tables;
- :mod:`tidal.io.filebased`: the per-format reading layer (whole files or splits, records or Arrow);
- :mod:`tidal.io.filebasedsink`: the transactional file sink (shard names, staging, publishing);
- :mod:`tidal.io.arrowio`: in-memory Arrow tables as a source;
- :mod:`tidal.io.unbounded`: a Python generator and a TCP socket as unbounded sources,
  and the contract an unbounded reader follows (offsets, checkpoint, replay, watermark);
- :mod:`tidal.io.redisio`: Redis Streams in and out, exactly once (needs ``tidal[redis]``);
- :mod:`tidal.io.fileio`: a watched directory, ``MatchContinuously`` and ``ReadContinuously``;
- :mod:`tidal.io.filesystems`: ``FileSystems`` over local paths and fsspec URLs.

The transactional sink contract every sink follows is documented in
:mod:`tidal.io.textio`.

Checkpoints (a Ray ``checkpoint_dir``, a micro-batch commit log) hold what
sources and sinks staged as pickles: restoring one runs code from that
location. Without a checkpoint key (``TIDAL_CHECKPOINT_KEY`` or the option
``checkpoint_key``, which signs every manifest and refuses unsigned or forged
ones before unpickling), a checkpoint location must be as trusted as the
job's code.
"""

from tidal.io.arrowio import ArrowBatchSource, ReadArrow
from tidal.io.csvio import ReadFromCsv, WriteToCsv
from tidal.io.fileio import MatchContinuously, ReadContinuously
from tidal.io.filesystems import BeamIOError, CompressionTypes, FileSystems
from tidal.io.jsonio import ReadFromJson, WriteToJson
from tidal.io.parquetio import ReadFromParquet, ReadFromParquetBatched, WriteToParquet, WriteToParquetBatched
from tidal.io.redisio import ReadFromRedisStream, WriteToRedisStream
from tidal.io.textio import ReadFromText, WriteToText, read_text
from tidal.io.unbounded import GeneratorSource, ReadFromSocket, SocketTextSource, UnboundedReader

__all__ = [
    "ArrowBatchSource", "BeamIOError", "CompressionTypes", "FileSystems", "GeneratorSource", "ReadArrow",
    "MatchContinuously", "ReadContinuously", "ReadFromCsv", "ReadFromJson", "ReadFromParquet", "ReadFromParquetBatched", "ReadFromRedisStream", "ReadFromSocket",
    "ReadFromText", "SocketTextSource", "UnboundedReader", "WriteToCsv", "WriteToJson", "WriteToParquet",
    "WriteToParquetBatched", "WriteToRedisStream", "WriteToText", "read_text",
]
