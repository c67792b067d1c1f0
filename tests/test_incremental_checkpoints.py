"""Incremental checkpoints: a checkpoint holds what changed; chains are verified, retained and folded on restore."""

from __future__ import annotations

import functools
import json
import pickle
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

import tidal as td
from tidal.runners.core.checkpoint import (
    MANIFEST,
    CheckpointError,
    CheckpointStore,
    CheckpointWarning,
    decode_part,
    encode_part,
)
from tidal.runners.core.incremental import collapse
from tidal.runners.core.keygroups import KeyedSnapshot
from tidal.runners.microbatch import MicroBatchRunner


# -- the store: needs, retention, verification ------------------------------------------
def snap(*items: Any, delta: bool = False) -> dict[str, Any]:
    """An executor snapshot with one keyed operator holding ``items`` in key group 0."""
    common = {"delta": True} if delta else {}
    return {"ops": [("Count", (), KeyedSnapshot(common, {0: list(items)}), {})], "sources": {}}


def cells(key: str, n: int) -> tuple[Any, ...]:
    return ("cells", (key, None), {"n": n})


def take(store: CheckpointStore, cid: int, state: dict[str, Any], needs: list[int]) -> None:
    store.write_part(cid, "p", encode_part(pickle.dumps(state), needs))
    store.complete(cid, ["p"])


def dirs(store: CheckpointStore) -> list[int]:
    return store.ids()


