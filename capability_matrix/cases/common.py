"""Small building blocks the case modules share."""

from __future__ import annotations

from typing import Any, Iterable

import tidal as td
from tidal.model.pvalue import PCollection
from tidal.model.window import TimestampedValue

__all__ = ["create_stamped", "sort_groups", "stamp", "NS"]

#: The metrics namespace of the cases' user metrics.
NS = "capability"


def stamp(vt: tuple[Any, float]) -> TimestampedValue:
    """(value, seconds) -> the value stamped with that event time."""
    return TimestampedValue(vt[0], vt[1])


def create_stamped(p: td.Pipeline, items: Iterable[tuple[Any, float]], label: str = "Create") -> PCollection[Any]:
    """A bounded PCollection of ``value`` at event time ``seconds`` for each (value, seconds)."""
    return p | label >> td.Create(list(items)) | f"{label}Stamped" >> td.Map(stamp)


def _sorted_values(kv: tuple[Any, Iterable[Any]]) -> tuple[Any, list[Any]]:
    return kv[0], sorted(kv[1])


def sort_groups(label: str = "SortGroups") -> Any:
    """(key, values) -> (key, sorted list of values): grouped output in a comparable form."""
    return label >> td.Map(_sorted_values)
