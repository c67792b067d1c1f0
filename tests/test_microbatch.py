"""The micro-batch runner: batch cutting, state across batches, replay from the
commit log, the Arrow fast path against the per-element path, per-batch metrics,
and equality with the direct runner."""

from __future__ import annotations

import pickle
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal as td
from tidal import combiners, window
from tidal.model.primitives import BoundedSource, Read
from tidal.model.window import TimestampedValue
from tidal.runners.core.checkpoint import CheckpointWarning
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner
from tidal.runners.microbatch.commitlog import CommitLog
from tidal.testing import TestStream
from tidal.io.arrowio import ReadArrow

from arrow_support import COMBINERS, WINDOWED


class _Collect(td.DoFn):
    """Appends each element with its timestamp, window and pane to a file (one pickle per bundle)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.buffer: list[Any] = []

    def process(self, v: Any, t: Any = td.DoFn.TimestampParam, w: Any = td.DoFn.WindowParam, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
        self.buffer.append((v, t.micros, w, pane))
        return ()

    def finish_bundle(self) -> None:
        if self.buffer:
            with open(self.path, "ab") as f:
                pickle.dump(self.buffer, f)
            self.buffer = []


def _read(path: Path) -> list[Any]:
    out: list[Any] = []
    if not path.exists():
        return out
    with open(path, "rb") as f:
        while True:
            try:
                out.extend(pickle.load(f))
            except EOFError:
                return out


def _run(runner: Any, build: Callable[[td.Pipeline], Any], path: Path) -> tuple[list[Any], Any]:
    p = td.Pipeline(runner=runner)
    build(p) | td.ParDo(_Collect(str(path)))
    result = p.run()
    return sorted(_read(path), key=repr), result


def _stamped(n: int, keys: int = 7, span: int = 100, seed: int = 1) -> list[tuple[int, int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(keys), rng.randrange(100), rng.randrange(span)) for _ in range(n)]


def _windowed_sum(events: list[tuple[int, int, int]], windowfn: Any = None) -> Callable[[td.Pipeline], Any]:
    def build(p: td.Pipeline) -> Any:
        return (
            p
            | td.Create(events)
            | td.Map(lambda e: TimestampedValue((e[0], e[1]), e[2]))
            | td.WindowInto(windowfn or window.FixedWindows(10))
            | td.CombinePerKey(sum)
        )

    return build


# -- batch cutting --------------------------------------------------------------------
def test_batches_are_cut_by_record_count(tmp_path: Path) -> None:
    events = _stamped(25)
    out, result = _run(MicroBatchRunner(max_batch_size=10), _windowed_sum(events), tmp_path / "out")
    assert [b.records for b in result.batches] == [10, 10, 5]
    assert [b.index for b in result.batches] == [0, 1, 2]
    expected, _ = _run(DirectRunner(), _windowed_sum(events), tmp_path / "direct")
    assert out == expected


class _SlowSource(BoundedSource):
    def __init__(self, n: int, delay: float) -> None:
        self.n, self.delay = n, delay

    def read(self) -> Iterable[Any]:
        for i in range(self.n):
            time.sleep(self.delay)
            yield i


def test_batches_are_cut_by_processing_time_interval(tmp_path: Path) -> None:
    runner = MicroBatchRunner(batch_interval=0.05, max_batch_size=1_000_000, bundle_size=1)
    build = lambda p: p | Read(_SlowSource(40, 0.005)) | td.Map(lambda x: ("all", x)) | td.CombinePerKey(sum)  # noqa: E731
    out, result = _run(runner, build, tmp_path / "out")
    assert [v for v, *_ in out] == [("all", sum(range(40)))]
    records = [b.records for b in result.batches]
    assert sum(records) == 40
    assert len(records) >= 2  # 40 reads of 5 ms do not fit one 50 ms batch
    assert max(records) < 40


def test_a_test_stream_batch_ends_at_each_watermark_event(tmp_path: Path) -> None:
    stream = (
        TestStream()
        .add_elements([TimestampedValue(("k", 1), 1), TimestampedValue(("j", 5), 2)])
        .add_elements([TimestampedValue(("k", 2), 3)])
        .advance_watermark_to(10)
        .add_elements([TimestampedValue(("k", 3), 12)])
        .advance_processing_time(10)
        .advance_watermark_to_infinity()
    )
    build = lambda p: p | stream | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)  # noqa: E731
    out, result = _run(MicroBatchRunner(), build, tmp_path / "mb")
    expected, _ = _run(DirectRunner(), build, tmp_path / "direct")
    assert out == expected
    assert [b.records for b in result.batches] == [3, 1, 0]
    assert result.batches[0].watermark_us == 10_000_000


# -- state across batches ---------------------------------------------------------------
def test_windows_spanning_batches_keep_their_state(tmp_path: Path) -> None:
    # Elements of window [0, 10) arrive in three batches; the watermark passes it in the fourth.
    stream = (
        TestStream()
        .add_elements([TimestampedValue(("k", 1), 1)])
        .advance_watermark_to(2)
        .add_elements([TimestampedValue(("k", 2), 5), TimestampedValue(("j", 7), 6)])
        .advance_watermark_to(5)
        .add_elements([TimestampedValue(("k", 4), 9), TimestampedValue(("k", 8), 11)])
        .advance_watermark_to(10)
        .advance_watermark_to_infinity()
    )
    build = lambda p: p | stream | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)  # noqa: E731
    out, result = _run(MicroBatchRunner(), build, tmp_path / "out")
    w0, w1 = window.IntervalWindow(0, 10), window.IntervalWindow(10, 20)
    assert sorted((v, w) for v, _t, w, _p in out) == sorted([(("j", 7), w0), (("k", 7), w0), (("k", 8), w1)])
    assert len(result.batches) == 4


def test_a_stateful_dofn_keeps_state_across_batches(tmp_path: Path) -> None:
    class RunningTotal(td.DoFn):
        TOTAL = td.ReadModifyWriteStateSpec("total")

        def process(self, kv: Any, total: Any = td.DoFn.StateParam(TOTAL)) -> Iterable[Any]:
            t = (total.read() or 0) + kv[1]
            total.write(t)
            yield kv[0], t

    build = lambda p: p | td.Create([("a", i) for i in range(1, 8)]) | td.ParDo(RunningTotal())  # noqa: E731
    out, result = _run(MicroBatchRunner(max_batch_size=3), build, tmp_path / "out")
    assert sorted(v for v, *_ in out) == [("a", sum(range(1, i + 1))) for i in range(1, 8)]
    assert len(result.batches) == 3


# -- replay from the commit log ---------------------------------------------------------
class _CrashOn(td.DoFn):
    """Raises on ``value`` while the flag file exists (a simulated worker crash)."""

    def __init__(self, flag: str, value: int) -> None:
        self.flag, self.value = flag, value

    def process(self, kv: Any) -> Iterable[Any]:
        if kv[1] == self.value and Path(self.flag).exists():
            raise RuntimeError("simulated crash")
        yield kv


def _replay_stream() -> TestStream:
    stream = TestStream()
    for step in range(8):
        stream = stream.add_elements([TimestampedValue((f"k{i % 3}", step * 10 + i), step * 5 + i) for i in range(5)])
        stream = stream.advance_watermark_to(step * 5 + 3)
    return stream.advance_watermark_to_infinity()


@pytest.mark.parametrize("source", ["test_stream", "create"])
def test_a_restart_replays_from_the_last_committed_batch(tmp_path: Path, source: str) -> None:
    def build_with(flag: Path) -> Callable[[td.Pipeline], Any]:
        def build(p: td.Pipeline) -> Any:
            if source == "test_stream":
                pcoll = p | _replay_stream()
            else:
                pcoll = p | td.Create(_stamped(60, span=40)) | td.Map(lambda e: TimestampedValue((e[0], e[1] * 100 + e[2]), e[2]))
            return (
                pcoll
                | td.ParDo(_CrashOn(str(flag), 42 if source == "test_stream" else _stamped(60, span=40)[31][1] * 100 + _stamped(60, span=40)[31][2]))
                | td.WindowInto(window.FixedWindows(5))
                | td.CombinePerKey(sum)
            )

        return build

    flag = tmp_path / "crash"
    runner_args = {"max_batch_size": 10} if source == "create" else {}
    whole, _ = _run(MicroBatchRunner(commit_log=str(tmp_path / "log-whole"), **runner_args), build_with(flag), tmp_path / "whole")

    flag.touch()
    log = tmp_path / "log"
    with pytest.raises(Exception, match="simulated crash"):
        _run(MicroBatchRunner(commit_log=str(log), **runner_args), build_with(flag), tmp_path / "crashed")
    crashed_in = CommitLog(log).planned_indices()[-1]
    assert crashed_in >= 2  # it crashed part-way, after some batches
    assert CommitLog(log).committed_indices()[-1] == crashed_in - 1
    flag.unlink()
    resumed, result = _run(MicroBatchRunner(commit_log=str(log), **runner_args), build_with(flag), tmp_path / "crashed")
    assert result.batches[0].replayed and result.batches[0].index == crashed_in
    assert not any(b.replayed for b in result.batches[1:])
    # The crashed run's output plus the resumed run's: the crash came before the crashed batch
    # emitted anything, so even this sink, which is not transactional, sees each pane once.
    assert resumed == whole


def test_the_commit_log_records_each_batch_boundary(tmp_path: Path) -> None:
    log = tmp_path / "log"
    events = _stamped(30)
    executor = _executor(_windowed_sum(events), max_batch_size=7, commit_log=CommitLog(log, retain=10))
    executor.run()
    records = [CommitLog(log).planned(i) for i in range(5)]
    assert [[pos["offset"] for pos in r["end"].values()] for r in records] == [[7], [14], [21], [28], [30]]
    assert [r["records"] for r in records] == [7, 7, 7, 7, 2]
    # Five batches, then the end of input, each committed after it ran.
    assert CommitLog(log).committed_indices() == [0, 1, 2, 3, 4, 5]
    assert CommitLog(log).latest()[1]["final"]  # type: ignore[index]


def test_the_commit_log_keeps_the_newest_commits_and_the_offsets_after_them(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _run(MicroBatchRunner(max_batch_size=7, commit_log=str(log)), _windowed_sum(_stamped(30)), tmp_path / "a")
    assert CommitLog(log).committed_indices() == [4, 5]
    assert CommitLog(log).planned_indices() == [4]  # the end of input (5) reads nothing


def _executor(build: Callable[[td.Pipeline], Any], **kwargs: Any) -> Any:
    from tidal.runners.core.plan import build_plan
    from tidal.runners.microbatch import MicroBatchExecutor

    p = td.Pipeline()
    build(p)
    kwargs.setdefault("batch_interval", 1.0)
    return MicroBatchExecutor(build_plan(p.graph()), **kwargs)


# -- the Arrow fast path ------------------------------------------------------------------
def _arrow_table(rows: list[tuple[int, float, int]], value_type: Any = pa.float64()) -> pa.Table:
    keys, values, ts = zip(*rows) if rows else ((), (), ())
    if pa.types.is_integer(value_type):
        values = tuple(int(v * 4) for v in values)
    return pa.table({"key": pa.array(keys, pa.int64()), "value": pa.array(values, value_type), "ts": pa.array(ts, pa.int64())})


def _arrow_pipeline(table: pa.Table, windowfn: Any, fn: Any) -> Callable[[td.Pipeline], Any]:
    def build(p: td.Pipeline) -> Any:
        pcoll = p | ReadArrow(table, key="key", value="value", timestamp="ts")
        if windowfn is not None:
            pcoll = pcoll | td.WindowInto(windowfn)
        return pcoll | td.CombinePerKey(fn)

    return build


WINDOWFNS = {"global": None, **WINDOWED}


def test_the_arrow_path_is_taken_for_a_known_combiner(tmp_path: Path) -> None:
    from tidal.runners.core.plan import build_plan
    from tidal.runners.microbatch import MicroBatchExecutor

    p = td.Pipeline()
    _arrow_pipeline(_arrow_table([(1, 1.0, 1)]), window.FixedWindows(10), sum)(p)
    executor = MicroBatchExecutor(build_plan(p.graph()), 1.0, 100)
    assert len(executor.columnar) == 1
    p = td.Pipeline()
    _arrow_pipeline(_arrow_table([(1, 1.0, 1)]), window.Sessions(10), sum)(p)
    assert not MicroBatchExecutor(build_plan(p.graph()), 1.0, 100).columnar


def test_on_the_disk_backend_the_arrow_aggregate_steps_aside_so_its_windows_state_spills(tmp_path: Path) -> None:
    """The Arrow path holds open windows' partial aggregates in tables of its own: with ``state_backend="disk"`` the
    grouping step keeps them in the backend's tables instead, and the sums are the same."""
    from tidal.runners.core.plan import StateBackendSpec, build_plan
    from tidal.runners.core.statebackend import SpilledTable
    from tidal.runners.microbatch import MicroBatchExecutor

    rows = [(k, float(k * 10 + t), t) for k in range(3) for t in range(40)]  # (key, value, time in seconds)
    options = {"state_backend": "disk", "state_dir": str(tmp_path / "state"), "state_cache_entries": 2}
    p = td.Pipeline(options=options)
    _arrow_pipeline(_arrow_table(rows), window.FixedWindows(10), sum)(p)
    executor = MicroBatchExecutor(build_plan(p.graph(), state_backend=StateBackendSpec.from_options(p.options)), 1.0, 100)
    assert not executor.columnar
    reducers = [op.reducer for op in executor.op_of.values() if hasattr(op, "reducer")]
    assert reducers and all(isinstance(r.states, SpilledTable) for r in reducers)
    # By hand: each key's values summed per 10 s window, the pane at the window's end.
    expected = sorted(
        (((k, float(sum(k * 10 + t for t in range(start, start + 10)))), (start + 10) * 1_000_000 - 1, start)
         for k in range(3) for start in range(0, 40, 10)),
        key=repr,
    )
    for name, opts in (("memory", {}), ("disk", options)):
        p = td.Pipeline(runner=MicroBatchRunner(max_batch_size=7), options=opts)
        _ = _arrow_pipeline(_arrow_table(rows), window.FixedWindows(10), sum)(p) | td.ParDo(_Collect(str(tmp_path / name)))
        p.run().wait_until_finish()
        got = [(v, t, int(w.start.micros // 1_000_000)) for v, t, w, _ in _read(tmp_path / name)]
        assert sorted(got, key=repr) == expected


rows_strategy = st.lists(
    # Small keys take the dense (bincount) kernel, far-apart keys the hash group-by.
    st.tuples(st.sampled_from([0, 1, 2, 3, 5, -(10**12), 10**12]), st.integers(-40, 40).map(lambda x: x / 4), st.integers(-30, 60)),
    max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=rows_strategy,
    wname=st.sampled_from(sorted(WINDOWFNS)),
    cname=st.sampled_from(sorted(COMBINERS)),
    batch=st.integers(1, 25),
    ints=st.booleans(),
)
def test_the_arrow_path_equals_the_per_element_path(tmp_path_factory: Any, rows: list[Any], wname: str, cname: str, batch: int, ints: bool) -> None:
    tmp = tmp_path_factory.mktemp("arrow")
    table = _arrow_table(rows, pa.int64() if ints else pa.float64())
    build = _arrow_pipeline(table, WINDOWFNS[wname], COMBINERS[cname])
    columnar, _ = _run(MicroBatchRunner(max_batch_size=batch), build, tmp / "columnar")
    per_element, _ = _run(MicroBatchRunner(max_batch_size=batch, columnar=False), build, tmp / "per_element")
    direct, _ = _run(DirectRunner(), build, tmp / "direct")
    assert columnar == per_element == direct


def test_the_arrow_path_replays_from_the_commit_log(tmp_path: Path) -> None:
    rows = [(i % 5, float(i), i % 37) for i in range(200)]
    build = _arrow_pipeline(_arrow_table(rows), window.FixedWindows(10), sum)
    whole, _ = _run(MicroBatchRunner(max_batch_size=30), build, tmp_path / "whole")
    log = tmp_path / "log"
    # Run five batches, then drop the fifth one's manifest, as if the process died while committing it.
    first = _executor(lambda p: build(p) | td.ParDo(_Collect(str(tmp_path / "first"))), max_batch_size=30, commit_log=CommitLog(log))
    for op in first.ops:
        op.open()
    for driver, _, _ in first.sources:
        driver.open(first.clock)
    active = [d for d, _, _ in first.sources]
    for _ in range(5):
        first.run_batch(active)
    (log / "commits" / "chk-000004" / "MANIFEST.json").unlink()
    with pytest.warns(CheckpointWarning, match="skipping checkpoint 4 .* incomplete"):
        resumed, result = _run(MicroBatchRunner(max_batch_size=30, commit_log=str(log)), build, tmp_path / "resumed")
    assert [(b.index, b.replayed) for b in result.batches] == [(4, True), (5, False), (6, False)]
    assert [b.records for b in result.batches] == [30, 30, 20]
    assert sorted(_read(tmp_path / "first") + resumed, key=repr) == whole


# -- metrics and equality with the direct runner ------------------------------------------
def test_per_batch_metrics_are_in_the_result(tmp_path: Path) -> None:
    _, result = _run(MicroBatchRunner(max_batch_size=4), _windowed_sum(_stamped(10)), tmp_path / "out")
    assert [b.records for b in result.batches] == [4, 4, 2]
    assert all(b.duration_s >= 0 for b in result.batches)
    assert result.batches[-1].watermark_us == window.MAX_TIMESTAMP.micros
    metrics = result.metrics().query()
    counters = {m.key.metric.name: m.result for m in metrics["counters"] if m.key.step == "MicroBatch"}
    dists = {m.key.metric.name: m.result for m in metrics["distributions"] if m.key.step == "MicroBatch"}
    gauges = {m.key.metric.name: m.result for m in metrics["gauges"] if m.key.step == "MicroBatch"}
    assert counters["batches"] == 3
    assert (dists["batch_records"].sum, dists["batch_records"].count, dists["batch_records"].max) == (10, 3, 4)
    assert gauges["last_batch_records"].value == 2


@pytest.mark.parametrize(
    "windowfn",
    [window.GlobalWindows(), window.FixedWindows(10), window.SlidingWindows(20, 5), window.Sessions(5)],
    ids=repr,
)
@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_bounded_pipelines_equal_the_direct_runner(tmp_path: Path, windowfn: Any, batch: int) -> None:
    events = _stamped(80, span=60)

    def build(p: td.Pipeline) -> Any:
        pcoll = p | td.Create(events) | td.Map(lambda e: TimestampedValue((e[0], e[1]), e[2])) | td.WindowInto(windowfn)
        grouped = pcoll | td.GroupByKey() | td.MapTuple(lambda k, vs: (k, sorted(vs)))
        means = pcoll | td.CombinePerKey(combiners.MeanCombineFn())
        return (grouped, means) | td.Flatten()

    mb, _ = _run(MicroBatchRunner(max_batch_size=batch), build, tmp_path / "mb")
    direct, _ = _run(DirectRunner(), build, tmp_path / "direct")
    assert mb == direct


def test_word_count_with_side_inputs_equals_the_direct_runner(tmp_path: Path) -> None:
    lines = ["the quick brown fox", "the lazy dog", "the end"] * 20

    def build(p: td.Pipeline) -> Any:
        words = p | td.Create(lines) | td.FlatMap(str.split)
        total = words | "Total" >> combiners.Count.Globally()
        counts = words | td.Map(lambda w: (w, 1)) | td.CombinePerKey(sum)
        return counts | td.Map(lambda kv, n: (kv[0], kv[1], n), td.AsSingleton(total))

    mb, _ = _run(MicroBatchRunner(max_batch_size=9), build, tmp_path / "mb")
    direct, _ = _run(DirectRunner(), build, tmp_path / "direct")
    assert mb == direct


def test_pipeline_runner_name_resolves() -> None:
    from tidal.runners.registry import resolve_runner

    assert isinstance(resolve_runner("microbatch"), MicroBatchRunner)
