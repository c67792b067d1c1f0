"""The micro-batch runner after a crash: the published output equals a run without failure.

A job with a windowed, a stateful and a columnar (Arrow) branch writes through
``td.WriteToText`` while its process is killed (SIGKILL) at seeded random
points: in the middle of a batch, or between the steps of a batch's commit.
Rerun with the same commit log, the published files hold exactly the lines of
a run without failure — nothing lost, nothing twice. A damaged or partial
commit is skipped for the one before it with a warning that says why; a log
of another pipeline is refused; a stopped job resumes where it stopped.

This file is also the job: ``python test_microbatch_recovery.py SPEC`` runs it
in a process of its own, to be killed (see :func:`_main`).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pytest

import tidal as td
from tidal import window
from tidal.runners.core.checkpoint import CheckpointStore, CheckpointWarning
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchExecutor, MicroBatchRunner
from tidal.runners.microbatch.commitlog import CommitLog
from tidal.io.arrowio import ReadArrow

TV = window.TimestampedValue
N_EVENTS = 400
KEYS = 5
WINDOW_S = 10
#: The branches of the job, each publishing through its own WriteToText.
BRANCHES = ("windowed", "stateful", "arrow")


def _events() -> list[tuple[int, int, float]]:
    """(key, value, event time in seconds), in event-time order: nothing is ever late."""
    rng = random.Random(7)
    return [(rng.randrange(KEYS), rng.randrange(1000), i / 4) for i in range(N_EVENTS)]


def _paced_events(pause_s: float = 0.001) -> Iterator[Any]:
    """The events as a replayable stream, with short pauses so batch boundaries depend on timing."""
    for i, (k, v, ts) in enumerate(_events()):
        if i % 10 == 0:
            time.sleep(pause_s)
        yield TV((f"k{k}", v), ts)


def _expected() -> dict[str, list[str]]:
    """What each branch publishes, worked out by hand."""
    sums: dict[tuple[int, int], int] = collections.Counter()
    numbered, counts, totals = [], collections.Counter(), collections.Counter()
    for k, v, ts in _events():
        sums[k, int(ts // WINDOW_S) * WINDOW_S] += v
        counts[k] += 1
        totals[k] += v
        numbered.append(f"k{k},{counts[k]},{v},{totals[k]}")
    return {
        "windowed": sorted(f"k{k},{start},{total}" for (k, start), total in sums.items()),
        "stateful": sorted(numbered),
        "arrow": sorted(f"{k},{start},{total}" for (k, start), total in sums.items()),
    }


class _KillAt(td.DoFn):
    """Passes elements on; kills its own process (SIGKILL) at the ``n``-th element it sees."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.seen = 0

    def process(self, element: Any) -> Iterable[Any]:
        self.seen += 1
        if self.seen == self.n:
            os.kill(os.getpid(), signal.SIGKILL)
        yield element


class _NumberAndTotal(td.DoFn):
    """Per key: number the elements 1, 2, 3... and keep every value seen, emitting their total."""

    COUNT = td.ReadModifyWriteStateSpec("count")
    VALUES = td.BagStateSpec("values")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT), values: Any = td.DoFn.StateParam(VALUES)) -> Iterable[Any]:
        key, value = kv
        n = (count.read() or 0) + 1
        count.write(n)
        values.add(value)
        yield f"{key},{n},{value},{sum(values.read())}"


def _arrow_table() -> pa.Table:
    keys, values, ts = zip(*_events())
    return pa.table({"key": pa.array(keys, pa.int64()), "value": pa.array(values, pa.int64()), "ts": pa.array(ts, pa.float64())})


