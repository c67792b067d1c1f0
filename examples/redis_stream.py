"""Consume a Redis stream: temperature readings in, per-sensor means per 10 s window out.

A producer thread appends 60 readings of three sensors to a Redis stream over
about two seconds (each stamped with its event time in the field ``t``). The
pipeline reads the stream as it arrives, takes each sensor's mean per 10 s
window of event time, and writes the results to another stream, exactly once;
the example then reads that stream back and prints it.

It uses the Redis at ``--url`` or ``TIDAL_REDIS_URL``; without either it starts
a ``redis-server`` of its own on 127.0.0.1 (persistence off) and stops it at
the end. Where there is no server to use it says so and exits 0.

    python examples/redis_stream.py
    python -m tidal run examples/redis_stream.py --runner microbatch
    python examples/redis_stream.py --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from typing import Any, Iterator

import tidal as td
from tidal import window

START = 1_717_232_400  # 2024-06-01 09:00:00 UTC
SENSORS = ("s1", "s2", "s3")
READINGS = 60  # one every 0.5 s of event time: 30 s, three 10 s windows


def reading(i: int) -> dict[str, Any]:
    """Reading ``i``: sensor, temperature (°C, a fixed pattern), event time in seconds."""
    sensor = SENSORS[i % 3]
    return {"sensor": sensor, "celsius": 20 + (i % 3) + (i % 7) / 10, "t": START + i / 2}


def produce(client: Any, stream: str, pause: float = 0.03) -> None:
    """Append the readings to ``stream``, as a live feed would."""
    for i in range(READINGS):
        client.xadd(stream, reading(i))
        time.sleep(pause)


class FormatMean(td.DoFn):
    """(sensor, (mean, count)) -> an output entry naming the window."""

    def process(self, kv: Any, w: Any = td.DoFn.WindowParam) -> Iterator[dict[str, Any]]:
        sensor, (mean, count) = kv
        yield {"window": w.start.micros // 1_000_000, "sensor": sensor, "mean": f"{mean:.2f}", "readings": count}


class MeanAndCount(td.CombineFn):
    def create_accumulator(self) -> tuple[float, int]:
        return 0.0, 0

    def add_input(self, acc: tuple[float, int], value: float) -> tuple[float, int]:
        return acc[0] + value, acc[1] + 1

    def merge_accumulators(self, accs: Any) -> tuple[float, int]:
        totals = list(accs)
        return sum(a[0] for a in totals), sum(a[1] for a in totals)

    def extract_output(self, acc: tuple[float, int]) -> tuple[float, int]:
        return (acc[0] / acc[1] if acc[1] else 0.0), acc[1]


def build(p: td.Pipeline, url: str, readings: str, means: str) -> None:
    (
        p
        | "Readings" >> td.ReadFromRedisStream(url, readings, timestamp_field="t", max_num_records=READINGS)
        | "BySensor" >> td.Map(lambda e: (e["sensor"], float(e["celsius"])))
        | td.WindowInto(window.FixedWindows(10))
        | "Mean" >> td.CombinePerKey(MeanAndCount())
        | td.ParDo(FormatMean())
        | "Means" >> td.WriteToRedisStream(url, means)
    )


def hhmmss(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("TIDAL_REDIS_URL"), help="a Redis to use (default: start one)")
    args = parser.parse_args(argv)
    try:
        import redis
    except ImportError:
        print("Skipping the Redis example: redis-py is not installed (pip install 'tidal[redis]').")
        return 0
    from tidal.testing.redis_server import RedisServer, RedisServerUnavailable

    with ExitStack() as stack:
        url = args.url
        if url is None:
            try:
                server = stack.enter_context(RedisServer().start())
            except RedisServerUnavailable as exc:
                print(f"Skipping the Redis example: {exc}, and no --url or TIDAL_REDIS_URL names a Redis to use.")
                return 0
            url = server.url
            print(f"Started redis-server for this example at {url}")
        client = redis.Redis.from_url(url, decode_responses=True)
        run = uuid.uuid4().hex[:8]
        readings, means = f"tidal-example:{run}:readings", f"tidal-example:{run}:means"
        stack.callback(lambda: client.delete(readings, means))
        producer = threading.Thread(target=produce, args=(client, readings), daemon=True)
        p = td.Pipeline()
        build(p, url, readings, means)
        result = p.run()
        producer.start()
        result.wait_until_finish()
        producer.join()
        rows = sorted(
            (int(f["window"]), f["sensor"], f["mean"], int(f["readings"])) for _, f in client.xrange(means)
        )
        print(f"Mean temperature per sensor and 10 s window ({len(rows)} entries in the output stream):")
        for start, sensor, mean, count in rows:
            print(f"[{hhmmss(start)}, {hhmmss(start + 10)})  {sensor}  {mean} °C  ({count} readings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
