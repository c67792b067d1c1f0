"""The Nexmark queries written with Apache Beam's Python SDK, for the harness's reference runs.

Each function mirrors the tidal query of the same name in
:mod:`tidal.benchmarks.nexmark.queries`, step for step and with the same
helpers, so Beam's DirectRunner must give the very same results:
``query(beam, events) -> PCollection`` where ``beam`` is the imported
``apache_beam`` module (this module never imports it, so tidal does not
depend on it) and ``events`` a Beam PCollection of timestamped Person,
Auction and Bid values.

Q12 is left out: its panes fire on processing time, and Beam's DirectRunner
runs a bounded input without a processing-time clock (its trigger driver
fails on ``AfterProcessingTime`` there), so there is nothing to compare.
Beam encodes window bounds in whole milliseconds; the Nexmark generator's
timestamps (multiples of 1 / events-per-second) stay exact at the harness's rate.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from tidal.benchmarks.nexmark.generator import Auction, Person
from tidal.benchmarks.nexmark.queries import (
    Q3_CATEGORY, Q3_STATES, hottest, is_auction, is_bid, is_person, new_sellers, round_mean, to_euro, winners,
)

__all__ = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11", "BEAM_QUERIES"]


def _with_window(beam: Any) -> Any:
    """Prefix each tuple with its window's start (seconds), as the tidal queries do."""
    return beam.Map(lambda row, w=beam.DoFn.WindowParam: (float(w.start), *row))


def q0(beam: Any, events: Any) -> Any:
    return events | "Q0/PassThrough" >> beam.Map(lambda e: e)


def q1(beam: Any, events: Any) -> Any:
    return events | "Q1/Bids" >> beam.Filter(is_bid) | "Q1/ToEuro" >> beam.Map(to_euro)


def q2(beam: Any, events: Any, auction_skip: int = 123) -> Any:
    return (
        events
        | "Q2/Bids" >> beam.Filter(is_bid)
        | "Q2/Select" >> beam.Filter(lambda b: b.auction % auction_skip == 0)
        | "Q2/Project" >> beam.Map(lambda b: (b.auction, b.price))
    )


def _join_sellers(beam: Any, ttl: float) -> Any:
    """Q3's stateful join as a Beam DoFn (the same logic as ``queries._JoinSellers``)."""
    from apache_beam.transforms import userstate

    person_spec = userstate.ReadModifyWriteStateSpec("person", beam.coders.PickleCoder())
    pending_spec = userstate.BagStateSpec("pending", beam.coders.PickleCoder())
    expiry_spec = userstate.TimerSpec("expiry", userstate.TimeDomain.WATERMARK)

    class JoinSellers(beam.DoFn):  # type: ignore[misc, name-defined]
        def process(
            self,
            kv: tuple[int, Any],
            person_state: Any = beam.DoFn.StateParam(person_spec),
            pending: Any = beam.DoFn.StateParam(pending_spec),
            expiry: Any = beam.DoFn.TimerParam(expiry_spec),
        ) -> Iterable[tuple[str, str, str, int]]:
            event = kv[1]
            if type(event) is Person:
                person_state.write(event)
                for auction in pending.read():
                    if auction.date_time < event.date_time + ttl:
                        yield (event.name, event.city, event.state, auction.id)
                pending.clear()
                expiry.set(event.date_time + ttl)
                return
            person = person_state.read()
            if person is None:
                pending.add(event)
                expiry.set(event.date_time + ttl)
            elif event.date_time < person.date_time + ttl:
                yield (person.name, person.city, person.state, event.id)

        @userstate.on_timer(expiry_spec)
        def expire(
            self, person_state: Any = beam.DoFn.StateParam(person_spec), pending: Any = beam.DoFn.StateParam(pending_spec)
        ) -> None:
            person_state.clear()
            pending.clear()

    return JoinSellers()