def _build(p: td.Pipeline, out: Path, source: str, kill_step: str | None = None, kill_at: int | None = None, pause_s: float = 0.001) -> None:
    """The job: three branches, each ending in WriteToText under ``out``; ``kill_step`` arms one killer."""

    def killer(step: str) -> td.ParDo:
        return f"Kill{step}" >> td.ParDo(_KillAt(kill_at if step == kill_step else None))

    if source == "generator":
        events = p | "Events" >> td.Read(td.GeneratorSource(functools.partial(_paced_events, pause_s)))
    else:
        events = p | "Events" >> td.Create(_events()) | "Stamp" >> td.Map(lambda e: TV((f"k{e[0]}", e[1]), e[2]))
    events = events | killer("read")
    (
        events
        | td.WindowInto(window.FixedWindows(WINDOW_S))
        | td.CombinePerKey(sum)
        | "FormatSums" >> td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | killer("windowed")
        | "WriteSums" >> td.WriteToText(str(out / "windowed"))
    )
    (
        events
        | td.ParDo(_NumberAndTotal())
        | killer("stateful")
        | "WriteNumbers" >> td.WriteToText(str(out / "stateful"))
    )
    (
        p
        | ReadArrow(_arrow_table(), key="key", value="value", timestamp="ts")
        | "ArrowWindows" >> td.WindowInto(window.FixedWindows(WINDOW_S))
        | "ArrowSums" >> td.CombinePerKey(sum)
        | "FormatArrowSums" >> td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | killer("arrow")
        | "WriteArrowSums" >> td.WriteToText(str(out / "arrow"))
    )


def _runner(log: Path | None) -> MicroBatchRunner:
    return MicroBatchRunner(batch_interval=0.02, max_batch_size=40, commit_log=None if log is None else str(log))


def _published(out: Path) -> dict[str, list[str]]:
    return {branch: sorted(td.io.read_text(str(out / f"{branch}-*"))) for branch in BRANCHES}


def _run_in_process(out: Path, log: Path | None, source: str = "bounded", options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    p = td.Pipeline(runner=_runner(log), options=options)
    _build(p, out, source, **kwargs)
    result = p.run()
    result.wait_until_finish()
    return result


# -- the job in a process of its own, killed at a chosen point --------------------------------
#: Points between the steps of a batch's commit where a process can be killed.
PHASES = ("after_write_ahead", "before_manifest", "after_commit_record", "after_publish", "after_final_commit_record")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm_phase_kill(phase: str, batch: int) -> None:
    """Kill this process at ``phase`` of batch ``batch``'s commit."""
    if phase == "after_write_ahead":
        write_ahead = CommitLog.write_ahead

        def write_ahead_then_die(self: CommitLog, index: int, record: dict[str, Any]) -> None:
            write_ahead(self, index, record)
            if index == batch:
                _die()

        CommitLog.write_ahead = write_ahead_then_die  # type: ignore[method-assign]
    elif phase == "before_manifest":  # the state part is written, its manifest is not
        complete = CheckpointStore.complete

        def die_before_complete(self: CheckpointStore, checkpoint_id: int, *args: Any, **kwargs: Any) -> None:
            if checkpoint_id == batch:
                _die()
            complete(self, checkpoint_id, *args, **kwargs)

        CheckpointStore.complete = die_before_complete  # type: ignore[method-assign]
    elif phase in ("after_commit_record", "after_final_commit_record"):  # committed, not yet published
        commit = CommitLog.commit

        def commit_then_die(self: CommitLog, index: int, state: Any, meta: dict[str, Any]) -> None:
            commit(self, index, state, meta)
            if meta.get("final") if phase == "after_final_commit_record" else index == batch:
                _die()

        CommitLog.commit = commit_then_die  # type: ignore[method-assign]
    elif phase == "after_publish":  # published, before the next batch is written ahead
        publish = MicroBatchExecutor.commit

        def publish_then_die(self: MicroBatchExecutor, up_to: int) -> None:
            publish(self, up_to)
            if up_to == batch:
                _die()

        MicroBatchExecutor.commit = publish_then_die  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown phase {phase!r}")


def _main(spec: dict[str, Any]) -> None:
    """Run the job as ``spec`` says; print what each batch did as JSON."""
    kill = spec.get("kill")
    kill_step = kill_at = None
    if kill is not None and kill[0] == "phase":
        _arm_phase_kill(kill[1], kill[2])
    elif kill is not None:
        _, kill_step, kill_at = kill
    result = _run_in_process(
        Path(spec["out"]), Path(spec["log"]), spec["source"], spec.get("options"), kill_step=kill_step, kill_at=kill_at
    )
    print(json.dumps([[b.index, b.records, b.replayed] for b in result.batches]))


def _run_job(
    out: Path, log: Path, source: str, kill: list[Any] | None, options: dict[str, Any] | None = None
) -> tuple[int, list[Any], str]:
    """Run the job in a new process; its exit code, its batches (when it finished) and its stderr."""
    spec = {"out": str(out), "log": str(log), "source": source, "kill": kill, "options": options}
    proc = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True, timeout=120)
    batches = json.loads(proc.stdout) if proc.returncode == 0 else []
    return proc.returncode, batches, proc.stderr


