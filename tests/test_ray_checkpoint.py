"""Fault tolerance on Ray: aligned barrier checkpoints, restart after lost workers, resume, savepoints.

Workers are killed with ``ray.kill`` once ``k`` checkpoints have completed
(the test polls ``result.checkpoints``), while a windowed and a stateful
pipeline read a replayable source; the files that WriteToText published must
equal a plain-Python computation of the result: nothing lost, nothing
published twice. Each kill test also proves the restart restored a
checkpoint: the recovery names it, and the source read only the tail of its
input again (a :class:`ReadLog` step records what every worker read, by the
moment the worker was set up). A separate test kills a worker before the
first checkpoint, where the restart is from the start.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

import tidal as td
from tidal.capability_matrix.sinks import FailOnce, InjectedFailure
from tidal.io.textio import TextSinkFn, read_text
from tidal.runners.core.checkpoint import CheckpointStore, CheckpointWarning
from tidal.runners.core.errors import PipelineExecutionError

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


class ReadLog(td.DoFn):
    """Passes (key, value) elements on and records each value in ``folder``.

    One file per bundle, named after the moment this instance was set up
    (``time.time()``), so the reads of the workers a restart created can be
    told from the killed attempt's: see :func:`reads_since`.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._name = ""
        self._seq = 0
        self._values: list[Any] = []

    def setup(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        self._name = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}"

    def start_bundle(self) -> None:
        self._values = []

    def process(self, kv: Any) -> Iterable[Any]:
        self._values.append(kv[1])
        yield kv

    def finish_bundle(self) -> None:
        if self._values:
            self._seq += 1
            path = os.path.join(self.folder, f"{self._name}-{self._seq:06d}.pkl")
            with open(path + ".tmp", "wb") as f:
                pickle.dump(self._values, f)
            os.replace(path + ".tmp", path)


def reads_since(folder: Path, moment: float) -> list[Any]:
    """The values read by ReadLog instances set up after ``moment`` (a ``time.time()``)."""
    values: list[Any] = []
    for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
        if name.endswith(".pkl") and float(name.split("-")[0]) > moment:
            with open(folder / name, "rb") as f:
                values.extend(pickle.load(f))
    return values


def assert_resumed_at_an_offset(after: list[int], total: range) -> None:
    """The values read after a restore are a proper tail of ``total``: the source resumed from a
    recorded offset, reading neither the beginning again nor anything twice."""
    assert len(after) < len(total), f"the restarted job read all {len(total)} elements again"
    assert sorted(after) == list(total)[len(total) - len(after):]


