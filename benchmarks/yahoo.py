"""The Yahoo Streaming Benchmark: ad events, kept when they are views, joined with their campaign, counted per window.

The workload of Chintapalli et al., "Benchmarking Streaming Computation
Engines at Yahoo!" (2016), with a deterministic, seeded generator in place of
Kafka and a side input in place of Redis. Each ad event has a user, a page,
an ad, an ad type, an event type (view, click or purchase, equally likely), an
event time and an IP address. The query keeps the views, projects them to
``(ad_id, event_time)``, joins each ad with its campaign (every campaign has
``ads_per_campaign`` ads; the ad → campaign table is a side input), and counts
the views per campaign in fixed 10 s event-time windows. A result is
``(window start in seconds, campaign, views)``.

The number of campaigns is the benchmark's key count: 100 in the original,
up to millions in the key-scaling runs (:mod:`tidal.benchmarks.keyscaling`).
The latency of a window's results is the time each reached the sink minus
the time the window's last event arrived (the original measures from that
event's event time, which its generator stamps with the wall clock when it
sends the event).

>>> import tidal as td
>>> config = YahooConfig(campaigns=3, ads_per_campaign=2, events_per_second=10.0)
>>> events = generate(config, 40)
>>> events[0].value
AdEvent(user_id=..., page_id=..., ad_id=..., ad_type='...', event_type='...', event_time=0.0, ip_address='...')
>>> with td.Pipeline() as p:
...     counts = query(p | td.Create(events), config)
...     td.testing.assert_that(counts, td.testing.equal_to(expected_counts(events, config)))
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Hashable, Iterable, Sequence

import attrs

import tidal as td
from tidal import window
from tidal.model.pvalue import PCollection
from tidal.model.window import TimestampedValue

__all__ = [
    "AdEvent", "YahooConfig", "AD_TYPES", "EVENT_TYPES", "ad_id", "arrival_order", "ad_table", "campaign_table", "generate",
    "query", "expected_counts", "window_key", "result_key", "window_start",
]

AD_TYPES = ("banner", "modal", "sponsored-search", "mail", "mobile")
EVENT_TYPES = ("view", "click", "purchase")
#: Ad ids are a scrambled numbering (``j * _SCRAMBLE mod ads``), so a campaign's ads are not neighbours.
_SCRAMBLE = 1_000_003
_USERS = 100_000
_PAGES = 100_000


@attrs.frozen(slots=True)
class AdEvent:
    """One event of the Yahoo benchmark's ad stream (times in seconds)."""

    user_id: int
    page_id: int
    ad_id: int
    ad_type: str
    event_type: str
    event_time: float
    ip_address: str


@attrs.frozen
class YahooConfig:
    """The generator's parameters: campaigns (the key count), ads per campaign, event-time rate, seed.

    ``events_per_second`` is the rate of event time (the 10 s windows close
    every ``10 * events_per_second`` events); ``out_of_orderness`` shuffles the
    arrival order within groups spanning that many seconds of event time.
    """

    campaigns: int = 100
    ads_per_campaign: int = 10
    events_per_second: float = 200.0
    seed: int = 0
    out_of_orderness: float = 0.0
    window_size: float = 10.0

    def __attrs_post_init__(self) -> None:
        if self.campaigns < 1 or self.ads_per_campaign < 1:
            raise ValueError(f"the Yahoo benchmark needs at least one campaign and one ad per campaign, not {self.campaigns} and {self.ads_per_campaign}")
        if self.events_per_second <= 0:
            raise ValueError(f"events_per_second must be positive, not {self.events_per_second}")

    @property
    def ads(self) -> int:
        """How many ads there are in all."""
        return self.campaigns * self.ads_per_campaign


def _scramble(config: YahooConfig) -> int:
    """A multiplier coprime with the number of ads, so ``j -> j * m mod ads`` is a bijection."""
    m = _SCRAMBLE
    while _gcd(m, config.ads) != 1:
        m += 2
    return m


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def ad_id(config: YahooConfig, j: int) -> int:
    """The id of the ``j``-th ad; ad ``j`` belongs to campaign ``j // ads_per_campaign``.

    >>> sorted(ad_id(YahooConfig(campaigns=2, ads_per_campaign=2), j) for j in range(4))
    [0, 1, 2, 3]
    """
    return j * _scramble(config) % config.ads


