"""The command line: ``python -m tidal run`` and ``graph``, their help and their errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tidal.__main__ import main

WORDS = """\
import sys
import tidal as td
from tidal.runners.registry import default_runner_name

print("args", sys.argv[1:])
print("default runner", default_runner_name())
with td.Pipeline() as p:
    counts = p | "Read" >> td.Create(["a b", "b"]) | "Split" >> td.FlatMap(str.split) | "Count" >> td.combiners.Count.PerElement()
    counts | "Print" >> td.Map(lambda kv: print("count", kv))
"""


def script(tmp_path: Path, text: str, name: str = "job.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_help_lists_the_subcommands() -> None:
    proc = subprocess.run([sys.executable, "-m", "tidal", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "usage: python -m tidal" in proc.stdout
    for command in ("run", "graph"):
        assert f"    {command} " in proc.stdout
    assert "examples:" in proc.stdout


@pytest.mark.parametrize("command, mentions", [("run", "--runner"), ("graph", "--format {dot,mermaid}")])
def test_subcommand_help(command: str, mentions: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert mentions in out
    assert f"python -m tidal {command} examples/" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_run_uses_the_chosen_runner_and_passes_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(tmp_path, WORDS)
    assert main(["run", path, "--runner", "direct", "--input", "x.txt", "--", "--runner", "theirs"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "args ['--input', 'x.txt', '--runner', 'theirs']"
    assert lines[1] == "default runner direct"
    assert sorted(lines[2:]) == ["count ('a', 1)", "count ('b', 2)"]
    assert "tidal run: 1 pipeline ran on direct in " in captured.err


def test_run_resets_the_default_runner_and_argv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tidal.runners.registry import resolve_runner

    argv = sys.argv[:]
    assert main(["run", script(tmp_path, WORDS), "--runner", "DirectRunner", "--quiet"]) == 0
    assert sys.argv == argv
    assert type(resolve_runner(None)).__name__ == "DirectRunner"
    assert capsys.readouterr().err == ""


def test_run_as_a_subprocess(tmp_path: Path) -> None:
    path = script(tmp_path, WORDS)
    proc = subprocess.run(
        [sys.executable, "-m", "tidal", "run", path, "--runner", "direct"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "count ('b', 2)" in proc.stdout.splitlines()


def test_run_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.py")
    assert main(["run", missing]) == 2
    assert capsys.readouterr().err == f"tidal run: error: no such file: {missing}\n"


def test_run_unknown_runner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", script(tmp_path, WORDS), "--runner", "nope"]) == 2
    assert "tidal run: error: unknown runner 'nope'; registered runners: direct" in capsys.readouterr().err


def test_run_script_without_a_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(tmp_path, "print('hello')\n")
    assert main(["run", path]) == 2
    captured = capsys.readouterr()
    assert captured.out == "hello\n"
    assert captured.err.startswith(f"tidal run: error: {path} ran no pipeline")


def test_run_script_that_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(tmp_path, "raise RuntimeError('broken script')\n")
    assert main(["run", path]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: broken script" in err
    assert "runpy" not in err


def test_run_script_exit_code_is_kept(tmp_path: Path) -> None:
    assert main(["run", script(tmp_path, "import sys\nsys.exit(3)\n")]) == 3
    assert main(["run", script(tmp_path, "import sys\nsys.exit(0)\n", name="ok.py")]) == 0


def test_graph_prints_dot_and_sends_script_output_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(tmp_path, WORDS)
    assert main(["graph", path]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith('digraph "pipeline" {\n')
    assert '  subgraph "cluster_1" {\n    label="Count";\n' in captured.out
    assert '  "n1" -> "n2" [label="Split"];\n' in captured.out
    assert "count (" not in captured.out + captured.err  # recorded, not run
    assert "args []" in captured.err


def test_graph_never_runs_a_pipeline_even_with_an_explicit_runner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(
        tmp_path,
        """\
        import tidal as td
        from tidal.runners.direct import DirectRunner
        with td.Pipeline(runner="direct") as p:
            p | "One" >> td.Create([1]) | "Boom" >> td.Map(lambda x: 1 / 0)
        result = td.Pipeline(runner=DirectRunner(strict=False))
        result | "Two" >> td.Create([2])
        r = result.run()
        assert r.state == td.PipelineState.DONE and r.metrics().query()["counters"] == []
        """,
    )
    assert main(["graph", path, "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("%% pipeline 1 of 2\nflowchart TD\n")
    assert '  n0 -->|"One/Read(Create)"| n1\n' in out
    assert "%% pipeline 2 of 2\nflowchart TD\n" in out
    assert 'n0["Two/Read(Create)"]' in out


def test_graph_writes_a_file_with_the_format_from_its_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "words.mmd"
    assert main(["graph", script(tmp_path, WORDS), "--out", str(out)]) == 0
    assert out.read_text().startswith("flowchart TD\n")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"tidal graph: wrote 1 pipeline (mermaid) to {out}" in captured.err


def test_graph_missing_file_and_no_pipeline(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tidal", "graph", str(tmp_path / "nope.py")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr == f"tidal graph: error: no such file: {tmp_path / 'nope.py'}\n"
    proc = subprocess.run(
        [sys.executable, "-m", "tidal", "graph", script(tmp_path, "x = 1\n")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "ran no pipeline" in proc.stderr
    assert proc.stdout == ""


# -- checkpoints: --checkpoint-dir and --resume ---------------------------------------
CRASHING_ONCE = """\
import os, sys, time
import tidal as td

marker, out = sys.argv[1], sys.argv[2]

def events():
    for v in range(400):
        if v % 40 == 0:
            time.sleep(0.25)
        yield td.TimestampedValue((f"k{v % 2}", v), v / 10)

