"""Operators: the executable form of each primitive, shared by every runner.

An operator receives bundles (lists of windowed-value tuples) on numbered
input slots — main inputs first, then side inputs — and pushes its output
bundles to receivers per output tag. Watermarks arrive through
:meth:`Operator.advance`; an operator reports its output watermark (its input
watermark held back by pending work). Runners differ only in how they move
bundles and watermarks between operators.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable

import cloudpickle

from tidal.model.combinefn import CombineFn, SumCombineFn
from tidal.model.metrics import (
    DROPPED_DUE_TO_CLOSED_WINDOW,
    DROPPED_DUE_TO_LATENESS,
    RUNNER_NAMESPACE,
    Metrics,
    MetricsContainer,
    set_current_container,
)
from tidal.model.primitives import CombinePerKey, GroupByKey, ParDo, WindowInto
from tidal.model.pvalue import AsSideInput
from tidal.model.strategy import WindowingStrategy
from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.model.trigger import PANE_INFO_UNKNOWN
from tidal.model.window import FixedWindows, GlobalWindows, Sessions, WindowFn
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError, describe_element
from tidal.runners.core.invoker import DoFnInvoker, SideInputResolver
from tidal.runners.core.reduce import CombineReduceFn, GroupReduceFn, KeyedWindowReducer

__all__ = [
    "Operator",
    "ParDoOperator",
    "AssignWindowsOperator",
    "FlattenOperator",
    "GroupByKeyOperator",
    "CombinePerKeyOperator",
    "PrecombineOperator",
]

Receiver = Callable[[list[Any]], None]

#: Input dropped because its window had expired (see tidal.model.metrics).
_LATE_DROPS = Metrics.counter(RUNNER_NAMESPACE, DROPPED_DUE_TO_LATENESS)
#: Input dropped because its window's trigger had finished (the window is closed).
_CLOSED_DROPS = Metrics.counter(RUNNER_NAMESPACE, DROPPED_DUE_TO_CLOSED_WINDOW)


class Operator:
    """Base class: input slots, receivers per output tag, watermarks and metrics."""

    def __init__(self, label: str, num_inputs: int = 1, num_side_inputs: int = 0) -> None:
        self.label = label
        self.num_inputs = num_inputs
        self.num_side_inputs = num_side_inputs
        self.receivers: dict[str, list[Receiver]] = {}
        self.metrics = MetricsContainer(label)
        self.input_watermark = MIN_TIMESTAMP_US
        self.side_watermarks = [MIN_TIMESTAMP_US] * num_side_inputs
        self.processing_time = MIN_TIMESTAMP_US

    def add_receiver(self, tag: str, receiver: Receiver) -> None:
        self.receivers.setdefault(tag, []).append(receiver)

    def emit(self, tag: str, bundle: list[Any]) -> None:
        if not bundle:
            return
        for receiver in self.receivers.get(tag, ()):
            receiver(bundle)

    def open(self) -> None:
        """Prepare to process (DoFn.setup)."""

    def close(self) -> None:
        """Release resources (DoFn.teardown)."""

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        """Handle a bundle arriving on a main-input slot."""
        raise PipelineExecutionError(self.label, f"{type(self).__name__} takes no input")

    def process_side(self, index: int, bundle: list[Any]) -> None:
        """Handle a bundle of side input ``index``."""
        raise PipelineExecutionError(self.label, f"{type(self).__name__} takes no side input")

    def advance(self, input_watermark: int, side_watermarks: list[int], processing_time: int) -> None:
        """The watermarks of the inputs (and processing time) moved forward."""
        self.input_watermark = max(self.input_watermark, input_watermark)
        self.side_watermarks = [max(a, b) for a, b in zip(self.side_watermarks, side_watermarks)]
        self.processing_time = max(self.processing_time, processing_time)
        self.on_advance()

    def on_advance(self) -> None:
        """Hook for subclasses: fire what the new watermarks allow."""

    def output_watermark(self) -> int:
        return self.input_watermark

    def next_processing_deadline(self) -> int | None:
        """The processing time at which this operator next wants to be advanced."""
        return None

    def is_idle(self) -> bool:
        """Nothing buffered that a later watermark could still release."""
        return True

    def snapshot(self) -> Any:
        """Picklable state for a checkpoint (stateless operators return None)."""
        return None

    def restore(self, snapshot: Any) -> None:
        """Restore the state ``snapshot`` returned."""

    def _run_user(self, fn: Callable[[], None]) -> None:
        previous = set_current_container(self.metrics)
        try:
            fn()
        finally:
            set_current_container(previous)


class ParDoOperator(Operator):
    """Runs a DoFn over bundles; buffers main input until its side inputs are ready."""

    def __init__(self, label: str, transform: ParDo, input_windowfn: WindowFn, side_windowfns: list[WindowFn], strict: bool = False) -> None:
        super().__init__(label, 1, len(transform.side_inputs))
        self.transform = transform
        # Each operator gets its own copy of the DoFn, as a worker would.
        self.dofn = pickle.loads(cloudpickle.dumps(transform.fn))
        self.invoker = DoFnInvoker(
            label,
            self.dofn,
            transform.args,
            transform.kwargs,
            transform.main_tag,
            transform.output_tags,
            input_windowfn,
        )
        self.views: list[AsSideInput] = list(transform.side_inputs)
        self.side_data: list[dict[Any, list[Any]]] = [{} for _ in self.views]
        if self.views:
            self.invoker.side_inputs = SideInputResolver(self.views, self.side_data, side_windowfns)
        self.strict = strict
        self.pending: list[Any] = []
        #: Transactional sinks: checkpoint id -> what ``prepare_commit`` staged, until ``commit``.
        self.uncommitted: dict[int, Any] = {}
        self._opened = False

    def open(self) -> None:
        self._run_user(self.invoker.setup)
        self._opened = True

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._run_user(self.invoker.teardown)

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        if self.views:
            ready, waiting = self._split_ready(bundle)
            self.pending.extend(waiting)
            bundle = ready
            if not bundle:
                return
        self._process_now(bundle)

    def _split_ready(self, bundle: list[Any]) -> tuple[list[Any], list[Any]]:
        ready: list[Any] = []
        waiting: list[Any] = []
        for wv in bundle:
            (ready if all(self._side_ready(w) for w in wv[2]) else waiting).append(wv)
        return ready, waiting

    def _side_ready(self, window: Any) -> bool:
        resolver = self.invoker.side_inputs
        assert resolver is not None
        for i, wm in enumerate(self.side_watermarks):
            if wm == MAX_TIMESTAMP_US:
                continue
            if wm <= resolver.side_window(i, window).max_timestamp_us:
                return False
        return True

    def _process_now(self, bundle: list[Any]) -> None:
        invoker = self.invoker
        sample = None
        if self.strict and bundle:
            sample = self._encode_sample(bundle[0][0], "input element")

        def run() -> None:
            invoker.start_bundle()
            invoker.process_bundle(bundle)
            invoker.finish_bundle()

        self._run_user(run)
        if sample is not None and self._encode_sample(bundle[0][0], "input element") != sample:
            raise PipelineExecutionError(
                self.label,
                f"the DoFn mutated its input element {describe_element(pickle.loads(sample))} (it "
                f"became {describe_element(bundle[0][0])}); DoFns must not modify their inputs (copy "
                "it first), since other consumers see the same object",
            )
        for tag, out in list(invoker.outputs.items()):
            if out:
                if self.strict:
                    self._encode_sample(out[0][0], f"output to {tag!r}")
                invoker.outputs[tag] = []
                self.emit(tag, out)

    def _encode_sample(self, value: Any, what: str) -> bytes:
        try:
            return cloudpickle.dumps(value)
        except Exception as exc:
            raise PipelineExecutionError(
                self.label,
                f"{what} {describe_element(value)} cannot be pickled ({exc}); elements must be "
                "picklable to move between workers (the direct runner checks this in strict mode)",
            ) from exc

    def process_side(self, index: int, bundle: list[Any]) -> None:
        data = self.side_data[index]
        for v, _t, ws, _p in bundle:
            for w in ws:
                data.setdefault(w, []).append(v)
        resolver = self.invoker.side_inputs
        if resolver is not None:
            resolver._cache[index].clear()

    def on_advance(self) -> None:
        if self.pending:
            ready, waiting = self._split_ready(self.pending)
            self.pending = waiting
            if ready:
                self._process_now(ready)

    def output_watermark(self) -> int:
        if self.pending:
            return min(self.input_watermark, min(wv[1] for wv in self.pending))
        return self.input_watermark

    def is_idle(self) -> bool:
        return not self.pending

    # -- checkpoints and transactional sinks -------------------------------------
    def snapshot(self) -> Any:
        return {"pending": list(self.pending), "side_data": [{w: list(vs) for w, vs in d.items()} for d in self.side_data]}

    def restore(self, snapshot: Any) -> None:
        self.pending = list(snapshot["pending"])
        self.side_data[:] = [{w: list(vs) for w, vs in d.items()} for d in snapshot["side_data"]]
        resolver = self.invoker.side_inputs
        if resolver is not None:
            resolver.data = self.side_data
            for cache in resolver._cache:
                cache.clear()

    @property
    def is_transactional(self) -> bool:
        """Whether the DoFn is a transactional sink (it has ``prepare_commit`` and ``commit``)."""
        return callable(getattr(self.dofn, "prepare_commit", None)) and callable(getattr(self.dofn, "commit", None))

    def prepare_commit(self, checkpoint_id: int) -> None:
        """A checkpoint barrier passed: the sink stages what it wrote since the last one."""
        if not self.is_transactional:
            return
        try:
            handle = self.dofn.prepare_commit(checkpoint_id)
        except Exception as exc:
            raise UserCodeError(self.label, self.dofn.prepare_commit, exc, has_element=False) from exc
        self.uncommitted[checkpoint_id] = handle

    def abort_after(self, checkpoint_id: int) -> None:
        """The job was restored from ``checkpoint_id``: the sink withdraws what later checkpoints published."""
        abort = getattr(self.dofn, "abort_after", None)
        if not self.is_transactional or not callable(abort):
            return
        try:
            abort(checkpoint_id)
        except Exception as exc:
            raise UserCodeError(self.label, abort, exc, has_element=False) from exc

    def commit(self, up_to: int) -> None:
        """Checkpoints up to ``up_to`` are complete: publish what the sink staged for them."""
        for cid in sorted(c for c in self.uncommitted if c <= up_to):
            try:
                self.dofn.commit(self.uncommitted[cid])
            except Exception as exc:
                raise UserCodeError(self.label, self.dofn.commit, exc, has_element=False) from exc
            del self.uncommitted[cid]  # only once published: a failed commit is retried


class AssignWindowsOperator(Operator):
    """WindowInto: assigns each element's windows with the new WindowFn."""

    def __init__(self, label: str, transform: WindowInto, input_windowfn: WindowFn | None = None) -> None:
        super().__init__(label)
        self.windowfn = transform.windowfn
        # These WindowFns put every element in exactly one window.
        self.single_window_input = type(input_windowfn) in (GlobalWindows, FixedWindows, Sessions)

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        assign = self.windowfn._assign_us
        out: list[Any] = []
        append = out.append
        v: Any = None

        def run() -> None:
            nonlocal v, out
            if self.single_window_input:
                out = [(v, t, assign(t, v, ws[0]), p) for v, t, ws, p in bundle]
                return
            for v, t, ws, p in bundle:
                if len(ws) == 1:
                    append((v, t, assign(t, v, ws[0]), p))
                else:
                    seen: dict[Any, None] = {}
                    for w in ws:
                        for nw in assign(t, v, w):
                            seen[nw] = None
                    append((v, t, tuple(seen), p))

        try:
            self._run_user(run)
        except Exception as exc:
            if self.single_window_input:  # the comprehension hides the element: find it
                for v, t, ws, _p in bundle:
                    try:
                        assign(t, v, ws[0])
                    except Exception:
                        break
            raise UserCodeError(self.label, self.windowfn.assign, exc, v) from exc
        self.emit("out", out)


