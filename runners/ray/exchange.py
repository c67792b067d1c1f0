"""Routing between stage instances: keyed (stable hash), broadcast and forward.

Keys are routed by a hash of their pickled form (CRC-32), not Python's
``hash``, which is salted per process: every worker must send a key to the
same instance.

>>> stable_hash("word") == stable_hash("word")
True
>>> route_keyed([(("a", 1), 0, (), None), (("b", 2), 0, (), None)], 2)[stable_hash("a") % 2][0][0]
('a', 1)
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any


__all__ = ["stable_hash", "route_keyed", "Edge"]


def stable_hash(key: Any) -> int:
    """A hash of ``key`` that is the same in every process."""
    cls = type(key)
    if cls is str:
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if cls is int:
        return zlib.crc32(key.to_bytes((key.bit_length() + 8) // 8, "little", signed=True))
    if cls is bytes:
        return zlib.crc32(key)
    try:
        return zlib.crc32(pickle.dumps(key, protocol=4))
    except Exception:
        # A key of a class pickle cannot name here (defined in the driver's __main__ or in a
        # module shipped by value, and unpickled by value in this worker): hash what it holds.
        return zlib.crc32(pickle.dumps(_portable(key), protocol=4))


def _portable(value: Any) -> Any:
    """A stand-in for ``value`` that plain pickle can write, equal for equal values in every process."""
    cls = type(value)
    if isinstance(value, tuple):  # namedtuples included
        return (cls.__module__, cls.__qualname__, tuple(_portable(v) for v in value))
    if isinstance(value, frozenset):
        return (cls.__module__, cls.__qualname__, tuple(sorted(map(repr, value))))
    state = getattr(value, "__dict__", None)
    if state is not None:
        return (cls.__module__, cls.__qualname__, tuple(sorted((k, _portable(v)) for k, v in state.items())))
    slots = getattr(cls, "__slots__", None)
    if slots is not None:
        names = [slots] if isinstance(slots, str) else list(slots)
        return (cls.__module__, cls.__qualname__, tuple((n, _portable(getattr(value, n, None))) for n in names))
    try:
        pickle.dumps(value, protocol=4)
        return value
    except Exception:
        return (cls.__module__, cls.__qualname__, repr(value))


def route_keyed(bundle: list[Any], n: int) -> list[list[Any]]:
    """Split a bundle of (key, value) windowed values into ``n`` parts by key."""
    parts: list[list[Any]] = [[] for _ in range(n)]
    if n == 1:
        parts[0] = bundle
        return parts
    cache: dict[Any, int] = {}
    for wv in bundle:
        try:
            key = wv[0][0]
        except (TypeError, IndexError, KeyError):
            # Not a (key, value) pair: any instance will do, the grouping step
            # there reports it with its own name.
            parts[0].append(wv)
            continue
        try:
            dest = cache[key]
        except KeyError:
            dest = cache[key] = stable_hash(key) % n
        except TypeError:  # unhashable key: route it anyway, the grouping step reports it
            dest = stable_hash(key) % n
        parts[dest].append(wv)
    return parts


class Edge:
    """An exchange edge: who produces it, who consumes it and how elements are routed."""

    __slots__ = ("edge_id", "producer_stage", "consumer_stage", "kind")

    def __init__(self, edge_id: str, producer_stage: int, consumer_stage: int, kind: str) -> None:
        self.edge_id = edge_id
        self.producer_stage = producer_stage
        self.consumer_stage = consumer_stage
        #: "keyed", "broadcast" (side inputs) or "forward" (Flatten, side-input ParDos).
        self.kind = kind

    def __repr__(self) -> str:
        return f"Edge({self.edge_id!r}, {self.producer_stage}->{self.consumer_stage}, {self.kind})"
