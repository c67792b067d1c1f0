"""A streaming leader board driven by a TestStream: team scores with early and late firings.

The stream is scripted from ``--input``: lines ``user,team,score,event_seconds``
add events, ``watermark,SECONDS`` advances the watermark. Team scores per
fixed window fire early every 3 events, on time at the watermark, and late
for each late event within the allowed lateness, accumulating; user scores
per window fire once, on time (their ``is_last`` is left out: with no allowed
lateness, Beam Java marks that pane last and Beam Python does not). Streaming output cannot go through
WriteToText on Beam's DirectRunner, so each worker appends its lines to a
file of its own.
"""

import argparse
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import trigger
from apache_beam.transforms import window


def scripted_stream(path):
    stream = TestStream()
    batch = []
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if parts[0] == "watermark":
                if batch:
                    stream = stream.add_elements(batch)
                    batch = []
                stream = stream.advance_watermark_to(int(parts[1]))
            else:
                user, team, score, ts = parts
                batch.append(window.TimestampedValue({"user": user, "team": team, "score": int(score)}, int(ts)))
    if batch:
        stream = stream.add_elements(batch)
    return stream.advance_watermark_to_infinity()


class AppendLines(beam.DoFn):
    """Append each element as a line to a file of this worker's own (prefix-<random>)."""

    def __init__(self, prefix):
        self.prefix = prefix

    def setup(self):
        self.path = f"{self.prefix}-{uuid.uuid4().hex}"

    def process(self, line):
        with open(self.path, "a") as f:
            f.write(line + "\n")


class FormatPane(beam.DoFn):
    def __init__(self, with_last=True):
        self.with_last = with_last

    def process(self, kv, w=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam, ts=beam.DoFn.TimestampParam):
        key, total = kv
        last = f",last={pane.is_last}" if self.with_last else ""
        yield (
            f"{key},{total},window=[{float(w.start)},{float(w.end)}),timing={int(pane.timing)},"
            f"index={pane.index},nonspeculative={pane.nonspeculative_index},first={pane.is_first}{last},ts={float(ts)}"
        )


class CalculateTeamScores(beam.PTransform):
    def __init__(self, team_window_duration, allowed_lateness):
        beam.PTransform.__init__(self)
        self.team_window_duration = team_window_duration
        self.allowed_lateness_seconds = allowed_lateness

    def expand(self, scores):
        return (
            scores
            | "LeaderboardTeamFixedWindows" >> beam.WindowInto(
                window.FixedWindows(self.team_window_duration),
                trigger=trigger.AfterWatermark(early=trigger.AfterCount(3), late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=self.allowed_lateness_seconds,
            )
            | "TeamScore" >> beam.Map(lambda e: (e["team"], e["score"]))
            | "SumTeams" >> beam.CombinePerKey(sum)
        )


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--team_window_duration", type=int, default=60)
    parser.add_argument("--allowed_lateness", type=int, default=120)
    args, pipeline_args = parser.parse_known_args(argv)

    options = PipelineOptions(pipeline_args)
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        events = p | "Events" >> scripted_stream(args.input)
        (
            events
            | "CalculateTeamScores" >> CalculateTeamScores(args.team_window_duration, args.allowed_lateness)
            | "FormatTeams" >> beam.ParDo(FormatPane())
            | "WriteTeams" >> beam.ParDo(AppendLines(args.output + ".teams"))
        )
        (
            events
            | "UserWindows" >> beam.WindowInto(window.FixedWindows(args.team_window_duration))
            | "UserScore" >> beam.Map(lambda e: (e["user"], e["score"]))
            | "SumUsers" >> beam.CombinePerKey(sum)
            | "FormatUsers" >> beam.ParDo(FormatPane(with_last=False))
            | "WriteUsers" >> beam.ParDo(AppendLines(args.output + ".users"))
        )
