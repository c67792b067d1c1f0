"""examples/stock_market.py against a plain-Python computation of the same steps, on every runner.

The expected results below use only the example's generated data (price
walks, tweets) and compute the rest by hand: a delta window per symbol in
time order, warnings and mentions counted per 30 s window, their full
outer join, and the correlation per window with ``statistics.correlation``.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import tidal as td
from tidal.testing import assert_that, equal_to

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "stock_market.py"
RUNNERS = ["direct", "ray", "microbatch"]


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("tidal_example_stock_market", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)  # Ray workers cannot import the example by name
    return module


ex = _load()


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


def expected_warnings() -> list[tuple[str, float, float, int]]:
    out = []
    for symbol in ex.SYMBOLS:
        first = None
        for second, price in ex.price_walk(symbol):
            if first is None:
                first = price  # a new delta window
            elif abs(price - first) / first > 0.05:
                out.append((symbol, first, price, second))
                first = None
    return out


def expected_rows() -> list[tuple[int, str, int, int]]:
    warnings: dict[tuple[int, str], int] = {}
    for symbol, _first, _last, second in expected_warnings():
        k = (second - second % 30, symbol)
        warnings[k] = warnings.get(k, 0) + 1
    mentions: dict[tuple[int, str], int] = {}
    for second, text in ex.tweet_stream():
        for word in text.split():
            if word in ex.SYMBOLS:
                k = (second - second % 30, word)
                mentions[k] = mentions.get(k, 0) + 1
    return sorted((start, symbol, warnings.get((start, symbol), 0), mentions.get((start, symbol), 0)) for start, symbol in {*warnings, *mentions})


def expected_correlations() -> list[tuple[int, int, float | None]]:
    per_window: dict[int, list[tuple[int, int]]] = {}
    for start, _symbol, w, m in expected_rows():
        per_window.setdefault(start, []).append((w, m))
    out = []
    for start, pairs in sorted(per_window.items()):
        try:
            corr: float | None = statistics.correlation([w for w, _ in pairs], [m for _, m in pairs])
        except statistics.StatisticsError:
            corr = None
        out.append((start, len(pairs), corr))
    return out


def test_the_expected_results_are_not_trivial() -> None:
    warnings, rows, corrs = expected_warnings(), expected_rows(), expected_correlations()
    assert len(warnings) >= 10 and len({w[0] for w in warnings}) >= 5
    assert any(r[2] == 0 for r in rows) and any(r[2] > 0 for r in rows)  # the outer join fills in zeros
    assert len(corrs) == 5 and all(c is not None for _, _, c in corrs)


def _close_to(expected: list[tuple[int, int, float | None]]) -> Any:
    def match(actual: list[Any]) -> None:
        got = sorted(actual)
        assert [g[:2] for g in got] == [e[:2] for e in expected], got
        for g, e in zip(got, expected):
            assert (g[2] is None) == (e[2] is None) and (g[2] is None or math.isclose(g[2], e[2], abs_tol=1e-6)), (g, e)

    return match


def test_the_example_matches_plain_python_on_every_runner(runner: str) -> None:
    p = td.Pipeline(runner=runner)
    out = ex.stock_market(p)
    assert_that(out["warnings"], equal_to(expected_warnings()), label="CheckWarnings")
    assert_that(out["joined"], equal_to(expected_rows()), label="CheckJoined")
    assert_that(out["correlations"], _close_to(expected_correlations()), label="CheckCorrelations")
    p.run().wait_until_finish()


def test_the_script_reports_the_same_result_on_direct_and_microbatch() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--runners", "direct,microbatch"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "every runner produced the same result: yes"
    n = len(expected_warnings())
    assert lines[2] == "Price warnings (a move of more than 5% since the start of a symbol's delta window):"
    assert len(lines) == 3 + n + 1 + 5 + 1
    assert lines[3 + n + 1].startswith("  [09:00:00, 09:00:30)  correlation ")
