"""Exactly once from Redis to Redis after a failure: a killed micro-batch process, a killed Ray worker.

The job reads a Redis stream of events (key, value, event time), keeps
per-window sums and a per-key numbering in state, and writes both to Redis
streams through ``WriteToRedisStream``. It is killed after at least one
checkpoint (a commit of the micro-batch log, a complete Ray checkpoint) has
completed, then recovers; what the output streams hold must equal the
result worked out in plain Python: nothing lost, nothing twice.

This file is also the micro-batch job: ``python test_redis_recovery.py SPEC``
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
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.runners.microbatch import MicroBatchExecutor, MicroBatchRunner
from tidal.runners.microbatch.commitlog import CommitLog

N = 600
KEYS = 5
#: Event time of event i: i / 20 s, so 1 s windows of 20 events (4 per key).
PER_SECOND = 20


def event(i: int) -> dict[str, Any]:
    return {"k": f"k{i % KEYS}", "v": i, "t": i / PER_SECOND}


def expected() -> dict[str, collections.Counter[str]]:
    """The lines each output stream holds after a run without failure, by hand."""
    sums: collections.Counter[tuple[str, int]] = collections.Counter()
    numbers = []
    seen: collections.Counter[str] = collections.Counter()
    for i in range(N):
        e = event(i)
        sums[e["k"], i // PER_SECOND] += e["v"]
        seen[e["k"]] += 1
        numbers.append(f"{e['k']},{seen[e['k']]},{e['v']}")
    return {
        "sums": collections.Counter(f"{k},{w},{total}" for (k, w), total in sums.items()),
        "numbers": collections.Counter(numbers),
    }


class NumberPerKey(td.DoFn):
    """Numbers each key's events 1, 2, 3, ... in keyed state (in stream order per key)."""

    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[dict[str, str]]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield {"line": f"{kv[0]},{n},{kv[1]}"}


def build(p: td.Pipeline, url: str, killer: td.DoFn | None = None) -> None:
    events = p | "Events" >> td.ReadFromRedisStream(url, "events", timestamp_field="t", max_num_records=N)
    pairs = events | "Pairs" >> td.Map(lambda e: (e["k"], int(e["v"])))
    pairs = pairs | "Kill" >> td.ParDo(killer or KillAfterCommit("", None))  # the same steps in every run
    (
        pairs
        | td.WindowInto(window.FixedWindows(1))
        | td.CombinePerKey(sum)
        | "FormatSums" >> td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: {"line": f"{k},{int(w.start)},{v}"})
        | "WriteSums" >> td.WriteToRedisStream(url, "sums")
    )
    pairs | td.ParDo(NumberPerKey()) | "WriteNumbers" >> td.WriteToRedisStream(url, "numbers")


def published(client: Any) -> dict[str, collections.Counter[str]]:
    return {name: collections.Counter(f["line"] for _, f in client.xrange(name)) for name in ("sums", "numbers")}


def write_events(client: Any, start: int = 0, stop: int = N) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(start, stop):
        pipe.xadd("events", event(i))
    pipe.execute()


# -- micro-batch: the job in a process of its own, killed ------------------------------------
class KillAfterCommit(td.DoFn):
    """Kills its process (SIGKILL) at the first element from the ``at``-th on, once the log has a commit.

    Unarmed (``at=None``) it passes elements on.
    """

    def __init__(self, log: str, at: int | None) -> None:
        self.log = log
        self.at = at
        self.seen = 0

    def process(self, element: Any) -> Iterable[Any]:
        self.seen += 1
        if self.at is not None and self.seen >= self.at and CommitLog(self.log).committed_indices():
            os.kill(os.getpid(), signal.SIGKILL)
        yield element


def _main(spec: dict[str, Any]) -> None:
    """Run the job as ``spec`` says (url, log, kill: None, ["element", n] or ["publish", batch])."""
    kill = spec["kill"]
    killer = None
    if kill is not None and kill[0] == "element":
        killer = KillAfterCommit(spec["log"], kill[1])
    elif kill is not None and kill[0] == "publish":  # committed, killed while publishing
        publish = MicroBatchExecutor.commit

        def die_before_publish(self: MicroBatchExecutor, up_to: int) -> None:
            if up_to == kill[1]:
                os.kill(os.getpid(), signal.SIGKILL)
            publish(self, up_to)

        MicroBatchExecutor.commit = die_before_publish  # type: ignore[method-assign]
    p = td.Pipeline(runner=MicroBatchRunner(batch_interval=0.02, max_batch_size=40, commit_log=spec["log"]))
    build(p, spec["url"], killer)
    result = p.run()
    result.wait_until_finish()
    print(json.dumps([[b.index, b.records, b.replayed] for b in result.batches]))


def _run_job(url: str, log: Path, kill: list[Any] | None) -> tuple[int, list[Any], str]:
    spec = {"url": url, "log": str(log), "kill": kill}
    proc = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True, timeout=120)
    batches = json.loads(proc.stdout) if proc.returncode == 0 else []
    return proc.returncode, batches, proc.stderr