# -- the reference: a run without failure ----------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory: Any) -> dict[str, list[str]]:
    """A micro-batch run without failure; it equals the hand-worked answer and the direct runner."""
    folder = tmp_path_factory.mktemp("reference")
    _run_in_process(folder / "microbatch", folder / "log", "generator")
    published = _published(folder / "microbatch")
    assert published == _expected()
    p = td.Pipeline(runner=DirectRunner())
    _build(p, folder / "direct", "bounded")
    p.run()
    assert _published(folder / "direct") == published
    return published


# -- killed at seeded random points ------------------------------------------------------
_KILL_COUNTS = {"read": N_EVENTS, "stateful": N_EVENTS, "windowed": len(_expected()["windowed"]), "arrow": len(_expected()["arrow"])}


def _random_kill(rng: random.Random) -> list[Any]:
    if rng.random() < 0.25:
        return ["phase", rng.choice(PHASES), rng.randrange(11)]
    step = rng.choice(sorted(_KILL_COUNTS))
    return ["element", step, rng.randint(1, _KILL_COUNTS[step])]


@pytest.mark.parametrize("seed", range(10))
def test_a_job_killed_at_random_points_publishes_exactly_the_output_of_a_run_without_failure(
    tmp_path: Path, reference: dict[str, list[str]], seed: int
) -> None:
    rng = random.Random(seed)
    source = ("generator", "bounded")[seed % 2]
    kills = [_random_kill(rng) for _ in range(rng.randint(1, 3))]
    if kills[0][0] == "phase":
        kills[0][2] %= 10  # the first run reaches at least ten batches
    history = []
    for attempt, kill in enumerate([*kills, None]):
        code, batches, stderr = _run_job(tmp_path / "out", tmp_path / "log", source, kill)
        history.append((kill, code))
        if attempt == 0:
            assert code == -signal.SIGKILL, f"the first run was not killed at {kill}: {stderr[-2000:]}"
        if code == 0:
            break
        assert code == -signal.SIGKILL, f"the run after {history} failed: {stderr[-2000:]}"
    assert history[-1][1] == 0, history
    published = _published(tmp_path / "out")
    for branch in BRANCHES:
        assert collections.Counter(published[branch]) == collections.Counter(reference[branch]), (branch, history)


@pytest.mark.parametrize("seed", range(4))
def test_a_job_on_the_disk_state_backend_killed_at_random_points_publishes_exactly_once(
    tmp_path: Path, reference: dict[str, list[str]], seed: int
) -> None:
    # A cache of two entries per step: almost all keyed state lives on disk between batches.
    options = {"state_backend": "disk", "state_dir": str(tmp_path / "state"), "state_cache_entries": 2}
    rng = random.Random(100 + seed)
    source = ("generator", "bounded")[seed % 2]
    kills = [_random_kill(rng) for _ in range(rng.randint(1, 2))]
    if kills[0][0] == "phase":
        kills[0][2] %= 10
    history = []
    for attempt, kill in enumerate([*kills, None]):
        code, batches, stderr = _run_job(tmp_path / "out", tmp_path / "log", source, kill, options)
        history.append((kill, code))
        if attempt == 0:
            assert code == -signal.SIGKILL, f"the first run was not killed at {kill}: {stderr[-2000:]}"
        if code == 0:
            break
        assert code == -signal.SIGKILL, f"the run after {history} failed: {stderr[-2000:]}"
    assert history[-1][1] == 0, history
    published = _published(tmp_path / "out")
    for branch in BRANCHES:
        assert collections.Counter(published[branch]) == collections.Counter(reference[branch]), (branch, history)


