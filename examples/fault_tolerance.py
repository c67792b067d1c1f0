"""A worker dies mid-stream; the job recovers and its output is still exactly once.

A stream of sensor readings (a replayable ``GeneratorSource``) is summed per
sensor and 1 s window on the Ray runner, with a checkpoint every half
second, into text files published by ``WriteToText`` when each checkpoint
completes. Two seconds in, one worker is killed with ``ray.kill``. The job
restarts from the last complete checkpoint, the source replays from the
offset recorded in it, and the published files hold every window's sum once:
the example checks them against a plain-Python computation.

Run: ``python examples/fault_tolerance.py [--events N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from typing import Any, Iterator

import tidal as td
from tidal.runners.ray import RayRunner

SENSORS = 4


def readings(n: int) -> Any:
    def generate() -> Iterator[td.TimestampedValue]:
        for i in range(n):
            if i % 200 == 0:
                time.sleep(0.05)  # about 4 s of stream for 16,000 readings
            yield td.TimestampedValue((f"sensor{i % SENSORS}", i % 10), i / 1000)

    return generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=16_000)
    args = parser.parse_args(argv)
    import ray

    folder = tempfile.mkdtemp(prefix="tidal-fault-tolerance-")
    runner = RayRunner(parallelism=2, checkpoint_dir=os.path.join(folder, "checkpoints"), checkpoint_interval=0.5)
    p = td.Pipeline(runner=runner)
    (
        p
        | "Readings" >> td.Read(td.GeneratorSource(readings(args.events)))
        | td.WindowInto(td.window.FixedWindows(1))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | td.WriteToText(os.path.join(folder, "out", "sums"))
    )
    result = p.run()  # an unbounded source: the job runs in the background
    time.sleep(2.0)
    victim = result._actors[-1]  # type: ignore[attr-defined]
    print("killing one worker of the running job ...")
    ray.kill(victim, no_restart=True)
    result.wait_until_finish(300)
    for r in result.recoveries:  # type: ignore[attr-defined]
        where = f"checkpoint {r.checkpoint}" if r.checkpoint is not None else "the start"
        print(f"recovered from {where} in {r.seconds:.2f} s after: {r.failure[:70]}")
    print(f"checkpoints completed: {len(result.checkpoints)}")  # type: ignore[attr-defined]
    published = Counter(td.io.read_text(os.path.join(folder, "out", "sums-*")))
    expected = Counter(
        f"sensor{s},{w},{sum(i % 10 for i in range(args.events) if i % SENSORS == s and i // 1000 == w)}"
        for w in range((args.events + 999) // 1000)
        for s in range(SENSORS)
    )
    duplicated = sum(c - 1 for c in published.values() if c > 1)
    missing = sum((expected - published).values())
    print(f"published {sum(published.values())} window sums: {missing} missing, {duplicated} duplicated")
    print("exactly once: " + ("yes" if published == expected else "NO"))
    ray.shutdown()
    return 0 if published == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
