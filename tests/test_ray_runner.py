"""The Ray runner: routing, results equal to the direct runner, backpressure,
errors, cleanup and cancellation. All tests share one local Ray instance."""

from __future__ import annotations

import subprocess
import sys

import time
from pathlib import Path
from typing import Any, Iterable

import pytest

import tidal as td
from tidal import window
from tidal.model.window import TimestampedValue
from tidal.testing import TestStream, assert_that, equal_to

ray = pytest.importorskip("ray")

from tidal.runners.ray import RayRunner  # noqa: E402
from tidal.runners.ray.exchange import pack_bundle, route_keyed, stable_hash, unpack_bundle  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_session")


def _job_actors_alive() -> int:
    from ray._private import state

    return sum(
        1
        for info in state.actors().values()
        if info.get("ActorClassName") == "StageWorker" and info.get("State") != "DEAD"
    )


def _only_idle_pool_workers(timeout: float = 20.0) -> int:
    """How many workers are alive that are not idle and unloaded in the pool (0: nothing half-run)."""
    from tidal.runners.ray.pool import get_pool

    idle = get_pool().idle()
    assert all(not d["loaded"] for d in ray.get([w.describe.remote() for w in idle]))
    deadline = time.monotonic() + timeout
    alive = _job_actors_alive()
    while alive > len(idle) and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = _job_actors_alive()
    return alive - len(idle)


# -- routing -------------------------------------------------------------------------
def test_stable_hash_is_the_same_in_another_process() -> None:
    keys = ["word", "ümlaut", 0, -7, 2**70, b"raw", ("tuple", 1), None]
    here = [stable_hash(k) for k in keys]
    code = (
        "from tidal.runners.ray.exchange import stable_hash;"
        f"print([stable_hash(k) for k in {keys!r}])"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == repr(here)


def test_a_key_whose_class_pickle_cannot_name_still_hashes_by_its_value() -> None:
    # A class defined in a driver's __main__ (or a module shipped by value) arrives in a worker
    # under a module name the worker cannot import: pickle cannot write it by reference there.
    class Player(tuple):  # type: ignore[type-arg]
        pass

    Player.__module__ = "not_importable_anywhere"
    Player.__qualname__ = "Player"
    a, b, c = Player(("ana", "north")), Player(("ana", "north")), Player(("bo", "north"))
    with pytest.raises(Exception):
        import pickle

        pickle.dumps(a, protocol=4)
    assert stable_hash(a) == stable_hash(b) != stable_hash(c)


def test_keyed_routing_sends_each_key_to_exactly_one_part() -> None:
    bundle = [((f"k{i % 37}", i), 0, (), None) for i in range(1000)]
    parts = route_keyed(bundle, 3)
    assert sum(len(p) for p in parts) == 1000
    owner: dict[str, int] = {}
    for index, part in enumerate(parts):
        for (key, _), *_ in part:
            assert owner.setdefault(key, index) == index
            # The owner of the key's group among 128: groups 0..42 -> 0, 43..85 -> 1, 86..127 -> 2.
            assert index == (stable_hash(key) % 128) * 3 // 128
    assert all(parts)  # 37 keys spread over all three parts


def test_a_bundle_travels_as_one_pickle_and_comes_back_equal() -> None:
    """Bundles go between workers as bytes; values of a class pickle cannot name go by value."""
    import pickle

    from tidal.model.trigger import PANE_INFO_UNKNOWN
    from tidal.model.window import GLOBAL_WINDOWS_TUPLE, IntervalWindow

    class Local:  # defined here: plain pickle cannot find it by name
        def __init__(self, x: int) -> None:
            self.x = x

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Local) and other.x == self.x

    plain = [(("k", 1), 5, (IntervalWindow(0, 10),), PANE_INFO_UNKNOWN), ("v", -1, GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN)]
    data = pack_bundle(plain)
    assert type(data) is bytes and pickle.loads(data) == unpack_bundle(data) == plain
    local = [(Local(3), 0, GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN)]
    assert unpack_bundle(pack_bundle(local)) == local


