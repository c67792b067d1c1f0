"""A watched directory: MatchContinuously and ReadContinuously (text, CSV, JSON lines, Parquet).

Files are written elsewhere with a chosen modification time and moved into
the watched folder (an atomic rename), some while the job runs. Expected
values are worked out by hand from the files each test writes. A restore
after a kill (a Ray worker, a micro-batch process) must neither lose nor
repeat input: the published output equals a plain-Python computation.

This file is also the micro-batch job of the kill test: ``python
test_fileio.py SPEC`` runs it in a process of its own (see :func:`_main`).
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

import cloudpickle
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tidal as td
from tidal import window
from tidal.io.fileio import MatchContinuously, ReadContinuously, WatchedFilesSource
from tidal.io.filebased import CsvFormat, TextFormat
from tidal.io.textio import read_text
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner
from tidal.runners.microbatch.commitlog import CommitLog
from tidal.testing import assert_that, equal_to

from pane_support import P, RecordPanes

W = window.IntervalWindow
US = 1_000_000
DEADLINE_S = 60.0


@pytest.fixture(params=["direct", "ray", "microbatch"])
def runner(request: pytest.FixtureRequest) -> Any:
    """Each runner in turn; Ray shares the session's local instance."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
        from tidal.runners.ray.runner import RayRunner

        return RayRunner(parallelism=2)
    if request.param == "microbatch":
        return MicroBatchRunner(batch_interval=0.05, max_batch_size=4)
    return DirectRunner()


def drop(folder: Path, name: str, content: bytes | pa.Table, mtime: float | None = None) -> Path:
    """Write ``content`` beside ``folder``, set its modification time, and move it in (atomically)."""
    staging = folder.parent / f".{folder.name}-incoming"
    staging.mkdir(exist_ok=True)
    tmp = staging / name
    if isinstance(content, pa.Table):
        pq.write_table(content, tmp, row_group_size=2)
    else:
        tmp.write_bytes(content)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    final = folder / name
    os.replace(tmp, final)
    return final


def run(p: td.Pipeline) -> td.PipelineResult:
    result = p.run()
    state = result.wait_until_finish(DEADLINE_S)
    if state is td.PipelineState.RUNNING:
        result.cancel()
        pytest.fail(f"the pipeline did not finish within {DEADLINE_S} s")
    assert state is td.PipelineState.DONE
    return result


# -- files appearing while the job runs, on every runner -------------------------------------
def test_files_that_appear_while_the_job_runs_are_read_and_windowed(runner: Any, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "1.txt", b"a\nb\n", mtime=3)  # there before the job starts
    p = td.Pipeline(runner=runner)
    panes = (
        p
        | ReadContinuously(str(inbox / "*.txt"), "text", interval=0.05, max_files=3)
        | td.Map(lambda line: (line[0], line))
        | td.WindowInto(window.FixedWindows(10))
        | td.GroupByKey()
        | td.ParDo(RecordPanes())
    )
    assert_that(
        panes,
        equal_to(
            [
                P("a", ["a"], W(0, 10), 10 * US - 1),
                P("b", ["b"], W(0, 10), 10 * US - 1),
                P("a", ["a2", "a3"], W(10, 20), 20 * US - 1),
                P("c", ["c"], W(20, 30), 30 * US - 1),
            ]
        ),
    )
    result = p.run()
    time.sleep(0.3)  # the job is listing the folder now
    drop(inbox, "2.txt", b"a2\na3\n", mtime=12)
    time.sleep(0.2)
    drop(inbox, "3.txt", b"c\n", mtime=25)
    state = result.wait_until_finish(DEADLINE_S)
    if state is td.PipelineState.RUNNING:
        result.cancel()
        pytest.fail("the job did not end after its three files")
    assert state is td.PipelineState.DONE


