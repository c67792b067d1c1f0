"""The Nexmark queries as portable tidal pipelines: PCollection of events in, results out.

Each query is a function ``query(events) -> PCollection`` over a PCollection
of :class:`~tidal.benchmarks.nexmark.generator.Person`, ``Auction`` and
``Bid`` values carrying their event timestamps, so one definition runs on
every runner, in batch (``Create``) or streaming (an unbounded source).
Results are plain tuples (window bounds in seconds where a query windows).

>>> import tidal as td
>>> from tidal.benchmarks.nexmark.generator import NexmarkConfig, generate
>>> with td.Pipeline() as p:
...     out = q2(p | td.Create(generate(NexmarkConfig(seed=3), 500)), auction_skip=100)
...     td.testing.assert_that(out | td.combiners.Count.Globally(), td.testing.equal_to([250]))
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import tidal as td
from tidal import trigger, window
from tidal.benchmarks.nexmark.generator import Auction, Bid, Person
from tidal.model.pvalue import PCollection

__all__ = [
    "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11", "q12", "QUERIES",
    "is_bid", "is_auction", "is_person", "winning_bid", "Q3_STATES", "Q3_CATEGORY",
    "to_euro", "winners", "round_mean", "hottest", "new_sellers",
]

#: Q3 looks for sellers in these states and auctions in this category.
Q3_STATES = frozenset({"OR", "ID", "CA"})
Q3_CATEGORY = 10


def is_bid(e: Any) -> bool:
    return type(e) is Bid


def is_auction(e: Any) -> bool:
    return type(e) is Auction


def is_person(e: Any) -> bool:
    return type(e) is Person


def _window_start(w: Any) -> float:
    return float(w.start)


class _WithWindow(td.DoFn):
    """Prefix each tuple with its window's start (seconds)."""

    def process(self, row: tuple[Any, ...], w: Any = td.DoFn.WindowParam) -> Iterable[tuple[Any, ...]]:
        yield (_window_start(w), *row)


def q0(events: PCollection[Any]) -> PCollection[Any]:
    """Pass-through: every event, unchanged (measures the runner's bare cost)."""
    return events | "Q0/PassThrough" >> td.Map(lambda e: e)


