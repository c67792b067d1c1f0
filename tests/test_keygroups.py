"""Key groups and restoring keyed state at another parallelism, in runners/core (no Ray).

A keyed stage runs as ``old`` instances of a LocalExecutor, each fed only the
keys of its key-group range (as a keyed exchange would feed it). Half-way,
every instance is snapshotted (through pickle, as a checkpoint part is); then
``new`` instances are each restored from the merge of the old snapshots they
need and get the rest of the input, routed by the new ranges. What the old
and the new instances emitted together must be exactly the output worked out
in plain Python: every (key, window) complete, once, with its pane — so user
state, timers, window buffers and pane history all moved to the new owner.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterable

import cloudpickle
import pytest

import tidal as td
from tidal import trigger, window
from tidal.capability_matrix.sinks import RecordTo, read_records
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.model.trigger import PANE_INFO_UNKNOWN, PaneInfo, PaneInfoTiming
from tidal.model.window import IntervalWindow
from tidal.runners.core.executor import LocalExecutor, ManualClock, edge_id_of
from tidal.runners.core.keygroups import (
    KeyedSnapshot,
    check_max_parallelism,
    key_group_of,
    key_group_range,
    overlapping,
    owner_of,
)
from tidal.runners.core.operators import PrecombineOperator
from tidal.runners.core.plan import build_plan
from tidal.runners.core.sources import AssignedSplits, PartitionsDriver, SplitsDriver
from tidal.transforms.core import CreateSource

M = 128
KEYS = [f"k{i}" for i in range(10)]
#: (key, value, seconds): value v at v/2 s, keys in turn; windows of 10 s hold 20 values each.
EVENTS = [(KEYS[v % len(KEYS)], v, v / 2) for v in range(200)]
FIRST_HALF = [e for e in EVENTS if e[2] < 60]
SECOND_HALF = [e for e in EVENTS if e[2] >= 60]
#: Reached before the snapshot: windows [0, 10), [10, 20) and [20, 30) have fired.
MID_WATERMARK_US = 30_000_000
#: A late element after the restore, for the window [10, 20) the old instances fired.
LATE = ("k3", 1000, 15.0)


# -- the ranges ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 128])
def test_the_ranges_of_n_instances_cover_every_key_group_once_and_agree_with_the_owner(n: int) -> None:
    ranges = [key_group_range(i, n, M) for i in range(n)]
    assert [g for r in ranges for g in r] == list(range(M))  # contiguous, in order, each once
    assert all(len(r) >= 1 for r in ranges)
    for i, r in enumerate(ranges):
        assert all(owner_of(g, n, M) == i for g in r)


def test_overlapping_names_the_old_owners_of_a_new_range() -> None:
    # 2 -> 3: new 0 owns 0..42 (old 0's), new 1 43..85 (old 0 up to 63, old 1 from 64), new 2 86..127 (old 1's).
    assert [overlapping(i, 3, 2, M) for i in range(3)] == [[0], [0, 1], [1]]
    assert overlapping(0, 1, 3, M) == [0, 1, 2]


def test_a_parallelism_above_the_key_groups_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="parallelism 200 is more than max_parallelism 128.*raise max_parallelism"):
        check_max_parallelism(200, 128)


# -- a keyed stage run as n instances -------------------------------------------------------
class BufferUntilWindowEnd(td.DoFn):
    """Keeps a window's values per key in a bag; a timer at the window's end emits them sorted."""

    BUF = td.BagStateSpec("buf")
    SEEN = td.ReadModifyWriteStateSpec("seen")
    FLUSH = td.TimerSpec("flush", td.TimeDomain.WATERMARK)

    def process(
        self,
        kv: Any,
        w: Any = td.DoFn.WindowParam,
        buf: Any = td.DoFn.StateParam(BUF),
        seen: Any = td.DoFn.StateParam(SEEN),
        flush: Any = td.DoFn.TimerParam(FLUSH),
    ) -> Iterable[Any]:
        buf.add(kv[1])
        seen.write((seen.read() or 0) + 1)
        flush.set(w.max_timestamp())
        return ()

    @td.on_timer(FLUSH)
    def emit(self, key: Any = td.DoFn.KeyParam, buf: Any = td.DoFn.StateParam(BUF), seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        values = sorted(buf.read())
        assert seen.read() == len(values)
        yield (key, values)


def _windowed(events: list[tuple[str, int, float]]) -> list[Any]:
    out = []
    for key, value, seconds in events:
        start = int(seconds // 10) * 10
        out.append(((key, value), int(seconds * 1_000_000), (IntervalWindow(start, start + 10),), PANE_INFO_UNKNOWN))
    return out


def _plan(kind: str, folder: Path) -> Any:
    p = td.Pipeline(runner="direct")
    events = p | td.Create([(k, v) for k, v, _ in EVENTS])
    if kind == "state":
        keyed = events | td.WindowInto(window.FixedWindows(10)) | td.ParDo(BufferUntilWindowEnd())
    elif kind == "group":
        keyed = (
            events
            | td.WindowInto(window.FixedWindows(10))
            | td.GroupByKey()
            | td.MapTuple(lambda k, vs: (k, sorted(vs)))
        )
    else:  # a combine whose trigger keeps windows open for late data (so it is not lifted)
        keyed = (
            events
            | td.WindowInto(
                window.FixedWindows(10),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=100,
            )
            | td.CombinePerKey(sum)
        )
    _ = keyed | td.ParDo(RecordTo(str(folder), ("value", "window", "timestamp", "pane")))
    return build_plan(p.graph())


class Instances:
    """``n`` in-process instances of the plan's keyed stage, fed by key group as a keyed exchange would."""

    def __init__(self, plan: Any, n: int) -> None:
        self.plan = plan
        self.n = n
        self.stage = next(s for s in plan.stages if s.input_kind == "keyed")
        self.edge = edge_id_of(self.stage.root.inputs[0])
        self.executors = [
            LocalExecutor(plan, clock=ManualClock(0), stage_ids={self.stage.id}, max_parallelism=M) for _ in range(n)
        ]

    def open(self) -> None:
        for ex in self.executors:
            for op in ex.ops:
                op.open()
            ex.propagate()

    def push(self, events: list[tuple[str, int, float]]) -> None:
        parts: list[list[Any]] = [[] for _ in range(self.n)]
        for wv in _windowed(events):
            parts[owner_of(key_group_of(wv[0][0], M), self.n, M)].append(wv)
        for ex, part in zip(self.executors, parts):
            if part:
                ex.push(self.edge, part)

    def advance(self, watermark_us: int) -> None:
        for ex in self.executors:
            ex.set_remote_watermark(self.edge, 0, watermark_us)
            ex.propagate()

    def snapshots(self) -> dict[int, Any]:
        return {i: pickle.loads(cloudpickle.dumps(ex.snapshot())) for i, ex in enumerate(self.executors)}

    def close(self) -> None:
        for ex in self.executors:
            for op in ex.ops:
                op.close()


