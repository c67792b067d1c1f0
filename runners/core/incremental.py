"""Incremental checkpoints: a snapshot holds what changed since the last committed one; a chain restores.

With the disk state backend, an executor's snapshot for checkpoint ``N``
holds in full only what is small (watermarks, source positions) and, of the
keyed tables, only the entries read or written since the
last checkpoint that completed (``C``), plus the keys deleted since (``gone``
items): a stateful DoFn's cells and timers, a windowing step's window states with their
window keys and each key's merging windows, a count or delta window step's key
states. A windowing step's timers and processing-time deadlines are not saved:
the restore derives them from its windows (see ``KeyedWindowReducer._timers_of``)
and from the deadline each window state waits for. It names in ``needs`` the checkpoints it builds on: ``C``'s own
chain and ``C``. The first snapshot, every snapshot after a restore, and
every :data:`MAX_CHAIN`-th one are full, so a chain stays short.

The checkpoint store records ``needs`` in the manifest (see
:mod:`tidal.runners.core.checkpoint`): retention keeps the checkpoints a
retained one needs, verification checks them, and a restore reads the chain
and folds it into one full snapshot with :func:`collapse`.

>>> from tidal.runners.core.keygroups import KeyedSnapshot
>>> full = {"ops": [("Count", (), KeyedSnapshot({}, {0: [("cells", ("a", None), {"n": 1}), ("cells", ("b", None), {"n": 1})]}), {})]}
>>> delta = {"ops": [("Count", (), KeyedSnapshot({"delta": True}, {0: [("cells", ("a", None), {"n": 2}), ("gone", ("b", None))]}), {})], "needs": [1]}
>>> collapse([full, delta])["ops"][0][2].groups
{0: [('cells', ('a', None), {'n': 2})]}
"""

from __future__ import annotations

from typing import Any

from tidal.runners.core.keygroups import KeyedSnapshot

__all__ = ["collapse", "MAX_CHAIN", "is_delta"]

#: The most checkpoints one restore reads (a full one and the deltas after it).
MAX_CHAIN = 8

#: Items of a keyed snapshot that are entries of a table, by kind: a stateful DoFn's cells and timers, a
#: windowing reducer's window states, window keys and merging windows of a key (``active``), a
#: count or delta window reducer's key states (``policy``). Item 1 names the entry, except a
#: window key's ("key", window, key), which is the (key, window) of its state.
_TABLE_KINDS = {"cells": "c", "state": "s", "key": "k", "active": "a", "policy": "p", "timer": "t"}
#: What a ``("gone", name)`` item deletes; ``("gone", name, kinds)`` deletes the entries of ``kinds``.
_GONE_KINDS = "csk"


def is_delta(extra: Any) -> bool:
    """Whether an operator's snapshot holds only what changed (and needs the ones before it)."""
    return isinstance(extra, KeyedSnapshot) and isinstance(extra.common, dict) and bool(extra.common.get("delta"))


def _identity(item: tuple[Any, ...]) -> tuple[str, Any] | None:
    kind = _TABLE_KINDS.get(item[0])
    if kind is None:
        return None
    if kind == "k":  # ("key", window, key)
        return kind, (item[2], item[1])
    return kind, item[1]


def collapse(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """One full executor snapshot from a chain, oldest (a full one) first, newest last.

    Table entries come from the newest snapshot that has them, unless a later one
    deleted them; everything else is the newest snapshot's.
    """
    if not snapshots:
        raise ValueError("an empty chain of snapshots has nothing to restore")
    newest = snapshots[-1]
    if len(snapshots) == 1 and not any(is_delta(entry[2]) for entry in newest["ops"]):
        return newest
    ops = []
    for k, (label, base, extra, uncommitted) in enumerate(newest["ops"]):
        if not is_delta(extra):
            ops.append((label, base, extra, uncommitted))
            continue
        tables: dict[int, dict[tuple[str, Any], tuple[Any, ...]]] = {}
        for snap in snapshots:
            older = snap["ops"][k][2]
            if not is_delta(older):
                tables = {}  # a full snapshot: the entries start again from it
            if not isinstance(older, KeyedSnapshot):
                continue
            for g, items in older.groups.items():
                entries = tables.setdefault(g, {})
                for item in items:
                    if item[0] == "gone":
                        name = item[1]
                        for kind in item[2] if len(item) > 2 else _GONE_KINDS:
                            entries.pop((kind, name), None)
                        continue
                    ident = _identity(item)
                    if ident is not None:
                        entries.pop(ident, None)  # the newest goes last: its order is the newest's
                        entries[ident] = item
        groups: dict[int, list[Any]] = {}
        for g, items in extra.groups.items():
            rest = [item for item in items if item[0] != "gone" and _identity(item) is None]
            if rest:
                groups[g] = rest
        for g, entries in tables.items():
            if entries:
                groups.setdefault(g, []).extend(entries.values())
        common = {name: value for name, value in extra.common.items() if name != "delta"}
        ops.append((label, base, KeyedSnapshot(common, groups), uncommitted))
    return dict(newest, ops=ops, needs=[])
