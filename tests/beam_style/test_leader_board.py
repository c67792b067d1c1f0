"""The ported leader board's team scores on a TestStream: every pane, derived by hand from the rules."""

from __future__ import annotations

import tidal as beam
from tidal.capability_matrix.beam_programs import load_ported
from tidal.testing.test_pipeline import TestPipeline
from tidal.testing.test_stream import TestStream
from tidal.testing.util import assert_that, equal_to
from tidal.transforms import window

leader_board = load_ported("leader_board")


def event(user: str, team: str, score: int, t: int) -> window.TimestampedValue:
    return window.TimestampedValue({"user": user, "team": team, "score": score}, t)


def test_team_scores_fire_early_on_time_and_late(runner: str) -> None:
    stream = (
        TestStream()
        .advance_watermark_to(0)
        .add_elements([event("a", "red", 3, 10), event("b", "red", 2, 20), event("c", "red", 1, 30)])
        .advance_watermark_to(61)
        .add_elements([event("d", "red", 5, 40)])
        .advance_watermark_to(200)
        .add_elements([event("e", "red", 7, 50)])
        .advance_watermark_to_infinity()
    )
    with TestPipeline() as p:
        panes = (
            p
            | stream
            | leader_board.CalculateTeamScores(team_window_duration=60, allowed_lateness=120)
            | beam.ParDo(leader_board.FormatPane())
        )
        # Window [0, 60): three events reach AfterCount(3): an early pane (6); the watermark
        # passes 60: the on-time pane, accumulating (6); a late event within 120 s of lateness:
        # a late pane (11); the event at watermark 200 is beyond 60 + 120 and dropped.
        assert_that(panes, equal_to([
            "red,6,window=[0.0,60.0),timing=0,index=0,nonspeculative=-1,first=True,last=False,ts=59.999999",
            "red,6,window=[0.0,60.0),timing=1,index=1,nonspeculative=0,first=False,last=False,ts=59.999999",
            "red,11,window=[0.0,60.0),timing=2,index=2,nonspeculative=1,first=False,last=False,ts=59.999999",
        ]))
