"""Reading a stopped job's keyed state from its checkpoints (Flink's State Processor API, read side).

A Ray job checkpointing to a folder (``RayRunner(checkpoint_dir=DIR)``, or
``python -m tidal run --runner ray --checkpoint-dir DIR``) and a micro-batch
job with a commit log (``MicroBatchRunner(commit_log=DIR)``) leave the state
of every stateful DoFn in ``DIR``. :func:`read_checkpoint` reads it as a
pyarrow Table, one row per state cell; :func:`describe_checkpoint` says which
steps and state names a checkpoint holds. The command line does the same::

    python -m tidal state DIR                                  # the steps and their state names
    python -m tidal state DIR --step Count                     # Count's state, printed
    python -m tidal state DIR --step Count --out state.parquet # ... written as Parquet (or .csv)

``DIR`` is the checkpoint folder (``chk-<n>`` folders inside), the commit log
folder (``commits/`` inside), or one ``chk-<n>`` folder (a savepoint). The
newest complete checkpoint is read unless ``checkpoint`` names one. Every
checkpoint is read through :class:`~tidal.runners.core.checkpoint.CheckpointStore`,
which checks each part against the manifest's checksums before anything is
unpickled. Checkpoints hold pickles: reading one runs code of whoever wrote
it, so read only checkpoints from a location as trusted as your own code.

The table's columns:

``step`` (string)
    the stateful DoFn's full label.
``key``
    the key, as an Arrow value when every key of the table has the same
    Python type and converts to Arrow and back unchanged (str, int, float,
    bool, bytes, lists of those ...); otherwise each key's ``repr`` (a string).
``window`` (string)
    the window's ``repr`` (``GlobalWindow``, ``IntervalWindow(0, 60)``).
``window_start``, ``window_end`` (timestamp[us, UTC])
    an interval window's bounds; null for the global window.
``state`` (string)
    the state spec's name.
``value``
    what the state holds, encoded as ``key`` is: a value state's value, a bag
    state's list, a set state's set, a combining state's accumulator.
``key_pickle``, ``value_pickle`` (binary)
    the exact key and value, pickled with cloudpickle (``pickle.loads``
    gives them back), for types Arrow cannot hold.

The schema's metadata says how ``key`` and ``value`` were encoded:
``tidal.key`` and ``tidal.value`` are ``b"arrow"`` or ``b"repr"``.

>>> import tempfile, tidal as td
>>> from tidal.runners.microbatch.runner import MicroBatchRunner
>>> class Count(td.DoFn):
...     COUNT = td.ReadModifyWriteStateSpec("count")
...     def process(self, kv, count=td.DoFn.StateParam(COUNT)):
...         count.write((count.read() or 0) + 1)
...         yield kv
>>> folder = tempfile.mkdtemp()
>>> p = td.Pipeline(runner=MicroBatchRunner(commit_log=folder))
>>> _ = p | td.Create([("a", 1), ("b", 2), ("a", 3)]) | "Count" >> td.ParDo(Count())
>>> _ = p.run()
>>> describe_checkpoint(folder).steps
{'Count': {'count': 2}}
>>> table = read_checkpoint(folder, step="Count")
>>> table.select(["key", "window", "state", "value"]).to_pylist()[0]
{'key': 'a', 'window': 'GlobalWindow', 'state': 'count', 'value': 2}
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from typing import TYPE_CHECKING, Any

import attrs
import cloudpickle

from tidal.model.time import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tidal.runners.core.checkpoint import CheckpointStore, CheckpointWarning, CompletedCheckpoint
from tidal.runners.core.keygroups import KeyedSnapshot
from tidal.runners.core.queryable import JobFinishedError, StateQueryError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "read_checkpoint",
    "describe_checkpoint",
    "CheckpointState",
    "StateQueryError",
    "JobFinishedError",
    "add_state_parser",
]

_CHK = re.compile(r"^chk-(\d+)$")


@attrs.frozen
class CheckpointState:
    """What one checkpoint holds: its steps with state, and per step each state name's number of cells."""

    #: The folder (or URL) read.
    location: str
    #: "ray" (a Ray job's checkpoints) or "microbatch" (a micro-batch commit log).
    kind: str
    #: The checkpoint's number (a batch number in a commit log).
    id: int
    #: Whether it was taken at the end of the input (the job had finished).
    final: bool
    #: step label -> state name -> how many (key, window) cells hold that state.
    steps: dict[str, dict[str, int]]

    def describe(self) -> str:
        """The listing ``python -m tidal state DIR`` prints."""
        what = "Ray job checkpoint" if self.kind == "ray" else "micro-batch commit of batch"
        end = ", taken at the end of the input" if self.final else ""
        lines = [f"{what} {self.id} in {self.location}{end}"]
        if not self.steps:
            lines.append("  no step holds keyed state (the pipeline has no stateful DoFn)")
        for step, names in self.steps.items():
            held = ", ".join(f"{name!r} ({n} cell{'s' if n != 1 else ''})" for name, n in names.items())
            lines.append(f"  step {step!r}: {held or 'no state held yet'}")
        return "\n".join(lines)


