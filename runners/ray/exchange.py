"""Routing between stage instances: keyed (by key group), broadcast and forward.

A key goes to the instance that owns its key group (``stable_hash(key) %
max_parallelism``, see :mod:`tidal.runners.core.keygroups`), so every worker
sends a key to the same instance, and the key groups a checkpoint recorded
per instance can be handed out again at another parallelism.

>>> stable_hash("word") == stable_hash("word")
True
>>> from tidal.runners.core.keygroups import key_group_of, owner_of
>>> route_keyed([(("a", 1), 0, (), None), (("b", 2), 0, (), None)], 2)[owner_of(key_group_of("a", 128), 2, 128)][0][0]
('a', 1)
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

from tidal.runners.core.keygroups import DEFAULT_MAX_PARALLELISM, key_group_of, owner_of, stable_hash

__all__ = ["stable_hash", "route_keyed", "Edge", "pack_bundle", "unpack_bundle"]


def pack_bundle(bundle: Any) -> bytes:
    """A bundle as the bytes one worker sends another.

    One pickle of the whole list: handed a list as an argument, Ray packs it
    with msgpack and pickles each object msgpack cannot write on its own (a
    window, a pane), which costs several times more. Plain pickle first;
    cloudpickle for what pickle can only write by value (a class from the
    driver's ``__main__``, a lambda).

    >>> unpack_bundle(pack_bundle([("a", 0, (), None)]))
    [('a', 0, (), None)]
    """
    try:
        return pickle.dumps(bundle, protocol=5)
    except Exception:
        return cloudpickle.dumps(bundle, protocol=5)


def unpack_bundle(data: bytes) -> Any:
    """The bundle :func:`pack_bundle` packed."""
    return pickle.loads(data)


def route_keyed(bundle: list[Any], n: int, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> list[list[Any]]:
    """Split a bundle of (key, value) windowed values into ``n`` parts: each key to its key group's owner."""
    parts: list[list[Any]] = [[] for _ in range(n)]
    if n == 1:
        parts[0] = bundle
        return parts
    m = max_parallelism
    try:
        keys = [wv[0][0] for wv in bundle]
        # Each distinct key hashed once, then one dict lookup per element.
        dest_of = {key: owner_of(key_group_of(key, m), n, m) for key in set(keys)}
    except (TypeError, IndexError, KeyError):
        return _route_each(bundle, parts, n, m)  # a non-pair or an unhashable key: element by element
    appends = [part.append for part in parts]
    for wv, key in zip(bundle, keys):
        appends[dest_of[key]](wv)
    return parts


def _route_each(bundle: list[Any], parts: list[list[Any]], n: int, m: int) -> list[list[Any]]:
    """:func:`route_keyed` for a bundle that holds a non-pair element or an unhashable key."""
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
            dest = cache[key] = owner_of(key_group_of(key, m), n, m)
        except TypeError:  # unhashable key: route it anyway, the grouping step reports it
            dest = owner_of(key_group_of(key, m), n, m)
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
