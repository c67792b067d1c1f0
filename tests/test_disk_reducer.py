"""The windowing reducer on the disk backend: its indexes spill, its output and restores stay exact.

On the disk backend a :class:`KeyedWindowReducer` keeps in memory only a cache's
worth of what grows with keys and windows: window states, each key's merging
windows (``active``), each window's keys (``_window_keys``), the timers (a
:class:`SpilledHeap`) and the values waiting for the watermark (``_deferred``),
and a firing of many windows hands its panes on in pieces. These tests drive
reducers directly, with expected panes computed by plain Python, and compare
the disk backend's panes with the memory backend's call by call.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tidal import trigger, window
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.model.trigger import AccumulationMode, PaneInfo, PaneInfoTiming
from tidal.model.window import GlobalWindow, IntervalWindow, TimestampCombiner
from tidal.runners.core import holds as holds_module
from tidal.runners.core import reduce as reduce_module
from tidal.runners.core.reduce import CombineReduceFn, GroupReduceFn, KeyedWindowReducer, ReduceFn
from reducer_support import SumFn
from tidal.runners.core.statebackend import DiskBackend, MemoryBackend, SpilledHeap, SpilledTable

US = 1_000_000
W = IntervalWindow.from_micros
ONLY = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)


def _reducer(backend: Any, strategy: WindowingStrategy, reduce_fn: ReduceFn | None = None) -> tuple[KeyedWindowReducer, list[Any]]:
    """A reducer on ``backend``; the list collects the panes it hands on in pieces."""
    reducer = KeyedWindowReducer("Sessions", strategy, reduce_fn or CombineReduceFn(SumFn(), False, "sum"))
    reducer.use_state_backend(backend)
    pieces: list[Any] = []
    reducer.emit_pieces = pieces.append
    return reducer, pieces


def _two_events_per_key(first: int, last: int) -> Iterator[list[Any]]:
    """Bundles of 50 keys: ``key-i`` gets a 1 at ``i`` s and at ``i + 1`` s (one session [i, i + 6) with Sessions(5))."""
    gw = GlobalWindow()
    sessions = window.Sessions(5)
    bundle: list[Any] = []
    for i in range(first, last):
        for t in (i, i + 1):
            bundle.append(((f"key-{i:05d}", 1), t * US, sessions._assign_us(t * US, None, gw), None))
        if len(bundle) == 100:
            yield bundle
            bundle = []
    if bundle:
        yield bundle


def _expected(first: int, last: int) -> list[Any]:
    return [((f"key-{i:05d}", 2), (i + 6) * US - 1, (W(i * US, (i + 6) * US),), ONLY) for i in range(first, last)]


def _bounded(reducer: KeyedWindowReducer, cache: int) -> None:
    assert isinstance(reducer.states, SpilledTable) and reducer.states.cached <= cache
    assert isinstance(reducer.active, SpilledTable) and reducer.active.cached <= cache
    assert isinstance(reducer._window_keys, SpilledTable) and reducer._window_keys.cached <= cache
    assert isinstance(reducer._timers, SpilledHeap) and reducer._timers.cached <= cache
    assert len(reducer._deferred) <= cache and len(reducer._unstored) <= cache


def test_a_sessions_reducer_on_disk_keeps_its_indexes_bounded_and_its_output_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reduce_module, "_PANES_PER_PIECE", 100)
    reducer, pieces = _reducer(DiskBackend(str(tmp_path), cache_entries=8), WindowingStrategy(window.Sessions(5)))
    for bundle in _two_events_per_key(0, 2000):
        assert reducer.process(bundle) == []
        _bounded(reducer, 8)
    assert len(reducer.states) == len(reducer.active) == len(reducer._window_keys) == len(reducer._timers) == 2000
    last = reducer.advance(MAX_TIMESTAMP_US)
    # The final watermark fires all 2,000 sessions: handed on 100 at a time, not held at once.
    assert [len(p) for p in pieces] == [100] * 20 and last == []
    assert sorted(p for piece in pieces for p in piece) == _expected(0, 2000)
    _bounded(reducer, 8)
    assert len(reducer.states) == len(reducer.active) == len(reducer._window_keys) == len(reducer._timers) == 0
    assert reducer.is_empty()


def test_the_memory_backend_keeps_plain_indexes_and_returns_every_pane(tmp_path: Path) -> None:
    reducer, pieces = _reducer(MemoryBackend(), WindowingStrategy(window.Sessions(5)))
    for bundle in _two_events_per_key(0, 300):
        reducer.process(bundle)
    assert type(reducer._timers) is list and type(reducer.active) is dict and len(reducer._deferred) == 300
    assert sorted(reducer.advance(MAX_TIMESTAMP_US)) == _expected(0, 300) and pieces == []


def test_evicted_index_entries_come_back_after_restore(tmp_path: Path) -> None:
    # Allowed lateness: the general timer path (end-of-window and expiry timers), with states stored.
    strategy = WindowingStrategy(window.Sessions(5), allowed_lateness_us=3 * US)
    first, pieces = _reducer(DiskBackend(str(tmp_path / "a"), cache_entries=4), strategy)
    out: list[Any] = []
    for bundle in _two_events_per_key(0, 300):
        out += first.process(bundle)
    out += first.advance(100 * US)  # sessions ending by 100 s (keys 0..94) fire on time; 3 s lateness
    snap = first.snapshot()
    assert len(first._timers) > 4 and first._timers.cached <= 4
    second, more = _reducer(DiskBackend(str(tmp_path / "b"), cache_entries=4), strategy)
    second.restore(snap)
    _bounded(second, 4)
    # The restore derives the timers from the windows (a snapshot on disk holds none): the same
    # timers, numbered afresh (the number only orders timers of one time and kind).
    assert [(t, kind, w) for t, kind, _, w in second._timers] == [(t, kind, w) for t, kind, _, w in first._timers]
    assert dict(second._window_keys.items()) == dict(first._window_keys.items())
    assert dict(second.active.items()) == dict(first.active.items())
    for bundle in _two_events_per_key(300, 400):
        out += second.process(bundle)
    out += second.advance(MAX_TIMESTAMP_US)
    panes = sorted(p for piece in pieces + more for p in piece) + out
    # By 100 s the sessions of keys 0..94 ended (ON_TIME panes); those of keys 0..91 also expired
    # (end + 3 s lateness), so theirs was the last pane. Keys 92..94 get no more input: no more panes.
    on_time = [
        ((k, v), ts, ws, PaneInfo(True, i <= 91, PaneInfoTiming.ON_TIME, 0, 0))
        for i, ((k, v), ts, ws, _) in enumerate(_expected(0, 95))
    ]
    assert sorted(panes) == sorted(on_time + _expected(95, 400))


# -- property: the disk backend's panes equal the memory backend's, call by call ----------------
steps = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(min_value=0, max_value=60)), max_size=14),
        st.integers(min_value=0, max_value=30),  # how far the watermark moves after the bundle (s)
    ),
    min_size=1,
    max_size=6,
)
WINDOWFNS = {"sessions": window.Sessions(5), "fixed": window.FixedWindows(10), "sliding": window.SlidingWindows(10, 5)}
TRIGGERS = {
    "default": lambda: {},
    "late": lambda: {"allowed_lateness_us": 20 * US},
    "early": lambda: {
        "trigger": trigger.AfterWatermark(early=trigger.AfterCount(2), late=trigger.AfterCount(1)),
        "accumulation_mode": AccumulationMode.ACCUMULATING,
        "allowed_lateness_us": 10 * US,
    },
}


def _scanned_watermark(reducer: KeyedWindowReducer, before: int) -> int:
    """The output watermark by a scan of every open window's hold (plain Python, not the hold index)."""
    holds = [st.hold for st in reducer.states.values() if st.hold is not None and not st.closed]
    return max(before, min([reducer.input_watermark, *holds]))


