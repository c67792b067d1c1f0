"""StageWorker: one instance of one stage, running as a Ray actor.

The worker holds a :class:`~tidal.runners.core.executor.LocalExecutor` built
for its stage only; bundles and watermarks from other stages arrive through
``push`` and ``watermark`` calls and leave through the routes the driver
connected. Sends are asynchronous with a bounded number of calls in flight
per destination (backpressure: a slow consumer makes its producers wait).
Watermarks travel in-band, after the data they cover, to every instance of
the consuming stage.

With checkpoints, barriers travel in-band too (Flink's aligned barrier
snapshots). A source worker, when the driver triggers checkpoint ``n``,
records its source offsets and operator state and sends barrier ``n`` on
every output edge. Any other worker *aligns*: once barrier ``n`` has come on
an input channel (an edge and a sender), what that channel sends next is held
back until barrier ``n`` has come on every channel; then it snapshots its
state, forwards the barrier and processes what it held. The snapshot is
pickled at once and written to the checkpoint store on a background thread,
so the stream stops only for the pickling. Control calls (``trigger``,
``notify_complete``) run on their own thread and reach the stream thread
through a queue, so they are heard while a source loop runs.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import cloudpickle
import ray

from tidal.model.metrics import MetricsContainer
from tidal.model.time import MAX_TIMESTAMP_US
from tidal.runners.core.checkpoint import CheckpointStore
from tidal.runners.core.executor import LocalExecutor, ManualClock, WallClock
from tidal.runners.core.gcpolicy import throughput_gc
from tidal.runners.ray.exchange import route_keyed

__all__ = ["StageWorker", "part_name"]


def part_name(stage_id: int, index: int) -> str:
    """The checkpoint part written by instance ``index`` of stage ``stage_id``."""
    return f"stage{stage_id}-{index}.pkl"


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
        checkpoint_location: str | None = None,
        restore_part: bytes | None = None,
        withdraw_after: int | None = None,
        worker_count: int = 1,
    ) -> None:
        plan = cloudpickle.loads(plan_bytes)
        self.stage_id = stage_id
        self.index = index
        self.max_in_flight = max_in_flight
        self.routes: dict[str, list[tuple[str, list[Any]]]] = {}
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
            commit_on_close=checkpoint_location is None,
            worker=(index, worker_count),
        )
        self.opened = False
        # -- checkpoints --
        self.store = CheckpointStore(checkpoint_location) if checkpoint_location is not None else None
        self.part = part_name(stage_id, index)
        from tidal.runners.ray.runner import plan_edges

        #: Input channels (edge, sender): a barrier must come on each before a snapshot.
        self.channels = {
            (e.edge_id, sender)
            for e in plan_edges(plan)
            if e.consumer_stage == stage_id
            for sender in range(senders.get(e.edge_id, 1))
        }
        self.blocked: set[tuple[str, int]] = set()
        self.held: list[tuple[Any, ...]] = []
        self.last_checkpoint = 0
        self.control: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future[None]] = []
        #: The sinks withdraw what checkpoints after this one published, when the worker opens.
        self.withdraw_after = withdraw_after
        if restore_part is not None:
            snap = cloudpickle.loads(restore_part)
            self.executor.restore(snap["executor"], commit=False)  # the sinks publish in open()
            self.last_checkpoint = snap["checkpoint"]

    # -- set-up ------------------------------------------------------------------
    def connect(self, routes: dict[str, list[tuple[str, list[Any]]]]) -> bool:
        """``routes``: edge id -> for each consuming stage, (kind, its actor handles).

        A PCollection read by several stages (as main or side input) is one edge id
        with several destinations; each gets every element and watermark.
        """
        self.routes = routes
        return True

    def open(self) -> bool:
        for op in self.executor.ops:
            op.open()
        for driver, _, _ in self.executor.sources:
            driver.open(self.clock)
        self.opened = True
        if self.withdraw_after is not None:
            # Back at a restored checkpoint (or at the beginning): what later checkpoints published
            # is withdrawn, since the replay publishes it again ...
            self.executor.abort_after(self.withdraw_after)
        if self.last_checkpoint:
            # ... and what the restored checkpoint staged is published (idempotently).
            self.executor.commit(self.last_checkpoint)
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
        for kind, actors in self.routes[edge_id]:
            n = len(actors)
            if kind == "keyed":
                for dest, part in enumerate(route_keyed(bundle, n)):
                    if part:
                        self._send(actors[dest], "push", edge_id, self.index, part)
            elif kind == "broadcast":
                for actor in actors:
                    self._send(actor, "push", edge_id, self.index, bundle)
            else:
                self._send(actors[self.index % n], "push", edge_id, self.index, bundle)

    def _forward_watermarks(self) -> None:
        now = self.clock.now_us()
        for edge_id, wm in self.executor.remote_watermarks().items():
            # Processing time travels with the watermark (a TestStream's clock moves both).
            if (wm, now) != self.sent_watermarks.get(edge_id):
                self.sent_watermarks[edge_id] = (wm, now)
                for _kind, actors in self.routes[edge_id]:
                    for actor in actors:
                        self._send(actor, "watermark", edge_id, self.index, wm, now)

    # -- receiving ---------------------------------------------------------------
    def push(self, edge_id: str, sender: int, bundle: list[Any]) -> bool:
        if self.blocked and (edge_id, sender) in self.blocked:
            self.held.append(("push", edge_id, sender, bundle))
            return True
        with throughput_gc():
            self.executor.push(edge_id, bundle)
        return True

    def watermark(self, edge_id: str, sender: int, watermark: int, processing_time: int) -> bool:
        if self.blocked and (edge_id, sender) in self.blocked:
            self.held.append(("watermark", edge_id, sender, watermark, processing_time))
            return True
        self._drain_control()
        if isinstance(self.clock, ManualClock):
            self.clock.advance_to(processing_time)
        self.executor.set_remote_watermark(edge_id, sender, watermark)
        with throughput_gc():
            self.executor.propagate()
        self._forward_watermarks()
        return True

    def barrier(self, edge_id: str, sender: int, checkpoint_id: int) -> bool:
        """Barrier ``checkpoint_id`` came on channel (``edge_id``, ``sender``): align, then snapshot."""
        channel = (edge_id, sender)
        if channel in self.blocked:
            self.held.append(("barrier", edge_id, sender, checkpoint_id))
            return True
        self.blocked.add(channel)
        if self.blocked >= self.channels:
            self._checkpoint(checkpoint_id)
            self.blocked.clear()
            held, self.held = self.held, []
            for call in held:
                getattr(self, call[0])(*call[1:])
        return True

    # -- sources -----------------------------------------------------------------
    def run_sources(self) -> bool:
        """Read every local source to its end, sending downstream as it goes."""
        ex = self.executor
        active = [d for d, _, _ in ex.sources if not d.done]
        with throughput_gc():
            while active:
                self._drain_control()
                progressed = ex.poll_sources(active)
                ex.propagate()
                self._forward_watermarks()
                if not progressed and active:
                    time.sleep(0.002)
        self._drain_control()
        self.drain()
        return True

    # -- checkpoints ---------------------------------------------------------------
    @ray.method(concurrency_group="control")
    def trigger(self, checkpoint_id: int) -> bool:
        """(Control thread) ask the source loop to take checkpoint ``checkpoint_id``."""
        self.control.put(("checkpoint", checkpoint_id))
        return True

    @ray.method(concurrency_group="control")
    def notify_complete(self, checkpoint_id: int) -> bool:
        """(Control thread) checkpoint ``checkpoint_id`` is complete: publish the sinks' output."""
        self.control.put(("commit", checkpoint_id))
        return True

    def poll(self) -> bool:
        """Handle waiting control messages (the driver calls this on idle workers)."""
        self._drain_control()
        return True

    def take_checkpoint(self, checkpoint_id: int) -> bool:
        """Take checkpoint ``checkpoint_id`` now (a source worker whose sources are done)."""
        self._drain_control()
        if checkpoint_id > self.last_checkpoint:
            self._checkpoint(checkpoint_id)
        return True

    def _drain_control(self) -> None:
        control = self.control
        while not control.empty():
            kind, checkpoint_id = control.get()
            if kind == "commit":
                self.executor.commit(checkpoint_id)
            elif checkpoint_id > self.last_checkpoint:
                self._checkpoint(checkpoint_id)

    def _checkpoint(self, checkpoint_id: int) -> None:
        """Snapshot this worker, store it in the background and pass the barrier on."""
        if self.store is None:
            raise RuntimeError("a checkpoint barrier reached a worker of a job without checkpoints")
        self.last_checkpoint = checkpoint_id
        with throughput_gc():
            snap = self.executor.snapshot(checkpoint_id)
            data = cloudpickle.dumps({"checkpoint": checkpoint_id, "executor": snap}, protocol=5)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="tidal-checkpoint")
        for written in [f for f in self._writes if f.done()]:
            written.result()  # a failed write surfaces here
        self._writes = [f for f in self._writes if not f.done()]
        self._writes.append(self._writer.submit(self.store.write_part, checkpoint_id, self.part, data))
        for edge_id, destinations in self.routes.items():
            for _kind, actors in destinations:
                for actor in actors:
                    self._send(actor, "barrier", edge_id, self.index, checkpoint_id)

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
        """Publish the sinks' output, close the operators and hand back this worker's metrics."""
        self.drain()
        self._drain_control()
        for write in self._writes:
            write.result()
        if self.store is None and self.opened:
            self.executor.commit_final()
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
