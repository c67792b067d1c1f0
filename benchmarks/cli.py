"""``python -m tidal bench``: the command-line face of the runner comparison harness.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = add_bench_parser(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["bench", "--workloads", "q0,q5", "--events", "3000"])
>>> config_from_args(args).workloads, config_from_args(args).sizes, config_from_args(args).repeats
(('q0', 'q5'), (300, 3000), 3)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_bench_parser", "add_bench_arguments", "config_from_args", "run_bench"]

_HELP = "run workloads (Nexmark queries, wordcount, windowed counts) on every runner and compare them"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench options, on any parser."""
    from tidal.benchmarks.harness import DEFAULT_SIZES
    from tidal.benchmarks.workloads import WORKLOADS

    parser.add_argument("--workloads", type=_csv, default=None, help=f"comma-separated, from: {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--runners", type=_csv, default=None, help="comma-separated runner names (default: every registered runner)")
    parser.add_argument(
        "--events", type=_positive_int, default=None,
        help=f"the largest batch size (default {DEFAULT_SIZES[-1]:,}); the other size is a tenth of it",
    )
    parser.add_argument(
        "--sizes", type=lambda s: [_positive_int(x) for x in _csv(s)], default=None,
        help=f"batch sizes to fit fixed and per-event cost over (default {','.join(map(str, DEFAULT_SIZES))})",
    )
    parser.add_argument(
        "--repeats", type=_positive_int, default=3,
        help="run every batch this many times and take the median (default 3); the report shows the spread",
    )
    parser.add_argument("--stream-events", type=int, default=2000, help="events in the streaming (latency) run")
    parser.add_argument("--stream-rate", type=float, default=2000.0, help="events per wall-clock second in the streaming run")
    parser.add_argument("--out", default="bench-out", help="folder for results.json, results.md and results.png")
    parser.add_argument("--no-beam", action="store_true", help="skip the Apache Beam reference even when it is installed")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar (also: TIDAL_NO_PROGRESS=1)")


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser("bench", help=_HELP, description=_HELP)
    add_bench_arguments(parser)
    parser.set_defaults(func=run_bench)
    return parser


def config_from_args(args: argparse.Namespace) -> Any:
    from tidal.benchmarks.harness import BenchConfig
    from tidal.benchmarks.workloads import DEFAULT_WORKLOADS

    if args.sizes:
        sizes = tuple(args.sizes)
    elif args.events:
        sizes = tuple(sorted({max(1, args.events // 10), args.events}))
    else:
        sizes = BenchConfig().sizes
    return BenchConfig(
        workloads=tuple(args.workloads or DEFAULT_WORKLOADS),
        runners=tuple(args.runners) if args.runners else None,
        sizes=sizes,
        repeats=args.repeats,
        stream_events=args.stream_events,
        stream_rate=args.stream_rate,
        out=args.out,
        quiet=args.quiet,
        beam=not args.no_beam,
    )


def run_bench(args: argparse.Namespace) -> int:
    """Run the harness, print the table, write the reports; 1 if a run failed or results disagreed (Beam's too)."""
    from tidal.benchmarks.harness import run_harness, terminal_table, write_reports

    try:
        config = config_from_args(args)
        report = run_harness(config)
    except ValueError as exc:
        print(f"tidal bench: {exc}", file=sys.stderr)
        return 2
    print(terminal_table(report))
    paths = write_reports(report, config.out)
    print("\nwrote " + ", ".join(os.path.relpath(p) for p in paths.values()))
    failed = any(r.get("error") for r in report["results"]) or any("error" in e.get("beam", {}) for e in report["equality"].values())
    differ = any(e["same"] is False or e.get("beam", {}).get("same") is False for e in report["equality"].values())
    differ = differ or any(r.get("repeats_agree") is False for r in report["results"])
    return 1 if failed or differ or not report["runners"] else 0
