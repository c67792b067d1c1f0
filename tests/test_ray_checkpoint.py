"""Fault tolerance on Ray: aligned barrier checkpoints, restart after lost workers, resume, savepoints.

Workers are killed with ``ray.kill`` at seeded random moments while a
windowed and a stateful pipeline read a replayable source; the files that
WriteToText published must equal a plain-Python computation of the result:
nothing lost, nothing published twice.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

import tidal as td
from tidal.capability_matrix.sinks import FailOnce, InjectedFailure
from tidal.runners.core.checkpoint import CheckpointStore, CheckpointWarning
from tidal.runners.core.errors import PipelineExecutionError
from tidal.io.textio import read_text

ray = pytest.importorskip("ray")
from tidal.runners.ray.runner import RayRunner  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_session")

N = 3000
KEYS = 5


def paced(n: int = N, step: int = 100, pause: float = 0.08) -> Iterator[Any]:
    """(k<v % 5>, v) at v / 100 s of event time, a pause every ``step`` elements (~2.4 s in all)."""
    for v in range(n):
        if v % step == 0:
            time.sleep(pause)
        yield td.TimestampedValue((f"k{v % KEYS}", v), v / 100)


def window_sums(p: td.Pipeline, out: str) -> None:
    (
        p
        | td.Read(td.GeneratorSource(paced))
        | td.WindowInto(td.window.FixedWindows(1))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | td.WriteToText(out)
    )


EXPECTED_SUMS = Counter(
    f"k{k},{w},{sum(v for v in range(N) if v % KEYS == k and v // 100 == w)}" for w in range(N // 100) for k in range(KEYS)
)


class NumberPerKey(td.DoFn):
    """Numbers each key's elements 1, 2, 3, ... in keyed state."""

    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[str]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield f"{kv[0]},{n}"


def numbering(p: td.Pipeline, out: str) -> None:
    p | td.Read(td.GeneratorSource(paced)) | td.ParDo(NumberPerKey()) | td.WriteToText(out)


EXPECTED_NUMBERS = Counter(f"k{k},{i + 1}" for k in range(KEYS) for i in range(N // KEYS))


def published(folder: Path) -> Counter[str]:
    return Counter(read_text(str(folder / "out-*")))


def run_with_kill(build: Any, tmp: Path, seed: int, interval: float = 0.25) -> Any:
    """Run ``build`` on Ray with checkpoints; kill one of its workers at a seeded random moment."""
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp / "ck"), checkpoint_interval=interval, bundle_size=200)
    p = td.Pipeline(runner=runner)
    build(p, str(tmp / "out" / "out"))
    rng = random.Random(seed)
    result = p.run()
    time.sleep(rng.uniform(0.3, 2.2))
    actors = list(result._actors)
    assert actors, "the job started no workers"
    ray.kill(rng.choice(actors), no_restart=True)
    result.wait_until_finish(120)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_windowed_sums_exactly_once_when_a_worker_is_killed(tmp_path: Path, seed: int) -> None:
    result = run_with_kill(window_sums, tmp_path, seed)
    assert result.state is td.PipelineState.DONE
    assert len(result.recoveries) == 1
    assert published(tmp_path / "out") == EXPECTED_SUMS


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 14))
def test_keyed_state_exactly_once_when_a_worker_is_killed(tmp_path: Path, seed: int) -> None:
    result = run_with_kill(numbering, tmp_path, seed)
    assert result.state is td.PipelineState.DONE
    assert len(result.recoveries) == 1
    assert published(tmp_path / "out") == EXPECTED_NUMBERS


def test_restart_resumes_from_the_last_complete_checkpoint(tmp_path: Path) -> None:
    """Killed late, the job restarts from a checkpoint (not from the start) and reports the recovery."""
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.2, bundle_size=200)
    p = td.Pipeline(runner=runner)
    numbering(p, str(tmp_path / "out" / "out"))
    result = p.run()
    deadline = time.monotonic() + 30
    while len(result.checkpoints) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(result.checkpoints) >= 3, "no checkpoint completed"
    ray.kill(result._actors[-1], no_restart=True)  # the stateful stage's last worker
    result.wait_until_finish(120)
    (recovery,) = result.recoveries
    assert recovery.checkpoint is not None and recovery.checkpoint >= 3
    assert 0 < recovery.seconds < 30
    assert "Actor" in recovery.failure or "actor" in recovery.failure
    assert published(tmp_path / "out") == EXPECTED_NUMBERS


def test_without_checkpoints_a_lost_worker_fails_the_job(tmp_path: Path) -> None:
    p = td.Pipeline(runner=RayRunner(parallelism=2, bundle_size=200))
    numbering(p, str(tmp_path / "out" / "out"))
    result = p.run()
    time.sleep(1.0)
    ray.kill(result._actors[-1], no_restart=True)
    with pytest.raises(Exception, match="(?i)actor"):
        result.wait_until_finish(60)
    assert result.state is td.PipelineState.FAILED
    assert result.recoveries == []


class CrashAfter(td.DoFn):
    """Raises InjectedFailure on the element ``at`` while the marker file exists (once)."""

    def __init__(self, marker: str, at: int) -> None:
        self.inner = FailOnce(marker, lambda kv, at=at: kv[1] == at)

    def process(self, kv: Any) -> Iterable[Any]:
        return self.inner.process(kv)


