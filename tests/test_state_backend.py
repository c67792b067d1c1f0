"""The disk state backend: a spilling table, its key encoding, and pipelines equal on both backends on every runner."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal as td
from tidal import window
from tidal.model.window import GlobalWindow, IntervalWindow
from tidal.runners.core import statebackend
from tidal.runners.core.statebackend import (
    DiskBackend,
    MemoryBackend,
    SpilledTable,
    StateBackendSpec,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    open_backend,
)
from tidal.testing import assert_that, equal_to

TV = window.TimestampedValue
W = IntervalWindow.from_micros
US = 1_000_000
RUNNERS = ["direct", "ray", "microbatch"]


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


def table(tmp_path: Path, cache: int = 2) -> SpilledTable:
    backend = DiskBackend(str(tmp_path), cache_entries=cache)
    t = backend.table("t")
    assert isinstance(t, SpilledTable)
    t._keep = backend  # type: ignore[attr-defined]  # the backend (and its folder) live as long as the table
    return t


# -- the spilling table ---------------------------------------------------------------
def test_a_table_keeps_only_its_cache_in_memory_and_reads_spilled_entries_back(tmp_path: Path) -> None:
    t = table(tmp_path, cache=8)
    for i in range(100):
        t[("k", i)] = [i]
    assert len(t) == 100
    assert t.cached <= 8
    assert t[("k", 3)] == [3]  # spilled long ago
    assert dict(t.items()) == {("k", i): [i] for i in range(100)}
    assert sorted(t) == [("k", i) for i in range(100)]
    assert sorted(v[0] for v in t.values()) == list(range(100))


def test_in_place_changes_to_a_read_back_entry_survive_its_next_eviction(tmp_path: Path) -> None:
    t = table(tmp_path, cache=1)
    t["a"] = {"bag": [1]}
    t["b"] = {"bag": []}  # "a" goes to disk
    t["a"]["bag"].append(2)  # read back, changed in place
    t["b"]["bag"].append(3)  # "a" goes to disk again, with the change
    t["c"] = {}
    assert t["a"] == {"bag": [1, 2]}
    assert t["b"] == {"bag": [3]}
    assert len(t) == 3


def test_overwrite_delete_pop_and_contains_count_each_key_once(tmp_path: Path) -> None:
    t = table(tmp_path, cache=1)
    t["a"] = 1
    t["b"] = 2
    t["a"] = 10  # "a" was on disk: replaced, not added
    assert len(t) == 2
    assert "a" in t and "b" in t and "zz" not in t
    del t["b"]
    assert len(t) == 1 and "b" not in t
    assert t.pop("a") == 10
    assert t.pop("a", "gone") == "gone"
    assert len(t) == 0 and not t
    with pytest.raises(KeyError):
        del t["a"]
    with pytest.raises(KeyError):
        t["a"]
    assert t.get("a", 5) == 5


def test_a_deleted_entry_that_was_on_disk_does_not_come_back(tmp_path: Path) -> None:
    t = table(tmp_path, cache=1)
    t["a"] = 1
    t["b"] = 2  # "a" on disk
    assert t["a"] == 1  # "a" live again; its disk copy is stale
    del t["a"]
    t["c"] = 3
    t["d"] = 4
    assert "a" not in t
    assert dict(t.items()) == {"b": 2, "c": 3, "d": 4}


def test_a_key_deleted_and_written_again_before_the_next_batch_is_counted_once(tmp_path: Path) -> None:
    t = table(tmp_path, cache=16)  # spills in batches of 2
    for i in range(20):
        t[i] = i  # 0..3 are on disk now
    assert t.pop(0) == 0  # its disk copy is dropped with the next batch; until then it is gone
    assert t.get(0) is None and 0 not in t and len(t) == 19 and 0 not in dict(t.items())
    t[0] = "again"  # before that batch: the old copy is now a stale copy of a live key
    assert len(t) == 20 and t[0] == "again"
    for i in range(20, 40):
        t[i] = i
    assert len(t) == 40 and dict(t.items())[0] == "again" and sorted(t) == list(range(40))


def test_popping_a_spilled_entry_does_not_pull_it_into_the_cache(tmp_path: Path) -> None:
    t = table(tmp_path, cache=4)
    for i in range(20):
        t[i] = [i]
    cached = list(t._cache)
    assert t.pop(0) == [0] and list(t._cache) == cached  # read from disk, nothing evicted for it
    assert 0 not in t and len(t) == 19 and t.pop(0, None) is None


class CountingEnv:
    """An LMDB environment that counts the transactions begun on it."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.reads = 0
        self.writes = 0

    def begin(self, write: bool = False, **kwargs: Any) -> Any:
        if write:
            self.writes += 1
        else:
            self.reads += 1
        return self.env.begin(write=write, **kwargs)