def _calls(
    reducer: KeyedWindowReducer, pieces: list[Any], windowfn: Any, run: list[Any], restore_at: int, make: Any, scan: bool = False
) -> list[Any]:
    """Each process/advance call's panes (pieces handed on during the call included), sorted.

    After step ``restore_at`` the reducer is replaced by a new one restored from its snapshot.
    With ``scan`` the output watermark after each advance must be the one a scan of every
    window's hold gives.
    """
    calls = []
    wm, value = 0, 0
    gw = GlobalWindow()

    def taken(panes: list[Any]) -> list[Any]:
        got = [p for piece in pieces for p in piece] + panes
        pieces.clear()
        return sorted(map(repr, got))

    for n, (elements, move) in enumerate(run):
        bundle = []
        for key, t in elements:
            value += 1
            bundle.append(((key, value), t * US, windowfn._assign_us(t * US, (key, value), gw), None))
        calls.append(taken(reducer.process(bundle)))
        wm += move * US
        before = reducer.output_watermark
        calls.append(taken(reducer.advance(wm)))
        if scan:
            assert reducer.output_watermark == _scanned_watermark(reducer, before)
        if n == restore_at:
            snap = reducer.snapshot()
            reducer, new_pieces = make()
            reducer.restore(snap)
            pieces = new_pieces
    calls.append(taken(reducer.advance(MAX_TIMESTAMP_US)))
    return calls


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    run=steps,
    windowing=st.sampled_from(sorted(WINDOWFNS)),
    triggering=st.sampled_from(sorted(TRIGGERS)),
    group=st.booleans(),
    cache=st.integers(min_value=1, max_value=3),
    restore_at=st.integers(min_value=-1, max_value=5),
)
def test_disk_reducer_panes_equal_memory_reducer_panes_call_by_call(
    tmp_path_factory: pytest.TempPathFactory, run: list[Any], windowing: str, triggering: str, group: bool, cache: int, restore_at: int
) -> None:
    windowfn = WINDOWFNS[windowing]
    strategy = WindowingStrategy(windowfn, **TRIGGERS[triggering]())

    def make(backend: Any) -> Any:
        return lambda: _reducer(backend() if callable(backend) else backend, strategy, GroupReduceFn() if group else None)

    folder = tmp_path_factory.mktemp("disk")
    previous = reduce_module._PANES_PER_PIECE
    reduce_module._PANES_PER_PIECE = 2  # hand panes on in pieces as often as possible
    try:
        want = _calls(*make(MemoryBackend())(), windowfn, run, restore_at, make(MemoryBackend))
        disk = make(lambda: DiskBackend(str(folder), cache_entries=cache))
        got = _calls(*disk(), windowfn, run, restore_at, disk)
    finally:
        reduce_module._PANES_PER_PIECE = previous
    assert got == want