def test_a_rerun_resumes_and_skips_a_damaged_newest_checkpoint(tmp_path: Path) -> None:
    """A user error fails the job; the newest checkpoint is then damaged on disk. The rerun warns,
    restores the one before it, and the published output is still exactly once."""
    marker = tmp_path / "armed"
    marker.write_text("")

    def build(p: td.Pipeline) -> None:
        (
            p
            | td.Read(td.GeneratorSource(paced))
            | td.ParDo(CrashAfter(str(marker), 2500))
            | td.ParDo(NumberPerKey())
            | td.WriteToText(str(tmp_path / "out" / "out"))
        )

    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.2, bundle_size=200)
    p = td.Pipeline(runner=runner)
    build(p)
    with pytest.raises(PipelineExecutionError, match="InjectedFailure") as failed:
        p.run().wait_until_finish(60)
    assert isinstance(failed.value.__cause__, InjectedFailure)
    store = CheckpointStore(str(tmp_path / "ck"))
    complete = [cid for cid in store.ids() if store.verify(cid) is None]
    assert len(complete) >= 2
    newest = complete[-1]
    part = next(iter(sorted((tmp_path / "ck" / f"chk-{newest:06d}").glob("stage*.pkl"))))
    part.write_bytes(part.read_bytes()[:-10])

    p = td.Pipeline(runner=runner)
    build(p)
    with pytest.warns(CheckpointWarning, match=rf"skipping checkpoint {newest} .*part '{part.name}' is damaged"):
        result = p.run()
        result.wait_until_finish(120)
    assert result.state is td.PipelineState.DONE
    assert published(tmp_path / "out") == EXPECTED_NUMBERS


def test_savepoint_then_restore_from_it(tmp_path: Path) -> None:
    """A savepoint taken on request survives retention; a new job restored from it finishes the
    stream, and the two jobs' published output together is exactly once."""
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=3600, bundle_size=200)
    p = td.Pipeline(runner=runner)
    numbering(p, str(tmp_path / "out" / "out"))
    result = p.run()
    time.sleep(1.5)
    location = result.savepoint(timeout=30)
    result.cancel()
    assert location.endswith(f"chk-{result.checkpoints[-1]:06d}")
    assert CheckpointStore(str(tmp_path / "ck")).get(result.checkpoints[-1]).savepoint
    # The savepoint's own output may not be published yet when the job is cancelled:
    # the restored job publishes it (it is staged in the savepoint).
    assert sum(published(tmp_path / "out").values()) < N

    resumed = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck2"), restore_from=location, bundle_size=200)
    p = td.Pipeline(runner=resumed)
    numbering(p, str(tmp_path / "out" / "out"))
    p.run().wait_until_finish(120)
    assert published(tmp_path / "out") == EXPECTED_NUMBERS


def test_a_checkpoint_restores_only_with_the_same_parallelism(tmp_path: Path) -> None:
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.2)
    with td.Pipeline(runner=runner) as p:
        p | td.Create([("a", 1), ("b", 2)]) | td.CombinePerKey(sum) | td.WriteToText(str(tmp_path / "out" / "o"))
    with pytest.raises(PipelineExecutionError, match=r"taken with parallelism .*restore it with the same parallelism"):
        with td.Pipeline(runner=RayRunner(parallelism=1, checkpoint_dir=str(tmp_path / "ck"))) as p:
            p | td.Create([("a", 1), ("b", 2)]) | td.CombinePerKey(sum) | td.WriteToText(str(tmp_path / "out" / "o"))


def test_a_checkpoint_of_another_pipeline_is_refused(tmp_path: Path) -> None:
    runner = RayRunner(parallelism=1, checkpoint_dir=str(tmp_path / "ck"))
    with td.Pipeline(runner=runner) as p:
        p | td.Create([1, 2]) | td.Map(lambda x: x + 1) | td.WriteToText(str(tmp_path / "o"))
    with pytest.raises(PipelineExecutionError, match="written by a different pipeline"):
        with td.Pipeline(runner=runner) as p:
            p | td.Create([1, 2]) | td.Filter(lambda x: x > 1) | td.WriteToText(str(tmp_path / "o"))


def test_a_finished_job_resumed_publishes_nothing_more(tmp_path: Path) -> None:
    """The final checkpoint records the end of input: resuming a finished job reads nothing again."""
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"))
    for _ in range(2):
        with td.Pipeline(runner=runner) as p:
            p | td.Create(range(100)) | td.Map(str) | td.WriteToText(str(tmp_path / "out" / "o"))
    assert sorted(read_text(str(tmp_path / "out" / "o-*")), key=int) == [str(i) for i in range(100)]


def test_checkpointing_costs_no_correctness_on_a_bounded_job(tmp_path: Path) -> None:
    """Many checkpoints, stored through an fsspec URL as a cluster's shared store would be."""
    pytest.importorskip("fsspec")
    runner = RayRunner(parallelism=2, checkpoint_dir=f"file://{tmp_path / 'ck'}", checkpoint_interval=0.05, bundle_size=500)
    words = [f"w{i % 13}" for i in range(20_000)]
    with td.Pipeline(runner=runner) as p:
        (p | td.Create(words) | td.Map(lambda w: (w, 1)) | td.CombinePerKey(sum)
         | td.MapTuple(lambda k, v: f"{k}={v}") | td.WriteToText(str(tmp_path / "out" / "o")))
    assert Counter(read_text(str(tmp_path / "out" / "o-*"))) == Counter(f"w{i}={Counter(words)[f'w{i}']}" for i in range(13))
    assert not os.listdir(tmp_path / "out" / ".tidal-staging")
    assert CheckpointStore(f"file://{tmp_path / 'ck'}").latest() is not None


def test_bad_checkpoint_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="checkpoint_interval must be positive"):
        RayRunner(checkpoint_interval=0)
    with pytest.raises(ValueError, match="max_restarts must be at least 0"):
        RayRunner(max_restarts=-1)
    with pytest.raises(PipelineExecutionError, match="not a checkpoint folder"):
        with td.Pipeline(runner=RayRunner(restore_from="/tmp/nowhere")) as p:
            p | td.Create([1])