# -- killed between the steps of a batch's commit ----------------------------------------
@pytest.mark.parametrize("phase", PHASES)
def test_a_job_killed_between_the_steps_of_a_commit_publishes_each_line_once(
    tmp_path: Path, reference: dict[str, list[str]], phase: str
) -> None:
    code, _, _ = _run_job(tmp_path / "out", tmp_path / "log", "generator", ["phase", phase, 3])
    assert code == -signal.SIGKILL
    code, batches, stderr = _run_job(tmp_path / "out", tmp_path / "log", "generator", None)
    assert code == 0, stderr[-2000:]
    assert _published(tmp_path / "out") == reference
    if phase == "after_final_commit_record":
        assert batches == []  # the job had finished: the rerun only publishes what the last commit staged
        return
    first_index, _, replayed = batches[0]
    if phase in ("after_write_ahead", "before_manifest"):
        # Batch 3 never committed: it is replayed over the range written ahead for it.
        assert (first_index, replayed) == (3, True)
    else:
        assert (first_index, replayed) == (4, False)
    assert not any(replayed for _, _, replayed in batches[1:])
    if phase == "before_manifest":
        assert "skipping checkpoint 3" in stderr and "incomplete (no manifest" in stderr


def test_a_restart_publishes_what_the_restored_commit_staged_before_it_reads_anything(tmp_path: Path) -> None:
    # Killed with batch 3 committed but unpublished, then killed again at the first element read...
    assert _run_job(tmp_path / "a", tmp_path / "log-a", "bounded", ["phase", "after_commit_record", 3])[0] == -signal.SIGKILL
    assert _run_job(tmp_path / "a", tmp_path / "log-a", "bounded", ["element", "read", 1])[0] == -signal.SIGKILL
    # ... has published what a run killed right after publishing batch 3 has.
    assert _run_job(tmp_path / "b", tmp_path / "log-b", "bounded", ["phase", "after_publish", 3])[0] == -signal.SIGKILL
    published = _published(tmp_path / "a")
    assert published == _published(tmp_path / "b") and published["stateful"]


# -- a damaged or partial commit ---------------------------------------------------------
def _crash_after_commit_record(monkeypatch: pytest.MonkeyPatch, out: Path, log: Path, batch: int) -> None:
    """Run in this process until batch ``batch`` is committed but not published, then fail."""

    class Crash(Exception):
        pass

    publish = MicroBatchExecutor.commit

    def publish_or_crash(self: MicroBatchExecutor, up_to: int) -> None:
        if up_to == batch:
            raise Crash
        publish(self, up_to)

    with monkeypatch.context() as m:
        m.setattr(MicroBatchExecutor, "commit", publish_or_crash)
        with pytest.raises(Crash):
            _run_in_process(out, log)


