"""Nexmark: the generator is deterministic with the standard mix, and every query equals a plain-Python computation."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import pytest

import tidal as td
from tidal.benchmarks.collect import CollectToFolder, read_collected
from tidal.benchmarks.nexmark import queries
from tidal.benchmarks.nexmark.generator import (
    Auction,
    Bid,
    NexmarkConfig,
    PacedEvents,
    Person,
    generate,
    generate_values,
    to_arrow,
)
from tidal.model.window import TimestampedValue
from tidal.testing import TestStream

CONFIG = NexmarkConfig(seed=11, events_per_second=200.0)
N = 3000  # 15 s of event time: several 10 s windows, sliding windows and sessions
EVENTS = generate(CONFIG, N)
VALUES = [tv.value for tv in EVENTS]
BIDS = [e for e in VALUES if type(e) is Bid]
AUCTIONS = [e for e in VALUES if type(e) is Auction]
PERSONS = [e for e in VALUES if type(e) is Person]


def run_query(query: Callable[..., Any], tmp_path: Path, events: list[TimestampedValue] = EVENTS, **kwargs: Any) -> list[Any]:
    with td.Pipeline(runner="direct") as p:
        query(p | td.Create(events), **kwargs) | td.ParDo(CollectToFolder(str(tmp_path)))
    return sorted((r.value for r in read_collected(str(tmp_path))), key=repr)


def same(actual: list[Any], expected: list[Any]) -> None:
    assert expected, "the reference computation found nothing: the input is too small to test this query"
    assert actual == sorted(expected, key=repr)


def us(t: float) -> int:
    return int(round(t * 1_000_000))


def window_start(t: float, size: float) -> float:
    return (us(t) - us(t) % us(size)) / 1e6


# -- the generator --------------------------------------------------------------------
def test_the_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    assert generate(CONFIG, 500) == generate(NexmarkConfig(seed=11, events_per_second=200.0), 500)
    assert generate_values(NexmarkConfig(seed=12), 500) != generate_values(NexmarkConfig(seed=11), 500)


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    assert generate_values(CONFIG, 120) == generate_values(CONFIG, 1000)[:120]


def test_one_person_three_auctions_and_forty_six_bids_in_every_fifty_events() -> None:
    for start in range(0, 1000, 50):
        kinds = Counter(type(e).__name__ for e in VALUES[start:start + 50])
        assert kinds == {"Person": 1, "Auction": 3, "Bid": 46}


def test_ids_prices_categories_and_references_are_in_range() -> None:
    assert [p.id for p in PERSONS] == list(range(1000, 1000 + len(PERSONS)))
    assert [a.id for a in AUCTIONS] == list(range(1000, 1000 + len(AUCTIONS)))
    assert {a.category for a in AUCTIONS} <= set(range(10, 15))
    assert all(a.reserve > a.initial_bid > 0 and a.expires > a.date_time for a in AUCTIONS)
    people_so_far = {p.id: p.date_time for p in PERSONS}
    assert all(people_so_far[a.seller] <= a.date_time for a in AUCTIONS)
    assert all(b.auction in {a.id for a in AUCTIONS} and b.bidder in people_so_far and b.price > 0 for b in BIDS)


def test_event_time_advances_at_the_configured_rate() -> None:
    values = generate_values(NexmarkConfig(events_per_second=50.0, base_time=100.0), 101)
    assert values[0].date_time == 100.0 and values[100].date_time == 102.0


def test_out_of_orderness_shuffles_arrival_within_the_bound() -> None:
    config = NexmarkConfig(seed=3, events_per_second=100.0, out_of_orderness=0.2)
    arrived = generate(config, 1000)
    assert sorted(arrived, key=lambda tv: tv.timestamp_us) == generate(NexmarkConfig(seed=3, events_per_second=100.0), 1000)
    stamps = [tv.timestamp_us for tv in arrived]
    assert stamps != sorted(stamps)
    # The watermark "largest seen minus 0.2 s" never passes an event still to come.
    largest = -math.inf
    for t in stamps:
        assert t >= largest - 200_000
        largest = max(largest, t)


def test_arrow_batches_hold_every_event_by_kind() -> None:
    batches = to_arrow(EVENTS)
    assert {k: b.num_rows for k, b in batches.items()} == {"person": len(PERSONS), "auction": len(AUCTIONS), "bid": len(BIDS)}
    assert batches["bid"].column("price").to_pylist() == [b.price for b in (tv.value for tv in EVENTS) if type(b) is Bid]
    assert batches["auction"].schema.names == ["id", "item_name", "description", "initial_bid", "reserve", "date_time", "expires", "seller", "category"]


def test_paced_events_yield_everything_and_report_arrivals() -> None:
    got: list[list[tuple[int, float]]] = []
    elements = generate(CONFIG, 20)
    assert list(PacedEvents(elements, rate=10_000.0, on_done=got.append)()) == elements
    assert [t for t, _ in got[0]] == [tv.timestamp_us for tv in elements]
    walls = [w for _, w in got[0]]
    assert walls == sorted(walls)


# -- the queries ----------------------------------------------------------------------
def test_q0_passes_every_event_through(tmp_path: Path) -> None:
    same(run_query(queries.q0, tmp_path), VALUES)


def test_q1_converts_bid_prices_to_euro(tmp_path: Path) -> None:
    same(run_query(queries.q1, tmp_path), [(b.auction, b.bidder, b.price * 89 // 100, b.date_time) for b in BIDS])


@pytest.mark.parametrize("skip", [123, 7])
def test_q2_selects_bids_on_every_nth_auction(tmp_path: Path, skip: int) -> None:
    same(run_query(queries.q2, tmp_path, auction_skip=skip), [(b.auction, b.price) for b in BIDS if b.auction % skip == 0])


def q3_reference(values: list[Any], ttl: float) -> list[Any]:
    sellers = {p.id: p for p in values if type(p) is Person and p.state in queries.Q3_STATES}
    return [
        (sellers[a.seller].name, sellers[a.seller].city, sellers[a.seller].state, a.id)
        for a in values
        if type(a) is Auction and a.category == queries.Q3_CATEGORY and a.seller in sellers
        and a.date_time < sellers[a.seller].date_time + ttl
    ]


@pytest.mark.parametrize("ttl", [60.0, 5.0])
def test_q3_joins_local_sellers_with_their_auctions(tmp_path: Path, ttl: float) -> None:
    same(run_query(queries.q3, tmp_path, ttl=ttl), q3_reference(VALUES, ttl))


def test_q3_joins_when_the_auction_arrives_before_its_seller(tmp_path: Path) -> None:
    seller = Person(7, "Ann", "a@x", "0", "Boise", "ID", 1.0)
    early = Auction(1, "i", "d", 1, 2, 1.5, 9.0, 7, 10)
    late = Auction(2, "i", "d", 1, 2, 80.0, 90.0, 7, 10)
    elsewhere = Person(8, "Bo", "b@x", "0", "Kent", "WA", 1.0)
    events = [TimestampedValue(e, e.date_time) for e in (early, late, elsewhere, seller)]
    stream = TestStream().add_elements(events[:1]).add_elements(events[1:]).advance_watermark_to_infinity()
    with td.Pipeline(runner="direct") as p:
        queries.q3(p | stream, ttl=60.0) | td.ParDo(CollectToFolder(str(tmp_path)))
    assert [r.value for r in read_collected(str(tmp_path))] == [("Ann", "Boise", "ID", 1)]


def test_q4_averages_winning_prices_per_category(tmp_path: Path) -> None:
    bids_of: dict[int, list[Bid]] = defaultdict(list)
    for b in BIDS:
        bids_of[b.auction].append(b)
    prices: dict[int, list[int]] = defaultdict(list)
    for a in AUCTIONS:
        valid = [b for b in bids_of[a.id] if a.date_time <= b.date_time < a.expires and b.price >= a.reserve]
        if valid:
            prices[a.category].append(max(b.price for b in valid))
    expected = [(c, round(sum(ps) / len(ps), 6)) for c, ps in prices.items()]
    same(run_query(queries.q4, tmp_path), expected)


def test_q5_finds_the_most_bid_auctions_per_sliding_window(tmp_path: Path) -> None:
    counts: dict[float, Counter[int]] = defaultdict(Counter)
    for b in BIDS:
        last = window_start(b.date_time, 5.0)
        for start in (last - 5.0, last):
            counts[start][b.auction] += 1
    expected = []
    for start, c in counts.items():
        top = max(c.values())
        expected += [(start, a, n) for a, n in c.items() if n == top]
    same(run_query(queries.q5, tmp_path), expected)


def test_q7_finds_the_highest_bids_per_fixed_window(tmp_path: Path) -> None:
    best: dict[float, int] = defaultdict(int)
    for b in BIDS:
        best[window_start(b.date_time, 10.0)] = max(best[window_start(b.date_time, 10.0)], b.price)
    expected = [(window_start(b.date_time, 10.0), b.auction, b.bidder, b.price) for b in BIDS if b.price == best[window_start(b.date_time, 10.0)]]
    same(run_query(queries.q7, tmp_path), expected)


def test_q8_finds_people_who_joined_and_sold_in_one_window(tmp_path: Path) -> None:
    expected = [
        (window_start(p.date_time, 10.0), p.id, p.name, a.reserve)
        for p in PERSONS
        for a in AUCTIONS
        if a.seller == p.id and window_start(a.date_time, 10.0) == window_start(p.date_time, 10.0)
    ]
    same(run_query(queries.q8, tmp_path), expected)


def test_q11_counts_bids_per_user_session(tmp_path: Path) -> None:
    times: dict[int, list[int]] = defaultdict(list)
    for b in BIDS:
        times[b.bidder].append(us(b.date_time))
    gap = us(3.0)
    expected = []
    for bidder, ts in times.items():
        ts.sort()
        start, last, n = ts[0], ts[0], 0
        for t in ts:
            if t >= last + gap:
                expected.append((bidder, n, start / 1e6, (last + gap) / 1e6))
                start, n = t, 0
            last, n = t, n + 1
        expected.append((bidder, n, start / 1e6, (last + gap) / 1e6))
    assert any(n < len(times[b]) for b, n, _, _ in expected), "no bidder has two sessions: widen the input"
    same(run_query(queries.q11, tmp_path, gap=3.0), expected)


def test_q12_panes_add_up_to_each_bidders_bids(tmp_path: Path) -> None:
    totals: Counter[int] = Counter()
    for bidder, n in run_query(queries.q12, tmp_path):
        totals[bidder] += n
    assert totals == Counter(b.bidder for b in BIDS)


def test_q12_emits_a_pane_per_processing_time_delay(tmp_path: Path) -> None:
    def bid(bidder: int, t: float) -> TimestampedValue:
        return TimestampedValue(Bid(1, bidder, 100, "c", "u", t), t)

    stream = (
        TestStream()
        .add_elements([bid(1, 0.1), bid(1, 0.2), bid(2, 0.3)])
        .advance_processing_time(2)
        .add_elements([bid(1, 0.4)])
        .advance_processing_time(2)
        .advance_watermark_to_infinity()
    )
    with td.Pipeline(runner="direct") as p:
        queries.q12(p | stream, delay=1.0) | td.ParDo(CollectToFolder(str(tmp_path)))
    panes = [r.value for r in read_collected(str(tmp_path))]
    assert sorted(panes) == [(1, 1), (1, 2), (2, 1)]
