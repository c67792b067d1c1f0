"""A Beam program, ported by replacing apache_beam with tidal, writes what Apache Beam writes.

Takes the Beam programs kept as Beam source in
``tidal/capability_matrix/beam_programs/programs/`` (a word count with
options and metrics, the game scores, a TestStream leader board, ...),
checks with ``tidal port``'s reader that each uses nothing tidal lacks,
runs the rewrite on the chosen runners, and compares every line written with
what Apache Beam's DirectRunner wrote for the same input (recorded).

Run: ``python examples/beam_port.py [--programs wordcount,leader_board] [--runners direct,microbatch]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from tidal.capability_matrix.beam_programs import PROGRAMS, diff_outputs, expected_outputs, run_program
from tidal.porting import unsupported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", default="wordcount,wordcount_metrics,user_score,leader_board,join,stateful_timers")
    parser.add_argument("--runners", default="direct,microbatch")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.CRITICAL)  # the game programs log the lines they cannot parse
    names = [n for n in args.programs.split(",") if n]
    unknown = [n for n in names if n not in PROGRAMS]
    if unknown:
        parser.error(f"unknown program(s) {', '.join(unknown)}; choose from {', '.join(sorted(PROGRAMS))}")
    runners = [r for r in args.runners.split(",") if r]
    print(f"{'program':<20}{'missing in tidal':>17}" + "".join(f"  {r:<20}" for r in runners))
    all_equal = True
    with tempfile.TemporaryDirectory(prefix="tidal-beam-port-") as tmp:
        for name in names:
            missing = unsupported(PROGRAMS[name].source())
            cells = []
            for runner in runners:
                started = time.perf_counter()
                outputs = run_program(name, Path(tmp) / runner / name, runner=runner)
                same = diff_outputs(outputs, expected_outputs(name)) is None
                all_equal &= same
                cells.append(f"{'same as Beam' if same else 'DIFFERENT'} ({time.perf_counter() - started:.1f} s)")
            print(f"{name:<20}{len(missing):>17}" + "".join(f"  {c:<20}" for c in cells))
    print("every ported program wrote exactly what Apache Beam's DirectRunner wrote" if all_equal
          else "some ported programs wrote other lines than Beam")
    return 0 if all_equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
