"""The standard combiners and a custom CombineFn over (fruit, amount) pairs read from text."""

import argparse

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import combiners


class AverageFn(beam.CombineFn):
    def create_accumulator(self):
        return (0.0, 0)

    def add_input(self, sum_count, value):
        s, n = sum_count
        return s + value, n + 1

    def merge_accumulators(self, accumulators):
        sums, counts = zip(*accumulators)
        return sum(sums), sum(counts)

    def extract_output(self, sum_count):
        s, n = sum_count
        return round(s / n, 6) if n else float("NaN")


def parse(line):
    fruit, amount = line.split(",")
    return fruit, int(amount)


def labelled(label):
    return beam.Map(lambda v, label=label: f"{label}: {v!r}")


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args, rest = parser.parse_known_args(argv)

    with beam.Pipeline(options=PipelineOptions(rest)) as p:
        pairs = p | "Read" >> beam.io.ReadFromText(args.input) | "Parse" >> beam.Map(parse)
        fruits = pairs | "Fruits" >> beam.Keys()
        amounts = pairs | "Amounts" >> beam.Values()
        results = [
            fruits | "CountPerElement" >> combiners.Count.PerElement() | "L1" >> labelled("count_per_element"),
            fruits | "CountGlobally" >> combiners.Count.Globally() | "L2" >> labelled("count_globally"),
            pairs | "CountPerKey" >> combiners.Count.PerKey() | "L3" >> labelled("count_per_key"),
            pairs | "MeanPerKey" >> combiners.Mean.PerKey() | "Round" >> beam.MapTuple(lambda k, m: (k, round(m, 6))) | "L4" >> labelled("mean_per_key"),
            amounts | "MeanGlobally" >> combiners.Mean.Globally() | "Round2" >> beam.Map(lambda m: round(m, 6)) | "L5" >> labelled("mean_globally"),
            amounts | "TopLargest" >> combiners.Top.Largest(3) | "L6" >> labelled("top_largest"),
            amounts | "TopSmallest" >> combiners.Top.Smallest(2) | "L7" >> labelled("top_smallest"),
            pairs | "TopPerKey" >> combiners.Top.PerKey(2) | "L8" >> labelled("top_per_key"),
            fruits | "Distinct" >> beam.Distinct() | "TopOfByLength" >> combiners.Top.Of(2, key=lambda f: (len(f), f)) | "L9" >> labelled("top_of_by_length"),
            fruits | "Distinct2" >> beam.Distinct() | "ToList" >> combiners.ToList() | "Sort" >> beam.Map(sorted) | "L10" >> labelled("to_list"),
            amounts | "Average" >> beam.CombineGlobally(AverageFn()) | "L11" >> labelled("average_fn"),
            pairs | "AveragePerKey" >> beam.CombinePerKey(AverageFn()) | "L12" >> labelled("average_per_key"),
            pairs | "MaxPerKey" >> beam.CombinePerKey(max) | "L13" >> labelled("max_per_key"),
            pairs | "Group" >> beam.GroupByKey() | "SumValues" >> beam.CombineValues(sum) | "L14" >> labelled("combine_values"),
            amounts | "Sum" >> beam.CombineGlobally(sum) | "L15" >> labelled("sum_globally"),
            fruits | "CountDistinct" >> beam.Distinct() | "Count3" >> combiners.Count.Globally() | "L16" >> labelled("distinct_count"),
        ]
        results | "Flatten" >> beam.Flatten() | "Write" >> beam.io.WriteToText(args.output + ".combined")
