"""Beam programs, kept as Beam source, that the "Beam source compatibility" row ports and runs.

Each program in ``programs/`` is an ordinary Apache Beam program (``import
apache_beam as beam``, argparse, ``PipelineOptions``, a ``run(argv)`` entry
point reading and writing files). The porting contract says that replacing
every ``apache_beam`` with ``tidal`` gives a tidal program that produces
Beam's output; this module checks exactly that:

- :func:`write_inputs` writes a program's input files (deterministic);
- :func:`load_ported` rewrites a program with :func:`tidal.porting.rewrite`
  and loads it as a module;
- :func:`run_program` runs it (ported, or the original under Beam) and
  :func:`read_outputs` reads what it wrote;
- ``expected/NAME.json`` holds what Apache Beam's DirectRunner wrote for the
  same inputs, recorded with ``python -m tidal.capability_matrix.beam_programs
  record`` in a virtualenv that has apache-beam (``make beam-venv``).

Outputs are compared as sorted lines per output (a program writes output
``G`` to files named ``out.G*``), so shard names and order do not matter.

>>> sorted(PROGRAMS)[:3]
['combiners_cookbook', 'custom_ptransform', 'hourly_team_score']
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import random
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs
import cloudpickle

__all__ = [
    "BeamProgram",
    "PROGRAMS",
    "PROGRAM_DIR",
    "EXPECTED_DIR",
    "write_inputs",
    "load_ported",
    "load_original",
    "run_program",
    "read_outputs",
    "expected_outputs",
    "diff_outputs",
]

HERE = Path(__file__).resolve().parent
PROGRAM_DIR = HERE / "programs"
EXPECTED_DIR = HERE / "expected"
OUTPUT_PREFIX = "out"


@attrs.frozen
class BeamProgram:
    """A Beam program of ``programs/`` and how to feed it."""

    name: str
    #: Writes the input files into a folder; returns the program's input arguments.
    inputs: Callable[[Path], list[str]]
    #: Runs on Beam's streaming DirectRunner (a TestStream): no sharded text output there.
    streaming: bool = False

    @property
    def path(self) -> Path:
        return PROGRAM_DIR / f"{self.name}.py"

    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def description(self) -> str:
        """The first line of the program's docstring."""
        import ast

        doc = ast.get_docstring(ast.parse(self.source())) or self.name
        return " ".join(doc.split("\n\n")[0].split())


# -- inputs -------------------------------------------------------------------------------
_WORDS = (
    "the tide is full the moon lies fair upon the straits on the french coast the light gleams and "
    "is gone the cliffs of england stand glimmering and vast out in the tranquil bay come to the "
    "window sweet is the night air only from the long line of spray where the sea meets the "
    "moon blanched land listen you hear the grating roar of pebbles which the waves draw back and fling"
).split()


def _write(folder: Path, name: str, lines: list[str]) -> str:
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _text_lines(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        if i % 17 == 5:
            lines.append("")
            continue
        words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.3:
            words[rng.randrange(len(words))] = rng.choice(["don't", "o'er", "xylem", "it's", "Xenon"])
        if rng.random() < 0.4:
            words[-1] += rng.choice([".", ",", "!", ";"])
        lines.append(" ".join(words))
    return lines


def _text_inputs(folder: Path) -> list[str]:
    _write(folder, "input-1.txt", _text_lines(1, 120))
    _write(folder, "input-2.txt", _text_lines(2, 80))
    return ["--input", str(folder / "input-*.txt")]


_GAME_START = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp() * 1000)


def _game_lines(seed: int, n: int, malformed: bool) -> list[str]:
    rng = random.Random(seed)
    users = [f"user{i}_{team}" for team in ("Amber", "Beige", "Coral") for i in range(4)]
    lines = []
    for i in range(n):
        user = rng.choice(users)
        team = user.split("_")[1]
        ts = _GAME_START + rng.randrange(3 * 3600 * 1000)
        readable = datetime.datetime.fromtimestamp(ts / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        lines.append(f"{user},{team},{rng.randint(1, 20)},{ts},{readable}")
        if malformed and i % 50 == 7:
            lines.append(f"{user},{team},not-a-number,{ts},{readable}")
    return lines


def _user_score_inputs(folder: Path) -> list[str]:
    return ["--input", _write(folder, "input.csv", _game_lines(3, 300, malformed=True))]


def _hourly_inputs(folder: Path) -> list[str]:
    return [
        "--input", _write(folder, "input.csv", _game_lines(4, 300, malformed=False)),
        "--window_duration", "30", "--start_min", "2026-01-01-00-20", "--stop_min", "2026-01-01-02-50",
    ]


def _leader_board_inputs(folder: Path) -> list[str]:
    # Two 60 s windows; early firings every 3 events; on-time panes at the watermark; late
    # events within the 120 s lateness (late panes) and one beyond it (dropped).
    script = [
        "watermark,0",
        "alice,red,3,10", "bob,blue,2,20", "carol,red,1,30",
        "dave,blue,4,40", "erin,red,5,50", "bob,blue,1,55",
        "watermark,30",
        "alice,red,2,70", "frank,blue,6,80",
        "watermark,61",
        "carol,red,4,45",
        "watermark,125",
        "dave,blue,3,90", "erin,red,1,100",
        "watermark,150",
        "alice,red,9,15",
        "watermark,200",
        "bob,blue,7,59",
    ]
    return ["--input", _write(folder, "input.txt", script), "--team_window_duration", "60", "--allowed_lateness", "120"]


def _fruit_inputs(folder: Path) -> list[str]:
    rng = random.Random(5)
    fruits = ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "kiwi"]
    lines = [f"{rng.choice(fruits)},{rng.randint(1, 100)}" for _ in range(150)]
    return ["--input", _write(folder, "input.csv", lines)]


