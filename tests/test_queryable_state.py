"""Queryable state: result.query_state while a job runs, and tidal.state / `tidal state` after it stopped."""

from __future__ import annotations

import functools
import os
import pickle
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow.parquet as pq
import pytest

import tidal as td
from tidal import window
from tidal.__main__ import main
from tidal.capability_matrix.sinks import RecordTo, read_records
from tidal.runners.core.keygroups import DEFAULT_MAX_PARALLELISM, key_group_of, owner_of
from tidal.runners.core.queryable import JobFinishedError, QueryServer, StateQueryError
from tidal.runners.microbatch.runner import MicroBatchRunner
from tidal.state import describe_checkpoint, read_checkpoint

RUNNERS = ["direct", "ray", "microbatch"]
KEYS = 3
HALF = 150  # elements before the stream pauses (50 per key), and after it
W = window.IntervalWindow
GW = window.GlobalWindow()


@pytest.fixture(params=RUNNERS)
def runner_name(request: pytest.FixtureRequest) -> str:
    """Each test runs on every runner; Ray tests share the session-wide local Ray."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


def make_runner(name: str, folder: Path | None = None) -> Any:
    """The runner ``name``, checkpointing into ``folder`` when given (ray, microbatch)."""
    if name == "microbatch":
        return MicroBatchRunner(batch_interval=0.1, commit_log=folder)
    if name == "ray":
        from tidal.runners.ray.runner import RayRunner

        # Three instances of the keyed stage: k0 is owned by instance 1, k1 and k2 by instance 0.
        return RayRunner(parallelism=3, checkpoint_dir=folder, checkpoint_interval=0.3 if folder else None)
    return name


def paced(stop: str, pause: float = 0.02) -> Iterator[Any]:
    """(k<v % 3>, v): HALF elements in steps of 10 with a pause, then (once the file ``stop`` exists) HALF more."""
    for v in range(2 * HALF):
        if v == HALF:
            deadline = time.monotonic() + 60
            while not os.path.exists(stop) and time.monotonic() < deadline:
                time.sleep(0.01)
        if v % 10 == 0:
            time.sleep(pause)
        yield f"k{v % KEYS}", v


class CountAndKeep(td.DoFn):
    """Per key: a running count (value state) and every value seen, in order (bag state)."""

    COUNT = td.ReadModifyWriteStateSpec("count")
    SEEN = td.BagStateSpec("seen")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT), seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        seen.add(kv[1])
        yield kv[0], n, seen.read()


def values_of(key: int, upto: int = 2 * HALF) -> list[int]:
    """The values of key k<key> in arrival order."""
    return [v for v in range(upto) if v % KEYS == key]


def build(p: td.Pipeline, stop: Path, out: Path) -> None:
    out.mkdir(exist_ok=True)
    counted = p | "Events" >> td.Read(td.GeneratorSource(functools.partial(paced, str(stop)))) | "Count" >> td.ParDo(CountAndKeep())
    _ = counted | "Record" >> td.ParDo(RecordTo(str(out), ("value",)))


def query_until(result: td.PipelineResult, key: str, wanted: int, seconds: float = 60) -> list[Any]:
    """Read ``key``'s count until it is ``wanted``; every count read, in order."""
    reads = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reads.append(result.query_state("Count", "count", key))
        if reads[-1] == wanted:
            return reads
        time.sleep(0.005)
    raise AssertionError(f"{key}'s count never reached {wanted} in {seconds} s (read {reads[-5:]})")


# -- while the job runs -----------------------------------------------------------------
def test_the_keys_live_on_different_ray_workers() -> None:
    """So that the queries below reach more than one worker on Ray."""
    assert [owner_of(key_group_of(f"k{k}", DEFAULT_MAX_PARALLELISM), 3, DEFAULT_MAX_PARALLELISM) for k in range(KEYS)] == [1, 0, 0]


