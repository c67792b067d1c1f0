"""Known limitations a runner declares, and how they apply to cases.

A runner class declares them as ``declared_limitations = {key: note}``, where
a key is a case id (that case is expected to fail) or a row name, matched
without regard to case (the note applies to the row's cell and to any of its
cases that fail). A runner without ``supports_checkpoint_restore = True``
has the "Exactly-once after failure" row declared for it: the flag is the
declaration. A declared limitation only explains a failure; it never turns
one into a pass, and a declared case that passes is reported as stale.

Notes that explain a row without any failure (say, a latency caveat) go in
``capability_notes = {row name: note}``: they are shown in the cell, always.

>>> from tidal.capability_matrix.case import all_cases
>>> limits = declared_limitations("direct")
>>> sorted(limits)
['Exactly-once after failure', 'Incremental checkpoints']
>>> case = next(c for c in all_cases() if c.row == "Exactly-once after failure")
>>> limitation_for(case, limits).scope
'row'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from tidal.capability_matrix.case import CHECKPOINT_RESTORE
from tidal.capability_matrix.rows import find_row
from tidal.runners.registry import resolve_runner
from tidal.runners.runner import Runner

if TYPE_CHECKING:
    from tidal.capability_matrix.case import Case

__all__ = ["Limitation", "declared_limitations", "limitation_for", "capability_notes", "EXACTLY_ONCE_ROW"]

EXACTLY_ONCE_ROW = "Exactly-once after failure"


@attrs.frozen
class Limitation:
    """A declared limitation as it applies to one case: for the case itself, or for its row."""

    key: str
    scope: str  # "case" or "row"
    note: str


def _runner_instance(runner: str | Runner) -> Runner | None:
    if isinstance(runner, Runner):
        return runner
    try:
        return resolve_runner(runner)
    except Exception:  # a runner whose dependencies are missing declares nothing here
        return None


def declared_limitations(runner: str | Runner) -> dict[str, str]:
    """Case id or row name -> note, as ``runner`` declares them (row names in their canonical spelling)."""
    instance = _runner_instance(runner)
    if instance is None:
        return {}
    declared: dict[str, str] = {}
    for key, note in dict(getattr(instance, "declared_limitations", None) or {}).items():
        row = find_row(key)
        declared[row.name if row is not None else key] = str(note)
    if not getattr(instance, CHECKPOINT_RESTORE, False) and EXACTLY_ONCE_ROW not in declared:
        how = getattr(instance, "fault_tolerance", None)
        declared[EXACTLY_ONCE_ROW] = "no checkpoint/restore" + (f": {how}" if how else "")
    return declared


def capability_notes(runner: str | Runner) -> dict[str, str]:
    """Row name -> note, from the runner's ``capability_notes`` (row names in their canonical spelling)."""
    instance = _runner_instance(runner)
    if instance is None:
        return {}
    notes: dict[str, str] = {}
    for key, note in dict(getattr(instance, "capability_notes", None) or {}).items():
        row = find_row(key)
        notes[row.name if row is not None else key] = str(note)
    return notes


def limitation_for(case: "Case", limitations: dict[str, Any]) -> Limitation | None:
    """The declared limitation that covers ``case``: its own, else its row's."""
    if case.id in limitations:
        return Limitation(case.id, "case", str(limitations[case.id]))
    if case.row in limitations:
        return Limitation(case.row, "row", str(limitations[case.row]))
    return None