def _custom_inputs(folder: Path) -> list[str]:
    return [*_text_inputs(folder), "--min_chars", "4"]


def _side_input_inputs(folder: Path) -> list[str]:
    rng = random.Random(6)
    stations = {f"S{i:02d}": name for i, name in enumerate(["Oslo", "Lima", "Pune", "Kobe", "Nome", "Bonn"])}
    readings = [f"{rng.choice(sorted(stations))},{rng.randint(1, 12)},{rng.randint(-150, 350) / 10}" for _ in range(200)]
    return [
        "--input", _write(folder, "readings.csv", readings),
        "--stations", _write(folder, "stations.csv", [f"{k},{v}" for k, v in stations.items()]),
        "--months", "1,2,7,12",
    ]


def _join_inputs(folder: Path) -> list[str]:
    rng = random.Random(7)
    names = [f"person{i}" for i in range(30)]
    emails = [f"{n}, {n}@example.{rng.choice(['com', 'org'])}" for n in names if rng.random() < 0.7]
    emails += [f"{n}, {n}.alt@example.net" for n in names[:5]]
    phones = [f"{n}, +1-555-{rng.randint(1000, 9999)}" for n in names if rng.random() < 0.6]
    snail = [f"{n}, {rng.randint(1, 999)} Main St" for n in names if rng.random() < 0.3]
    return [
        "--input_email", _write(folder, "emails.csv", emails),
        "--input_phone", _write(folder, "phones.csv", phones),
        "--input_snailmail", _write(folder, "snailmail.csv", snail),
    ]


def _sessions_inputs(folder: Path) -> list[str]:
    rng = random.Random(8)
    lines = []
    for user in ("ann", "ben", "cat", "dan"):
        t = rng.randint(0, 600)
        for _ in range(rng.randint(8, 20)):
            t += rng.choice([20, 60, 120, 250, 400, 900])
            lines.append(f"{user},{t},{rng.choice(['view', 'click', 'buy', 'scroll'])}")
    rng.shuffle(lines)
    return ["--input", _write(folder, "activity.csv", lines), "--gap", "300"]


def _stateful_inputs(folder: Path) -> list[str]:
    rng = random.Random(9)
    lines = [f"{rng.choice('abcd')},{rng.randint(0, 50)},{rng.randint(0, 450)}" for _ in range(120)]
    return ["--input", _write(folder, "events.csv", lines)]


def _typed_inputs(folder: Path) -> list[str]:
    rng = random.Random(10)
    players = [("ana", "north"), ("bo", "north"), ("cy", "south"), ("di", "south"), ("ed", "east")]
    lines = [f"{name},{team},{rng.randint(0, 30)}" for name, team in (rng.choice(players) for _ in range(100))]
    return ["--input", _write(folder, "plays.csv", lines)]


PROGRAMS: dict[str, BeamProgram] = {
    p.name: p
    for p in (
        BeamProgram("wordcount", _text_inputs),
        BeamProgram("wordcount_metrics", lambda folder: [*_text_inputs(folder), "--min_length", "4"]),
        BeamProgram("user_score", _user_score_inputs),
        BeamProgram("hourly_team_score", _hourly_inputs),
        BeamProgram("leader_board", _leader_board_inputs, streaming=True),
        BeamProgram("combiners_cookbook", _fruit_inputs),
        BeamProgram("custom_ptransform", _custom_inputs),
        BeamProgram("multiple_outputs", _text_inputs),
        BeamProgram("side_inputs", _side_input_inputs),
        BeamProgram("join", _join_inputs),
        BeamProgram("sessions", _sessions_inputs),
        BeamProgram("stateful_timers", _stateful_inputs),
        BeamProgram("typed_pipeline", _typed_inputs),
    )
}


