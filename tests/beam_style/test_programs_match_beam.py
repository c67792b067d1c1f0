"""Every Beam program of the compatibility row: ported, it writes exactly what Apache Beam writes.

Three checks: the ported program on the direct and micro-batch runners gives
the recorded Beam output (the conformance suite runs it on Ray too, as the
"Beam source compatibility" row); the recorded output is what Apache Beam
writes today (each original program run under apache-beam, in .venv-beam);
and ``tidal port`` of each program is the plain textual rewrite, with nothing
reported missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from beam_support import NO_BEAM, beam_python

from tidal.capability_matrix import beam_programs
from tidal.capability_matrix.beam_programs import PROGRAMS, diff_outputs, expected_outputs, run_program
from tidal.porting import rewrite, unsupported

NAMES = sorted(PROGRAMS)


def test_there_are_at_least_ten_programs() -> None:
    assert len(NAMES) >= 10
    for name in NAMES:
        source = PROGRAMS[name].source()
        assert "import apache_beam" in source and "tidal" not in source, name


@pytest.mark.parametrize("runner_name", ["direct", "microbatch"])
@pytest.mark.parametrize("name", NAMES)
def test_the_ported_program_writes_what_beam_wrote(name: str, runner_name: str, tmp_path: Path) -> None:
    outputs = run_program(name, tmp_path, runner=runner_name)
    assert diff_outputs(outputs, expected_outputs(name)) is None
    assert outputs == expected_outputs(name)


@pytest.mark.parametrize("name", NAMES)
def test_port_is_the_textual_rewrite_and_finds_nothing_missing(name: str) -> None:
    source = PROGRAMS[name].source()
    assert rewrite(source) == source.replace("apache_beam", "tidal")
    assert unsupported(source) == []


@pytest.fixture(scope="module")
def beam_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every program run as written under Apache Beam, now (one process for all of them)."""
    python = beam_python()
    if python is None:
        pytest.skip(NO_BEAM)
    out = tmp_path_factory.mktemp("beam-outputs")
    proc = subprocess.run(
        [str(python), "-m", "tidal.capability_matrix.beam_programs", "record", "--out", str(out),
         "--workdir", str(tmp_path_factory.mktemp("beam-work"))],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_the_recorded_output_is_what_beam_writes_now(name: str, beam_outputs: Path) -> None:
    live = json.loads((beam_outputs / f"{name}.json").read_text())
    assert live == expected_outputs(name), (
        f"Apache Beam now writes other lines for {name}.py than recorded in "
        f"{beam_programs.EXPECTED_DIR / (name + '.json')}: {diff_outputs(expected_outputs(name), live)}"
    )