# -- the hold index: the output watermark a scan of every window's hold gives -----------------------
#: The triggers above and one that finishes: its windows stay closed until they expire, and a
#: session that merges with a closed one is closed, with the hold of what it merged.
HOLD_TRIGGERS = {
    **TRIGGERS,
    "finishing": lambda: {
        "trigger": trigger.AfterWatermark(early=trigger.AfterCount(2)),
        "accumulation_mode": AccumulationMode.DISCARDING,
        "allowed_lateness_us": 20 * US,
    },
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    run=steps,
    windowing=st.sampled_from(sorted(WINDOWFNS)),
    triggering=st.sampled_from(sorted(HOLD_TRIGGERS)),
    combiner=st.sampled_from([TimestampCombiner.OUTPUT_AT_EARLIEST, TimestampCombiner.OUTPUT_AT_LATEST]),
    disk=st.booleans(),
    cache=st.integers(min_value=1, max_value=3),
    restore_at=st.integers(min_value=-1, max_value=5),
)
# A session that only grew: its hold moves with it to the grown window, which the new element does not lower.
@example(run=[([("a", 10)], 0), ([("a", 12)], 15)], windowing="sessions", triggering="default",
         combiner=TimestampCombiner.OUTPUT_AT_EARLIEST, disk=False, cache=1, restore_at=-1)
