"""Running one case on one runner: build, run under a time limit, compare, record the outcome.

An outcome is ``pass``, ``fail`` (the runner ran the case and got something
else, or lacks a capability the case needs), ``error`` (an exception the case
did not expect, or the time limit ran out) or ``skipped`` (the runner cannot
run at all here, e.g. a dependency is missing, or the case needs a service
that is not available, and raised :class:`~tidal.capability_matrix.case.CaseSkipped`).

>>> from tidal.capability_matrix.case import CaseRegistry, case
>>> import tidal as td
>>> registry = CaseRegistry()
>>> @case("example.lengths", "ParDo", expected=[1, 3], registry=registry)
... def lengths(p):
...     '''Map applies a function.'''
...     return p | td.Create(["a", "abc"]) | td.Map(len)
>>> result = run_case(registry.get("example.lengths"), "direct")
>>> result.outcome, result.message
('pass', '')
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

import attrs

from tidal.capability_matrix.case import CHECKPOINT_RESTORE, Case, CaseContext, CaseFailure, CaseSkipped, ExpectedError
from tidal.capability_matrix.sinks import InjectedFailure, read_records, recorder
from tidal.model.pipeline import Pipeline
from tidal.model.primitives import ParDo
from tidal.model.pvalue import PCollection
from tidal.runners.registry import resolve_runner
from tidal.runners.runner import Runner
from tidal.transforms.core import Create, Map

if TYPE_CHECKING:
    from tidal.model.result import PipelineResult

__all__ = [
    "CaseResult",
    "OUTCOMES",
    "run_case",
    "prepare_runner",
    "runner_label",
    "supports_checkpoint_restore",
    "compare_multisets",
]

OUTCOMES = ("pass", "fail", "error", "skipped")

#: Restarts a recovery case may take before it counts as failed.
_MAX_RESTARTS = 3


@attrs.frozen
class CaseResult:
    """What running one case on one runner showed."""

    case_id: str
    runner: str
    outcome: str
    message: str
    duration_s: float
    #: Measured cases only: run seconds and, when the case knows its size, elements per second.
    measurement: dict[str, float] | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def runner_label(runner: str | Runner) -> str:
    """The name a runner is reported under."""
    if isinstance(runner, Runner):
        return runner.name or type(runner).__name__
    return runner


def _fresh_runner(runner: str | Runner) -> Runner:
    """A new runner for a name (runners keep per-run settings), or the given instance."""
    return runner if isinstance(runner, Runner) else resolve_runner(runner)


def supports_checkpoint_restore(runner: Runner) -> bool:
    """Whether the runner declares that it can checkpoint and resume (see CHECKPOINT_RESTORE)."""
    return bool(getattr(runner, CHECKPOINT_RESTORE, False)) and callable(getattr(runner, "with_checkpoint_dir", None))


def prepare_runner(runner: str | Runner) -> str | None:
    """Start the runner on a one-element pipeline, in this thread.

    Returns None when it works, else why the runner cannot run here (a missing
    dependency, a failed start). Runners that start services (a local Ray)
    start them here, on the main thread, before cases run on worker threads.
    """
    folder = tempfile.mkdtemp(prefix="tidal-prepare-")
    try:
        p = Pipeline(runner=_fresh_runner(runner))
        _ = p | Create([1]) | Map(lambda x: x + 1) | "Record" >> _record(folder, ("value",))
        p.run().wait_until_finish()
        got = read_records(folder)
        if got != [2]:
            return f"a one-element pipeline gave {got!r} instead of [2]"
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {_first_line(exc)}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_exc(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


# -- comparing -------------------------------------------------------------------------
def _freeze(value: Any) -> Any:
    """A hashable form that is equal exactly when the values are (lists become tuples, ...)."""
    if isinstance(value, list):
        return ("__list__", tuple(_freeze(v) for v in value))
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return ("__dict__", frozenset((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, set):
        return ("__set__", frozenset(_freeze(v) for v in value))
    hash(value)
    return value


def _short(values: list[Any], limit: int = 400) -> str:
    try:
        text = repr(sorted(values))
    except TypeError:
        text = repr(values)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare_multisets(actual: list[Any], expected: list[Any]) -> str | None:
    """None when ``actual`` holds exactly ``expected`` (any order), else what differs.

    >>> compare_multisets([1, 2, 2], [2, 1, 2]) is None
    True
    >>> compare_multisets([1, 3], [1, 2])
    'got 2 element(s), expected 2: unexpected [3]; missing [2]'
    """
    unexpected: list[Any] = []
    missing: list[Any] = []
    try:
        got = Counter(_freeze(a) for a in actual)
        want = Counter(_freeze(e) for e in expected)
        if got == want:
            return None
        by_frozen = {_freeze(v): v for v in [*actual, *expected]}
        for k, n in (got - want).items():
            unexpected.extend([by_frozen[k]] * n)
        for k, n in (want - got).items():
            missing.extend([by_frozen[k]] * n)
    except TypeError:  # an unhashable value: compare pairwise
        remaining = list(expected)
        for a in actual:
            for i, e in enumerate(remaining):
                if e == a:
                    del remaining[i]
                    break
            else:
                unexpected.append(a)
        missing = remaining
        if not unexpected and not missing:
            return None
    parts = []
    if unexpected:
        parts.append(f"unexpected {_short(unexpected)}")
    if missing:
        parts.append(f"missing {_short(missing)}")
    return f"got {len(actual)} element(s), expected {len(expected)}: " + "; ".join(parts)


def _fold_idempotent(records: list[Any], key: Callable[[Any], Any]) -> tuple[list[Any], str | None]:
    """What an idempotent sink keyed by ``key`` ends up holding, or a conflict."""
    stored: dict[Any, Any] = {}
    for r in records:
        k = _freeze(key(r))
        if k in stored and stored[k] != r:
            return [], f"the sink got two different records for key {key(r)!r}: {stored[k]!r} and then {r!r}"
        stored[k] = r
    return list(stored.values()), None


def _matches(expected: ExpectedError, exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, expected.type) and all(f in str(current) for f in expected.fragments):
            return True
        current = current.__cause__ or current.__context__
    return False


def _error_outcome(case: Case, exc: BaseException, when: str) -> tuple[str, str]:
    assert case.error is not None
    if _matches(case.error, exc):
        return "pass", ""
    return "fail", f"expected {case.error.describe()} {when}, got {_describe_exc(exc)}"


# -- running -----------------------------------------------------------------------------
def _named_outputs(outputs: Any) -> dict[str, PCollection[Any]]:
    if outputs is None:
        return {}
    if isinstance(outputs, PCollection):
        return {"out": outputs}
    if isinstance(outputs, dict) and all(isinstance(v, PCollection) for v in outputs.values()):
        return dict(outputs)
    raise TypeError(f"a case's build function returns a PCollection, a dict of them or None, got {outputs!r}")


def _run_and_wait(p: Pipeline, deadline: float) -> "PipelineResult":
    result = p.run()
    remaining = max(0.1, deadline - time.monotonic())
    result.wait_until_finish(remaining)
    if not result.state.is_terminal:
        result.cancel()
        raise TimeoutError(f"the pipeline was still {result.state.name} after {remaining:.0f} s; cancelled")
    return result


def _execute(case: Case, runner: str | Runner, ctx: CaseContext, deadline: float) -> tuple[str, str, dict[str, float] | None]:
    base = _fresh_runner(runner)
    recovery = case.kind == "recovery"
    if recovery and not supports_checkpoint_restore(base):
        return (
            "fail",
            f"needs checkpoint/restore, which {type(base).__name__} lacks (no {CHECKPOINT_RESTORE} = True "
            "and with_checkpoint_dir()): after a failure the job cannot resume",
            None,
        )
    restarts = 0
    while True:
        ctx.attempt = restarts + 1
        run_on = base.with_checkpoint_dir(str(ctx.checkpoint_dir)) if recovery else base  # type: ignore[attr-defined]
        p = Pipeline(runner=run_on)
        try:
            named = _named_outputs(case.build_pipeline(p, ctx))
            for name, pcoll in named.items():
                pcoll | f"Record[{name}]" >> _record(str(ctx.output_folder(name)), case.observe)
        except CaseSkipped as exc:
            return "skipped", str(exc), None
        except Exception as exc:
            if case.error is not None:
                return (*_error_outcome(case, exc, "when the pipeline is built"), None)
            return "error", f"building the pipeline raised {_describe_exc(exc)}", None
        started = time.perf_counter()
        try:
            result = case.drive(p, ctx) if case.drive is not None else _run_and_wait(p, deadline)
        except CaseFailure as exc:
            return "fail", str(exc), None
        except CaseSkipped as exc:
            return "skipped", str(exc), None
        except Exception as exc:
            if case.error is not None:
                return (*_error_outcome(case, exc, "when the pipeline runs"), None)
            if recovery and _matches(ExpectedError(InjectedFailure, "injected failure"), exc) and restarts < _MAX_RESTARTS:
                restarts += 1
                continue  # the job failed: run it again from its checkpoints, as an operator would
            return "error", f"running the pipeline raised {_describe_exc(exc)}", None
        run_s = time.perf_counter() - started
        break
    if case.error is not None:
        return "fail", f"expected {case.error.describe()}, but the pipeline was built and ran without error", None
    problems = _check_outputs(case, named, ctx) + ctx.problems
    if case.probe is not None:
        try:
            if result is None:
                raise ValueError("the case's drive returned no PipelineResult to probe")
            observed = case.probe(result)
        except Exception as exc:
            problems.append(f"reading the result raised {_describe_exc(exc)}")
        else:
            if observed != case.expected_probe:
                problems.append(f"the result shows {observed!r}, expected {case.expected_probe!r}")
    message = ""
    if recovery:
        pending = ctx.failures_pending()
        if pending:
            problems.append(f"the injected failure {pending[0]!r} never happened, so recovery was not exercised")
        else:
            problem, message = _restore_outcome(ctx, result, restarts)
            if problem is not None:
                problems.insert(0, problem)  # the likely cause of any wrong output
    if problems:
        return "fail", "; ".join(problems), None
    measurement = None
    if case.measured:
        measurement = {"run_s": run_s}
        if case.elements and run_s > 0:
            measurement["elements_per_s"] = case.elements / run_s
    return "pass", message, measurement


def _restore_outcome(ctx: CaseContext, result: "PipelineResult | None", restarts: int) -> tuple[str | None, str]:
    """(what is wrong or None, what happened) for the attempt after a recovery case's failure.

    It must have resumed from a checkpoint: the runner names the checkpoint
    (``result.restored_from``) and the attempt read less than the whole input.
    """
    total = ctx.input_total
    if total is None:
        return "the recovery case records no reads (ctx.record_reads), so a restore cannot be told from a rerun", ""
    read = len(ctx.reads(ctx.attempt))
    restored = getattr(result, "restored_from", None)
    if restored is None:
        return (
            f"after the failure the job restarted from the start, not from a checkpoint: its last attempt "
            f"read {read} of the {total} input elements",
            "",
        )
    summary = f"{restarts} restart(s), from checkpoint {restored}: the last attempt read {read} of the {total} input elements"
    if read >= total:
        return f"{summary}, all of them again: the sources did not resume from the checkpoint's offsets", summary
    return None, summary


def _record(folder: str, observe: tuple[str, ...]) -> ParDo:
    return ParDo(recorder(folder, observe))


def _check_outputs(case: Case, named: dict[str, PCollection[Any]], ctx: CaseContext) -> list[str]:
    if not named:
        return []
    expected = case.expected
    if set(named) == {"out"} and not isinstance(expected, dict):
        expected = {"out": expected if expected is not None else []}
    if not isinstance(expected, dict) or set(expected) != set(named):
        return [f"the case returns outputs {sorted(named)} but expects {sorted(expected) if isinstance(expected, dict) else 'one'}"]
    problems = []
    for name in named:
        actual = ctx.outputs(name)
        if case.idempotent_key is not None:
            actual, conflict = _fold_idempotent(actual, case.idempotent_key)
            if conflict is not None:
                problems.append(conflict if len(named) == 1 else f"{name}: {conflict}")
                continue
        diff = compare_multisets(actual, list(expected[name]))
        if diff is not None:
            problems.append(diff if len(named) == 1 else f"output {name!r}: {diff}")
    return problems


def run_case(case: Case, runner: str | Runner, timeout_s: float | None = None) -> CaseResult:
    """Run ``case`` on ``runner`` (a registered name or a Runner instance) and record the outcome.

    The case runs on a worker thread; when it takes longer than ``timeout_s``
    (default: the case's own limit) it is reported as an error and left behind.
    """
    limit = timeout_s if timeout_s is not None else case.timeout_s
    name = runner_label(runner)
    workdir = tempfile.mkdtemp(prefix="tidal-case-")
    box: dict[str, Any] = {}
    started = time.perf_counter()
    deadline = time.monotonic() + limit

    def target() -> None:
        try:
            box["outcome"] = _execute(case, runner, CaseContext(workdir, name), deadline)
        except BaseException as exc:  # a bug in the harness or the case: report, never hang
            box["outcome"] = ("error", f"the case raised {_describe_exc(exc)}", None)

    thread = threading.Thread(target=target, name=f"tidal-case-{case.id}", daemon=True)
    thread.start()
    thread.join(limit)
    duration = time.perf_counter() - started
    if thread.is_alive():
        return CaseResult(case.id, name, "error", f"timed out after {limit:g} s", duration)
    shutil.rmtree(workdir, ignore_errors=True)
    outcome, message, measurement = box["outcome"]
    return CaseResult(case.id, name, outcome, message, duration, measurement)