def test_reads_share_one_transaction_until_the_next_write(tmp_path: Path) -> None:
    t = table(tmp_path, cache=100)
    for i in range(200):
        t[i] = i  # about half of them spill, in batches of 12
    backend = t._keep  # type: ignore[attr-defined]
    backend.writer().abort()  # from here on, count every transaction
    env = backend.env = CountingEnv(backend.env)
    for i in range(1000, 1050):
        assert t.get(i) is None and i not in t  # misses: each looks on disk, once
    assert env.reads == 1 and env.writes == 0
    for i in range(2000, 2100):
        t[i] = i  # new keys: each looks on disk, and the cache spills in batches (writes)
    # A write ends the shared read transaction; the next lookup begins one again.
    assert env.writes >= 4 and env.reads == env.writes + 1


def test_the_store_is_reopened_after_many_accesses_and_keeps_every_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # LMDB's mapped pages stay resident until unmapped: the backend closes and reopens its store
    # every REOPEN_AFTER_ACCESSES reads and writes, under tables and heaps that stay usable.
    monkeypatch.setattr(statebackend, "REOPEN_AFTER_ACCESSES", 10)
    reopened = []
    original = DiskBackend._reopen

    def counting(self: DiskBackend) -> None:
        reopened.append(self.env)
        original(self)

    monkeypatch.setattr(DiskBackend, "_reopen", counting)
    backend = DiskBackend(str(tmp_path), cache_entries=3)
    t, heap, plain = backend.table("t"), backend.heap("h"), {}
    for i in range(300):
        k = (f"k{i * 7 % 40}", W(0, 10))
        if i % 5 == 4:
            assert t.pop(k, None) == plain.pop(k, None)
        else:
            t[k] = plain[k] = [i, t.get(k, [None])[0]]
        heap.push((i * 13 % 50, 0, i, k))
        if i % 3 == 0:
            heap.pop()
    assert len(reopened) > 10
    assert dict(t.items()) == plain and len(t) == len(plain)
    assert len(list(heap)) == len(heap) == 200
    backend.close()
    assert not Path(backend.path).exists()


def test_clear_empties_memory_and_disk(tmp_path: Path) -> None:
    t = table(tmp_path, cache=1)
    for i in range(5):
        t[i] = i
    t.clear()
    assert len(t) == 0 and list(t.items()) == [] and 3 not in t
    t[3] = "again"
    assert dict(t.items()) == {3: "again"}


def test_the_backend_folder_is_under_state_dir_and_removed_on_close(tmp_path: Path) -> None:
    backend = DiskBackend(str(tmp_path / "state"))
    assert Path(backend.path).parent == tmp_path / "state"
    assert Path(backend.path).name.startswith("tidal-state-")
    backend.close()
    assert not Path(backend.path).exists()


def test_a_state_dir_that_cannot_be_created_is_named_in_the_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=f"the state_dir {blocker}/sub cannot be used for the disk state backend"):
        DiskBackend(str(blocker / "sub"))


def test_a_table_cannot_be_pickled(tmp_path: Path) -> None:
    import pickle

    with pytest.raises(TypeError, match="a disk state table cannot be pickled"):
        pickle.dumps(table(tmp_path))


