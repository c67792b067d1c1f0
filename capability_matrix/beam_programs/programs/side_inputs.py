"""Side inputs: filter weather readings by the global mean (AsSingleton), name stations (AsDict),
keep months from a list (AsList) and tag readings by thresholds (AsIter). Beam's filters cookbook style.
"""

import argparse

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsDict
from apache_beam.pvalue import AsIter
from apache_beam.pvalue import AsList
from apache_beam.pvalue import AsSingleton


def parse_reading(line):
    station, month, temp = line.split(",")
    return {"station": station, "month": int(month), "temp": float(temp)}


def parse_station(line):
    code, name = line.split(",")
    return code, name


def label_temp(reading, thresholds):
    # A side input has no order: take the highest threshold the reading reaches.
    reached = [(low, name) for name, low in thresholds if reading["temp"] >= low]
    return reading["station"], reading["month"], max(reached)[1] if reached else "freezing"


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True, help="readings: station,month,temp")
    parser.add_argument("--stations", required=True, help="station names: code,name")
    parser.add_argument("--output", required=True)
    parser.add_argument("--months", default="1,2,12")
    args, rest = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(rest)) as p:
        readings = p | "ReadReadings" >> beam.io.ReadFromText(args.input) | "ParseReadings" >> beam.Map(parse_reading)
        stations = p | "ReadStations" >> beam.io.ReadFromText(args.stations) | "ParseStations" >> beam.Map(parse_station)
        months = p | "Months" >> beam.Create([int(m) for m in args.months.split(",")])
        thresholds = p | "Thresholds" >> beam.Create([("cold", 0.0), ("mild", 10.0), ("warm", 20.0)])

        global_mean = (
            readings
            | "Temps" >> beam.Map(lambda r: r["temp"])
            | "GlobalMean" >> beam.combiners.Mean.Globally()
        )
        (
            readings
            | "InMonths" >> beam.Filter(lambda r, ms: r["month"] in ms, AsList(months))
            | "BelowMean" >> beam.Filter(lambda r, mean: r["temp"] < mean, AsSingleton(global_mean))
            | "Name" >> beam.Map(lambda r, names: f"{names.get(r['station'], '?')},{r['month']},{r['temp']}", AsDict(stations))
            | "WriteCold" >> beam.io.WriteToText(args.output + ".cold")
        )
        (
            readings
            | "Label" >> beam.Map(label_temp, thresholds=AsIter(thresholds))
            | "CountLabels" >> beam.combiners.Count.PerElement()
            | "FormatLabels" >> beam.MapTuple(lambda k, n: f"{k[0]},{k[1]},{k[2]}: {n}")
            | "WriteLabels" >> beam.io.WriteToText(args.output + ".labels")
        )
