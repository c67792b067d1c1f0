"""Count and delta windows on the disk backend: a cache's worth of keys in memory, exact panes, small checkpoints.

A :class:`~tidal.runners.core.policy.PolicyWindowReducer` keeps each key's
buffer, count and window index in a table of the step's state backend. These
tests drive reducers and the grouping operator directly over thousands of keys
with a tiny cache; the expected panes come from plain Python (a list per key,
cut where the policy cuts), never from another reducer.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal as td
from tidal import window
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.model.trigger import PaneInfo, PaneInfoTiming
from tidal.model.window import GlobalWindow
from tidal.runners.core import policy as policy_module
from tidal.runners.core.incremental import collapse
from tidal.runners.core.keygroups import KeyGroups
from tidal.runners.core.operators import GroupByKeyOperator
from tidal.runners.core.policy import PolicyWindowReducer
from tidal.runners.core.reduce import GroupReduceFn
from tidal.runners.core.statebackend import DiskBackend, MemoryBackend, SpilledHeap, SpilledTable

US = 1_000_000
PW = window.PolicyWindow.from_micros
ONLY = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)
GW = (GlobalWindow(),)
N_KEYS = 3000
ROUNDS = 5


def gap(a: float, b: float) -> float:
    return abs(a - b)


WINDOWFNS = {"count": window.CountWindows(2), "delta": window.DeltaWindows(2.5, gap)}


def value_of(i: int, j: int) -> int:
    """Key i's j-th value: steps of 1 or 2 that make delta windows of several lengths."""
    return sum(1 + (i + m) % 2 for m in range(j))


def elements(first_round: int, last_round: int) -> Iterator[list[Any]]:
    """Bundles of 100: round j gives each of N_KEYS keys its j-th value, at (j * N_KEYS + i) s."""
    bundle: list[Any] = []
    for j in range(first_round, last_round):
        for i in range(N_KEYS):
            bundle.append(((f"key-{i:05d}", value_of(i, j)), (j * N_KEYS + i) * US, GW, None))
            if len(bundle) == 100:
                yield bundle
                bundle = []
    if bundle:
        yield bundle


def expected(kind: str) -> list[Any]:
    """Plain Python: each key's values cut into windows as the policy cuts them, the last one partial."""
    out = []
    for i in range(N_KEYS):
        key = f"key-{i:05d}"
        cut: list[list[tuple[int, int]]] = [[]]
        first = None
        for j in range(ROUNDS):
            v, t = value_of(i, j), (j * N_KEYS + i) * US
            cut[-1].append((v, t))
            if kind == "count":
                if len(cut[-1]) == 2:
                    cut.append([])
            elif first is None:
                first = v
            elif abs(v - first) > 2.5:
                cut.append([])
                first = None
        for index, pane in enumerate(w for w in cut if w):
            times = [t for _, t in pane]
            out.append(((key, [v for v, _ in pane]), max(times), (PW(index, min(times), max(times) + 1),), ONLY))
    return sorted(out)


def disk_reducer(folder: Path, kind: str, cache: int) -> tuple[PolicyWindowReducer, list[Any]]:
    reducer = PolicyWindowReducer("Group", WindowingStrategy(WINDOWFNS[kind]), GroupReduceFn())
    reducer.use_state_backend(DiskBackend(str(folder), cache_entries=cache))
    pieces: list[Any] = []
    reducer.emit_pieces = pieces.append
    return reducer, pieces


def bounded(reducer: PolicyWindowReducer, cache: int) -> None:
    assert isinstance(reducer.keys, SpilledTable) and reducer.keys.cached <= cache
    heap = reducer._holds._heap
    assert isinstance(heap, SpilledHeap) and heap.cached <= max(2, cache)


@pytest.mark.parametrize("kind", sorted(WINDOWFNS))
def test_policy_windows_on_disk_keep_a_cache_of_keys_in_memory_and_give_plain_pythons_panes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(policy_module, "_KEYS_PER_PIECE", 500)
    reducer, pieces = disk_reducer(tmp_path, kind, 4)
    out: list[Any] = []
    for bundle in elements(0, ROUNDS):
        out += reducer.process(bundle)
        bounded(reducer, 4)
    assert len(reducer.keys) == N_KEYS and reducer.pending_windows() == sum(
        1 for i in range(N_KEYS) if expected_open(kind, i)
    )
    assert reducer.advance(MAX_TIMESTAMP_US) == []  # every partial window came in pieces
    bounded(reducer, 4)
    assert pieces and max(map(len, pieces)) <= 500 and reducer.is_empty()
    assert sorted(out + [p for piece in pieces for p in piece]) == expected(kind)
    # Every fired key's state went back to the table (one read from disk is a copy): no open window is left.
    assert len(reducer.keys) == N_KEYS and not any(state[1] for _, state in reducer.keys.items())


