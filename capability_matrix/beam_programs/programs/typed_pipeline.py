"""Type hints and coders: decorated DoFns, annotated functions, a custom coder in the registry."""

import argparse
import typing

import apache_beam as beam
from apache_beam import coders
from apache_beam import typehints
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import TypeOptions


class Player(typing.NamedTuple):
    name: str
    team: str


class PlayerCoder(coders.Coder):
    """Encodes a Player as 'name:team'."""

    def encode(self, player):
        return f"{player.name}:{player.team}".encode("utf-8")

    def decode(self, encoded):
        name, team = encoded.decode("utf-8").split(":")
        return Player(name, team)

    def is_deterministic(self):
        return True


coders.registry.register_coder(Player, PlayerCoder)


@typehints.with_input_types(str)
@typehints.with_output_types(typehints.Tuple[Player, int])
class ParsePlay(beam.DoFn):
    def process(self, line):
        name, team, points = line.split(",")
        yield Player(name, team), int(points)


def team_of(play: typing.Tuple[Player, int]) -> typing.Tuple[str, int]:
    player, points = play
    return player.team, points


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args, rest = parser.parse_known_args(argv)
    options = PipelineOptions(rest)
    assert options.view_as(TypeOptions).pipeline_type_check
    coder = coders.registry.get_coder(Player)
    with beam.Pipeline(options=options) as p:
        plays = p | beam.io.ReadFromText(args.input) | beam.ParDo(ParsePlay())
        (
            plays
            | "PerPlayer" >> beam.CombinePerKey(sum)
            | "Encode" >> beam.MapTuple(lambda player, total: f"{coder.encode(player).decode('utf-8')}={total}")
            | "WritePlayers" >> beam.io.WriteToText(args.output + ".players")
        )
        (
            plays
            | "Team" >> beam.Map(team_of)
            | "PerTeam" >> beam.CombinePerKey(sum).with_input_types(typehints.KV[str, int])
            | "FormatTeams" >> beam.MapTuple(lambda team, total: f"{team}={total}")
            | "WriteTeams" >> beam.io.WriteToText(args.output + ".teams")
        )