@pytest.mark.parametrize("seed", range(4))
def test_microbatch_killed_process_publishes_each_entry_once(tmp_path: Path, redis_url: str, redis_client: Any, seed: int) -> None:
    write_events(redis_client)
    rng = random.Random(seed)
    kills: list[list[Any]] = [["element", rng.randint(41, N)] for _ in range(rng.randint(1, 2))]
    history = []
    for attempt, kill in enumerate([*kills, None]):
        code, batches, stderr = _run_job(redis_url, tmp_path / "log", kill)
        history.append((kill, code))
        if attempt == 0:
            assert code == -signal.SIGKILL, f"the first run was not killed at {kill}: {stderr[-2000:]}"
        if code == 0:
            break
        assert code == -signal.SIGKILL, f"the run after {history} failed: {stderr[-2000:]}"
    assert history[-1][1] == 0, history
    assert CommitLog(tmp_path / "log").committed_indices()
    assert published(redis_client) == expected(), history


def test_microbatch_killed_between_commit_and_publish_publishes_each_entry_once(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
    write_events(redis_client)
    code, _, stderr = _run_job(redis_url, tmp_path / "log", ["publish", 3])
    assert code == -signal.SIGKILL, stderr[-2000:]
    before = published(redis_client)
    assert 0 < sum(before["numbers"].values()) < N  # batches 0-2 were published, batch 3 was not
    staged = redis_client.keys("numbers:tidal-staging:*")
    assert staged, "batch 3's output should be staged, waiting for its publication"
    code, batches, stderr = _run_job(redis_url, tmp_path / "log", None)
    assert code == 0, stderr[-2000:]
    assert batches[0][0] == 4 and not any(replayed for _, _, replayed in batches)
    assert published(redis_client) == expected()
    assert not set(staged) & set(redis_client.keys("*"))  # the restart published what batch 3 staged


def test_a_replayed_batch_reads_exactly_its_recorded_range(tmp_path: Path, redis_url: str, redis_client: Any) -> None:
    """Events trickle in, so batches are cut by the interval and hold few records; the job is killed
    in a batch, and by the restart every event is in the stream: the replay of that batch must stop
    at its recorded end, not read on to a full batch."""
    log = tmp_path / "log"
    write_events(redis_client, 0, 100)
    spec = {"url": redis_url, "log": str(log), "kill": ["element", 130]}
    job = subprocess.Popen([sys.executable, __file__, json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (log.exists() and CommitLog(log).committed_indices()) and job.poll() is None:
        assert time.monotonic() < deadline, "the job committed no batch"
        time.sleep(0.01)
    fed = 100
    while job.poll() is None and fed < N:  # 5 events every 20 ms until the job is killed
        write_events(redis_client, fed, fed + 5)
        fed += 5
        time.sleep(0.02)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == -signal.SIGKILL, stderr[-2000:]
    write_events(redis_client, fed, N)
    commits = CommitLog(log)
    in_flight = commits.planned_indices()[-1]
    assert in_flight > commits.committed_indices()[-1], "the kill left no batch to replay"
    assert commits.planned(in_flight)["records"] < 40, "the batch in flight was full: nothing to tell"
    code, batches, stderr = _run_job(redis_url, log, None)
    assert code == 0, stderr[-2000:]
    assert batches[0][0] == in_flight and batches[0][2] is True  # the restart replayed it first
    assert published(redis_client) == expected()


# -- Ray: a worker killed while the stream is still arriving -----------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("victim", ["source", "sink"])
def test_ray_killed_worker_publishes_each_entry_once(
    tmp_path: Path, redis_url: str, redis_client: Any, ray_session: None, victim: str
) -> None:
    ray = pytest.importorskip("ray")
    from tidal.runners.ray.runner import RayRunner

    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.25, bundle_size=50)
    write_events(redis_client, 0, 100)
    stop = threading.Event()

    def feed() -> None:  # the rest of the stream arrives over ~2.5 s
        for start in range(100, N, 25):
            if stop.wait(0.1):
                return
            write_events(redis_client, start, start + 25)

    p = td.Pipeline(runner=runner)
    build(p, redis_url)
    feeder = threading.Thread(target=feed, daemon=True)
    result = p.run()
    try:
        deadline = time.monotonic() + 60
        while not result.checkpoints and time.monotonic() < deadline:
            time.sleep(0.02)
        assert result.checkpoints, "no checkpoint completed"
        feeder.start()  # the rest of the stream arrives while the job runs, and after the kill
        time.sleep(0.5)
        assert redis_client.xlen("events") < N, "the stream had all arrived before the kill"
        actors = list(result._actors)
        ray.kill(actors[0] if victim == "source" else actors[-1], no_restart=True)
        result.wait_until_finish(120)
    finally:
        stop.set()
        feeder.join(10)
    assert result.state is td.PipelineState.DONE
    assert len(result.recoveries) == 1
    assert published(redis_client) == expected()


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