def ad_table(config: YahooConfig) -> list[tuple[int, int]]:
    """The join table: ``(ad_id, campaign)`` for every ad.

    >>> ad_table(YahooConfig(campaigns=2, ads_per_campaign=2))
    [(0, 0), (3, 0), (2, 1), (1, 1)]
    """
    m, ads, per = _scramble(config), config.ads, config.ads_per_campaign
    return [(j * m % ads, j // per) for j in range(ads)]


def campaign_table(config: YahooConfig) -> dict[int, int]:
    """The join table as a dict, ad id → campaign."""
    return dict(ad_table(config))


def arrival_order(n: int, group: int, seed: int) -> list[int]:
    """Indexes ``0..n-1`` shuffled within consecutive groups of ``group`` (events out of order by up to a group).

    >>> sorted(arrival_order(10, 4, 1)[:4]), arrival_order(3, 1, 1)
    ([0, 1, 2, 3], [0, 1, 2])
    """
    order = list(range(n))
    if group <= 1:
        return order
    rng = random.Random(seed ^ 0x5EED)
    for start in range(0, n, group):
        chunk = order[start:start + group]
        rng.shuffle(chunk)
        order[start:start + group] = chunk
    return order


def generate(config: YahooConfig, n: int) -> list[TimestampedValue]:
    """The first ``n`` ad events in arrival order, each stamped with its event time (whole milliseconds).

    The same config always gives the same events, and without out-of-orderness
    the first ``n`` events of a longer run equal a run of ``n``.
    """
    rng = random.Random(config.seed)
    m, ads = _scramble(config), config.ads
    values: list[AdEvent] = []
    append = values.append
    rate = config.events_per_second
    # One 64-bit draw per event gives the fields a uniform choice needs; the ad is drawn apart (unbiased).
    for i in range(n):
        bits = rng.getrandbits(64)
        append(AdEvent(
            bits % _USERS,
            (bits >> 17) % _PAGES,
            rng.randrange(ads) * m % ads,
            AD_TYPES[(bits >> 34) % 5],
            EVENT_TYPES[(bits >> 37) % 3],
            round(i / rate, 3),
            f"{(bits >> 40) & 255}.{(bits >> 48) & 255}.{(bits >> 56) & 255}.{i & 255}",
        ))
    group = max(1, int(round(config.out_of_orderness * rate)))
    return [TimestampedValue(values[i], values[i].event_time) for i in arrival_order(n, group, config.seed)]


def window_start(t: float, size: float = 10.0) -> float:
    """The start (seconds) of the fixed window of ``size`` seconds holding time ``t``, computed in microseconds as tidal does.

    >>> window_start(19.999, 10.0), window_start(20.0, 10.0)
    (10.0, 20.0)
    """
    us, size_us = int(round(t * 1_000_000)), int(round(size * 1_000_000))
    return (us - us % size_us) / 1e6


def _is_view(e: AdEvent) -> bool:
    return e.event_type == "view"


def _project(e: AdEvent) -> tuple[int, float]:
    return (e.ad_id, e.event_time)


def _join(ad_time: tuple[int, float], campaigns: dict[int, int]) -> tuple[int, float]:
    return (campaigns[ad_time[0]], ad_time[1])


class _WithWindow(td.DoFn):
    def process(self, kv: tuple[int, int], w: Any = td.DoFn.WindowParam) -> Iterable[tuple[float, int, int]]:
        yield (float(w.start), kv[0], kv[1])


def query(events: PCollection[Any], config: YahooConfig) -> PCollection[Any]:
    """The Yahoo query over a PCollection of timestamped AdEvents: ``(window start, campaign, views)`` per window."""
    ads = events.pipeline | "Yahoo/Ads" >> td.Create(ad_table(config))
    return (
        events
        | "Yahoo/Views" >> td.Filter(_is_view)
        | "Yahoo/Project" >> td.Map(_project)
        | "Yahoo/Campaign" >> td.Map(_join, td.AsDict(ads))
        | "Yahoo/Window" >> td.WindowInto(window.FixedWindows(config.window_size))
        | "Yahoo/One" >> td.Map(lambda ct: (ct[0], 1))
        | "Yahoo/Count" >> td.CombinePerKey(sum)
        | "Yahoo/WithWindow" >> td.ParDo(_WithWindow())
    )


def expected_counts(events: Sequence[Any], config: YahooConfig) -> list[tuple[float, int, int]]:
    """The query's result computed in plain Python: views per (window start, campaign)."""
    campaigns = campaign_table(config)
    counts: Counter[tuple[float, int]] = Counter()
    for e in events:
        v = e.value if isinstance(e, TimestampedValue) else e
        if v.event_type == "view":
            counts[(window_start(v.event_time, config.window_size), campaigns[v.ad_id])] += 1
    return [(w, c, n) for (w, c), n in counts.items()]


def window_key(config: YahooConfig) -> Any:
    """The function giving an input event the window it belongs to (its start): a window's last event is the last
    event that function maps to the window.

    >>> key = window_key(YahooConfig())
    >>> key(AdEvent(1, 2, 0, "mail", "view", 12.5, "1.2.3.4")), key(AdEvent(1, 2, 0, "mail", "click", 9.5, "1.2.3.4"))
    (10.0, 0.0)
    """
    size = config.window_size

    def key(e: AdEvent) -> Hashable | None:
        return window_start(e.event_time, size)

    return key


def result_key(row: tuple[float, int, int]) -> Hashable:
    """The window (its start) of a result ``(window start, campaign, views)``."""
    return row[0]