def test_the_manifest_lists_what_an_incremental_part_needs(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    take(store, 1, snap(cells("a", 1)), [])
    take(store, 2, snap(cells("a", 2), delta=True), [1])
    manifest = json.loads((tmp_path / "chk-000002" / MANIFEST).read_bytes())
    assert manifest["parts"]["p"]["needs"] == [1]
    assert "needs" not in json.loads((tmp_path / "chk-000001" / MANIFEST).read_bytes())["parts"]["p"]
    cp = store.get(2)
    assert cp.needs == {"p": (1,)}
    assert [cid for cid, _ in cp.chain("p")] == [1, 2]
    assert decode_part(cp.read("p"))[0] == [1]  # read() gives the bytes as written


def test_read_state_folds_the_chain_into_the_full_state(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    take(store, 1, snap(cells("a", 1), cells("b", 1), cells("c", 1)), [])
    take(store, 2, snap(cells("a", 2), ("gone", ("b", None)), delta=True), [1])
    take(store, 3, snap(cells("c", 5), cells("d", 1), delta=True), [1, 2])
    state = store.get(3).read_state("p")
    (label, _base, extra, _uncommitted), = state["ops"]
    assert label == "Count"
    assert extra.common == {}
    assert sorted(extra.groups[0]) == sorted([cells("a", 2), cells("c", 5), cells("d", 1)])
    assert state["needs"] == []


def test_retention_keeps_every_checkpoint_a_retained_one_needs(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=2)
    take(store, 1, snap(cells("a", 1)), [])
    for cid in range(2, 6):  # deltas on 1, each naming the chain before it
        take(store, cid, snap(cells("a", cid), delta=True), list(range(1, cid)))
    assert dirs(store) == [1, 2, 3, 4, 5]  # 5 and 4 retained; 1, 2, 3 are their chain
    take(store, 6, snap(cells("a", 6)), [])  # a full one
    take(store, 7, snap(cells("a", 7), delta=True), [6])
    assert dirs(store) == [6, 7]
    assert store.latest() is not None and store.latest().read_state("p")["ops"][0][2].groups[0] == [cells("a", 7)]  # type: ignore[union-attr]


def test_a_checkpoint_whose_chain_is_damaged_is_skipped_for_one_that_restores(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=5)
    take(store, 1, snap(cells("a", 1)), [])
    take(store, 2, snap(cells("a", 2), delta=True), [1])
    take(store, 3, snap(cells("a", 3)), [])
    take(store, 4, snap(cells("a", 4), delta=True), [3])
    (tmp_path / "chk-000003" / "p").write_bytes(b"damaged")
    reason = "its part 'p' builds on checkpoint 3, which cannot be restored (its part 'p' is damaged"
    assert store.verify(4) is not None and reason in store.verify(4)  # type: ignore[operator]
    with pytest.warns(CheckpointWarning) as record:
        cp = store.latest()
    assert [str(w.message).split(":")[0] for w in record] == [
        f"skipping checkpoint 4 in {tmp_path}", f"skipping checkpoint 3 in {tmp_path}"
    ]
    assert cp is not None and cp.id == 2
    assert cp.read_state("p")["ops"][0][2].groups[0] == [cells("a", 2)]
    with pytest.raises(CheckpointError, match="checkpoint 4 .* cannot be restored: its part 'p' builds on checkpoint 3"):
        store.get(4)


def test_a_missing_earlier_checkpoint_is_named(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=5)
    take(store, 1, snap(cells("a", 1)), [])
    take(store, 2, snap(cells("a", 2), delta=True), [1])
    store._fs.remove_tree("chk-000001")
    assert store.verify(2) == "its part 'p' builds on checkpoint 1, which cannot be restored (it does not exist)"


def test_collapse_keeps_the_newest_of_everything_that_is_not_a_table_entry() -> None:
    full = snap(cells("a", 1), ("timer", ("a", None, "t"), 10))
    delta = snap(("timer", ("a", None, "t"), 20), delta=True)
    groups = collapse([full, delta])["ops"][0][2].groups
    assert sorted(groups[0], key=repr) == sorted([cells("a", 1), ("timer", ("a", None, "t"), 20)], key=repr)


def test_an_empty_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="an empty chain of snapshots has nothing to restore"):
        collapse([])


# -- a job: the bytes of a checkpoint grow with the keys that changed -------------------------
N_KEYS = 4000


class Count(td.DoFn):
    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        count.write((count.read() or 0) + kv[1])
        return ()


#: The events that open each round of :func:`two_rounds` (by the number of keys it changes).
_ROUNDS: dict[int, list[threading.Event]] = {}


def two_rounds(changed: int) -> Iterator[Any]:
    """Every key once; when the test says so, ``changed`` of them again; then, when it says so, the end."""
    rounds = _ROUNDS[changed]
    for i in range(N_KEYS):
        yield (f"key-{i:05d}", 1)
    rounds[0].wait(60)
    for i in range(changed):
        yield (f"key-{i:05d}", 1)
    rounds[1].wait(60)


def checkpoint_sizes(tmp_path: Path, changed: int) -> tuple[int, int]:
    """(bytes of the checkpoint after every key came once, bytes of the one after ``changed`` came again).

    The source waits between the rounds until the previous round's batch has committed, so each
    round is a batch of its own.
    """
    log = tmp_path / f"log-{changed}"
    rounds = _ROUNDS[changed] = [threading.Event(), threading.Event()]

    def committed(records: int) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for m in sorted(log.glob("commits/chk-*/" + MANIFEST)):
                manifest = json.loads(m.read_bytes())
                if manifest["meta"]["records"] == records:
                    return manifest["parts"]["state.pkl"]  # type: ignore[no-any-return]
            time.sleep(0.02)
        raise AssertionError(f"no batch of {records} records committed")

    options = {"state_backend": "disk", "state_dir": str(tmp_path / "state"), "state_cache_entries": 100}
    # A batch ends at N_KEYS records; the interval only has to outlast reading them on a loaded machine.
    runner = MicroBatchRunner(commit_log=str(log), max_batch_size=N_KEYS, batch_interval=1.0)
    p = td.Pipeline(runner=runner, options=options)
    _ = p | td.Read(td.GeneratorSource(functools.partial(two_rounds, changed))) | td.ParDo(Count())
    result = p.run()
    try:
        full = committed(N_KEYS)
        rounds[0].set()
        delta = committed(changed)
    finally:
        rounds[0].set()
        rounds[1].set()
        result.wait_until_finish(60)
    assert "needs" not in full and delta["needs"], (full, delta)
    return full["size"], delta["size"]


@pytest.mark.slow
def test_the_checkpoint_after_changing_k_keys_grows_with_k(tmp_path: Path) -> None:
    full, small = checkpoint_sizes(tmp_path, 10)
    full_again, large = checkpoint_sizes(tmp_path, 400)
    assert full == full_again
    per_key = full / N_KEYS  # about 26 bytes: a key, its window and a count
    assert 20 < per_key < 40
    # The changed keys and a fixed part (watermarks, source positions), nothing per unchanged key.
    assert small < 1000 + 10 * 2 * per_key
    assert 0.8 * 390 * per_key < large - small < 1.25 * 390 * per_key
    assert large < full / 8
