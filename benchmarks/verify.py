"""Benchmarks check their output before they report a figure.

A runner that dropped elements would post better numbers, so every benchmark
works out its expected result in plain Python (or numpy, for the large Arrow
inputs) before the timed runs, records what each run's pipeline emitted, and
compares the two after the run, outside the timed region. A difference raises
:class:`BenchmarkMismatch`, and the benchmark stops before printing a figure.

Two recorders, both working on every runner (they write files, as the
capability matrix's sinks do):

* :meth:`ExpectedOutput.sink` records every output element; for outputs of
  thousands of elements, compared as a multiset (or with a tolerance).
* :class:`Tally` counts the elements and sums their values; for outputs of
  hundreds of thousands, where recording each would weigh on the figure.
  :class:`BatchTally` does the same for Arrow batches (a batched DoFn).

>>> import tidal as td
>>> check = ExpectedOutput("doubling", [2, 4, 6])
>>> with td.Pipeline() as p:
...     _ = p | td.Create([1, 2, 3]) | td.Map(lambda x: 2 * x) | check.sink()
>>> check.verify()
>>> with td.Pipeline() as p:
...     _ = p | td.Create([1, 2]) | td.Map(lambda x: 2 * x) | check.sink()
>>> check.verify()
Traceback (most recent call last):
...
tidal.benchmarks.verify.BenchmarkMismatch: doubling: the output differs from the expected result: got 2 element(s), expected 3: missing [6]
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import tempfile
import uuid
from collections import Counter
from typing import Any, Callable, Iterable

import tidal as td
from tidal.capability_matrix.execute import compare_multisets
from tidal.capability_matrix.sinks import RecordValues, read_records

__all__ = ["BenchmarkMismatch", "ExpectedOutput", "Tally", "BatchTally", "read_tally", "close_per_key", "check_tally", "counted"]


class BenchmarkMismatch(AssertionError):
    """A benchmark's pipeline emitted something other than its expected result."""


def close_per_key(rel_tol: float = 1e-9) -> Callable[[list[Any], list[Any]], str | None]:
    """A comparison of (key, float) outputs: per key, the sorted values must agree within ``rel_tol``
    (floating-point sums differ in their last bits with the order of the additions).

    >>> close_per_key()([("a", 0.1 + 0.2)], [("a", 0.3)]) is None
    True
    >>> close_per_key()([("a", 0.5)], [("a", 0.3)])
    "key 'a': got [0.5], expected [0.3]"
    """

    def compare(actual: list[Any], expected: list[Any]) -> str | None:
        def per_key(pairs: list[Any]) -> dict[Any, list[float]]:
            out: dict[Any, list[float]] = {}
            for key, value in pairs:
                out.setdefault(key, []).append(value)
            return {k: sorted(vs) for k, vs in out.items()}

        got, want = per_key(actual), per_key(expected)
        if set(got) != set(want):
            return f"keys differ: unexpected {sorted(set(got) - set(want))[:3]}, missing {sorted(set(want) - set(got))[:3]}"
        for key in sorted(want):
            a, e = got[key], want[key]
            if len(a) != len(e) or not all(math.isclose(x, y, rel_tol=rel_tol, abs_tol=rel_tol) for x, y in zip(a, e)):
                return f"key {key!r}: got {a[:5]}, expected {e[:5]}"
        return None

    return compare


class ExpectedOutput:
    """The output a benchmark's pipeline must emit, and a sink that records what it did emit.

    ``compare(actual, expected)`` returns what differs, or None; the default
    compares them as multisets, exactly.
    """

    def __init__(self, benchmark: str, expected: Iterable[Any], compare: Callable[[list[Any], list[Any]], str | None] | None = None) -> None:
        self.benchmark = benchmark
        self.expected = list(expected)
        self.compare = compare or compare_multisets
        self._folder: str | None = None

    def sink(self) -> td.ParDo:
        """A fresh recorder for one run (apply it to the pipeline's output)."""
        self._folder = tempfile.mkdtemp(prefix="tidal-bench-out-")
        return td.ParDo(RecordValues(self._folder))

    def verify(self) -> None:
        """Compare what the last run recorded with the expected output; raise BenchmarkMismatch if they differ."""
        if self._folder is None:
            raise BenchmarkMismatch(f"{self.benchmark}: no run recorded its output (apply sink() to the pipeline)")
        try:
            actual = read_records(self._folder)
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        problem = self.compare(actual, self.expected)
        if problem is not None:
            raise BenchmarkMismatch(f"{self.benchmark}: the output differs from the expected result: {problem}")


