"""The Ray runner at scale, on the shared local Ray: parallel reads, warm workers, rescaling, bounded alignment.

* Sources are split once per run (``split(max_parallelism)``) and read by up
  to ``parallelism`` workers; every element is read exactly once at
  parallelism 1, 2 and 3, for Create, text files, Arrow data, Parquet files
  (by file and row group), a CSV file (by byte range) and an unbounded
  source with three partitions (one partition per worker).
* Workers come from a pool and are reused across jobs; a job leaves nothing
  behind in them (state, metrics, its objects), and a worker of a failed job
  is removed, never reused.
* What user code prints on a worker reaches the driver's stdout / stderr.
* A savepoint taken at parallelism 2 restores at 3 and at 1 with exact output.
* While barriers align behind a slow channel, what a worker holds in memory
  stays under ``alignment_buffer_bytes`` (the rest is spilled) and the output
  is exact.
* A fresh process with a ``ray start`` record (stopped or running) starts a local Ray with
  one line saying why, and no other start-up notice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterable

import cloudpickle
import pyarrow as pa
import pytest

import tidal as td
from tidal.capability_matrix.sinks import RecordTo, read_records
from tidal.model.primitives import BoundedSource
from tidal.runners.core.errors import PipelineExecutionError
from tidal.testing import assert_that, equal_to

ray = pytest.importorskip("ray")
from ray_support import (  # noqa: E402
    EXPECTED_NUMBERS,
    EXPECTED_SUMS,
    N,
    PARTITIONS,
    Stream,
    pids_of,
    published,
    sums_and_numbers,
    wait_for,
)

from tidal.runners.ray import RayRunner  # noqa: E402
from tidal.runners.ray.pool import get_pool  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_session")
# Workers import this module by name if its classes travel by reference, and then fail on
# ``import ray_support`` (the tests folder is not on their path): ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# -- parallel reads ---------------------------------------------------------------------
def _source(kind: str, tmp: Path) -> tuple[Any, list[Any], int]:
    """(a source transform, what it yields, how many pieces it splits into)."""
    if kind == "create":
        values = list(range(1000))
        return td.Create(values), values, 128
    if kind == "text":
        lines = []
        for f in range(5):
            chunk = [f"file{f}-line{i}" for i in range(40)]
            (tmp / f"in-{f}.txt").write_text("\n".join(chunk) + "\n")
            lines.extend(chunk)
        return td.io.ReadFromText(str(tmp / "in-*.txt")), lines, 5
    if kind == "arrow":
        table = pa.table({"k": [f"k{i % 7}" for i in range(300)], "v": list(range(300)), "t": [i / 10 for i in range(300)]})
        return td.io.ReadArrow(table, key="k", value="v", timestamp="t"), [(f"k{i % 7}", i) for i in range(300)], 100
    if kind == "parquet":  # two files of three row groups each: split by file and row group
        import pyarrow.parquet as pq

        for f in range(2):
            pq.write_table(pa.table({"n": list(range(f * 150, f * 150 + 150))}), str(tmp / f"in-{f}.parquet"), row_group_size=50)
        return td.io.ReadFromParquet(str(tmp / "in-*.parquet")), [{"n": i} for i in range(300)], 6
    if kind == "csv":  # one file, split by byte range at line starts
        (tmp / "in.csv").write_text("n,word\n" + "".join(f"{i},w{i % 13}\n" for i in range(2000)))
        return td.io.ReadFromCsv(str(tmp / "in.csv")), [{"n": i, "word": f"w{i % 13}"} for i in range(2000)], 3
    return td.Read(Stream(pause=0.0)), [(f"k{v % 5}", v) for v in range(N)], PARTITIONS


@pytest.mark.parametrize("parallelism", [1, 2, 3])
@pytest.mark.parametrize("kind", ["create", "text", "arrow", "parquet", "csv", "partitions"])
def test_every_element_is_read_exactly_once_by_up_to_parallelism_workers(tmp_path: Path, kind: str, parallelism: int) -> None:
    source, values, pieces = _source(kind, tmp_path)
    folder = tmp_path / "read"
    folder.mkdir()
    p = td.Pipeline(runner=RayRunner(parallelism=parallelism))
    _ = p | source | td.ParDo(RecordTo(str(folder), ("value",)))  # fused: recorded by the worker that read it
    result = p.run()
    result.wait_until_finish(120)
    assert sorted(read_records(folder), key=repr) == sorted(values, key=repr)
    readers = min(parallelism, pieces)
    assert result.parallelism[0] == readers  # type: ignore[attr-defined]
    assert len(pids_of(folder)) == readers  # each worker is a process of its own


# -- warm workers ----------------------------------------------------------------------
class CountPerKey(td.DoFn):
    """Emits each key's running count (keyed state) and counts elements in a user metric."""

    COUNT = td.ReadModifyWriteStateSpec("count")
    seen = td.Metrics.counter("scale", "seen")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        self.seen.inc()
        n = (count.read() or 0) + 1
        count.write(n)
        yield (kv[0], n)


