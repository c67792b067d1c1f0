"""Pieces the Ray scale tests share: a partitioned replayable stream, the pipelines that read it, and their expected output.

``Stream`` has three partitions; partition ``p`` yields ``(k<v % 5>, v)`` at
``v / 100`` s for the values ``v < N`` with ``v % 3 == p``, pausing now and
then, so a job on it runs for a couple of seconds and can be interrupted
(a savepoint, a killed worker, a removed node) while it runs.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

import cloudpickle

import tidal as td
from tidal.io.textio import read_text
from tidal.io.unbounded import UnboundedReader

# Workers cannot import this module (it is on the tests' path only): ship its classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N = 3000
KEYS = 5
PARTITIONS = 3


class _PartitionReader(UnboundedReader):
    def __init__(self, partition: int, pause: float, start_offset: Any) -> None:
        self._partition = partition
        self._pause = pause
        self._start = start_offset or 0
        super().__init__(0, start_offset)

    def _produce(self) -> Iterator[Any]:
        # A replay from ``start_offset`` skips the elements before it (the reader's offset counts from there).
        for i, v in enumerate(range(self._partition, N, PARTITIONS)):
            if i < self._start:
                continue
            if i % 50 == 0:
                time.sleep(self._pause)
            yield td.TimestampedValue((f"k{v % KEYS}", v), v / 100)


class Stream(td.UnboundedSource):
    """The test stream, or (``partition`` given) one of its three partitions."""

    def __init__(self, partition: int | None = None, pause: float = 0.08) -> None:
        self.partition = partition
        self.pause = pause

    def split(self, desired_count: int) -> list[td.UnboundedSource]:
        if self.partition is not None:
            return [self]
        return [Stream(p, self.pause) for p in range(PARTITIONS)]

    def open_reader(self, start_offset: Any = None) -> UnboundedReader:
        if self.partition is None:
            raise ValueError("read the partitions of Stream (split it), not the whole")
        return _PartitionReader(self.partition, self.pause, start_offset)

    def display_name(self) -> str:
        return "Stream"


class NumberPerKey(td.DoFn):
    """Numbers each key's elements 1, 2, 3, ... in keyed state."""

    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[str]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield f"{kv[0]},{n}"


def sums_and_numbers(p: td.Pipeline, out: Path, source: td.UnboundedSource | None = None) -> None:
    """Windowed sums per key and 1 s window, and keyed numbering, each into WriteToText under ``out``."""
    events = p | "Read" >> td.Read(source or Stream())
    (
        events
        | td.WindowInto(td.window.FixedWindows(1))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | "WriteSums" >> td.WriteToText(str(out / "sums"))
    )
    events | td.ParDo(NumberPerKey()) | "WriteNumbers" >> td.WriteToText(str(out / "numbers"))


EXPECTED_SUMS = Counter(
    f"k{k},{w},{sum(v for v in range(N) if v % KEYS == k and v // 100 == w)}" for w in range(N // 100) for k in range(KEYS)
)
EXPECTED_NUMBERS = Counter(f"k{k},{i + 1}" for k in range(KEYS) for i in range(N // KEYS))


def published(out: Path) -> tuple[Counter[str], Counter[str]]:
    """What the two sinks published (files whose names start with the prefixes)."""
    return Counter(read_text(str(out / "sums-*"))), Counter(read_text(str(out / "numbers-*")))


def wait_for(condition: Any, timeout: float = 60.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(0.02)


def pids_of(folder: str | os.PathLike[str]) -> set[str]:
    """The processes that RecordTo sinks wrote ``folder``'s files from (their names start with the pid)."""
    return {name.split("-")[0] for name in os.listdir(folder) if name.endswith(".pkl")}