# -- serialization ---------------------------------------------------------------------
KEYS = [
    "a", "", "ü", 0, 1, -1, 2**63, -(2**70), 1.5, True, False, None, b"raw",
    ("a", 1), ("a", (1, ("b",))), (), W(0, 10 * US), GlobalWindow(), ("user", W(-5, 5)),
    frozenset({1, 2}),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_keys_round_trip_with_their_type(key: Any) -> None:
    back = decode_key(encode_key(key))
    assert back == key and type(back) is type(key)


def test_keys_of_different_types_or_values_encode_differently() -> None:
    encoded = [encode_key(k) for k in [1, "1", 1.0, True, b"1", (1,), W(0, 1), (0, 1), None, "a", ("a", None)]]
    assert len(set(encoded)) == len(encoded)


def test_equal_keys_encode_equally_whatever_object_holds_them() -> None:
    a, b = "".join(["ke", "y"]), "key"
    assert a is not b
    assert encode_key((a, a, W(0, 5))) == encode_key((b, "key", W(0, 5)))


def test_plain_values_use_marshal_and_others_pickle() -> None:
    assert encode_value({"n": [1, 2.5, "x"], "s": {1}})[:1] == b"M"
    assert encode_value(W(0, 5))[:1] == b"P"  # a tuple subclass is not plain
    for value in [{"n": [1, 2.5, "x"], "s": {1}}, W(0, 5), (GlobalWindow(), [W(1, 2)])]:
        assert decode_value(encode_value(value)) == value


# -- choosing the backend ----------------------------------------------------------------
def test_the_spec_comes_from_options_flags_or_a_dict() -> None:
    from tidal.options.pipeline_options import PipelineOptions

    flags = PipelineOptions(["--state_backend=disk", "--state_dir=/tmp/d", "--state_cache_entries=7"])
    assert StateBackendSpec.from_options(flags) == StateBackendSpec("disk", "/tmp/d", 7)
    assert StateBackendSpec.from_options(PipelineOptions([])) == StateBackendSpec("memory", None, statebackend.DEFAULT_CACHE_ENTRIES)
    assert StateBackendSpec.from_options({"state_backend": "disk"}).kind == "disk"
    assert isinstance(open_backend(None), MemoryBackend)
    assert isinstance(open_backend(StateBackendSpec()), MemoryBackend)


def test_an_unknown_backend_is_refused_naming_the_option_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"the pipeline option state_backend must be one of memory, disk; got 'ssd'"):
        with td.Pipeline(options={"state_backend": "ssd"}) as p:
            _ = p | td.Create([1])
    with pytest.raises(ValueError, match="the state cache must hold at least one entry, got 0"):
        StateBackendSpec("disk", None, 0)


def test_the_disk_backend_really_spills_a_pipelines_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evictions: list[int] = []
    original = SpilledTable._evict

    def counting(self: SpilledTable) -> None:
        before = self.cached
        original(self)
        evictions.append(before - self.cached)

    monkeypatch.setattr(SpilledTable, "_evict", counting)
    options = {"state_backend": "disk", "state_dir": str(tmp_path), "state_cache_entries": 2}
    with td.Pipeline(runner="direct", options=options) as p:
        counts = p | td.Create([(f"k{i % 20}", 1) for i in range(200)]) | td.ParDo(RunningCount())
        assert_that(counts, equal_to([(f"k{k}", n) for k in range(20) for n in range(1, 11)]))
    assert sum(evictions) > 20


class RunningCount(td.DoFn):
    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield kv[0], n


# -- property: random pipelines give the same output on both backends, on every runner ---------
class BufferAndCount(td.DoFn):
    """Per key and window: a bag, a count, a combined sum; flushed by an end-of-window timer."""

    BUFFER = td.BagStateSpec("buffer")
    COUNT = td.ReadModifyWriteStateSpec("count")
    TOTAL = td.CombiningValueStateSpec("total", combine_fn=sum)
    SEEN = td.SetStateSpec("seen")
    FLUSH = td.TimerSpec("flush", td.TimeDomain.WATERMARK)

    def process(
        self,
        kv: Any,
        w: Any = td.DoFn.WindowParam,
        buffer: Any = td.DoFn.StateParam(BUFFER),
        count: Any = td.DoFn.StateParam(COUNT),
        total: Any = td.DoFn.StateParam(TOTAL),
        seen: Any = td.DoFn.StateParam(SEEN),
        flush: Any = td.DoFn.TimerParam(FLUSH),
    ) -> Iterable[Any]:
        buffer.add(kv[1])
        count.write((count.read() or 0) + 1)
        total.add(kv[1])
        seen.add(kv[1] % 3)
        flush.set(w.max_timestamp())
        return ()

    @td.on_timer(FLUSH)
    def on_flush(
        self,
        key: Any = td.DoFn.KeyParam,
        w: Any = td.DoFn.WindowParam,
        buffer: Any = td.DoFn.StateParam(BUFFER),
        count: Any = td.DoFn.StateParam(COUNT),
        total: Any = td.DoFn.StateParam(TOTAL),
        seen: Any = td.DoFn.StateParam(SEEN),
    ) -> Iterable[Any]:
        yield key, w, sorted(buffer.read()), count.read(), total.read(), sorted(seen.read())


