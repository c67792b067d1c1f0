"""Running the whole suite: every case on every runner, with progress, into the matrix document.

>>> from tidal.capability_matrix.case import all_cases
>>> doc = run_suite(["direct"], cases=[c for c in all_cases() if c.row == "Flatten"], quiet=True, compare=False)
>>> [(cell["row"], cell["status"]) for cell in doc["cells"]]
[('Flatten', 'Yes')]
"""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any, Sequence, TextIO

from tidal.capability_matrix.case import Case, all_cases
from tidal.capability_matrix.execute import CaseResult, prepare_runner, run_case, runner_label
from tidal.capability_matrix.limitations import capability_notes, declared_limitations
from tidal.capability_matrix.measure import describe_runner, measure_runner
from tidal.capability_matrix.report import build_document
from tidal.runners.registry import registered_runners
from tidal.runners.runner import Runner

__all__ = ["run_suite", "progress_disabled"]


def progress_disabled(quiet: bool = False) -> bool:
    """The one switch for progress bars: ``quiet`` or TIDAL_NO_PROGRESS=1."""
    return quiet or os.environ.get("TIDAL_NO_PROGRESS", "") not in ("", "0")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, quiet: bool, stream: TextIO) -> Any:
    if progress_disabled(quiet):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="capability matrix", unit="case", file=stream, dynamic_ncols=True)


def run_suite(
    runners: Sequence[str | Runner] | None = None,
    cases: Sequence[Case] | None = None,
    timeout_s: float | None = None,
    quiet: bool = False,
    compare: bool = True,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Run ``cases`` (default: all) on ``runners`` (default: every registered one); the matrix document.

    A runner that cannot start here (a missing dependency) gets every case
    ``skipped`` with the reason. With ``compare`` each runner also runs the
    system-comparison workload (latency and throughput).
    """
    chosen = list(cases) if cases is not None else all_cases()
    specs: list[str | Runner] = list(runners) if runners else list(registered_runners())
    started = datetime.datetime.now(datetime.timezone.utc)
    results: list[CaseResult] = []
    infos: list[dict[str, Any]] = []
    per_runner = 1 + len(chosen) + (1 if compare else 0)
    bar = _bar(per_runner * len(specs), quiet, stream or sys.stderr)
    try:
        for spec in specs:
            name = runner_label(spec)
            info = describe_runner(spec)
            info["declared_limitations"] = declared_limitations(spec)
            info["capability_notes"] = capability_notes(spec)
            bar.set_postfix_str(f"starting {name}")
            if info["available"]:
                reason = prepare_runner(spec)
                if reason is not None:
                    info.update(available=False, unavailable_reason=reason)
            bar.update()
            for c in chosen:
                if not info["available"]:
                    results.append(CaseResult(c.id, name, "skipped", f"runner unavailable: {info['unavailable_reason']}", 0.0))
                else:
                    bar.set_postfix_str(f"{name}: {c.id}")
                    results.append(run_case(c, spec, timeout_s))
                bar.update()
            if compare:
                if info["available"] and isinstance(spec, str):
                    bar.set_postfix_str(f"{name}: latency and throughput")
                    info["comparison"] = measure_runner(spec)
                bar.update()
            infos.append(info)
        bar.set_postfix_str("done")
    finally:
        bar.close()
    finished = datetime.datetime.now(datetime.timezone.utc)
    return build_document(chosen, results, infos, started, finished)
