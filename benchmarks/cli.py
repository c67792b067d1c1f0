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

__all__ = ["add_bench_parser", "add_bench_arguments", "config_from_args", "run_bench", "exit_code"]

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
    peers = parser.add_argument_group("other engines (Apache Flink, Apache Spark; installed by `make bench-peers`)")
    peers.add_argument(
        "--peers", type=_csv, default=None,
        help=f"comma-separated, from: {', '.join(_peer_names())} (default: every installed one; the report names the missing)",
    )
    peers.add_argument("--no-peers", action="store_true", help="skip the other engines even when they are installed")
    peers.add_argument("--peer-parallelism", type=_positive_int, default=2, help="the other engines' parallelism (default 2)")
    peers.add_argument(
        "--peer-variants", type=_csv, default=None,
        help="comma-separated idioms to run, e.g. sql,structured (default: every idiom of each engine)",
    )
    studies = parser.add_argument_group("further studies (run after the workloads, with the same runners)")
    studies.add_argument("--key-scaling", action="store_true", help="throughput of yahoo and a keyed windowed sum as the keys grow")
    studies.add_argument(
        "--keys", type=lambda s: tuple(_positive_int(x) for x in _csv(s)), default=None,
        help="key counts of the key scaling (default 100,10000,1000000)",
    )
    studies.add_argument(
        "--key-sizes", type=lambda s: tuple(_positive_int(x) for x in _csv(s)), default=None,
        help="batch sizes of the key scaling (default 20000,200000)",
    )
    studies.add_argument("--latency-sweep", action="store_true", help="latency against throughput: each runner's knob and the offered rate")
    studies.add_argument(
        "--rates", type=lambda s: tuple(float(x) for x in _csv(s)), default=None,
        help="offered rates of the latency sweep, events/s (default 2000,10000,50000)",
    )
    studies.add_argument("--sweep-seconds", type=float, default=None, help="seconds of input at each point of the sweep (default 2)")
    parser.add_argument(
        "--report", action="store_true",
        help="run the key scaling and the latency sweep too, and write report.html: the capability matrix, every table "
        "and chart, and the system comparison, in one self-contained page",
    )
    parser.add_argument(
        "--matrix", default=None, metavar="JSON",
        help="the capability matrix for --report (default: the repository's docs/capability_matrix.json)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar (also: TIDAL_NO_PROGRESS=1)")


def _peer_names() -> list[str]:
    from tidal.benchmarks.peers import PEERS

    return list(PEERS)


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser("bench", help=_HELP, description=_HELP)
    add_bench_arguments(parser)
    parser.set_defaults(func=run_bench)
    return parser


def config_from_args(args: argparse.Namespace) -> Any:
    """The harness's BenchConfig from the parsed options."""
    from tidal.benchmarks.harness import BenchConfig
    from tidal.benchmarks.keyscaling import KeyScalingConfig
    from tidal.benchmarks.latency import SweepConfig
    from tidal.benchmarks.workloads import DEFAULT_WORKLOADS

    if args.sizes:
        sizes = tuple(args.sizes)
    elif args.events:
        sizes = tuple(sorted({max(1, args.events // 10), args.events}))
    else:
        sizes = BenchConfig().sizes
    key_scaling = latency_sweep = None
    if args.key_scaling or args.report or args.keys or args.key_sizes:
        defaults = KeyScalingConfig()
        key_scaling = KeyScalingConfig(
            keys=args.keys or defaults.keys, sizes=args.key_sizes or defaults.sizes, repeats=args.repeats,
            runners=tuple(args.runners) if args.runners else None,
        )
    if args.latency_sweep or args.report or args.rates or args.sweep_seconds:
        defaults_sweep = SweepConfig()
        latency_sweep = SweepConfig(
            rates=args.rates or defaults_sweep.rates, duration=args.sweep_seconds or defaults_sweep.duration,
            runners=tuple(args.runners) if args.runners else None,
        )
    if args.workloads == ["none"]:
        workloads: tuple[str, ...] = ()
    else:
        workloads = tuple(args.workloads or DEFAULT_WORKLOADS)
    return BenchConfig(
        workloads=workloads,
        runners=tuple(args.runners) if args.runners else None,
        sizes=sizes,
        repeats=args.repeats,
        stream_events=args.stream_events,
        stream_rate=args.stream_rate,
        out=args.out,
        quiet=args.quiet,
        beam=not args.no_beam,
        use_peers=not args.no_peers,
        peers=tuple(args.peers) if args.peers else None,
        peer_parallelism=args.peer_parallelism,
        peer_variants=tuple(args.peer_variants) if args.peer_variants else None,
        key_scaling=key_scaling,
        latency_sweep=latency_sweep,
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
    if args.report:
        from tidal.benchmarks.report import load_matrix, write_report_page

        matrix, matrix_note = load_matrix(args.matrix)
        paths["html"] = write_report_page(report, matrix, os.path.join(config.out, "report.html"), matrix_note=matrix_note)
    print("\nwrote " + ", ".join(os.path.relpath(p) for p in paths.values()))
    return exit_code(report)


def exit_code(report: dict[str, Any]) -> int:
    """1 when a run failed or a result differed anywhere in the report (runners, Beam, other engines, studies), else 0.

    >>> exit_code({"runners": ["direct"], "results": [], "equality": {"q0": {"same": None}}})
    0
    >>> exit_code({"runners": ["direct"], "results": [], "equality": {}, "peer_results": [{"same_result": False}]})
    1
    """
    failed = any(r.get("error") for r in report["results"]) or any("error" in e.get("beam", {}) for e in report["equality"].values())
    differ = any(e.get("same") is False or e.get("beam", {}).get("same") is False for e in report["equality"].values())
    differ = differ or any(r.get("repeats_agree") is False for r in report["results"])
    peers = report.get("peer_results", [])
    failed = failed or any(r.get("error") for r in peers) or any(p.get("error") for p in report.get("peers", {}).values())
    differ = differ or any(r.get("same_result") is False for r in peers)
    for study, rows in (("key_scaling", "results"), ("latency_sweep", "points")):
        for r in report.get(study, {}).get(rows, []):
            failed = failed or bool(r.get("error"))
            differ = differ or r.get("same_result") is False
    return 1 if failed or differ or not report["runners"] else 0
