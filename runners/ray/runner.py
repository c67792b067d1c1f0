"""RayRunner: each stage of the plan as N Ray actors, streaming batches between them.

``Pipeline(runner="ray")`` starts a local Ray instance when none is running
(and shuts down only what it started); ``RayRunner(address=...)`` or the
``RAY_ADDRESS`` environment variable attaches to a cluster. Stages run
concurrently; keyed exchanges route each key to one instance by a stable
hash; side inputs are broadcast; Flatten fans in. An error in user code
fails the job with the step, the element and the remote traceback, and every
actor of the job is removed.
"""

from __future__ import annotations

import atexit
import os
import pickle
import re
from typing import TYPE_CHECKING, Any

import attrs
import cloudpickle

from tidal.model.primitives import BoundedSource, Impulse, ParDo, Read
from tidal.model.pvalue import pickling_graph
from tidal.model.result import PipelineResult
from tidal.model.teststream import TestStream
from tidal.runners.core.errors import PipelineExecutionError
from tidal.runners.core.executor import edge_id_of, partial_edge_id
from tidal.runners.core.plan import ExecutionPlan, build_plan, is_stateful_pardo
from tidal.runners.ray.exchange import Edge
from tidal.runners.result import RunningResult
from tidal.runners.runner import Runner

if TYPE_CHECKING:
    from tidal.model.pipeline import Pipeline

__all__ = ["RayRunner", "RayPipelineResult", "plan_edges"]


def plan_edges(plan: ExecutionPlan) -> list[Edge]:
    """Every exchange edge between stages, with how its elements are routed."""
    producer: dict[Any, Any] = {}
    for node in plan.graph.primitives:
        for pc in node.outputs.values():
            producer[pc] = node
    edges: dict[tuple[str, int], Edge] = {}
    for node in plan.graph.primitives:
        consumer_stage = plan.stage_of[node].id
        keyed_root = plan.stage_of[node].root is node and plan.stage_of[node].input_kind == "keyed"
        if node in plan.lifted:
            src = plan.stage_of[producer[node.inputs[0]]].id
            edges[(partial_edge_id(node), consumer_stage)] = Edge(partial_edge_id(node), src, consumer_stage, "keyed")
        else:
            for pc in node.inputs:
                src = plan.stage_of[producer[pc]].id
                if src != consumer_stage:
                    kind = "keyed" if keyed_root else "forward"
                    edges[(edge_id_of(pc), consumer_stage)] = Edge(edge_id_of(pc), src, consumer_stage, kind)
        for view in node.side_inputs:
            src = plan.stage_of[producer[view.pcoll]].id
            if src != consumer_stage:
                edges[(edge_id_of(view.pcoll), consumer_stage)] = Edge(edge_id_of(view.pcoll), src, consumer_stage, "broadcast")
    return list(edges.values())