# Two sessions bridged by a third element: the merged window holds at the earlier of their holds.
@example(run=[([("a", 10), ("a", 18)], 0), ([("a", 14)], 12)], windowing="sessions", triggering="default",
         combiner=TimestampCombiner.OUTPUT_AT_EARLIEST, disk=True, cache=1, restore_at=-1)
# A closed session (its trigger finished on time) bridged to an open one that holds at 17: the result is
# closed (the bridging element is dropped) and holds nothing, though it carries the hold it merged.
@example(run=[([("a", 10)], 15), ([("a", 17)], 0), ([("a", 14)], 5)], windowing="sessions", triggering="finishing",
         combiner=TimestampCombiner.OUTPUT_AT_EARLIEST, disk=False, cache=1, restore_at=-1)
def test_the_hold_index_gives_the_output_watermark_a_scan_of_every_window_gives(
    tmp_path_factory: pytest.TempPathFactory,
    run: list[Any],
    windowing: str,
    triggering: str,
    combiner: TimestampCombiner,
    disk: bool,
    cache: int,
    restore_at: int,
) -> None:
    # Adds, merges (sessions), firings (early, on time, late), expiries and restores, on both backends;
    # with no slack the index is compacted whenever its stale entries outnumber the open windows.
    windowfn = WINDOWFNS[windowing]
    strategy = WindowingStrategy(windowfn, timestamp_combiner=combiner, **HOLD_TRIGGERS[triggering]())
    folder = tmp_path_factory.mktemp("holds")
    backend = (lambda: DiskBackend(str(folder), cache_entries=cache)) if disk else MemoryBackend
    make = lambda: _reducer(backend(), strategy, GroupReduceFn())  # noqa: E731
    previous = holds_module._SLACK
    holds_module._SLACK = 0
    try:
        _calls(*make(), windowfn, run, restore_at, make, scan=True)
    finally:
        holds_module._SLACK = previous


# -- the spilling timer heap ---------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(-5, 40), st.integers(0, 1)),
            st.tuples(st.just("pop"), st.just(0), st.just(0)),
            st.tuples(st.just("due"), st.integers(-5, 45), st.just(0)),
            st.tuples(st.just("peek"), st.just(0), st.just(0)),
            st.tuples(st.just("all"), st.just(0), st.just(0)),
        ),
        max_size=80,
    ),
    cache=st.integers(min_value=1, max_value=5),
)
# Spilled: 5 and 6 on disk, 1 in memory; 10 joins 1 in memory: after 1, the next is 5, from disk.
@example(ops=[("push", 5, 0), ("push", 6, 0), ("push", 1, 0), ("push", 10, 0), ("pop", 0, 0), ("pop", 0, 0), ("all", 0, 0)], cache=2)
def test_a_spilled_heap_pops_as_heapq_does(tmp_path_factory: pytest.TempPathFactory, ops: list[Any], cache: int) -> None:
    heap = DiskBackend(str(tmp_path_factory.mktemp("heap")), cache_entries=cache).heap("timers")
    ref: list[Any] = []
    for seq, (op, t, kind) in enumerate(ops):
        if op == "push":
            entry = (t, kind, seq, W(t * US, (t + 5) * US), f"key-{seq}")
            heap.push(entry)
            heapq.heappush(ref, entry)
        elif op == "pop" and ref:
            assert heap.pop() == heapq.heappop(ref)
        elif op == "due":
            want = []
            while ref and ref[0][0] < t:
                want.append(heapq.heappop(ref))
            assert list(heap.pop_due(t)) == want
        elif op == "peek" and ref:
            assert heap[0] == ref[0]
        elif op == "all":
            assert list(heap) == sorted(ref)
        assert len(heap) == len(ref) and heap.cached <= max(2, cache)
    assert list(heap) == sorted(ref)