def window_sums(p: td.Pipeline, out: str, reads: str) -> None:
    (
        p
        | td.Read(td.GeneratorSource(paced))
        | td.ParDo(ReadLog(reads))
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


def numbering(p: td.Pipeline, out: str, reads: str | None = None) -> None:
    events = p | td.Read(td.GeneratorSource(paced))
    if reads is not None:
        events = events | td.ParDo(ReadLog(reads))
    events | td.ParDo(NumberPerKey()) | td.WriteToText(out)


EXPECTED_NUMBERS = Counter(f"k{k},{i + 1}" for k in range(KEYS) for i in range(N // KEYS))


def published(folder: Path) -> Counter[str]:
    return Counter(read_text(str(folder / "out-*")))


def wait_for_checkpoints(result: Any, k: int, timeout: float = 60.0) -> list[int]:
    """Poll until ``k`` checkpoints of the running job have completed; their ids."""
    deadline = time.monotonic() + timeout
    while len(result.checkpoints) < k and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(result.checkpoints) >= k, f"only {len(result.checkpoints)} of {k} checkpoints completed in {timeout} s"
    return list(result.checkpoints)


def run_with_kill(
    build: Any, tmp: Path, seed: int, runner: RayRunner | None = None, k: int = 2, options: dict[str, Any] | None = None
) -> tuple[Any, float, int]:
    """Run ``build`` on Ray with checkpoints; once ``k`` have completed, kill one of its workers
    (seeded random choice, after a seeded random extra moment). Returns the result, the moment of
    the kill and the newest checkpoint completed before it."""
    runner = runner or RayRunner(parallelism=2, checkpoint_dir=str(tmp / "ck"), checkpoint_interval=0.25, bundle_size=200)
    p = td.Pipeline(runner=runner, options=options)
    build(p, str(tmp / "out" / "out"), str(tmp / "reads"))
    rng = random.Random(seed)
    result = p.run()
    completed = wait_for_checkpoints(result, k)
    time.sleep(rng.uniform(0.0, 0.3))
    actors = list(result._actors)
    assert actors, "the job started no workers"
    killed_at = time.time()
    ray.kill(rng.choice(actors), no_restart=True)
    result.wait_until_finish(120)
    return result, killed_at, completed[-1]


def assert_restored(result: Any, newest_before_kill: int) -> None:
    """One recovery, from a checkpoint at least as new as the newest one completed before the kill."""
    assert result.state is td.PipelineState.DONE
    (recovery,) = result.recoveries
    assert recovery.checkpoint is not None, "the job restarted from the start, not from a checkpoint"
    assert recovery.checkpoint >= newest_before_kill
    assert result.restored_from == recovery.checkpoint
    assert 0 < recovery.seconds < 60
    assert "actor" in recovery.failure.lower()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_windowed_sums_exactly_once_when_a_worker_is_killed(tmp_path: Path, seed: int) -> None:
    result, killed_at, newest = run_with_kill(window_sums, tmp_path, seed)
    assert_restored(result, newest)
    assert_resumed_at_an_offset(reads_since(tmp_path / "reads", killed_at), range(N))
    assert published(tmp_path / "out") == EXPECTED_SUMS


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 14))
def test_keyed_state_exactly_once_when_a_worker_is_killed(tmp_path: Path, seed: int) -> None:
    result, killed_at, newest = run_with_kill(numbering, tmp_path, seed)
    assert_restored(result, newest)
    assert_resumed_at_an_offset(reads_since(tmp_path / "reads", killed_at), range(N))
    assert published(tmp_path / "out") == EXPECTED_NUMBERS


@pytest.mark.slow
@pytest.mark.parametrize("build, expected", [(window_sums, EXPECTED_SUMS), (numbering, EXPECTED_NUMBERS)], ids=["windowed", "stateful"])
def test_exactly_once_on_the_disk_state_backend_with_incremental_checkpoints(tmp_path: Path, build: Any, expected: Counter[str]) -> None:
    # A small cache puts most state on disk; after the first (full) checkpoint each one holds
    # only the keys that changed, and the restore folds the chain back together.
    options = {"state_backend": "disk", "state_dir": str(tmp_path / "state"), "state_cache_entries": 4}
    result, killed_at, newest = run_with_kill(build, tmp_path, 7, k=3, options=options)
    assert_restored(result, newest)
    assert_resumed_at_an_offset(reads_since(tmp_path / "reads", killed_at), range(N))
    assert published(tmp_path / "out") == expected
    manifests = [json.loads(m.read_bytes()) for m in (tmp_path / "ck").glob("chk-*/MANIFEST.json")]
    assert any(entry.get("needs") for m in manifests for entry in m["parts"].values()), "no checkpoint was incremental"


def test_a_worker_killed_before_the_first_checkpoint_restarts_from_the_start(tmp_path: Path) -> None:
    """No checkpoint has completed yet (the interval is an hour): the restart reads everything
    again, and the output is still exact, since nothing was published before the kill."""
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=3600, bundle_size=200)
    p = td.Pipeline(runner=runner)
    numbering(p, str(tmp_path / "out" / "out"), str(tmp_path / "reads"))
    result = p.run()
    deadline = time.monotonic() + 60
    while not reads_since(tmp_path / "reads", 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reads_since(tmp_path / "reads", 0), "the job read nothing in 60 s"
    killed_at = time.time()
    ray.kill(result._actors[-1], no_restart=True)
    result.wait_until_finish(120)
    (recovery,) = result.recoveries
    assert recovery.checkpoint is None and result.restored_from is None
    assert len(result.checkpoints) == 1  # only the final one, after the restart
    assert sorted(reads_since(tmp_path / "reads", killed_at)) == list(range(N))
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


@pytest.mark.parametrize("damaged", ["from the newest published on", "every"])
def test_a_rerun_skips_damaged_checkpoints_and_withdraws_what_they_published(tmp_path: Path, damaged: str) -> None:
    """A user error fails the job; then complete checkpoints are damaged on disk: every one from the
    newest whose output was published on (or every one). The rerun warns, restores the one before
    them (or starts from the beginning), withdraws what the skipped checkpoints published, and the
    published output is still exactly once."""
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
    published_by = {int(f.name.split("-")[1]) for f in (tmp_path / "out").glob("out-*")}  # out-<checkpoint>-<writer>
    assert 0 < sum(published(tmp_path / "out").values()) < N  # the failed run published its checkpoints' output
    first_damaged = max(published_by & set(complete)) if damaged != "every" else complete[0]
    older = [cid for cid in complete if cid < first_damaged]
    assert damaged == "every" or older, (complete, published_by)
    for cid in (cid for cid in complete if cid >= first_damaged):
        part = sorted((tmp_path / "ck" / f"chk-{cid:06d}").glob("stage*.pkl"))[0]
        part.write_bytes(part.read_bytes()[:-10])

    p = td.Pipeline(runner=runner)
    build(p)
    with pytest.warns(CheckpointWarning, match=rf"skipping checkpoint {complete[-1]} .*part 'stage.*' is damaged") as warned:
        result = p.run()
        result.wait_until_finish(120)
    assert result.state is td.PipelineState.DONE
    skipped = {int(str(w.message).split()[2]) for w in warned if issubclass(w.category, CheckpointWarning)}
    assert {cid for cid in complete if cid >= first_damaged} <= skipped
    assert result.restored_from == (older[-1] if older else None)
    assert published(tmp_path / "out") == EXPECTED_NUMBERS


def test_savepoint_then_restore_from_it(tmp_path: Path) -> None:
    """A savepoint taken on request survives retention; a new job restored from it finishes the
    stream, and the two jobs' published output together is exactly once."""
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=3600, bundle_size=200)
    p = td.Pipeline(runner=runner)
    numbering(p, str(tmp_path / "out" / "out"), str(tmp_path / "reads"))
    result = p.run()
    deadline = time.monotonic() + 60
    while len(reads_since(tmp_path / "reads", 0)) < 500 and time.monotonic() < deadline:
        time.sleep(0.02)  # the stream is under way (its workers may take a while to start)
    location = result.savepoint(timeout=30)
    result.cancel()
    assert location.endswith(f"chk-{result.checkpoints[-1]:06d}")
    assert CheckpointStore(str(tmp_path / "ck")).get(result.checkpoints[-1]).savepoint
    # The savepoint's own output may not be published yet when the job is cancelled:
    # the restored job publishes it (it is staged in the savepoint).
    assert sum(published(tmp_path / "out").values()) < N

    resumed = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck2"), restore_from=location, bundle_size=200)
    p = td.Pipeline(runner=resumed)
    numbering(p, str(tmp_path / "out" / "out"), str(tmp_path / "reads"))
    started = time.time()
    result = p.run()
    result.wait_until_finish(120)
    assert result.restored_from == int(location.rsplit("chk-", 1)[1])
    assert_resumed_at_an_offset(reads_since(tmp_path / "reads", started), range(N))
    assert published(tmp_path / "out") == EXPECTED_NUMBERS


