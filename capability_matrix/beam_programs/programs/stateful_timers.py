"""Stateful processing: a per-key buffer flushed by an event-time timer at the end of each window,
and a running count per key in ReadModifyWrite state.
"""

import argparse

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer


class BufferUntilWindowEnd(beam.DoFn):
    BUFFER = BagStateSpec("buffer", VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def process(self, kv, w=beam.DoFn.WindowParam, buffer=beam.DoFn.StateParam(BUFFER), flush=beam.DoFn.TimerParam(FLUSH)):
        buffer.add(kv[1])
        flush.set(w.max_timestamp())

    @on_timer(FLUSH)
    def on_flush(self, key=beam.DoFn.KeyParam, ts=beam.DoFn.TimestampParam, buffer=beam.DoFn.StateParam(BUFFER)):
        values = sorted(buffer.read())
        buffer.clear()
        yield f"{key},{values},{ts.micros // 1000}"


class RunningCount(beam.DoFn):
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, kv, count=beam.DoFn.StateParam(COUNT)):
        n = (count.read() or 0) + 1
        count.write(n)
        yield kv[0], n


def parse(line):
    key, value, seconds = line.split(",")
    return window.TimestampedValue((key, int(value)), int(seconds))


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args, rest = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(rest)) as p:
        events = p | beam.io.ReadFromText(args.input) | beam.Map(parse)
        (
            events
            | beam.WindowInto(window.FixedWindows(100))
            | beam.ParDo(BufferUntilWindowEnd())
            | "WriteBuffers" >> beam.io.WriteToText(args.output + ".buffers")
        )
        (
            events
            | beam.ParDo(RunningCount())
            | "Final" >> beam.CombinePerKey(max)
            | "Format" >> beam.MapTuple(lambda k, n: f"{k}: {n}")
            | "WriteCounts" >> beam.io.WriteToText(args.output + ".counts")
        )