def test_match_continuously_emits_each_new_files_metadata(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    p = td.Pipeline()
    seen = (
        p
        | MatchContinuously(str(inbox / "*.csv"), interval=0.05, max_files=2)
        | td.Map(lambda m, t=td.DoFn.TimestampParam: (os.path.basename(m.path), m.size_in_bytes, t.micros))
    )
    assert_that(seen, equal_to([("a.csv", 4, 100 * US), ("b.csv", 6, 200 * US)]))
    result = p.run()
    drop(inbox, "ignored.txt", b"not csv", mtime=50)
    drop(inbox, "a.csv", b"n\n1\n", mtime=100)
    time.sleep(0.2)
    drop(inbox, "b.csv", b"n\n1\n2\n", mtime=200)
    assert result.wait_until_finish(DEADLINE_S) is td.PipelineState.DONE


# -- every format, event time from a column ------------------------------------------------
EXPECTED_SUMS = [(("ada", 5), W(0, 10)), (("bob", 2), W(0, 10)), (("ada", 7), W(10, 20))]


def user_sums(p: td.Pipeline, pattern: str, fmt: Any, **options: Any) -> Any:
    return (
        p
        | ReadContinuously(pattern, fmt, interval=0.05, timestamp_column="t", max_files=2, **options)
        | td.Map(lambda row: (row["user"], int(row["n"])))
        | td.WindowInto(window.FixedWindows(10))
        | td.CombinePerKey(sum)
        | td.Map(lambda kv, w=td.DoFn.WindowParam: (kv, w))
    )


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_each_format_with_event_time_from_a_column(tmp_path: Path, fmt: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rows = [[("ada", 2, 1.5), ("bob", 2, 3)], [("ada", 3, 9.0), ("ada", 7, 15)]]
    for i, part in enumerate(rows):
        name = f"{i}.{fmt}"
        if fmt == "csv":
            drop(inbox, name, ("user,n,t\n" + "".join(f"{u},{n},{t}\n" for u, n, t in part)).encode())
        elif fmt == "json":
            drop(inbox, name, "".join(json.dumps({"user": u, "n": n, "t": t}) + "\n" for u, n, t in part).encode())
        else:
            table = pa.table({"user": [r[0] for r in part], "n": [r[1] for r in part], "t": [float(r[2]) for r in part]})
            drop(inbox, name, table)
    p = td.Pipeline()
    assert_that(user_sums(p, str(inbox / f"*.{fmt}"), fmt), equal_to(EXPECTED_SUMS))
    run(p)


def test_a_file_format_instance_and_its_options(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "0.tsv", b"user\tn\tt\nada\t5\t1\nbob\t2\t2\n")
    drop(inbox, "1.tsv", b"user\tn\tt\nada\t7\t12\n")
    p = td.Pipeline()
    assert_that(user_sums(p, str(inbox / "*.tsv"), CsvFormat(delimiter="\t")), equal_to(EXPECTED_SUMS))
    run(p)


def test_gzip_text_with_a_header_line(tmp_path: Path) -> None:
    import gzip

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "a.txt.gz", gzip.compress(b"header\nx\ny\n"), mtime=7)
    p = td.Pipeline()
    stamped = (
        p
        | ReadContinuously(str(inbox / "*.gz"), "text", interval=0.05, max_files=1, skip_header_lines=1)
        | td.Map(lambda line, t=td.DoFn.TimestampParam: (line, t.micros))
    )
    assert_that(stamped, equal_to([("x", 7 * US), ("y", 7 * US)]))
    run(p)


# -- the reader: order, offsets, replay, watermark -------------------------------------------
def poll_all(reader: Any, n: int, max_elements: int = 1000) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(out) < n and not reader.is_done():
        assert time.monotonic() < deadline, f"only {len(out)} of {n} records arrived"
        got = reader.poll(min(max_elements, n - len(out)))
        out.extend(got)
        if not got:
            time.sleep(0.005)
    return out


def lines(n: int, tag: str) -> bytes:
    return "".join(f"{tag}{i}\n" for i in range(n)).encode()


def test_files_are_read_in_modification_time_order_and_the_watermark_follows(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "z.txt", lines(2, "z"), mtime=10)
    drop(inbox, "a.txt", lines(2, "a"), mtime=30)
    drop(inbox, "m.txt", lines(1, "m"), mtime=20)
    source = WatchedFilesSource(str(inbox / "*.txt"), TextFormat(), interval=0.05, max_out_of_orderness=5)
    reader = source.open_reader()
    try:
        assert reader.watermark() == MIN_TIMESTAMP_US
        got = poll_all(reader, 5)
        assert [(tv.value, tv.timestamp_us) for tv in got] == [
            ("z0", 10 * US), ("z1", 10 * US), ("m0", 20 * US), ("a0", 30 * US), ("a1", 30 * US)
        ]
        assert reader.watermark() == 25 * US
        drop(inbox, "late.txt", lines(1, "l"), mtime=1)  # a file with an old time: its record is late
        assert [(tv.value, tv.timestamp_us) for tv in poll_all(reader, 1)] == [("l0", 1 * US)]
        assert reader.watermark() == 25 * US
    finally:
        reader.close()


def test_a_reader_opened_at_an_offset_neither_loses_nor_repeats(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "1.txt", lines(3, "a"), mtime=1)
    drop(inbox, "2.txt", lines(4, "b"), mtime=2)
    source = WatchedFilesSource(str(inbox / "*.txt"), TextFormat(), interval=0.05)
    first = source.open_reader()
    try:
        got = poll_all(first, 5, max_elements=5)
        offset = json.loads(json.dumps(first.offset()))  # what a commit log stores
    finally:
        first.close()
    assert [tv.value for tv in got] == ["a0", "a1", "a2", "b0", "b1"]
    assert offset == {"files": [str(inbox / "1.txt")], "current": str(inbox / "2.txt"), "current_records": 2,
                      "records": 5, "max_ts": 2 * US}
    drop(inbox, "3.txt", lines(1, "c"), mtime=3)
    second = source.open_reader(offset)
    try:
        assert second.watermark() == 2 * US  # restored with the offset
        rest = poll_all(second, 3)
        assert [tv.value for tv in rest] == ["b2", "b3", "c0"]
        assert second.offset()["files"] == [str(inbox / f"{i}.txt") for i in (1, 2)]
    finally:
        second.close()


def test_limit_to_replays_the_recorded_files_in_the_recorded_order(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, mtime in [("a.txt", 1), ("b.txt", 2), ("c.txt", 3)]:
        drop(inbox, name, lines(3, name[0]), mtime=mtime)
    source = WatchedFilesSource(str(inbox / "*.txt"), TextFormat(), interval=0.05)
    reader = source.open_reader()
    try:
        # The run being replayed had read c.txt (it appeared first), then 2 records of a.txt.
        end = {"files": [str(inbox / "c.txt")], "current": str(inbox / "a.txt"), "current_records": 2,
               "records": 5, "max_ts": 3 * US}
        reader.limit_to(end)
        got = poll_all(reader, 5)
        assert [tv.value for tv in got] == ["c0", "c1", "c2", "a0", "a1"]
        time.sleep(0.2)
        assert reader.poll(100) == []  # nothing past the recorded end
        assert reader.offset() == end
        reader.limit_to(None)
        assert [tv.value for tv in poll_all(reader, 4)] == ["a2", "b0", "b1", "b2"]
    finally:
        reader.close()


def test_a_pattern_that_matches_nothing_waits_for_files(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    reader = WatchedFilesSource(str(inbox / "*.json"), CsvFormat(), interval=0.02, max_files=1).open_reader()
    try:
        time.sleep(0.1)
        assert reader.poll(10) == [] and not reader.is_done()
        drop(inbox, "x.json", b"k\n1\n", mtime=5)
        assert [tv.value for tv in poll_all(reader, 1)] == [{"k": 1}]
        assert reader.poll(10) == [] and reader.is_done() and reader.watermark() == MAX_TIMESTAMP_US
    finally:
        reader.close()


# -- bad input -----------------------------------------------------------------------------
def test_bad_arguments_are_refused_when_the_transform_is_made(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.txt")
    with pytest.raises(ValueError, match="unknown format 'xml'; use one of 'text', 'csv', 'json', 'parquet'"):
        ReadContinuously(pattern, "xml")
    with pytest.raises(ValueError, match="timestamp_column='t' needs records with columns .* text records are stamped"):
        ReadContinuously(pattern, "text", timestamp_column="t")
    with pytest.raises(ValueError, match="interval must be a positive number of seconds, got 0"):
        MatchContinuously(pattern, interval=0)
    with pytest.raises(ValueError, match="needs a file pattern"):
        ReadContinuously("", "csv")
    with pytest.raises(ValueError, match="max_files must be a non-negative int"):
        ReadContinuously(pattern, max_files=-1)


def test_a_file_that_cannot_be_parsed_fails_naming_the_step_the_file_and_the_line(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bad = drop(inbox, "bad.json", b'{"n": 1}\n{"n": \n')
    p = td.Pipeline()
    p | "Watch" >> ReadContinuously(str(inbox / "*.json"), "json", max_files=1, interval=0.05) | td.Map(lambda r: r)
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Watch/Read\(ReadContinuously") as failed:
        p.run().wait_until_finish(DEADLINE_S)
    assert f"{bad}: line 2: invalid JSON" in str(failed.value)


def test_a_record_without_the_timestamp_column_fails_naming_the_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bad = drop(inbox, "x.csv", b"user,when\nada,1\n")
    p = td.Pipeline()
    p | "Watch" >> ReadContinuously(str(inbox / "*.csv"), "csv", timestamp_column="t", max_files=1) | td.Map(lambda r: r)
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'Watch") as failed:
        p.run().wait_until_finish(DEADLINE_S)
    assert f"{bad}: a record has no column 't' (timestamp_column): {{'user': 'ada', 'when': 1}}" in str(failed.value)


def test_restoring_when_the_file_being_read_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    source = WatchedFilesSource(str(tmp_path / "*.txt"), TextFormat())
    gone = str(tmp_path / "gone.txt")
    with pytest.raises(FileNotFoundError, match=rf"cannot read {gone}: .*must stay until it has been read"):
        source.open_reader({"files": [], "current": gone, "current_records": 3, "records": 3, "max_ts": None})


# -- a restore after a kill neither loses nor repeats input ------------------------------------
N_FILES = 12
PER_FILE = 25
KEYS = 3


def event(f: int, i: int, per_file: int = PER_FILE) -> tuple[str, int, float]:
    v = f * per_file + i
    return f"k{v % KEYS}", v, v / 10


def csv_file(f: int, per_file: int = PER_FILE) -> bytes:
    rows = (event(f, i, per_file) for i in range(per_file))
    return ("k,v,t\n" + "".join(f"{k},{v},{t}\n" for k, v, t in rows)).encode()


def expected(n_files: int = N_FILES, per_file: int = PER_FILE) -> dict[str, collections.Counter[str]]:
    """What the job publishes, worked out in plain Python."""
    sums: collections.Counter[tuple[str, int]] = collections.Counter()
    seen: collections.Counter[str] = collections.Counter()
    numbers = []
    for f in range(n_files):
        for i in range(per_file):
            k, v, t = event(f, i, per_file)
            sums[k, int(t // 10) * 10] += v
            seen[k] += 1
            numbers.append(f"{k},{seen[k]},{v}")
    return {
        "sums": collections.Counter(f"{k},{w},{s}" for (k, w), s in sums.items()),
        "numbers": collections.Counter(numbers),
    }


class NumberPerKey(td.DoFn):
    """Numbers each key's records 1, 2, 3, ... in keyed state: a repeated record shows as a number too many."""

    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[str]:
        n = (count.read() or 0) + 1
        count.write(n)
        yield f"{kv[0]},{n},{kv[1]}"


class KillAfterCommit(td.DoFn):
    """Kills its process (SIGKILL) at the first element from the ``at``-th on once the log has a commit."""

    def __init__(self, log: str, at: int | None) -> None:
        self.log = log
        self.at = at
        self.seen = 0

    def process(self, element: Any) -> Iterable[Any]:
        self.seen += 1
        if self.at is not None and self.seen >= self.at and CommitLog(self.log).committed_indices():
            os.kill(os.getpid(), signal.SIGKILL)
        yield element


def build(p: td.Pipeline, inbox: str, out: str, killer: td.DoFn, n_files: int = N_FILES) -> None:
    rows = p | "Watch" >> ReadContinuously(os.path.join(inbox, "*.csv"), "csv", interval=0.02, timestamp_column="t", max_files=n_files)
    pairs = rows | "Pairs" >> td.Map(lambda r: (r["k"], int(r["v"]))) | "Kill" >> td.ParDo(killer)
    (
        pairs
        | td.WindowInto(window.FixedWindows(10))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | "WriteSums" >> td.WriteToText(os.path.join(out, "sums"))
    )
    pairs | td.ParDo(NumberPerKey()) | "WriteNumbers" >> td.WriteToText(os.path.join(out, "numbers"))


def published(out: Path) -> dict[str, collections.Counter[str]]:
    return {name: collections.Counter(read_text(str(out / f"{name}-*"))) for name in ("sums", "numbers")}


def _main(spec: dict[str, Any]) -> None:
    killer = KillAfterCommit(spec["log"], spec["kill_at"])
    p = td.Pipeline(runner=MicroBatchRunner(batch_interval=0.02, max_batch_size=20, commit_log=spec["log"]))
    build(p, spec["inbox"], spec["out"], killer, spec.get("n_files", N_FILES))
    p.run().wait_until_finish()


def feed(inbox: Path, files: range, pause: float, stop: threading.Event | None = None, per_file: int = PER_FILE) -> None:
    for f in files:
        if stop is not None and stop.is_set():
            return
        drop(inbox, f"{f:03d}.csv", csv_file(f, per_file), mtime=1000 + f)
        time.sleep(pause)


@pytest.mark.parametrize("seed", range(3))
def test_microbatch_killed_process_restores_without_losing_or_repeating_files(tmp_path: Path, seed: int) -> None:
    inbox, out, log = tmp_path / "inbox", tmp_path / "out", tmp_path / "log"
    inbox.mkdir()
    feed(inbox, range(0, 2), 0)
    rng = random.Random(seed)
    kill_at = rng.randint(PER_FILE * 2 + 1, PER_FILE * (N_FILES - 2))
    spec = {"inbox": str(inbox), "out": str(out), "log": str(log), "kill_at": kill_at}
    job = subprocess.Popen([sys.executable, __file__, json.dumps(spec)], stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(inbox, range(2, N_FILES), 0.05, stop), daemon=True)
    feeder.start()  # files keep appearing while the job runs, and after it was killed
    try:
        _, stderr = job.communicate(timeout=120)
    finally:
        feeder.join(60)
    assert job.returncode == -signal.SIGKILL, f"the job was not killed at element {kill_at}: {stderr[-2000:]}"
    assert CommitLog(log).committed_indices()
    spec["kill_at"] = None
    rerun = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert published(out) == expected()


def test_a_replayed_batch_reads_exactly_its_recorded_range(tmp_path: Path) -> None:
    """Small files arrive slower than the job reads them, so batches are short (cut by the interval);
    the job is killed in one, and by the restart every file is there: the replay of that batch must
    stop at its recorded end, not read on to a full batch."""
    inbox, out, log = tmp_path / "inbox", tmp_path / "out", tmp_path / "log"
    inbox.mkdir()
    n_files, per_file = 30, 3
    feed(inbox, range(0, 2), 0, per_file=per_file)
    spec = {"inbox": str(inbox), "out": str(out), "log": str(log), "kill_at": 20, "n_files": n_files}
    job = subprocess.Popen([sys.executable, __file__, json.dumps(spec)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (log.exists() and CommitLog(log).committed_indices()) and job.poll() is None:
        assert time.monotonic() < deadline, "the job committed no batch"
        time.sleep(0.01)
    feeder = threading.Thread(target=feed, args=(inbox, range(2, n_files), 0.06, None, per_file), daemon=True)
    feeder.start()  # from now on files arrive slower than the job reads them
    try:
        _, stderr = job.communicate(timeout=120)
    finally:
        feeder.join(60)
    assert job.returncode == -signal.SIGKILL, stderr[-2000:]
    commits = CommitLog(log)
    in_flight = commits.planned_indices()[-1]
    assert in_flight > commits.committed_indices()[-1], "the kill left no batch to replay"
    assert commits.planned(in_flight)["records"] < 20, "the batch in flight was full: nothing to tell"
    spec["kill_at"] = None
    rerun = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert published(out) == expected(n_files, per_file)


@pytest.mark.slow
def test_ray_killed_worker_restores_without_losing_or_repeating_files(tmp_path: Path, ray_session: None) -> None:
    ray = pytest.importorskip("ray")
    from tidal.runners.ray.runner import RayRunner

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    feed(inbox, range(0, 2), 0)
    runner = RayRunner(parallelism=2, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.25, bundle_size=20)
    p = td.Pipeline(runner=runner)
    build(p, str(inbox), str(out), KillAfterCommit("", None))
    result = p.run()
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(inbox, range(2, N_FILES), 0.2, stop), daemon=True)
    try:
        deadline = time.monotonic() + 60
        while not result.checkpoints and time.monotonic() < deadline:
            time.sleep(0.02)
        assert result.checkpoints, "no checkpoint completed"
        feeder.start()
        time.sleep(0.5)
        assert len(list(inbox.glob("*.csv"))) < N_FILES, "every file had arrived before the kill"
        ray.kill(result._actors[0], no_restart=True)  # the worker reading the folder
        result.wait_until_finish(120)
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(30)
    if len(list(inbox.glob("*.csv"))) < N_FILES:
        pytest.fail("the feeder stopped early")
    assert result.state is td.PipelineState.DONE
    assert len(result.recoveries) == 1
    assert published(out) == expected()


# Ray workers get this module's DoFns by value: importing it there would need the tests folder on their path.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
