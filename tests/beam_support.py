"""Where apache-beam lives for the tests that compare with it: a virtualenv of its own (``make beam-venv``)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The line a test that needs Beam skips with when there is none.
NO_BEAM = "no Beam virtualenv: `make beam-venv` makes .venv-beam (make test does it first)"


def beam_python() -> Path | None:
    """TIDAL_BEAM_PYTHON, or .venv-beam's Python once ``make beam-venv`` finished installing into it."""
    if os.environ.get("TIDAL_BEAM_PYTHON"):
        return Path(os.environ["TIDAL_BEAM_PYTHON"])
    venv = ROOT / ".venv-beam"
    return venv / "bin" / "python" if (venv / ".installed").exists() else None