def to_euro(b: Bid) -> tuple[int, int, int, float]:
    """Q1's projection: ``(auction, bidder, price in euro cents, time)``."""
    return (b.auction, b.bidder, b.price * 89 // 100, b.date_time)


def q1(events: PCollection[Any]) -> PCollection[Any]:
    """Currency conversion: each bid as ``(auction, bidder, price in euro cents, time)``."""
    return events | "Q1/Bids" >> td.Filter(is_bid).with_output_types(Bid) | "Q1/ToEuro" >> td.Map(to_euro)


def q2(events: PCollection[Any], auction_skip: int = 123) -> PCollection[Any]:
    """Selection: ``(auction, price)`` of the bids on every ``auction_skip``-th auction."""
    return (
        events
        | "Q2/Bids" >> td.Filter(is_bid).with_output_types(Bid)
        | "Q2/Select" >> td.Filter(lambda b: b.auction % auction_skip == 0)
        | "Q2/Project" >> td.Map(lambda b: (b.auction, b.price))
    )


class _JoinSellers(td.DoFn):
    """Q3's stateful join, per seller id: the person waits in state for their auctions.

    An auction joins its seller when it starts less than ``ttl`` seconds after
    the person joined; an event-time timer at that horizon drops the key's state.
    Auctions that arrive before their seller wait in a bag.
    """

    PERSON = td.ReadModifyWriteStateSpec("person")
    PENDING = td.BagStateSpec("pending")
    EXPIRY = td.TimerSpec("expiry", td.TimeDomain.WATERMARK)

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl

    def process(
        self,
        kv: tuple[int, Any],
        person_state: Any = td.DoFn.StateParam(PERSON),
        pending: Any = td.DoFn.StateParam(PENDING),
        expiry: Any = td.DoFn.TimerParam(EXPIRY),
    ) -> Iterable[tuple[str, str, str, int]]:
        event = kv[1]
        if type(event) is Person:
            person_state.write(event)
            for auction in pending.read():
                if auction.date_time < event.date_time + self.ttl:
                    yield (event.name, event.city, event.state, auction.id)
            pending.clear()
            expiry.set(event.date_time + self.ttl)
            return
        person = person_state.read()
        if person is None:
            pending.add(event)
            expiry.set(event.date_time + self.ttl)
        elif event.date_time < person.date_time + self.ttl:
            yield (person.name, person.city, person.state, event.id)

    @td.on_timer(EXPIRY)
    def expire(self, person_state: Any = td.DoFn.StateParam(PERSON), pending: Any = td.DoFn.StateParam(PENDING)) -> None:
        person_state.clear()
        pending.clear()


def q3(events: PCollection[Any], ttl: float = 60.0) -> PCollection[Any]:
    """Local item suggestion: ``(name, city, state, auction)`` for category-10 auctions by sellers in OR, ID or CA."""
    persons = (
        events
        | "Q3/Persons" >> td.Filter(lambda e: type(e) is Person and e.state in Q3_STATES)
        | "Q3/KeyPerson" >> td.Map(lambda p: (p.id, p))
    )
    auctions = (
        events
        | "Q3/Auctions" >> td.Filter(lambda e: type(e) is Auction and e.category == Q3_CATEGORY)
        | "Q3/KeyAuction" >> td.Map(lambda a: (a.seller, a))
    )
    return (persons, auctions) | "Q3/Flatten" >> td.Flatten() | "Q3/Join" >> td.ParDo(_JoinSellers(ttl))


def winning_bid(auction: Auction, bids: Iterable[Bid]) -> Bid | None:
    """The highest valid bid (in the auction's lifetime, at least the reserve); the earliest wins a tie."""
    best: Bid | None = None
    for b in bids:
        if auction.date_time <= b.date_time < auction.expires and b.price >= auction.reserve:
            if best is None or (b.price, -b.date_time) > (best.price, -best.date_time):
                best = b
    return best


def winners(kv: tuple[int, dict[str, list[Any]]]) -> Iterable[tuple[int, int]]:
    """Q4: ``(category, winning price)`` of each auction joined with its bids."""
    grouped = kv[1]
    for auction in grouped["auctions"]:
        best = winning_bid(auction, grouped["bids"])
        if best is not None:
            yield (auction.category, best.price)


def round_mean(kv: tuple[int, float]) -> tuple[int, float]:
    """Q4: the mean rounded to 6 decimals, so every runner prints the same float."""
    return (kv[0], round(kv[1], 6))


def q4(events: PCollection[Any]) -> PCollection[Any]:
    """Average price per category: ``(category, mean winning price)`` over closed auctions."""
    auctions = events | "Q4/Auctions" >> td.Filter(is_auction).with_output_types(Auction) | "Q4/KeyAuction" >> td.Map(lambda a: (a.id, a))
    bids = events | "Q4/Bids" >> td.Filter(is_bid).with_output_types(Bid) | "Q4/KeyBid" >> td.Map(lambda b: (b.auction, b))
    return (
        {"auctions": auctions, "bids": bids}
        | "Q4/Join" >> td.CoGroupByKey()
        | "Q4/Winners" >> td.FlatMap(winners)
        | "Q4/Mean" >> td.combiners.Mean.PerKey()
        | "Q4/Round" >> td.Map(round_mean)
    )


def hottest(kv: tuple[None, Iterable[tuple[int, int]]]) -> Iterable[tuple[int, int]]:
    """Q5: the ``(auction, bids)`` pairs with the most bids, sorted."""
    counts = list(kv[1])
    top = max(c for _, c in counts)
    return sorted((a, c) for a, c in counts if c == top)


def q5(events: PCollection[Any], size: float = 10.0, period: float = 5.0) -> PCollection[Any]:
    """Hot items: per sliding window, ``(window start, auction, bids)`` of the most-bid auction(s)."""
    return (
        events
        | "Q5/Bids" >> td.Filter(is_bid).with_output_types(Bid)
        | "Q5/Window" >> td.WindowInto(window.SlidingWindows(size, period))
        | "Q5/KeyAuction" >> td.Map(lambda b: (b.auction, 1))
        | "Q5/Count" >> td.CombinePerKey(sum)
        | "Q5/All" >> td.Map(lambda kv: (None, kv))
        | "Q5/Gather" >> td.GroupByKey()
        | "Q5/Max" >> td.FlatMap(hottest)
        | "Q5/WithWindow" >> td.ParDo(_WithWindow())
    )


def q7(events: PCollection[Any], size: float = 10.0) -> PCollection[Any]:
    """Highest bid: per fixed window, ``(window start, auction, bidder, price)`` of the top-priced bid(s).

    The window's maximum price reaches the bids as a side input.
    """
    bids = events | "Q7/Bids" >> td.Filter(is_bid).with_output_types(Bid) | "Q7/Window" >> td.WindowInto(window.FixedWindows(size))
    top = bids | "Q7/Prices" >> td.Map(lambda b: b.price) | "Q7/Max" >> td.CombineGlobally(max).without_defaults()
    return (
        bids
        | "Q7/Highest" >> td.Filter(lambda b, m: b.price == m, td.AsSingleton(top))
        | "Q7/Project" >> td.Map(lambda b: (b.auction, b.bidder, b.price))
        | "Q7/WithWindow" >> td.ParDo(_WithWindow())
    )


def new_sellers(kv: tuple[int, dict[str, list[Any]]]) -> Iterable[tuple[int, str, int]]:
    """Q8: ``(person, name, reserve)`` for each auction of a seller who joined in the same window."""
    grouped = kv[1]
    for person in grouped["persons"]:
        for auction in grouped["auctions"]:
            yield (person.id, person.name, auction.reserve)


def q8(events: PCollection[Any], size: float = 10.0) -> PCollection[Any]:
    """Monitor new users: ``(window start, person, name, reserve)`` for people who joined and sold in one fixed window."""
    windowed = events | "Q8/Window" >> td.WindowInto(window.FixedWindows(size))
    persons = windowed | "Q8/Persons" >> td.Filter(is_person).with_output_types(Person) | "Q8/KeyPerson" >> td.Map(lambda p: (p.id, p))
    auctions = windowed | "Q8/Auctions" >> td.Filter(is_auction).with_output_types(Auction) | "Q8/KeySeller" >> td.Map(lambda a: (a.seller, a))
    return (
        {"persons": persons, "auctions": auctions}
        | "Q8/Join" >> td.CoGroupByKey()
        | "Q8/Match" >> td.FlatMap(new_sellers)
        | "Q8/WithWindow" >> td.ParDo(_WithWindow())
    )


class _WithSession(td.DoFn):
    def process(self, kv: tuple[int, int], w: Any = td.DoFn.WindowParam) -> Iterable[tuple[int, int, float, float]]:
        yield (kv[0], kv[1], float(w.start), float(w.end))


def q11(events: PCollection[Any], gap: float = 10.0) -> PCollection[Any]:
    """User sessions: ``(bidder, bids, session start, session end)`` with sessions split by ``gap`` seconds of quiet."""
    return (
        events
        | "Q11/Bids" >> td.Filter(is_bid).with_output_types(Bid)
        | "Q11/KeyBidder" >> td.Map(lambda b: (b.bidder, 1))
        | "Q11/Sessions" >> td.WindowInto(window.Sessions(gap))
        | "Q11/Count" >> td.CombinePerKey(sum)
        | "Q11/WithSession" >> td.ParDo(_WithSession())
    )


def q12(events: PCollection[Any], delay: float = 1.0) -> PCollection[Any]:
    """Processing-time windows: ``(bidder, bids)`` per pane, a pane every ``delay`` seconds of processing time.

    Panes discard what they emitted, so the panes of a bidder add up to their bid count.
    """
    return (
        events
        | "Q12/Bids" >> td.Filter(is_bid).with_output_types(Bid)
        | "Q12/KeyBidder" >> td.Map(lambda b: (b.bidder, 1))
        | "Q12/Window" >> td.WindowInto(
            window.GlobalWindows(),
            trigger=trigger.Repeatedly(trigger.AfterProcessingTime(delay)),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )
        | "Q12/Count" >> td.CombinePerKey(sum)
    )


QUERIES: dict[str, Callable[[PCollection[Any]], PCollection[Any]]] = {
    "q0": q0, "q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5, "q7": q7, "q8": q8, "q11": q11, "q12": q12,
}
