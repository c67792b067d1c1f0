"""Case: one small pipeline, its exact expected outcome, and the matrix row it evidences.

A case is declared with the :func:`case` decorator on the function that
builds its pipeline. The function gets a :class:`tidal.Pipeline` (and, when
it takes a second argument, the :class:`CaseContext` of the run) and returns
the PCollection to check, a dict of named PCollections, or None. The harness
records what reaches each returned PCollection — the fields named by
``observe``: the value, its window, its timestamp, its pane — and compares
it, as a multiset, with ``expected``.

>>> import tidal as td
>>> registry = CaseRegistry()
>>> @case("example.double", "ParDo", expected=[2, 4], registry=registry)
... def double(p):
...     '''Map doubles every element.'''
...     return p | td.Create([1, 2]) | td.Map(lambda x: 2 * x)
>>> c = registry.get("example.double")
>>> c.group, c.description, c.kind
('What is computed', 'Map doubles every element.', 'output')
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import attrs

from tidal.capability_matrix.rows import ROWS, find_row
from tidal.model.time import Timestamp
from tidal.model.trigger import PANE_INFO_UNKNOWN, PaneInfo, PaneInfoTiming
from tidal.model.window import GlobalWindow, IntervalWindow

if TYPE_CHECKING:
    from tidal.model.dofn import DoFn
    from tidal.model.pipeline import Pipeline
    from tidal.model.pvalue import PCollection
    from tidal.model.result import PipelineResult

__all__ = [
    "Case",
    "CaseContext",
    "CaseFailure",
    "CaseRegistry",
    "CaseSkipped",
    "ExpectedError",
    "REGISTRY",
    "case",
    "all_cases",
    "OBSERVABLE",
    "CHECKPOINT_RESTORE",
    # Helpers to write expected outputs.
    "W",
    "GW",
    "eow",
    "GLOBAL_EOW",
    "early",
    "on_time",
    "late",
    "NO_PANE",
]

#: The fields of an output element a case can observe.
OBSERVABLE = ("value", "window", "timestamp", "pane")

#: The runner capability the exactly-once cases need: ``supports_checkpoint_restore = True``
#: and ``with_checkpoint_dir(path)`` returning a runner that checkpoints there and resumes
#: from there when run again.
CHECKPOINT_RESTORE = "supports_checkpoint_restore"


class CaseFailure(AssertionError):
    """Raised by a case's build or drive function: the runner did not do what the case checks."""


class CaseSkipped(Exception):
    """Raised by a case's build or drive function: something the case needs outside tidal (a Redis
    server, say) is not available here. The case is reported ``skipped`` with the message, which
    should say how to provide it; a skipped case does not count towards its row's cell."""


@attrs.frozen
class ExpectedError:
    """A bad-input case expects this exception type, with ``message`` (and each of ``also``) in its text."""

    type: type[BaseException]
    message: str
    also: tuple[str, ...] = ()

    @property
    def fragments(self) -> tuple[str, ...]:
        return (self.message, *self.also)

    def describe(self) -> str:
        return f"{self.type.__name__} mentioning " + " and ".join(repr(f) for f in self.fragments)


@attrs.frozen(eq=False)
class Case:
    """One capability case (see the module docstring)."""

    id: str
    row: str
    group: str
    description: str
    build: Callable[..., Any]
    #: What each returned PCollection holds: a list (one PCollection) or a dict of lists.
    expected: Any = None
    #: For a case that must be rejected: the error it must raise (at apply or run time).
    error: ExpectedError | None = None
    #: Which fields of each output element are recorded (a subset of OBSERVABLE, in order).
    observe: tuple[str, ...] = ("value",)
    #: Reads an observation from the PipelineResult (metrics, state), compared with expected_probe.
    probe: Callable[["PipelineResult"], Any] | None = None
    expected_probe: Any = None
    #: Runs the built pipeline instead of ``p.run().wait_until_finish()`` (e.g. to cancel it);
    #: returns its result, or None when the case runs pipelines of its own (a ported program).
    drive: Callable[["Pipeline", "CaseContext"], "PipelineResult | None"] | None = None
    #: Runner capabilities the case needs (CHECKPOINT_RESTORE).
    requires: tuple[str, ...] = ()
    #: With at-least-once delivery to an idempotent sink: the key a record is stored under.
    #: Records with the same key must be identical; duplicates are then folded into one.
    idempotent_key: Callable[[Any], Any] | None = None
    #: A measured case: how many elements the pipeline processes (for a rate).
    elements: int | None = None
    measured: bool = False
    timeout_s: float = 60.0

    @property
    def kind(self) -> str:
        """"error", "recovery", "measured" or "output"."""
        if self.error is not None:
            return "error"
        if CHECKPOINT_RESTORE in self.requires:
            return "recovery"
        if self.measured:
            return "measured"
        return "output"

    def build_pipeline(self, p: "Pipeline", ctx: "CaseContext") -> Any:
        """Call the build function with the context when it takes one."""
        try:
            wants_ctx = len(inspect.signature(self.build).parameters) >= 2
        except (TypeError, ValueError):
            wants_ctx = False
        return self.build(p, ctx) if wants_ctx else self.build(p)

    def __repr__(self) -> str:
        return f"Case({self.id!r}, row={self.row!r})"


