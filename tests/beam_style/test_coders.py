"""Coders encode as Beam's do, byte for byte (hand-derived bytes, and a live comparison with Beam)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from beam_support import NO_BEAM, beam_python

from tidal import coders
from tidal.coders import coders as c
from tidal.utils.timestamp import Timestamp

# (coder, value, encoding) with the encodings worked out by hand from Beam's formats.
HAND = [
    (c.VarIntCoder(), 300, "ac02"),                      # 300 = 0b10_0101100: 0x2c|0x80, 0x02
    (c.VarIntCoder(), -1, "ff" * 9 + "01"),              # two's complement, 64 bits, 7 at a time
    (c.VarInt32Coder(), -3, "fdffffff0f"),               # two's complement, 32 bits
    (c.StrUtf8Coder(), "é", "c3a9"),
    (c.BytesCoder(), b"\x00z", "007a"),
    (c.FloatCoder(), 1.5, "3ff8000000000000"),           # IEEE double, big-endian
    (c.SinglePrecisionFloatCoder(), 1.5, "3fc00000"),
    (c.BooleanCoder(), True, "01"),
    (c.BigEndianShortCoder(), -2, "fffe"),
    (c.ByteCoder(), 200, "c8"),
    (c.TimestampCoder(), Timestamp(5.25), "8000000000001482"),    # 5250 ms, sign bit flipped
    (c.TupleCoder([c.StrUtf8Coder(), c.VarIntCoder()]), ("ab", 7), "02616207"),  # length-prefixed str, then 7
    (c.TupleCoder([c.VarIntCoder(), c.StrUtf8Coder()]), (7, "ab"), "076162"),    # the last part is not prefixed
    (c.IterableCoder(c.StrUtf8Coder()), ["a", "bc"], "00000002" "0161" "026263"),  # int32 count, nested parts
    (c.NullableCoder(c.StrUtf8Coder()), None, "00"),
    (c.NullableCoder(c.StrUtf8Coder()), "x", "0178"),
]


@pytest.mark.parametrize(("coder", "value", "encoded"), HAND, ids=[f"{type(h[0]).__name__}-{i}" for i, h in enumerate(HAND)])
def test_encodings(coder: c.Coder, value: object, encoded: str) -> None:
    assert coder.encode(value).hex() == encoded
    assert coder.decode(bytes.fromhex(encoded)) == (list(value) if isinstance(value, list) else value)


def test_a_custom_coder_and_the_registry() -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    class PointCoder(coders.Coder):
        def encode(self, p: Point) -> bytes:
            return f"{p.x},{p.y}".encode()

        def decode(self, b: bytes) -> Point:
            x, y = b.decode().split(",")
            return Point(int(x), int(y))

    coders.registry.register_coder(Point, PointCoder)
    coder = coders.registry.get_coder(Point)
    assert isinstance(coder, PointCoder) and vars(coder.decode(coder.encode(Point(1, 2)))) == {"x": 1, "y": 2}
    assert isinstance(coders.registry.get_coder(str), c.StrUtf8Coder)
    assert isinstance(coders.registry.get_coder(object), c.FastPrimitivesCoder)
    with pytest.raises(TypeError, match="register_coder needs a Coder subclass"):
        coders.registry.register_coder(Point, dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be made deterministic for step 'Group'"):
        c.PickleCoder().as_deterministic_coder("Group")


def test_the_encodings_equal_beams(tmp_path: Path) -> None:
    python = beam_python()
    if python is None:
        pytest.skip(NO_BEAM)
    script = textwrap.dedent('''\
        from apache_beam.coders import coders as c
        from apache_beam.utils.timestamp import Timestamp
        CASES = [
            (c.VarIntCoder(), 300), (c.VarIntCoder(), -1), (c.VarInt32Coder(), -3), (c.StrUtf8Coder(), "é"),
            (c.BytesCoder(), b"\\x00z"), (c.FloatCoder(), 1.5), (c.SinglePrecisionFloatCoder(), 1.5),
            (c.BooleanCoder(), True), (c.BigEndianShortCoder(), -2), (c.ByteCoder(), 200),
            (c.TimestampCoder(), Timestamp(5.25)),
            (c.TupleCoder([c.StrUtf8Coder(), c.VarIntCoder()]), ("ab", 7)),
            (c.TupleCoder([c.VarIntCoder(), c.StrUtf8Coder()]), (7, "ab")),
            (c.IterableCoder(c.StrUtf8Coder()), ["a", "bc"]),
            (c.NullableCoder(c.StrUtf8Coder()), None), (c.NullableCoder(c.StrUtf8Coder()), "x"),
            (c.TupleCoder([c.TupleCoder([c.StrUtf8Coder(), c.FloatCoder()]), c.ListCoder(c.VarIntCoder())]), (("k", 2.0), [1, 300])),
        ]
        for coder, value in CASES:
            print(coder.encode(value).hex())
        ''')
    (tmp_path / "beam_coders.py").write_text(script)
    (tmp_path / "tidal_coders.py").write_text(script.replace("apache_beam", "tidal"))
    beam_out = subprocess.run([str(python), "beam_coders.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert beam_out.returncode == 0, beam_out.stderr[-2000:]
    import sys

    tidal_out = subprocess.run([sys.executable, "tidal_coders.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert tidal_out.returncode == 0, tidal_out.stderr[-2000:]
    assert tidal_out.stdout.split() == beam_out.stdout.split()
    assert tidal_out.stdout.split()[:16] == [h[2] for h in HAND]
