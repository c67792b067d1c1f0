"""LocalExecutor.snapshot / restore, the core every runner's checkpoints are made of.

A TestStream job with pending event-time and processing-time timers is
stopped after each of its events in turn, snapshotted (through pickle, as a
checkpoint part would be) and finished by a fresh executor restored from the
snapshot: what the two halves emitted together is exactly the output of a
run without a stop — every timer fires once, at its own time, whichever
events came before the snapshot.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import tidal as td
from tidal import window
from tidal.capability_matrix.cases.beyond import _TimersAcrossRestore, _timer_lines, _timer_stream
from tidal.capability_matrix.sinks import RecordTo, read_records
from tidal.runners.core.executor import LocalExecutor, ManualClock
from tidal.runners.core.plan import build_plan
from tidal.runners.core.stateful import StatefulParDoOperator

EVENTS = len(_timer_stream().events)


def _plan(out: Path) -> Any:
    p = td.Pipeline(runner="direct")
    (
        p
        | _timer_stream()
        | td.WindowInto(window.FixedWindows(30), allowed_lateness=3600)
        | td.ParDo(_TimersAcrossRestore())
        | td.ParDo(RecordTo(str(out), ("value",)))
    )
    return build_plan(p.graph())


def _run_until(ex: LocalExecutor, events: int) -> None:
    """Open ``ex`` and replay the first ``events`` events of its TestStream, as the run loop would."""
    for op in ex.ops:
        op.open()
    drivers = [d for d, _, _ in ex.sources]
    for d in drivers:
        d.open(ex.clock)
    ex.propagate()
    for _ in range(events):
        ex.poll_sources(drivers)
        ex.propagate()


def test_an_uninterrupted_run_gives_the_lines_worked_out_by_hand(tmp_path: Path) -> None:
    LocalExecutor(_plan(tmp_path), clock=ManualClock(0)).run()
    assert sorted(read_records(tmp_path)) == _timer_lines()


#: The timers pending after the first element of each 30 s window: an event-time timer at its end,
#: a processing-time timer at the time its first element names (25 s and 55 s).
PENDING = {
    1: {(k, window.IntervalWindow(0, 30), name): t for k in ("k0", "k1") for name, t in (("flush", 29_999_999), ("ping", 25_000_000))},
    10: {(k, window.IntervalWindow(30, 60), name): t for k in ("k0", "k1") for name, t in (("flush", 59_999_999), ("ping", 55_000_000))},
}


@pytest.mark.parametrize("stop_after", range(1, EVENTS))
def test_timers_pending_at_a_snapshot_fire_once_after_the_restore(tmp_path: Path, stop_after: int) -> None:
    plan = _plan(tmp_path)
    first = LocalExecutor(plan, clock=ManualClock(0))
    _run_until(first, stop_after)
    [stateful] = [op for op in first.ops if isinstance(op, StatefulParDoOperator)]
    if stop_after in PENDING:
        assert stateful.timers == PENDING[stop_after]
    snap = pickle.loads(cloudpickle.dumps(first.snapshot()))
    for op in first.ops:
        op.close()

    second = LocalExecutor(plan, clock=ManualClock(0))
    second.restore(snap)
    second.run()
    assert sorted(read_records(tmp_path)) == _timer_lines()  # nothing lost, nothing twice
