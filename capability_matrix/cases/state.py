"""Cases for the "Queryable state" row: reading a running job's keyed state with ``result.query_state``."""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Iterator

import tidal as td
from tidal.capability_matrix.case import CaseContext, CaseFailure, ExpectedError, case

ROW = "Queryable state"
_KEYS = 3
_HALF = 60  # elements before the stream pauses (20 per key), and after it


class _PausedHalfway:
    """(k<v % 3>, v) for v < 2 * _HALF, a short pause every 10; after _HALF it waits for the file ``stop``."""

    def __init__(self, stop: str) -> None:
        self.stop = stop

    def __call__(self) -> Iterator[Any]:
        for v in range(2 * _HALF):
            if v == _HALF:
                deadline = time.monotonic() + 60
                while not os.path.exists(self.stop) and time.monotonic() < deadline:
                    time.sleep(0.01)
            if v % 10 == 0:
                time.sleep(0.01)
            yield f"k{v % _KEYS}", v


class _Count(td.DoFn):
    """A running count per key (value state) and the values seen, in order (bag state)."""

    COUNT = td.ReadModifyWriteStateSpec("count")
    SEEN = td.BagStateSpec("seen")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT), seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        seen.add(kv[1])
        yield kv[0], n


def _stream(p: td.Pipeline, ctx: CaseContext) -> Any:
    source = td.GeneratorSource(_PausedHalfway(str(ctx.workdir / "stop")))
    return p | "Paced" >> td.Read(source) | "Count" >> td.ParDo(_Count())


def _read_until(result: td.PipelineResult, key: str, wanted: int, seconds: float = 30) -> list[Any]:
    reads: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reads.append(result.query_state("Count", "count", key))
        if reads[-1] == wanted:
            return reads
        time.sleep(0.01)
    raise CaseFailure(f"query_state never read {key}'s count {wanted} while the stream paused (last reads {reads[-5:]})")


def _drive_running(p: td.Pipeline, ctx: CaseContext) -> Any:
    result = p.run()
    stop = ctx.workdir / "stop"
    try:
        counts = [c for c in _read_until(result, "k0", _HALF // _KEYS) if c is not None]
        for k in range(1, _KEYS):
            _read_until(result, f"k{k}", _HALF // _KEYS)
        seen = result.query_state("Count", "seen", "k1")
        if seen != list(range(1, _HALF, _KEYS)):
            raise CaseFailure(f"the bag state of k1 read {seen} while the stream paused, not {list(range(1, _HALF, _KEYS))}")
        stop.touch()
        while True:
            try:
                counts.append(result.query_state("Count", "count", "k0"))
            except td.JobFinishedError:
                break
            time.sleep(0.005)
        if counts != sorted(counts):
            raise CaseFailure(f"a counter read by query_state went back: {counts}")
    finally:
        stop.touch()
    result.wait_until_finish(30)
    if not result.state.is_terminal:
        result.cancel()
        raise CaseFailure("the stream did not finish after its source ended")
    try:
        result.query_state("Count", "count", "k0")
    except td.JobFinishedError:
        return result
    raise CaseFailure("query_state of a finished job did not say that it finished")


@case("queryable_state.running_counts", ROW, expected=[(f"k{v % _KEYS}", v // _KEYS + 1) for v in range(2 * _HALF)],
      drive=_drive_running)
def running_counts(p: td.Pipeline, ctx: CaseContext) -> Any:
    """result.query_state reads each key's count and bag while a stream runs: the values the state
    held at a pause, never going back afterwards; a finished job says it finished."""
    return _stream(p, ctx)


def _drive_bad_name(p: td.Pipeline, ctx: CaseContext) -> Any:
    result = p.run()
    try:
        _read_until(result, "k0", _HALF // _KEYS)
        result.query_state("Count", "total", "k0")
    finally:
        (ctx.workdir / "stop").touch()
        result.wait_until_finish(30)
    return result


@case("queryable_state.unknown_state_name", ROW, drive=_drive_bad_name,
      error=ExpectedError(td.StateQueryError, "step 'Count' has no state named 'total'", also=("its states are: 'count', 'seen'",)))
def unknown_state_name(p: td.Pipeline, ctx: CaseContext) -> Any:
    """A query of a state name the step does not declare is refused with the names it has."""
    return _stream(p, ctx)