def expected_open(kind: str, i: int) -> bool:
    """Whether key i's last window is still open when the input ends (plain Python)."""
    if kind == "count":
        return ROUNDS % 2 == 1
    first, size = None, 0
    for j in range(ROUNDS):
        v = value_of(i, j)
        size += 1
        if first is None:
            first = v
        elif abs(v - first) > 2.5:
            first, size = None, 0
    return size > 0


@pytest.mark.parametrize("kind", sorted(WINDOWFNS))
def test_a_policy_reducer_restored_mid_run_on_disk_gives_exact_panes(tmp_path: Path, kind: str) -> None:
    first, pieces = disk_reducer(tmp_path / "a", kind, 8)
    out: list[Any] = []
    for bundle in elements(0, 3):
        out += first.process(bundle)
    out += first.advance(2 * N_KEYS * US)  # the watermark moves: holds are read off the index
    snap = pickle.loads(pickle.dumps(first.snapshot()))
    second, more = disk_reducer(tmp_path / "b", kind, 8)
    second.restore(snap)
    bounded(second, 8)
    assert second.output_watermark == first.output_watermark and second.pending_windows() == first.pending_windows()
    for bundle in elements(3, ROUNDS):
        out += second.process(bundle)
    out += second.advance(MAX_TIMESTAMP_US)
    assert sorted(out + [p for piece in pieces + more for p in piece]) == expected(kind)


def operator(backend: Any, kind: str, out: list[Any]) -> GroupByKeyOperator:
    op = GroupByKeyOperator("Group", td.GroupByKey(), WindowingStrategy(WINDOWFNS[kind]))
    op.key_groups = KeyGroups()
    op.add_receiver("out", out.extend)
    op.use_state_backend(backend)
    return op


def one_round(op: GroupByKeyOperator, keys: range, j: int) -> None:
    op.process([((f"key-{i:05d}", value_of(i, j)), (j * N_KEYS + i) * US, GW, None) for i in keys])


def checkpoints(tmp_path: Path, changed: int) -> tuple[bytes, bytes, list[Any]]:
    """(full checkpoint after a round over every key, the delta after ``changed`` keys got one more, panes so far)."""
    backend = DiskBackend(str(tmp_path / f"state-{changed}"), cache_entries=8)
    out: list[Any] = []
    op = operator(backend, "count", out)
    one_round(op, range(N_KEYS), 0)
    backend.begin_snapshot(1, False)
    full = pickle.dumps(op.snapshot())
    backend.end_snapshot()
    backend.committed(1)
    one_round(op, range(changed), 1)  # closes the first count window of these keys
    backend.begin_snapshot(2, True)
    delta = pickle.dumps(op.snapshot())
    backend.end_snapshot()
    return full, delta, out


def test_an_incremental_checkpoint_of_count_windows_grows_with_the_keys_that_changed(tmp_path: Path) -> None:
    full, small, _ = checkpoints(tmp_path, 10)
    full_again, large, out = checkpoints(tmp_path, 400)
    assert len(full) == len(full_again)
    per_key = len(full) / N_KEYS
    assert per_key < 80
    assert len(small) < 600 + 10 * 2 * per_key
    # A changed key's window fired: it holds an empty buffer, smaller than a key in the full one.
    assert 0.5 * 390 * per_key < len(large) - len(small) < 1.25 * 390 * per_key
    assert len(large) < len(full) / 5
    # The chain (the full checkpoint, then the delta) restores to the state of every key.
    chain = [{"ops": [("Group", (), pickle.loads(full), {})]}, {"ops": [("Group", (), pickle.loads(large), {})], "needs": [1]}]
    restored = collapse(chain)["ops"][0][2]
    panes: list[Any] = []
    op = operator(DiskBackend(str(tmp_path / "restored"), cache_entries=8), "count", panes)
    op.restore(restored)
    one_round(op, range(400, N_KEYS), 1)
    for j in range(2, ROUNDS):
        one_round(op, range(N_KEYS), j)
    op.advance(MAX_TIMESTAMP_US, [], 0)
    assert sorted(out + panes) == expected("count")


# -- property: the disk backend's panes and watermarks equal the memory backend's, call by call ---
runs = st.lists(
    st.tuples(
        st.lists(
            st.tuples(st.sampled_from("abcdefg"), st.integers(min_value=0, max_value=9), st.integers(min_value=0, max_value=50)),
            max_size=12,
        ),
        st.integers(min_value=0, max_value=20),  # how far the watermark moves after the bundle (s)
    ),
    min_size=1,
    max_size=6,
)
PROPERTY_WINDOWFNS = {
    "count": window.CountWindows(3),
    "sliding": window.CountWindows(3, every=2),
    "delta": window.DeltaWindows(3, gap),
    "delta-initial": window.DeltaWindows(3, gap, initial=4),
}
COMBINERS = [td.window.TimestampCombiner.OUTPUT_AT_EOW, td.window.TimestampCombiner.OUTPUT_AT_EARLIEST]