class CaseContext:
    """What a case run may use: a private working folder, failure injection and read counting.

    ``attempt`` counts the runs of the case's pipeline (1, then 2 after a
    restart ...); the harness sets it before each build.
    """

    def __init__(self, workdir: str | os.PathLike[str], runner_name: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runner_name = runner_name
        self.attempt = 1
        #: How many elements the case's input holds (set by :meth:`record_reads`).
        self.input_total: int | None = None
        #: What a drive function found wrong (see :meth:`report_problem`).
        self.problems: list[str] = []
        self._markers: list[Path] = []

    def report_problem(self, problem: str) -> None:
        """Make the case fail with ``problem`` once it has run, after the harness's own checks.

        A drive function uses this instead of raising CaseFailure when the
        harness should still look at the finished run (a recovery case's restore).
        """
        self.problems.append(problem)

    @property
    def checkpoint_dir(self) -> Path:
        """The folder a recovery case's runner checkpoints to (``with_checkpoint_dir``)."""
        return self.workdir / "checkpoints"

    def fail_once(self, predicate: Callable[[Any], bool], name: str = "crash") -> "DoFn":
        """A pass-through DoFn that raises once, on the first element for which ``predicate`` holds.

        The failure is armed by a marker file that the raising worker removes,
        so a recovered or restarted run does not fail again.
        """
        from tidal.capability_matrix.sinks import FailOnce

        return FailOnce(str(self._arm(name)), predicate)

    def fail_after_checkpoint(self, predicate: Callable[[Any], bool], name: str = "crash", pace_s: float = 0.6) -> "DoFn":
        """Like :meth:`fail_once`, but the failure waits until the job has a complete checkpoint.

        Until then matching elements pass on and each bundle waits ``pace_s``
        seconds, so that a runner checkpointing by time takes one mid-input; the
        restarted job can then resume from it (see
        :class:`~tidal.capability_matrix.sinks.FailAfterCheckpoint`). A case with
        few bundles per worker paces each for longer than a checkpoint interval,
        so that a barrier is waiting at every bundle boundary after the first.
        """
        from tidal.capability_matrix.sinks import FailAfterCheckpoint

        return FailAfterCheckpoint(str(self._arm(name)), predicate, str(self.checkpoint_dir), pace_s)

    def _arm(self, name: str) -> Path:
        marker = self.workdir / f"armed-{name}"
        if marker not in self._markers:  # a rebuilt pipeline (after a restart) is not re-armed
            marker.touch()
            self._markers.append(marker)
        return marker

    @property
    def armed(self) -> bool:
        return bool(self._markers)

    def failures_pending(self) -> list[str]:
        """The injected failures that have not happened (their marker is still there)."""
        return [m.name[len("armed-"):] for m in self._markers if m.exists()]

    def record_reads(self, pcoll: "PCollection[Any]", total: int) -> "PCollection[Any]":
        """Record every element of ``pcoll`` (the case's input, ``total`` elements) per attempt.

        A recovery case calls this on what its sources read, so the harness
        can check that the attempt after a failure resumed from a checkpoint:
        it reads fewer than ``total`` elements. Returns ``pcoll``.
        """
        from tidal.capability_matrix.sinks import RecordTo
        from tidal.model.primitives import ParDo

        self.input_total = total
        folder = self.workdir / f"reads-{self.attempt}"
        folder.mkdir(exist_ok=True)
        _ = pcoll | "RecordReads" >> ParDo(RecordTo(str(folder), ("value",)))
        return pcoll

    def reads(self, attempt: int | None = None) -> list[Any]:
        """What attempt ``attempt`` (default: the current one) recorded with :meth:`record_reads`."""
        from tidal.capability_matrix.sinks import read_records

        return read_records(self.workdir / f"reads-{attempt or self.attempt}")

    def output_folder(self, name: str) -> Path:
        folder = self.workdir / f"out-{name}"
        folder.mkdir(exist_ok=True)
        return folder

    def outputs(self, name: str = "out") -> list[Any]:
        """Every record the sink of output ``name`` has written so far."""
        from tidal.capability_matrix.sinks import read_records

        return read_records(self.workdir / f"out-{name}")


class CaseRegistry:
    """Cases by id, in registration order."""

    def __init__(self) -> None:
        self._cases: dict[str, Case] = {}

    def add(self, c: Case) -> Case:
        if c.id in self._cases:
            raise ValueError(f"duplicate capability case id {c.id!r}")
        if find_row(c.row) is None:
            raise ValueError(f"case {c.id!r} names an unknown row {c.row!r}; rows: {', '.join(r.name for r in ROWS)}")
        unknown = [f for f in c.observe if f not in OBSERVABLE]
        if unknown or not c.observe:
            raise ValueError(f"case {c.id!r} observes {c.observe!r}; choose from {OBSERVABLE}")
        self._cases[c.id] = c
        return c

    def get(self, case_id: str) -> Case:
        return self._cases[case_id]

    def __iter__(self) -> Iterator[Case]:
        return iter(list(self._cases.values()))

    def __len__(self) -> int:
        return len(self._cases)

    def by_row(self) -> dict[str, list[Case]]:
        """Cases per row name, rows in matrix order (rows without cases are left out)."""
        out: dict[str, list[Case]] = {row.name: [] for row in ROWS}
        for c in self._cases.values():
            out[c.row].append(c)
        return {name: cases for name, cases in out.items() if cases}


REGISTRY = CaseRegistry()


def case(
    case_id: str,
    row: str,
    *,
    expected: Any = None,
    error: ExpectedError | None = None,
    observe: tuple[str, ...] = ("value",),
    probe: Callable[["PipelineResult"], Any] | None = None,
    expected_probe: Any = None,
    drive: Callable[["Pipeline", CaseContext], "PipelineResult | None"] | None = None,
    requires: tuple[str, ...] = (),
    idempotent_key: Callable[[Any], Any] | None = None,
    elements: int | None = None,
    measured: bool = False,
    timeout_s: float = 60.0,
    registry: CaseRegistry | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated build function as a case; its docstring is the description."""

    def register(build: Callable[..., Any]) -> Callable[..., Any]:
        doc = inspect.getdoc(build)
        if not doc:
            raise ValueError(f"case {case_id!r}: the build function needs a docstring (the case's description)")
        found = find_row(row)
        if found is None:
            raise ValueError(f"case {case_id!r} names an unknown row {row!r}")
        c = Case(
            id=case_id,
            row=found.name,
            group=found.group,
            description=" ".join(doc.split()),
            build=build,
            expected=expected,
            error=error,
            observe=tuple(observe),
            probe=probe,
            expected_probe=expected_probe,
            drive=drive,
            requires=tuple(requires),
            idempotent_key=idempotent_key,
            elements=elements,
            measured=measured,
            timeout_s=timeout_s,
        )
        (registry if registry is not None else REGISTRY).add(c)
        return build

    return register


def all_cases() -> list[Case]:
    """Every registered case (importing the case modules registers them)."""
    import tidal.capability_matrix.cases  # noqa: F401  (registers on import)

    return [c for cases in REGISTRY.by_row().values() for c in cases]


# -- writing expected outputs ------------------------------------------------------------
def W(start: float, end: float) -> IntervalWindow:
    """The window [start, end) (seconds)."""
    return IntervalWindow(start, end)


#: The global window.
GW = GlobalWindow()
#: The timestamp of a pane of the global window (its max timestamp).
GLOBAL_EOW = GW.max_timestamp()


def eow(end: float) -> Timestamp:
    """The max timestamp of a window ending at ``end``: one microsecond before it."""
    return Timestamp(end).predecessor()


def early(index: int, last: bool = False) -> PaneInfo:
    """The pane of an early firing with this index."""
    return PaneInfo(index == 0, last, PaneInfoTiming.EARLY, index, -1)


def on_time(index: int = 0, last: bool = False) -> PaneInfo:
    """The on-time pane (the index counts the early panes before it)."""
    return PaneInfo(index == 0, last, PaneInfoTiming.ON_TIME, index, 0)


def late(index: int, nonspeculative_index: int, last: bool = False) -> PaneInfo:
    """A late pane."""
    return PaneInfo(index == 0, last, PaneInfoTiming.LATE, index, nonspeculative_index)


#: The pane of an element that has not been through a trigger.
NO_PANE = PANE_INFO_UNKNOWN