# -- finding and reading a checkpoint ------------------------------------------------
def _open(location: str | os.PathLike[str], checkpoint: int | None) -> tuple[str, CompletedCheckpoint]:
    """(kind, the checkpoint) of the checkpoints at ``location``."""
    where = os.fspath(location)
    if "://" not in where and not os.path.exists(where):
        raise StateQueryError(f"there is no checkpoint folder {where}: it does not exist")
    if "://" not in where and not os.path.isdir(where):
        raise StateQueryError(f"{where} is a file, not a checkpoint folder")
    trimmed = where.rstrip("/")
    match = _CHK.match(os.path.basename(trimmed))
    if match is not None:  # one checkpoint (a savepoint's location)
        parent = os.path.dirname(trimmed)
        kind = "microbatch" if os.path.basename(parent) == "commits" else "ray"
        wanted = int(match.group(1))
        if checkpoint is not None and checkpoint != wanted:
            raise StateQueryError(f"{where} is checkpoint {wanted}, not checkpoint {checkpoint}")
        return kind, _get(CheckpointStore(parent), wanted, where)
    commits = f"{trimmed}/commits"
    if "://" not in where and os.path.isdir(commits):
        return "microbatch", _pick(CheckpointStore(commits), checkpoint, where)
    store = CheckpointStore(where)
    if store.ids():
        return "ray", _pick(store, checkpoint, where)
    if "://" in where:
        log = CheckpointStore(commits)
        if log.ids():
            return "microbatch", _pick(log, checkpoint, where)
    raise StateQueryError(
        f"there is no checkpoint in {where}: it holds neither chk-<n> folders (the checkpoints of a Ray job) nor "
        "a commits folder (the commit log of a micro-batch job)"
    )


def _get(store: CheckpointStore, checkpoint: int, where: str) -> CompletedCheckpoint:
    if checkpoint not in store.ids():
        have = store.completed_ids()
        raise StateQueryError(
            f"there is no checkpoint {checkpoint} in {where}; its complete checkpoints are: "
            f"{', '.join(map(str, have)) or 'none'}"
        )
    return store.get(checkpoint)  # refuses an incomplete or damaged one, saying why


def _pick(store: CheckpointStore, checkpoint: int | None, where: str) -> CompletedCheckpoint:
    if checkpoint is not None:
        return _get(store, checkpoint, where)
    latest = store.latest()  # skips damaged or partial ones with a CheckpointWarning
    if latest is None:
        raise StateQueryError(
            f"there is no complete checkpoint in {where} (checkpoints present: "
            f"{', '.join(map(str, store.ids())) or 'none'}; one without a manifest was cut short, a damaged one is skipped)"
        )
    return latest


def _snapshots(cp: CompletedCheckpoint) -> list[dict[str, Any]]:
    """The executor snapshots the checkpoint's parts hold (one per worker; one for a commit)."""
    out = []
    for part in cp.parts:
        obj = cp.read_state(part)  # its pieces verified (checksums, a signature) before unpickling
        out.append(obj["executor"] if isinstance(obj, dict) and "executor" in obj else obj)
    return out


def _is_stateful(extra: Any) -> bool:
    """Whether an operator's snapshot is a stateful DoFn's (see StatefulParDoOperator.snapshot)."""
    return isinstance(extra, KeyedSnapshot) and isinstance(extra.common, dict) and set(extra.common) == {"side_data"}


