"""Coders: how values become bytes, with Beam's classes and registry.

tidal moves elements between processes with cloudpickle, so a pipeline
needs no coder to run. Coders still matter where bytes are the point: a
text source decodes each line with its coder and a text sink encodes each
element with its coder, as in Beam. Beam programs that declare coders
(``coders.registry.register_coder(MyType, MyCoder)``, a custom ``Coder``
subclass, a coder passed to a transform) port unchanged; the declarations
are kept, and a registered coder is what :meth:`CoderRegistry.get_coder`
returns for its type.

The encodings of ``BytesCoder``, ``StrUtf8Coder``, ``VarIntCoder``,
``VarInt32Coder``, ``BigEndianShortCoder``, ``ByteCoder``, ``FloatCoder``, ``SinglePrecisionFloatCoder``,
``BooleanCoder``, ``TimestampCoder``, ``TupleCoder``, ``IterableCoder``,
``ListCoder`` and ``NullableCoder`` are Beam's byte for byte.
``PickleCoder`` and ``FastPrimitivesCoder`` round-trip any picklable value,
but their bytes are not Beam's (they are cloudpickle's).

>>> VarIntCoder().encode(300), VarIntCoder().decode(b"\\xac\\x02")
(b'\\xac\\x02', 300)
>>> TupleCoder([StrUtf8Coder(), VarIntCoder()]).decode(TupleCoder([StrUtf8Coder(), VarIntCoder()]).encode(("a", 1)))
('a', 1)
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, Iterable, Sequence

import cloudpickle

__all__ = [
    "Coder",
    "BytesCoder",
    "StrUtf8Coder",
    "ToBytesCoder",
    "VarIntCoder",
    "BigEndianShortCoder",
    "ByteCoder",
    "VarInt32Coder",
    "FloatCoder",
    "SinglePrecisionFloatCoder",
    "BooleanCoder",
    "TimestampCoder",
    "PickleCoder",
    "CloudpickleCoder",
    "DillCoder",
    "FastPrimitivesCoder",
    "DeterministicFastPrimitivesCoder",
    "TupleCoder",
    "IterableCoder",
    "ListCoder",
    "NullableCoder",
    "CoderRegistry",
    "registry",
]


class Coder:
    """Encodes values to bytes and back; subclass it and define ``encode`` and ``decode``.

    >>> class Upper(Coder):
    ...     def encode(self, value):
    ...         return value.upper().encode()
    ...     def decode(self, encoded):
    ...         return encoded.decode()
    >>> Upper().decode(Upper().encode("ab"))
    'AB'
    """

    def encode(self, value: Any) -> bytes:
        raise TypeError(f"{type(self).__name__} does not define encode(value)")

    def decode(self, encoded: bytes) -> Any:
        raise TypeError(f"{type(self).__name__} does not define decode(encoded)")

    def is_deterministic(self) -> bool:
        """Whether equal values always encode to equal bytes (needed for keys in Beam)."""
        return False

    def as_deterministic_coder(self, step_label: str, error_message: str | None = None) -> "Coder":
        """This coder if it is deterministic, else an error naming the step (as Beam raises)."""
        if self.is_deterministic():
            return self
        raise ValueError(error_message or f"{self} cannot be made deterministic for step {step_label!r}")

    def estimate_size(self, value: Any) -> int:
        """The size of ``value`` encoded, in bytes."""
        return len(self.encode(value))

    def to_type_hint(self) -> Any:
        return Any

    # Nested context (inside a tuple or an iterable), as Beam encodes it: a coder whose bytes do
    # not say where they end is prefixed with their length.
    def encode_nested(self, value: Any, out: bytearray) -> None:
        data = self.encode(value)
        _write_varint(len(data), out)
        out += data

    def decode_nested(self, data: bytes, pos: int) -> tuple[Any, int]:
        length, pos = _read_varint(data, pos)
        return self.decode(data[pos : pos + length]), pos + length

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}"


class BytesCoder(Coder):
    """Bytes as they are."""

    def encode(self, value: bytes) -> bytes:
        return bytes(value)

    def decode(self, encoded: bytes) -> bytes:
        return bytes(encoded)

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return bytes


class StrUtf8Coder(Coder):
    """Text as UTF-8."""

    def encode(self, value: str) -> bytes:
        return value.encode("utf-8")

    def decode(self, encoded: bytes) -> str:
        return encoded.decode("utf-8")

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return str


class ToBytesCoder(Coder):
    """Beam's default for text sinks: bytes as they are, anything else as UTF-8 of ``str(value)``.

    >>> ToBytesCoder().encode(b"x"), ToBytesCoder().encode(12)
    (b'x', b'12')
    """

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        return (value if isinstance(value, str) else str(value)).encode("utf-8")

    def decode(self, encoded: bytes) -> bytes:
        return bytes(encoded)

    def is_deterministic(self) -> bool:
        return True


def _write_varint(value: int, out: bytearray) -> None:
    value &= 0xFFFFFFFFFFFFFFFF  # a negative int64 as its two's complement, as Beam writes it
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    if result >= 1 << 63:
        result -= 1 << 64
    return result, pos


class VarIntCoder(Coder):
    """A signed 64-bit int as a variable-length integer (Beam's encoding)."""

    def encode(self, value: int) -> bytes:
        if not -(1 << 63) <= value < 1 << 63:
            raise OverflowError(f"VarIntCoder encodes 64-bit integers; {value} is out of range")
        out = bytearray()
        _write_varint(value, out)
        return bytes(out)

    def decode(self, encoded: bytes) -> int:
        value, pos = _read_varint(encoded, 0)
        if pos != len(encoded):
            raise ValueError(f"VarIntCoder: {len(encoded) - pos} trailing byte(s)")
        return value

    def encode_nested(self, value: Any, out: bytearray) -> None:
        out += self.encode(value)

    def decode_nested(self, data: bytes, pos: int) -> tuple[Any, int]:
        return _read_varint(data, pos)

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return int


class _FixedWidthCoder(Coder):
    """A coder whose encodings all have the same length: nested, it needs no length prefix."""

    _width = 0

    def encode_nested(self, value: Any, out: bytearray) -> None:
        out += self.encode(value)

    def decode_nested(self, data: bytes, pos: int) -> tuple[Any, int]:
        return self.decode(data[pos : pos + self._width]), pos + self._width


class _StructCoder(_FixedWidthCoder):
    _format = ""
    _hint: Any = Any

    def __init_subclass__(cls) -> None:
        cls._width = struct.calcsize(cls._format)

    def encode(self, value: Any) -> bytes:
        return struct.pack(self._format, value)

    def decode(self, encoded: bytes) -> Any:
        return struct.unpack(self._format, encoded)[0]

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return self._hint


class BigEndianShortCoder(_StructCoder):
    """A signed 16-bit int in 2 big-endian bytes."""

    _format = ">h"
    _hint = int


class ByteCoder(_StructCoder):
    """An int in [0, 256) as one byte."""

    _format = ">B"
    _hint = int


class VarInt32Coder(VarIntCoder):
    """A signed 32-bit int as a variable-length integer."""

    def encode(self, value: int) -> bytes:
        if not -(1 << 31) <= value < 1 << 31:
            raise OverflowError(f"VarInt32Coder encodes 32-bit integers; {value} is out of range")
        out = bytearray()
        _write_varint(value & 0xFFFFFFFF, out)  # a negative int32 as its 32-bit two's complement
        return bytes(out)

    def decode(self, encoded: bytes) -> int:
        return self.decode_nested(encoded, 0)[0]

    def decode_nested(self, data: bytes, pos: int) -> tuple[Any, int]:
        value, pos = _read_varint(data, pos)
        value &= 0xFFFFFFFF
        return (value - (1 << 32) if value >= 1 << 31 else value), pos


class FloatCoder(_StructCoder):
    """A float as an 8-byte big-endian IEEE double."""

    _format = ">d"
    _hint = float


class SinglePrecisionFloatCoder(_StructCoder):
    """A float as a 4-byte big-endian IEEE single."""

    _format = ">f"
    _hint = float


class BooleanCoder(_FixedWidthCoder):
    """True as ``b'\\x01'``, False as ``b'\\x00'``."""

    _width = 1

    def encode(self, value: bool) -> bytes:
        return b"\x01" if value else b"\x00"

    def decode(self, encoded: bytes) -> bool:
        if encoded not in (b"\x00", b"\x01"):
            raise ValueError(f"BooleanCoder: {encoded!r} is not a boolean")
        return encoded == b"\x01"

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return bool


class TimestampCoder(_FixedWidthCoder):
    """A Timestamp as Beam writes it: milliseconds, sign bit flipped, in 8 big-endian bytes."""

    _width = 8

    def encode(self, value: Any) -> bytes:
        from tidal.model.time import Timestamp

        millis = Timestamp.of(value).micros // 1000
        return struct.pack(">Q", (millis + (1 << 63)) & 0xFFFFFFFFFFFFFFFF)

    def decode(self, encoded: bytes) -> Any:
        from tidal.model.time import Timestamp

        millis = struct.unpack(">Q", encoded)[0] - (1 << 63)
        return Timestamp.from_micros(millis * 1000)

    def is_deterministic(self) -> bool:
        return True


class PickleCoder(Coder):
    """Any picklable value, with pickle."""

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)