def test_a_checkpoint_restores_only_with_the_same_max_parallelism(tmp_path: Path) -> None:
    """Another parallelism is fine (key groups are handed out again); other key groups are not."""
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.2)
    with td.Pipeline(runner=runner) as p:
        p | td.Create([("a", 1), ("b", 2)]) | td.CombinePerKey(sum) | td.WriteToText(str(tmp_path / "out" / "o"))
    with pytest.raises(
        PipelineExecutionError,
        match=r"taken with max_parallelism 128, this run has 64; .*restore it with RayRunner\(max_parallelism=128\)",
    ):
        with td.Pipeline(runner=RayRunner(parallelism=1, max_parallelism=64, checkpoint_dir=str(tmp_path / "ck"))) as p:
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
    assert not (tmp_path / "out" / ".tidal-staging").exists()  # everything staged was published, and the folder went
    assert CheckpointStore(f"file://{tmp_path / 'ck'}").latest() is not None


def test_bad_checkpoint_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="checkpoint_interval must be positive"):
        RayRunner(checkpoint_interval=0)
    with pytest.raises(ValueError, match="max_restarts must be at least 0"):
        RayRunner(max_restarts=-1)
    with pytest.raises(PipelineExecutionError, match="not a checkpoint folder"):
        with td.Pipeline(runner=RayRunner(restore_from="/tmp/nowhere")) as p:
            p | td.Create([1])


# -- barrier alignment: a keyed stage with two senders ----------------------------------------
SLOW_N, FAST_N = 160, 2000


def _slow_values() -> Iterator[Any]:
    """(k<v % 5>, v) for v < 160: a burst of 20 every 0.5 s (~4 s)."""
    for v in range(SLOW_N):
        if v % 20 == 0:
            time.sleep(0.5)
        yield (f"k{v % KEYS}", v)


def _fast_values() -> Iterator[Any]:
    """(k<v % 5>, v) for 160 <= v < 2160: 10 every 20 ms (~4 s)."""
    for v in range(SLOW_N, SLOW_N + FAST_N):
        if v % 10 == 0:
            time.sleep(0.02)
        yield (f"k{v % KEYS}", v)


