"""Rendering the matrix document: Markdown and a self-contained HTML page, and writing all three files.

Both renderings are computed from the document alone (``capability_matrix.json``),
so they can be regenerated from a saved JSON file.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any, Callable

__all__ = ["to_markdown", "to_html", "write_matrix", "SYMBOLS", "FILE_NAMES"]

#: Status -> (symbol, CSS class).
SYMBOLS = {"Yes": ("✓", "yes"), "Partially": ("~", "partial"), "No": ("✕", "no"), "n/a": ("–", "na")}
_OUTCOME_SYMBOL = {"pass": "✓", "fail": "✕", "error": "✕", "skipped": "–"}
FILE_NAMES = {"json": "capability_matrix.json", "md": "capability_matrix.md", "html": "capability_matrix.html"}


def _runner_names(doc: dict[str, Any]) -> list[str]:
    return [r["name"] for r in doc["runners"]]


def _cells(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["row"], c["runner"]): c for c in doc["cells"]}


def _results(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["case"], r["runner"]): r for r in doc["results"]}


def _fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _fmt(value: Any, unit: str = "", fmt: str = "{:,.0f}") -> str:
    if value is None:
        return "–"
    return fmt.format(value) + unit


def _fixed_cost(r: dict[str, Any]) -> str:
    comp = r.get("comparison")
    if not comp or comp.get("error") or comp.get("fixed_cost_s") is None:
        return "–"
    cost = comp["fixed_cost_s"]
    return f"{cost:,.3f} s" if cost >= 0.0005 else "≈ 0 s"  # a line fit through two sizes can dip below zero


def _comparison_rows(doc: dict[str, Any]) -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
    def measured(key: str, unit: str, fmt: str) -> Callable[[dict[str, Any]], str]:
        def get(r: dict[str, Any]) -> str:
            comp = r.get("comparison")
            if not comp:
                return "not measured"
            if comp.get("error"):
                return f"error: {comp['error']}"
            return _fmt(comp.get(key), unit, fmt)

        return get

    return [
        ("Execution model", lambda r: r.get("execution_model") or "not declared"),
        ("Guarantee", lambda r: r.get("guarantee") or "not declared"),
        ("Fault tolerance", lambda r: r.get("fault_tolerance") or "not declared"),
        ("Checkpoint / restore", lambda r: "yes" if r.get("supports_checkpoint_restore") else "no"),
        ("Throughput, end to end (events/s)", measured("events_per_s", "", "{:,.0f}")),
        ("Fixed cost per run", _fixed_cost),
        ("Steady-state rate (events/s)", measured("steady_events_per_s", "", "{:,.0f}")),
        ("Latency p50", measured("latency_p50_ms", " ms", "{:,.1f}")),
        ("Latency p99", measured("latency_p99_ms", " ms", "{:,.1f}")),
    ]


def _workload(doc: dict[str, Any]) -> str | None:
    for r in doc["runners"]:
        comp = r.get("comparison")
        if comp and comp.get("workload"):
            return str(comp["workload"])
    return None


# -- Markdown ----------------------------------------------------------------------------
def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: dict[str, Any]) -> str:
    """The matrix as GitHub-flavoured Markdown."""
    names = _runner_names(doc)
    cells = _cells(doc)
    results = _results(doc)
    cases = {c["id"]: c for c in doc["cases"]}
    out = [
        "# tidal capability matrix",
        "",
        f"tidal {doc['tidal_version']} · generated {doc['generated_at']} by `python -m tidal matrix` "
        f"· Python {doc['environment']['python']} on {doc['environment']['platform']}",
        "",
        "Every cell is computed from the outcomes of its row's cases (`capability_matrix.json` holds each "
        "case's outcome, message and duration): **✓ Yes** all passed, **~ Partially** some passed, "
        "**✕ No** none passed. A runner's declared limitation is shown as the cell's note; it never turns "
        "a failure into a pass.",
        "",
    ]
    for group in doc["groups"]:
        if not group["rows"]:
            continue
        out += [f"## {group['name']}", "", "| Capability | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        notes: list[str] = []
        for row in group["rows"]:
            line = [_md(row)]
            for name in names:
                cell = cells.get((row, name))
                if cell is None:
                    line.append("")
                    continue
                symbol, _ = SYMBOLS[cell["status"]]
                text = f"{symbol} {cell['status']} ({cell['passed']}/{cell['total']})"
                if cell["note"]:
                    notes.append(f"{row} on {name}: {cell['note']}")
                    text += f" [{len(notes)}]"
                line.append(text)
            out.append("| " + " | ".join(line) + " |")
        if notes:
            out.append("")
            out += [f"{i}. {_md(n)}" for i, n in enumerate(notes, 1)]
        out.append("")
    out += ["## System comparison", ""]
    workload = _workload(doc)
    if workload:
        out += [f"Measured on the standard workload ({workload}) with the benchmark harness: end-to-end "
                "throughput at the largest size, and a line fit over two sizes that separates the fixed cost of a "
                "run from the steady-state rate; latency in streaming mode.", ""]
    out += ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, get in _comparison_rows(doc):
        out.append(f"| {label} | " + " | ".join(_md(get(r)) for r in doc["runners"]) + " |")
    out.append("")
    if doc["stale_limitations"]:
        out += ["## Stale declarations", ""]
        out += [f"- {s['runner']}: `{s['key']}` ({s['scope']}): {s['reason']}" for s in doc["stale_limitations"]]
        out.append("")
    out += ["## Cases", ""]
    for row in doc["rows"]:
        out += [f"<details><summary>{html.escape(row['name'])} ({len(row['cases'])} cases)</summary>", ""]
        out += ["| Case | What it checks | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
        for case_id in row["cases"]:
            line = [f"`{case_id}`", _md(cases[case_id]["description"])]
            for name in names:
                r = results.get((case_id, name))
                if r is None:
                    line.append("")
                    continue
                text = f"{_OUTCOME_SYMBOL[r['outcome']]} {r['outcome']} ({_fmt_duration(r['duration_s'])})"
                if r["outcome"] != "pass" and r["message"]:
                    text += f": {_md(r['message'])}"
                line.append(text)
            out.append("| " + " | ".join(line) + " |")
        out += ["", "</details>", ""]
    return "\n".join(out)


# -- HTML --------------------------------------------------------------------------------
_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px; color: #1d2330; padding: 0 1rem; }
h1 { margin-bottom: .2rem; }
.meta { color: #5b6475; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0 2rem; }
th, td { border: 1px solid #d5dae3; padding: .35rem .55rem; vertical-align: top; text-align: left; }
thead th { background: #2f3a4f; color: #fff; position: sticky; top: 0; }
tr.group th { background: #e9edf4; font-size: 1.05em; }
tr.group th small { font-weight: normal; color: #5b6475; }
td.yes { background: #dcf3dd; } td.partial { background: #fff0c2; } td.no { background: #f9d2d2; } td.na { background: #eceff3; color: #6b7280; }
.sym { font-weight: 700; margin-right: .3rem; }
td.yes .sym { color: #16794a; } td.partial .sym { color: #9a6700; } td.no .sym { color: #b42318; }
summary { cursor: pointer; }
td .note { margin: .25rem 0 0; color: #3b4252; font-size: .85em; }
details ul { margin: .3rem 0 .2rem; padding-left: 1.1rem; }
details li { margin: .15rem 0; }
li.pass::marker { color: #16794a; } li.fail::marker, li.error::marker { color: #b42318; }
code { font-size: .92em; }
.msg { display: block; color: #6b2222; font-size: .9em; word-break: break-word; }
.dur { color: #6b7280; font-size: .85em; }
.legend span { display: inline-block; padding: .1rem .5rem; margin-right: .4rem; border-radius: 3px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_cell(doc: dict[str, Any], cell: dict[str, Any] | None, row: dict[str, Any], runner: str, results: dict[tuple[str, str], dict[str, Any]],
               cases: dict[str, dict[str, Any]]) -> str:
    if cell is None:
        return "<td></td>"
    symbol, css = SYMBOLS[cell["status"]]
    title = f"{cell['status']}: {cell['passed']} of {cell['total']} cases passed" + (f". {cell['note']}" if cell["note"] else "")
    items = []
    for case_id in row["cases"]:
        r = results.get((case_id, runner))
        if r is None:
            continue
        msg = f'<span class="msg">{_e(r["message"])}</span>' if r["message"] and r["outcome"] != "pass" else ""
        lim = r.get("declared_limitation")
        if lim and r["outcome"] != "pass":
            msg += f'<span class="msg">declared: {_e(lim["note"])}</span>'
        items.append(
            f'<li class="{_e(r["outcome"])}" title="{_e(cases[case_id]["description"])}">'
            f'{_OUTCOME_SYMBOL[r["outcome"]]} <code>{_e(case_id)}</code> {_e(r["outcome"])} '
            f'<span class="dur">{_e(_fmt_duration(r["duration_s"]))}</span>{msg}</li>'
        )
    note = f'<div class="note">{_e(cell["note"])}</div>' if cell["note"] else ""
    return (
        f'<td class="{css}" title="{_e(title)}"><details><summary><span class="sym">{symbol}</span>{_e(cell["status"])} '
        f'<span class="dur">{cell["passed"]}/{cell["total"]}</span></summary><ul>{"".join(items)}</ul></details>{note}</td>'
    )


def to_html(doc: dict[str, Any]) -> str:
    """The matrix as one self-contained HTML page (no scripts, no external files)."""
    names = _runner_names(doc)
    cells = _cells(doc)
    results = _results(doc)
    cases = {c["id"]: c for c in doc["cases"]}
    rows = {r["name"]: r for r in doc["rows"]}
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = []
    for group in doc["groups"]:
        if not group["rows"]:
            continue
        body.append(f'<tr class="group"><th colspan="{len(names) + 1}">{_e(group["name"])} <small>— {_e(group["description"])}</small></th></tr>')
        for row_name in group["rows"]:
            row = rows[row_name]
            tds = "".join(_html_cell(doc, cells.get((row_name, n)), row, n, results, cases) for n in names)
            body.append(f'<tr><th scope="row" title="{_e(row["description"])}">{_e(row_name)}</th>{tds}</tr>')
    comparison = "".join(
        f"<tr><th scope=\"row\">{_e(label)}</th>" + "".join(f"<td>{_e(get(r))}</td>" for r in doc["runners"]) + "</tr>"
        for label, get in _comparison_rows(doc)
    )
    workload = _workload(doc)
    workload_line = (
        f"<p>Measured on the standard workload ({_e(workload)}) with the benchmark harness: end-to-end throughput at the "
        "largest size, and a line fit over two sizes that separates the fixed cost of a run from the steady-state rate; "
        "latency in streaming mode.</p>"
        if workload else ""
    )
    stale = ""
    if doc["stale_limitations"]:
        stale = "<h2>Stale declarations</h2><ul>" + "".join(
            f"<li>{_e(s['runner'])}: <code>{_e(s['key'])}</code> ({_e(s['scope'])}): {_e(s['reason'])}</li>" for s in doc["stale_limitations"]
        ) + "</ul>"
    env = doc["environment"]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tidal capability matrix — tidal {_e(doc['tidal_version'])}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>tidal capability matrix</h1>
<p class="meta">tidal {_e(doc['tidal_version'])} · generated {_e(doc['generated_at'])} by <code>python -m tidal matrix</code> ·
Python {_e(env['python'])} on {_e(env['platform'])} · {len(doc['cases'])} cases × {len(names)} runner(s) in {doc['duration_s']:.1f} s</p>
<p class="legend"><span style="background:#dcf3dd">✓ Yes: every case passed</span><span style="background:#fff0c2">~ Partially: some passed</span>
<span style="background:#f9d2d2">✕ No: none passed</span><span style="background:#eceff3">– not run</span></p>
<p>Every cell is computed from the outcomes of its row's cases (<code>capability_matrix.json</code>). Open a cell to see
its cases, their outcomes, messages and durations; hover for the note. A declared limitation explains a failure, it never turns it into a pass.</p>
<table id="matrix">
<thead><tr><th>Capability</th>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<h2>System comparison</h2>
{workload_line}
<table id="comparison">
<thead><tr><th></th>{head}</tr></thead>
<tbody>{comparison}</tbody>
</table>
{stale}
</body>
</html>
"""


def write_matrix(doc: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write capability_matrix.json, .md and .html into ``out_dir``; their paths by format."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {fmt: os.path.join(os.fspath(out_dir), name) for fmt, name in FILE_NAMES.items()}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False, allow_nan=False)
        f.write("\n")
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(to_markdown(doc))
    with open(paths["html"], "w", encoding="utf-8") as f:
        f.write(to_html(doc))
    return paths