def crash(kv):  # at 2.25 s: after the first checkpoint (one second in, by default)
    if kv[1] == 360 and os.path.exists(marker):
        os.remove(marker)
        raise RuntimeError("crash on purpose")
    return kv

with td.Pipeline() as p:
    (p | td.Read(td.GeneratorSource(events)) | td.Map(crash) | td.WindowInto(td.window.FixedWindows(10))
       | td.CombinePerKey(sum) | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
       | td.WriteToText(out))
"""


def test_resume_needs_a_checkpoint_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", script(tmp_path, WORDS), "--resume"]) == 2
    assert "tidal run: error: --resume needs --checkpoint-dir" in capsys.readouterr().err


def test_a_folder_with_checkpoints_needs_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ck" / "chk-000001").mkdir(parents=True)
    assert main(["run", script(tmp_path, WORDS), "--runner", "microbatch", "--checkpoint-dir", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err
    assert f"tidal run: error: {tmp_path / 'ck'} holds checkpoints of an earlier run: pass --resume" in err


def test_checkpoints_need_a_runner_that_takes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", script(tmp_path, WORDS), "--runner", "direct", "--checkpoint-dir", str(tmp_path / "ck")]) == 2
    assert "the direct runner takes no checkpoints; --checkpoint-dir needs a runner that does" in capsys.readouterr().err


def _unusable_folder(tmp_path: Path, kind: str) -> str:
    if kind == "under a file":
        (tmp_path / "a-file").write_text("")
        return str(tmp_path / "a-file" / "ck")
    if not os.path.isdir("/sys/fs") or os.access("/sys", os.W_OK) and os.geteuid() != 0:
        pytest.skip("needs /sys, a read-only file system")
    return "/sys/tidal-checkpoints"  # sysfs: nothing can be created there, not even by root


@pytest.mark.parametrize("runner", ["ray", "microbatch"])
@pytest.mark.parametrize("kind", ["under a file", "read-only"])
def test_a_checkpoint_folder_that_cannot_be_created_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], runner: str, kind: str
) -> None:
    folder = _unusable_folder(tmp_path, kind)
    ran = tmp_path / "script-ran"
    path = script(tmp_path, f"open({str(ran)!r}, 'w').close()\n" + WORDS)
    assert main(["run", path, "--runner", runner, "--checkpoint-dir", folder]) == 2
    reason = "Not a directory" if kind == "under a file" else "Operation not permitted"
    assert capsys.readouterr().err == f"tidal run: error: the checkpoint folder {folder} cannot be created: {reason}\n"
    assert not ran.exists()  # refused before the script (and so the runner) started


def test_a_runner_given_an_unusable_checkpoint_folder_refuses_it_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    import tidal as td
    from tidal.runners.core.checkpoint import CheckpointError
    from tidal.runners.microbatch import MicroBatchRunner
    from tidal.runners.ray import RayRunner

    folder = _unusable_folder(tmp_path, "under a file")

    def no_ray(self: RayRunner) -> None:
        raise AssertionError("Ray was started")

    monkeypatch.setattr(RayRunner, "_ensure_ray", no_ray)
    for runner, what in ((RayRunner(checkpoint_dir=folder), "checkpoint folder"), (MicroBatchRunner(commit_log=folder), "commit log folder")):
        p = td.Pipeline(runner=runner)
        _ = p | td.Create([1]) | td.Map(str)
        with pytest.raises(CheckpointError) as info:
            p.run()
        assert str(info.value) == f"the {what} {folder} cannot be created: Not a directory"


def test_resuming_a_job_that_had_finished_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, ck = script(tmp_path, WORDS), str(tmp_path / "ck")
    assert main(["run", path, "--runner", "microbatch", "--checkpoint-dir", ck, "--quiet"]) == 0
    assert "count ('b', 2)" in capsys.readouterr().out
    assert main(["run", path, "--runner", "microbatch", "--checkpoint-dir", ck, "--resume"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # the script did not run again
    assert captured.err == (
        f"tidal run: the job checkpointed in {ck} had already finished (its last checkpoint is the end of its "
        "input); there is nothing to resume\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["microbatch", "ray"])
def test_a_failed_run_resumes_with_exactly_once_output(tmp_path: Path, runner: str) -> None:
    """The first run crashes part-way; '--resume' finishes it, and the published sums are exact."""
    if runner == "ray":
        pytest.importorskip("ray")
    path = script(tmp_path, CRASHING_ONCE)
    marker, out, ck = tmp_path / "armed", tmp_path / "out" / "sums", tmp_path / "ck"
    marker.write_text("")
    base = [sys.executable, "-m", "tidal", "run", path, "--runner", runner, "--checkpoint-dir", str(ck)]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    first = subprocess.run([*base, "--", str(marker), str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 1 and "crash on purpose" in first.stderr
    again = subprocess.run([*base, "--", str(marker), str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and "pass --resume" in again.stderr
    resumed = subprocess.run([*base, "--resume", "--", str(marker), str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    import tidal as td

    expected = sorted(f"k{k},{w * 10},{sum(v for v in range(400) if v % 2 == k and v // 100 == w)}" for w in range(4) for k in range(2))
    assert sorted(td.io.read_text(str(out) + "-*")) == expected
    finished = subprocess.run([*base, "--resume", "--", str(marker), str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert finished.returncode == 0
    assert finished.stderr == (
        f"tidal run: the job checkpointed in {ck} had already finished (its last checkpoint is the end of its "
        "input); there is nothing to resume\n"
    )
    assert sorted(td.io.read_text(str(out) + "-*")) == expected
