"""The matrix document: case outcomes per runner, rolled up into cells, checked against its schema.

The document is plain JSON data (``capability_matrix.json`` is this dict).
Results are the source of truth; every cell is computed from the results of
its row's cases: Yes when all of them passed, Partially when some did, No
when none did (and "n/a" when the runner could not run here at all).

>>> cell_status(["pass", "pass"]), cell_status(["pass", "fail"]), cell_status(["error"]), cell_status(["skipped"])
('Yes', 'Partially', 'No', 'n/a')
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any, Iterable, Sequence

from tidal.capability_matrix.case import Case
from tidal.capability_matrix.execute import CaseResult
from tidal.capability_matrix.limitations import limitation_for
from tidal.capability_matrix.rows import GROUPS, find_row

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "build_document",
    "cell_status",
    "load_schema",
    "validate_document",
    "SchemaError",
]

SCHEMA_PATH = Path(__file__).with_name("schema.json")
SCHEMA_VERSION = 1
STATUSES = ("Yes", "Partially", "No", "n/a")


class SchemaError(ValueError):
    """The document does not match ``schema.json``."""


def cell_status(outcomes: Iterable[str]) -> str:
    """Yes / Partially / No from the outcomes of a row's cases (skipped ones do not count)."""
    counted = [o for o in outcomes if o != "skipped"]
    if not counted:
        return "n/a"
    passed = sum(1 for o in counted if o == "pass")
    if passed == len(counted):
        return "Yes"
    return "No" if passed == 0 else "Partially"


def _measured_note(cases: Sequence[Case], results: dict[str, CaseResult]) -> str | None:
    parts = []
    for c in cases:
        r = results.get(c.id)
        if r is None or not c.measured or r.measurement is None:
            continue
        run_ms = r.measurement["run_s"] * 1000
        text = f"{c.id.split('.', 1)[-1]}: {run_ms:,.1f} ms"
        rate = r.measurement.get("elements_per_s")
        if rate is not None and (c.elements or 0) > 1:
            text += f" ({rate:,.0f} elements/s)"
        parts.append(text)
    return "measured " + "; ".join(parts) if parts else None


def _runner_entry(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "class", "available", "unavailable_reason", "execution_model", "guarantee", "fault_tolerance",
            "supports_checkpoint_restore", "declared_limitations", "capability_notes", "comparison")
    entry = {k: info.get(k) for k in keys}
    entry["declared_limitations"] = dict(entry["declared_limitations"] or {})
    entry["capability_notes"] = dict(entry["capability_notes"] or {})
    return entry


def build_document(
    cases: Sequence[Case],
    results: Sequence[CaseResult],
    runners: Sequence[dict[str, Any]],
    started: datetime.datetime,
    finished: datetime.datetime,
) -> dict[str, Any]:
    """The whole matrix document from the cases, their results and what each runner declares.

    ``runners`` holds one dict per runner: name, class, available,
    unavailable_reason, execution_model, guarantee, fault_tolerance,
    supports_checkpoint_restore, declared_limitations, capability_notes
    and comparison.
    """
    from tidal import __version__

    by_key = {(r.runner, r.case_id): r for r in results}
    limits = {info["name"]: dict(info.get("declared_limitations") or {}) for info in runners}
    case_ids = {c.id for c in cases}
    rows_with_cases: dict[str, list[Case]] = {}
    for c in cases:
        rows_with_cases.setdefault(c.row, []).append(c)

    result_entries = []
    for info in runners:
        name = info["name"]
        for c in cases:
            r = by_key.get((name, c.id))
            if r is None:
                continue
            lim = limitation_for(c, limits[name])
            result_entries.append({
                "case": c.id,
                "runner": name,
                "outcome": r.outcome,
                "message": r.message,
                "duration_s": round(r.duration_s, 6),
                "measurement": r.measurement,
                "declared_limitation": None if lim is None else {"scope": lim.scope, "note": lim.note},
            })

    cells = []
    stale: list[dict[str, Any]] = []
    for info in runners:
        name = info["name"]
        declared = limits[name]
        mine = {r.case_id: r for r in results if r.runner == name}
        for group in GROUPS:
            for row in group.rows:
                row_cases = rows_with_cases.get(row.name, [])
                if not row_cases:
                    continue
                outcomes = [mine[c.id].outcome if c.id in mine else "skipped" for c in row_cases]
                status = cell_status(outcomes)
                failed = [c for c, o in zip(row_cases, outcomes) if o in ("fail", "error")]
                notes = []
                if not info.get("available", True):
                    notes.append(f"not run: {info.get('unavailable_reason')}")
                if row.name in declared:
                    notes.append(declared[row.name])
                if row.name in info.get("capability_notes", {}):
                    notes.append(info["capability_notes"][row.name])
                for c in failed:
                    if c.id in declared:
                        notes.append(f"{c.id}: {declared[c.id]}")
                undeclared = [c.id for c in failed if limitation_for(c, declared) is None]
                if undeclared:
                    notes.append(f"undeclared failure: {', '.join(undeclared)}")
                measured = _measured_note(row_cases, mine)
                if measured:
                    notes.append(measured)
                cells.append({
                    "group": group.name,
                    "row": row.name,
                    "runner": name,
                    "status": status,
                    "passed": sum(1 for o in outcomes if o == "pass"),
                    "total": sum(1 for o in outcomes if o != "skipped"),
                    "note": "; ".join(notes) if notes else None,
                })
                if row.name in declared and status == "Yes":
                    stale.append({"runner": name, "key": row.name, "scope": "row",
                                  "reason": "every case of the row passed; remove the declaration"})
        for key in declared:
            if key in case_ids:
                r = mine.get(key)
                if r is not None and r.outcome == "pass":
                    stale.append({"runner": name, "key": key, "scope": "case",
                                  "reason": "the case passed; remove the declaration"})
            elif find_row(key) is None:
                stale.append({"runner": name, "key": key, "scope": "unknown",
                              "reason": "names neither a case nor a row"})

    return {
        "schema_version": SCHEMA_VERSION,
        "tidal_version": __version__,
        "generated_at": finished.astimezone(datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round((finished - started).total_seconds(), 3),
        "environment": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "runners": [_runner_entry(info) for info in runners],
        "groups": [
            {"name": g.name, "description": g.description, "rows": [r.name for r in g.rows if r.name in rows_with_cases]}
            for g in GROUPS
        ],
        "rows": [
            {"name": r.name, "group": r.group, "description": r.description, "cases": [c.id for c in rows_with_cases[r.name]]}
            for g in GROUPS for r in g.rows if r.name in rows_with_cases
        ],
        "cases": [
            {"id": c.id, "row": c.row, "group": c.group, "description": c.description, "kind": c.kind, "requires": list(c.requires)}
            for c in cases
        ],
        "results": result_entries,
        "cells": cells,
        "stale_limitations": stale,
    }


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


def validate_document(document: dict[str, Any]) -> None:
    """Raise SchemaError when ``document`` does not match the schema (needs the jsonschema package)."""
    import jsonschema

    try:
        jsonschema.validate(document, load_schema())
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise SchemaError(f"capability matrix document, at {path}: {exc.message}") from exc
