"""A worker dies mid-stream, then a whole node; each time the job recovers and its output is exactly once.

A stream of sensor readings (a replayable ``GeneratorSource``) is summed per
sensor and 1 s window on the Ray runner, with a checkpoint every half
second, into text files published by ``WriteToText`` when each checkpoint
completes. The example starts a Ray cluster of three nodes on this machine
(``ray.cluster_utils.Cluster``, all on 127.0.0.1) and runs the job twice at
parallelism 3, its workers spread over the nodes:

* ``worker``: once the stream is under way, one worker is killed with ``ray.kill``;
* ``node``: once the stream is under way, a node that runs some of the job's
  workers is removed (its raylet and every process on it die at once).

Each time the job restarts from the last complete checkpoint on the workers
(and nodes) that remain, the source replays from the offset recorded in it,
and the published files hold every window's sum once: the example checks
them against a plain-Python computation. The checkpoints go to a folder every
node reaches (the nodes share this machine's disk; on a real cluster, a
shared folder or an fsspec URL such as ``s3://bucket/ckpt``).

Run: ``python examples/fault_tolerance.py [--events N] [--scenario worker|node|both]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
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


def start_cluster(nodes: int = 3) -> Any:
    """A Ray cluster of ``nodes`` nodes on 127.0.0.1, the driver connected to it."""
    # Before Ray is imported: keep every node, the GCS and the driver on the loopback interface.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Ray's files for this cluster (sessions, sockets, the "current cluster" record
    # that a later ray.init() would look for) go to a folder of its own, removed at
    # the end; short, as Ray's socket paths must stay under 108 characters.
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="tidal-ft-", dir="/tmp")
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            # A lost node is noticed within about a second.
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 300,
                "health_check_timeout_ms": 300,
                "health_check_failure_threshold": 3,
            },
        },
    )
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    return cluster


def run(events: int, scenario: str, cluster: Any) -> bool:
    """Run the job once, injure it as ``scenario`` says once the stream is under way, check the output."""
    import ray

    folder = tempfile.mkdtemp(prefix="tidal-fault-tolerance-")
    runner = RayRunner(parallelism=3, checkpoint_dir=os.path.join(folder, "checkpoints"), checkpoint_interval=0.5)
    p = td.Pipeline(runner=runner)
    (
        p
        | "Readings" >> td.Read(td.GeneratorSource(readings(events)))
        | td.WindowInto(td.window.FixedWindows(1))
        | td.CombinePerKey(sum)
        | td.MapTuple(lambda k, v, w=td.DoFn.WindowParam: f"{k},{int(w.start)},{v}")
        | td.WriteToText(os.path.join(folder, "out", "sums"))
    )
    result = p.run()  # an unbounded source: the job runs in the background
    while not result.checkpoints and not result.state.is_terminal:  # type: ignore[attr-defined]
        time.sleep(0.02)  # the stream is under way once a checkpoint has completed
    workers = list(result._actors)  # type: ignore[attr-defined]
    if scenario == "worker":
        print("killing one worker of the running job ...")
        ray.kill(workers[-1], no_restart=True)
    else:
        where = ray.get([w.describe.remote() for w in workers])
        # Not the head node: the GCS and the driver live there.
        node = next(n for n in cluster.worker_nodes if any(d["node"] == n.node_id for d in where))
        print("removing a node of the running job (every worker on it dies with it) ...")
        # As when a machine is lost: its workers die at the same instant as its raylet
        # (left alone, a worker whose raylet has gone notices only a while later).
        for d in where:
            if d["node"] == node.node_id:
                os.kill(d["pid"], signal.SIGKILL)
        cluster.remove_node(node, allow_graceful=False)
    result.wait_until_finish(300)
    for r in result.recoveries:  # type: ignore[attr-defined]
        where = f"checkpoint {r.checkpoint}" if r.checkpoint is not None else "the start"
        print(f"recovered from {where} in {r.seconds:.2f} s after: {r.failure[:70]}")
    print(f"checkpoints completed: {len(result.checkpoints)}")  # type: ignore[attr-defined]
    published = Counter(td.io.read_text(os.path.join(folder, "out", "sums-*")))
    expected = Counter(
        f"sensor{s},{w},{sum(i % 10 for i in range(events) if i % SENSORS == s and i // 1000 == w)}"
        for w in range((events + 999) // 1000)
        for s in range(SENSORS)
    )
    duplicated = sum(c - 1 for c in published.values() if c > 1)
    missing = sum((expected - published).values())
    print(f"published {sum(published.values())} window sums: {missing} missing, {duplicated} duplicated")
    print("exactly once: " + ("yes" if published == expected else "NO"))
    return published == expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=16_000)
    parser.add_argument("--scenario", choices=["worker", "node", "both"], default="both")
    args = parser.parse_args(argv)
    cluster = start_cluster()
    import ray

    try:
        scenarios = ["worker", "node"] if args.scenario == "both" else [args.scenario]
        ok = all([run(args.events, scenario, cluster) for scenario in scenarios])
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
