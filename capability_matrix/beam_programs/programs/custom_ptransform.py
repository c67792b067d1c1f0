"""Composite transforms: a PTransform subclass, a @ptransform_fn and nested labels."""

import argparse

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


class CountWords(beam.PTransform):
    """Count the words of lines longer than ``min_chars`` characters."""

    def __init__(self, min_chars=0, label=None):
        super().__init__(label)
        self.min_chars = min_chars

    def expand(self, lines):
        return (
            lines
            | "Split" >> beam.FlatMap(lambda line: line.lower().split())
            | "KeepLong" >> beam.Filter(lambda w, n: len(w) > n, self.min_chars)
            | "Pair" >> beam.Map(lambda w: (w, 1))
            | "Sum" >> beam.CombinePerKey(sum)
        )


@beam.ptransform_fn
def FormatCounts(pcoll, separator):
    return pcoll | "Format" >> beam.MapTuple(lambda word, n: f"{word}{separator}{n}")


@beam.ptransform_fn
def TopWords(pcoll, n):
    return (
        pcoll
        | "Top" >> beam.combiners.Top.Of(n, key=lambda kv: (kv[1], kv[0]))
        | "Explode" >> beam.FlatMap(lambda top: [f"{i + 1}. {w}" for i, (w, _) in enumerate(top)])
    )


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--min_chars", type=int, default=3)
    args, rest = parser.parse_known_args(argv)
    with beam.Pipeline(argv=rest) as p:
        counts = p | beam.io.ReadFromText(args.input) | "CountWords" >> CountWords(args.min_chars)
        counts | "FormatCounts" >> FormatCounts(" = ") | "WriteCounts" >> beam.io.WriteToText(args.output + ".counts")
        counts | "TopWords" >> TopWords(5) | "WriteTop" >> beam.io.WriteToText(args.output + ".top")