def _fixed(t: int, size: int) -> IntervalWindow:
    return W(t // size * size * US, (t // size * size + size) * US)


def expected_outputs(events: list[tuple[str, int, int]], size: int, gap: int) -> tuple[list[Any], list[Any], list[Any]]:
    """What each branch emits, by plain Python: stateful flushes, fixed-window sums, session groups."""
    per_window: dict[tuple[str, Any], list[int]] = collections.defaultdict(list)
    for k, v, t in events:
        per_window[(k, _fixed(t, size))].append(v)
    stateful = [
        (k, w, sorted(vs), len(vs), sum(vs), sorted({v % 3 for v in vs})) for (k, w), vs in per_window.items()
    ]
    sums = [(k, w, sum(vs)) for (k, w), vs in per_window.items()]
    sessions: list[Any] = []
    by_key: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for k, v, t in events:
        by_key[k].append((t, v))
    for k, items in by_key.items():
        items.sort()
        start, end, values = None, None, []  # type: ignore[var-annotated]
        for t, v in items:
            if end is not None and t < end:
                end = max(end, t + gap)
                values.append(v)
            else:
                if end is not None:
                    sessions.append((k, W(start * US, end * US), sorted(values)))
                start, end, values = t, t + gap, [v]
        sessions.append((k, W(start * US, end * US), sorted(values)))
    return stateful, sums, sessions


def run_random(runner: str, events: list[tuple[str, int, int]], size: int, gap: int, options: dict[str, Any]) -> None:
    stateful, sums, sessions = expected_outputs(events, size, gap)
    with td.Pipeline(runner=runner, options=options) as p:
        stamped = p | td.Create(events) | td.Map(lambda e: TV((e[0], e[1]), e[2]))
        fixed = stamped | "Fixed" >> td.WindowInto(window.FixedWindows(size))
        flushed = fixed | "Stateful" >> td.ParDo(BufferAndCount())
        summed = (
            fixed
            | "Sum" >> td.CombinePerKey(sum)
            | "WithWindow" >> td.Map(lambda kv, w=td.DoFn.WindowParam: (kv[0], w, kv[1]))
        )
        grouped = (
            stamped
            | "Sessions" >> td.WindowInto(window.Sessions(gap))
            | "Group" >> td.GroupByKey()
            | "Sorted" >> td.Map(lambda kv, w=td.DoFn.WindowParam: (kv[0], w, sorted(kv[1])))
        )
        assert_that(flushed, equal_to(stateful), label="CheckStateful")
        assert_that(summed, equal_to(sums), label="CheckSums")
        assert_that(grouped, equal_to(sessions), label="CheckSessions")


EVENTS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.integers(0, 50), st.integers(0, 60)), min_size=1, max_size=60
)


@pytest.mark.slow
@given(events=EVENTS, size=st.sampled_from([5, 10, 30]), gap=st.sampled_from([3, 7]), cache=st.sampled_from([1, 2, 4]))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_pipelines_give_the_same_output_on_both_backends(
    runner: str, tmp_path: Path, events: list[tuple[str, int, int]], size: int, gap: int, cache: int
) -> None:
    run_random(runner, events, size, gap, {})
    disk = {"state_backend": "disk", "state_dir": str(tmp_path), "state_cache_entries": cache}
    run_random(runner, events, size, gap, disk)