class FlattenOperator(Operator):
    """Union of its inputs; its watermark is the minimum of theirs."""

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        self.emit("out", bundle)


class _KeyedReduceOperator(Operator):
    """Shared by GroupByKey and CombinePerKey: a KeyedWindowReducer behind a keyed exchange."""

    reducer: KeyedWindowReducer

    def _count_dropped(self, n: int) -> None:
        c = self.metrics.counters
        c[_LATE_DROPS.metric_name] = c.get(_LATE_DROPS.metric_name, 0) + n

    def _count_dropped_closed(self, n: int) -> None:
        c = self.metrics.counters
        c[_CLOSED_DROPS.metric_name] = c.get(_CLOSED_DROPS.metric_name, 0) + n

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        self.emit("out", self.reducer.process(bundle))

    def on_advance(self) -> None:
        # Firing runs user code (CombineFn.extract_output, merge_accumulators): its metrics
        # belong to this step.
        previous = set_current_container(self.metrics)
        try:
            out = self.reducer.advance(self.input_watermark, self.processing_time)
        finally:
            set_current_container(previous)
        self.emit("out", out)

    def output_watermark(self) -> int:
        return self.reducer.output_watermark

    def next_processing_deadline(self) -> int | None:
        return self.reducer.next_deadline()

    def is_idle(self) -> bool:
        return self.reducer.is_empty()

    def snapshot(self) -> Any:
        return self.reducer.snapshot()

    def restore(self, snapshot: Any) -> None:
        self.reducer.restore(snapshot)