def test_query_state_reads_what_the_state_holds_while_a_paced_stream_runs(runner_name: str, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    p = td.Pipeline(runner=make_runner(runner_name))
    build(p, stop, tmp_path / "out")
    result = p.run()
    try:
        # The stream pauses after HALF elements: each key's count stops at 50 until `stop` exists.
        first = query_until(result, "k0", HALF // KEYS)
        query_until(result, "k1", HALF // KEYS)
        query_until(result, "k2", HALF // KEYS)
        assert result.state is td.PipelineState.RUNNING
        paused = {f"k{k}": result.query_state("Count", "count", f"k{k}") for k in range(KEYS)}
        assert paused == {"k0": 50, "k1": 50, "k2": 50}
        for k in range(KEYS):  # bag state: exactly the values the key had, in order (a copy of it)
            seen = result.query_state("Count", "seen", f"k{k}")
            assert seen == values_of(k, HALF)
            seen.append("not in the job")
            assert result.query_state("Count", "seen", f"k{k}") == values_of(k, HALF)
        assert result.query_state("Count", "count", "never seen") is None
        assert result.query_state("Count", "seen", "never seen") == []
        stop.touch()
        reads: list[Any] = []
        while not result.state.is_terminal:
            try:
                reads.append((result.query_state("Count", "count", "k1"), result.query_state("Count", "seen", "k1")))
            except JobFinishedError:
                break
            time.sleep(0.005)
    finally:
        stop.touch()
    assert result.wait_until_finish(60) is td.PipelineState.DONE
    counts = [c for c in first if c is not None] + [c for c, _ in reads]
    assert counts == sorted(counts), f"a counter went back: {counts}"
    assert counts[-1] <= 2 * HALF // KEYS
    for count, seen in reads:  # every bag read is a state the bag held: a prefix of its values
        assert seen == values_of(1)[: len(seen)]
        assert len(seen) >= count  # read after the count: the bag can only have grown
    with pytest.raises(JobFinishedError, match=r"the job has finished \(DONE\): its state is no longer held"):
        result.query_state("Count", "count", "k0")


class SlowUpdate(td.DoFn):
    """Per key: a dict in value state, set to "busy" for a while in the middle of every element."""

    LAST = td.ReadModifyWriteStateSpec("last")

    def process(self, kv: Any, last: Any = td.DoFn.StateParam(LAST)) -> Iterable[Any]:
        before = last.read() or {"n": 0}
        last.write("busy")
        time.sleep(0.01)
        last.write({"n": before["n"] + 1, "v": kv[1]})
        yield kv


def test_a_query_never_sees_a_cell_half_way_through_an_element(runner_name: str, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    p = td.Pipeline(runner=make_runner(runner_name))
    _ = p | td.Read(td.GeneratorSource(functools.partial(paced, str(stop)))) | "Slow" >> td.ParDo(SlowUpdate())
    result = p.run()
    reads = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reads.append(result.query_state("Slow", "last", "k0"))
            if reads[-1] == {"n": HALF // KEYS, "v": HALF - KEYS}:
                break
        else:
            raise AssertionError(f"k0 never reached its state at the pause (last reads {reads[-3:]})")
        # A copy: changing what a query returned changes nothing in the job.
        copy = result.query_state("Slow", "last", "k0")
        copy["n"] = -1
        assert result.query_state("Slow", "last", "k0") == {"n": HALF // KEYS, "v": HALF - KEYS}
    finally:
        stop.touch()
    result.wait_until_finish(60)
    assert "busy" not in reads
    ns = [r["n"] for r in reads if r is not None]
    assert len(set(ns)) > 1 and ns == sorted(ns)


def test_query_state_of_a_windowed_step_names_the_window(tmp_path: Path) -> None:
    stop = tmp_path / "stop"

    def stamped(kv: Any) -> Any:
        return window.TimestampedValue(kv, kv[1])  # value v at v seconds

    p = td.Pipeline(runner="direct")
    (
        p
        | td.Read(td.GeneratorSource(functools.partial(paced, str(stop))))
        | td.Map(stamped)
        | td.WindowInto(window.FixedWindows(60), allowed_lateness=3600)
        | "Count" >> td.ParDo(CountAndKeep())
    )
    result = p.run()
    try:
        deadline = time.monotonic() + 30
        while result.query_state("Count", "count", "k0", W(120, 180)) != 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert result.query_state("Count", "count", "k0", W(0, 60)) == 20  # 0, 3, ..., 57
        assert result.query_state("Count", "seen", "k2", W(120, 180)) == values_of(2, HALF)[-10:]
        with pytest.raises(StateQueryError, match=r"step 'Count' keeps its state per window \(FixedWindows\): pass the window"):
            result.query_state("Count", "count", "k0")
    finally:
        stop.touch()
        result.wait_until_finish(30)


def test_bad_state_queries_name_what_exists(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    p = td.Pipeline(runner="direct")
    build(p, stop, tmp_path / "out")
    result = p.run()
    try:
        with pytest.raises(StateQueryError, match=r"there is no step 'Cuont' in this pipeline; the steps with state are: 'Count'"):
            result.query_state("Cuont", "count", "k0")
        with pytest.raises(StateQueryError, match=r"step 'Record' holds no queryable state \(only stateful DoFns do\); the steps with state are: 'Count'"):
            result.query_state("Record", "count", "k0")
        with pytest.raises(StateQueryError, match=r"step 'Count' has no state named 'total'; its states are: 'count', 'seen'"):
            result.query_state("Count", "total", "k0")
    finally:
        stop.touch()
    result.wait_until_finish(30)
    with pytest.raises(JobFinishedError, match=r"finished \(DONE\).*tidal.state.read_checkpoint"):
        result.query_state("Count", "count", "k0")


def test_a_cancelled_job_says_it_finished(tmp_path: Path) -> None:
    p = td.Pipeline(runner=make_runner("microbatch"))
    build(p, tmp_path / "stop", tmp_path / "out")
    result = p.run()
    query_until(result, "k2", HALF // KEYS)
    assert result.cancel() is td.PipelineState.CANCELLED
    with pytest.raises(JobFinishedError, match=r"the job has finished \(CANCELLED\)"):
        result.query_state("Count", "count", "k2")


def test_the_query_server_answers_between_bundles_and_refuses_after_close() -> None:
    server = QueryServer()
    answer = server.submit(lambda: 7)
    assert not answer.done()  # nothing is answered until the running thread serves
    server.serve()
    assert answer.result() == 7
    waiting = server.submit(lambda: 8)
    server.close("the job has finished")
    with pytest.raises(JobFinishedError, match="the job has finished"):
        waiting.result()
    with pytest.raises(JobFinishedError, match="the job has finished"):
        server.submit(lambda: 9).result()


# -- after the job stopped ------------------------------------------------------------------
def last_emitted(out: Path) -> dict[str, tuple[int, list[int]]]:
    """key -> (count, values) of the last element the job emitted for it."""
    last: dict[str, tuple[int, list[int]]] = {}
    for key, count, seen in read_records(out):
        if key not in last or count > last[key][0]:
            last[key] = (count, seen)
    return last


@pytest.mark.parametrize("runner_name", ["ray", "microbatch"])
def test_the_state_command_on_a_finished_job_gives_what_it_last_emitted(
    runner_name: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    if runner_name == "ray":
        request.getfixturevalue("ray_session")
    stop, out, ckpt = tmp_path / "stop", tmp_path / "out", tmp_path / "ckpt"
    stop.touch()  # no pause: the job reads its input and finishes
    p = td.Pipeline(runner=make_runner(runner_name, ckpt))
    build(p, stop, out)
    p.run().wait_until_finish()
    emitted = last_emitted(out)
    assert emitted == {f"k{k}": (2 * HALF // KEYS, values_of(k)) for k in range(KEYS)}

    assert main(["state", str(ckpt)]) == 0
    listing = capsys.readouterr().out
    kind = "Ray job checkpoint" if runner_name == "ray" else "micro-batch commit of batch"
    assert listing.startswith(kind) and "taken at the end of the input" in listing
    assert "  step 'Count': 'count' (3 cells), 'seen' (3 cells)" in listing

    parquet = tmp_path / "state.parquet"
    assert main(["state", str(ckpt), "--step", "Count", "--out", str(parquet)]) == 0
    table = pq.read_table(parquet)
    assert table.column_names == [
        "step", "key", "window", "window_start", "window_end", "state", "value", "key_pickle", "value_pickle"
    ]
    rows = table.to_pylist()
    assert [(r["key"], r["state"], r["value"]) for r in rows] == [  # ints and lists in one column: reprs
        *((f"k{k}", "count", repr(emitted[f"k{k}"][0])) for k in range(KEYS)),
        *((f"k{k}", "seen", repr(emitted[f"k{k}"][1])) for k in range(KEYS)),
    ]
    assert {(r["step"], r["window"], r["window_start"], r["window_end"]) for r in rows} == {("Count", "GlobalWindow", None, None)}
    assert [pickle.loads(r["value_pickle"]) for r in rows] == [
        *(emitted[f"k{k}"][0] for k in range(KEYS)), *(emitted[f"k{k}"][1] for k in range(KEYS))
    ]
    assert table.schema.metadata == {b"tidal.key": b"arrow", b"tidal.value": b"repr"}
    # The same through the library, one state at a time: then the values are typed.
    counts = read_checkpoint(ckpt, step="Count", state_name="count")
    assert counts.schema.field("value").type == "int64"
    assert dict(zip(counts.column("key").to_pylist(), counts.column("value").to_pylist())) == {
        k: c for k, (c, _) in emitted.items()
    }
    capsys.readouterr()
    assert main(["state", str(ckpt), "--step", "Count", "--state", "count"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Count\t'k{k}'\tGlobalWindow\tcount\t{emitted[f'k{k}'][0]}" for k in range(KEYS)
    ]


class KeepSets(td.DoFn):
    """Set state per key and window, keyed by tuples."""

    SEEN = td.SetStateSpec("seen")

    def process(self, kv: Any, seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        seen.add(kv[1])
        yield kv


def test_read_checkpoint_writes_what_arrow_cannot_hold_as_repr_and_pickle(tmp_path: Path) -> None:
    events = [window.TimestampedValue((("a", 1), v), v) for v in (1, 2, 70)] + [window.TimestampedValue((("b", 2), 5), 5)]
    p = td.Pipeline(runner=MicroBatchRunner(commit_log=tmp_path))
    _ = p | td.Create(events) | td.WindowInto(window.FixedWindows(60)) | "Sets" >> td.ParDo(KeepSets())
    p.run()
    table = read_checkpoint(tmp_path)
    assert table.schema.metadata == {b"tidal.key": b"repr", b"tidal.value": b"repr"}
    rows = [(r["key"], r["window"], r["window_start"].timestamp(), r["window_end"].timestamp(), r["value"]) for r in table.to_pylist()]
    assert rows == [
        ("('a', 1)", repr(W(0, 60)), 0, 60, "{1, 2}"),
        ("('a', 1)", repr(W(60, 120)), 60, 120, "{70}"),
        ("('b', 2)", repr(W(0, 60)), 0, 60, "{5}"),
    ]
    exact = [(pickle.loads(r["key_pickle"]), pickle.loads(r["value_pickle"])) for r in table.to_pylist()]
    assert exact == [(("a", 1), {1, 2}), (("a", 1), {70}), (("b", 2), {5})]
    assert describe_checkpoint(tmp_path).steps == {"Sets": {"seen": 3}}


def test_the_state_command_refuses_bad_input_naming_what_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    p = td.Pipeline(runner=MicroBatchRunner(commit_log=log, max_batch_size=2))
    _ = p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | "Count" >> td.ParDo(CountAndKeep())
    p.run()
    commits = sorted(int(name[4:]) for name in os.listdir(log / "commits"))
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(log), "--step", "Cuont"], "has no step 'Cuont' with keyed state; the steps with state are: 'Count'"),
        ([str(log), "--step", "Count", "--state", "total"], "step 'Count' holds no state named 'total'; the state names there are: 'count', 'seen'"),
        ([str(log), "--checkpoint", "99"], f"there is no checkpoint 99 in {log}; its complete checkpoints are: {', '.join(map(str, commits))}"),
        ([str(tmp_path / "missing")], f"there is no checkpoint folder {tmp_path / 'missing'}: it does not exist"),
        ([str(tmp_path / "empty")], "it holds neither chk-<n> folders (the checkpoints of a Ray job) nor a commits folder"),
        ([str(log), "--step", "Count", "--out", "state.txt"], "--out state.txt: the table is written as Parquet (.parquet) or CSV (.csv)"),
        ([str(log), "--state", "count"], "--state needs --step or --out"),
    ]
    for args, message in cases:
        assert main(["state", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("tidal state: error: ") and message in err, (args, err)
    with pytest.raises(StateQueryError, match=r"has no step 'Cuont' with keyed state; the steps with state are: 'Count'"):
        read_checkpoint(log, step="Cuont")


def test_the_state_command_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    p = td.Pipeline(runner=MicroBatchRunner(commit_log=log))
    _ = p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | "Count" >> td.ParDo(CountAndKeep())
    p.run()
    out = tmp_path / "state.csv"
    assert main(["state", str(log), "--step", "Count", "--out", str(out)]) == 0
    assert "tidal state: wrote 4 rows to" in capsys.readouterr().err
    assert out.read_text().splitlines() == [
        '"step","key","window","window_start","window_end","state","value"',
        '"Count","a","GlobalWindow",,,"count","2"',
        '"Count","b","GlobalWindow",,,"count","1"',
        '"Count","a","GlobalWindow",,,"seen","[1, 3]"',
        '"Count","b","GlobalWindow",,,"seen","[2]"',
    ]


def test_the_state_command_checks_parts_before_reading_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    p = td.Pipeline(runner=MicroBatchRunner(commit_log=log, max_batch_size=2))
    _ = p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | "Count" >> td.ParDo(CountAndKeep())
    p.run()
    older, newest = sorted(int(name[4:]) for name in os.listdir(log / "commits"))
    part = log / "commits" / f"chk-{newest:06d}" / "state.pkl"
    part.write_bytes(part.read_bytes()[:-1] + b"!")  # damaged on disk: never unpickled
    assert main(["state", str(log)]) == 0
    captured = capsys.readouterr()
    assert f"skipping checkpoint {newest} in {log / 'commits'}: its part 'state.pkl' is damaged" in captured.err
    assert captured.out.startswith(f"micro-batch commit of batch {older} in {log}")
    assert main(["state", str(log), "--checkpoint", str(newest)]) == 2
    assert f"checkpoint {newest} in {log / 'commits'} cannot be restored: its part 'state.pkl' is damaged" in capsys.readouterr().err


def test_the_help_lists_the_state_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "    state " in capsys.readouterr().out
    assert main(["state", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: " in out and "CHECKPOINT_DIR" in out and "python -m tidal state ckpt --step" in out


def test_a_result_without_a_running_job_says_it_has_no_state() -> None:
    from tidal.__main__ import CapturedResult

    with pytest.raises(StateQueryError, match="CapturedResult has no running job whose state could be read"):
        CapturedResult().query_state("Count", "count", "k0")
