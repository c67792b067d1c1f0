"""Flink's stock-market example with tidal: delta windows, a windowed join and a rolling correlation.

The pipeline of Flink's classic streaming example, step by step:

1. three exchanges' price ticks, each a generated random walk per symbol,
   merged with Flatten (as ``stock_prices.py`` does);
2. a price warning per symbol whenever its price moves more than 5% from
   the first price of its delta window (``DeltaWindows``);
3. the warnings counted per symbol over 30 s windows;
4. a generated tweet stream whose mentioned symbols are counted per 30 s;
5. the two joined per symbol and 30 s window (``WindowedJoin``, a full
   outer join: a symbol without warnings or without tweets counts 0);
6. the correlation of warnings and mentions across symbols, per 30 s.

It runs on every runner and checks that each gives the same result (a
symbol's ticks come from one source element expanded by FlatMap, so each
runner processes them in time order: see ``tidal.runners.core.policy``).

    python examples/stock_market.py                       # direct, Ray and micro-batch
    python examples/stock_market.py --runners direct
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
import zlib
from typing import Any, Iterable, Iterator

import tidal as td
from tidal import combiners, window
from tidal.benchmarks.collect import CollectToFolder, read_collected
from tidal.runners import registered_runners
from tidal.transforms.join import WindowedJoin

START = 1_717_232_400  # 2024-06-01 09:00:00 UTC, in seconds since the epoch
SECONDS = 150  # of generated prices and tweets
WINDOW = 30  # seconds: warnings and mentions are counted, joined and correlated per 30 s
MOVE = 0.05  # a warning when a price moves more than 5%
EXCHANGES = {"NYSE": ["ACME", "GLOBEX"], "NASDAQ": ["INITECH", "HOOLI"], "LSE": ["UMBRELLA", "STARK"]}
SYMBOLS = [s for symbols in EXCHANGES.values() for s in symbols]
WORDS = ["buy", "sell", "hold", "moon", "crash", "dip", "rally", "earnings", "wow", "today"]


# -- the generated data (the same on every run) ----------------------------------------------------
def price_walk(symbol: str) -> list[tuple[int, float]]:
    """``(second, price)`` every 2 s: a random walk of the symbol's own seed."""
    rng = random.Random(zlib.crc32(symbol.encode()))
    price = round(rng.uniform(20, 200), 2)
    walk = []
    for second in range(0, SECONDS, 2):
        price = round(price * (1 + rng.gauss(0, 0.012)), 2)
        walk.append((second, price))
    return walk


def tweet_stream() -> list[tuple[int, str]]:
    """``(second, text)``: a tweet every second, mentioning one to three symbols."""
    rng = random.Random(20)
    tweets = []
    for second in range(SECONDS):
        words = rng.sample(WORDS, 3) + rng.sample(SYMBOLS, rng.randint(1, 3))
        rng.shuffle(words)
        tweets.append((second, " ".join(words)))
    return tweets


def relative_move(first: float, current: float) -> float:
    """How far ``current`` is from ``first``, as a fraction of ``first``."""
    return abs(current - first) / first


def correlation(pairs: Iterable[tuple[int, int]]) -> float | None:
    """Pearson's correlation of integer pairs (None when either side does not vary)."""
    n = sx = sy = sxx = syy = sxy = 0
    for x, y in pairs:
        n, sx, sy, sxx, syy, sxy = n + 1, sx + x, sy + y, sxx + x * x, syy + y * y, sxy + x * y
    cov, vx, vy = n * sxy - sx * sy, n * sxx - sx * sx, n * syy - sy * sy
    if n < 2 or vx == 0 or vy == 0:
        return None
    return round(cov / math.sqrt(vx * vy), 6)


# -- the pipeline's steps ---------------------------------------------------------------------------
def ticks(symbol: str) -> Iterator[window.TimestampedValue]:
    for second, price in price_walk(symbol):
        yield window.TimestampedValue((symbol, price), START + second)


