"""Rolling word count: how often each word was said, per window of event time.

Each line of the transcript carries the second it was spoken; its words are
stamped with that time, assigned to windows (sliding by default: 60 s long,
starting every 30 s; --every 0 gives fixed 60 s windows) and counted per
window.

    python examples/rolling_wordcount.py
    python examples/rolling_wordcount.py --size 60 --every 0     # fixed windows
    python -m tidal run examples/rolling_wordcount.py --size 120 --every 60
"""

from __future__ import annotations

import argparse
from typing import Any, Iterator

import tidal as td
from tidal import combiners, window

START = 1_717_232_400  # 2024-06-01 09:00:00 UTC, in seconds since the epoch

# (seconds since the start, what was said)
TRANSCRIPT = [
    (3, "the tide is rising"),
    (17, "tide tables say high tide at noon"),
    (42, "the moon is rising too"),
    (58, "the sea is calm"),
    (65, "the tide turns"),
    (88, "moon over the sea"),
    (101, "sea and sky"),
    (119, "the tide is falling"),
    (134, "the moon is setting"),
    (160, "low tide"),
]


def stamp_words(line: tuple[int, str]) -> Iterator[window.TimestampedValue]:
    seconds, text = line
    for word in text.split():
        yield window.TimestampedValue(word, START + seconds)


class WithWindow(td.DoFn):
    """(word, count) -> (window start, window end, word, count)."""

    def process(self, word_count: tuple[str, int], w: Any = td.DoFn.WindowParam) -> Iterator[tuple[Any, Any, str, int]]:
        word, count = word_count
        yield w.start, w.end, word, count


def clock(t: td.Timestamp) -> str:
    return t.to_utc_datetime().strftime("%H:%M:%S")


def print_windows(rows: list[tuple[td.Timestamp, td.Timestamp, str, int]]) -> None:
    by_window: dict[tuple[td.Timestamp, td.Timestamp], list[tuple[str, int]]] = {}
    for start, end, word, count in rows:
        by_window.setdefault((start, end), []).append((word, count))
    for (start, end), counts in sorted(by_window.items()):
        counts.sort(key=lambda wc: (-wc[1], wc[0]))
        shown = ", ".join(f"{word} {count}" for word, count in counts[:5])
        more = f" (+{len(counts) - 5} more)" if len(counts) > 5 else ""
        print(f"[{clock(start)}, {clock(end)})  {shown}{more}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=60, help="window length in seconds (default 60)")
    parser.add_argument("--every", type=int, default=30, help="a new window every this many seconds; 0 for fixed windows (default 30)")
    args = parser.parse_args(argv)
    windows = window.SlidingWindows(args.size, args.every) if args.every else window.FixedWindows(args.size)

    every = f"one every {args.every} s" if args.every else "fixed"
    print(f"Word counts per {args.size} s window ({every}), most said first:")
    with td.Pipeline() as p:
        (
            p
            | "Transcript" >> td.Create(TRANSCRIPT)
            | "StampWords" >> td.FlatMap(stamp_words)
            | "Window" >> td.WindowInto(windows)
            | "CountPerWindow" >> combiners.Count.PerElement()
            | "WithWindow" >> td.ParDo(WithWindow())
            # Gather every window's counts into one list, to print them in order.
            | "Regather" >> td.WindowInto(window.GlobalWindows())
            | "Collect" >> combiners.ToList()
            | "Print" >> td.Map(print_windows)
        )


if __name__ == "__main__":
    main()