def _expected(kind: str) -> list[Any]:
    by_window: dict[tuple[str, int], list[int]] = {}
    for key, value, seconds in EVENTS:
        by_window.setdefault((key, int(seconds // 10) * 10), []).append(value)
    on_time = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)
    out = []
    for (key, start), values in sorted(by_window.items()):
        w = IntervalWindow(start, start + 10)
        end_us = (start + 10) * 1_000_000 - 1
        if kind == "state":
            # A timer's output carries no pane.
            out.append(((key, sorted(values)), w, end_us, PANE_INFO_UNKNOWN))
        elif kind == "group":
            out.append(((key, sorted(values)), w, end_us, on_time))
        else:
            # Windows that end by 80 s fire on time while they may still get late data; the last
            # two fire at the end of input, which also expires them (is_last).
            out.append(((key, sum(values)), w, end_us, PaneInfo(True, start >= 80, PaneInfoTiming.ON_TIME, 0, 0)))
    if kind == "combine":
        # The late element reopens [10, 20) for k3: accumulating, its LATE pane holds the window's
        # sum plus the late value, with the pane history of the old instance (index 1).
        late_key, late_value, late_t = LATE
        start = int(late_t // 10) * 10
        window_sum = sum(by_window[(late_key, start)])
        out.append(
            (
                (late_key, window_sum + late_value),
                IntervalWindow(start, start + 10),
                (start + 10) * 1_000_000 - 1,
                PaneInfo(False, False, PaneInfoTiming.LATE, 1, 1),
            )
        )
    return sorted(out, key=lambda r: (r[0][0], r[1].start, r[3].index))


def _records(folder: Path) -> list[Any]:
    return sorted(
        ((value, w, ts.micros, pane) for value, w, ts, pane in read_records(folder)),
        key=lambda r: (r[0][0], r[1].start, r[3].index),
    )


@pytest.mark.parametrize("kind", ["state", "group", "combine"])
@pytest.mark.parametrize("old, new", [(2, 3), (2, 1), (3, 2), (1, 2)])
def test_a_snapshot_of_old_instances_restores_at_another_parallelism_with_exact_output(
    tmp_path: Path, kind: str, old: int, new: int
) -> None:
    plan = _plan(kind, tmp_path)
    before = Instances(plan, old)
    before.open()
    before.push(FIRST_HALF)
    before.advance(MID_WATERMARK_US)
    snaps = before.snapshots()
    before.close()
    fired_before = len(read_records(tmp_path))
    assert fired_before == 3 * len(KEYS)  # [0, 10), [10, 20), [20, 30) of every key: the rest is in the snapshots

    after = Instances(plan, new)
    for i, ex in enumerate(after.executors):
        needed = LocalExecutor.parts_for(i, new, old, M, [False] * old)
        ex.restore(ex.merge_snapshots({j: snaps[j] for j in needed}, i, new), commit=False)
    after.open()
    after.push(SECOND_HALF)
    if kind == "combine":
        after.advance(80_000_000)
        after.push([LATE])
    after.advance(MAX_TIMESTAMP_US)
    after.close()
    assert _records(tmp_path) == _expected(kind)


def test_keyed_snapshots_hold_each_key_in_its_group_only(tmp_path: Path) -> None:
    plan = _plan("state", tmp_path)
    one = Instances(plan, 1)
    one.open()
    one.push(FIRST_HALF)
    (snap,) = one.snapshots().values()
    [(_label, _base, keyed, _staged)] = snap["ops"][:1]
    assert isinstance(keyed, KeyedSnapshot)
    for group, items in keyed.groups.items():
        for item in items:
            if item[0] == "cells":
                assert key_group_of(item[1][0], M) == group


def test_partial_combines_of_one_key_from_two_old_instances_merge_into_one() -> None:
    def table_of(snap: KeyedSnapshot) -> dict[Any, Any]:
        op = PrecombineOperator("Pre", td.combiners.CountCombineFn())
        op.restore(snap)
        return op.table

    w = IntervalWindow(0, 10)
    a = PrecombineOperator("Pre", td.combiners.CountCombineFn())
    b = PrecombineOperator("Pre", td.combiners.CountCombineFn())
    a.process([(("x", 1), 0, (w,), PANE_INFO_UNKNOWN)] * 3)
    b.process([(("x", 1), 0, (w,), PANE_INFO_UNKNOWN)] * 2 + [(("y", 1), 0, (w,), PANE_INFO_UNKNOWN)])
    merged = a.rescale_snapshot([a.snapshot(), b.snapshot()], [True, True], range(M))
    assert table_of(merged) == {("x", w): 5, ("y", w): 1}
    # Split over two new instances, each key's partial count goes to the owner of its group, once.
    halves = [a.rescale_snapshot([a.snapshot(), b.snapshot()], [i == 0, i == 1], key_group_range(i, 2, M)) for i in range(2)]
    tables = [table_of(h) for h in halves]
    assert sorted(kv for t in tables for kv in t.items()) == [(("x", w), 5), (("y", w), 1)]


# -- sources split once, positions per split ---------------------------------------------
def _read_all(driver: Any, clock: Any = None) -> list[Any]:
    out = []
    while not driver.done:
        event = driver.poll(clock)
        out.extend(v for v, *_ in event.bundle or [])
    return out


def test_splits_are_handed_out_in_contiguous_ranges() -> None:
    assert [a.ids for a in AssignedSplits.assign(list("abcdefg"), 3)] == [(0, 1, 2), (3, 4), (5, 6)]
    assert [a.ids for a in AssignedSplits.assign(list("ab"), 1)] == [(0, 1)]


def test_a_splits_driver_fills_bundles_across_splits_and_resumes_each_split_elsewhere() -> None:
    pieces = CreateSource(list(range(100))).split(10)  # ten splits of ten
    [first, second] = AssignedSplits.assign(pieces, 2)
    driver = SplitsDriver("Read", first, bundle_size=13)
    driver.open(None)
    event = driver.poll(None)
    assert [v for v, *_ in event.bundle] == list(range(13))  # across splits 0 and 1
    assert driver.offset == {0: -1, 1: 3, 2: 0, 3: 0, 4: 0}
    positions = [
        {"offset": driver.offset, "watermark": driver.watermark, "done": driver.done},
        {"offset": {5: 4, 6: 0, 7: 0, 8: 0, 9: 0}, "watermark": driver.watermark, "done": False},
    ]
    # At parallelism 1 one driver reads all ten splits, each from where it was.
    [everything] = AssignedSplits.assign(pieces, 1)
    restored = SplitsDriver("Read", everything, bundle_size=13)
    pos = restored.merge_positions(positions)
    restored.offset, restored.watermark, restored.done = pos["offset"], pos["watermark"], pos["done"]
    restored.open(None)
    assert sorted(_read_all(restored)) == [v for v in range(100) if v >= 13 and not 50 <= v < 54]


class _Ticks(td.UnboundedSource):
    """Partition ``p`` of three yields (p, i) for i < 5."""

    def __init__(self, partition: int | None = None) -> None:
        self.partition = partition

    def split(self, desired_count: int) -> list[td.UnboundedSource]:
        return [_Ticks(p) for p in range(3)]

    def open_reader(self, start_offset: Any = None) -> Any:
        from tidal.io.unbounded import _GeneratorReader

        partition = self.partition
        return _GeneratorReader(lambda: [(partition, i) for i in range(5)], 0, start_offset)


def test_a_partitions_driver_reads_each_partition_with_its_own_offset() -> None:
    [both, third] = AssignedSplits.assign(_Ticks().split(8), 2, bounded=False)
    driver = PartitionsDriver("Ticks", both)
    driver.open(None)
    got: list[Any] = []
    while len(got) < 10 or not driver.done:
        got.extend(v for v, *_ in driver.poll(None).bundle or [])
    driver.close()
    assert sorted(got) == [(p, i) for p in (0, 1) for i in range(5)]
    assert {k: v["offset"] for k, v in driver.offset.items()} == {0: 5, 1: 5}