def warning(run: Any, t: Any = td.DoFn.TimestampParam) -> Iterator[tuple[str, float, float, int]]:
    """A closed delta window whose last price moved more than 5% from its first: (symbol, from, to, second)."""
    symbol, prices = run  # (symbol, [prices of one delta window, in time order])
    if relative_move(prices[0], prices[-1]) > MOVE:  # not the partial window at the end of the input
        yield symbol, prices[0], prices[-1], int(t.micros // 1_000_000) - START


def mentions(tweet: tuple[int, str]) -> Iterator[window.TimestampedValue]:
    second, text = tweet
    for word in text.split():
        if word in SYMBOLS:
            yield window.TimestampedValue(word, START + second)


def in_window(kv: Any, w: Any = td.DoFn.WindowParam) -> tuple[int, str, int, int]:
    """(window start second, symbol, warnings, mentions), a missing side counting 0."""
    symbol, (n_warnings, n_mentions) = kv
    return int(w.start.micros // 1_000_000) - START, symbol, n_warnings or 0, n_mentions or 0


class Correlation(td.CombineFn):
    """Pearson's correlation of (warnings, mentions) pairs, from integer sums (exact in any combine order)."""

    def create_accumulator(self) -> list[tuple[int, int]]:
        return []

    def add_input(self, acc: list[tuple[int, int]], row: tuple[int, str, int, int]) -> list[tuple[int, int]]:
        return [*acc, (row[2], row[3])]

    def merge_accumulators(self, accs: Iterable[list[tuple[int, int]]]) -> list[tuple[int, int]]:
        return [pair for acc in accs for pair in acc]

    def extract_output(self, acc: list[tuple[int, int]]) -> tuple[int, float | None]:
        return len(acc), correlation(acc)


def with_window_start(value: Any, w: Any = td.DoFn.WindowParam) -> tuple[int, int, float | None]:
    return (int(w.start.micros // 1_000_000) - START, *value)


def stock_market(p: td.Pipeline) -> dict[str, td.PCollection]:
    """The six steps; returns the warnings, the joined counts and the correlations as plain tuples."""
    # 1. Three exchanges, merged. Each symbol's ticks come from one element, so they stay in order.
    sources = [
        p | f"{name}Symbols" >> td.Create(symbols) | f"{name}Ticks" >> td.FlatMap(ticks)
        for name, symbols in EXCHANGES.items()
    ]
    prices = sources | "Merge" >> td.Flatten()
    # 2. A delta window per symbol closes on a price more than 5% from its first: a warning.
    warnings = (
        prices
        | "DeltaOf5%" >> td.WindowInto(
            window.DeltaWindows(MOVE, relative_move), timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_LATEST
        )
        | "PriceRuns" >> td.GroupByKey()
        | "Warnings" >> td.FlatMap(warning)
    )
    # 3. Warnings per symbol and 30 s.
    warning_counts = (
        warnings
        | "StampWarnings" >> td.Map(lambda w: window.TimestampedValue(w[0], START + w[3]))
        | "WarningWindows" >> td.WindowInto(window.FixedWindows(WINDOW))
        | "CountWarnings" >> combiners.Count.PerElement()
    )
    # 4. Tweets: the symbols they mention, counted per 30 s.
    mention_counts = (
        p
        | "Tweets" >> td.Create(tweet_stream())
        | "Mentions" >> td.FlatMap(mentions)
        | "MentionWindows" >> td.WindowInto(window.FixedWindows(WINDOW))
        | "CountMentions" >> combiners.Count.PerElement()
    )
    # 5. Joined per symbol over the same 30 s windows.
    joined = (warning_counts, mention_counts) | "JoinOn30s" >> WindowedJoin("full", windowfn=window.FixedWindows(WINDOW))
    rows = joined | "Rows" >> td.Map(in_window)
    # 6. The correlation of warnings and mentions across symbols, per 30 s.
    correlations = (
        rows
        | "Correlate" >> td.CombineGlobally(Correlation()).without_defaults()
        | "WindowStart" >> td.Map(with_window_start)
    )
    return {"warnings": warnings, "joined": rows, "correlations": correlations}


# -- running it on every runner ---------------------------------------------------------------------
def run_on(runner: str) -> dict[str, list[Any]]:
    folders = {name: tempfile.mkdtemp(prefix=f"tidal-stocks-{name}-") for name in ("warnings", "joined", "correlations")}
    with td.Pipeline(runner=runner) as p:
        for name, pcoll in stock_market(p).items():
            _ = pcoll | f"Collect{name.title()}" >> td.ParDo(CollectToFolder(folders[name]))
    return {name: sorted(r.value for r in read_collected(folder)) for name, folder in folders.items()}


def clock(second: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(START + second))


def print_report(results: dict[str, list[Any]]) -> None:
    print(f"Price warnings (a move of more than {MOVE:.0%} since the start of a symbol's delta window):")
    for symbol, first, last, second in sorted(results["warnings"], key=lambda w: (w[3], w[0])):
        print(f"  {clock(second)}  {symbol:<9} {first:8.2f} -> {last:8.2f}  ({(last - first) / first:+.1%})")
    print(f"Warnings and tweet mentions per symbol and {WINDOW} s window, with their correlation:")
    by_window: dict[int, list[str]] = {}
    for start, symbol, n_warnings, n_mentions in results["joined"]:
        by_window.setdefault(start, []).append(f"{symbol} {n_warnings}/{n_mentions}")
    for start, n, corr in results["correlations"]:
        value = "n/a" if corr is None else f"{corr:+.3f}"
        print(f"  [{clock(start)}, {clock(start + WINDOW)})  correlation {value:>6} over {n} symbols:  {', '.join(by_window[start])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runners", default=",".join(registered_runners()))
    args = parser.parse_args(argv)
    results: dict[str, dict[str, list[Any]]] = {}
    for runner in args.runners.split(","):
        started = time.perf_counter()
        results[runner] = run_on(runner)
        print(f"{runner:>10}: {sum(map(len, results[runner].values()))} results in {time.perf_counter() - started:.2f} s")
    first = next(iter(results.values()))
    print_report(first)
    same = all(r == first for r in results.values())
    print(f"every runner produced the same result: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
