"""Keyed state: the per-(key, window) store behind stateful DoFns, with snapshot/restore.

Operators never keep user state anywhere else, so a checkpoint is
``store.snapshot()`` and recovery is ``store.restore(snapshot)``. The cells
live in a *table* from :mod:`tidal.runners.core.statebackend`: a dict (the
memory backend, the default) or a table spilled to disk.

>>> from tidal.model.userstate import BagStateSpec
>>> store = KeyedStateStore()
>>> bag = store.cell("k", "w", BagStateSpec("b"))
>>> bag.add(1); bag.add(2)
>>> bag.read()
[1, 2]
>>> snap = store.snapshot(); bag.clear(); store.restore(snap)
>>> store.cell("k", "w", BagStateSpec("b")).read()
[1, 2]
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, MutableMapping

from tidal.model.userstate import (
    BagStateSpec,
    CombiningValueStateSpec,
    ReadModifyWriteStateSpec,
    SetStateSpec,
    StateSpec,
)
from tidal.runners.core.statebackend import table_snapshot

__all__ = ["KeyedStateStore", "ReadModifyWriteState", "BagState", "SetState", "CombiningValueState"]

_ABSENT = object()


class KeyedStateStore:
    """State cells keyed by (key, window, state name), in ``table`` (a dict when not given)."""

    def __init__(self, table: MutableMapping[tuple[Any, Any], dict[str, Any]] | None = None) -> None:
        self._data: MutableMapping[tuple[Any, Any], dict[str, Any]] = {} if table is None else table

    def get(self, key: Any, window: Any, name: str, default: Any = None) -> Any:
        cells = self._data.get((key, window))
        return default if cells is None else cells.get(name, default)

    def put(self, key: Any, window: Any, name: str, value: Any) -> None:
        cells = self._data.get((key, window))
        if cells is None:
            cells = self._data[(key, window)] = {}
        cells[name] = value

    def delete(self, key: Any, window: Any, name: str) -> None:
        cells = self._data.get((key, window))
        if cells is not None:
            cells.pop(name, None)
            if not cells:
                del self._data[(key, window)]

    def clear_window(self, key: Any, window: Any) -> None:
        """Drop every cell of (key, window): garbage collection at window expiry."""
        self._data.pop((key, window), None)

    def clear_all(self, window: Any) -> None:
        """Drop the cells of every key in ``window`` (the global window's garbage collection)."""
        for kw in [kw for kw in self._data if kw[1] == window]:
            del self._data[kw]

    def windows(self) -> set[tuple[Any, Any]]:
        return set(self._data)

    def cell(self, key: Any, window: Any, spec: StateSpec) -> "_StateCell":
        """The user-facing state object for ``spec`` in (key, window)."""
        if isinstance(spec, ReadModifyWriteStateSpec):
            return ReadModifyWriteState(self, key, window, spec)
        if isinstance(spec, BagStateSpec):
            return BagState(self, key, window, spec)
        if isinstance(spec, SetStateSpec):
            return SetState(self, key, window, spec)
        if isinstance(spec, CombiningValueStateSpec):
            return CombiningValueState(self, key, window, spec)
        raise TypeError(f"unknown state spec {spec!r}")

    def snapshot(self) -> dict[tuple[Any, Any], dict[str, Any]]:
        if type(self._data) is dict:
            return copy.deepcopy(self._data)
        return {kw: copy.deepcopy(cells) for kw, cells in self._data.items()}

    def delta_snapshot(self) -> tuple[dict[tuple[Any, Any], dict[str, Any]], list[tuple[Any, Any]] | None]:
        """The cells for a checkpoint and the (key, window) pairs deleted since the last one.

        All cells and None, unless the table takes part in an incremental checkpoint
        (see :func:`~tidal.runners.core.statebackend.table_snapshot`).
        """
        items, gone = table_snapshot(self._data)
        return {kw: copy.deepcopy(cells) for kw, cells in items}, gone

    def restore(self, snapshot: dict[tuple[Any, Any], dict[str, Any]]) -> None:
        if type(self._data) is dict:
            self._data = copy.deepcopy(snapshot)
            return
        self._data.clear()
        for kw, cells in snapshot.items():
            self._data[kw] = copy.deepcopy(cells)

    def __len__(self) -> int:
        return len(self._data)


class _StateCell:
    __slots__ = ("store", "key", "window", "spec")

    def __init__(self, store: KeyedStateStore, key: Any, window: Any, spec: StateSpec) -> None:
        self.store = store
        self.key = key
        self.window = window
        self.spec = spec

    def clear(self) -> None:
        self.store.delete(self.key, self.window, self.spec.name)

    def _get(self, default: Any = None) -> Any:
        return self.store.get(self.key, self.window, self.spec.name, default)

    def _put(self, value: Any) -> None:
        self.store.put(self.key, self.window, self.spec.name, value)


class ReadModifyWriteState(_StateCell):
    """One value per key and window."""

    __slots__ = ()

    def read(self) -> Any:
        return self._get()

    def write(self, value: Any) -> None:
        self._put(value)


class BagState(_StateCell):
    """An append-only list per key and window."""

    __slots__ = ()

    def add(self, value: Any) -> None:
        bag = self._get(_ABSENT)
        if bag is _ABSENT:
            self._put([value])
        else:
            bag.append(value)

    def read(self) -> list[Any]:
        return list(self._get(()))


class SetState(_StateCell):
    """A set per key and window."""

    __slots__ = ()

    def add(self, value: Any) -> None:
        s = self._get(_ABSENT)
        if s is _ABSENT:
            self._put({value})
        else:
            s.add(value)

    def read(self) -> set[Any]:
        return set(self._get(()))


class CombiningValueState(_StateCell):
    """A value combined from its inputs by the spec's CombineFn."""

    __slots__ = ()

    def add(self, value: Any) -> None:
        fn = self.spec.combine_fn  # type: ignore[attr-defined]
        acc = self._get(_ABSENT)
        if acc is _ABSENT:
            acc = fn.create_accumulator()
        self._put(fn.add_input(acc, value))

    def add_all(self, values: Iterable[Any]) -> None:
        for v in values:
            self.add(v)

    def read(self) -> Any:
        fn = self.spec.combine_fn  # type: ignore[attr-defined]
        acc = self._get(_ABSENT)
        if acc is _ABSENT:
            acc = fn.create_accumulator()
        return fn.extract_output(acc)