class CloudpickleCoder(Coder):
    """Any value cloudpickle can serialize (functions and classes by value too)."""

    def encode(self, value: Any) -> bytes:
        return cloudpickle.dumps(value)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)


#: Beam's dill-based coder; cloudpickle serves the same values here.
DillCoder = CloudpickleCoder


class FastPrimitivesCoder(CloudpickleCoder):
    """Beam's general-purpose coder; here the values round-trip through cloudpickle."""

    def __init__(self, fallback_coder: Coder | None = None) -> None:
        self.fallback_coder = fallback_coder


class DeterministicFastPrimitivesCoder(FastPrimitivesCoder):
    """FastPrimitivesCoder for keys: deterministic for str, bytes, int, float, bool, None and tuples of them."""

    def __init__(self, coder: Coder | None = None, step_label: str = "") -> None:
        super().__init__()
        self.step_label = step_label

    def encode(self, value: Any) -> bytes:
        _check_deterministic_value(value, self.step_label)
        return super().encode(value)

    def is_deterministic(self) -> bool:
        return True


def _check_deterministic_value(value: Any, step_label: str) -> None:
    if value is None or isinstance(value, (str, bytes, int, float, bool)):
        return
    if type(value) is tuple:
        for v in value:
            _check_deterministic_value(v, step_label)
        return
    raise TypeError(f"unable to deterministically encode {value!r} of type {type(value).__name__} for step {step_label!r}")


