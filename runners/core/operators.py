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
from tidal.model.window import GLOBAL_WINDOW, GLOBAL_WINDOWS_TUPLE, FixedWindows, GlobalWindows, IntervalWindow, Sessions, WindowFn
from tidal.runners.core.errors import PipelineExecutionError, UserCodeError, describe_element
from tidal.runners.core.invoker import DoFnInvoker, SideInputResolver
from tidal.runners.core.keygroups import KeyedSnapshot, KeyGroups, split_by_group
from tidal.runners.core.policy import PolicyWindowReducer, make_reducer
from tidal.runners.core.reduce import CombineReduceFn, GroupReduceFn, KeyedWindowReducer
from tidal.runners.core.sources import GlobalValues, windowed
from tidal.runners.core.statebackend import StateBackend

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

    #: The job's key groups: keyed operators snapshot their state split by them (the executor sets it).
    key_groups: KeyGroups = KeyGroups()

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

    def use_state_backend(self, backend: StateBackend) -> None:
        """Keep keyed state in tables of ``backend`` (the executor calls it before anything runs)."""

    def rescale_snapshot(self, snapshots: list[Any], owned: list[bool], key_groups: range) -> Any:
        """This operator's snapshot for one instance at a new parallelism, from old instances' snapshots.

        ``snapshots`` are those of the old instances that matter to this one:
        each that held some of ``key_groups`` (the range this instance owns
        now), and each whose state that belongs to no key this instance takes
        over (``owned``: every old instance is owned by exactly one new one).
        Keyed operators take the key groups of the range from all of them
        (see :class:`~tidal.runners.core.keygroups.KeyedSnapshot`); the rest
        comes from the owned ones. Stateless operators have nothing to merge.
        """
        return snapshots[0] if snapshots else None

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
            bundle = windowed(bundle)
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
            # A source's plain values stay as they are (the fused kernels take them so).
            first = bundle.values[0] if type(bundle) is GlobalValues else bundle[0][0]
            sample = self._encode_sample(first, "input element")

        def run() -> None:
            invoker.start_bundle()
            invoker.process_bundle(bundle)
            invoker.finish_bundle()

        self._run_user(run)
        if sample is not None and self._encode_sample(first, "input element") != sample:
            raise PipelineExecutionError(
                self.label,
                f"the DoFn mutated its input element {describe_element(pickle.loads(sample))} (it "
                f"became {describe_element(first)}); DoFns must not modify their inputs (copy "
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
            # The C pickler first (a tenth of cloudpickle's fixed cost per call, and a grouping
            # step emits its panes in many small bundles); cloudpickle for what only it
            # pickles (lambdas, classes defined in a script).
            return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception:
            pass
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
        self._restore_side_data(snapshot["side_data"])

    def _restore_side_data(self, side_data: list[dict[Any, list[Any]]]) -> None:
        self.side_data[:] = [{w: list(vs) for w, vs in d.items()} for d in side_data]
        resolver = self.invoker.side_inputs
        if resolver is not None:
            resolver.data = self.side_data
            for cache in resolver._cache:
                cache.clear()

    def rescale_snapshot(self, snapshots: list[Any], owned: list[bool], key_groups: range) -> Any:
        # Elements waiting for side inputs go with their old instance; side inputs are
        # broadcast, so every instance held the same.
        pending = [wv for snap, mine in zip(snapshots, owned) if mine for wv in snap["pending"]]
        return {"pending": pending, "side_data": snapshots[0]["side_data"]}

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
            staged = self.uncommitted[cid]
            for handle in staged.handles if isinstance(staged, MergedHandles) else (staged,):
                try:
                    self.dofn.commit(handle)
                except Exception as exc:
                    raise UserCodeError(self.label, self.dofn.commit, exc, has_element=False) from exc
            del self.uncommitted[cid]  # only once published: a failed commit is retried (commit is idempotent)


class MergedHandles:
    """What several old instances of a sink staged for one checkpoint, after a restore at a lower parallelism."""

    __slots__ = ("handles",)

    def __init__(self, handles: list[Any]) -> None:
        self.handles = handles

    @staticmethod
    def merge(staged: list[dict[int, Any]]) -> dict[int, Any]:
        """The union of several instances' ``uncommitted`` (checkpoint id -> handle)."""
        out: dict[int, list[Any]] = {}
        for part in staged:
            for cid, handle in part.items():
                out.setdefault(cid, []).extend(handle.handles if isinstance(handle, MergedHandles) else [handle])
        return {cid: hs[0] if len(hs) == 1 else MergedHandles(hs) for cid, hs in out.items()}


class AssignWindowsOperator(Operator):
    """WindowInto: assigns each element's windows with the new WindowFn."""

    def __init__(self, label: str, transform: WindowInto, input_windowfn: WindowFn | None = None) -> None:
        super().__init__(label)
        self.windowfn = transform.windowfn
        # These WindowFns put every element in exactly one window.
        self.single_window_input = type(input_windowfn) in (GlobalWindows, FixedWindows, Sessions)
        #: The Map before this step assigns its windows (see tidal.runners.core.fused): bundles pass on.
        self.assigned_upstream = False

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        if self.assigned_upstream:
            self.emit("out", bundle)
            return
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

    #: Event-time windows, or policy windows (count, delta): see tidal.runners.core.policy.make_reducer.
    reducer: KeyedWindowReducer | PolicyWindowReducer

    def _count_dropped(self, n: int) -> None:
        c = self.metrics.counters
        c[_LATE_DROPS.metric_name] = c.get(_LATE_DROPS.metric_name, 0) + n

    def _count_dropped_closed(self, n: int) -> None:
        c = self.metrics.counters
        c[_CLOSED_DROPS.metric_name] = c.get(_CLOSED_DROPS.metric_name, 0) + n

    def process(self, bundle: list[Any], slot: int = 0) -> None:
        self.emit("out", self.reducer.process(bundle))

    def _hand_on_in_pieces(self) -> None:
        """A large firing hands its panes on as it builds them (see KeyedWindowReducer.emit_pieces)."""
        self.reducer.emit_pieces = self._emit_piece

    def _emit_piece(self, out: list[Any]) -> None:
        self._emit_panes(out)

    def on_advance(self) -> None:
        # Firing runs user code (CombineFn.extract_output, merge_accumulators): its metrics
        # belong to this step.
        previous = set_current_container(self.metrics)
        try:
            out = self.reducer.advance(self.input_watermark, self.processing_time)
        finally:
            set_current_container(previous)
        self._emit_panes(out)

    def _emit_panes(self, out: list[Any]) -> None:
        """Emit fired panes in bundles of at most ``PANE_BUNDLE``: a watermark that fires a
        million panes sends them on while each bundle's objects are still in the CPU's cache,
        instead of walking the million from memory in every later step."""
        n = PANE_BUNDLE
        if len(out) <= n:
            self.emit("out", out)
            return
        for i in range(0, len(out), n):
            self.emit("out", out[i : i + n])

    def output_watermark(self) -> int:
        return self.reducer.output_watermark

    def next_processing_deadline(self) -> int | None:
        return self.reducer.next_deadline()

    def is_idle(self) -> bool:
        return self.reducer.is_empty()

    def use_state_backend(self, backend: StateBackend) -> None:
        self.reducer.use_state_backend(backend)

    def snapshot(self) -> Any:
        if isinstance(self.reducer, PolicyWindowReducer):
            return self.reducer.keyed_snapshot(self.key_groups.grouper())
        return _split_reducer_snapshot(self.reducer.snapshot(), self.key_groups.grouper())

    def restore(self, snapshot: Any) -> None:
        if isinstance(self.reducer, PolicyWindowReducer):
            self.reducer.restore(PolicyWindowReducer.join_keyed(snapshot))
            return
        self.reducer.restore(_join_reducer_snapshot(snapshot))

    def rescale_snapshot(self, snapshots: list[Any], owned: list[bool], key_groups: range) -> Any:
        commons = [s.common for s in snapshots]
        mine = [s.common for s, o in zip(snapshots, owned) if o]
        common = {
            # Every instance of a stage got the same watermarks at the barrier: the minimum is theirs.
            "input_watermark": min(c["input_watermark"] for c in commons),
            "output_watermark": min(c["output_watermark"] for c in commons),
            "processing_time": max(c["processing_time"] for c in commons),
            # Counts of dropped input: each old instance's are taken over once.
            "dropped": sum(c["dropped"] for c in mine),
            "dropped_closed": sum(c.get("dropped_closed", 0) for c in mine),
        }
        return KeyedSnapshot(common, _union_groups(snapshots, key_groups))


class GroupByKeyOperator(_KeyedReduceOperator):
    def __init__(self, label: str, transform: GroupByKey, windowing: WindowingStrategy) -> None:
        super().__init__(label)
        self.reducer = make_reducer(label, windowing, GroupReduceFn(), self._count_dropped, self._count_dropped_closed)
        self._hand_on_in_pieces()


class CombinePerKeyOperator(_KeyedReduceOperator):
    def __init__(self, label: str, transform: CombinePerKey, windowing: WindowingStrategy, lifted: bool) -> None:
        super().__init__(label)
        self.fn: CombineFn = pickle.loads(cloudpickle.dumps(transform.fn))
        self.lifted = lifted
        self.reducer = make_reducer(
            label, windowing, CombineReduceFn(self.fn, lifted, label), self._count_dropped, self._count_dropped_closed
        )
        self._hand_on_in_pieces()

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
    downstream when it grows past ``max_keys``, and before the watermark moves
    on, each partial result of a window the watermark may close then, so no
    partial result can become late.
    """

    def __init__(self, label: str, fn: CombineFn, max_keys: int = 200_000) -> None:
        super().__init__(label)
        self.fn = pickle.loads(cloudpickle.dumps(fn))
        self.max_keys = max_keys
        self.table: dict[tuple[Any, Any], Any] = {}
        #: Partial accumulators by window start, then key, that a fused kernel fills (see
        #: tidal.runners.core.fused); their windows are ``starts_size`` µs long, and
        #: ``starts_count`` says how many (key, window) entries they hold.
        self.starts: dict[int, dict[Any, Any]] = {}
        self.starts_size = 0
        self.starts_count = 0
        #: Partial accumulators of the global window by key, which a fused kernel fills.
        self.global_table: dict[Any, Any] = {}

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
            raise self.input_error(kv, exc) from exc
        except Exception as exc:
            raise UserCodeError(self.label, self.fn, exc, kv) from exc
        finally:
            set_current_container(previous)
        self.flush_if_full()

    def input_error(self, kv: Any, exc: Exception) -> PipelineExecutionError:
        """The error for input ``kv`` whose adding raised ``exc``: a bad pair, or the CombineFn's own."""
        try:
            key, _ = kv
            hash(key)
        except (TypeError, ValueError):
            return PipelineExecutionError(
                self.label,
                f"CombinePerKey needs (key, value) pairs with hashable keys; got {describe_element(kv)}",
            )
        return UserCodeError(self.label, self.fn, exc, kv)

    def start_table(self, size_us: int) -> dict[int, dict[Any, Any]]:
        """The window start -> {key: partial} table a fused kernel adds to, for windows ``size_us`` long.

        A kernel that adds entries adds their number to :attr:`starts_count`.
        """
        self.starts_size = size_us
        return self.starts

    def flush_if_full(self) -> None:
        if len(self.table) + self.starts_count + len(self.global_table) >= self.max_keys:
            self.flush()

    def _fold_starts(self) -> None:
        """Move the (key, window start) table into ``table`` (a snapshot keeps one form)."""
        size, table, merge = self.starts_size, self.table, self.fn.merge_accumulators
        windows: dict[int, IntervalWindow] = {}
        for start, accs in self.starts.items():
            w = windows.get(start)
            if w is None:
                w = windows[start] = IntervalWindow.from_micros(start, start + size)
            for key, acc in accs.items():
                kw: tuple[Any, Any] = (key, w)
                table[kw] = merge([table[kw], acc]) if kw in table else acc
        self.starts.clear()
        self.starts_count = 0
        for key, acc in self.global_table.items():
            kw = (key, GLOBAL_WINDOW)
            table[kw] = merge([table[kw], acc]) if kw in table else acc
        self.global_table.clear()

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

    def flush(self, watermark: int | None = None) -> None:
        """Hand the partial results on: all of them, or with ``watermark`` (the watermark about
        to be set) those the grouping step may fire at it. The table's go on every watermark
        move; the fused kernels' per-window tables only once the watermark reaches their
        window's last timestamp, so a stream whose watermark moves with every bundle still
        combines a window's elements before the shuffle instead of sending a partial per key
        and bundle."""
        if not self.table and not self.starts and not self.global_table:
            return
        compact = self.fn.compact
        previous = set_current_container(self.metrics)
        out: list[Any] = []
        key: Any = None
        try:
            for (key, w), acc in self.table.items():
                out.append(((key, compact(acc)), w._end_us - 1, (w,), PANE_INFO_UNKNOWN))
            if self.starts:
                size, unknown, append = self.starts_size, PANE_INFO_UNKNOWN, out.append
                starts = self.starts
                closing = list(starts) if watermark is None else [s for s in starts if s + size - 1 <= watermark]
                for start in closing:
                    accs = starts.pop(start)  # in place: a fused kernel holds this table
                    self.starts_count -= len(accs)
                    max_ts, in_window = start + size - 1, (IntervalWindow.from_micros(start, start + size),)
                    for key, acc in accs.items():
                        append(((key, compact(acc)), max_ts, in_window, unknown))
            if self.global_table and (watermark is None or GLOBAL_WINDOW._end_us - 1 <= watermark):
                max_ts, in_global, unknown, append = GLOBAL_WINDOW._end_us - 1, GLOBAL_WINDOWS_TUPLE, PANE_INFO_UNKNOWN, out.append
                for key, acc in self.global_table.items():
                    append(((key, compact(acc)), max_ts, in_global, unknown))
                self.global_table.clear()
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
            self.flush(input_watermark)

    def is_idle(self) -> bool:
        return not self.table and not self.starts and not self.global_table

    def snapshot(self) -> Any:
        self._fold_starts()
        group = self.key_groups.grouper()
        return KeyedSnapshot(None, split_by_group(((kw[0], (kw, acc)) for kw, acc in self.table.items()), group))

    def restore(self, snapshot: Any) -> None:
        table: dict[tuple[Any, Any], Any] = {}
        for items in snapshot.groups.values():
            for kw, acc in items:
                if kw in table:
                    # Two old instances (of a non-keyed stage) held partial results for one key and
                    # window: merged, they are still one partial result.
                    table[kw] = self.fn.merge_accumulators([table[kw], acc])
                else:
                    table[kw] = acc
        self.table = table
        self.starts.clear()
        self.starts_count = 0
        self.global_table.clear()

    def rescale_snapshot(self, snapshots: list[Any], owned: list[bool], key_groups: range) -> Any:
        return KeyedSnapshot(None, _union_groups(snapshots, key_groups))


_MISSING = object()

#: The most panes a grouping step emits in one bundle (see _KeyedReduceOperator._emit_panes).
PANE_BUNDLE = 8192


def _union_groups(snapshots: list[KeyedSnapshot], key_groups: range) -> dict[int, list[Any]]:
    """The items of the key groups in ``key_groups`` from every snapshot."""
    out: dict[int, list[Any]] = {}
    for snap in snapshots:
        for g, items in snap.groups.items():
            if g in key_groups:
                out.setdefault(g, []).extend(items)
    return out


def _split_reducer_snapshot(snap: dict[str, Any], group: Any) -> KeyedSnapshot:
    """A :class:`KeyedWindowReducer` snapshot split by key group.

    Window state and merging windows belong to a key (a state waiting for a
    processing-time deadline holds it); a timer belongs to a window whose keys
    may sit in several groups, so each of those groups carries it and the join
    keeps one.
    """
    items: list[tuple[Any, Any]] = []
    items.extend((kw[0], ("state", kw, st)) for kw, st in snap["states"].items())
    items.extend((key, ("active", key, windows)) for key, windows in snap["active"].items())
    gone = snap.get("gone")
    groups_of_window: dict[Any, set[int]] = {}
    window_keys = snap["window_keys"]
    if window_keys is None:
        # The disk backend: a window's keys are saved with the states (only those that changed,
        # in an incremental one: see incremental.py), and the restore derives the timers.
        items.extend((kw[0], ("key", kw[1], kw[0])) for kw in snap["states"])
    else:
        for window, keys in window_keys.items():
            for key in keys:
                groups_of_window.setdefault(window, set()).add(group(key))
                items.append((key, ("key", window, key)))
    if gone is not None:
        items.extend((kw[0], ("gone", kw)) for kw in gone)
    items.extend((key, ("gone", key, "a")) for key in snap.get("active_gone") or ())
    groups = split_by_group(items, group)
    for entry in snap["timers"] or ():
        for g in groups_of_window.get(entry[3], ()):
            groups.setdefault(g, []).append(("timer", entry))
    common = {k: snap[k] for k in ("input_watermark", "output_watermark", "processing_time", "dropped")}
    common["dropped_closed"] = snap.get("dropped_closed", 0)
    if gone is not None:
        common["delta"] = True
    return KeyedSnapshot(common, groups)


def _join_reducer_snapshot(keyed: KeyedSnapshot) -> dict[str, Any]:
    """The reducer snapshot that :func:`_split_reducer_snapshot`'s groups (of one or several instances) make."""
    states: dict[Any, Any] = {}
    active: dict[Any, set[Any]] = {}
    window_keys: dict[Any, dict[Any, None]] = {}
    timers: dict[tuple[int, int, Any], tuple[int, int, int, int, Any]] = {}
    for part, items in enumerate(keyed.groups.values()):
        for item in items:
            kind = item[0]
            if kind == "state":
                states[item[1]] = item[2]
            elif kind == "key":
                window_keys.setdefault(item[1], {})[item[2]] = None
            elif kind == "timer":
                ts, timer_kind, seq, window = item[1]
                key = (ts, timer_kind, window)
                if key not in timers or (seq, part) < timers[key][2:4]:
                    timers[key] = (ts, timer_kind, seq, part, window)
            elif kind == "active":
                active[item[1]] = set(item[2])
    # Sequence numbers only break ties; numbered afresh they keep each instance's order
    # and never make two entries compare their windows or keys.
    ordered = sorted(timers.values(), key=lambda t: t[:4])
    return {
        "states": states,
        "active": active,
        # None: the snapshot came from the disk backend, which saves no timers (the restore derives them).
        "timers": [(ts, kind, seq, window) for seq, (ts, kind, _s, _p, window) in enumerate(ordered)] if timers else None,
        "window_keys": window_keys,
        **keyed.common,
    }


def windowfn_of_side(view: AsSideInput) -> WindowFn:
    return view.pcoll.windowing.windowfn if view.pcoll.windowing else GlobalWindows()
