"""Merge contacts with CoGroupByKey (Beam's mergecontacts style): emails, phones and addresses by name."""

import argparse

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


def read_kv(p, label, pattern):
    return (
        p
        | f"Read{label}" >> beam.io.ReadFromText(pattern)
        | f"Parse{label}" >> beam.Map(lambda line: tuple(part.strip() for part in line.split(",", 1)))
    )


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input_email", required=True)
    parser.add_argument("--input_phone", required=True)
    parser.add_argument("--input_snailmail", required=True)
    parser.add_argument("--output", required=True)
    args, rest = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(rest)) as p:
        email = read_kv(p, "Email", args.input_email)
        phone = read_kv(p, "Phone", args.input_phone)
        snailmail = read_kv(p, "Snailmail", args.input_snailmail)
        grouped = (email, phone, snailmail) | "group_by_name" >> beam.CoGroupByKey()
        (
            grouped
            | "Format" >> beam.MapTuple(
                lambda name, info: "%s; %s; %s; %s" % (name, sorted(info[0]), sorted(info[1]), sorted(info[2]))
            )
            | "WriteContacts" >> beam.io.WriteToText(args.output + ".contacts")
        )
        by_kind = {"emails": email, "phones": phone} | "group_dict" >> beam.CoGroupByKey()
        luddites = by_kind | "Luddites" >> beam.Filter(lambda kv: not kv[1]["emails"] and kv[1]["phones"])
        writers = by_kind | "Writers" >> beam.Filter(lambda kv: kv[1]["emails"] and not kv[1]["phones"])
        (
            (
                luddites | "CountLuddites" >> beam.combiners.Count.Globally() | "L" >> beam.Map(lambda n: f"luddites: {n}"),
                writers | "CountWriters" >> beam.combiners.Count.Globally() | "W" >> beam.Map(lambda n: f"writers: {n}"),
            )
            | "Stats" >> beam.Flatten()
            | "WriteStats" >> beam.io.WriteToText(args.output + ".stats")
        )
