"""Cases of the "Beam source compatibility" row: real Beam programs, ported by the textual rewrite.

Each case takes one program of :mod:`tidal.capability_matrix.beam_programs`
(written for Apache Beam: ``import apache_beam as beam``, argparse,
PipelineOptions, ``run(argv)``), replaces every ``apache_beam`` with
``tidal``, runs it on the runner under test with its input files, and
compares every line it wrote with what Apache Beam's DirectRunner wrote for
the same inputs.
"""

from __future__ import annotations

from typing import Any, Callable

import tidal as td
from tidal.capability_matrix import beam_programs
from tidal.capability_matrix.case import CaseContext, CaseFailure, case

ROW = "Beam source compatibility"


def _drive(name: str) -> Callable[[td.Pipeline, CaseContext], Any]:
    def drive(p: td.Pipeline, ctx: CaseContext) -> Any:
        outputs = beam_programs.run_program(name, ctx.workdir / name, runner=p.runner)
        problem = beam_programs.diff_outputs(outputs, beam_programs.expected_outputs(name))
        if problem is not None:
            raise CaseFailure(f"the ported {name}.py wrote other lines than Beam: {problem}")
        return None

    return drive


def _builder(doc: str) -> Callable[[td.Pipeline], None]:
    def build(p: td.Pipeline) -> None:
        return None  # the program builds its own pipelines; the drive runs it

    build.__doc__ = doc
    return build


for _name, _program in sorted(beam_programs.PROGRAMS.items()):
    _doc = f"The Beam program {_name}.py, ported by replacing apache_beam with tidal. {_program.description()}"
    case(f"beam_source.{_name}", ROW, drive=_drive(_name), timeout_s=300.0)(_builder(_doc))