class GroupByKeyOperator(_KeyedReduceOperator):
    def __init__(self, label: str, transform: GroupByKey, windowing: WindowingStrategy) -> None:
        super().__init__(label)
        self.reducer = KeyedWindowReducer(
            label, windowing, GroupReduceFn(), self._count_dropped, self._count_dropped_closed
        )


class CombinePerKeyOperator(_KeyedReduceOperator):
    def __init__(self, label: str, transform: CombinePerKey, windowing: WindowingStrategy, lifted: bool) -> None:
        super().__init__(label)
        self.fn: CombineFn = pickle.loads(cloudpickle.dumps(transform.fn))
        self.lifted = lifted
        self.reducer = KeyedWindowReducer(
            label, windowing, CombineReduceFn(self.fn, lifted, label), self._count_dropped, self._count_dropped_closed
        )

    def open(self) -> None:
        self._run_user(self.fn.setup)

    def close(self) -> None:
        self._run_user(self.fn.teardown)

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        previous = set_current_container(self.metrics)
        try:
            out = self.reducer.process(bundle)
        finally:
            set_current_container(previous)
        self.emit("out", out)


class PrecombineOperator(Operator):
    """The lifted half of CombinePerKey: partial accumulators per key and window.

    Runs in the producer's stage, before the shuffle. The table is flushed
    downstream when it grows past ``max_keys`` and always before the
    watermark moves on, so no partial result can become late.
    """

    def __init__(self, label: str, fn: CombineFn, max_keys: int = 200_000) -> None:
        super().__init__(label)
        self.fn = pickle.loads(cloudpickle.dumps(fn))
        self.max_keys = max_keys
        self.table: dict[tuple[Any, Any], Any] = {}

    def open(self) -> None:
        self._run_user(self.fn.setup)

    def close(self) -> None:
        self._run_user(self.fn.teardown)

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        if self.input_watermark > MIN_TIMESTAMP_US:
            bundle = self._pass_late_through(bundle)
        # Hot loop: one dict lookup and one add_input per element and window.
        table = self.table
        get = table.get
        create = self.fn.create_accumulator
        add = self.fn.add_input
        missing = _MISSING
        kv: Any = None
        previous = set_current_container(self.metrics)
        try:
            if type(self.fn) is SumCombineFn:
                # sum is the most common combiner: no method calls per element.
                for kv, _t, ws, _p in bundle:
                    key, value = kv
                    for w in ws:
                        kw = (key, w)
                        table[kw] = get(kw, 0) + value
                bundle = ()  # type: ignore[assignment]
            for kv, _t, ws, _p in bundle:
                key, value = kv
                if len(ws) == 1:
                    kw = (key, ws[0])
                    acc = get(kw, missing)
                    table[kw] = add(create() if acc is missing else acc, value)
                    continue
                for w in ws:
                    kw = (key, w)
                    acc = get(kw, missing)
                    table[kw] = add(create() if acc is missing else acc, value)
        except (TypeError, ValueError) as exc:
            try:
                key, _ = kv
                hash(key)
            except (TypeError, ValueError):
                raise PipelineExecutionError(
                    self.label,
                    f"CombinePerKey needs (key, value) pairs with hashable keys; got {describe_element(kv)}",
                ) from exc
            raise UserCodeError(self.label, self.fn, exc, kv) from exc
        except Exception as exc:
            raise UserCodeError(self.label, self.fn, exc, kv) from exc
        finally:
            set_current_container(previous)
        if len(table) >= self.max_keys:
            self.flush()

    def _pass_late_through(self, bundle: list[Any]) -> list[Any]:
        """Send elements whose window the watermark has passed on at once, one accumulator each.

        Held back, they would wait for the next watermark move and be combined
        with later late data: the grouping step must see them as they come, to
        fire one late pane per bundle and count every dropped element.
        """
        wm = self.input_watermark
        on_time: list[Any] = []
        late: list[Any] = []
        fn = self.fn
        previous = set_current_container(self.metrics)
        try:
            for wv in bundle:
                kv, t, ws, p = wv
                if all(w._end_us > wm for w in ws):
                    on_time.append(wv)
                    continue
                for w in ws:
                    if w._end_us > wm:
                        on_time.append((kv, t, (w,), p))
                    else:
                        late.append(((kv[0], fn.add_input(fn.create_accumulator(), kv[1])), w._end_us - 1, (w,), p))
        except (TypeError, ValueError, IndexError) as exc:
            raise PipelineExecutionError(
                self.label, f"CombinePerKey needs (key, value) pairs; got {describe_element(wv[0])}"
            ) from exc
        finally:
            set_current_container(previous)
        self.emit("out", late)
        return on_time

    def flush(self) -> None:
        if not self.table:
            return
        compact = self.fn.compact
        previous = set_current_container(self.metrics)
        out: list[Any] = []
        key: Any = None
        try:
            for (key, w), acc in self.table.items():
                out.append(((key, compact(acc)), w._end_us - 1, (w,), PANE_INFO_UNKNOWN))
        except Exception as exc:
            raise UserCodeError(self.label, compact, exc, key) from exc
        finally:
            set_current_container(previous)
        self.table = {}
        self.emit("out", out)

    def advance(self, input_watermark: int, side_watermarks: list[int], processing_time: int) -> None:
        moved = input_watermark > self.input_watermark
        super().advance(input_watermark, side_watermarks, processing_time)
        if moved:
            self.flush()

    def is_idle(self) -> bool:
        return not self.table

    def snapshot(self) -> Any:
        return dict(self.table)

    def restore(self, snapshot: Any) -> None:
        self.table = dict(snapshot)


_MISSING = object()


def windowfn_of_side(view: AsSideInput) -> WindowFn:
    return view.pcoll.windowing.windowfn if view.pcoll.windowing else GlobalWindows()