def q3(beam: Any, events: Any, ttl: float = 60.0) -> Any:
    keyed = beam.typehints.Tuple[int, beam.typehints.Any]  # int keys: a deterministic key coder for the state
    persons = (
        events
        | "Q3/Persons" >> beam.Filter(lambda e: type(e) is Person and e.state in Q3_STATES)
        | "Q3/KeyPerson" >> beam.Map(lambda p: (p.id, p)).with_output_types(keyed)
    )
    auctions = (
        events
        | "Q3/Auctions" >> beam.Filter(lambda e: type(e) is Auction and e.category == Q3_CATEGORY)
        | "Q3/KeyAuction" >> beam.Map(lambda a: (a.seller, a)).with_output_types(keyed)
    )
    return (persons, auctions) | "Q3/Flatten" >> beam.Flatten() | "Q3/Join" >> beam.ParDo(_join_sellers(beam, ttl))


def q4(beam: Any, events: Any) -> Any:
    auctions = events | "Q4/Auctions" >> beam.Filter(is_auction) | "Q4/KeyAuction" >> beam.Map(lambda a: (a.id, a))
    bids = events | "Q4/Bids" >> beam.Filter(is_bid) | "Q4/KeyBid" >> beam.Map(lambda b: (b.auction, b))
    return (
        {"auctions": auctions, "bids": bids}
        | "Q4/Join" >> beam.CoGroupByKey()
        | "Q4/Winners" >> beam.FlatMap(winners)
        | "Q4/Mean" >> beam.combiners.Mean.PerKey()
        | "Q4/Round" >> beam.Map(round_mean)
    )


def q5(beam: Any, events: Any, size: float = 10.0, period: float = 5.0) -> Any:
    return (
        events
        | "Q5/Bids" >> beam.Filter(is_bid)
        | "Q5/Window" >> beam.WindowInto(beam.window.SlidingWindows(size, period))
        | "Q5/KeyAuction" >> beam.Map(lambda b: (b.auction, 1))
        | "Q5/Count" >> beam.CombinePerKey(sum)
        | "Q5/All" >> beam.Map(lambda kv: (None, kv))
        | "Q5/Gather" >> beam.GroupByKey()
        | "Q5/Max" >> beam.FlatMap(hottest)
        | "Q5/WithWindow" >> _with_window(beam)
    )


def q7(beam: Any, events: Any, size: float = 10.0) -> Any:
    bids = events | "Q7/Bids" >> beam.Filter(is_bid) | "Q7/Window" >> beam.WindowInto(beam.window.FixedWindows(size))
    top = bids | "Q7/Prices" >> beam.Map(lambda b: b.price) | "Q7/Max" >> beam.CombineGlobally(max).without_defaults()
    return (
        bids
        | "Q7/Highest" >> beam.Filter(lambda b, m: b.price == m, beam.pvalue.AsSingleton(top))
        | "Q7/Project" >> beam.Map(lambda b: (b.auction, b.bidder, b.price))
        | "Q7/WithWindow" >> _with_window(beam)
    )


def q8(beam: Any, events: Any, size: float = 10.0) -> Any:
    windowed = events | "Q8/Window" >> beam.WindowInto(beam.window.FixedWindows(size))
    persons = windowed | "Q8/Persons" >> beam.Filter(is_person) | "Q8/KeyPerson" >> beam.Map(lambda p: (p.id, p))
    auctions = windowed | "Q8/Auctions" >> beam.Filter(is_auction) | "Q8/KeySeller" >> beam.Map(lambda a: (a.seller, a))
    return (
        {"persons": persons, "auctions": auctions}
        | "Q8/Join" >> beam.CoGroupByKey()
        | "Q8/Match" >> beam.FlatMap(new_sellers)
        | "Q8/WithWindow" >> _with_window(beam)
    )


def q11(beam: Any, events: Any, gap: float = 10.0) -> Any:
    return (
        events
        | "Q11/Bids" >> beam.Filter(is_bid)
        | "Q11/KeyBidder" >> beam.Map(lambda b: (b.bidder, 1))
        | "Q11/Sessions" >> beam.WindowInto(beam.window.Sessions(gap))
        | "Q11/Count" >> beam.CombinePerKey(sum)
        | "Q11/WithSession" >> beam.Map(lambda kv, w=beam.DoFn.WindowParam: (kv[0], kv[1], float(w.start), float(w.end)))
    )


BEAM_QUERIES: dict[str, Callable[[Any, Any], Any]] = {
    "q0": q0, "q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5, "q7": q7, "q8": q8, "q11": q11,
}
