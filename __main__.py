"""The tidal command line: ``python -m tidal <command>`` (or ``tidal <command>``).

Commands:

* ``run SCRIPT [--runner NAME] [ARGS...]`` runs a pipeline script as
  ``__main__`` with NAME as the default runner, so ``with td.Pipeline() as p:``
  in the script runs there.
* ``graph SCRIPT [--format dot|mermaid] [--out FILE] [ARGS...]`` runs the
  script without running its pipelines: each one is recorded and rendered.
* ``bench [--workloads ...] [--runners ...]`` compares the runners on the
  Nexmark queries and other workloads (see ``tidal.benchmarks.harness``).
* ``matrix [--runners ...] [--out DIR]`` runs the capability cases on the
  runners and writes the capability matrix (see ``tidal.capability_matrix``).
* ``port FILE... [--write]`` rewrites a Beam program's imports for tidal and
  lists every name it uses that tidal lacks (see ``tidal.porting``).
* ``state CHECKPOINT_DIR [--step S] [--out FILE]`` lists a stopped job's
  keyed state, or writes a step's state as a table (see ``tidal.state``).

Arguments that tidal does not know are passed on to the script; everything
after ``--`` always is.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence
from unittest import mock

from tidal.benchmarks.cli import add_bench_parser
from tidal.capability_matrix.cli import add_matrix_parser
from tidal.model.metrics import MetricResults
from tidal.model.result import PipelineResult, PipelineState
from tidal.runners.core.checkpoint import CheckpointError, CheckpointStore
from tidal.runners import registry
from tidal.runners.runner import Runner
from tidal.state import add_state_parser

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["main", "build_parser", "CapturingRunner", "CapturedResult", "ScriptError"]

_EPILOG = """\
examples:
  python -m tidal run examples/wordcount.py                 # on the default runner (direct)
  python -m tidal run examples/wordcount.py --runner direct --input README.md
  python -m tidal graph examples/stock_prices.py > stock_prices.dot
  python -m tidal graph examples/wordcount.py --format mermaid --out wordcount.mmd
  python -m tidal port beam_wordcount.py > wordcount.py       # a Beam program, ported
  python -m tidal state ckpt --step Count --out state.parquet # a stopped job's keyed state

'python -m tidal COMMAND --help' tells more about each command.
"""

_RUN_HELP = "run a pipeline script on a chosen runner"
_RUN_DESCRIPTION = """\
Run SCRIPT as __main__ (like 'python SCRIPT'), with --runner as the default
runner: every Pipeline the script creates without runner=... runs there.
Arguments tidal does not know are passed on to the script (it sees them in
sys.argv); everything after '--' always is.
"""
_RUN_EPILOG = """\
examples:
  python -m tidal run examples/wordcount.py
  python -m tidal run examples/wordcount.py --runner direct --input README.md
  python -m tidal run my_pipeline.py -- --runner passed-to-the-script
  python -m tidal run job.py --runner ray --checkpoint-dir ckpt            # checkpointed
  python -m tidal run job.py --runner ray --checkpoint-dir ckpt --resume   # after a failure
"""

_GRAPH_HELP = "draw the pipelines a script builds (Graphviz dot or Mermaid)"
_GRAPH_DESCRIPTION = """\
Run SCRIPT as __main__ with every pipeline's runner replaced by one that
records the pipeline instead of running it, then print (or write to --out)
each pipeline's graph: primitive transforms as nodes, composite transforms as
clusters around them, PCollections as edges (side inputs dashed). The
script's own output goes to stderr, so stdout holds only the drawing.
"""
_GRAPH_EPILOG = """\
examples:
  python -m tidal graph examples/wordcount.py | dot -Tsvg > wordcount.svg
  python -m tidal graph examples/stock_prices.py --format mermaid
  python -m tidal graph examples/rolling_wordcount.py --out rolling.mmd   # format from the suffix
