"""A DoFn with tagged outputs, Partition, and Flatten of the parts (Beam's multiple_output_pardo style)."""

import argparse
import re

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.options.pipeline_options import PipelineOptions


class SplitLinesToWordsFn(beam.DoFn):
    OUTPUT_TAG_SHORT_WORDS = "tag_short_words"
    OUTPUT_TAG_CHARACTER_COUNT = "tag_character_count"

    def process(self, element):
        yield pvalue.TaggedOutput(self.OUTPUT_TAG_CHARACTER_COUNT, len(element))
        for word in re.findall(r"[A-Za-z\']+", element):
            if len(word) <= 3:
                yield pvalue.TaggedOutput(self.OUTPUT_TAG_SHORT_WORDS, word)
            else:
                yield word


def by_length(word, num_partitions):
    return min(len(word) // 3, num_partitions - 1)


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args, rest = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(rest)) as p:
        split = (
            p
            | beam.io.ReadFromText(args.input)
            | beam.ParDo(SplitLinesToWordsFn()).with_outputs(
                SplitLinesToWordsFn.OUTPUT_TAG_SHORT_WORDS,
                SplitLinesToWordsFn.OUTPUT_TAG_CHARACTER_COUNT,
                main="words",
            )
        )
        words, _, _ = split
        short_words = split[SplitLinesToWordsFn.OUTPUT_TAG_SHORT_WORDS]
        character_count = split.tag_character_count

        (
            character_count
            | "PairWithKey" >> beam.Map(lambda x: ("chars_temp_key", x))
            | beam.GroupByKey()
            | "CountChars" >> beam.Map(lambda kv: "characters: %d" % sum(kv[1]))
            | "WriteChars" >> beam.io.WriteToText(args.output + ".chars")
        )
        (
            short_words
            | "CountShort" >> beam.combiners.Count.PerElement()
            | "FormatShort" >> beam.MapTuple(lambda w, n: f"{w}: {n}")
            | "WriteShort" >> beam.io.WriteToText(args.output + ".short")
        )
        small, medium, large = words | "ByLength" >> beam.Partition(by_length, 3)
        (
            (small, large)
            | "SmallAndLarge" >> beam.Flatten()
            | "CountEnds" >> beam.combiners.Count.PerElement()
            | "FormatEnds" >> beam.MapTuple(lambda w, n: f"{w}: {n}")
            | "WriteEnds" >> beam.io.WriteToText(args.output + ".ends")
        )
        (
            medium
            | "CountMedium" >> beam.combiners.Count.Globally()
            | "FormatMedium" >> beam.Map(lambda n: f"medium words: {n}")
            | "WriteMedium" >> beam.io.WriteToText(args.output + ".medium")
        )