def write_inputs(name: str, folder: Path) -> list[str]:
    """Write program ``name``'s inputs into ``folder``; its argv (inputs and ``--output``)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [*PROGRAMS[name].inputs(folder), "--output", str(folder / OUTPUT_PREFIX)]


# -- loading ------------------------------------------------------------------------------
def _load_source(source: str, module_name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    # Pickled by value: a worker process (Ray) has no module of this name to import.
    cloudpickle.register_pickle_by_value(module)
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def load_ported(name: str) -> types.ModuleType:
    """Program ``name`` rewritten for tidal (``tidal port``'s rewrite) and loaded as a module."""
    from tidal.porting import rewrite

    program = PROGRAMS[name]
    return _load_source(rewrite(program.source()), f"tidal_ported_{name}", program.path)


def load_original(name: str) -> types.ModuleType:
    """Program ``name`` as written, for Apache Beam (needs apache_beam importable)."""
    program = PROGRAMS[name]
    spec = importlib.util.spec_from_file_location(f"beam_program_{name}", program.path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _default_runner(runner: Any) -> Iterator[None]:
    from tidal.runners.registry import _default, set_default_runner

    saved = _default[0]
    set_default_runner(runner)
    try:
        yield
    finally:
        set_default_runner(saved)


def run_program(name: str, folder: Path, runner: Any = None, extra_args: list[str] | None = None, original: bool = False) -> dict[str, list[str]]:
    """Run program ``name`` on inputs written into ``folder``; what it wrote (see :func:`read_outputs`).

    ``runner`` is a runner name (passed as ``--runner``) or a Runner instance
    (made the default while the program runs). ``original`` runs the Beam
    source itself, under Apache Beam.
    """
    argv = write_inputs(name, folder) + list(extra_args or [])
    if original:
        module = load_original(name)
        module.run(argv)
        return read_outputs(folder)
    module = load_ported(name)
    if isinstance(runner, str):
        module.run([*argv, f"--runner={runner}"])
    else:
        with _default_runner(runner):
            module.run(argv)
    return read_outputs(folder)


# -- outputs ------------------------------------------------------------------------------
def read_outputs(folder: Path) -> dict[str, list[str]]:
    """Every line a program wrote, by output: files ``out.G`` and ``out.G-<shard>`` make output ``G``."""
    outputs: dict[str, list[str]] = {}
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or not path.name.startswith(OUTPUT_PREFIX + "."):
            continue
        group = path.name[len(OUTPUT_PREFIX) + 1 :].split("-", 1)[0]
        lines = path.read_text(encoding="utf-8").splitlines()
        outputs.setdefault(group, []).extend(lines)
    return {group: sorted(lines) for group, lines in sorted(outputs.items())}


def expected_outputs(name: str) -> dict[str, list[str]]:
    """What Apache Beam's DirectRunner wrote for program ``name`` (recorded)."""
    return json.loads((EXPECTED_DIR / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def diff_outputs(actual: dict[str, list[str]], expected: dict[str, list[str]], limit: int = 6) -> str | None:
    """None when equal, else a short account of what differs."""
    if actual == expected:
        return None
    problems = []
    for group in sorted(set(actual) | set(expected)):
        got, want = actual.get(group), expected.get(group)
        if got is None:
            problems.append(f"output {group!r} was not written")
        elif want is None:
            problems.append(f"output {group!r} is not one Beam writes")
        elif got != want:
            extra = sorted(set(got) - set(want))[:limit]
            missing = sorted(set(want) - set(got))[:limit]
            problems.append(
                f"output {group!r}: {len(got)} lines, Beam wrote {len(want)}; "
                f"unexpected {extra}; missing {missing}"
            )
    return "; ".join(problems)


# -- recording Beam's outputs ---------------------------------------------------------------
def record(names: list[str], out: Path, workdir: Path) -> None:
    """Run each program under Apache Beam and write its outputs to ``out/NAME.json``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        folder = workdir / name
        outputs = run_program(name, folder, original=True)
        (out / f"{name}.json").write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"{name}: {sum(len(v) for v in outputs.values())} lines in {len(outputs)} output(s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python -m tidal.capability_matrix.beam_programs record [--out DIR] [NAME...]`` (needs apache-beam)."""
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m tidal.capability_matrix.beam_programs")
    parser.add_argument("command", choices=["record"])
    parser.add_argument("names", nargs="*", help="programs (default: all)")
    parser.add_argument("--out", default=str(EXPECTED_DIR), help="folder for NAME.json (default: the recorded expectations)")
    parser.add_argument("--workdir", default=None, help="where the programs read and write (default: a temporary folder)")
    args = parser.parse_args(argv)
    names = args.names or sorted(PROGRAMS)
    unknown = [n for n in names if n not in PROGRAMS]
    if unknown:
        parser.error(f"unknown program(s) {', '.join(unknown)}; choose from {', '.join(sorted(PROGRAMS))}")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="tidal-beam-programs-"))
    record(names, Path(args.out), workdir)
    return 0
