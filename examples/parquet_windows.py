"""Parquet in, Parquet out: the mean temperature per station and minute of a folder of readings.

The input is a folder of Parquet files with one row per reading (station,
temperature, time in seconds); the example writes one if the folder has
none. The readings are read as timestamped (station, temperature) pairs,
averaged per station and one-minute window, and written back to Parquet
with Beam's shard names. On the micro-batch runner the read and the
aggregate run on Arrow kernels from the files to the windows.

    python examples/parquet_windows.py
    python -m tidal run examples/parquet_windows.py --runner microbatch
    python examples/parquet_windows.py --input readings/ --output out/means
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import tidal as td
from tidal import combiners, window
from tidal.io.parquetio import ParquetSource

START = 1_717_232_400  # 2024-06-01 09:00:00 UTC, in seconds since the epoch
STATIONS = ["bergen", "lima", "oslo", "pune", "quito"]
OUTPUT_SCHEMA = pa.schema([("station", pa.string()), ("minute", pa.timestamp("s", tz="UTC")), ("mean_temp", pa.float64())])
DEFAULT_FOLDER = os.path.join(tempfile.gettempdir(), "tidal-parquet-windows")


def write_readings(folder: str, files: int = 3, per_file: int = 4000) -> None:
    """A reproducible folder of readings: ``files`` Parquet files over ten minutes, in row groups."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(42)
    for f in range(files):
        times = sorted(rng.uniform(0, 600) for _ in range(per_file))
        stations = [rng.choice(STATIONS) for _ in range(per_file)]
        temps = [round(10 + STATIONS.index(s) * 3 + rng.gauss(0, 2), 2) for s in stations]
        table = pa.table({"station": stations, "temp": temps, "ts": [START + t for t in times]})
        pq.write_table(table, os.path.join(folder, f"readings-{f}.parquet"), row_group_size=1000)


class ToRow(td.DoFn):
    """(station, mean) in a window -> the output row, with the window's start as the minute."""

    def process(self, kv: tuple[str, float], w: Any = td.DoFn.WindowParam) -> Any:
        station, mean = kv
        yield {"station": station, "minute": w.start.to_utc_datetime(), "mean_temp": mean}


def build(p: td.Pipeline, input_folder: str, output_prefix: str) -> None:
    readings = ParquetSource(os.path.join(input_folder, "*.parquet"))
    (
        p
        | "Read" >> td.io.ReadArrow(readings, key="station", value="temp", timestamp="ts")
        | "PerMinute" >> td.WindowInto(window.FixedWindows(60))
        | "Mean" >> td.CombinePerKey(combiners.MeanCombineFn())
        | "ToRow" >> td.ParDo(ToRow())
        | "Write" >> td.WriteToParquet(output_prefix, OUTPUT_SCHEMA, file_name_suffix=".parquet")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=os.path.join(DEFAULT_FOLDER, "readings"), help="a folder of Parquet readings")
    parser.add_argument("--output", default=os.path.join(DEFAULT_FOLDER, "out", "means"), help="the output file prefix")
    args = parser.parse_args(argv)
    if not any(name.endswith(".parquet") for name in (os.listdir(args.input) if os.path.isdir(args.input) else [])):
        write_readings(args.input)
        print(f"wrote example readings to {args.input}")
    with td.Pipeline() as p:
        build(p, args.input, args.output)
    folder, base = os.path.split(args.output)
    names = sorted(n for n in os.listdir(folder) if n.startswith(base + "-") and n.endswith(".parquet"))
    table = pa.concat_tables([pq.read_table(os.path.join(folder, n)) for n in names]).sort_by([("minute", "ascending"), ("station", "ascending")])
    rows = table.to_pylist()
    print(f"{len(rows)} means in {', '.join(names)} (in {folder})")
    print("minute  station  mean temperature")
    for row in rows[: len(STATIONS)]:
        print(f"{row['minute']:%H:%M}   {row['station']:<8} {row['mean_temp']:6.2f}")
    print(f"... {len(rows) - len(STATIONS)} more")


if __name__ == "__main__":
    main()
