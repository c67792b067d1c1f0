"""User sessions: activity events stamped with their time, Sessions windows, per-session summaries."""

import argparse

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import Sessions
from apache_beam.transforms.window import TimestampedValue


class ParseActivity(beam.DoFn):
    def process(self, line):
        user, seconds, action = line.split(",")
        yield TimestampedValue((user, action), int(seconds))


class SummarizeSession(beam.DoFn):
    def process(self, user_actions, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        user, actions = user_actions
        actions = sorted(actions)
        yield (
            f"{user},[{window.start.micros // 1000000},{window.end.micros // 1000000}),"
            f"{len(actions)},{'|'.join(actions)},{timestamp.micros // 1000}"
        )


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--gap", type=int, default=300)
    args, rest = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(rest)) as p:
        sessions = (
            p
            | beam.io.ReadFromText(args.input)
            | beam.ParDo(ParseActivity())
            | beam.WindowInto(Sessions(args.gap))
        )
        (
            sessions
            | "GroupSessions" >> beam.GroupByKey()
            | beam.ParDo(SummarizeSession())
            | "WriteSessions" >> beam.io.WriteToText(args.output + ".sessions")
        )
        (
            sessions
            | "Users" >> beam.Keys()
            | "SessionEvents" >> beam.combiners.Count.PerElement()
            | "Format" >> beam.MapTuple(lambda user, n: f"{user}: {n}")
            | "WriteCounts" >> beam.io.WriteToText(args.output + ".counts")
        )
