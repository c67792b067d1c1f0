"""A deterministic, seeded Nexmark event generator: people, auctions and bids.

It follows the shape of the standard Nexmark generator: every 50 events hold
1 person, 3 auctions and 46 bids; people get ids from 1000 up, auctions from
1000 up; an auction's seller and a bid's auction and bidder are mostly
recent ones, with a share going to a few "hot" ids; prices are log-uniform
in cents; categories are 10..14. Event time advances at ``events_per_second``
and events arrive out of order within groups spanning ``out_of_orderness``
seconds of event time. The same seed always gives the same events, and the
first ``n`` events of a longer run equal a run of ``n``.

>>> events = generate(NexmarkConfig(seed=1), 50)
>>> [sum(isinstance(e.value, k) for e in events) for k in (Person, Auction, Bid)]
[1, 3, 46]
>>> generate(NexmarkConfig(seed=1), 5) == generate(NexmarkConfig(seed=1), 50)[:5]
True
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Iterator, Sequence, Union

import attrs

from tidal.model.window import TimestampedValue

__all__ = [
    "Person", "Auction", "Bid", "Event", "NexmarkConfig", "generate", "generate_values",
    "to_arrow", "arrow_batches", "PacedEvents",
    "FIRST_PERSON_ID", "FIRST_AUCTION_ID", "FIRST_CATEGORY_ID", "NUM_CATEGORIES",
]

FIRST_PERSON_ID = 1000
FIRST_AUCTION_ID = 1000
FIRST_CATEGORY_ID = 10
NUM_CATEGORIES = 5
PERSON_PROPORTION, AUCTION_PROPORTION, BID_PROPORTION = 1, 3, 46
TOTAL_PROPORTION = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION
#: One bid in HOT_AUCTION_RATIO goes to a hot auction (and likewise for bidders and sellers).
HOT_AUCTION_RATIO, HOT_BIDDER_RATIO, HOT_SELLER_RATIO = 2, 4, 4
#: How many recent people and auctions new events choose among.
NUM_ACTIVE_PEOPLE, NUM_IN_FLIGHT_AUCTIONS = 1000, 100

_FIRST_NAMES = ("Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter")
_LAST_NAMES = ("Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris")
_STATES = ("AZ", "CA", "ID", "OR", "WA", "WY")
_CITIES = ("Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne")
_CHANNELS = ("Google", "Facebook", "Baidu", "Apple")


@attrs.frozen(slots=True)
class Person:
    """Someone who joins the auction site (sells or bids)."""

    id: int
    name: str
    email: str
    credit_card: str
    city: str
    state: str
    date_time: float  # event time, seconds


@attrs.frozen(slots=True)
class Auction:
    """An item put up for auction by ``seller``, open from ``date_time`` until ``expires``."""

    id: int
    item_name: str
    description: str
    initial_bid: int  # cents
    reserve: int  # cents
    date_time: float
    expires: float
    seller: int
    category: int


@attrs.frozen(slots=True)
class Bid:
    """A bid of ``price`` cents by ``bidder`` on ``auction``."""

    auction: int
    bidder: int
    price: int  # cents
    channel: str
    url: str
    date_time: float


Event = Union[Person, Auction, Bid]


@attrs.frozen
class NexmarkConfig:
    """How the generator runs: its seed, event-time rate and out-of-orderness.

    ``out_of_orderness`` (seconds of event time) shuffles the arrival order
    within consecutive groups of that span; a watermark that trails the
    largest timestamp seen by this much never sees a late event.
    """

    seed: int = 0
    events_per_second: float = 1000.0
    out_of_orderness: float = 0.0
    base_time: float = 0.0
    #: Auctions stay open for up to this many seconds of event time.
    max_auction_length: float = 10.0

    @property
    def shuffle_group(self) -> int:
        return max(1, int(round(self.out_of_orderness * self.events_per_second)))


class _Generator:
    """Makes event ``n`` after event ``n - 1`` from one seeded RNG (hence prefix-stable)."""

    def __init__(self, config: NexmarkConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)

    def event(self, n: int) -> Event:
        epoch, offset = divmod(n, TOTAL_PROPORTION)
        ts = round(self.config.base_time + n / self.config.events_per_second, 6)
        if offset < PERSON_PROPORTION:
            return self._person(epoch * PERSON_PROPORTION + offset, ts)
        if offset < PERSON_PROPORTION + AUCTION_PROPORTION:
            return self._auction(epoch, epoch * AUCTION_PROPORTION + offset - PERSON_PROPORTION, ts)
        return self._bid(epoch, ts)

    def _price(self) -> int:
        return int(round(10.0 ** (self.rng.random() * 6.0) * 100.0))

    def _person(self, index: int, ts: float) -> Person:
        rng = self.rng
        name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
        i = rng.randrange(len(_STATES))
        card = " ".join(f"{rng.randrange(10000):04d}" for _ in range(4))
        return Person(
            FIRST_PERSON_ID + index, name, f"{name.replace(' ', '.').lower()}{index}@example.com", card,
            _CITIES[rng.randrange(len(_CITIES))], _STATES[i], ts,
        )

    def _recent_person(self, epoch: int, hot_ratio: int) -> int:
        rng = self.rng
        last = epoch  # people 0..epoch exist by now
        if rng.randrange(hot_ratio) > 0:
            return FIRST_PERSON_ID + (last // 100) * 100  # one of a few hot people
        return FIRST_PERSON_ID + max(0, last - rng.randrange(min(NUM_ACTIVE_PEOPLE, last + 1)))

    def _auction(self, epoch: int, index: int, ts: float) -> Auction:
        rng = self.rng
        seller = self._recent_person(epoch, HOT_SELLER_RATIO)
        initial = self._price()
        reserve = initial + self._price()
        length = round(rng.uniform(1.0, self.config.max_auction_length), 6)
        return Auction(
            FIRST_AUCTION_ID + index, f"item-{index}", f"description of item {index}", initial, reserve,
            ts, round(ts + length, 6), seller, FIRST_CATEGORY_ID + rng.randrange(NUM_CATEGORIES),
        )

    def _bid(self, epoch: int, ts: float) -> Bid:
        rng = self.rng
        last_auction = epoch * AUCTION_PROPORTION + AUCTION_PROPORTION - 1
        if rng.randrange(HOT_AUCTION_RATIO) > 0:
            auction = FIRST_AUCTION_ID + (last_auction // 100) * 100
        else:
            auction = FIRST_AUCTION_ID + max(0, last_auction - rng.randrange(min(NUM_IN_FLIGHT_AUCTIONS, last_auction + 1)))
        bidder = self._recent_person(epoch, HOT_BIDDER_RATIO)
        channel = rng.choice(_CHANNELS)
        return Bid(auction, bidder, self._price(), channel, f"https://www.nexmark.com/{channel.lower()}/item.htm?query=1", ts)


def _arrival_order(config: NexmarkConfig, n: int) -> list[int]:
    """Event indexes in arrival order: shuffled within groups of ``shuffle_group``."""
    group = config.shuffle_group
    order = list(range(n))
    if group <= 1:
        return order
    rng = random.Random(config.seed ^ 0x5EED)
    for start in range(0, n, group):
        chunk = order[start:start + group]
        rng.shuffle(chunk)
        order[start:start + group] = chunk
    return order


def generate_values(config: NexmarkConfig, n: int) -> list[Event]:
    """The first ``n`` events in event-id order (timestamps rise with the id)."""
    gen = _Generator(config)
    return [gen.event(i) for i in range(n)]


def generate(config: NexmarkConfig, n: int) -> list[TimestampedValue]:
    """The first ``n`` events in arrival order, as TimestampedValue (event time in seconds)."""
    values = generate_values(config, n)
    return [TimestampedValue(values[i], values[i].date_time) for i in _arrival_order(config, n)]


_ARROW_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(a.name for a in attrs.fields(cls)) for cls in (Person, Auction, Bid)
}


def to_arrow(events: Sequence[Any]) -> dict[str, Any]:
    """Events (plain or TimestampedValue) as one ``pyarrow.RecordBatch`` per kind.

    >>> batches = to_arrow(generate(NexmarkConfig(), 50))
    >>> {k: b.num_rows for k, b in batches.items()}
    {'person': 1, 'auction': 3, 'bid': 46}
    """
    import pyarrow as pa

    out: dict[str, Any] = {}
    for cls in (Person, Auction, Bid):
        rows = [v for v in (e.value if isinstance(e, TimestampedValue) else e for e in events) if type(v) is cls]
        names = _ARROW_FIELDS[cls]
        columns = {name: [getattr(r, name) for r in rows] for name in names}
        out[cls.__name__.lower()] = pa.RecordBatch.from_pydict(columns)
    return out


def arrow_batches(config: NexmarkConfig, n: int, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
    """The first ``n`` events, ``batch_size`` at a time, as :func:`to_arrow` dictionaries."""
    events = generate(config, n)
    for start in range(0, n, batch_size):
        yield to_arrow(events[start:start + batch_size])


class PacedEvents:
    """A picklable generator factory that releases elements at ``rate`` per wall-clock second.

    Each element's wall-clock arrival time is recorded, and when the stream
    ends the list of ``(event timestamp µs, arrival wall time)`` pairs is
    handed to ``on_done`` (the harness writes it next to the outputs, so the
    source may run in another process).

    With ``record_due`` the time recorded is when the element was due (the
    start plus ``i / rate``) rather than when it was released: an engine that
    cannot keep up holds the source back, and its latency then counts the time
    the input waited to be offered (no coordinated omission).
    """

    def __init__(
        self,
        elements: Sequence[TimestampedValue],
        rate: float,
        on_done: Callable[[list[tuple[int, float]]], None] | None = None,
        record_due: bool = False,
    ) -> None:
        self.elements = elements
        self.rate = rate
        self.on_done = on_done
        self.record_due = record_due

    def __call__(self) -> Iterator[TimestampedValue]:
        arrivals: list[tuple[int, float]] = []
        start = time.perf_counter()
        wall0 = time.time() - start
        interval = 1.0 / self.rate
        try:
            for i, tv in enumerate(self.elements):
                due = start + i * interval
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                    now = time.perf_counter()
                arrivals.append((tv.timestamp_us, wall0 + (due if self.record_due else now)))
                yield tv
        finally:
            if self.on_done is not None:
                self.on_done(arrivals)
