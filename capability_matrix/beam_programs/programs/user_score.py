"""Per-user and per-team total scores of a game, from CSV event lines (Beam's game examples' style).

Each line is ``user,team,score,timestamp_ms,readable_time``; malformed lines
are counted and skipped.
"""

import argparse
import logging

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.options.pipeline_options import PipelineOptions


class ParseGameEventFn(beam.DoFn):
    def __init__(self):
        beam.DoFn.__init__(self)
        self.num_parse_errors = Metrics.counter(self.__class__, "num_parse_errors")

    def process(self, elem):
        try:
            row = list(elem.split(","))
            yield {"user": row[0], "team": row[1], "score": int(row[2]), "timestamp": int(row[3]) / 1000.0}
        except (IndexError, ValueError):
            self.num_parse_errors.inc()
            logging.error("Parse error on %r", elem)


class ExtractAndSumScore(beam.PTransform):
    """Sum the score of each value of ``field``."""

    def __init__(self, field):
        beam.PTransform.__init__(self)
        self.field = field

    def expand(self, pcoll):
        return (
            pcoll
            | beam.Map(lambda elem: (elem[self.field], elem["score"]))
            | beam.CombinePerKey(sum)
        )


def run(argv=None, save_main_session=True):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", type=str, required=True)
    parser.add_argument("--output", type=str, required=True)
    args, pipeline_args = parser.parse_known_args(argv)

    options = PipelineOptions(pipeline_args)
    with beam.Pipeline(options=options) as p:
        events = p | "ReadInputText" >> beam.io.ReadFromText(args.input) | "ParseGameEventFn" >> beam.ParDo(ParseGameEventFn())
        (
            events
            | "UserScores" >> ExtractAndSumScore("user")
            | "FormatUsers" >> beam.Map(lambda kv: "user: %s, total_score: %s" % kv)
            | "WriteUsers" >> beam.io.WriteToText(args.output + ".users")
        )
        (
            events
            | "TeamScores" >> ExtractAndSumScore("team")
            | "FormatTeams" >> beam.Map(lambda kv: "team: %s, total_score: %s" % kv)
            | "WriteTeams" >> beam.io.WriteToText(args.output + ".teams")
        )
