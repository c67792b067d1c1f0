"""Word count: the classic first pipeline.

Reads lines (a short built-in text, or the file given by --input), splits them
into words, counts each word and prints the most frequent ones.

    python examples/wordcount.py
    python examples/wordcount.py --input README.md --top 5
    python -m tidal run examples/wordcount.py --runner direct
"""

from __future__ import annotations

import argparse
import re

import tidal as td
from tidal import combiners

TEXT = """\
The sea is calm tonight.
The tide is full, the moon lies fair
Upon the straits; on the French coast the light
Gleams and is gone; the cliffs of England stand,
Glimmering and vast, out in the tranquil bay.
Come to the window, sweet is the night-air!
Only, from the long line of spray
Where the sea meets the moon-blanched land,
Listen! you hear the grating roar
Of pebbles which the waves draw back, and fling,
At their return, up the high strand,
Begin, and cease, and then again begin,
With tremulous cadence slow, and bring
The eternal note of sadness in.
"""


def read_lines(path: str | None) -> list[str]:
    if path is None:
        return TEXT.splitlines()
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def print_top(top: list[tuple[str, int]]) -> None:
    print(f"Top {len(top)} words:")
    for word, count in top:
        print(f"  {word:<12} {count}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="a text file to count (default: a built-in poem)")
    parser.add_argument("--top", type=int, default=10, help="how many words to print (default 10)")
    args = parser.parse_args(argv)

    with td.Pipeline() as p:
        (
            p
            | "Read" >> td.Create(read_lines(args.input))
            | "Split" >> td.FlatMap(lambda line: re.findall(r"[a-z']+", line.lower()))
            | "Count" >> combiners.Count.PerElement()
            # The most frequent first, ties in alphabetical order.
            | "Top" >> combiners.Top.Of(args.top, key=lambda kv: (-kv[1], kv[0]), reverse=True)
            | "Print" >> td.Map(print_top)
        )


if __name__ == "__main__":
    main()
