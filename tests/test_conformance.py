"""The conformance suite: every capability case on every registered runner.

Like Beam's ValidatesRunner suites, one test per (runner, case). A case the
runner fails is a test failure, unless the runner declares that limitation
(``declared_limitations``, see tidal.capability_matrix.limitations): then it
is an expected failure carrying the note. A case declared for itself that
passes fails the test, so the stale declaration gets removed; a row declared
as a whole whose cases all pass is reported with a warning.
"""

from __future__ import annotations

import warnings

import pytest

from tidal.capability_matrix.case import Case, all_cases
from tidal.capability_matrix.execute import prepare_runner, run_case
from tidal.capability_matrix.limitations import declared_limitations, limitation_for
from tidal.capability_matrix.rows import find_row
from tidal.runners.registry import registered_runners

CASES = all_cases()
RUNNERS = registered_runners()

_ready: dict[str, str | None] = {}
_outcomes: dict[tuple[str, str], str] = {}


def _require_runner(runner: str) -> None:
    """Start the runner once (on this thread); skip its cases when it cannot run here."""
    if runner not in _ready:
        _ready[runner] = prepare_runner(runner)
    reason = _ready[runner]
    if reason is not None:
        pytest.skip(f"runner {runner!r} cannot run here: {reason}")


@pytest.mark.parametrize(
    "runner, case",
    [pytest.param(runner, case, id=f"{runner}:{case.id}") for runner in RUNNERS for case in CASES],
)
def test_case(runner: str, case: Case) -> None:
    _require_runner(runner)
    limitation = limitation_for(case, declared_limitations(runner))
    result = run_case(case, runner)
    _outcomes[(runner, case.id)] = result.outcome
    if result.outcome == "skipped":  # the case needs a service that cannot run here; it says which
        pytest.skip(f"{case.id} on {runner}: {result.message}")
    if result.passed:
        if limitation is not None and limitation.scope == "case":
            pytest.fail(
                f"{runner} declares {case.id!r} as a limitation ({limitation.note}), but the case passes: "
                "remove the declaration",
                pytrace=False,
            )
        return
    if limitation is not None:
        pytest.xfail(f"declared by {runner}: {limitation.note} [{result.outcome}: {result.message}]")
    pytest.fail(f"{case.id} on {runner}: {result.outcome}: {result.message}\n({case.description})", pytrace=False)


def _row_declarations() -> list[tuple[str, str]]:
    return [(runner, key) for runner in RUNNERS for key in declared_limitations(runner) if find_row(key) is not None]


@pytest.mark.parametrize("runner, row", [pytest.param(r, k, id=f"{r}:{k}") for r, k in _row_declarations()])
def test_declared_row_limitations_still_show(runner: str, row: str) -> None:
    """A row declared as a limitation whose every case passed is reported (a warning: its note may still inform)."""
    outcomes = [_outcomes.get((runner, c.id)) for c in CASES if c.row == row]
    if not outcomes or None in outcomes:
        pytest.skip("the row's cases did not all run in this session")
    if all(o == "pass" for o in outcomes):
        warnings.warn(
            f"{runner} declares the row {row!r} as a limitation, but all {len(outcomes)} of its cases pass",
            UserWarning,
            stacklevel=1,
        )


def test_every_declared_key_names_a_case_or_a_row() -> None:
    ids = {c.id for c in CASES}
    unknown = [(r, k) for r in RUNNERS for k in declared_limitations(r) if k not in ids and find_row(k) is None]
    assert not unknown, f"declared limitations that name neither a case nor a row: {unknown}"