class TupleCoder(Coder):
    """A tuple, each component with its own coder (Beam's nested encoding)."""

    def __init__(self, components: Sequence[Coder]) -> None:
        self._coders = tuple(components)

    def coders(self) -> tuple[Coder, ...]:
        return self._coders

    def encode(self, value: Sequence[Any]) -> bytes:
        self._check(value)
        out = bytearray()
        for coder, v in zip(self._coders[:-1], value):
            coder.encode_nested(v, out)
        if self._coders:
            out += self._coders[-1].encode(value[-1])  # the last component ends where the bytes do
        return bytes(out)

    def decode(self, encoded: bytes) -> tuple[Any, ...]:
        pos = 0
        values = []
        for coder in self._coders[:-1]:
            v, pos = coder.decode_nested(encoded, pos)
            values.append(v)
        if self._coders:
            values.append(self._coders[-1].decode(encoded[pos:]))
        return tuple(values)

    def encode_nested(self, value: Any, out: bytearray) -> None:
        self._check(value)
        for coder, v in zip(self._coders, value):
            coder.encode_nested(v, out)

    def decode_nested(self, data: bytes, pos: int) -> tuple[Any, int]:
        values = []
        for coder in self._coders:
            v, pos = coder.decode_nested(data, pos)
            values.append(v)
        return tuple(values), pos

    def _check(self, value: Sequence[Any]) -> None:
        if len(value) != len(self._coders):
            raise ValueError(f"TupleCoder of {len(self._coders)} components got {len(value)} values: {value!r}")

    def is_deterministic(self) -> bool:
        return all(c.is_deterministic() for c in self._coders)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TupleCoder) and self._coders == other._coders

    def __hash__(self) -> int:
        return hash(self._coders)

    def __repr__(self) -> str:
        return f"TupleCoder[{', '.join(map(repr, self._coders))}]"