def scanned_watermark(reducer: PolicyWindowReducer, before: int) -> int:
    """The output watermark by a scan of every key's buffer (plain Python, not the hold index)."""
    if reducer.ended:
        return max(before, reducer.input_watermark)
    holds = [t for _, state in reducer.keys.items() for _, t in state[0]]
    return max(before, min([reducer.input_watermark, *holds]))


def calls(make: Callable[[], PolicyWindowReducer], run: list[Any], restore_at: int) -> list[Any]:
    """Each call's panes (sorted) and output watermark; after step ``restore_at`` a fresh reducer restores the snapshot."""
    reducer = make()
    pieces: list[Any] = []
    reducer.emit_pieces = pieces.append
    got = []
    wm = 0

    def taken(panes: list[Any], before: int | None = None) -> tuple[Any, ...]:
        """The panes of a call; after ``advance`` (``before``: the watermark it started from) the watermark is checked."""
        every = [p for piece in pieces for p in piece] + panes
        pieces.clear()
        if before is not None:
            assert reducer.output_watermark == scanned_watermark(reducer, before)
        return sorted(map(repr, every)), reducer.output_watermark

    for n, (elements, move) in enumerate(run):
        got.append(taken(reducer.process([((k, v), t * US, GW, None) for k, v, t in elements])))
        wm += move * US
        before = reducer.output_watermark
        got.append(taken(reducer.advance(wm), before))
        if n == restore_at:
            snap = pickle.loads(pickle.dumps(reducer.snapshot()))
            reducer = make()
            reducer.emit_pieces = pieces.append
            reducer.restore(snap)
    before = reducer.output_watermark
    got.append(taken(reducer.advance(MAX_TIMESTAMP_US), before))
    return got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    run=runs,
    windowing=st.sampled_from(sorted(PROPERTY_WINDOWFNS)),
    combiner=st.sampled_from(COMBINERS),
    cache=st.integers(min_value=1, max_value=3),
    restore_at=st.integers(min_value=-1, max_value=5),
)
def test_disk_policy_panes_equal_memory_policy_panes_call_by_call(
    tmp_path_factory: pytest.TempPathFactory, run: list[Any], windowing: str, combiner: Any, cache: int, restore_at: int
) -> None:
    strategy = WindowingStrategy(PROPERTY_WINDOWFNS[windowing], timestamp_combiner=combiner)
    folder = tmp_path_factory.mktemp("disk")

    def make(backend: Callable[[], Any]) -> Callable[[], PolicyWindowReducer]:
        def fresh() -> PolicyWindowReducer:
            reducer = PolicyWindowReducer("Group", strategy, GroupReduceFn())
            reducer.use_state_backend(backend())
            return reducer

        return fresh

    previous = policy_module._KEYS_PER_PIECE
    policy_module._KEYS_PER_PIECE = 2  # the end of the input fires as many pieces as it can
    try:
        want = calls(make(MemoryBackend), run, restore_at)
        got = calls(make(lambda: DiskBackend(str(folder), cache_entries=cache)), run, restore_at)
    finally:
        policy_module._KEYS_PER_PIECE = previous
    assert got == want
    assert want[0][1] >= MIN_TIMESTAMP_US


# -- a job: count windows on the disk backend, on every runner --------------------------------
@pytest.fixture(params=["direct", "ray", "microbatch"])
def runner(request: pytest.FixtureRequest) -> str:
    """Each job runs on every runner; Ray's share the session-wide local Ray."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


def test_count_windows_on_the_disk_backend_give_plain_pythons_panes_on_every_runner(runner: str, tmp_path: Path) -> None:
    from tidal.testing import TestStream, assert_that, equal_to

    # 40 keys, 5 values each, in one stream (one partition: the same order on every runner).
    stream = TestStream().add_elements([window.TimestampedValue((f"k{i % 40:02d}", i), i) for i in range(200)])
    expected_panes = []
    for k in range(40):
        values = [i for i in range(200) if i % 40 == k]
        for index, cut in enumerate([values[:3], values[3:]]):
            w = PW(index, cut[0] * US, cut[-1] * US + 1)
            expected_panes.append((f"k{k:02d}", cut, w, cut[-1] * US, True, True, "ON_TIME", 0))
    options = {"state_backend": "disk", "state_dir": str(tmp_path), "state_cache_entries": 2}
    with td.Pipeline(runner=runner, options=options) as p:
        panes = (
            p
            | stream
            | td.WindowInto(window.CountWindows(3))
            | td.GroupByKey()
            | td.Map(
                lambda kv, w=td.DoFn.WindowParam, ts=td.DoFn.TimestampParam, pane=td.DoFn.PaneInfoParam: (
                    kv[0], kv[1], w, ts.micros, pane.is_first, pane.is_last, pane.timing.name, pane.index
                )
            )
        )
        assert_that(panes, equal_to(expected_panes))