def _cells(cp: CompletedCheckpoint) -> dict[str, list[tuple[Any, Any, str, Any]]]:
    """step -> (key, window, state name, value) of every state cell in the checkpoint."""
    steps: dict[str, list[tuple[Any, Any, str, Any]]] = {}
    for snap in _snapshots(cp):
        for label, _base, extra, _staged in snap.get("ops", []):
            if not _is_stateful(extra):
                continue
            rows = steps.setdefault(label, [])
            for items in extra.groups.values():
                for item in items:
                    if item[0] == "cells":
                        (key, window), cells = item[1], item[2]
                        rows.extend((key, window, name, value) for name, value in cells.items())
    return steps


def describe_checkpoint(location: str | os.PathLike[str], checkpoint: int | None = None) -> CheckpointState:
    """The steps with keyed state in a checkpoint, and each one's state names (see the module docs)."""
    kind, cp = _open(location, checkpoint)
    steps: dict[str, dict[str, int]] = {}
    for step, rows in _cells(cp).items():
        counts: dict[str, int] = {}
        for _key, _window, name, _value in rows:
            counts[name] = counts.get(name, 0) + 1
        steps[step] = dict(sorted(counts.items()))
    return CheckpointState(os.fspath(location), kind, cp.id, cp.final, dict(sorted(steps.items())))


def read_checkpoint(
    location: str | os.PathLike[str],
    step: str | None = None,
    state_name: str | None = None,
    checkpoint: int | None = None,
) -> "pa.Table":
    """The keyed state in a checkpoint as a table: one row per (step, key, window, state name).

    ``step`` and ``state_name`` keep only that step's (or that state's)
    rows; an unknown one raises :class:`StateQueryError` naming what the
    checkpoint holds. ``checkpoint`` picks a checkpoint by number (default:
    the newest complete one). See the module docs for the columns.
    """
    kind, cp = _open(location, checkpoint)
    steps = _cells(cp)
    where = f"checkpoint {cp.id} in {os.fspath(location)}"
    if step is not None and step not in steps:
        have = ", ".join(repr(s) for s in sorted(steps)) or "none"
        raise StateQueryError(f"{where} has no step {step!r} with keyed state; the steps with state are: {have}")
    chosen = [step] if step is not None else sorted(steps)
    rows = [(s, *cell) for s in chosen for cell in steps[s]]
    if state_name is not None:
        names = sorted({r[3] for r in rows})
        rows = [r for r in rows if r[3] == state_name]
        if not rows:
            scope = f"step {step!r}" if step is not None else "any step"
            raise StateQueryError(
                f"{where}: {scope} holds no state named {state_name!r}; the state names there are: "
                f"{', '.join(repr(n) for n in names) or 'none'}"
            )
    rows.sort(key=lambda r: (r[0], r[3], repr(r[1]), _window_order(r[2])))
    return _table(rows)


def _window_order(window: Any) -> tuple[int, int]:
    start, end = _bounds(window)
    return (MIN_TIMESTAMP_US if start is None else start, MAX_TIMESTAMP_US if end is None else end)


def _bounds(window: Any) -> tuple[int | None, int | None]:
    start, end = getattr(window, "_start_us", None), getattr(window, "_end_us", None)
    if not isinstance(start, int) or not isinstance(end, int):
        return None, None
    return start, end


def _column(values: list[Any]) -> tuple["pa.Array", bool]:
    """``values`` as an Arrow array when they share one Python type and survive the trip; else their reprs."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if len(kinds) <= 1:
        try:
            array = pa.array(values)
            if array.to_pylist() == values:
                return array, True
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
    return pa.array([None if v is None else repr(v) for v in values], pa.string()), False


def _table(rows: list[tuple[Any, Any, Any, str, Any]]) -> "pa.Table":
    import pyarrow as pa

    keys, typed_keys = _column([r[1] for r in rows])
    values, typed_values = _column([r[4] for r in rows])
    bounds = [_bounds(r[2]) for r in rows]
    stamp = pa.timestamp("us", tz="UTC")
    columns = {
        "step": pa.array([r[0] for r in rows], pa.string()),
        "key": keys,
        "window": pa.array([repr(r[2]) for r in rows], pa.string()),
        "window_start": pa.array([b[0] for b in bounds], stamp),
        "window_end": pa.array([b[1] for b in bounds], stamp),
        "state": pa.array([r[3] for r in rows], pa.string()),
        "value": values,
        "key_pickle": pa.array([cloudpickle.dumps(r[1]) for r in rows], pa.binary()),
        "value_pickle": pa.array([cloudpickle.dumps(r[4]) for r in rows], pa.binary()),
    }
    metadata = {"tidal.key": "arrow" if typed_keys else "repr", "tidal.value": "arrow" if typed_values else "repr"}
    return pa.table(columns).replace_schema_metadata(metadata)


# -- the command line ----------------------------------------------------------------
_HELP = "list a stopped job's keyed state, or write a step's state as a table"
_DESCRIPTION = """\
Read the keyed state of a stopped job from its checkpoints: CHECKPOINT_DIR is
a Ray job's checkpoint folder (--checkpoint-dir of 'tidal run', checkpoint_dir
of RayRunner), a micro-batch job's commit log folder, or one chk-<n> folder.
Without --step (and --out) it lists the steps with state and their state
names. With --step it prints that step's state, one row per key, window and
state name; with --out it writes the table as Parquet (.parquet) or CSV (.csv)
instead. The newest complete checkpoint is read unless --checkpoint names one.
Checkpoints hold pickles: read only a location as trusted as your code.
"""
_EPILOG = """\
examples:
  python -m tidal state ckpt
  python -m tidal state ckpt --step CountPerUser
  python -m tidal state ckpt --step CountPerUser --state count --out counts.parquet