def test_keyed_exchange_groups_every_key_on_one_actor() -> None:
    class Where(td.DoFn):
        def process(self, kv: Any) -> Iterable[Any]:
            import os

            yield kv[0], (len(kv[1]), os.getpid())

    data = [(f"k{i % 50}", i) for i in range(2000)]
    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        placed = p | td.Create(data) | td.GroupByKey() | td.ParDo(Where())
        counts = placed | td.Map(lambda kv: (kv[0], kv[1][0]))
        assert_that(counts, equal_to([(f"k{i}", 40) for i in range(50)]), label="one group per key")
        pids = placed | td.Map(lambda kv: kv[1][1]) | td.Distinct() | td.combiners.Count.Globally()
        assert_that(pids, equal_to([2]), label="both actors hold keys")


# -- same results as the direct runner --------------------------------------------------
def test_word_count_with_lifting_matches_direct() -> None:
    lines = ["the quick brown fox", "the lazy dog", "the end"] * 50

    def build(p: td.Pipeline) -> Any:
        return p | td.Create(lines) | td.FlatMap(str.split) | td.Map(lambda w: (w, 1)) | td.CombinePerKey(sum)

    expected = {"the": 150, "quick": 50, "brown": 50, "fox": 50, "lazy": 50, "dog": 50, "end": 50}
    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        assert_that(build(p), equal_to(sorted(expected.items())))


