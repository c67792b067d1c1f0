"""Word count, as Beam's own example writes it: argparse, PipelineOptions, ReadFromText, WriteToText."""

import argparse
import logging
import re

import apache_beam as beam
from apache_beam.io import ReadFromText
from apache_beam.io import WriteToText
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import SetupOptions
from apache_beam.runners.runner import PipelineResult


class WordExtractingDoFn(beam.DoFn):
    """Parse each line of input text into words."""

    def process(self, element):
        return re.findall(r"[\w\']+", element, re.UNICODE)


def run(argv=None, save_main_session=True) -> PipelineResult:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", dest="input", required=True, help="Input file to process.")
    parser.add_argument("--output", dest="output", required=True, help="Output prefix.")
    known_args, pipeline_args = parser.parse_known_args(argv)

    pipeline_options = PipelineOptions(pipeline_args)
    pipeline_options.view_as(SetupOptions).save_main_session = save_main_session

    pipeline = beam.Pipeline(options=pipeline_options)
    lines = pipeline | "Read" >> ReadFromText(known_args.input)
    counts = (
        lines
        | "Split" >> (beam.ParDo(WordExtractingDoFn()).with_output_types(str))
        | "PairWithOne" >> beam.Map(lambda x: (x, 1))
        | "GroupAndSum" >> beam.CombinePerKey(sum)
    )

    def format_result(word, count):
        return "%s: %d" % (word, count)

    output = counts | "Format" >> beam.MapTuple(format_result)
    output | "Write" >> WriteToText(known_args.output + ".counts")
    result = pipeline.run()
    result.wait_until_finish()
    return result


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