def _counting_job(runner: RayRunner, keys: list[str]) -> Any:
    p = td.Pipeline(runner=runner)
    counts = p | td.Create([(k, 1) for k in keys]) | td.ParDo(CountPerKey())
    expected: list[Any] = []
    for k in sorted(set(keys)):
        expected.extend((k, n + 1) for n in range(keys.count(k)))
    assert_that(counts, equal_to(expected))
    return p.run()


def test_a_pooled_worker_keeps_nothing_of_the_jobs_it_ran_before() -> None:
    runner = RayRunner(parallelism=2)
    first = _counting_job(runner, ["a", "b", "a"] * 5)
    created = get_pool().created
    second = _counting_job(runner, ["a", "c"])  # a's count starts again at 1: no state carried over
    assert get_pool().created == created  # the same warm workers ran it
    [seen] = second.metrics().query(td.MetricsFilter().with_name("seen"))["counters"]
    assert seen.committed == 2  # only this job's elements
    [seen_first] = first.metrics().query(td.MetricsFilter().with_name("seen"))["counters"]
    assert seen_first.committed == 15
    idle = get_pool().idle()
    assert idle and all(not d["loaded"] and d["jobs"] >= 1 for d in ray.get([w.describe.remote() for w in idle]))
    # Every DoFn, CombineFn and operator of the jobs these workers ran has been freed.
    assert ray.get([w.leftovers.remote() for w in idle]) == [0] * len(idle)


class RecordWorker(td.DoFn):
    """Writes the id of the worker (actor) it runs in to ``folder`` at setup, then fails on ``bad``."""

    def __init__(self, folder: str, bad: Any) -> None:
        self.folder = folder
        self.bad = bad

    def setup(self) -> None:
        actor = ray.get_runtime_context().get_actor_id()
        Path(self.folder, actor).write_text("")

    def process(self, x: Any) -> Iterable[Any]:
        if x == self.bad:
            raise ValueError(f"bad element {x}")
        yield x


def test_the_workers_of_a_failed_job_are_removed_never_reused(tmp_path: Path) -> None:
    with pytest.raises(td.UserCodeError, match="bad element 3"):
        with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
            p | td.Create(list(range(10))) | td.ParDo(RecordWorker(str(tmp_path), 3))
    failed = set(os.listdir(tmp_path))
    assert failed
    idle = {w._actor_id.hex() for w in get_pool().idle()}
    assert not failed & idle
    from ray._private import state

    wait_for(
        lambda: all(state.actors()[a]["State"] == "DEAD" for a in failed),
        timeout=30,
        what="the failed job's workers are removed",
    )
    # The next job runs on other workers, and runs.
    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        assert_that(p | td.Create([1, 2]) | td.Map(lambda x: x * 3), equal_to([3, 6]))


def test_what_user_code_prints_on_a_worker_reaches_the_driver(capfd: Any) -> None:
    class Shout(td.DoFn):
        def process(self, word: str) -> Iterable[str]:
            print(f"warning about {word}", file=sys.stderr)
            yield word

    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        p | td.Create(["tide", "moon", "sea"]) | td.ParDo(Shout()) | td.Map(print)
    out, err = capfd.readouterr()
    assert sorted(out.split()) == ["moon", "sea", "tide"]
    assert sorted(line for line in err.splitlines() if line.startswith("warning")) == [
        "warning about moon",
        "warning about sea",
        "warning about tide",
    ]


# -- rescaling ---------------------------------------------------------------------------
def test_a_savepoint_taken_at_parallelism_2_restores_at_3_and_at_1_with_exact_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=3600, bundle_size=100)
    p = td.Pipeline(runner=runner)
    sums_and_numbers(p, out)
    result = p.run()
    wait_for(lambda: result.state.is_terminal or result.parallelism, what="the job starts")  # type: ignore[attr-defined]
    time.sleep(0.8)  # the stream is under way (it runs for about 3 s)
    location = result.savepoint(timeout=60)  # type: ignore[attr-defined]
    result.cancel()
    assert set(result.parallelism.values()) == {2}  # type: ignore[attr-defined]
    savepoint = int(location.rsplit("chk-", 1)[1])
    for new, folder in ((3, "ck3"), (1, "ck1")):
        resumed = RayRunner(parallelism=new, checkpoint_dir=str(tmp_path / folder), restore_from=location, bundle_size=100)
        q = td.Pipeline(runner=resumed)
        sums_and_numbers(q, out)
        again = q.run()
        again.wait_until_finish(180)
        assert again.state is td.PipelineState.DONE
        assert again.restored_from == savepoint
        # Source (3 partitions), windowed sums and numbering all at the new parallelism.
        assert set(again.parallelism.values()) == {new}  # type: ignore[attr-defined]
        # Each run withdraws what runs after the savepoint published and publishes its own.
        assert published(out) == (EXPECTED_SUMS, EXPECTED_NUMBERS)


