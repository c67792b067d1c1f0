"""The package type-checks with mypy (the public API is typed; py.typed ships)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_py_typed_marker_ships() -> None:
    assert (ROOT / "py.typed").exists()


def test_mypy_finds_no_errors(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    # The repository root is the package: give mypy a folder where it is named tidal.
    (tmp_path / "tidal").symlink_to(ROOT)
    env = dict(os.environ, MYPYPATH=str(tmp_path))
    proc = subprocess.run(
        [
            sys.executable, "-m", "mypy", "-p", "tidal", "--ignore-missing-imports",
            "--exclude", "tidal/(tests|examples|docs|\\.venv)/", "--cache-dir", str(tmp_path / "cache"),
        ],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