"""


def add_state_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``state`` subcommand to ``python -m tidal``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "state", help=_HELP, description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    parser.add_argument("checkpoint_dir", metavar="CHECKPOINT_DIR", help="the job's checkpoint or commit log folder")
    parser.add_argument("--step", default=None, help="the full label of a stateful DoFn's step")
    parser.add_argument("--state", dest="state_name", default=None, metavar="NAME", help="only this state name")
    parser.add_argument("--checkpoint", type=int, default=None, metavar="N", help="read checkpoint N (default: the newest complete one)")
    parser.add_argument("--out", default=None, metavar="FILE", help="write the table to FILE (.parquet or .csv)")
    parser.set_defaults(func=cmd_state)
    return parser


def cmd_state(args: argparse.Namespace) -> int:
    """``tidal state``: list, print or write the state in a checkpoint (exit code 2 on bad input)."""
    from tidal.runners.core.checkpoint import CheckpointError

    out = args.out
    try:
        if out is not None and os.path.splitext(out)[1].lower() not in (".parquet", ".csv"):
            raise StateQueryError(f"--out {out}: the table is written as Parquet (.parquet) or CSV (.csv); name the file so")
        if args.state_name is not None and args.step is None and out is None:
            raise StateQueryError("--state needs --step or --out (list the steps and their state names without either)")
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always", CheckpointWarning)
            if args.step is None and out is None:
                listing = describe_checkpoint(args.checkpoint_dir, args.checkpoint).describe()
                table = None
            else:
                table = read_checkpoint(args.checkpoint_dir, args.step, args.state_name, args.checkpoint)
        for warning in skipped:
            print(f"tidal state: {warning.message}", file=sys.stderr)
    except (StateQueryError, CheckpointError) as exc:
        print(f"tidal state: error: {exc}", file=sys.stderr)
        return 2
    if table is None:
        print(listing)
        return 0
    if out is not None:
        _write(table, out)
        print(f"tidal state: wrote {table.num_rows} row{'s' if table.num_rows != 1 else ''} to {out}", file=sys.stderr)
        return 0
    meta = table.schema.metadata
    for row in table.select(["step", "key", "window", "state", "value"]).to_pylist():
        key = row["key"] if meta[b"tidal.key"] == b"repr" else repr(row["key"])
        value = row["value"] if meta[b"tidal.value"] == b"repr" else repr(row["value"])
        print(f"{row['step']}\t{key}\t{row['window']}\t{row['state']}\t{value}")
    return 0


def _write(table: "pa.Table", out: str) -> None:
    if out.lower().endswith(".csv"):
        import pyarrow.csv as pacsv

        # CSV holds no binary columns: the pickles stay out, the reprs (or Arrow values) go in.
        plain = table.drop_columns(["key_pickle", "value_pickle"])
        import pyarrow as pa

        nested = [f.name for f in plain.schema if pa.types.is_nested(f.type)]
        for name in nested:  # lists and structs as their Python repr
            i = plain.schema.get_field_index(name)
            plain = plain.set_column(i, name, _as_text(plain.column(name).to_pylist()))
        pacsv.write_csv(plain, out)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, out)


def _as_text(values: list[Any]) -> "pa.Array":
    import pyarrow as pa

    return pa.array([None if v is None else repr(v) for v in values], pa.string())