class IterableCoder(Coder):
    """An iterable, as a count then each element with the element coder (Beam's encoding)."""

    def __init__(self, elem_coder: Coder) -> None:
        self._elem_coder = elem_coder

    def encode(self, value: Iterable[Any]) -> bytes:
        out = bytearray()
        self.encode_nested(value, out)
        return bytes(out)

    def decode(self, encoded: bytes) -> list[Any]:
        return self.decode_nested(encoded, 0)[0]

    def encode_nested(self, value: Any, out: bytearray) -> None:
        items = list(value)
        out += struct.pack(">i", len(items))
        for v in items:
            self._elem_coder.encode_nested(v, out)

    def decode_nested(self, data: bytes, pos: int) -> tuple[Any, int]:
        (count,) = struct.unpack(">i", data[pos : pos + 4])
        pos += 4
        values = []
        for _ in range(count):
            v, pos = self._elem_coder.decode_nested(data, pos)
            values.append(v)
        return values, pos

    def is_deterministic(self) -> bool:
        return self._elem_coder.is_deterministic()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._elem_coder == other._elem_coder  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._elem_coder))

    def __repr__(self) -> str:
        return f"{type(self).__name__}[{self._elem_coder!r}]"


class ListCoder(IterableCoder):
    """A list, encoded as IterableCoder encodes it."""


class NullableCoder(Coder):
    """None, or a value of the wrapped coder: a marker byte, then the value."""

    def __init__(self, value_coder: Coder) -> None:
        self._value_coder = value_coder

    def encode(self, value: Any) -> bytes:
        if value is None:
            return b"\x00"
        return b"\x01" + self._value_coder.encode(value)

    def decode(self, encoded: bytes) -> Any:
        if encoded[:1] == b"\x00":
            return None
        return self._value_coder.decode(encoded[1:])

    def is_deterministic(self) -> bool:
        return self._value_coder.is_deterministic()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NullableCoder) and self._value_coder == other._value_coder

    def __hash__(self) -> int:
        return hash((NullableCoder, self._value_coder))


class CoderRegistry:
    """The coder for each type (Beam's ``coders.registry``).

    >>> class Point:
    ...     pass
    >>> class PointCoder(Coder):
    ...     def encode(self, value):
    ...         return b""
    ...     def decode(self, encoded):
    ...         return Point()
    >>> registry.register_coder(Point, PointCoder)
    >>> type(registry.get_coder(Point)).__name__
    'PointCoder'
    """

    def __init__(self) -> None:
        self._coders: dict[Any, type[Coder] | Coder] = {
            bytes: BytesCoder, str: StrUtf8Coder, int: VarIntCoder, float: FloatCoder, bool: BooleanCoder,
        }

    def register_coder(self, typehint_type: Any, typehint_coder_class: type[Coder] | Coder) -> None:
        """Use ``typehint_coder_class`` for values of ``typehint_type``."""
        if not (isinstance(typehint_coder_class, Coder) or (isinstance(typehint_coder_class, type) and issubclass(typehint_coder_class, Coder))):
            raise TypeError(f"register_coder needs a Coder subclass, got {typehint_coder_class!r}")
        self._coders[typehint_type] = typehint_coder_class

    def get_coder(self, typehint: Any) -> Coder:
        """The registered coder for ``typehint`` (FastPrimitivesCoder when none is)."""
        coder = self._coders.get(typehint)
        if coder is None:
            return FastPrimitivesCoder()
        return coder if isinstance(coder, Coder) else coder()

    def get_custom_type_coder_tuples(self, types: Iterable[Any]) -> list[tuple[Any, Coder]]:
        """(type, coder) for each of ``types`` that has a registered coder."""
        return [(t, self.get_coder(t)) for t in types if t in self._coders]


#: The process-wide registry, as ``apache_beam.coders.registry``.
registry = CoderRegistry()
