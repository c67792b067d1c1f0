"""``python -m tidal matrix``: run the capability cases on the runners and write the matrix.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = add_matrix_parser(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["matrix", "--runners", "direct,ray", "--out", "docs"])
>>> args.runners, args.out, args.quiet
(['direct', 'ray'], 'docs', False)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_matrix_parser", "add_matrix_arguments", "run_matrix", "summary"]

_HELP = "run the capability cases on every runner and write the capability matrix (JSON, Markdown, HTML)"
_DESCRIPTION = """\
Run every capability case on each runner (default: every registered runner),
then write capability_matrix.json (each case's outcome, message and duration
on each runner), capability_matrix.md and capability_matrix.html to --out.
A cell is Yes when all of its row's cases pass, Partially when some do, No
when none do. Each runner also runs a small standard workload for the system
comparison (latency, throughput) unless --no-comparison is given.
"""
_EPILOG = """\
examples:
  python -m tidal matrix                              # every registered runner, into matrix-out/
  python -m tidal matrix --runners direct --out docs  # the direct runner only
  python -m tidal matrix --quiet --strict             # for scripts: exit 1 on an undeclared failure
"""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_matrix_arguments(parser: argparse.ArgumentParser) -> None:
    """The matrix options, on any parser."""
    parser.add_argument("--runners", type=_csv, default=None, help="comma-separated runner names (default: every registered runner)")
    parser.add_argument("--out", default="matrix-out", help="folder for the three files (default: matrix-out)")
    parser.add_argument("--cases", type=_csv, default=None, help="only cases whose id or row starts with one of these (comma-separated)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds one case may take (default: the case's own limit, 60 s)")
    parser.add_argument("--no-comparison", action="store_true", help="skip the latency and throughput measurement")
    parser.add_argument("--strict", action="store_true", help="exit with 1 when a case fails without a declared limitation")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar (also: TIDAL_NO_PROGRESS=1)")


def add_matrix_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``matrix`` subcommand to an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "matrix", help=_HELP, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_matrix_arguments(parser)
    parser.set_defaults(func=run_matrix)
    return parser


def summary(doc: dict[str, Any], paths: dict[str, str]) -> str:
    """One screen: per runner, its Yes / Partially / No counts and the cells that are not Yes; the files."""
    lines = [f"capability matrix: {len(doc['cases'])} cases × {len(doc['runners'])} runner(s) in {doc['duration_s']:.1f} s"]
    for runner in doc["runners"]:
        name = runner["name"]
        cells = [c for c in doc["cells"] if c["runner"] == name]
        if not runner["available"]:
            lines.append(f"  {name:<11} not run: {runner['unavailable_reason']}")
            continue
        counts = {s: sum(1 for c in cells if c["status"] == s) for s in ("Yes", "Partially", "No")}
        passed = sum(1 for r in doc["results"] if r["runner"] == name and r["outcome"] == "pass")
        total = sum(1 for r in doc["results"] if r["runner"] == name and r["outcome"] != "skipped")
        lines.append(
            f"  {name:<11} {counts['Yes']} Yes · {counts['Partially']} Partially · {counts['No']} No   ({passed}/{total} cases passed)"
        )
        for c in cells:
            if c["status"] != "Yes":
                note = f" — {c['note']}" if c["note"] else ""
                text = f"    {'~' if c['status'] == 'Partially' else '✕'} {c['row']} ({c['passed']}/{c['total']}){note}"
                lines.append(text if len(text) <= 150 else text[:147] + "...")
        comp = runner.get("comparison")
        if comp and not comp.get("error") and comp.get("events_per_s") is not None:
            p50 = comp.get("latency_p50_ms")
            latency = f", latency p50 {p50:,.1f} ms" if p50 is not None else ""
            lines.append(f"    measured: {comp['events_per_s']:,.0f} events/s{latency}")
    for s in doc["stale_limitations"]:
        lines.append(f"  stale declaration on {s['runner']}: {s['key']!r} — {s['reason']}")
    lines.append("wrote " + ", ".join(paths[k] for k in ("json", "md", "html")))
    return "\n".join(lines)


def _undeclared_failures(doc: dict[str, Any]) -> list[str]:
    return [
        f"{r['runner']}: {r['case']}"
        for r in doc["results"]
        if r["outcome"] in ("fail", "error") and r["declared_limitation"] is None
    ]


def run_matrix(args: argparse.Namespace) -> int:
    """Run the suite, write the files, print the summary; 2 on bad arguments, 1 under --strict on an undeclared failure."""
    from tidal.capability_matrix.case import all_cases
    from tidal.capability_matrix.render import write_matrix
    from tidal.capability_matrix.report import validate_document
    from tidal.capability_matrix.suite import run_suite
    from tidal.runners.registry import registered_runners

    # A local Ray (started by the Ray runner) needs no auth; the errors that bad-input cases
    # provoke on purpose are outcomes here, not something for Ray to print again.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    known = registered_runners()
    runners = args.runners or known
    unknown = [r for r in runners if r not in known]
    if unknown:
        print(f"tidal matrix: unknown runner(s) {', '.join(unknown)}; registered runners: {', '.join(known)}", file=sys.stderr)
        return 2
    cases = all_cases()
    if args.cases:
        cases = [c for c in cases if any(c.id.startswith(p) or c.row.casefold().startswith(p.casefold()) for p in args.cases)]
        if not cases:
            print(f"tidal matrix: no case id or row starts with {', '.join(args.cases)}", file=sys.stderr)
            return 2
    doc = run_suite(runners, cases=cases, timeout_s=args.timeout, quiet=args.quiet, compare=not args.no_comparison)
    try:
        validate_document(doc)
    except ImportError:
        print("tidal matrix: jsonschema is not installed; the JSON was not checked against its schema", file=sys.stderr)
    paths = write_matrix(doc, args.out)
    print(summary(doc, paths))
    undeclared = _undeclared_failures(doc)
    if args.strict and undeclared:
        print(f"tidal matrix: {len(undeclared)} undeclared failure(s): {', '.join(undeclared)}", file=sys.stderr)
        return 1
    return 0