class RecordPane(td.DoFn):
    def process(self, kv: Any, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
        yield kv[0], sorted(kv[1]), pane.timing.name, pane.index, pane.is_first, pane.is_last


def test_a_pane_fired_after_its_state_was_spilled_mid_bundle_does_not_fire_again(runner: str, tmp_path: Path) -> None:
    # Each element fires an early pane as its bundle is processed; with a cache of one entry the
    # other keys of the bundle push the fired state to disk first. Each key fires exactly once.
    from tidal.trigger import AccumulationMode, AfterCount, Repeatedly

    options = {"state_backend": "disk", "state_dir": str(tmp_path), "state_cache_entries": 1}
    with td.Pipeline(runner=runner, options=options) as p:
        panes = (
            p
            | td.Create([TV((k, i), 1) for i, k in enumerate("abcde")])
            | td.WindowInto(
                window.FixedWindows(10), trigger=Repeatedly(AfterCount(1)), accumulation_mode=AccumulationMode.DISCARDING
            )
            | td.GroupByKey()
            | td.ParDo(RecordPane())
        )
        assert_that(panes, equal_to([(k, [i], "EARLY", 0, True, False) for i, k in enumerate("abcde")]))


def test_global_window_state_needs_no_collection_entry_per_key_and_stays_at_the_end_of_input(tmp_path: Path) -> None:
    from tidal.model.strategy import WindowingStrategy
    from tidal.model.time import MAX_TIMESTAMP_US
    from tidal.model.trigger import PANE_INFO_UNKNOWN
    from tidal.runners.core.stateful import StatefulParDoOperator

    gw = GlobalWindow()
    for backend in (MemoryBackend(), DiskBackend(str(tmp_path), cache_entries=2)):
        op = StatefulParDoOperator("Count", td.ParDo(RunningCount()), WindowingStrategy(), [])
        op.use_state_backend(backend)
        op.add_receiver("out", lambda bundle: None)
        op.open()
        op.process([((f"k{i}", 1), 0, (gw,), PANE_INFO_UNKNOWN) for i in range(50)])
        assert len(op.store) == 50
        assert len(op._gc_heap) == 0 and len(op._gc_known) == 0  # memory does not grow with the keys for GC
        op.advance(gw.max_timestamp().micros, [], 0)  # the end of the window: not yet expired
        assert len(op.store) == 50
        op.advance(MAX_TIMESTAMP_US, [], 0)
        # The end of the input: nothing can read the state again, and it stays, so the final
        # checkpoint holds what the job last held (``python -m tidal state``).
        assert len(op.store) == 50
        op.close()


def _stateful_op(backend: Any, label: str = "Stateful") -> Any:
    from tidal.model.strategy import WindowingStrategy
    from tidal.runners.core.stateful import StatefulParDoOperator

    op = StatefulParDoOperator(label, td.ParDo(BufferAndCount()), WindowingStrategy(window.FixedWindows(10)), [])
    op.use_state_backend(backend)
    out: list[Any] = []
    op.add_receiver("out", out.extend)
    op.open()
    return op, out


def test_a_stateful_dofns_timers_spill_and_a_restore_rebuilds_their_queues_from_the_timer_table(tmp_path: Path) -> None:
    """200 keys, each with a flush timer at its window's end: on disk with a cache of 4 entries the
    timer table, the timer queue and the expiry queue keep at most the cache in memory; a snapshot
    saves the timer table (no queues), and a fresh operator restored from it fires every timer, with
    the state each key held, when the watermark passes the windows."""
    from tidal.model.trigger import PANE_INFO_UNKNOWN

    fixed = window.FixedWindows(10)
    gw = GlobalWindow()
    bundle = [((f"k{i:03d}", i), 3 * US, fixed._assign_us(3 * US, None, gw), PANE_INFO_UNKNOWN) for i in range(200)]
    backend = DiskBackend(str(tmp_path / "a"), cache_entries=4)
    op, out = _stateful_op(backend)
    op.process(bundle)
    assert len(op.timers) == 200 and op.timers.cached <= 4
    assert len(op._event_heap) == 200 and op._event_heap.cached <= 4
    assert len(op._gc_heap) == 200 and op._gc_heap.cached <= 4 and op._gc_known.cached <= 4
    snap = op.snapshot()
    kinds = collections.Counter(item[0] for items in snap.groups.values() for item in items)
    assert kinds == {"cells": 200, "timer": 200}
    restored, restored_out = _stateful_op(DiskBackend(str(tmp_path / "b"), cache_entries=4))
    restored.restore(snap)
    assert len(restored._event_heap) == 200 and len(restored._gc_heap) == 200
    w = W(0, 10 * US)
    for o, o_out in ((op, out), (restored, restored_out)):
        o.advance(20 * US, [], 0)
        assert sorted(v for v, *_ in o_out) == [(f"k{i:03d}", w, [i], 1, i, [i % 3]) for i in range(200)]
        assert len(o.timers) == 0 and len(o._gc_heap) == 0 and len(o.store) == 0
        o.close()


def test_an_incremental_snapshot_of_a_stateful_dofn_holds_the_timers_that_changed(tmp_path: Path) -> None:
    from tidal.model.trigger import PANE_INFO_UNKNOWN

    fixed = window.FixedWindows(10)
    gw = GlobalWindow()
    backend = DiskBackend(str(tmp_path), cache_entries=4)
    op, _ = _stateful_op(backend)
    op.process([((f"k{i:03d}", i), 3 * US, fixed._assign_us(3 * US, None, gw), PANE_INFO_UNKNOWN) for i in range(100)])
    backend.begin_snapshot(1, delta=False)
    full = op.snapshot()
    backend.end_snapshot()
    backend.committed(1)
    # Three keys again (their timers are set once more) and two keys' timers cleared.
    op.process([((f"k{i:03d}", 1), 3 * US, fixed._assign_us(3 * US, None, gw), PANE_INFO_UNKNOWN) for i in range(3)])
    for i in (50, 51):
        del op.timers[(f"k{i:03d}", W(0, 10 * US), "flush")]
    backend.begin_snapshot(2, delta=True)
    delta = op.snapshot()
    items = [item for items in delta.groups.values() for item in items]
    assert sorted(item[1][0] for item in items if item[0] == "timer") == ["k000", "k001", "k002"]
    assert sorted(item[1][0] for item in items if item[0] == "gone" and item[2:] == ("t",)) == ["k050", "k051"]
    assert sum(1 for items in full.groups.values() for item in items if item[0] == "timer") == 100


@pytest.mark.parametrize("backend_kind", ["memory", "disk"])
def test_a_timer_set_behind_the_watermark_holds_the_output_watermark_until_it_fires(tmp_path: Path, backend_kind: str) -> None:
    """A late element (within the allowed lateness) sets its window's flush timer behind the input
    watermark: until the timer fires, the step's output watermark stays at the timer, so what the
    timer emits (at that time) is not behind the watermark downstream."""
    from tidal.model.strategy import WindowingStrategy
    from tidal.model.trigger import PANE_INFO_UNKNOWN
    from tidal.runners.core.stateful import StatefulParDoOperator

    backend: Any = MemoryBackend() if backend_kind == "memory" else DiskBackend(str(tmp_path), cache_entries=2)
    strategy = WindowingStrategy(window.FixedWindows(10), allowed_lateness_us=100 * US)
    op = StatefulParDoOperator("Stateful", td.ParDo(BufferAndCount()), strategy, [])
    op.use_state_backend(backend)
    out: list[Any] = []
    op.add_receiver("out", out.extend)
    op.open()
    op.advance(50 * US, [], 0)
    assert op.output_watermark() == 50 * US
    fixed = window.FixedWindows(10)
    op.process([(("a", 7), 3 * US, fixed._assign_us(3 * US, None, GlobalWindow()), PANE_INFO_UNKNOWN)])
    assert out == [] and op.output_watermark() == 10 * US - 1
    op.advance(60 * US, [], 0)
    assert [(v, t) for v, t, *_ in out] == [(("a", W(0, 10 * US), [7], 1, 7, [1]), 10 * US - 1)]
    assert op.output_watermark() == 60 * US
    op.close()
