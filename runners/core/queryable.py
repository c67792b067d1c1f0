"""Queryable state: reading a running job's keyed state from outside it (Flink's queryable state).

``result.query_state(step, state_name, key, window=None)`` reads one state
cell of a stateful DoFn while the job runs. Every runner answers it with the
pieces here:

* :func:`state_specs` lists the queryable state of a plan: the state specs
  of every stateful DoFn, by step label and state name, so a bad step or
  state name is refused at once with what exists.
* :func:`read_cell` reads one cell through the state store's read method
  (``KeyedStateStore.cell(...).read()``, built on ``KeyedStateStore.get``)
  and returns a deep copy: a query never hands out an object the job goes on
  changing, and it never writes.
* :class:`QueryServer` hands a query from the caller's thread to the thread
  that runs the operators. The executor serves waiting queries between
  bundles (where no operator is half-way through an element), so a query
  holds the stream up for exactly one lookup and never reads a cell while
  the stream changes it. The Ray runner needs no hand-off: a keyed stage's
  worker runs the query as one more actor call between its bundles.

``window=None`` means the global window; for a step whose input has other
windows the query names the window (``IntervalWindow(start, end)``).

>>> import tidal as td
>>> class Count(td.DoFn):
...     COUNT = td.ReadModifyWriteStateSpec("count")
...     def process(self, kv, count=td.DoFn.StateParam(COUNT)):
...         count.write((count.read() or 0) + 1)
...         yield kv
>>> p = td.Pipeline()
>>> _ = p | td.Create([("a", 1)]) | "Count" >> td.ParDo(Count())
>>> from tidal.runners.core.plan import build_plan
>>> {step: sorted(specs) for step, specs in state_specs(build_plan(p.graph())).items()}
{'Count': ['count']}
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import Future
from typing import Any, Callable

from tidal.model.userstate import StateSpec
from tidal.model.window import GlobalWindow, GlobalWindows

__all__ = ["StateQueryError", "JobFinishedError", "QueryServer", "state_specs", "check_query", "read_cell"]


class StateQueryError(LookupError):
    """A state query names a step, state or window that the job does not have, or cannot be answered."""

    def __str__(self) -> str:  # LookupError's KeyError-like quoting is not wanted here
        return str(self.args[0]) if self.args else ""


class JobFinishedError(StateQueryError):
    """The job has finished (done, failed or cancelled): its live state is gone."""


def state_specs(plan: Any) -> dict[str, dict[str, StateSpec]]:
    """The queryable state of ``plan``: step label -> state name -> spec (stateful DoFns only)."""
    from tidal.runners.core.invoker import DoFnSignature
    from tidal.runners.core.plan import is_stateful_pardo

    out: dict[str, dict[str, StateSpec]] = {}
    for node in plan.graph.primitives:
        if is_stateful_pardo(node):
            specs = DoFnSignature(node.transform.fn).state_specs
            out[node.full_label] = dict(specs)
    return out


def check_query(plan: Any, step: str, state_name: str, window: Any) -> tuple[StateSpec, Any]:
    """The spec a query reads and the window it reads in, or :class:`StateQueryError` naming what exists."""
    specs = state_specs(plan)
    if step not in specs:
        labels = {node.full_label for node in plan.graph.primitives}
        have = ", ".join(repr(s) for s in sorted(specs)) or "none"
        if step in labels:
            raise StateQueryError(
                f"step {step!r} holds no queryable state (only stateful DoFns do); the steps with state are: {have}"
            )
        raise StateQueryError(f"there is no step {step!r} in this pipeline; the steps with state are: {have}")
    by_name = specs[step]
    if state_name not in by_name:
        names = ", ".join(repr(n) for n in sorted(by_name)) or "none (it declares timers only)"
        raise StateQueryError(f"step {step!r} has no state named {state_name!r}; its states are: {names}")
    if window is None:
        node = next(n for n in plan.graph.primitives if n.full_label == step)
        windowfn = node.inputs[0].windowing.windowfn
        if not isinstance(windowfn, GlobalWindows):
            raise StateQueryError(
                f"step {step!r} keeps its state per window ({type(windowfn).__name__}): pass the window to read, "
                "e.g. window=td.window.IntervalWindow(start, end)"
            )
        window = GlobalWindow()
    return by_name[state_name], window


def read_cell(store: Any, key: Any, window: Any, spec: StateSpec) -> Any:
    """The value of one state cell as its DoFn would read it, copied (a read changes nothing).

    Value state gives its value (None when unset), bag state a list, set
    state a set, combining state the CombineFn's output.
    """
    return copy.deepcopy(store.cell(key, window, spec).read())


class QueryServer:
    """Queries handed from other threads to the one running the operators, answered between bundles.

    ``submit(lookup)`` returns a future; the running thread calls
    :meth:`serve` at points where no operator is processing, which runs
    every waiting lookup. After :meth:`close` waiting and later queries fail
    with :class:`JobFinishedError`.

    >>> server = QueryServer()
    >>> answer = server.submit(lambda: 42)
    >>> server.serve(); answer.result()
    42
    >>> server.close("the job is DONE"); server.submit(lambda: 1).exception()
    JobFinishedError('the job is DONE')
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._closed: str | None = None

    def submit(self, lookup: Callable[[], Any]) -> "Future[Any]":
        """Queue ``lookup`` for the running thread; its future holds the answer (or the error)."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed is None:
                self._waiting.append((lookup, future))
                return future
            reason = self._closed
        future.set_exception(JobFinishedError(reason))
        return future

    def serve(self) -> None:
        """Answer every waiting query (call this where no operator is processing)."""
        if not self._waiting:  # the common case: one attribute read per loop iteration
            return
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for lookup, future in waiting:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(lookup())
            except BaseException as exc:
                future.set_exception(exc)

    def close(self, reason: str) -> None:
        """No more answers: waiting and later queries fail with ``reason``."""
        with self._lock:
            self._closed = reason
            waiting, self._waiting = self._waiting, []
        for _, future in waiting:
            if future.set_running_or_notify_cancel():
                future.set_exception(JobFinishedError(reason))

    def reopen(self) -> None:
        """Accept queries again (an executor that runs once more, as a restarted attempt)."""
        with self._lock:
            self._closed = None
