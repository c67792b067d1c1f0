"""The ported hourly_team_score's composite transform, checked per window (Beam's test style)."""

from __future__ import annotations

import tidal as beam
from tidal.capability_matrix.beam_programs import load_ported
from tidal.testing.test_pipeline import TestPipeline
from tidal.testing.util import assert_that, equal_to

hourly_team_score = load_ported("hourly_team_score")

# 2015-11-16 15:11 UTC is 1447686660 s.
SAMPLE_DATA = [
    "user1_team1,team1,18,1447686663000,x",  # 15:11:03 -> window [15:00, 16:00)
    "user1_team1,team1,18,1447690263000,x",  # 16:11:03 -> [16:00, 17:00)
    "user2_team2,team2,2,1447690263000,x",
    "user3_team3,team3,8,1447690263000,x",
    "user4_team3,team3,5,1447690263000,x",
    "user1_team1,team1,14,1447697463000,x",  # 18:11:03: after the stop time
    "user1_team1,team1,3,1447682000000,x",   # 13:53:20: before the start time
]


def test_hourly_team_score(runner: str) -> None:
    with TestPipeline() as p:
        result = (
            p
            | beam.Create(SAMPLE_DATA)
            | hourly_team_score.HourlyTeamScore(start_min="2015-11-16-15-00", stop_min="2015-11-16-17-00", window_duration=60)
            | beam.ParDo(hourly_team_score.TeamScoresDict())
        )
        assert_that(result, equal_to([
            "team1,18,2015-11-16 15:00:00",
            "team1,18,2015-11-16 16:00:00",
            "team2,2,2015-11-16 16:00:00",
            "team3,13,2015-11-16 16:00:00",
        ]))
