"""The Ray runner on a real multi-node cluster: three raylets on 127.0.0.1 (the ``ray_cluster`` fixture).

* Every node, the GCS and the driver are on the loopback interface.
* A job's workers are spread over the nodes, so elements really cross them.
* A worker node removed in the middle of a checkpointed job (every actor on it
  dies at once): the job restarts from the last complete checkpoint on the
  nodes that remain, and the published output is exactly once.
* The conformance cases of the rows that move data between stages (grouping,
  combining, flattening, side inputs, windows, exactly-once after failure)
  pass on the cluster.

These tests run after all others (see conftest.py): the driver leaves the
shared local Ray for the cluster once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import cloudpickle
import pytest

import tidal as td
from tidal.capability_matrix.case import all_cases
from tidal.capability_matrix.execute import run_case
from tidal.capability_matrix.sinks import RecordTo, read_records
from tidal.runners.core.keygroups import key_group_of, owner_of

ray = pytest.importorskip("ray")
from ray_support import EXPECTED_NUMBERS, EXPECTED_SUMS, Stream, published, sums_and_numbers, wait_for  # noqa: E402

from tidal.runners.ray import RayRunner  # noqa: E402
from tidal.runners.ray.pool import get_pool  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_cluster")
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests' modules


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n["Alive"]]


def test_every_node_the_gcs_and_the_driver_are_on_the_loopback_interface(ray_cluster: Any) -> None:
    nodes = _alive_nodes()
    assert len(nodes) == 3
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    assert ray_cluster.address.startswith("127.0.0.1:")
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert ray.util.get_node_ip_address() == "127.0.0.1"


class WhereAmI(td.DoFn):
    """Tags each element with the node that processed it."""

    def setup(self) -> None:
        self.node = ray.get_runtime_context().get_node_id()

    def process(self, element: Any) -> Iterable[Any]:
        yield (element, self.node)


def test_stage_workers_are_spread_over_the_nodes_and_elements_cross_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with td.Pipeline(runner=RayRunner(parallelism=3)) as p:
        _ = (
            p
            | td.Create(list(range(300)))
            | "Read on" >> td.ParDo(WhereAmI())
            | td.MapTuple(lambda v, node: (v % 30, (v, node)))
            | td.GroupByKey()
            | "Grouped on" >> td.ParDo(WhereAmI())
            | td.ParDo(RecordTo(str(out), ("value",)))
        )
    records = read_records(out)
    assert sorted(k for (k, _), _ in records) == list(range(30))
    assert sorted(v for (_, vs), _ in records for v, _ in vs) == list(range(300))
    read_on = {node for (_, vs), _ in records for _, node in vs}
    grouped_on = {node for _, node in records}
    assert len({owner_of(key_group_of(k, 128), 3, 128) for k in range(30)}) == 3  # the keys reach every instance
    assert len(read_on) == 3 and len(grouped_on) == 3  # each stage's three workers on three nodes
    crossed = sum(1 for (_, vs), consumer in records for _, producer in vs if producer != consumer)
    assert crossed > 0


def test_a_node_lost_mid_job_restarts_from_the_last_checkpoint_with_exact_output(ray_cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The checkpoint store is a folder every node reaches (here: the nodes share the machine's disk).
    runner = RayRunner(parallelism=3, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.25, bundle_size=100)
    p = td.Pipeline(runner=runner)
    sums_and_numbers(p, out, Stream(pause=0.25))  # about 5 s of stream once the workers run
    result = p.run()
    try:
        wait_for(
            lambda: len(result.checkpoints) >= 1 or result.state.is_terminal,  # type: ignore[attr-defined]
            timeout=120,
            what="a checkpoint completes",
        )
        assert result.state is td.PipelineState.RUNNING, result.wait_until_finish(0)
        newest = result.checkpoints[-1]  # type: ignore[attr-defined]
        workers = list(result._actors)  # type: ignore[attr-defined]
        where = ray.get([w.describe.remote() for w in workers])
        victim = next(n for n in ray_cluster.worker_nodes if any(d["node"] == n.node_id for d in where))  # never the head
        # Every process of the node dies at once, as when a machine is lost (a worker whose
        # raylet is killed would otherwise notice only a while later).
        for d in where:
            if d["node"] == victim.node_id:
                os.kill(d["pid"], signal.SIGKILL)
        ray_cluster.remove_node(victim, allow_graceful=False)
        result.wait_until_finish(240)
        assert result.state is td.PipelineState.DONE
        (recovery,) = result.recoveries  # type: ignore[attr-defined]
        assert recovery.checkpoint is not None and recovery.checkpoint >= newest
        assert result.restored_from == recovery.checkpoint
        assert published(out) == (EXPECTED_SUMS, EXPECTED_NUMBERS)
        # The restarted job ran on the nodes that remain; no worker of the lost node is pooled.
        alive = {n["NodeID"] for n in _alive_nodes()}
        assert victim.node_id not in alive
        idle = get_pool().idle()
        assert {d["node"] for d in ray.get([w.describe.remote() for w in idle])} <= alive
    finally:
        if len(ray_cluster.worker_nodes) < 2:  # give the cluster back its third node
            ray_cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
            ray_cluster.wait_for_nodes()
            from tidal.runners.ray.pool import alive_nodes

            deadline = time.monotonic() + 30
            while len(alive_nodes(refresh=True)) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)


#: The rows whose cases move data between stages.
ACROSS_STAGES = (
    "GroupByKey",
    "Combine",
    "Flatten",
    "Side inputs",
    "Global windows",
    "Fixed windows",
    "Sliding windows",
    "Session windows",
    "Exactly-once after failure",
)


@pytest.mark.parametrize("case", [c for c in all_cases() if c.row in ACROSS_STAGES], ids=lambda c: c.id)
def test_conformance_case_on_the_cluster(case: Any) -> None:
    # Bundles of 10,000 (not 50,000): a recovery case paces its input per bundle until the first
    # checkpoint completes, and three readers of a bounded input get enough bundles for that.
    result = run_case(case, RayRunner(parallelism=3, bundle_size=10_000))
    if "never happened, so recovery was not exercised" in result.message:
        # A bounded input can still end before the cluster's first checkpoint completes; then
        # nothing was tested (not a failure of the runner): run the case once more, as a new job.
        result = run_case(case, RayRunner(parallelism=3, bundle_size=10_000))
    assert result.passed, f"{case.id} on a 3-node cluster: {result.outcome}: {result.message}"
