"""Team scores per fixed window of event time, between a start and a stop time."""

import argparse
import datetime

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import SetupOptions
from apache_beam.transforms import window


def str2timestamp(s, fmt="%Y-%m-%d-%H-%M"):
    dt = datetime.datetime.strptime(s, fmt).replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def parse(line):
    user, team, score, ts_ms, _ = line.split(",")
    return {"user": user, "team": team, "score": int(score), "timestamp": int(ts_ms) / 1000.0}


class TeamScoresDict(beam.DoFn):
    def process(self, team_score, window=beam.DoFn.WindowParam):
        team, score = team_score
        start = window.start.to_utc_datetime().strftime("%Y-%m-%d %H:%M:%S")
        yield f"{team},{score},{start}"


class HourlyTeamScore(beam.PTransform):
    def __init__(self, start_min, stop_min, window_duration):
        super().__init__()
        self.start_timestamp = str2timestamp(start_min)
        self.stop_timestamp = str2timestamp(stop_min)
        self.window_duration_in_seconds = window_duration * 60

    def expand(self, pcoll):
        return (
            pcoll
            | "ParseGameEventFn" >> beam.Map(parse)
            | "FilterStartTime" >> beam.Filter(lambda elem: elem["timestamp"] > self.start_timestamp)
            | "FilterEndTime" >> beam.Filter(lambda elem: elem["timestamp"] < self.stop_timestamp)
            | "AddEventTimestamps" >> beam.Map(lambda elem: beam.window.TimestampedValue(elem, elem["timestamp"]))
            | "FixedWindowsTeam" >> beam.WindowInto(window.FixedWindows(self.window_duration_in_seconds))
            | "ExtractTeamScore" >> beam.Map(lambda elem: (elem["team"], elem["score"]))
            | "SumTeamScores" >> beam.CombinePerKey(sum)
        )


def run(argv=None, save_main_session=True):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", type=str, required=True)
    parser.add_argument("--output", type=str, required=True)
    parser.add_argument("--window_duration", type=int, default=60)
    parser.add_argument("--start_min", type=str, default="1970-01-01-00-00")
    parser.add_argument("--stop_min", type=str, default="2100-01-01-00-00")
    args, pipeline_args = parser.parse_known_args(argv)

    options = PipelineOptions(pipeline_args)
    options.view_as(SetupOptions).save_main_session = save_main_session
    with beam.Pipeline(options=options) as p:
        (
            p
            | "ReadInputText" >> beam.io.ReadFromText(args.input)
            | "HourlyTeamScore" >> HourlyTeamScore(args.start_min, args.stop_min, args.window_duration)
            | "TeamScoresDict" >> beam.ParDo(TeamScoresDict())
            | "WriteTeamScoreSums" >> beam.io.WriteToText(args.output + ".teams")
        )