"""


class ScriptError(Exception):
    """A script cannot be run or did not do what the command needs (exit code 2)."""


# -- recording runners ---------------------------------------------------------------
class CapturedResult(PipelineResult):
    """The result of a pipeline that was recorded, not run: DONE, with no metrics."""

    @property
    def state(self) -> PipelineState:
        return PipelineState.DONE

    def wait_until_finish(self, duration: float | None = None) -> PipelineState:
        return PipelineState.DONE

    def metrics(self) -> MetricResults:
        return MetricResults()

    def cancel(self) -> PipelineState:
        return PipelineState.DONE


class CapturingRunner(Runner):
    """A runner that records every pipeline handed to it instead of running it."""

    name = "capture"

    def __init__(self) -> None:
        self.pipelines: list[Pipeline] = []

    def run_pipeline(self, pipeline: "Pipeline") -> PipelineResult:
        self.pipelines.append(pipeline)
        return CapturedResult()


class _CountingRunner(Runner):
    """Runs pipelines on ``inner`` and counts them (so ``run`` can tell a script ran none)."""

    def __init__(self, inner: Runner, counter: list[Runner]) -> None:
        self._inner = inner
        self._counter = counter
        self.name = inner.name

    def run_pipeline(self, pipeline: "Pipeline") -> PipelineResult:
        self._counter.append(self._inner)
        return self._inner.run_pipeline(pipeline)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    def __repr__(self) -> str:
        return repr(self._inner)


@contextlib.contextmanager
def _runners_resolved_by(resolve: Callable[[Any], Runner], default: str | Runner) -> Iterator[None]:
    """While the script runs: ``default`` is the default runner and every Pipeline's
    runner (a name, an instance or the default) is resolved by ``resolve``."""
    registry.set_default_runner(default)
    try:
        with mock.patch.object(registry, "resolve_runner", resolve):
            yield
    finally:
        registry.set_default_runner(None)


# -- running a script ----------------------------------------------------------------
def _check_script(path: str) -> None:
    if not os.path.exists(path):
        raise ScriptError(f"no such file: {path}")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "__main__.py")):
        raise ScriptError(f"{path} is a folder without a __main__.py")


def _user_traceback(exc: BaseException) -> None:
    """Print the traceback of an error raised by the script, without tidal's and runpy's frames."""
    tb = exc.__traceback__
    skip = {os.path.abspath(__file__), os.path.abspath(runpy.__file__ or "runpy")}
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (filename.startswith("<frozen runpy") or os.path.abspath(filename) in skip):
            break
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _run_script(path: str, script_args: Sequence[str]) -> int | None:
    """Run ``path`` as ``__main__`` with ``sys.argv = [path, *script_args]``.

    Returns None when the script ended normally, else the exit code to end
    with: the script's own ``sys.exit`` code (0 included), 1 when it raised.
    """
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [path, *script_args]
    script_dir = os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
    sys.path.insert(0, script_dir)  # as `python SCRIPT` does: the script's folder comes first
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        _user_traceback(exc)
        return 1
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path
    return None


def _normalize_runner(name: str) -> str:
    key = registry.canonical_runner_name(name)
    if key not in registry.registered_runners():
        raise ScriptError(f"unknown runner {name!r}; registered runners: {registry.runner_list()}")
    return key


def _checkpoint_folder(args: argparse.Namespace) -> str | None:
    """The checkpoint folder of ``run --checkpoint-dir``, after checking ``--resume`` against what it holds."""
    folder = getattr(args, "checkpoint_dir", None)
    if folder is None:
        if getattr(args, "resume", False):
            raise ScriptError("--resume needs --checkpoint-dir: the folder of the checkpoints to resume from")
        return None
    if "://" not in folder:  # refuse a folder that cannot be used now, before any runner starts
        try:
            CheckpointStore(folder).check_writable()
        except CheckpointError as exc:
            raise ScriptError(str(exc)) from exc
    held = os.path.isdir(folder) and any(not name.startswith(".") for name in os.listdir(folder))
    if held and not args.resume:
        raise ScriptError(
            f"{folder} holds checkpoints of an earlier run: pass --resume to continue it from its latest "
            "checkpoint, or give an empty folder to start again"
        )
    if args.resume and not held:
        print(f"tidal run: {folder} holds no checkpoint yet; starting from the beginning", file=sys.stderr)
    return str(folder)


def _with_checkpoints(runner: Runner, folder: str, index: int) -> Runner:
    """``runner`` checkpointing to ``folder`` (``folder/pipeline-<n>`` for a script's later pipelines)."""
    if not getattr(runner, "supports_checkpoint_restore", False) or not hasattr(runner, "with_checkpoint_dir"):
        raise ScriptError(
            f"the {runner.name or type(runner).__name__} runner takes no checkpoints; --checkpoint-dir needs "
            "a runner that does (ray, microbatch)"
        )
    where = folder if index == 1 else os.path.join(folder, f"pipeline-{index}")
    return runner.with_checkpoint_dir(where)  # type: ignore[attr-defined, no-any-return]


def _finished_job(runner: Runner, folder: str) -> bool:
    """Whether every pipeline checkpointed in ``folder`` (``folder/pipeline-<n>`` for a script's later
    ones) had reached the end of its input, so that resuming would read nothing."""
    finished = getattr(runner, "job_finished", None)
    if not callable(finished):
        return False
    later = sorted(name for name in os.listdir(folder) if name.startswith("pipeline-")) if os.path.isdir(folder) else []
    return all(bool(finished(where)) for where in [folder, *(os.path.join(folder, name) for name in later)])


def cmd_run(args: argparse.Namespace) -> int:
    """``tidal run``: the script on the chosen runner."""
    _check_script(args.script)
    runner_name = _normalize_runner(args.runner) if args.runner else registry.default_runner_name()
    original = registry.resolve_runner
    ran: list[Runner] = []

    checkpoints = _checkpoint_folder(args)
    if checkpoints is not None:
        first = _with_checkpoints(original(runner_name), checkpoints, 1)  # refuse a runner without checkpoints now
        if args.resume and _finished_job(first, checkpoints):
            print(
                f"tidal run: the job checkpointed in {checkpoints} had already finished (its last checkpoint is "
                "the end of its input); there is nothing to resume",
                file=sys.stderr,
            )
            return 0

    def resolve(spec: Any) -> Runner:
        runner = original(spec)
        if checkpoints is not None:
            runner = _with_checkpoints(runner, checkpoints, len(ran) + 1)
        return _CountingRunner(runner, ran)

    start = time.perf_counter()
    with _runners_resolved_by(resolve, runner_name):
        code = _run_script(args.script, args.script_args)
    if code is not None:
        return code
    if not ran:
        raise ScriptError(
            f"{args.script} ran no pipeline: a script for 'tidal run' builds a pipeline and runs it "
            "(with td.Pipeline() as p: ... or p.run())"
        )
    if not args.quiet:
        names = sorted({r.name or type(r).__name__ for r in ran})
        count = f"{len(ran)} pipeline{'s' if len(ran) != 1 else ''}"
        print(
            f"tidal run: {count} ran on {', '.join(names)} in {time.perf_counter() - start:.2f} s",
            file=sys.stderr,
        )
    return 0


def _graph_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.out and os.path.splitext(args.out)[1].lower() in (".mmd", ".mermaid", ".md"):
        return "mermaid"
    return "dot"


def render_pipelines(pipelines: Sequence["Pipeline"], fmt: str) -> str:
    """Every pipeline rendered in ``fmt`` ("dot" or "mermaid"), one after the other."""
    from tidal.model.render import to_dot, to_mermaid

    parts = []
    for i, p in enumerate(pipelines, 1):
        if fmt == "dot":
            parts.append(to_dot(p.graph(), name="pipeline" if i == 1 else f"pipeline_{i}"))
        else:
            header = f"%% pipeline {i} of {len(pipelines)}\n" if len(pipelines) > 1 else ""
            parts.append(header + to_mermaid(p.graph()))
    return "\n\n".join(parts) + "\n"


def cmd_graph(args: argparse.Namespace) -> int:
    """``tidal graph``: the script's pipelines, drawn instead of run."""
    _check_script(args.script)
    fmt = _graph_format(args)
    capture = CapturingRunner()
    with _runners_resolved_by(lambda spec: capture, capture):
        with contextlib.redirect_stdout(sys.stderr):
            code = _run_script(args.script, args.script_args)
    if code and not capture.pipelines:  # a script ending with sys.exit(0) still gets drawn
        return code
    if not capture.pipelines:
        raise ScriptError(
            f"{args.script} ran no pipeline: 'tidal graph' draws the pipelines a script runs "
            "(with td.Pipeline() as p: ... or p.run())"
        )
    text = render_pipelines(capture.pipelines, fmt)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        count = len(capture.pipelines)
        print(f"tidal graph: wrote {count} pipeline{'s' if count != 1 else ''} ({fmt}) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


_PORT_HELP = "rewrite a Beam program for tidal and list what it uses that tidal lacks"
_PORT_DESCRIPTION = """\
Rewrite each FILE, a Beam program, for tidal: every 'apache_beam' becomes
'tidal' (a plain textual rewrite). The rewritten program goes to stdout, or
replaces FILE with --write. Every apache_beam name the program uses that
tidal lacks, and every keyword argument a tidal transform does not take, is
listed on stderr with its line; the exit code is then 1. The program is read,
never run.
"""
_PORT_EPILOG = """\
examples:
  python -m tidal port wordcount.py > wordcount_tidal.py
  python -m tidal port --write pipelines/*.py
"""


def cmd_port(args: argparse.Namespace) -> int:
    """``tidal port``: print (or write) the rewrite; list what will not port."""
    from tidal import porting

    status = 0
    for path in args.files:
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
        except OSError as exc:
            raise ScriptError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            missing = porting.unsupported(source, filename=path)
        except SyntaxError as exc:
            raise ScriptError(f"{path} is not valid Python: line {exc.lineno}: {exc.msg}") from None
        ported = porting.rewrite(source)
        if args.write:
            with open(path, "w", encoding="utf-8") as f:
                f.write(ported)
        else:
            sys.stdout.write(ported)
        if missing:
            status = 1
            print(f"tidal port: {path} uses {len(missing)} thing(s) tidal lacks:", file=sys.stderr)
            for item in missing:
                print(f"  {path}:{item.line}: {item.name} ({item.reason})", file=sys.stderr)
        elif not args.quiet:
            print(f"tidal port: {path}: every apache_beam name it uses exists in tidal", file=sys.stderr)
    return status


def _add_port_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "port", help=_PORT_HELP, description=_PORT_DESCRIPTION, epilog=_PORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a Beam program (.py)")
    parser.add_argument("--write", action="store_true", help="replace each FILE with its rewrite")
    parser.add_argument("--quiet", action="store_true", help="say nothing when a file ports completely")
    parser.set_defaults(func=cmd_port)
    return parser


# -- the parser ----------------------------------------------------------------------
def _add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help=_RUN_HELP, description=_RUN_DESCRIPTION, epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    parser.add_argument("script", help="the pipeline script (a .py file, or a folder with a __main__.py)")
    parser.add_argument(
        "--runner", default=None,
        help=f"the default runner: one of {', '.join(registry.registered_runners())} "
        "(default: $TIDAL_RUNNER, else direct)",
    )
    parser.add_argument(
        "--checkpoint-dir", default=None, metavar="DIR",
        help="checkpoint the pipelines into DIR (ray, microbatch); a run that fails can then be resumed",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from the latest complete checkpoint in --checkpoint-dir (without it, a folder "
        "that already holds checkpoints is refused)",
    )
    parser.add_argument("--quiet", action="store_true", help="no summary line on stderr at the end")
    parser.set_defaults(func=cmd_run, takes_script_args=True)
    return parser


def _add_graph_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "graph", help=_GRAPH_HELP, description=_GRAPH_DESCRIPTION, epilog=_GRAPH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    parser.add_argument("script", help="the pipeline script (a .py file, or a folder with a __main__.py)")
    parser.add_argument(
        "--format", choices=("dot", "mermaid"), default=None,
        help="dot (Graphviz) or mermaid (default: mermaid when --out ends in .mmd/.mermaid/.md, else dot)",
    )
    parser.add_argument("--out", metavar="FILE", default=None, help="write the drawing to FILE instead of stdout")
    parser.set_defaults(func=cmd_graph, takes_script_args=True)
    return parser


#: Each adds one subcommand; its parser's ``func(args) -> int`` runs it.
SUBCOMMANDS: list[Callable[[Any], argparse.ArgumentParser]] = [
    _add_run_parser, _add_graph_parser, add_bench_parser, add_matrix_parser, _add_port_parser, add_state_parser,
]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``tidal`` argument parser, with one subparser per command."""
    from tidal import __version__

    parser = argparse.ArgumentParser(
        prog=prog,
        description="tidal: write a dataflow pipeline once, run it on interchangeable runners.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tidal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def _prog() -> str:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m tidal" if argv0 in ("__main__.py", "-m", "") else "tidal"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:  # everything after '--' belongs to the script
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    parser = build_parser(_prog())
    try:
        args, extras = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if getattr(args, "takes_script_args", False):
            args.script_args = extras + passthrough
        elif extras or passthrough:
            parser.error(f"unrecognized arguments: {' '.join(extras + passthrough)}")
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return int(args.func(args))
    except ScriptError as exc:
        print(f"tidal {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
