"""The standalone benchmarks check their output before they print a figure.

Each runs here at a small size and passes its own check; then, with the sinks
at the end of their pipelines made to lose the first element they see (as a
runner that dropped data would), each one exits with an error naming the
difference and prints no figure.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytest

from tidal.benchmarks import direct_windowed, direct_wordcount, floor, linear, microbatch_bench, ray_checkpoint, ray_wordcount
from tidal.benchmarks.verify import BatchTally, BenchmarkMismatch, Tally
from tidal.capability_matrix.sinks import RecordTo, RecordValues

SMALL: dict[str, tuple[Callable[[list[str]], int], list[str]]] = {
    "direct_wordcount": (direct_wordcount.main, ["--elements", "3000", "--distinct", "50", "--repeats", "1"]),
    "direct_windowed": (direct_windowed.main, ["--elements", "3000", "--repeats", "1"]),
    "microbatch_bench": (
        microbatch_bench.main,
        ["--events", "20000", "--fallback-events", "5000", "--words", "3000", "--batched-events", "5000",
         "--max-batch-size", "4000", "--repeats", "1", "--workloads", "arrow,fallback,wordcount,pyarrow,batched"],
    ),
    "floor": (floor.main, ["--elements", "3000", "--repeats", "1"]),
    "linear": (linear.main, ["--elements", "2000,4000", "--stream", "", "--repeats", "1"]),
}
FIGURE = ("elements/s", "events/s")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_benchmark_passes_its_own_check_and_prints_its_figures(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main, args = SMALL[name]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert any(unit in captured.out for unit in FIGURE) and captured.err == ""


def _lose_the_first_element(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every recording sink and Tally drops the first element it is given (a BatchTally its first row)."""
    for cls in (RecordTo, RecordValues, Tally, floor.Digest):
        process = cls.process

        def losing(self: Any, element: Any, *args: Any, _process: Any = process, **kwargs: Any) -> Iterable[Any]:
            if not getattr(self, "_lost_one", False):
                self._lost_one = True
                return ()
            return _process(self, element, *args, **kwargs)  # type: ignore[no-any-return]

        monkeypatch.setattr(cls, "process", losing)
    _lose_the_first_row(monkeypatch)


def _lose_the_first_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every BatchTally drops the first row of the first Arrow batch it is given."""
    process_batch = BatchTally.process_batch

    def losing_a_row(self: Any, batch: Any, _process_batch: Any = process_batch) -> Iterable[Any]:
        if not getattr(self, "_lost_one", False):
            self._lost_one = True
            batch = batch.slice(1)
        return _process_batch(self, batch)  # type: ignore[no-any-return]

    monkeypatch.setattr(BatchTally, "process_batch", losing_a_row)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_wrong_result_stops_the_benchmark_before_any_figure(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _lose_the_first_element(monkeypatch)
    main, args = SMALL[name]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert not any(unit in captured.out for unit in FIGURE), captured.out
    assert captured.err.startswith(f"error: {name}") and captured.err.count("\n") == 1, captured.err
    assert "expected" in captured.err


def test_the_arrow_consumer_of_the_pyarrow_comparison_is_checked(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """tidal's side of the pyarrow comparison ends in a batched consumer: it is checked like the others."""
    args = ["--events", "20000", "--max-batch-size", "4000", "--repeats", "1", "--workloads", "pyarrow"]
    _lose_the_first_row(monkeypatch)
    assert microbatch_bench.main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: microbatch_bench pyarrow span 10000: ")
    assert "expected" in captured.err


@pytest.mark.usefixtures("ray_session")
def test_the_ray_word_count_checks_every_run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    args = ["--elements", "2000", "--repeats", "1", "--parallelism", "2"]
    assert ray_wordcount.main(args) == 0
    assert "ray p=2" in capsys.readouterr().out
    _lose_the_first_element(monkeypatch)
    assert ray_wordcount.main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ray_wordcount")


def test_the_checkpoint_benchmark_refuses_a_stream_that_differs() -> None:
    expected = ray_checkpoint.expected_stream(2000)
    assert sum(expected.values()) == 100 and expected["k7,1,"+str(sum(v for v in range(1000, 2000) if v % 50 == 7))] == 1
    ray_checkpoint._check_stream("stream", expected.copy(), expected)
    repeated = expected.copy()
    repeated["k7,0,9640"] += 1
    with pytest.raises(BenchmarkMismatch, match=r"published 101 lines, expected 100 \(missing \[\], unexpected or repeated \['k7,0,9640'\]\)"):
        ray_checkpoint._check_stream("stream", repeated, expected)


def test_the_bare_pyarrow_side_is_checked_too() -> None:
    batches = microbatch_bench.make_arrow_events(5000, keys=20, span_s=300, batch_rows=2000)
    expected = microbatch_bench.expected_window_sums(batches, "bare")
    for to_python in (False, True):
        microbatch_bench.check_bare(microbatch_bench.bare_pyarrow_sums(batches, to_python), expected)
    table = microbatch_bench.bare_pyarrow_sums(batches, False)
    with pytest.raises(BenchmarkMismatch, match=r"^bare: bare pyarrow gave \d+ groups"):
        microbatch_bench.check_bare(table.slice(1), expected)
    pairs = microbatch_bench.bare_pyarrow_sums(batches, True)
    with pytest.raises(BenchmarkMismatch, match=r"^bare: bare pyarrow gave \d+ groups"):
        microbatch_bench.check_bare([((k + 1, v), w) for (k, v), w in pairs], expected)


def test_the_sizes_of_the_linear_benchmark_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Round after round every size runs (a small one several times), the loop beside the runner."""
    order: list[tuple[str, int]] = []
    timed_loop, timed_run = floor._timed_loop, floor._timed_run

    def loop(w: Any, data: Any) -> Any:
        order.append(("loop", len(data)))
        return timed_loop(w, data)

    def run(w: Any, data: Any, runner: Any, check: Any) -> Any:
        order.append(("run", len(data)))
        return timed_run(w, data, runner, check)

    monkeypatch.setattr(floor, "_timed_loop", loop)
    monkeypatch.setattr(floor, "_timed_run", run)
    monkeypatch.setattr(linear, "runs_per_round", lambda n: 2 if n < 3000 else 1)
    rows = linear._throughput(floor.WORKLOADS["fixed"], [2000, 4000], 2, "direct", "scaled")
    expected_outputs = [("loop", 2000), ("loop", 4000)]
    one_round = [("loop", 2000), ("run", 2000)] * 2 + [("loop", 4000), ("run", 4000)]
    assert order == expected_outputs + one_round * 2
    assert [(r["elements"], len(r["times_s"])) for r in rows] == [(2000, 4), (4000, 2)]