def test_restoring_a_savepoint_with_other_key_groups_is_refused(tmp_path: Path) -> None:
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=3600, bundle_size=100)
    p = td.Pipeline(runner=runner)
    sums_and_numbers(p, tmp_path / "out", Stream(pause=0.2))
    result = p.run()
    wait_for(lambda: result.parallelism, what="the job starts")  # type: ignore[attr-defined]
    location = result.savepoint(timeout=60)  # type: ignore[attr-defined]
    result.cancel()
    q = td.Pipeline(runner=RayRunner(parallelism=2, max_parallelism=32, restore_from=location))
    sums_and_numbers(q, tmp_path / "out")
    with pytest.raises(PipelineExecutionError, match="max_parallelism 128, this run has 32"):
        q.run().wait_until_finish(60)


# -- bounded alignment -------------------------------------------------------------------
class FastAndSlow(BoundedSource):
    """Two splits: a fast one (20,000 elements over about 2 s) and a slow one (20 over 2 s)."""

    def __init__(self, which: str = "") -> None:
        self.which = which

    def split(self, desired_count: int) -> list[BoundedSource]:
        return [FastAndSlow("fast"), FastAndSlow("slow")]

    def read(self) -> Iterable[Any]:
        if self.which == "fast":
            for v in range(20_000):
                if v % 2000 == 0:
                    time.sleep(0.2)
                yield (f"f{v % 20}", v)
        elif self.which == "slow":
            for v in range(20):
                time.sleep(0.1)
                yield ("slow", v)


def test_alignment_behind_a_slow_channel_stays_under_its_memory_bound(tmp_path: Path) -> None:
    bound = 16 * 1024
    runner = RayRunner(
        parallelism=2,
        checkpoint_dir=str(tmp_path / "ck"),
        checkpoint_interval=0.3,
        bundle_size=500,  # the slow split's one read takes its whole 2 s: its barrier comes last
        alignment_buffer_bytes=bound,
        stage_parallelism={"Group": 1},
    )
    p = td.Pipeline(runner=runner)
    _ = (
        p
        | td.Read(FastAndSlow())
        | "Group" >> td.GroupByKey()
        | td.MapTuple(lambda k, vs: (k, len(vs), sum(vs)))
        | td.ParDo(RecordTo(str(tmp_path / "out"), ("value",)))
    )
    (tmp_path / "out").mkdir()
    result = p.run()
    expected = [(f"f{k}", 1000, sum(range(k, 20_000, 20))) for k in range(20)] + [("slow", 20, sum(range(20)))]
    assert sorted(read_records(tmp_path / "out")) == sorted(expected)
    stats = result.alignment  # type: ignore[attr-defined]
    assert stats.alignments >= 1
    assert stats.spilled_bytes > bound  # the fast channel sent far more than the bound while held
    assert 0 < stats.peak_held_bytes <= bound


# -- a stale cluster record, a quiet start -----------------------------------------------------
@pytest.fixture
def short_tmp() -> Any:
    """A folder with a short path (Ray's socket paths under it must stay under 108 characters)."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="tidal-stale-", dir="/tmp")
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("recorded", ["stopped", "running"])
def test_a_ray_start_record_gives_a_fresh_local_ray_with_one_line_saying_why(short_tmp: Path, recorded: str) -> None:
    """Without an address the runner starts its own Ray, whether the recorded cluster has stopped
    (nothing listens at its address) or still runs (something listens: not joined unasked)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if recorded == "running":
        listener.listen()
    else:
        listener.close()
    (short_tmp / "ray").mkdir()
    record = short_tmp / "ray" / "ray_current_cluster"
    record.write_text(f"127.0.0.1:{port}")
    script = textwrap.dedent(
        """
        import tidal as td
        with td.Pipeline(runner="ray") as p:
            p | td.Create(["alpha", "beta"]) | td.Map(print)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["RAY_TMPDIR"] = str(short_tmp)
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    finally:
        listener.close()
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["alpha", "beta"]
    why = {"stopped": "is not running", "running": "is not used without an address (give address= or RAY_ADDRESS to run on it)"}
    assert proc.stderr.splitlines() == [
        f"tidal: the Ray cluster recorded at 127.0.0.1:{port} (in {record}) {why[recorded]}; starting a local Ray instead",
        f"tidal: started a local Ray ({max(os.cpu_count() or 2, 2)} CPUs)",
    ]