def _damage_part(chk: Path) -> None:
    data = bytearray((chk / "state.pkl").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (chk / "state.pkl").write_bytes(bytes(data))


DAMAGES = {
    "state part damaged": (_damage_part, r"its part 'state.pkl' is damaged \(size or checksum differs"),
    "state part missing": (lambda chk: (chk / "state.pkl").unlink(), r"its part 'state.pkl' is missing"),
    "manifest missing": (lambda chk: (chk / "MANIFEST.json").unlink(), r"it is incomplete \(no manifest"),
    "manifest damaged": (lambda chk: (chk / "MANIFEST.json").write_text("{"), r"its manifest is damaged"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_or_partial_commit_is_skipped_for_the_one_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, list[str]], damage: str
) -> None:
    out, log = tmp_path / "out", tmp_path / "log"
    _crash_after_commit_record(monkeypatch, out, log, batch=4)
    assert CommitLog(log).committed_indices() == [3, 4]
    harm, message = DAMAGES[damage]
    harm(log / "commits" / "chk-000004")
    with pytest.warns(CheckpointWarning, match=rf"skipping checkpoint 4 in .*commits: {message}.*trying the one before it"):
        result = _run_in_process(out, log)
    assert [(b.index, b.replayed) for b in result.batches[:2]] == [(4, True), (5, False)]
    assert _published(out) == reference  # batch 4 was never published, so its replay adds it once


# -- a commit damaged after its output was published -------------------------------------
class _Crash(Exception):
    """Stands in for a kill at a chosen point of a batch's commit (the job stops there)."""


def _crash_after_publishing(monkeypatch: pytest.MonkeyPatch, out: Path, log: Path, batch: int) -> None:
    """Run in this process until batch ``batch``'s output is published, then fail."""
    publish = MicroBatchExecutor.commit

    def publish_then_crash(self: MicroBatchExecutor, up_to: int) -> None:
        publish(self, up_to)
        if up_to == batch:
            raise _Crash

    with monkeypatch.context() as m:
        m.setattr(MicroBatchExecutor, "commit", publish_then_crash)
        with pytest.raises(_Crash):
            _run_in_process(out, log)


#: Where the first run stops: (how, the commits then in the log, the batch the rerun starts with).
KILL_POINTS: dict[str, tuple[Any, list[int], tuple[int, bool] | None]] = {
    # The only commit is damaged: the rerun starts from the beginning.
    "batch 0 published": (lambda m, out, log: _crash_after_publishing(m, out, log, 0), [0], (0, True)),
    # The newest commit's output was published; the rerun goes back to the one before it.
    "batch 3 published": (lambda m, out, log: _crash_after_publishing(m, out, log, 3), [2, 3], (3, True)),
    # The newest commit was never published.
    "batch 3 committed, not published": (lambda m, out, log: _crash_after_commit_record(m, out, log, 3), [2, 3], (3, True)),
    # The job had finished: its final commit (the end of input) is the damaged one.
    "finished": (lambda m, out, log: _run_in_process(out, log), None, None),
}

MANIFEST_OR_PART_DAMAGES = {
    "manifest of random bytes": (
        lambda chk: (chk / "MANIFEST.json").write_bytes(random.Random(3).randbytes(64)), r"its manifest is damaged"
    ),
    "empty manifest": (lambda chk: (chk / "MANIFEST.json").write_bytes(b""), r"its manifest is damaged"),
    "manifest [1,2,3]": (lambda chk: (chk / "MANIFEST.json").write_text("[1,2,3]"), r"its manifest is damaged"),
    "state part damaged": (_damage_part, r"its part 'state.pkl' is damaged"),
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_OR_PART_DAMAGES))
@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_falling_back_past_a_damaged_newest_commit_withdraws_what_it_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, list[str]], kill_point: str, damage: str
) -> None:
    """Whatever the newest commit had published when it was damaged, the rerun's output is exact:
    the output of the commits it falls back past is withdrawn, and the replay publishes it once."""
    out, log = tmp_path / "out", tmp_path / "log"
    stop, commits, first_batch = KILL_POINTS[kill_point]
    stop(monkeypatch, out, log)
    present = CommitLog(log).committed_indices()
    if commits is not None:
        assert present == commits
    newest = present[-1]
    harm, message = MANIFEST_OR_PART_DAMAGES[damage]
    harm(log / "commits" / f"chk-{newest:06d}")
    with pytest.warns(CheckpointWarning, match=rf"skipping checkpoint {newest} in .*commits: {message}.*trying the one before it"):
        result = _run_in_process(out, log)
    if first_batch is None:
        assert result.batches == []  # only the end of input is committed again
    else:
        assert (result.batches[0].index, result.batches[0].replayed) == first_batch
    assert _published(out) == reference
    assert all(collections.Counter(lines) == collections.Counter(set(lines)) for lines in _published(out).values())


