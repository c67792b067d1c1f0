"""Key groups: keyed state is partitioned once, and parallelism only decides who owns which range.

As in Flink, every key belongs to one of ``max_parallelism`` *key groups*
(``stable_hash(key) % max_parallelism``), fixed for a job's lifetime. With
``n`` parallel instances of a keyed stage, instance ``i`` owns the contiguous
range of key groups ``g`` with ``g * n // max_parallelism == i``; a keyed
exchange sends each element to the owner of its key's group. Keyed operators
snapshot their state split by key group (:class:`KeyedSnapshot`), so a
checkpoint taken at one parallelism restores at another: each new instance
takes the groups of its range from the old instances' snapshots.

>>> key_group_range(0, 2, 128), key_group_range(1, 2, 128)
(range(0, 64), range(64, 128))
>>> [owner_of(g, 3, 128) for g in (0, 42, 43, 85, 86, 127)]
[0, 0, 1, 1, 2, 2]
>>> g = key_group_of("word", 128)
>>> g in key_group_range(owner_of(g, 3, 128), 3, 128)
True
>>> stable_hash("word") == stable_hash("word")
True
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any, Callable, Iterable

import attrs

__all__ = [
    "DEFAULT_MAX_PARALLELISM",
    "KeyGroups",
    "KeyedSnapshot",
    "stable_hash",
    "key_group_of",
    "key_group_range",
    "owner_of",
    "overlapping",
    "check_max_parallelism",
]

#: The number of key groups of a job unless it says otherwise (Flink's default is 128 too).
DEFAULT_MAX_PARALLELISM = 128


def stable_hash(key: Any) -> int:
    """A hash of ``key`` that is the same in every process (Python's ``hash`` is salted per process)."""
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


def key_group_of(key: Any, max_parallelism: int) -> int:
    """The key group of ``key`` among ``max_parallelism``."""
    return stable_hash(key) % max_parallelism


def owner_of(key_group: int, parallelism: int, max_parallelism: int) -> int:
    """The instance (of ``parallelism``) that owns ``key_group``."""
    return key_group * parallelism // max_parallelism


def key_group_range(index: int, parallelism: int, max_parallelism: int) -> range:
    """The contiguous key groups instance ``index`` of ``parallelism`` owns."""
    start = -(-index * max_parallelism // parallelism)
    end = -(-(index + 1) * max_parallelism // parallelism)
    return range(start, end)


def overlapping(index: int, parallelism: int, old_parallelism: int, max_parallelism: int) -> list[int]:
    """The old instances whose key-group ranges overlap that of new instance ``index``.

    >>> overlapping(1, 3, 2, 128)   # groups 43..85 were held by old instances 0 (..63) and 1 (64..)
    [0, 1]
    """
    mine = key_group_range(index, parallelism, max_parallelism)
    if not mine:
        return []
    return list(range(owner_of(mine.start, old_parallelism, max_parallelism), owner_of(mine.stop - 1, old_parallelism, max_parallelism) + 1))


def check_max_parallelism(parallelism: int, max_parallelism: int, what: str = "parallelism") -> None:
    """Refuse a parallelism above the number of key groups (an instance would own none)."""
    if max_parallelism < 1:
        raise ValueError(f"max_parallelism must be at least 1, got {max_parallelism}")
    if parallelism > max_parallelism:
        raise ValueError(
            f"{what} {parallelism} is more than max_parallelism {max_parallelism}: every instance of a keyed "
            "stage owns at least one key group; raise max_parallelism (it is fixed for a job's lifetime)"
        )


@attrs.frozen
class KeyGroups:
    """The key groups of a job: ``of(key)`` is a key's group."""

    max_parallelism: int = DEFAULT_MAX_PARALLELISM

    def of(self, key: Any) -> int:
        return stable_hash(key) % self.max_parallelism

    def grouper(self) -> Callable[[Any], int]:
        """``of`` with a per-call cache (a snapshot meets each key many times)."""
        cache: dict[Any, int] = {}
        m = self.max_parallelism

        def group(key: Any) -> int:
            try:
                return cache[key]
            except KeyError:
                g = cache[key] = stable_hash(key) % m
                return g
            except TypeError:  # an unhashable key (the operator reports it when it meets it)
                return stable_hash(key) % m

        return group


@attrs.define
class KeyedSnapshot:
    """An operator's snapshot: what belongs to no key (``common``) and what belongs to each key group.

    A restore at another parallelism gives an instance the ``groups`` of its
    range from every old instance that held some, and a ``common`` the
    operator combines from the old instances' (see ``Operator.rescale_snapshot``).
    """

    common: Any
    groups: dict[int, Any]


def split_by_group(items: Iterable[tuple[Any, Any]], group: Callable[[Any], int]) -> dict[int, list[tuple[Any, Any]]]:
    """``(key, item)`` pairs as lists of items per key group."""
    out: dict[int, list[Any]] = {}
    for key, item in items:
        g = group(key)
        bucket = out.get(g)
        if bucket is None:
            out[g] = [item]
        else:
            bucket.append(item)
    return out