def _unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside (possibly nested) Ray task errors."""
    import ray.exceptions

    seen = 0
    while isinstance(exc, ray.exceptions.RayTaskError) and seen < 20:
        cause = getattr(exc, "cause", None)
        if cause is None:
            break
        if not isinstance(cause, ray.exceptions.RayTaskError):
            remote_tb = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
            if isinstance(cause, PipelineExecutionError):
                cause.remote_traceback = remote_tb  # type: ignore[attr-defined]
                cause.add_note(f"remote traceback:\n{remote_tb}")
            return cause
        exc = cause
        seen += 1
    return exc


class RayPipelineResult(RunningResult):
    """A job running on Ray actors; ``cancel`` stops it and removes its actors."""

    def __init__(self, runner: "RayRunner") -> None:
        super().__init__()
        self._runner = runner
        self._actors: list[Any] = []

    def _stop_workers(self) -> None:
        self._runner._kill(self._actors)


class RayRunner(Runner):
    """Runs each stage as ``parallelism`` Ray actors (per-stage overrides by label)."""

    name = "ray"
    execution_model = "native streaming (Ray actors, batches with in-band watermarks)"
    guarantee = "exactly-once without failures; at-most-once state on actor failure (no checkpoints yet)"
    fault_tolerance = "none yet: a failed actor fails the job"

    def __init__(
        self,
        address: str | None = None,
        parallelism: int = 2,
        stage_parallelism: dict[str, int] | None = None,
        max_in_flight: int = 4,
        bundle_size: int = 50_000,
        strict: bool = False,
    ) -> None:
        if parallelism < 1:
            raise ValueError(f"parallelism must be at least 1, got {parallelism}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.address = address
        self.parallelism = parallelism
        self.stage_parallelism = dict(stage_parallelism or {})
        self.max_in_flight = max_in_flight
        self.bundle_size = bundle_size
        self.strict = strict
        self._started_ray = False

    # -- Ray lifecycle -----------------------------------------------------------
    def _ensure_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(
                num_cpus=max(os.cpu_count() or 2, 2),
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
                configure_logging=False,
            )
            self._started_ray = True
            atexit.register(self.shutdown)

    def shutdown(self) -> None:
        """Stop the local Ray instance if this runner started it."""
        import ray

        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False

    def _kill(self, actors: list[Any]) -> None:
        import ray

        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass

    # -- planning ------------------------------------------------------------------
    def _parallelism_of(self, plan: ExecutionPlan, stage: Any) -> int:
        root = stage.root
        for label, n in self.stage_parallelism.items():
            if any(node.full_label == label or node.full_label.startswith(label + "/") for node in stage.nodes):
                return max(1, n)
        t = root.transform
        if isinstance(t, (TestStream, Impulse)):
            return 1
        if isinstance(t, Read) and not isinstance(t.source, BoundedSource):
            return 1
        if isinstance(t, ParDo) and not is_stateful_pardo(root) and not root.inputs:
            return 1
        return self.parallelism

    def run_pipeline(self, pipeline: "Pipeline") -> PipelineResult:
        self._ensure_ray()
        result = RayPipelineResult(self)
        graph = pipeline.graph()
        unbounded = any(
            isinstance(n.transform, Read) and not n.transform.source.is_bounded for n in graph.primitives
        )
        if unbounded:
            result.start_thread(lambda: self._execute(pipeline, result), "tidal-ray-driver")
            return result
        result.execute(lambda: self._execute(pipeline, result))
        if result._error is not None:
            raise result._error
        return result

    def _execute(self, pipeline: "Pipeline", result: RayPipelineResult) -> None:
        import ray

        from tidal.runners.ray.worker import StageWorker

        plan = build_plan(pipeline.graph())
        edges = plan_edges(plan)
        manual_clock = any(isinstance(n.transform, TestStream) for n in plan.graph.primitives)
        plan_bytes = self._pickle_plan(plan)
        counts = {s.id: self._parallelism_of(plan, s) for s in plan.stages}
        senders = {e.edge_id: counts[e.producer_stage] for e in edges}
        remote_cls = ray.remote(num_cpus=0, max_restarts=0)(StageWorker)
        workers: dict[int, list[Any]] = {}
        try:
            for stage in plan.stages:
                n = counts[stage.id]
                # Pickled here, once: Ray's own serializer is several times slower on
                # large lists of small tuples than pickle protocol 5 on a bytes blob.
                splits = [_dumps(s) for s in self._source_splits(stage, n)]
                workers[stage.id] = [
                    remote_cls.remote(
                        plan_bytes, stage.id, i, senders, splits[i], self.strict, self.bundle_size, manual_clock, self.max_in_flight
                    )
                    for i in range(n)
                ]
                result._actors.extend(workers[stage.id])
            for stage in plan.stages:
                routes: dict[str, tuple[str, list[Any]]] = {}
                for e in edges:
                    if e.producer_stage == stage.id:
                        routes[e.edge_id] = (e.kind, workers[e.consumer_stage])
                ray.get([w.connect.remote(routes) for w in workers[stage.id]])
            ray.get([w.open.remote() for ws in workers.values() for w in ws])
            ray.get([w.run_sources.remote() for ws in workers.values() for w in ws])
            for stage in plan.stages:  # topological: each drain waits for what it sent
                ray.get([w.drain.remote() for w in workers[stage.id]])
            statuses = ray.get([w.status.remote() for ws in workers.values() for w in ws])
            stalled = [s for s in statuses if not s["done"]]
            if stalled and not result.cancelled:
                stage = plan.stages[stalled[0]["stage"]]
                raise PipelineExecutionError(
                    stage.root.full_label, "the pipeline stalled: the sources are done but this stage's watermark is not"
                )
            for containers in ray.get([w.finish.remote() for ws in workers.values() for w in ws]):
                result._metrics.extend(containers)
        except Exception as exc:
            if result.cancelled:
                return
            raise _unwrap(exc) from None
        finally:
            self._kill(result._actors)

    def _pickle_plan(self, plan: ExecutionPlan) -> bytes:
        """The plan for the workers, without bounded sources' data (each worker gets its split)."""
        swapped = []
        parents = []
        for node in plan.graph.primitives:
            # Composites (and their arguments, such as Create's list) stay here.
            parents.append((node, node.parent))
            node.parent = None
            t = node.transform
            if isinstance(t, Read) and isinstance(t.source, BoundedSource):
                swapped.append((t, t.source))
                t.source = _EmptySource()
        light = attrs.evolve(plan, graph=attrs.evolve(plan.graph, root=None))  # type: ignore[arg-type]
        try:
            with pickling_graph():
                return cloudpickle.dumps(light, protocol=5)
        finally:
            for t, source in swapped:
                t.source = source
            for node, parent in parents:
                node.parent = parent

    def _source_splits(self, stage: Any, n: int) -> list[dict[str, Any]]:
        splits: list[dict[str, Any]] = [{} for _ in range(n)]
        for node in stage.nodes:
            t = node.transform
            if isinstance(t, Read) and isinstance(t.source, BoundedSource):
                parts = t.source.split(n)
                for i in range(n):
                    splits[i][node.full_label] = parts[i] if i < len(parts) else _EmptySource()
        return splits

    def __repr__(self) -> str:
        return f"RayRunner(parallelism={self.parallelism}, address={self.address!r})"


def _dumps(obj: Any) -> bytes:
    """Pickle with the C pickler when the data allows it (most source data), else cloudpickle."""
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:  # lambdas, local classes: cloudpickle handles them
        return cloudpickle.dumps(obj, protocol=5)


class _EmptySource(BoundedSource):
    """The split of a worker that got no part of a small source."""

    def read(self) -> list[Any]:
        return []
