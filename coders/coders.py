"""The coder classes at Beam's path ``apache_beam.coders.coders``; see :mod:`tidal.model.coders`."""

from tidal.model.coders import (
    BigEndianShortCoder,
    BooleanCoder,
    ByteCoder,
    BytesCoder,
    CloudpickleCoder,
    Coder,
    DeterministicFastPrimitivesCoder,
    DillCoder,
    FastPrimitivesCoder,
    FloatCoder,
    IterableCoder,
    ListCoder,
    NullableCoder,
    PickleCoder,
    SinglePrecisionFloatCoder,
    StrUtf8Coder,
    TimestampCoder,
    ToBytesCoder,
    TupleCoder,
    VarInt32Coder,
    VarIntCoder,
)

__all__ = [
    "BigEndianShortCoder", "BooleanCoder", "ByteCoder", "BytesCoder", "CloudpickleCoder", "Coder",
    "DeterministicFastPrimitivesCoder", "DillCoder", "FastPrimitivesCoder", "FloatCoder", "IterableCoder",
    "ListCoder", "NullableCoder", "PickleCoder", "SinglePrecisionFloatCoder", "StrUtf8Coder", "TimestampCoder",
    "ToBytesCoder", "TupleCoder", "VarInt32Coder", "VarIntCoder",
]
