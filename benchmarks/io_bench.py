"""File I/O benchmark: rows/s to read and write Parquet, CSV, JSON lines and text, per runner,
against the library doing the same alone in the same run.

The data are ``--rows`` rows of ``{"id": int, "name": str, "value": float}``
(text: the line ``"<id>,<name>,<value>"``). For each format:

* **read**: the files (4 of them) are read and every row is tallied: the
  row count and the sum of ``id`` (text: the total length of the lines).
  tidal: ``ReadFromX(pattern) | ParDo(Tally())``, where ``Tally`` is a batched
  DoFn that adds to two metrics counters. Alone: ``pyarrow.parquet.read_table``,
  ``pyarrow.csv.read_csv``, ``json.loads`` of every line, and a Python loop
  over the lines of ``open`` (stripping the line ends), with the same tally.
* **write**: the rows in memory (made once, outside the timing) are written. tidal: Parquet and
  CSV from an Arrow table (``ReadArrow(table) | WriteToParquet(prefix, schema)``,
  ``| WriteToCsv(prefix)``), JSON and text from Python values
  (``Create(rows) | WriteToJson(prefix)``, ``Create(lines) | WriteToText(prefix)``).
  Alone: ``pyarrow.parquet.write_table`` (no compression, as WriteToParquet's
  default ``codec='none'``), ``pyarrow.csv.write_csv``, and a Python loop that
  writes ``json.dumps(row)`` lines or the lines to ``open(path, "w")``.

Every run's output is checked before any figure is printed: the tally (or
the written files, read back with the library) must equal the input's.
The figure is the median of ``--repeats`` runs; the input files are made
once, outside the timing. The direct runner runs with ``strict=False``.

Targets on the micro-batch runner: Parquet and CSV at least 0.7 times the
library alone, JSON lines and text at least 0.5 times the Python loop.

Run: ``python -m tidal.benchmarks.io_bench [--rows N] [--repeats R] [--runners microbatch,direct,ray]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

import tidal as td
from tidal.benchmarks.ray_session import start_ray
from tidal.io.arrowio import ReadArrow

FORMATS = ("parquet", "csv", "json", "text")
#: The micro-batch runner's targets: tidal's rows/s over the library's, per format.
TARGETS = {"parquet": 0.7, "csv": 0.7, "json": 0.5, "text": 0.5}
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("value", pa.float64())])
FILES = 4


class BenchmarkCheckFailed(AssertionError):
    """A run's output did not match its input: no figure is printed for it."""


# -- the data -------------------------------------------------------------------------------
def make_table(n: int) -> pa.Table:
    ids = pa.array(range(n), pa.int64())
    names = pc.binary_join_element_wise("name-", pc.cast(pc.multiply(ids, 7919), pa.string()), "")
    values = pc.divide(pc.cast(ids, pa.float64()), 8.0)
    return pa.table([ids, names, values], schema=SCHEMA)


def expected_tally(table: pa.Table, fmt: str) -> tuple[int, int]:
    """(rows, checksum): the sum of ids, or for text the total length of the lines."""
    if fmt == "text":
        return table.num_rows, sum(len(line) for line in text_lines(table))
    return table.num_rows, pc.sum(table.column("id")).as_py() or 0


def text_lines(table: pa.Table) -> list[str]:
    return [f"{i},{n},{v!r}" for i, n, v in zip(*(c.to_pylist() for c in table.columns))]