class Tally(td.DoFn):
    """Counts the elements that reach it and sums ``value(element)``; each worker writes its tally to
    ``folder`` when it is torn down (see :func:`read_tally`)."""

    def __init__(self, folder: str, value: Callable[[Any], float]) -> None:
        self.folder = folder
        self.value = value
        self.n = 0
        self.total = 0.0

    def process(self, element: Any) -> Iterable[Any]:
        self.n += 1
        self.total += self.value(element)
        return ()

    def teardown(self) -> None:
        _write_tally(self)


def _write_tally(tally: "Tally | BatchTally") -> None:
    """Write a tally's count and sum to its folder (once per worker, at teardown), and reset them."""
    if tally.n:
        path = os.path.join(tally.folder, f"tally-{uuid.uuid4().hex}.pkl")
        with open(path + ".tmp", "wb") as f:
            pickle.dump((tally.n, tally.total), f)
        os.replace(path + ".tmp", path)
        tally.n, tally.total = 0, 0.0


class BatchTally(td.DoFn):
    """A batched :class:`Tally` (it defines ``process_batch``): counts the rows of each Arrow batch
    it is given and sums ``value(batch)``, so a runner that hands a batched DoFn Arrow columns
    delivers its output without a Python object per row. It writes what :func:`read_tally` reads.

    >>> folder = tempfile.mkdtemp()
    >>> with td.Pipeline() as p:
    ...     _ = p | td.Create([("a", 1.5), ("b", 2.5)]) | td.ParDo(BatchTally(folder, lambda b: float(b.column("value").to_numpy().sum())))
    >>> read_tally(folder)
    (2, 4.0)
    """

    def __init__(self, folder: str, value: Callable[[Any], float]) -> None:
        self.folder = folder
        self.value = value
        self.n = 0
        self.total = 0.0

    def process_batch(self, batch: Any) -> Iterable[Any]:
        self.n += batch.num_rows
        self.total += self.value(batch)
        return ()

    def teardown(self) -> None:
        _write_tally(self)


def read_tally(folder: str) -> tuple[int, float]:
    """The elements counted and the values summed by every Tally that wrote to ``folder``."""
    n, total = 0, 0.0
    for name in os.listdir(folder):
        if name.startswith("tally-") and name.endswith(".pkl"):
            with open(os.path.join(folder, name), "rb") as f:
                got = pickle.load(f)
            n, total = n + got[0], total + got[1]
    return n, total


def check_tally(benchmark: str, folder: str, count: int, total: float, rel_tol: float = 1e-9) -> None:
    """Raise BenchmarkMismatch unless the tallies in ``folder`` add up to ``count`` elements summing to ``total``.

    >>> folder = tempfile.mkdtemp()
    >>> with td.Pipeline() as p:
    ...     _ = p | td.Create([1.5, 2.5]) | td.ParDo(Tally(folder, float))
    >>> check_tally("sum", folder, 2, 4.0)
    >>> check_tally("sum", folder, 3, 4.0)
    Traceback (most recent call last):
    ...
    tidal.benchmarks.verify.BenchmarkMismatch: sum: 2 output element(s) summing to 4.0, expected 3 summing to 4.0
    """
    n, got = read_tally(folder)
    if n != count or not math.isclose(got, total, rel_tol=rel_tol, abs_tol=rel_tol):
        raise BenchmarkMismatch(f"{benchmark}: {n} output element(s) summing to {got!r}, expected {count} summing to {total!r}")


def counted(pairs: Iterable[tuple[Any, Any]]) -> list[Any]:
    """(key, n) for every key of ``pairs``'s keys counted: a word count's expected output.

    >>> sorted(counted([(0, "a"), (1, "b"), (2, "a")]))
    [('a', 2), ('b', 1)]
    """
    return list(Counter(word for _, word in pairs).items())
