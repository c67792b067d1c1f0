"""Text files in and out: exact output, the transactional sink contract, and its executor hooks."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Iterable

import cloudpickle
import pytest

import tidal as td
from tidal.runners.core.executor import FINAL_CHECKPOINT, LocalExecutor
from tidal.runners.core.operators import ParDoOperator
from tidal.runners.core.plan import build_plan
from tidal.runners.core.sources import to_windowed
from tidal.runners.direct import DirectRunner
from tidal.testing import assert_that, equal_to
from tidal.io.textio import STAGING_DIR, ReadFromText, TextSinkFn, TextSource, WriteToText, read_text


def published(folder: Path) -> list[str]:
    """The visible files of ``folder`` (staging is hidden), by name."""
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and (folder / n).is_file())


def staged(folder: Path) -> list[str]:
    staging = folder / STAGING_DIR
    return sorted(os.listdir(staging)) if staging.is_dir() else []


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


STAGED = re.compile(r"^(?P<base>.+)-(?P<token>[0-9a-f]{12})-(?P<seq>\d{5})-(?P<shard>\d{5})(?P<suffix>.*)\.inprogress$")


# -- WriteToText on the direct runner ---------------------------------------------------
def test_write_to_text_writes_one_line_per_element(tmp_path: Path) -> None:
    with td.Pipeline(runner="direct") as p:
        _ = p | td.Create(["alpha", "beta", "gamma"]) | WriteToText(str(tmp_path / "out"))
    [name] = published(tmp_path)
    assert name == "out-00000-of-00001"  # Beam's shard name
    assert lines_of(tmp_path / name) == ["alpha", "beta", "gamma"]
    assert (tmp_path / name).read_bytes() == b"alpha\nbeta\ngamma\n"
    assert staged(tmp_path) == []  # a successful run leaves nothing staged
    assert os.listdir(tmp_path) == ["out-00000-of-00001"]  # not even the (hidden) staging folder


def test_write_to_text_with_a_suffix_and_a_formatter(tmp_path: Path) -> None:
    with td.Pipeline(runner="direct") as p:
        _ = (
            p
            | td.Create([("a", 1), ("b", 2), ("c", 3)])
            | WriteToText(str(tmp_path / "pairs"), file_name_suffix=".csv", formatter=lambda kv: f"{kv[0]},{kv[1]}")
        )
    [name] = published(tmp_path)
    assert name == "pairs-00000-of-00001.csv"
    assert lines_of(tmp_path / name) == ["a,1", "b,2", "c,3"]
    assert read_text(str(tmp_path / "*.csv")) == ["a,1", "b,2", "c,3"]


def test_write_to_text_formats_with_str_by_default(tmp_path: Path) -> None:
    with td.Pipeline(runner="direct") as p:
        _ = p | td.Create([1, 2.5, None, ("k", 1)]) | WriteToText(str(tmp_path / "out"))
    assert read_text(str(tmp_path / "out-*")) == ["1", "2.5", "None", "('k', 1)"]


def test_line_breaks_inside_an_element_are_escaped(tmp_path: Path) -> None:
    with td.Pipeline(runner="direct") as p:
        _ = p | td.Create(["one\ntwo", "cr\rhere", "crlf\r\nend", "plain"]) | WriteToText(str(tmp_path / "out"))
    [name] = published(tmp_path)
    assert (tmp_path / name).read_bytes() == b"one\\ntwo\ncr\\rhere\ncrlf\\r\\nend\nplain\n"
    # Each element is exactly one line when read back.
    assert read_text(str(tmp_path / "out-*")) == ["one\\ntwo", "cr\\rhere", "crlf\\r\\nend", "plain"]


def test_many_bundles_still_make_one_file_per_run(tmp_path: Path) -> None:
    p = td.Pipeline(runner=DirectRunner(bundle_size=1))
    _ = p | td.Create([str(i) for i in range(20)]) | WriteToText(str(tmp_path / "out"))
    p.run()
    [name] = published(tmp_path)
    assert lines_of(tmp_path / name) == [str(i) for i in range(20)]
    assert staged(tmp_path) == []


def test_an_empty_input_publishes_one_empty_shard_unless_skip_if_empty(tmp_path: Path) -> None:
    # As Beam: an empty PCollection still gives its shard (with the header), unless skip_if_empty.
    with td.Pipeline(runner="direct") as p:
        _ = p | td.Create([]) | WriteToText(str(tmp_path / "out"), header="h")
    assert published(tmp_path) == ["out-00000-of-00001"]
    assert (tmp_path / "out-00000-of-00001").read_bytes() == b"h\n"
    assert staged(tmp_path) == []
    with td.Pipeline(runner="direct") as p:
        _ = p | td.Create([]) | WriteToText(str(tmp_path / "out"), skip_if_empty=True)
    assert published(tmp_path) == []  # and the rerun replaced the earlier run's output
    assert staged(tmp_path) == []


def test_two_sinks_in_one_folder_keep_their_own_files(tmp_path: Path) -> None:
    with td.Pipeline(runner="direct") as p:
        nums = p | td.Create([1, 2, 3])
        _ = nums | "Evens" >> td.Filter(lambda x: x % 2 == 0) | "WriteEvens" >> WriteToText(str(tmp_path / "even"))
        _ = nums | "Odds" >> td.Filter(lambda x: x % 2 == 1) | "WriteOdds" >> WriteToText(str(tmp_path / "odd"))
    names = published(tmp_path)
    assert [n.split("-")[0] for n in names] == ["even", "odd"]
    assert read_text(str(tmp_path / "even-*")) == ["2"]
    assert read_text(str(tmp_path / "odd-*")) == ["1", "3"]
    assert staged(tmp_path) == []


def test_write_to_text_returns_an_empty_pcollection(tmp_path: Path) -> None:
    with td.Pipeline(runner="direct") as p:
        out = p | td.Create(["a"]) | WriteToText(str(tmp_path / "out"))
        assert_that(out, equal_to([]))


def test_write_to_text_labels_and_prefix_checks(tmp_path: Path) -> None:
    assert WriteToText(str(tmp_path / "words")).default_label() == "WriteToText(words)"
    assert ReadFromText(str(tmp_path / "*.txt"), validate=False).default_label() == "ReadFromText(*.txt)"
    with pytest.raises(ValueError, match=r"^a file sink needs a file_path_prefix \(such as 'out/part'\), got ''$"):
        WriteToText("")
    with pytest.raises(ValueError, match=r"names a folder: add the start of the file names"):
        WriteToText(str(tmp_path) + "/")


def test_a_relative_prefix_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fn = TextSinkFn("out")
    assert fn.prefix == str(tmp_path / "out")
    assert fn.staging_folder == str(tmp_path / STAGING_DIR)


def test_a_formatter_error_names_the_sink_step(tmp_path: Path) -> None:
    p = td.Pipeline(runner="direct")
    _ = p | td.Create([1]) | "Sink" >> WriteToText(str(tmp_path / "out"), formatter=lambda x: str(1 // (x - 1)))
    with pytest.raises(td.UserCodeError) as info:
        p.run()
    assert info.value.step == "Sink/Write"
    assert str(info.value).startswith("step 'Sink/Write': ")
    assert "ZeroDivisionError" in str(info.value)
    assert published(tmp_path) == []


# -- ReadFromText, TextSource, read_text ----------------------------------------------------
def test_write_then_read_round_trip(tmp_path: Path) -> None:
    words = [f"word {i}" for i in range(50)]
    with td.Pipeline(runner="direct") as p:
        _ = p | td.Create(words) | WriteToText(str(tmp_path / "out"), file_name_suffix=".txt")
    (tmp_path / STAGING_DIR).mkdir()  # (a successful run removed it)
    (tmp_path / STAGING_DIR / "out-leftover-00000.txt").write_text("never published\n")  # hidden: not read
    with td.Pipeline(runner="direct") as p:
        lines = p | ReadFromText(str(tmp_path / "*"))
        assert_that(lines, equal_to(words))


def _write_files(folder: Path, count: int, per_file: int) -> list[str]:
    everything = []
    for f in range(count):
        lines = [f"f{f}-l{i}" for i in range(per_file)]
        (folder / f"part-{f}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        everything += lines
    return everything


def test_text_source_splits_by_files_and_byte_ranges_and_the_union_is_the_whole(tmp_path: Path) -> None:
    everything = _write_files(tmp_path, 5, 3)
    source = TextSource(str(tmp_path / "part-*.txt"))
    assert list(source.read()) == everything  # file-name order, then line order
    assert [os.path.basename(m.path) for m in source.files] == [f"part-{i}.txt" for i in range(5)]

    splits = source.split(3)
    assert len(splits) == 3
    parts = [list(s.read()) for s in splits]
    assert [line for part in parts for line in part] == everything  # in order, no line twice or missed
    assert all(parts)

    many = source.split(10)  # more splits than files: files are cut in byte ranges
    assert len(many) == 10
    assert [line for s in many for line in s.read()] == everything
    assert [list(s.read()) for s in source.split(1)] == [everything]
    assert source.display_name() == f"TextSource({tmp_path / 'part-*.txt'})"


def test_a_split_of_a_split_keeps_its_ranges(tmp_path: Path) -> None:
    everything = _write_files(tmp_path, 4, 2)
    [first, second] = TextSource(str(tmp_path / "*.txt")).split(2)
    assert list(first.read()) == everything[:4]
    assert list(second.read()) == everything[4:]
    assert [line for s in first.split(3) for line in s.read()] == everything[:4]


def test_a_pattern_matching_nothing_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(td.io.BeamIOError, match=r"^ReadFromText: no file matches the pattern '.*none-\*' \(pass validate=False"):
        ReadFromText(str(tmp_path / "none-*"))
    with pytest.raises(td.io.BeamIOError, match=r"^ReadFromText: no file matches the path '.*missing\.txt'"):
        ReadFromText(str(tmp_path / "missing.txt"))
    source = TextSource(str(tmp_path / "none-*"), validate=False)
    [only] = source.split(4)
    assert list(only.read()) == []
    assert read_text(str(tmp_path / "none-*")) == []


def test_read_from_text_reads_several_files_on_the_direct_runner(tmp_path: Path) -> None:
    everything = _write_files(tmp_path, 4, 25)
    with td.Pipeline(runner="direct") as p:
        lines = p | ReadFromText(str(tmp_path / "part-*.txt"))
        assert_that(lines, equal_to(everything))


def test_read_text_strips_line_ends_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"one\r\n  two  \n\nlast without newline")
    (tmp_path / "b.txt").write_bytes("caf\u00e9\n".encode())
    assert td.io.read_text(str(tmp_path / "*.txt")) == ["one", "  two  ", "", "last without newline", "caf\u00e9"]


# -- the sink contract, on TextSinkFn directly ---------------------------------------------
@pytest.fixture
def sink(tmp_path: Path) -> Iterable[TextSinkFn]:
    fn = TextSinkFn(str(tmp_path / "out"), ".txt")
    fn.setup()
    yield fn
    fn.teardown()


def write(fn: TextSinkFn, *elements: Any) -> None:
    fn.start_bundle()
    for e in elements:
        assert fn.process(e) is None  # a sink outputs nothing
    fn.finish_bundle()


def test_prepare_commit_stages_and_commit_publishes(tmp_path: Path, sink: TextSinkFn) -> None:
    write(sink, "a", "b")
    handle = sink.prepare_commit(1)
    [(staged_path, final_path)] = handle
    assert os.path.dirname(staged_path) == str(tmp_path / STAGING_DIR)
    assert os.path.dirname(final_path) == str(tmp_path)
    m = STAGED.match(os.path.basename(staged_path))
    assert m is not None and (m["base"], m["seq"], m["shard"], m["suffix"]) == ("out", "00000", "00000", ".txt")
    assert os.path.basename(final_path) == "out-000001-00000-of-00001.txt"  # checkpoint 1, shard 0 of 1
    assert published(tmp_path) == []  # staged, not visible
    assert lines_of(Path(staged_path)) == ["a", "b"]
    assert pickle.loads(pickle.dumps(handle)) == handle  # it goes into a checkpoint

    sink.commit(handle)
    assert published(tmp_path) == [os.path.basename(final_path)]
    assert lines_of(Path(final_path)) == ["a", "b"]
    assert staged(tmp_path) == []


def test_commit_is_idempotent(tmp_path: Path, sink: TextSinkFn) -> None:
    write(sink, "x")
    handle = sink.prepare_commit(1)
    sink.commit(handle)
    before = {n: (tmp_path / n).read_bytes() for n in published(tmp_path)}
    sink.commit(handle)  # a restore commits the same handle again
    sink.commit(handle)
    assert {n: (tmp_path / n).read_bytes() for n in published(tmp_path)} == before


def test_each_checkpoint_interval_gets_its_own_file(tmp_path: Path, sink: TextSinkFn) -> None:
    write(sink, "1", "2")
    h1 = sink.prepare_commit(1)
    write(sink, "3")
    h2 = sink.prepare_commit(2)
    assert sink.prepare_commit(3) == []  # nothing written since the last barrier
    assert [os.path.basename(staged_path) for [(staged_path, _)] in (h1, h2)] == [
        f"out-{sink._token}-00000-00000.txt.inprogress",
        f"out-{sink._token}-00001-00000.txt.inprogress",
    ]
    sink.commit(h2)
    assert published(tmp_path) == ["out-000002-00000-of-00001.txt"]
    sink.commit(h1)
    assert published(tmp_path) == ["out-000001-00000-of-00001.txt", "out-000002-00000-of-00001.txt"]
    assert read_text(str(tmp_path / "out-*.txt")) == ["1", "2", "3"]
    sink.commit([])  # an empty handle publishes nothing and does not fail


def test_a_staged_file_removed_before_commit_is_a_clear_error(tmp_path: Path, sink: TextSinkFn) -> None:
    write(sink, "lost")
    handle = sink.prepare_commit(1)
    [(staged_path, final_path)] = handle
    os.remove(staged_path)
    with pytest.raises(FileNotFoundError) as info:
        sink.commit(handle)
    assert str(info.value) == (
        f"the staged output {staged_path} of a complete checkpoint is gone and was never "
        f"published to {final_path}: the staging folder was changed while a job used it"
    )
    assert published(tmp_path) == []


def test_output_after_the_last_prepare_commit_is_abandoned_by_teardown(tmp_path: Path, sink: TextSinkFn) -> None:
    write(sink, "checkpointed")
    handle = sink.prepare_commit(1)
    write(sink, "after the barrier")
    sink.teardown()  # the attempt fails here
    assert sink.prepare_commit(2) == []  # a torn-down sink has nothing left to stage
    sink.commit(handle)  # the recovered job commits the checkpoint it restored
    assert read_text(str(tmp_path / "*")) == ["checkpointed"]
    [leftover] = staged(tmp_path)  # the abandoned file stays staged, never published
    assert lines_of(tmp_path / STAGING_DIR / leftover) == ["after the barrier"]


def test_abort_after_withdraws_what_later_checkpoints_published(tmp_path: Path, sink: TextSinkFn) -> None:
    for cid in (1, 2, 3):
        write(sink, f"checkpoint {cid}")
        sink.commit(sink.prepare_commit(cid))
    write(sink, "end of input")
    sink.commit(sink.prepare_commit(FINAL_CHECKPOINT))
    names = [f"out-00000{c}-00000-of-00001.txt" for c in (1, 2, 3)]
    assert published(tmp_path) == ["out-00000-of-00001.txt", *names]  # the final output has no checkpoint
    other_writer = "out-000003-00001-of-00002.txt"  # another instance of the same sink
    unrelated = ["out-000003-notashard.txt", "out-000003-00000-of-00001.csv", "other-000003-00000-of-00001.txt", "out-notes.txt"]
    for name in [other_writer, *unrelated]:
        (tmp_path / name).write_text("keep?\n")

    sink.abort_after(1)  # the job went back to checkpoint 1
    assert published(tmp_path) == sorted([names[0], *unrelated])
    assert read_text(str(tmp_path / "out-0*.txt")) == ["checkpoint 1", "keep?"]
    sink.abort_after(1)  # idempotent
    assert published(tmp_path) == sorted([names[0], *unrelated])
    sink.abort_after(0)
    assert published(tmp_path) == sorted(unrelated)


def test_abort_after_with_no_output_folder_does_nothing(tmp_path: Path) -> None:
    fn = TextSinkFn(str(tmp_path / "never-created" / "out"))
    fn.abort_after(1)
    assert not (tmp_path / "never-created").exists()


def test_every_copy_of_a_sink_writes_its_own_shard(tmp_path: Path) -> None:
    original = TextSinkFn(str(tmp_path / "out"))
    copies = [pickle.loads(cloudpickle.dumps(original)) for _ in range(2)]
    handles = []
    for i, fn in enumerate(copies):
        fn.set_writer(i, 2)  # what a runner with two parallel instances of the step calls
        fn.setup()
        write(fn, f"from copy {i}")
        handles.append(fn.prepare_commit(1))
        fn.teardown()
    for handle in handles:
        copies[0].commit(handle)
    assert published(tmp_path) == ["out-000001-00000-of-00002", "out-000001-00001-of-00002"]
    assert read_text(str(tmp_path / "out-*")) == ["from copy 0", "from copy 1"]


def test_a_sink_writes_without_an_explicit_setup(tmp_path: Path) -> None:
    fn = TextSinkFn(str(tmp_path / "out"))
    assert fn.process("x") is None
    fn.commit(fn.prepare_commit(1))
    assert read_text(str(tmp_path / "out-*")) == ["x"]


# -- executor hooks ------------------------------------------------------------------------
def sink_pipeline(prefix: Path, values: list[Any], extra_step: bool = False, source_label: str = "Create") -> td.Pipeline:
    p = td.Pipeline(runner="direct")
    pcoll = p | source_label >> td.Create(values)
    if extra_step:
        pcoll = pcoll | "Upper" >> td.Map(str.upper)
    _ = pcoll | "Sink" >> WriteToText(str(prefix))
    return p


def sink_op(ex: LocalExecutor) -> ParDoOperator:
    [op] = [op for op in ex.ops if isinstance(op, ParDoOperator) and op.is_transactional]
    return op


def test_only_sinks_with_both_methods_are_transactional(tmp_path: Path) -> None:
    p = sink_pipeline(tmp_path / "out", ["a"], extra_step=True)
    ex = LocalExecutor(build_plan(p.graph()))
    assert [(op.label, op.is_transactional) for op in ex.ops if isinstance(op, ParDoOperator)] == [
        ("Upper", False),
        ("Sink/Write", True),
    ]


def test_a_run_without_commit_on_close_publishes_nothing(tmp_path: Path) -> None:
    p = sink_pipeline(tmp_path / "out", ["a", "b"])
    ex = LocalExecutor(build_plan(p.graph()), commit_on_close=False)
    ex.run()
    assert published(tmp_path) == []
    [leftover] = staged(tmp_path)  # written, then abandoned when the sink was torn down
    assert lines_of(tmp_path / STAGING_DIR / leftover) == ["a", "b"]
    assert sink_op(ex).uncommitted == {}
    ex.commit_final()  # the sink is closed: what it wrote belongs to no checkpoint
    assert published(tmp_path) == []


def test_a_run_with_commit_on_close_publishes_at_the_end(tmp_path: Path) -> None:
    p = sink_pipeline(tmp_path / "out", ["a", "b"])
    ex = LocalExecutor(build_plan(p.graph()))
    assert ex.commit_on_close is True
    ex.run()
    assert read_text(str(tmp_path / "out-*")) == ["a", "b"]
    assert staged(tmp_path) == []
    assert sink_op(ex).uncommitted == {}


def test_commit_final_stages_and_publishes_an_open_sink(tmp_path: Path) -> None:
    p = sink_pipeline(tmp_path / "out", [])
    ex = LocalExecutor(build_plan(p.graph()), commit_on_close=False)
    for op in ex.ops:
        op.open()
    sink = sink_op(ex)
    sink.process(to_windowed(["a", "b"]))
    assert published(tmp_path) == []
    ex.commit_final()
    assert read_text(str(tmp_path / "out-*")) == ["a", "b"]
    assert sink.uncommitted == {}
    assert staged(tmp_path) == []
    for op in ex.ops:
        op.close()


def test_snapshot_stages_and_restore_publishes_what_it_staged(tmp_path: Path) -> None:
    p = sink_pipeline(tmp_path / "out", [])
    plan = build_plan(p.graph())
    first = LocalExecutor(plan, commit_on_close=False)
    for op in first.ops:
        op.open()
    sink = sink_op(first)
    sink.process(to_windowed(["x", "y"]))
    snap = first.snapshot(checkpoint_id=1)
    [(label, _base, _state, uncommitted)] = snap["ops"]
    assert label == "Sink/Write"
    [(staged_path, final_path)] = uncommitted[1]
    assert list(uncommitted) == [1]
    assert sink.uncommitted == {1: [(staged_path, final_path)]}
    assert os.path.basename(final_path) == "out-000001-00000-of-00001"
    assert published(tmp_path) == []  # staged until the checkpoint completes
    data = cloudpickle.dumps(snap)  # a snapshot is stored as a checkpoint part

    sink.process(to_windowed(["z"]))  # after the barrier: belongs to no checkpoint
    for op in first.ops:
        op.close()  # the attempt fails

    second = LocalExecutor(plan, commit_on_close=False)
    second.restore(pickle.loads(data))
    assert published(tmp_path) == [os.path.basename(final_path)]
    assert read_text(str(tmp_path / "out-*")) == ["x", "y"]
    assert sink_op(second).uncommitted == {}

    third = LocalExecutor(plan, commit_on_close=False)
    third.restore(pickle.loads(data))  # restoring the same checkpoint again publishes nothing twice
    assert read_text(str(tmp_path / "out-*")) == ["x", "y"]
    assert [lines_of(tmp_path / STAGING_DIR / n) for n in staged(tmp_path)] == [["z"]]


def test_restore_without_commit_keeps_the_handles_until_commit(tmp_path: Path) -> None:
    p = sink_pipeline(tmp_path / "out", [])
    plan = build_plan(p.graph())
    first = LocalExecutor(plan, commit_on_close=False)
    for op in first.ops:
        op.open()
    sink = sink_op(first)
    sink.process(to_windowed(["one"]))
    first.snapshot(checkpoint_id=1)
    sink.process(to_windowed(["two"]))
    snap = first.snapshot(checkpoint_id=2)
    assert sorted(sink.uncommitted) == [1, 2]
    for op in first.ops:
        op.close()

    second = LocalExecutor(plan, commit_on_close=False)
    second.restore(snap, commit=False)
    restored = sink_op(second)
    assert sorted(restored.uncommitted) == [1, 2]
    assert published(tmp_path) == []
    second.commit(0)
    assert published(tmp_path) == []
    second.commit(1)  # checkpoint 1 is complete, 2 is not yet
    assert read_text(str(tmp_path / "out-*")) == ["one"]
    assert sorted(restored.uncommitted) == [2]
    second.commit(FINAL_CHECKPOINT)
    assert read_text(str(tmp_path / "out-*")) == ["one", "two"]
    assert restored.uncommitted == {}
    assert staged(tmp_path) == []


def test_executor_abort_after_reaches_every_sink(tmp_path: Path) -> None:
    p = sink_pipeline(tmp_path / "out", [], extra_step=True)
    ex = LocalExecutor(build_plan(p.graph()), commit_on_close=False)
    for op in ex.ops:
        op.open()
    sink = sink_op(ex)
    for cid in (1, 2):
        sink.process(to_windowed([f"c{cid}"]))
        ex.snapshot(checkpoint_id=cid)
        ex.commit(cid)
    assert read_text(str(tmp_path / "out-*")) == ["c1", "c2"]
    ex.abort_after(1)  # the map step has no abort_after and is left alone
    assert read_text(str(tmp_path / "out-*")) == ["c1"]
    for op in ex.ops:
        op.close()


def test_restore_of_another_pipelines_snapshot_is_refused(tmp_path: Path) -> None:
    snap = LocalExecutor(build_plan(sink_pipeline(tmp_path / "out", ["a"]).graph())).snapshot()
    other = LocalExecutor(build_plan(sink_pipeline(tmp_path / "out", ["a"], extra_step=True).graph()))
    with pytest.raises(td.PipelineExecutionError) as info:
        other.restore(snap)
    assert str(info.value) == (
        "step 'checkpoint': the checkpoint was written by a different pipeline (its steps are "
        "['Sink/Write'], this pipeline's are ['Upper', 'Sink/Write'])"
    )


def test_restore_of_a_snapshot_with_other_sources_is_refused(tmp_path: Path) -> None:
    snap = LocalExecutor(build_plan(sink_pipeline(tmp_path / "out", ["a"], source_label="Numbers").graph())).snapshot()
    other = LocalExecutor(build_plan(sink_pipeline(tmp_path / "out", ["a"], source_label="Letters").graph()))
    with pytest.raises(td.PipelineExecutionError, match=r"^step 'checkpoint': the checkpoint was written by a pipeline with other sources \("):
        other.restore(snap)


# -- user errors in a sink's commit hooks ------------------------------------------------------
class FailingSink(td.DoFn):
    """A transactional sink whose prepare_commit, commit or abort_after raises."""

    def __init__(self, fail_in: str) -> None:
        self.fail_in = fail_in

    def process(self, element: Any) -> Iterable[Any]:
        return ()

    def prepare_commit(self, checkpoint_id: int) -> str:
        if self.fail_in == "prepare_commit":
            raise OSError("cannot flush")
        return "handle"

    def commit(self, handle: str) -> None:
        if self.fail_in == "commit":
            raise RuntimeError(f"remote store refused {handle}")

    def abort_after(self, checkpoint_id: int) -> None:
        if self.fail_in == "abort_after":
            raise PermissionError(f"cannot withdraw after {checkpoint_id}")


@pytest.mark.parametrize(
    ("fail_in", "message"),
    [
        ("prepare_commit", "step 'BadSink': prepare_commit raised OSError: cannot flush"),
        ("commit", "step 'BadSink': commit raised RuntimeError: remote store refused handle"),
    ],
)
def test_an_error_in_a_sink_hook_names_the_step(fail_in: str, message: str) -> None:
    p = td.Pipeline(runner="direct")
    _ = p | td.Create([1, 2]) | "BadSink" >> td.ParDo(FailingSink(fail_in))
    with pytest.raises(td.UserCodeError) as info:
        p.run()
    err = info.value
    assert str(err) == message
    assert err.step == "BadSink"
    assert err.fn_name == fail_in
    assert type(err.__cause__) is (OSError if fail_in == "prepare_commit" else RuntimeError)


def test_an_error_in_commit_during_restore_names_the_step(tmp_path: Path) -> None:
    p = td.Pipeline(runner="direct")
    _ = p | td.Create([1]) | "BadSink" >> td.ParDo(FailingSink("commit"))
    plan = build_plan(p.graph())
    first = LocalExecutor(plan, commit_on_close=False)
    snap = first.snapshot(checkpoint_id=1)
    with pytest.raises(td.UserCodeError, match=r"^step 'BadSink': commit raised RuntimeError: remote store refused handle$"):
        LocalExecutor(plan, commit_on_close=False).restore(snap)


def test_an_error_in_abort_after_names_the_step() -> None:
    p = td.Pipeline(runner="direct")
    _ = p | td.Create([1]) | "BadSink" >> td.ParDo(FailingSink("abort_after"))
    ex = LocalExecutor(build_plan(p.graph()), commit_on_close=False)
    with pytest.raises(td.UserCodeError) as info:
        ex.abort_after(3)
    assert str(info.value) == "step 'BadSink': abort_after raised PermissionError: cannot withdraw after 3"
    assert isinstance(info.value.__cause__, PermissionError)


def test_a_writer_that_starts_late_keeps_what_its_run_already_published(tmp_path: Path) -> None:
    # Two parallel writers of one run (copies of one sink): the first publishes before the second
    # writes anything; the second replaces an earlier run's file but keeps its own run's.
    (tmp_path / "out-00000-of-00003").write_text("from an earlier run\n")
    os.utime(tmp_path / "out-00000-of-00003", (1, 1))
    original = TextSinkFn(str(tmp_path / "out"))
    first, second = (pickle.loads(cloudpickle.dumps(original)) for _ in range(2))
    first.set_writer(0, 2)
    second.set_writer(1, 2)
    for fn in (first, second):
        fn.setup()
    write(first, "a")
    first.commit(first.prepare_commit(FINAL_CHECKPOINT))
    assert published(tmp_path) == ["out-00000-of-00002"]  # the earlier run's file is gone
    write(second, "b")
    second.commit(second.prepare_commit(FINAL_CHECKPOINT))
    assert published(tmp_path) == ["out-00000-of-00002", "out-00001-of-00002"]
    assert read_text(str(tmp_path / "out-*")) == ["a", "b"]