def test_an_empty_spilled_heap_says_so(tmp_path: Path) -> None:
    heap = DiskBackend(str(tmp_path), cache_entries=2).heap("timers")
    assert not heap and list(heap.pop_due(MAX_TIMESTAMP_US)) == []
    with pytest.raises(IndexError, match="the heap is empty"):
        heap.pop()
    heap.push((MIN_TIMESTAMP_US, 0, 0, "w"))
    with pytest.raises(IndexError, match=r"only its earliest entry, heap\[0\]"):
        heap[1]


# -- incremental checkpoints: the indexes of the windows are written only where they changed ---
def _sessions_operator(backend: Any, out: list[Any]) -> Any:
    import tidal as td
    from tidal.runners.core.keygroups import KeyGroups
    from tidal.runners.core.operators import GroupByKeyOperator

    op = GroupByKeyOperator("Sessions", td.GroupByKey(), WindowingStrategy(window.Sessions(5)))
    op.key_groups = KeyGroups()
    op.add_receiver("out", out.extend)
    op.use_state_backend(backend)
    return op


N_SESSION_KEYS = 2000


def _session_checkpoints(folder: Path, changed: int) -> tuple[bytes, bytes, list[Any]]:
    """(full checkpoint of N_SESSION_KEYS open sessions, the delta after ``changed`` sessions grew, panes so far)."""
    import pickle

    backend = DiskBackend(str(folder), cache_entries=8)
    out: list[Any] = []
    op = _sessions_operator(backend, out)
    for bundle in _two_events_per_key(0, N_SESSION_KEYS):
        op.process(bundle)
    backend.begin_snapshot(1, False)
    full = pickle.dumps(op.snapshot())
    backend.end_snapshot()
    backend.committed(1)
    sessions = window.Sessions(5)
    gw = GlobalWindow()
    # A third event at i + 3 s: key-i's session [i, i + 6) grows to [i, i + 8), a merge that moves its
    # state, its merging windows (active) and its window's keys.
    op.process([((f"key-{i:05d}", 1), (i + 3) * US, sessions._assign_us((i + 3) * US, None, gw), None) for i in range(changed)])
    backend.begin_snapshot(2, True)
    delta = pickle.dumps(op.snapshot())
    backend.end_snapshot()
    return full, delta, out