def test_side_inputs_are_broadcast_and_flatten_fans_in() -> None:
    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        a = p | "a" >> td.Create(range(10))
        b = p | "b" >> td.Create(range(10, 20))
        both = (a, b) | td.Flatten()
        total = both | td.CombineGlobally(sum)
        shares = both | td.Map(lambda x, t: x * 1000 // t, td.AsSingleton(total))
        assert_that(shares, equal_to([x * 1000 // 190 for x in range(20)]))


def test_a_pcollection_read_by_several_stages_reaches_each_of_them() -> None:
    # One PCollection, two consumers that each start a stage (ParDos with side inputs): both must
    # get every element and the watermark (they once shared one route, and one stalled).
    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        numbers = p | "Numbers" >> td.Create(range(20))
        small = p | "Small" >> td.Create([1, 2, 3])
        kept = numbers | "Keep" >> td.Filter(lambda x, s: x in s, td.AsList(small))
        shifted = numbers | "Shift" >> td.Map(lambda x, s: x + max(s), td.AsIter(small))
        assert_that(kept, equal_to([1, 2, 3]), label="kept")
        assert_that(shifted, equal_to([x + 3 for x in range(20)]), label="shifted")


def test_windows_triggers_and_teststream_match_the_direct_runner() -> None:
    stream = (
        TestStream()
        .add_elements([TimestampedValue(("k", 1), 1), TimestampedValue(("j", 5), 2)])
        .advance_watermark_to(5)
        .add_elements([TimestampedValue(("k", 3), 3)])
        .advance_processing_time(10)
        .advance_watermark_to(11)
        .add_elements([TimestampedValue(("k", 4), 4)])
        .advance_watermark_to_infinity()
    )

    class Panes(td.DoFn):
        def process(self, kv: Any, w: Any = td.DoFn.WindowParam, pane: Any = td.DoFn.PaneInfoParam) -> Iterable[Any]:
            yield kv[0], sorted(kv[1]), w, pane.timing.name, pane.index, pane.is_last

    def build(p: td.Pipeline) -> Any:
        return (
            p
            | stream
            | td.WindowInto(
                window.FixedWindows(10),
                trigger=td.trigger.AfterWatermark(early=td.trigger.AfterProcessingTime(5), late=td.trigger.AfterCount(1)),
                accumulation_mode=td.trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=10,
            )
            | td.GroupByKey()
            | td.ParDo(Panes())
        )

    w = window.IntervalWindow(0, 10)
    expected = [
        ("k", [1, 3], w, "EARLY", 0, False),
        ("j", [5], w, "EARLY", 0, False),
        ("k", [1, 3], w, "ON_TIME", 1, False),
        ("j", [5], w, "ON_TIME", 1, False),
        ("k", [1, 3, 4], w, "LATE", 2, False),
    ]
    for runner in ("direct", RayRunner(parallelism=2)):
        with td.Pipeline(runner=runner) as p:
            assert_that(build(p), equal_to(expected))


def test_sessions_and_metrics_are_aggregated_from_all_actors() -> None:
    class Count(td.DoFn):
        seen = td.Metrics.counter("ray-test", "seen")

        def process(self, x: Any) -> Iterable[Any]:
            self.seen.inc()
            yield x

    events = [TimestampedValue((k, t), t) for k in ("a", "b", "c", "d") for t in (1, 2, 10, 30, 31)]
    p = td.Pipeline(runner=RayRunner(parallelism=2))
    sessions = (
        p
        | td.Create(events)
        | td.ParDo(Count())
        | td.WindowInto(window.Sessions(5))
        | td.GroupByKey()
        | td.MapTuple(lambda k, vs: (k, sorted(vs)))
    )
    assert_that(
        sessions,
        equal_to([(k, vs) for k in ("a", "b", "c", "d") for vs in ([1, 2], [10], [30, 31])]),
    )
    result = p.run()
    counters = result.metrics().query(td.MetricsFilter().with_name("seen"))["counters"]
    assert sum(c.committed for c in counters) == 20


# -- backpressure ---------------------------------------------------------------------
class _ProgressSource(td.BoundedSource):
    """Writes how many elements it has produced to a file as it goes."""

    def __init__(self, n: int, path: str) -> None:
        self.n = n
        self.path = path

    def read(self) -> Iterable[Any]:
        for i in range(self.n):
            if i % 50 == 0:
                Path(self.path).write_text(str(i))
            yield i
        Path(self.path).write_text(str(self.n))


class _SlowSink(td.DoFn):
    """Sleeps per bundle and records how far the source has run ahead of it (a keyed stage: it keeps state)."""

    SEEN = td.ReadModifyWriteStateSpec("seen")

    def __init__(self, path: str) -> None:
        self.path = path

    def start_bundle(self) -> None:
        time.sleep(0.02)

    def process(self, kv: Any, seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        seen.write((seen.read() or 0) + 1)
        try:
            produced = int(Path(self.path).read_text() or 0)
        except (OSError, ValueError):
            produced = 0
        yield produced - kv[1]


def _lag_at_most(limit: int) -> Any:
    def check(lags: list[int]) -> None:
        assert len(lags) == 3000, len(lags)
        assert 0 <= max(lags) <= limit, f"the source ran {max(lags)} elements ahead of the sink"

    return check


def _run_with_slow_sink(progress: str, max_in_flight: int) -> None:
    """One source instance (worker 0) sends every element, under one key, to the sink instance that
    owns the key, on worker 1: every bundle crosses workers, so only the bound on calls in flight
    between workers keeps the source from running ahead."""
    from tidal.runners.core.keygroups import key_group_of, owner_of

    key = next(k for k in range(100) if owner_of(key_group_of(k, 128), 2, 128) == 1)
    runner = RayRunner(parallelism=2, stage_parallelism={"Produce": 1}, max_in_flight=max_in_flight, bundle_size=50)
    with td.Pipeline(runner=runner) as p:
        lag = (
            p
            | "Produce" >> td.Read(_ProgressSource(3000, progress))
            | td.Map(lambda x: (key, x))
            | "SlowSink" >> td.ParDo(_SlowSink(progress))
        )
        assert_that(lag, _lag_at_most(600))


def test_backpressure_keeps_a_slow_sink_from_falling_far_behind(tmp_path: Path) -> None:
    # With one call in flight per destination the source can only be a few bundles
    # (of 50 elements) ahead of the slow sink, not the whole input (3000).
    _run_with_slow_sink(str(tmp_path / "progress"), max_in_flight=1)


# -- errors, cleanup, cancel ------------------------------------------------------------
def test_user_error_names_step_and_element_and_removes_actors() -> None:
    started = time.monotonic()
    with pytest.raises(td.UserCodeError) as info:
        with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
            p | td.Create([5, 1, 0, 2]) | "Invert" >> td.Map(lambda x: 10 // x)
    message = str(info.value)
    assert "step 'Invert'" in message
    assert "ZeroDivisionError" in message
    assert "on element 0" in message
    assert "remote traceback" in "\n".join(getattr(info.value, "__notes__", []))
    assert time.monotonic() - started < 60
    # The failed job's workers were removed, not given back: every worker left is idle and empty.
    assert _only_idle_pool_workers() == 0


def test_an_unhashable_key_crossing_the_exchange_is_reported_by_the_grouping_step() -> None:
    """A bundle holding an unhashable key is routed element by element, and the grouping step names it."""
    with pytest.raises(td.PipelineExecutionError) as info:
        with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
            p | td.Create([("a", 1), (["b"], 2), ("c", 3)]) | td.Map(lambda kv: kv) | "GroupLists" >> td.GroupByKey()
    assert "step 'GroupLists': the key ['b'] is not hashable (list)" in str(info.value)


def test_a_successful_job_gives_its_workers_back_empty_and_the_next_job_reuses_them() -> None:
    from tidal.runners.ray.pool import get_pool

    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        assert_that(p | td.Create([1, 2, 3]) | td.Map(lambda x: x + 1), equal_to([2, 3, 4]))
    assert _only_idle_pool_workers() == 0
    created = get_pool().created
    with td.Pipeline(runner=RayRunner(parallelism=2)) as p:
        assert_that(p | td.Create([1, 2, 3]) | td.Map(lambda x: x * 2), equal_to([2, 4, 6]))
    assert get_pool().created == created  # warm: no new worker process
    assert _only_idle_pool_workers() == 0


def test_cancel_stops_a_running_streaming_job() -> None:
    def forever() -> Iterable[Any]:
        i = 0
        while True:
            yield TimestampedValue(("k", 1), i)
            i += 1
            time.sleep(0.001)

    p = td.Pipeline(runner=RayRunner(parallelism=1))
    (
        p
        | td.Read(td.GeneratorSource(forever))
        | td.WindowInto(window.FixedWindows(10))
        | td.CombinePerKey(sum)
    )
    result = p.run()
    time.sleep(3)
    assert result.state is td.PipelineState.RUNNING
    workers = list(result._actors)  # type: ignore[attr-defined]
    assert result.cancel() is td.PipelineState.CANCELLED
    assert _only_idle_pool_workers() == 0
    # The cancelled job's workers are gone, never back in the pool.
    for w in workers:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(w.describe.remote(), timeout=20)


def test_parallelism_is_validated() -> None:
    with pytest.raises(ValueError, match="parallelism must be at least 1"):
        RayRunner(parallelism=0)





def test_the_backpressure_check_sees_a_runaway_source(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="elements ahead of the sink"):
        _run_with_slow_sink(str(tmp_path / "progress"), max_in_flight=1000)


def test_a_stale_cluster_address_does_not_stop_a_local_run() -> None:
    """`ray start` leaves /tmp/ray/ray_current_cluster behind; without an address the
    runner still starts its own local Ray rather than joining (or failing on) that one."""
    import os
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        os.makedirs(os.path.join(root, "ray"))
        with open(os.path.join(root, "ray", "ray_current_cluster"), "w") as f:
            f.write("127.0.0.1:1")  # nothing listens there
        code = (
            "import tidal as td\n"
            "from tidal.runners.ray import RayRunner\n"
            "from tidal.testing import assert_that, equal_to\n"
            "with td.Pipeline(runner=RayRunner(parallelism=1)) as p:\n"
            "    assert_that(p | td.Create([1, 2, 3]) | td.Map(lambda x: x * 10), equal_to([10, 20, 30]))\n"
            "print('ran locally')\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=root, RAY_AUTH_MODE="disabled")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == "ran locally"
    finally:
        shutil.rmtree(root, ignore_errors=True)
