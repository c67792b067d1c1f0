"""A Parquet sink is exactly once after a failure: a killed Ray worker, a killed micro-batch process.

Each job reads a replayable source, writes its rows and its windowed sums
with ``WriteToParquet``, and is killed after at least one checkpoint (Ray)
or commit (micro-batch) completed. The rows of the published Parquet files,
read back with pyarrow, must equal a plain-Python computation: nothing lost,
nothing twice.

This file is also the micro-batch job: ``python test_file_recovery.py SPEC``
runs it in a process of its own, to be killed (see :func:`_main`).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tidal as td
from tidal.runners.core.checkpoint import CheckpointStore, CheckpointWarning
from tidal.runners.microbatch import MicroBatchRunner
from tidal.runners.microbatch.commitlog import CommitLog

N = 2000
KEYS = 5
ROW_SCHEMA = pa.schema([("key", pa.string()), ("value", pa.int64())])
SUM_SCHEMA = pa.schema([("key", pa.string()), ("start", pa.int64()), ("total", pa.int64())])


def paced(n: int = N, step: int = 100, pause: float = 0.05) -> Iterator[Any]:
    """(k<v % 5>, v) at v / 100 s of event time, with a pause every ``step`` elements."""
    for v in range(n):
        if v % step == 0:
            time.sleep(pause)
        yield td.TimestampedValue((f"k{v % KEYS}", v), v / 100)


EXPECTED_ROWS = collections.Counter((f"k{v % KEYS}", v) for v in range(N))
EXPECTED_SUMS = collections.Counter(
    (f"k{k}", w, sum(v for v in range(N) if v % KEYS == k and v // 100 == w)) for w in range(N // 100) for k in range(KEYS)
)


def build(p: td.Pipeline, out: Path, killer: td.DoFn | None = None) -> None:
    events = p | "Events" >> td.Read(td.GeneratorSource(paced))
    if killer is not None:
        events = events | "Kill" >> td.ParDo(killer)
    _ = (
        events
        | "Rows" >> td.MapTuple(lambda k, v: {"key": k, "value": v})
        | "WriteRows" >> td.WriteToParquet(str(out / "rows"), ROW_SCHEMA, file_name_suffix=".parquet")
    )
    _ = (
        events
        | td.WindowInto(td.window.FixedWindows(1))
        | td.CombinePerKey(sum)
        | "Sums" >> td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: {"key": k, "start": int(w.start), "total": v})
        | "WriteSums" >> td.WriteToParquet(str(out / "sums"), SUM_SCHEMA, file_name_suffix=".parquet")
    )


def published_rows(out: Path, name: str) -> collections.Counter[tuple[Any, ...]]:
    """The rows of every published file of one sink, read by pyarrow alone."""
    files = sorted(f for f in os.listdir(out) if f.startswith(name + "-") and f.endswith(".parquet"))
    rows: collections.Counter[tuple[Any, ...]] = collections.Counter()
    for f in files:
        for row in pq.read_table(out / f).to_pylist():
            rows[tuple(row.values())] += 1
    return rows


# -- Ray: a worker killed after a completed checkpoint ------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
def test_parquet_output_is_exactly_once_when_a_ray_worker_is_killed(tmp_path: Path, seed: int, request: pytest.FixtureRequest) -> None:
    ray = pytest.importorskip("ray")
    request.getfixturevalue("ray_session")
    from tidal.runners.ray import RayRunner

    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.2, bundle_size=100)
    p = td.Pipeline(runner=runner)
    out = tmp_path / "out"
    build(p, out)
    result = p.run()
    store = CheckpointStore(str(tmp_path / "ck"))
    deadline = time.time() + 60
    while True:  # at least one complete checkpoint before the kill
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointWarning)  # (one being written is not complete yet)
            if store.latest() is not None:
                break
        assert time.time() < deadline, "no checkpoint completed"
        time.sleep(0.05)
    rng = random.Random(seed)
    time.sleep(rng.uniform(0.0, 0.4))
    ray.kill(rng.choice(list(result._actors)), no_restart=True)
    result.wait_until_finish(180)
    assert result.state is td.PipelineState.DONE
    assert len(result.recoveries) == 1
    assert published_rows(out, "rows") == EXPECTED_ROWS
    assert published_rows(out, "sums") == EXPECTED_SUMS
    names = sorted(f for f in os.listdir(out) if not f.startswith("."))
    assert all(f.split("-")[1].isdigit() and len(f.split("-")[1]) == 6 for f in names), names  # checkpoint names


# -- micro-batch: the process killed after a completed commit ------------------------------------------
class KillAfterCommit(td.DoFn):
    """Passes elements on; kills its own process at the ``n``-th element seen once a batch has committed."""

    def __init__(self, log: str, n: int | None) -> None:
        self.log = log
        self.n = n
        self.seen = 0

    def process(self, element: Any) -> Iterable[Any]:
        self.seen += 1
        if self.n is not None and self.seen >= self.n and CommitLog(self.log).committed_indices():
            os.kill(os.getpid(), signal.SIGKILL)
        yield element


def _main(spec: dict[str, Any]) -> None:
    """Run the micro-batch job with a commit log; arm the killer when the spec says so."""
    killer = KillAfterCommit(spec["log"], spec.get("kill_at"))  # always a step: a disarmed one kills nothing
    p = td.Pipeline(runner=MicroBatchRunner(batch_interval=0.05, max_batch_size=150, commit_log=spec["log"]))
    build(p, Path(spec["out"]), killer)
    p.run().wait_until_finish()


def _run_job(out: Path, log: Path, kill_at: int | None) -> tuple[int, str]:
    spec = {"out": str(out), "log": str(log), "kill_at": kill_at}
    proc = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_parquet_output_is_exactly_once_when_a_microbatch_process_is_killed(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    out, log = tmp_path / "out", tmp_path / "log"
    kills = [rng.randint(1, N) for _ in range(rng.randint(1, 2))]
    for i, kill_at in enumerate(kills):
        code, stderr = _run_job(out, log, kill_at)
        if i == 0:
            assert code == -signal.SIGKILL, f"the first run was not killed: {stderr[-2000:]}"
        elif code == 0:
            break
    code, stderr = _run_job(out, log, None)
    assert code == 0, stderr[-2000:]
    assert published_rows(out, "rows") == EXPECTED_ROWS
    assert published_rows(out, "sums") == EXPECTED_SUMS


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
