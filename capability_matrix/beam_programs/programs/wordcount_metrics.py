"""Word count with a custom options class and user metrics, queried after the run."""

import re

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import SetupOptions
from apache_beam.options.pipeline_options import StandardOptions


class WordCountOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", required=True, help="Files to read.")
        parser.add_argument("--output", required=True, help="Output prefix.")
        parser.add_argument("--min_length", type=int, default=3, help="Shortest word counted.")


class ExtractWords(beam.DoFn):
    def __init__(self, min_length):
        self.min_length = min_length
        self.words = Metrics.counter(self.__class__, "words")
        self.short_words = Metrics.counter(self.__class__, "short_words")
        self.empty_lines = Metrics.counter("wordcount", "empty_lines")
        self.word_lengths = Metrics.distribution("wordcount", "word_lengths")

    def process(self, line):
        words = re.findall(r"[A-Za-z']+", line)
        if not words:
            self.empty_lines.inc()
        for word in words:
            self.word_lengths.update(len(word))
            if len(word) < self.min_length:
                self.short_words.inc()
                continue
            self.words.inc()
            yield word.lower()


def run(argv=None):
    options = PipelineOptions(argv)
    options.view_as(SetupOptions).save_main_session = True
    wordcount = options.view_as(WordCountOptions)
    assert not options.view_as(StandardOptions).streaming

    p = beam.Pipeline(options=options)
    (
        p
        | "Read" >> beam.io.ReadFromText(wordcount.input)
        | "Words" >> beam.ParDo(ExtractWords(wordcount.min_length))
        | "Count" >> beam.combiners.Count.PerElement()
        | "Format" >> beam.MapTuple(lambda word, n: f"{word}\t{n}")
        | "Write" >> beam.io.WriteToText(wordcount.output + ".counts")
    )
    result = p.run()
    result.wait_until_finish()

    lines = []
    for name in ("words", "short_words", "empty_lines"):
        counters = result.metrics().query(MetricsFilter().with_name(name))["counters"]
        lines.append(f"{name}={sum(c.committed for c in counters)}")
    for d in result.metrics().query(MetricsFilter().with_name("word_lengths"))["distributions"]:
        lines.append(f"word_lengths count={d.committed.count} sum={d.committed.sum} min={d.committed.min} max={d.committed.max}")
    with open(wordcount.output + ".metrics", "w") as f:
        f.write("\n".join(lines) + "\n")
    return result
