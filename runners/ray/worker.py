"""StageWorker: one instance of one stage, running as a Ray actor.

The worker holds a :class:`~tidal.runners.core.executor.LocalExecutor` built
for its stage only; bundles and watermarks from other stages arrive through
``push`` and ``watermark`` calls and leave through the routes the driver
connected. Sends are asynchronous with a bounded number of calls in flight
per destination (backpressure: a slow consumer makes its producers wait).
Watermarks travel in-band, after the data they cover, to every instance of
the consuming stage.
"""

from __future__ import annotations

import time
from typing import Any

import cloudpickle

from tidal.model.metrics import MetricsContainer
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.runners.core.executor import LocalExecutor, ManualClock, WallClock
from tidal.runners.core.gcpolicy import throughput_gc
from tidal.runners.ray.exchange import route_keyed

__all__ = ["StageWorker"]


class StageWorker:
    """The actor body; the runner wraps it with ``ray.remote``."""

    def __init__(
        self,
        plan_bytes: bytes,
        stage_id: int,
        index: int,
        senders: dict[str, int],
        source_overrides: bytes,
        strict: bool,
        bundle_size: int,
        manual_clock: bool,
        max_in_flight: int,
    ) -> None:
        plan = cloudpickle.loads(plan_bytes)
        self.stage_id = stage_id
        self.index = index
        self.max_in_flight = max_in_flight
        self.routes: dict[str, tuple[str, list[Any]]] = {}
        self.in_flight: dict[int, list[Any]] = {}
        self.sent_watermarks: dict[str, tuple[int, int]] = {}
        self.clock = ManualClock(0) if manual_clock else WallClock()
        splits = cloudpickle.loads(source_overrides)
        overrides = {}
        for node in plan.stages[stage_id].nodes:
            if node.full_label in splits:
                overrides[node] = splits[node.full_label]
        self.executor = LocalExecutor(
            plan,
            bundle_size=bundle_size,
            strict=strict,
            clock=self.clock,
            stage_ids={stage_id},
            source_overrides=overrides,
            remote_emit=self._emit,
            senders_of=lambda edge: senders.get(edge, 1),
        )
        self.opened = False

    # -- set-up ------------------------------------------------------------------
    def connect(self, routes: dict[str, tuple[str, list[Any]]]) -> bool:
        """``routes``: edge id -> (kind, actor handles of the consuming stage)."""
        self.routes = routes
        return True

    def open(self) -> bool:
        for op in self.executor.ops:
            op.open()
        for driver, _, _ in self.executor.sources:
            driver.open(self.clock)
        self.opened = True
        self.executor.propagate()  # operators start at the worker's processing time
        return True

    # -- sending -----------------------------------------------------------------
    def _send(self, actor: Any, method: str, *args: Any) -> None:
        import ray

        key = id(actor)
        pending = self.in_flight.setdefault(key, [])
        pending.append(getattr(actor, method).remote(*args))
        if len(pending) > self.max_in_flight:
            done, rest = ray.wait(pending, num_returns=len(pending) - self.max_in_flight)
            ray.get(done)  # surfaces a downstream failure here
            self.in_flight[key] = rest

    def _emit(self, edge_id: str, bundle: list[Any]) -> None:
        kind, actors = self.routes[edge_id]
        n = len(actors)
        if kind == "keyed":
            for dest, part in enumerate(route_keyed(bundle, n)):
                if part:
                    self._send(actors[dest], "push", edge_id, part)
        elif kind == "broadcast":
            for actor in actors:
                self._send(actor, "push", edge_id, bundle)
        else:
            self._send(actors[self.index % n], "push", edge_id, bundle)

    def _forward_watermarks(self) -> None:
        now = self.clock.now_us()
        for edge_id, wm in self.executor.remote_watermarks().items():
            # Processing time travels with the watermark (a TestStream's clock moves both).
            if (wm, now) != self.sent_watermarks.get(edge_id):
                self.sent_watermarks[edge_id] = (wm, now)
                for actor in self.routes[edge_id][1]:
                    self._send(actor, "watermark", edge_id, self.index, wm, now)

    # -- receiving ---------------------------------------------------------------
    def push(self, edge_id: str, bundle: list[Any]) -> bool:
        with throughput_gc():
            self.executor.push(edge_id, bundle)
        return True

    def watermark(self, edge_id: str, sender: int, watermark: int, processing_time: int) -> bool:
        if isinstance(self.clock, ManualClock):
            self.clock.advance_to(processing_time)
        self.executor.set_remote_watermark(edge_id, sender, watermark)
        with throughput_gc():
            self.executor.propagate()
        self._forward_watermarks()
        return True

    # -- sources -----------------------------------------------------------------
    def run_sources(self) -> bool:
        """Read every local source to its end, sending downstream as it goes."""
        ex = self.executor
        active = [d for d, _, _ in ex.sources]
        with throughput_gc():
            while active:
                progressed = ex.poll_sources(active)
                ex.propagate()
                self._forward_watermarks()
                if not progressed and active:
                    time.sleep(0.002)
        self.drain()
        return True

    def drain(self) -> bool:
        """Wait until everything this worker sent has been processed downstream."""
        import ray

        for key, pending in list(self.in_flight.items()):
            if pending:
                ray.get(pending)
            self.in_flight[key] = []
        return True

    def status(self) -> dict[str, Any]:
        ex = self.executor
        ops_done = all(ex._out_wm[op] >= MAX_TIMESTAMP_US for op in ex.ops)
        return {"stage": self.stage_id, "index": self.index, "done": ops_done}

    def finish(self) -> list[MetricsContainer]:
        """Close the operators and hand back this worker's metrics."""
        self.drain()
        errors = []
        if self.opened:
            for op in self.executor.ops:
                try:
                    op.close()
                except Exception as exc:
                    errors.append(exc)
            for driver, _, _ in self.executor.sources:
                driver.close()
            self.opened = False
        if errors:
            raise errors[0]
        return self.executor.metrics()
