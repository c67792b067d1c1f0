"""Throughput of the Ray runner against parallelism: word count, a windowed combine and a Nexmark query.

For parallelism 1, 2, 4, … up to the CPUs the cluster has (``--max-parallelism``
to go further), each workload runs ``--repeats`` times on the Ray runner on a
warm session; the figure is input elements per second end to end (pipeline
construction included, ``ray.init`` and the first job that starts the pooled
workers excluded), the median with the spread. The direct runner's rate in
the same process is the reference line. Workloads (the harness's):

* ``wordcount``: ``Map`` + ``CombinePerKey(sum)`` over 1,000 distinct words;
* ``windowed``: fixed 10 s windows, ``CombinePerKey(sum)`` per key, 100 keys;
* ``q5``: Nexmark Q5, hot items over sliding windows.

Every run's output is checked outside the timed region: word count and the
windowed sums against plain Python, Q5 against the direct runner's output
(as the runner comparison harness does). Results go to ``--out``:
``ray_scaling.json``, ``ray_scaling.md`` (a Markdown table) and
``ray_scaling.png`` (a chart).

Run: ``python -m tidal.benchmarks.ray_scaling [--address ADDR] [--elements N] [--out DIR]``;
the same command runs on a bigger machine or a cluster (``--address``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections import Counter
from typing import Any, Callable

import tidal as td
from tidal.benchmarks.ray_session import start_ray
from tidal.benchmarks.verify import BenchmarkMismatch, ExpectedOutput
from tidal.benchmarks.workloads import WORKLOADS
from tidal.runners.direct import DirectRunner

__all__ = ["main", "parallelisms"]

SCALING_WORKLOADS = ("wordcount", "windowed", "q5")


def parallelisms(cpus: int, upto: int | None = None) -> list[int]:
    """1, 2, 4, … up to ``upto`` (default: the cluster's CPUs), and that last number itself.

    >>> parallelisms(2), parallelisms(6), parallelisms(16)
    ([1, 2], [1, 2, 4, 6], [1, 2, 4, 8, 16])
    """
    top = max(1, upto if upto is not None else cpus)
    out, n = [], 1
    while n < top:
        out.append(n)
        n *= 2
    return [*out, top]


def _expected(name: str, events: list[Any]) -> list[Any] | None:
    """Plain Python's result for the workloads that have one (None: compare with the direct runner)."""
    if name == "wordcount":
        return list(Counter(e.value for e in events).items())
    if name == "windowed":
        sums: Counter[tuple[float, Any]] = Counter()
        for e in events:
            key, value = e.value
            start = (e.timestamp_us // 10_000_000) * 10.0
            sums[(start, key)] += value
        return [(start, key, total) for (start, key), total in sums.items()]
    return None


def _direct_output(name: str, events: list[Any]) -> list[Any]:
    """What the direct runner emits for the workload: the reference where plain Python has none."""
    import shutil
    import tempfile

    from tidal.capability_matrix.sinks import RecordTo, read_records

    folder = tempfile.mkdtemp(prefix="tidal-scaling-ref-")
    try:
        p = td.Pipeline(runner=DirectRunner())
        _ = WORKLOADS[name].build(p | td.Create(events)) | td.ParDo(RecordTo(folder, ("value",)))
        p.run()
        return read_records(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(runner: Any, name: str, events: list[Any], check: ExpectedOutput) -> float:
    workload = WORKLOADS[name]
    gc.collect()
    start = time.perf_counter()
    p = td.Pipeline(runner=runner)
    _ = workload.build(p | td.Create(events)) | check.sink()
    p.run().wait_until_finish()
    seconds = time.perf_counter() - start
    check.verify()
    return seconds


def _canonical(name: str) -> Callable[[list[Any], list[Any]], str | None]:
    canonical = WORKLOADS[name].canonical

    def compare(actual: list[Any], expected: list[Any]) -> str | None:
        a, e = canonical(actual), canonical(expected)
        return None if a == e else f"{len(a)} result(s), expected {len(e)}; first differences {[x for x in a if x not in set(e)][:3]}"

    return compare


def _chart(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, row in results["workloads"].items():
        ps = [int(p) for p in row["ray"]]
        rates = [row["ray"][str(p)]["elements_per_s"] for p in ps]
        lows = [row["ray"][str(p)]["elements_per_s_slowest"] for p in ps]
        highs = [row["ray"][str(p)]["elements_per_s_fastest"] for p in ps]
        line = ax.plot(ps, rates, marker="o", label=f"{name} (Ray)")[0]
        ax.fill_between(ps, lows, highs, alpha=0.15, color=line.get_color())
        ax.axhline(row["direct"]["elements_per_s"], linestyle="--", linewidth=1, color=line.get_color(), label=f"{name} (direct)")
    ax.set_xlabel("parallelism")
    ax.set_ylabel("input elements / s (end to end)")
    ax.set_xticks(sorted({int(p) for row in results["workloads"].values() for p in row["ray"]}))
    ax.set_title(f"Ray runner scaling ({results['cluster_cpus']:g} CPUs, {results['nodes']} node(s))")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(results: dict[str, Any]) -> str:
    ps = sorted({int(p) for row in results["workloads"].values() for p in row["ray"]})
    head = "| workload | elements | direct | " + " | ".join(f"ray p={p}" for p in ps) + " |"
    lines = [head, "|" + "---|" * (3 + len(ps))]
    for name, row in results["workloads"].items():
        cells = [name, f"{row['elements']:,}", f"{row['direct']['elements_per_s']:,.0f}/s"]
        for p in ps:
            r = row["ray"].get(str(p))
            cells.append(
                "–"
                if r is None
                else f"{r['elements_per_s']:,.0f}/s ({r['elements_per_s_slowest']:,.0f}–{r['elements_per_s_fastest']:,.0f})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="a Ray cluster to use (default: a local Ray started here)")
    parser.add_argument("--elements", type=int, default=300_000, help="input elements per workload (default 300,000)")
    parser.add_argument("--workloads", default=",".join(SCALING_WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-parallelism", type=int, help="the highest parallelism (default: the cluster's CPUs)")
    parser.add_argument("--out", default="bench-out/ray_scaling", help="folder for the JSON, Markdown and PNG")
    args = parser.parse_args(argv)
    import ray

    from tidal.runners.ray import RayRunner

    started = not ray.is_initialized()
    init_s = start_ray(args.address)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    levels = parallelisms(int(cpus), args.max_parallelism)
    results: dict[str, Any] = {"cluster_cpus": cpus, "nodes": nodes, "ray_init_s": init_s, "workloads": {}}
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    try:
        for name in names:
            events = WORKLOADS[name].make_input(args.elements, 0.0)
            expected = _expected(name, events)
            if expected is None:
                expected = _direct_output(name, events)
            check = ExpectedOutput(f"{name} ({args.elements:,})", expected, compare=_canonical(name))
            direct = [_run(DirectRunner(), name, events, check) for _ in range(args.repeats)]
            row: dict[str, Any] = {
                "elements": args.elements,
                "direct": {"times_s": direct, "elements_per_s": args.elements / statistics.median(direct)},
                "ray": {},
            }
            for n in levels:
                runner = RayRunner(address=args.address, parallelism=n)
                _run(runner, name, events, check)  # warms the pool for this parallelism
                times = [_run(runner, name, events, check) for _ in range(args.repeats)]
                row["ray"][str(n)] = {
                    "times_s": times,
                    "elements_per_s": args.elements / statistics.median(times),
                    "elements_per_s_fastest": args.elements / min(times),
                    "elements_per_s_slowest": args.elements / max(times),
                }
                print(
                    f"{name:<10} p={n:<3} {row['ray'][str(n)]['elements_per_s']:>12,.0f} elements/s "
                    f"(direct {row['direct']['elements_per_s']:,.0f}/s)",
                    file=sys.stderr,
                )
            results["workloads"][name] = row
    except BenchmarkMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started:
            ray.shutdown()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ray_scaling.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = _markdown(results)
    with open(os.path.join(args.out, "ray_scaling.md"), "w") as f:
        f.write(f"Ray runner scaling: {cpus:g} CPUs, {nodes} node(s); medians of {args.repeats} runs (slowest–fastest)\n\n")
        f.write(table)
    _chart(results, os.path.join(args.out, "ray_scaling.png"))
    print(table)
    print(f"wrote {args.out}/ray_scaling.json, .md and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
