"""Stock prices: ticks from three exchanges, merged and summarised per minute.

Each source is a list of ``(symbol, price)`` ticks stamped with their event
time. The three are merged with Flatten, cut into one-minute windows, and
per symbol and window we compute the mean, the lowest and the highest price
(three CombinePerKey steps joined with CoGroupByKey).

    python examples/stock_prices.py
    python -m tidal run examples/stock_prices.py --runner direct
    python -m tidal graph examples/stock_prices.py --format mermaid
"""

from __future__ import annotations

from typing import Any, Iterator

import tidal as td
from tidal import combiners, window

START = 1_717_232_400  # 2024-06-01 09:00:00 UTC, in seconds since the epoch

# (seconds after 09:00, symbol, price) per exchange
EXCHANGES = {
    "NYSE": [(5, "ACME", 101.0), (31, "ACME", 101.5), (64, "ACME", 102.5), (118, "ACME", 101.0), (12, "GLOBEX", 55.2), (95, "GLOBEX", 54.8)],
    "NASDAQ": [(9, "INITECH", 12.4), (47, "INITECH", 12.9), (72, "INITECH", 13.1), (20, "ACME", 100.5), (80, "ACME", 102.0)],
    "LSE": [(15, "GLOBEX", 55.6), (58, "GLOBEX", 56.0), (66, "GLOBEX", 55.0), (110, "INITECH", 12.7), (2, "INITECH", 12.2)],
}


def ticks(rows: list[tuple[int, str, float]]) -> list[window.TimestampedValue]:
    return [window.TimestampedValue((symbol, price), START + seconds) for seconds, symbol, price in rows]


class FormatWindow(td.DoFn):
    """(symbol, {"mean": [m], "low": [l], "high": [h]}) -> one line of the report, window first."""

    def process(self, joined: tuple[str, dict[str, list[float]]], w: Any = td.DoFn.WindowParam) -> Iterator[str]:
        symbol, stats = joined
        start = w.start.to_utc_datetime().strftime("%H:%M")
        end = w.end.to_utc_datetime().strftime("%H:%M")
        (mean,), (low,), (high,) = stats["mean"], stats["low"], stats["high"]
        yield f"[{start}, {end})  {symbol:<8} mean {mean:7.2f}   min {low:7.2f}   max {high:7.2f}"


def print_report(lines: list[str]) -> None:
    print("Per-minute prices, all exchanges:")
    for line in sorted(lines):
        print(line)


def main() -> None:
    with td.Pipeline() as p:
        sources = [p | f"Read{name}" >> td.Create(ticks(rows)) for name, rows in EXCHANGES.items()]
        prices = (
            sources
            | "Merge" >> td.Flatten()
            | "PerMinute" >> td.WindowInto(window.FixedWindows(60))
        )
        mean = prices | "Mean" >> combiners.Mean.PerKey()
        low = prices | "Min" >> td.CombinePerKey(min)
        high = prices | "Max" >> td.CombinePerKey(max)
        (
            {"mean": mean, "low": low, "high": high}
            | "Join" >> td.CoGroupByKey()
            | "Format" >> td.ParDo(FormatWindow())
            # Gather every window's lines into one list, to print them in order.
            | "Regather" >> td.WindowInto(window.GlobalWindows())
            | "Collect" >> combiners.ToList()
            | "Print" >> td.Map(print_report)
        )


if __name__ == "__main__":
    main()