def write_inputs(table: pa.Table, folder: str) -> dict[str, str]:
    """The input files of each format (FILES of them), and the pattern that matches them."""
    patterns = {}
    step = -(-table.num_rows // FILES)
    for fmt in FORMATS:
        sub = os.path.join(folder, fmt)
        os.makedirs(sub)
        for f, start in enumerate(range(0, table.num_rows, step)):
            part = table.slice(start, step)
            path = os.path.join(sub, f"part-{f}")
            if fmt == "parquet":
                pq.write_table(part, path, compression="none")
            elif fmt == "csv":
                pcsv.write_csv(part, path)
            elif fmt == "json":
                with open(path, "w", encoding="utf-8") as out:
                    out.write("".join(json.dumps(r) + "\n" for r in part.to_pylist()))
            else:
                with open(path, "w", encoding="utf-8") as out:
                    out.write("".join(line + "\n" for line in text_lines(part)))
        patterns[fmt] = os.path.join(sub, "part-*")
    return patterns


# -- tidal pipelines -----------------------------------------------------------------------------
_ROWS = td.Metrics.counter("io_bench", "rows")
_CHECK = td.Metrics.counter("io_bench", "checksum")


class Tally(td.DoFn):
    """Counts the rows of each batch and adds up their ``id`` column (or a text line's length)."""

    def process_batch(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        _ROWS.inc(batch.num_rows)
        if "id" in batch.schema.names:
            _CHECK.inc(pc.sum(batch.column("id")).as_py() or 0)
        else:
            _CHECK.inc(pc.sum(pc.utf8_length(batch.column("value"))).as_py() or 0)
        return ()


def read_pipeline(fmt: str, pattern: str) -> Callable[[td.Pipeline], None]:
    def build(p: td.Pipeline) -> None:
        reader = {"parquet": td.ReadFromParquet, "csv": td.ReadFromCsv, "json": td.ReadFromJson, "text": td.ReadFromText}[fmt]
        _ = p | reader(pattern) | td.ParDo(Tally())

    return build


def write_pipeline(fmt: str, data: Any, prefix: str) -> Callable[[td.Pipeline], None]:
    """``data``: the Arrow table (Parquet, CSV), the rows (JSON) or the lines (text)."""

    def build(p: td.Pipeline) -> None:
        if fmt == "parquet":
            _ = p | ReadArrow(data) | td.WriteToParquet(prefix, SCHEMA)
        elif fmt == "csv":
            _ = p | ReadArrow(data) | td.WriteToCsv(prefix)
        elif fmt == "json":
            _ = p | td.Create(data) | td.WriteToJson(prefix)
        else:
            _ = p | td.Create(data) | td.WriteToText(prefix)

    return build


def tally_of(result: td.PipelineResult) -> tuple[int, int]:
    counters = result.metrics().query(td.MetricsFilter().with_namespace("io_bench"))["counters"]
    totals = {"rows": 0, "checksum": 0}
    for c in counters:
        totals[c.key.metric.name] += c.committed
    return totals["rows"], totals["checksum"]


def written_tally(fmt: str, files: list[str]) -> tuple[int, int]:
    """Read what a write produced with the library alone: (rows, checksum)."""
    rows = checksum = 0
    for path in files:
        if fmt == "parquet":
            t = pq.read_table(path)
            rows, checksum = rows + t.num_rows, checksum + (pc.sum(t.column("id")).as_py() or 0)
        elif fmt == "csv":
            t = pcsv.read_csv(path)
            rows, checksum = rows + t.num_rows, checksum + (pc.sum(t.column("id")).as_py() or 0)
        elif fmt == "json":
            with open(path, encoding="utf-8") as f:
                for line in f:
                    rows += 1
                    checksum += json.loads(line)["id"]
        else:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    rows += 1
                    checksum += len(line.rstrip("\n"))
    return rows, checksum


# -- the library alone ------------------------------------------------------------------------------
def library_read(fmt: str, pattern: str) -> tuple[int, int]:
    import glob

    rows = checksum = 0
    for path in sorted(glob.glob(pattern)):
        if fmt == "parquet":
            t = pq.read_table(path)
        elif fmt == "csv":
            t = pcsv.read_csv(path)
        elif fmt == "json":
            records = []
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        records.append(json.loads(line))
            rows += len(records)
            checksum += sum(r["id"] for r in records)
            continue
        else:
            lines = []
            with open(path, encoding="utf-8") as f:
                for line in f:
                    lines.append(line.rstrip("\n"))
            rows += len(lines)
            checksum += sum(map(len, lines))
            continue
        rows += t.num_rows
        checksum += pc.sum(t.column("id")).as_py() or 0
    return rows, checksum


def library_write(fmt: str, data: Any, path: str) -> None:
    if fmt == "parquet":
        pq.write_table(data, path, compression="none")
    elif fmt == "csv":
        pcsv.write_csv(data, path)
    elif fmt == "json":
        with open(path, "w", encoding="utf-8") as f:
            for row in data:
                f.write(json.dumps(row) + "\n")
    else:
        with open(path, "w", encoding="utf-8") as f:
            for line in data:
                f.write(line + "\n")


# -- measuring ---------------------------------------------------------------------------------------
def make_runner(name: str) -> Any:
    if name == "direct":
        from tidal.runners.direct import DirectRunner

        return DirectRunner(strict=False)
    if name == "microbatch":
        from tidal.runners.microbatch import MicroBatchRunner

        return MicroBatchRunner()
    if name == "ray":
        from tidal.runners.ray import RayRunner

        return RayRunner(parallelism=2)
    raise ValueError(f"unknown runner {name!r}")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def run_tidal(runner: str, build: Callable[[td.Pipeline], None]) -> td.PipelineResult:
    p = td.Pipeline(runner=make_runner(runner))
    build(p)
    result = p.run()
    result.wait_until_finish()
    return result


def measure(
    fmt: str, op: str, runner: str, table: pa.Table, values: dict[str, Any], patterns: dict[str, str], work: str, repeats: int
) -> dict[str, Any]:
    """Median seconds of tidal and of the library for one (format, operation, runner), checked."""
    want = expected_tally(table, fmt)
    data = values.get(fmt, table)
    tidal_s, alone_s = [], []
    for r in range(repeats):
        out = os.path.join(work, f"{fmt}-{op}-{runner}-{r}")
        os.makedirs(out)
        if op == "read":
            seconds, result = timed(lambda: run_tidal(runner, read_pipeline(fmt, patterns[fmt])))
            got = tally_of(result)
            lib_s, lib_got = timed(lambda: library_read(fmt, patterns[fmt]))
        else:
            prefix = os.path.join(out, "tidal")
            seconds, _ = timed(lambda: run_tidal(runner, write_pipeline(fmt, data, prefix)))
            got = written_tally(fmt, sorted(os.path.join(out, n) for n in os.listdir(out) if n.startswith("tidal-")))
            alone = os.path.join(out, "alone")
            lib_s, _ = timed(lambda: library_write(fmt, data, alone))
            lib_got = written_tally(fmt, [alone])
        for who, tally in (("tidal", got), ("the library alone", lib_got)):
            if tally != want:
                raise BenchmarkCheckFailed(f"{fmt} {op} on {runner}: {who} gave (rows, checksum) {tally}, expected {want}")
        tidal_s.append(seconds)
        alone_s.append(lib_s)
        shutil.rmtree(out, ignore_errors=True)
    t, a = statistics.median(tidal_s), statistics.median(alone_s)
    n = table.num_rows
    return {
        "format": fmt, "op": op, "runner": runner, "rows": n,
        "tidal_rows_per_s": n / t, "alone_rows_per_s": n / a, "ratio": a / t,
        "tidal_s": tidal_s, "alone_s": alone_s,
    }


def format_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| format | op | runner | tidal rows/s | alone rows/s | tidal / alone | target (micro-batch) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        target = ""
        if r["runner"] == "microbatch":
            goal = TARGETS[r["format"]]
            target = f"≥ {goal} {'✓' if r['ratio'] >= goal else '✕'}"
        alone = "Python loop" if r["format"] in ("json", "text") else "pyarrow"
        lines.append(
            f"| {r['format']} | {r['op']} | {r['runner']} | {r['tidal_rows_per_s']:,.0f} | "
            f"{r['alone_rows_per_s']:,.0f} ({alone}) | {r['ratio']:.2f} | {target} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of input (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown (default 3)")
    parser.add_argument("--runners", default="microbatch,direct", help="comma-separated: microbatch, direct, ray")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated: parquet, csv, json, text")
    parser.add_argument("--ops", default="read,write", help="comma-separated: read, write")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    runners = [r for r in args.runners.split(",") if r]
    formats = [f for f in args.formats.split(",") if f]
    ops = [o for o in args.ops.split(",") if o]
    if "ray" in runners:
        start_ray()
    work = tempfile.mkdtemp(prefix="tidal-io-bench-")
    results = []
    try:
        table = make_table(args.rows)
        patterns = write_inputs(table, os.path.join(work, "in"))
        values = {"json": table.to_pylist(), "text": text_lines(table)}  # what JSON and text write, made once
        for fmt in formats:
            for op in ops:
                for runner in runners:
                    r = measure(fmt, op, runner, table, values, patterns, work, args.repeats)
                    results.append(r)
                    print(
                        f"{fmt:>7} {op:<5} {runner:<10} tidal {r['tidal_rows_per_s']:>12,.0f} rows/s   "
                        f"alone {r['alone_rows_per_s']:>12,.0f} rows/s   {r['ratio']:.2f}x",
                        file=sys.stderr, flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.rows:,} rows, median of {args.repeats} runs (checked against the input before printing)\n")
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