class Stall(td.DoFn):
    """Passes elements on, taking 0.5 s per bundle: its source worker hears a checkpoint trigger
    late, so its barrier comes long after the other source's."""

    def process(self, element: Any) -> Iterable[Any]:
        yield element

    def finish_bundle(self) -> None:
        time.sleep(0.5)


def two_senders(p: td.Pipeline, out: str, reads: str) -> None:
    """Two sources flattened into a keyed stateful step: its workers read from two senders, and
    the slow source's barriers come up to 0.5 s after the fast one's."""
    slow = p | "Slow" >> td.Read(td.GeneratorSource(_slow_values)) | "StallSlow" >> td.ParDo(Stall()) | "ReadSlow" >> td.ParDo(ReadLog(reads))
    fast = p | "Fast" >> td.Read(td.GeneratorSource(_fast_values)) | "ReadFast" >> td.ParDo(ReadLog(reads))
    (slow, fast) | td.Flatten() | td.ParDo(NumberPerKey()) | td.WriteToText(out)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
def test_keyed_state_with_two_senders_exactly_once_when_a_worker_is_killed(tmp_path: Path, seed: int) -> None:
    """The keyed stage reads from two senders; once barrier n came on one channel, what that
    channel sends next waits until barrier n came on the other (alignment), so the restored
    snapshot holds exactly what came before the barrier on each channel."""
    result, killed_at, newest = run_with_kill(two_senders, tmp_path, seed, k=2)
    assert_restored(result, newest)
    after = reads_since(tmp_path / "reads", killed_at)
    assert_resumed_at_an_offset([v for v in after if v < SLOW_N], range(SLOW_N))
    assert_resumed_at_an_offset([v for v in after if v >= SLOW_N], range(SLOW_N, SLOW_N + FAST_N))
    total = SLOW_N + FAST_N
    assert published(tmp_path / "out") == Counter(f"k{k},{i + 1}" for k in range(KEYS) for i in range(total // KEYS))


# -- staged output: a crash between a checkpoint's completion and its commit ----------------------
class DiesInFirstCommit(TextSinkFn):
    """WriteToText's sink, except that the first commit of staged files (while the marker file
    exists) kills the worker's process before publishing anything."""

    def __init__(self, prefix: str, marker: str) -> None:
        super().__init__(prefix)
        self.marker = marker

    def commit(self, handle: list[tuple[str, str]]) -> None:
        if handle:
            try:
                os.remove(self.marker)
            except FileNotFoundError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        super().commit(handle)


def _then_wait_for(stop: str, n: int = 500) -> Iterator[Any]:
    """(k<v % 5>, v) for v < n, then nothing until the file ``stop`` exists."""
    for v in range(n):
        yield (f"k{v % KEYS}", v)
    while not os.path.exists(stop):
        time.sleep(0.01)


def test_the_restored_checkpoint_publishes_its_staged_output_at_once(tmp_path: Path) -> None:
    """A savepoint completes; its sink dies before publishing it. The restarted job publishes what
    the savepoint staged as soon as it restores it, while the input is still open (no later
    checkpoint exists to publish it), and exactly once by the end."""
    marker, stop = tmp_path / "armed", tmp_path / "stop"
    marker.touch()
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=3600, bundle_size=100)
    p = td.Pipeline(runner=runner)
    (
        p
        | td.Read(td.GeneratorSource(lambda: _then_wait_for(str(stop))))
        | td.ParDo(ReadLog(str(tmp_path / "reads")))
        | td.ParDo(NumberPerKey())
        | td.ParDo(DiesInFirstCommit(str(tmp_path / "out" / "out"), str(marker)))
    )
    result = p.run()
    expected = Counter(f"k{k},{i + 1}" for k in range(KEYS) for i in range(500 // KEYS))
    try:
        deadline = time.monotonic() + 60
        while len(reads_since(tmp_path / "reads", 0)) < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
        location = result.savepoint(timeout=60)
        savepoint = int(location.rsplit("chk-", 1)[1])
        deadline = time.monotonic() + 60
        while (not result.recoveries or published(tmp_path / "out") != expected) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not marker.exists(), "the sink never reached its commit"
        assert [r.checkpoint for r in result.recoveries] == [savepoint]
        assert result.state is td.PipelineState.RUNNING
        assert published(tmp_path / "out") == expected  # published on restore, before the input ends
    finally:
        stop.touch()
    result.wait_until_finish(120)
    assert result.state is td.PipelineState.DONE
    assert published(tmp_path / "out") == expected
