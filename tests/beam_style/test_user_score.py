"""The ported user_score's transforms under TestPipeline and assert_that, as Beam's game tests do."""

from __future__ import annotations

import tidal as beam
from tidal.capability_matrix.beam_programs import load_ported
from tidal.metrics.metric import MetricsFilter
from tidal.testing.test_pipeline import TestPipeline
from tidal.testing.util import assert_that, equal_to

user_score = load_ported("user_score")

SAMPLE_DATA = [
    "user1_team1,team1,18,1447686663000,2015-11-16 15:11:03.921",
    "user1_team1,team1,18,1447690263000,2015-11-16 16:11:03.921",
    "user2_team2,team2,2,1447690263000,2015-11-16 16:11:03.955",
    "user3_team3,team3,8,1447690263000,2015-11-16 16:11:03.955",
    "user4_team3,team3,5,1447690263000,2015-11-16 16:11:03.959",
    "user1_team1,team1,14,1447697463000,2015-11-16 18:11:03.955",
    "broken line",
    "user5_team2,team2,not-a-score,1447697463000,2015-11-16 18:11:03.955",
]


def test_user_score(runner: str) -> None:
    with TestPipeline() as p:
        result = (
            p
            | beam.Create(SAMPLE_DATA)
            | beam.ParDo(user_score.ParseGameEventFn())
            | user_score.ExtractAndSumScore("user")
        )
        assert_that(result, equal_to([("user1_team1", 50), ("user2_team2", 2), ("user3_team3", 8), ("user4_team3", 5)]))


def test_team_score_and_the_parse_error_counter(runner: str) -> None:
    p = TestPipeline()
    totals = (
        p
        | beam.Create(SAMPLE_DATA)
        | beam.ParDo(user_score.ParseGameEventFn())
        | user_score.ExtractAndSumScore("team")
    )
    assert_that(totals, equal_to([("team1", 50), ("team2", 2), ("team3", 13)]))
    result = p.run()
    errors = result.metrics().query(MetricsFilter().with_name("num_parse_errors"))["counters"]
    assert sum(c.committed for c in errors) == 2
