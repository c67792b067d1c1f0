"""Slot sharing on the Ray runner: a job at parallelism p runs on p workers, worker i hosting
instance i of every stage; edges inside a worker are in-process hand-offs; and no two workers
can block each other, however small the bound on calls in flight between them."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterable

import pytest

import tidal as td
from tidal.testing import assert_that, equal_to

ray = pytest.importorskip("ray")

from tidal.runners.ray import RayRunner  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_session")


class RecordProcess(td.DoFn):
    """Passes elements on; at setup, writes ``<step>-<pid>`` into ``folder``."""

    def __init__(self, folder: str, step: str) -> None:
        self.folder = folder
        self.step = step

    def setup(self) -> None:
        Path(self.folder, f"{self.step}-{os.getpid()}").write_text("")

    def process(self, x: Any) -> Iterable[Any]:
        yield x


def _processes(folder: Path) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for f in folder.iterdir():
        step, _, pid = f.name.rpartition("-")
        found.setdefault(step, set()).add(int(pid))
    return found


def test_a_job_at_parallelism_2_runs_every_stage_on_the_same_2_worker_processes(tmp_path: Path) -> None:
    words = [f"w{i % 7}" for i in range(700)]
    with td.Pipeline(runner=RayRunner(parallelism=2, bundle_size=50)) as p:
        counted = (
            p
            | td.Create(words)
            | "First" >> td.ParDo(RecordProcess(str(tmp_path), "first"))
            | td.Map(lambda w: (w, 1))
            | "Count" >> td.CombinePerKey(sum)
            | "Second" >> td.ParDo(RecordProcess(str(tmp_path), "second"))
            | td.Map(lambda kv: (kv[1] % 3, kv[0]))
            | td.GroupByKey()
            | "Third" >> td.ParDo(RecordProcess(str(tmp_path), "third"))
            | td.MapTuple(lambda k, ws: (k, sorted(ws)))
        )
        # 700 words over 7 keys: each counted 100 times, and 100 % 3 == 1.
        assert_that(counted, equal_to([(1, [f"w{i}" for i in range(7)])]))
    result = p.result  # type: ignore[attr-defined]
    # Several stages of two instances each (the assertion's own stages have one).
    assert max(result.parallelism.values()) == 2
    assert sum(1 for n in result.parallelism.values() if n == 2) >= 3
    seen = _processes(tmp_path)
    assert set(seen) == {"first", "second", "third"}
    # Every stage ran two instances, on the same two processes: one per worker, not one per instance.
    assert all(len(pids) == 2 for pids in seen.values()), seen
    assert seen["first"] == seen["second"] == seen["third"]
    assert result.transfers["local_calls"] > 0 and result.transfers["remote_calls"] > 0


def test_edges_within_a_worker_make_no_ray_call() -> None:
    def build(p: td.Pipeline) -> None:
        pairs = p | td.Create([(i % 5, i) for i in range(100)]) | td.Map(lambda kv: kv)
        sums = pairs | td.CombinePerKey(sum) | td.Map(lambda kv: (kv[0] % 2, kv[1])) | td.GroupByKey()
        assert_that(sums | td.MapTuple(lambda k, vs: (k, sorted(vs))), equal_to([(0, [950, 990, 1030]), (1, [970, 1010])]))

    with td.Pipeline(runner=RayRunner(parallelism=1)) as p:
        build(p)
    alone = p.result  # type: ignore[attr-defined]
    # Every stage instance is on the one worker: bundles, watermarks, all handed over in process.
    assert alone.transfers["remote_calls"] == 0
    assert alone.transfers["local_calls"] > 0
    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        build(p)
    assert p.result.transfers["remote_calls"] > 0  # type: ignore[attr-defined]


class _Unpicklable:
    """A value pickle refuses (it holds a lock)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lock = threading.Lock()


def test_an_edge_within_a_worker_hands_objects_over_without_pickling() -> None:
    # Pickle cannot write these values: only an in-process hand-off carries them to the next stage.
    with td.Pipeline(runner=RayRunner(parallelism=1)) as p:
        grouped = (
            p
            | td.Create(list(range(10)))
            | td.Map(lambda i: (i % 2, _Unpicklable(i)))
            | td.GroupByKey()
            | td.MapTuple(lambda k, vs: (k, sorted(v.n for v in vs)))
        )
        assert_that(grouped, equal_to([(0, [0, 2, 4, 6, 8]), (1, [1, 3, 5, 7, 9])]))


class Number(td.DoFn):
    """Numbers each key's elements (keyed state) and re-keys them by ``(value + n) % keys``."""

    COUNT = td.ReadModifyWriteStateSpec("count")

    def __init__(self, keys: int) -> None:
        self.keys = keys

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield ((kv[1] + n) % self.keys, kv[1])


def _run_with_deadline(build: Any, runner: RayRunner, seconds: float) -> None:
    """Run the pipeline on a thread; fail (rather than hang) when it has not finished in ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            with td.Pipeline(runner=runner) as p:
                build(p)
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"the job did not finish in {seconds} s: the workers are blocked on each other"
    if outcome[0] is not None:
        raise outcome[0]


def test_two_workers_that_source_and_consume_each_others_keyed_output_never_block_each_other() -> None:
    # Both workers read half the input and send each other keyed bundles through three keyed
    # exchanges in a row, one call in flight per destination, bundles of 10 elements: each worker
    # is at once a producer waiting for the other and a consumer the other waits for.
    n, keys = 3000, 11
    data = list(range(n))

    def build(p: td.Pipeline) -> None:
        out = (
            p
            | td.Create(data)
            | td.Map(lambda x: (x % keys, x))
            | "A" >> td.ParDo(Number(keys))
            | "B" >> td.ParDo(Number(keys))
            | "C" >> td.ParDo(Number(keys))
            | td.Values()
        )
        assert_that(out, equal_to(data))  # every element once: none lost, none doubled

    runner = RayRunner(parallelism=2, max_in_flight=1, bundle_size=10)
    _run_with_deadline(build, runner, seconds=240)

