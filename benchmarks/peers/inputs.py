"""The workloads' inputs as the peer engines take them, and their rows turned back into tidal's results.

An engine reads a table: columns (a dict of lists, which an engine turns into
a pandas DataFrame) per input, event times as whole milliseconds in
``ts_ms`` (the resolution of Flink's and Spark's timestamps), built from the
very TimestampedValues the tidal runners read.
The Nexmark events are one wide table, as Nexmark's SQL versions have it: a
``kind`` column (0 person, 1 auction, 2 bid) and every kind's fields, empty
(NaN or None) where they do not apply; integer fields travel as floats then,
exact for these magnitudes, and each engine reads them as BIGINT. The
Python-function variants (Spark RDDs) read the values themselves.

Going back, :func:`nexmark_event` turns a row of the wide table into the
Person, Auction or Bid it came from, so a pass-through's result compares
with tidal's object for object.

>>> from tidal.benchmarks.workloads import WORKLOADS
>>> tables = input_tables("q1", WORKLOADS["q1"].make_input(50, 0.0))
>>> sorted(tables), tables["events"]["kind"].count(2)
(['events', 'values'], 46)
>>> first = {name: column[0] for name, column in tables["events"].items()}
>>> nexmark_event(first) == WORKLOADS["q1"].make_input(1, 0.0)[0].value
True
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from tidal.benchmarks.nexmark.generator import Auction, Bid, Person
from tidal.benchmarks.yahoo import YahooConfig, ad_table
from tidal.model.window import TimestampedValue

__all__ = ["input_tables", "Columns", "nexmark_event", "NEXMARK_COLUMNS", "ms", "seconds", "yahoo_config"]

#: The wide Nexmark table: (column, type) with type "int", "float" or "str".
NEXMARK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kind", "int"),
    ("id", "int"), ("name", "str"), ("email", "str"), ("credit_card", "str"), ("city", "str"), ("state", "str"),
    ("item_name", "str"), ("description", "str"), ("initial_bid", "int"), ("reserve", "int"), ("expires", "float"),
    ("seller", "int"), ("category", "int"),
    ("auction", "int"), ("bidder", "int"), ("price", "int"), ("channel", "str"), ("url", "str"),
    ("date_time", "float"), ("ts_ms", "int"),
)
_PERSON = ("id", "name", "email", "credit_card", "city", "state", "date_time")
_AUCTION = ("id", "item_name", "description", "initial_bid", "reserve", "date_time", "expires", "seller", "category")
_BID = ("auction", "bidder", "price", "channel", "url", "date_time")
_KINDS = {Person: (0, _PERSON), Auction: (1, _AUCTION), Bid: (2, _BID)}


def ms(timestamp_us: int) -> int:
    """Whole milliseconds of a timestamp in microseconds (the inputs' times are whole milliseconds).

    >>> ms(1_234_000)
    1234
    """
    if timestamp_us % 1000:
        raise ValueError(f"the peer engines keep milliseconds; timestamp {timestamp_us} µs has a finer part")
    return timestamp_us // 1000


def seconds(micros: Any) -> float:
    """Seconds as tidal prints a window bound (microseconds / 1e6), from an engine's integer microseconds.

    >>> seconds(-5_000_000), seconds(1_234_000)
    (-5.0, 1.234)
    """
    return int(micros) / 1e6


def yahoo_config() -> YahooConfig:
    """The Yahoo configuration of the harness's ``yahoo`` workload."""
    from tidal.benchmarks.workloads import NEXMARK_RATE

    return YahooConfig(events_per_second=NEXMARK_RATE)


#: A table: column name -> values.
Columns = dict[str, list[Any]]


def input_tables(workload: str, elements: Sequence[TimestampedValue]) -> dict[str, Any]:
    """The tables of ``workload``'s input (:data:`Columns` each), and ``values``: its (value, timestamp µs) pairs.

    >>> input_tables("windowed", [TimestampedValue((7, 1), 1.5)])["pairs"]
    {'key': [7], 'value': [1], 'ts_ms': [1500]}
    """
    tables: dict[str, Any] = {"values": [(tv.value, tv.timestamp_us) for tv in elements]}
    if workload == "wordcount":
        tables["words"] = {"word": [tv.value for tv in elements]}
    elif workload in ("windowed", "sessions"):
        tables["pairs"] = {
            "key": [tv.value[0] for tv in elements], "value": [tv.value[1] for tv in elements], "ts_ms": [ms(tv.timestamp_us) for tv in elements],
        }
    elif workload in ("q0", "q1", "q2", "q5"):
        tables["events"] = _nexmark_columns(elements)
    elif workload == "yahoo":
        values = [tv.value for tv in elements]
        tables["events"] = {
            "user_id": [e.user_id for e in values], "page_id": [e.page_id for e in values], "ad_id": [e.ad_id for e in values],
            "ad_type": [e.ad_type for e in values], "event_type": [e.event_type for e in values],
            "event_time": [e.event_time for e in values], "ip_address": [e.ip_address for e in values],
            "ts_ms": [ms(tv.timestamp_us) for tv in elements],
        }
        table = ad_table(yahoo_config())
        tables["ads"] = {"ad_id": [a for a, _ in table], "campaign": [c for _, c in table]}
        tables["ad_table"] = dict(table)
    else:
        raise ValueError(f"no peer input for workload {workload!r}")
    return tables


def _nexmark_columns(elements: Sequence[TimestampedValue]) -> Columns:
    columns: Columns = {name: [] for name, _ in NEXMARK_COLUMNS}
    empty = {name: (None if kind == "str" else math.nan) for name, kind in NEXMARK_COLUMNS}
    for tv in elements:
        kind, fields = _KINDS[type(tv.value)]
        row = dict(empty)
        row["kind"] = kind
        for f in fields:
            value = getattr(tv.value, f)
            row[f] = float(value) if f not in ("date_time", "expires") and isinstance(value, int) else value
        row["ts_ms"] = ms(tv.timestamp_us)
        for name, value in row.items():
            columns[name].append(value)
    return columns


def _int(v: Any) -> int:
    return int(v)


def nexmark_event(row: dict[str, Any]) -> Any:
    """The Person, Auction or Bid a row of the wide table holds (the integer fields back to int)."""
    kind = int(row["kind"])
    if kind == 0:
        return Person(_int(row["id"]), row["name"], row["email"], row["credit_card"], row["city"], row["state"], float(row["date_time"]))
    if kind == 1:
        return Auction(
            _int(row["id"]), row["item_name"], row["description"], _int(row["initial_bid"]), _int(row["reserve"]),
            float(row["date_time"]), float(row["expires"]), _int(row["seller"]), _int(row["category"]),
        )
    return Bid(_int(row["auction"]), _int(row["bidder"]), _int(row["price"]), row["channel"], row["url"], float(row["date_time"]))
