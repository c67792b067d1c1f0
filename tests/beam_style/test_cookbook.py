"""The ported cookbook programs' pieces under TestPipeline, with expectations computed in plain Python."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import tidal as beam
from tidal.capability_matrix.beam_programs import load_ported, read_outputs
from tidal.testing.test_pipeline import TestPipeline
from tidal.testing.util import assert_that, equal_to

combiners_cookbook = load_ported("combiners_cookbook")
custom_ptransform = load_ported("custom_ptransform")
multiple_outputs = load_ported("multiple_outputs")
join = load_ported("join")
stateful_timers = load_ported("stateful_timers")
typed_pipeline = load_ported("typed_pipeline")

PAIRS = [("apple", 3), ("fig", 10), ("apple", 5), ("kiwi", 1), ("fig", 2), ("apple", 7)]


def test_combiners_cookbook_main(tmp_path: Path, local_runner: str) -> None:
    source = tmp_path / "fruit.csv"
    source.write_text("".join(f"{f},{n}\n" for f, n in PAIRS))
    combiners_cookbook.run([f"--input={source}", f"--output={tmp_path / 'out'}"])
    lines = read_outputs(tmp_path)["combined"]
    by_key: dict[str, list[int]] = collections.defaultdict(list)
    for f, n in PAIRS:
        by_key[f].append(n)
    amounts = [n for _, n in PAIRS]
    expected = [
        *(f"count_per_element: {(f, len(ns))!r}" for f, ns in by_key.items()),
        f"count_globally: {len(PAIRS)}",
        *(f"count_per_key: {(f, len(ns))!r}" for f, ns in by_key.items()),
        *(f"mean_per_key: {(f, round(sum(ns) / len(ns), 6))!r}" for f, ns in by_key.items()),
        f"mean_globally: {round(sum(amounts) / len(amounts), 6)!r}",
        f"top_largest: {sorted(amounts, reverse=True)[:3]!r}",
        f"top_smallest: {sorted(amounts)[:2]!r}",
        *(f"top_per_key: {(f, sorted(ns, reverse=True)[:2])!r}" for f, ns in by_key.items()),
        f"top_of_by_length: {sorted(by_key, key=lambda f: (len(f), f), reverse=True)[:2]!r}",
        f"to_list: {sorted(by_key)!r}",
        f"average_fn: {round(sum(amounts) / len(amounts), 6)!r}",
        *(f"average_per_key: {(f, round(sum(ns) / len(ns), 6))!r}" for f, ns in by_key.items()),
        *(f"max_per_key: {(f, max(ns))!r}" for f, ns in by_key.items()),
        *(f"combine_values: {(f, sum(ns))!r}" for f, ns in by_key.items()),
        f"sum_globally: {sum(amounts)}",
        f"distinct_count: {len(by_key)}",
    ]
    assert lines == sorted(expected)


def test_custom_ptransform(runner: str) -> None:
    lines = ["The tide is full", "the moon lies fair", "upon the straits"]
    words = [w for line in lines for w in line.lower().split() if len(w) > 3]
    expected = [f"{w} = {n}" for w, n in collections.Counter(words).items()]
    with TestPipeline() as p:
        counts = p | beam.Create(lines) | custom_ptransform.CountWords(min_chars=3)
        assert_that(counts | custom_ptransform.FormatCounts(" = "), equal_to(expected))


def test_multiple_outputs(runner: str) -> None:
    lines = ["xyz is a word", "another one bites"]
    with TestPipeline() as p:
        split = p | beam.Create(lines) | beam.ParDo(multiple_outputs.SplitLinesToWordsFn()).with_outputs(
            "tag_short_words", "tag_character_count", main="words")
        assert_that(split.words, equal_to(["word", "another", "bites"]), label="words")
        assert_that(split.tag_short_words, equal_to(["xyz", "is", "a", "one"]), label="short")
        assert_that(split.tag_character_count, equal_to([13, 17]), label="chars")


def test_join_merges_contacts(tmp_path: Path, local_runner: str) -> None:
    (tmp_path / "e.csv").write_text("ann, ann@x.org\nbob, bob@y.org\nann, ann2@x.org\n")
    (tmp_path / "p.csv").write_text("bob, 555-1\ncat, 555-2\n")
    (tmp_path / "s.csv").write_text("cat, 1 Main St\n")
    join.run([f"--input_email={tmp_path / 'e.csv'}", f"--input_phone={tmp_path / 'p.csv'}",
              f"--input_snailmail={tmp_path / 's.csv'}", f"--output={tmp_path / 'out'}"])
    outputs = read_outputs(tmp_path)
    assert outputs["contacts"] == [
        "ann; ['ann2@x.org', 'ann@x.org']; []; []",
        "bob; ['bob@y.org']; ['555-1']; []",
        "cat; []; ['555-2']; ['1 Main St']",
    ]
    assert outputs["stats"] == ["luddites: 1", "writers: 1"]


def test_stateful_buffer_flushes_at_the_end_of_each_window(tmp_path: Path, runner: str) -> None:
    events = [("a", 5, 10), ("a", 1, 90), ("b", 7, 50), ("a", 3, 150), ("b", 2, 199), ("b", 4, 200)]
    (tmp_path / "events.csv").write_text("".join(f"{k},{v},{t}\n" for k, v, t in events))
    stateful_timers.run([f"--input={tmp_path / 'events.csv'}", f"--output={tmp_path / 'out'}"])
    outputs = read_outputs(tmp_path)
    # Windows of 100 s: the timer is set at each window's last instant and fires there (ms).
    assert outputs["buffers"] == sorted([
        "a,[1, 5],99999", "b,[7],99999", "a,[3],199999", "b,[2],199999", "b,[4],299999",
    ])
    assert outputs["counts"] == ["a: 3", "b: 3"]


def test_typed_pipeline_with_a_registered_coder(tmp_path: Path, runner: str) -> None:
    (tmp_path / "plays.csv").write_text("ana,north,3\nbo,north,4\nana,north,5\ncy,south,1\n")
    typed_pipeline.run([f"--input={tmp_path / 'plays.csv'}", f"--output={tmp_path / 'out'}"])
    outputs = read_outputs(tmp_path)
    assert outputs["players"] == ["ana:north=8", "bo:north=4", "cy:south=1"]
    assert outputs["teams"] == ["north=12", "south=1"]