def test_starting_over_after_a_crash_before_the_first_commit_withdraws_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, list[str]]
) -> None:
    """Batch 0 crashed before its manifest: no commit completed, so nothing was published and the
    rerun withdraws nothing, not even files under the sink's prefix that this job never wrote."""
    out, log = tmp_path / "out", tmp_path / "log"
    complete = CheckpointStore.complete

    def crash_before_the_first_manifest(self: CheckpointStore, checkpoint_id: int, *args: Any, **kwargs: Any) -> None:
        if checkpoint_id == 0:
            raise _Crash
        complete(self, checkpoint_id, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(CheckpointStore, "complete", crash_before_the_first_manifest)
        with pytest.raises(_Crash):
            _run_in_process(out, log)
    assert CommitLog(log).committed_indices() == [0] and CommitLog(log).commits.completed_ids() == []
    foreign = out / "stateful-000007-0123456789ab"  # named like a published file of another run
    foreign.write_text("kept\n")
    with pytest.warns(CheckpointWarning, match=r"skipping checkpoint 0 .*incomplete"):
        result = _run_in_process(out, log)
    assert (result.batches[0].index, result.batches[0].replayed) == (0, True)
    assert foreign.read_text() == "kept\n"
    foreign.unlink()
    assert _published(out) == reference


def test_a_log_with_no_intact_commit_to_resume_from_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, log = tmp_path / "out", tmp_path / "log"
    _crash_after_commit_record(monkeypatch, out, log, batch=4)
    for chk in ("chk-000003", "chk-000004"):
        _damage_part(log / "commits" / chk)
    with pytest.warns(CheckpointWarning), pytest.raises(td.PipelineExecutionError, match=r"cannot resume from the commit log in .*remove the folder"):
        _run_in_process(out, log)


# -- a log written by another pipeline ---------------------------------------------------
@pytest.mark.parametrize("crashed_in_first_batch", [False, True])
def test_a_log_written_by_another_pipeline_is_refused(tmp_path: Path, crashed_in_first_batch: bool) -> None:
    log = tmp_path / "log"
    if crashed_in_first_batch:  # the log holds batch 0 written ahead, and no commit
        CommitLog(log).write_ahead(0, {"start": {"Create/Read": {}}, "end": {}, "records": 1, "steps": ["Map"], "sources": ["Create/Read"]})
    else:
        p = td.Pipeline(runner=_runner(log))
        _ = p | td.Create([1, 2, 3]) | td.Map(lambda x: x + 1)
        p.run()
    other = td.Pipeline(runner=_runner(log))
    _ = other | td.Create(["a"]) | "Upper" >> td.Map(str.upper)
    with pytest.raises(td.PipelineExecutionError, match=r"commit log in .* was written by a different pipeline .*'Upper'"):
        other.run()


# -- stopping and resuming -------------------------------------------------------------------
def _run_until(out: Path, log: Path | None, batches: int) -> Any:
    """Start the paced stream, stop it (cancel) once ``batches`` batches ran, and return the result."""
    p = td.Pipeline(runner=_runner(log))
    _build(p, out, "generator", pause_s=0.02)
    result = p.run()
    deadline = time.monotonic() + 30
    while len(result.batches) < batches and time.monotonic() < deadline:
        time.sleep(0.005)
    result.cancel()
    assert result.state is td.PipelineState.CANCELLED
    return result


def test_a_stopped_job_resumes_from_its_latest_commit(tmp_path: Path, reference: dict[str, list[str]]) -> None:
    out, log = tmp_path / "out", tmp_path / "log"
    stopped = _run_until(out, log, batches=3)
    done = len(stopped.batches)
    assert CommitLog(log).committed_indices()[-1] == done - 1
    partial = _published(out)
    assert 0 < len(partial["stateful"]) < N_EVENTS  # each batch published its lines when it committed
    resumed = _run_in_process(out, log, "generator")
    assert (resumed.batches[0].index, resumed.batches[0].replayed) == (done, False)
    assert _published(out) == reference


def test_an_unbounded_job_without_a_commit_log_publishes_after_every_batch(tmp_path: Path, reference: dict[str, list[str]]) -> None:
    _run_until(tmp_path / "out", None, batches=3)
    stateful = _published(tmp_path / "out")["stateful"]
    assert stateful and not collections.Counter(stateful) - collections.Counter(reference["stateful"])


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