def test_an_incremental_checkpoint_of_sessions_grows_with_the_keys_that_changed_indexes_included(tmp_path: Path) -> None:
    import pickle

    from tidal.runners.core.incremental import collapse

    full, small, _ = _session_checkpoints(tmp_path / "a", 10)
    full_again, large, out = _session_checkpoints(tmp_path / "b", 400)
    assert len(full) == len(full_again)
    per_key = len(full) / N_SESSION_KEYS
    assert per_key < 200
    # A changed key's state, its window key and merging windows, and the state it merged away.
    assert len(small) < 1000 + 10 * 3 * per_key
    assert 0.8 * 390 * per_key < len(large) - len(small) < 2.5 * 390 * per_key
    assert len(large) < len(full) / 3
    snap = pickle.loads(large)
    kinds = {item[0] for items in snap.groups.values() for item in items}
    assert kinds == {"state", "key", "active", "gone"}, kinds  # no timers: the restore derives them
    chain = [{"ops": [("Sessions", (), pickle.loads(full), {})]}, {"ops": [("Sessions", (), snap, {})], "needs": [1]}]
    panes: list[Any] = []
    op = _sessions_operator(DiskBackend(str(tmp_path / "restored"), cache_entries=8), panes)
    op.restore(collapse(chain)["ops"][0][2])
    op.advance(MAX_TIMESTAMP_US, [], 0)
    grown = [((f"key-{i:05d}", [1, 1, 1]), (i + 8) * US - 1, (W(i * US, (i + 8) * US),), ONLY) for i in range(400)]
    rest = [((f"key-{i:05d}", [1, 1]), (i + 6) * US - 1, (W(i * US, (i + 6) * US),), ONLY) for i in range(400, N_SESSION_KEYS)]
    assert out == [] and sorted(panes) == grown + rest


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.integers(-5, 40)), st.booleans()),
        max_size=80,
    ),
    disk=st.booleans(),
    cache=st.integers(min_value=1, max_value=4),
)
# a's stale entries outnumber the five owners: the index is compacted, and must keep d and e's
# entries, which become the earliest once b and c hold nothing.
@example(
    ops=[("b", 2, False), ("c", 3, False), ("d", 4, False), ("e", 5, False)]
    + [("a", 30 + i, False) for i in range(8)]
    + [("a", 40, True), ("b", None, False), ("c", None, True)],
    disk=False,
    cache=1,
)
def test_a_hold_index_gives_the_earliest_current_hold_as_a_scan_does(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any], disk: bool, cache: int
) -> None:
    from tidal.runners.core.holds import HoldIndex

    holds: dict[str, int] = {}
    heap = DiskBackend(str(tmp_path_factory.mktemp("holds")), cache_entries=cache).heap("holds") if disk else None
    previous = holds_module._SLACK
    holds_module._SLACK = 0  # compacted as soon as stale entries outnumber the owners
    try:
        index = HoldIndex(holds.get, heap)
        for owner, hold, ask in ops:
            if hold is None:
                holds.pop(owner, None)
            else:
                holds[owner] = hold
                index.note(owner, hold)
            if ask:
                assert index.earliest(len(holds)) == min(holds.values(), default=None)
        assert index.earliest(len(holds)) == min(holds.values(), default=None)
    finally:
        holds_module._SLACK = previous


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_processing_time_deadlines_spill_and_come_back_from_the_window_states_after_a_restore(tmp_path: Path, backend: str) -> None:
    """Each (key, window) under AfterProcessingTime waits for its own deadline. On disk the deadline
    queue spills like the timers (a cache of 8 entries for 200 windows); a snapshot saves no deadline
    queue, and the restored reducer finds every deadline again in the window states: the early panes
    fire at the same processing times, with the same contents, as in a reducer never restored."""
    strategy = WindowingStrategy(
        window.FixedWindows(10),
        trigger=trigger.Repeatedly(trigger.AfterProcessingTime(5)),
        accumulation_mode=AccumulationMode.DISCARDING,
    )

    def make() -> KeyedWindowReducer:
        b: Any = MemoryBackend() if backend == "memory" else DiskBackend(str(tmp_path / f"s{len(list(tmp_path.iterdir()))}"), cache_entries=8)
        return _reducer(b, strategy)[0]

    fixed = window.FixedWindows(10)
    gw = GlobalWindow()
    # Key k's element arrives at processing time k ms: its deadline is 5 s + k ms.
    elements = [((f"k{k:03d}", k), 0, fixed._assign_us(0, None, gw), None) for k in range(200)]
    original, restored = make(), make()
    for k, wv in enumerate(elements):
        for r in (original,):
            r.advance(processing_time=k * 1000)
            assert r.process([wv]) == []
    if backend == "disk":
        assert isinstance(original._deadlines, SpilledHeap) and len(original._deadlines) == 200
        assert original._deadlines.cached <= 8
    snap = original.snapshot()
    assert "deadlines" not in snap
    restored.restore(snap)
    assert restored.next_deadline() == original.next_deadline() == 5 * US
    # Half the deadlines pass, then the rest: the same early panes, in deadline order, from both.
    for now in (5 * US + 99_000, 5 * US + 199_000):
        got = [(kv, pane.timing) for kv, _t, _w, pane in restored.advance(processing_time=now)]
        want = [(kv, pane.timing) for kv, _t, _w, pane in original.advance(processing_time=now)]
        assert got == want
        assert [kv for kv, _ in got] == [(f"k{k:03d}", k) for k in range(200) if (k * 1000 + 5 * US <= now) and (now == 5 * US + 99_000 or k >= 100)]
        assert all(timing is PaneInfoTiming.EARLY for _, timing in got)
    assert restored.next_deadline() is None and original.next_deadline() is None
