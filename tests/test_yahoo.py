"""The Yahoo Streaming Benchmark: a deterministic ad stream, its join table, and the query's exact result on every runner."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest

import tidal as td
from tidal.benchmarks import harness
from tidal.benchmarks.collect import Collected, CollectToFolder, read_collected
from tidal.benchmarks.harness import BenchConfig, latencies, run_harness
from tidal.benchmarks.workloads import WORKLOADS, expected_keyed_sums, keyed_sum_workload, yahoo_workload
from tidal.benchmarks.yahoo import AD_TYPES, EVENT_TYPES, AdEvent, YahooConfig, ad_table, campaign_table, expected_counts, generate, query
from tidal.model.window import TimestampedValue

RUNNERS = ["direct", "ray", "microbatch"]
CONFIG = YahooConfig(campaigns=7, ads_per_campaign=3, events_per_second=100.0)
EVENTS = generate(CONFIG, 4000)  # 40 s of event time: four 10 s windows


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    """Each test runs on every runner; Ray tests share the session-wide local Ray."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


# -- the generator and the join table -------------------------------------------------------
def test_the_same_config_gives_the_same_events_and_a_prefix_of_a_longer_run() -> None:
    assert generate(CONFIG, 500) == EVENTS[:500]
    assert generate(attrs.evolve(CONFIG, seed=1), 500) != EVENTS[:500]


def test_events_have_the_benchmark_fields_and_whole_millisecond_times() -> None:
    values = [tv.value for tv in EVENTS]
    assert all(type(v) is AdEvent for v in values)
    assert {v.event_type for v in values} == set(EVENT_TYPES) and {v.ad_type for v in values} == set(AD_TYPES)
    assert [tv.timestamp_us for tv in EVENTS[:3]] == [0, 10_000, 20_000]  # 100 events per second of event time
    assert all(tv.timestamp_us == round(tv.value.event_time * 1_000_000) and tv.timestamp_us % 1000 == 0 for tv in EVENTS)
    assert all(len(v.ip_address.split(".")) == 4 and all(0 <= int(p) < 256 for p in v.ip_address.split(".")) for v in values)
    # Every event type is equally likely: a third of the events are views, within a few percent.
    assert abs(sum(v.event_type == "view" for v in values) / len(values) - 1 / 3) < 0.03


def test_every_campaign_has_its_ads_and_every_event_an_ad_of_the_table() -> None:
    table = ad_table(CONFIG)
    assert sorted(ad for ad, _ in table) == list(range(21))  # 7 campaigns x 3 ads, each id once
    assert Counter(c for _, c in table) == {c: 3 for c in range(7)}
    assert {tv.value.ad_id for tv in EVENTS} <= set(campaign_table(CONFIG))


def test_out_of_order_arrival_shuffles_within_the_bound_and_keeps_every_event() -> None:
    shuffled = generate(attrs.evolve(CONFIG, out_of_orderness=0.5), 1000)
    assert shuffled != generate(CONFIG, 1000) and sorted(shuffled, key=lambda tv: tv.timestamp_us) == generate(CONFIG, 1000)
    latest = 0
    for tv in shuffled:  # never more than the bound behind the latest time seen
        assert tv.timestamp_us > latest - 500_000
        latest = max(latest, tv.timestamp_us)


def test_a_config_without_campaigns_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one campaign and one ad per campaign, not 0 and 10"):
        YahooConfig(campaigns=0)


# -- the query ------------------------------------------------------------------------------
def _by_hand(events: list[TimestampedValue]) -> list[tuple[float, int, int]]:
    """Views per (window, campaign) counted without the module's helpers: the table built from its definition."""
    per = CONFIG.ads_per_campaign
    ads = [j * 1_000_003 % CONFIG.ads for j in range(CONFIG.ads)]
    campaign_of = {ad: j // per for j, ad in enumerate(ads)}
    counts: Counter[tuple[float, int]] = Counter()
    for tv in events:
        if tv.value.event_type == "view":
            counts[(float(tv.timestamp_us // 10_000_000 * 10), campaign_of[tv.value.ad_id])] += 1
    return sorted((w, c, n) for (w, c), n in counts.items())


def test_the_expected_result_is_the_count_of_views_per_window_and_campaign() -> None:
    expected = sorted(expected_counts(EVENTS, CONFIG))
    assert expected == _by_hand(EVENTS)
    assert sorted({w for w, _, _ in expected}) == [0.0, 10.0, 20.0, 30.0]
    assert sum(n for _, _, n in expected) == sum(tv.value.event_type == "view" for tv in EVENTS)


def test_the_query_gives_the_views_per_window_and_campaign_on_every_runner(runner: str, tmp_path: Path) -> None:
    events = generate(attrs.evolve(CONFIG, out_of_orderness=0.2), 4000)
    with td.Pipeline(runner=runner) as p:
        query(p | td.Create(events), CONFIG) | td.ParDo(CollectToFolder(str(tmp_path)))
    out = read_collected(str(tmp_path))
    assert sorted(o.value for o in out) == _by_hand(events)
    # Each result carries its window's last instant as its timestamp.
    assert {o.timestamp_us for o in out} == {9_999_999, 19_999_999, 29_999_999, 39_999_999}


def test_the_query_streams_with_the_same_result(runner: str) -> None:
    workload = yahoo_workload(campaigns=7, ads_per_campaign=3, events_per_second=100.0)
    events = workload.make_input(1500, 0.05)
    outputs, arrivals = harness.run_streaming(workload, runner, events, 20_000.0, 0.05, 120.0)
    assert sorted(o.value for o in outputs) == _by_hand(events)
    assert len(arrivals) == 1500 and [t for t, _ in arrivals] == [tv.timestamp_us for tv in events]


# -- latency per window: from the window's last event ------------------------------------------
def test_a_windows_latency_counts_from_its_last_event_to_each_of_its_results() -> None:
    workload = yahoo_workload(campaigns=2, ads_per_campaign=1)
    ev = lambda t, kind="view": TimestampedValue(AdEvent(1, 1, 0, "mail", kind, t, "1.2.3.4"), t)  # noqa: E731
    inputs = [ev(1.0), ev(9.5, "click"), ev(3.0), ev(12.0)]
    arrivals = [(tv.timestamp_us, wall) for tv, wall in zip(inputs, [100.0, 100.4, 100.6, 101.0])]
    outputs = [Collected((0.0, 0, 2), 9_999_999, 100.9), Collected((0.0, 1, 1), 9_999_999, 101.2), Collected((10.0, 0, 1), 19_999_999, 101.5)]
    # Window [0, 10): its last event (a click, at 9.5 s) arrived second, but the one at 3 s arrived last, at 100.6.
    assert latencies(workload, outputs, arrivals, inputs) == pytest.approx([0.3, 0.6, 0.5])


def test_a_last_event_latency_needs_the_inputs_in_arrival_order() -> None:
    workload = WORKLOADS["yahoo"]
    inputs = workload.make_input(3, 0.0)
    with pytest.raises(ValueError, match="yahoo: a last-event latency needs the inputs"):
        latencies(workload, [], [(0, 1.0)], None)
    with pytest.raises(ValueError, match=r"yahoo: the arrivals are not those of the inputs \(event at 5000 µs, input at 0 µs\)"):
        latencies(workload, [], [(5000, 1.0)], inputs)


# -- the harness checks a workload against its plain-Python result ----------------------------------
TINY = dict(sizes=(300, 600), repeats=1, stream_events=300, stream_rate=20_000.0, quiet=True, use_peers=False, beam=False)


def test_the_harness_runs_yahoo_and_checks_it_against_plain_python(tmp_path: Path) -> None:
    report = run_harness(BenchConfig(workloads=("yahoo", "windowed"), runners=("direct", "microbatch"), out=str(tmp_path), **TINY))  # type: ignore[arg-type]
    eq = report["equality"]["yahoo"]
    assert eq["same"] is True and set(eq["digests"]["batch 600"]) == {"direct", "microbatch", "plain Python"}
    assert "plain Python" not in report["equality"]["windowed"]["digests"]["batch 600"]  # no expected result for it
    yahoo = [r for r in report["results"] if r["workload"] == "yahoo"]
    assert all(r["error"] is None and 0 <= r["latency_p50_ms"] <= r["latency_p99_ms"] for r in yahoo)


def test_a_result_that_differs_from_plain_python_is_reported_even_when_the_runners_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = attrs.evolve(WORKLOADS["yahoo"], expected=lambda values: expected_counts(values, YahooConfig())[1:])
    monkeypatch.setitem(WORKLOADS, "yahoo", wrong)
    report = run_harness(BenchConfig(workloads=("yahoo",), runners=("direct",), out=str(tmp_path), **TINY))  # type: ignore[arg-type]
    assert report["equality"]["yahoo"]["same"] is False
    assert report["equality"]["yahoo"]["differing_runs"] == ["batch 300", "batch 600"]


def test_keyed_sums_by_hand() -> None:
    workload = keyed_sum_workload(3, events_per_second=2.0)
    inputs = workload.make_input(50, 0.0)
    sums: Counter[tuple[float, Any]] = Counter()
    for i, tv in enumerate(inputs):
        assert tv.timestamp_us == i * 500_000  # two events per second of event time
        sums[(float(i // 20 * 10), tv.value[0])] += tv.value[1]
    assert sorted(expected_keyed_sums(inputs)) == sorted((w, k, v) for (w, k), v in sums.items())
    assert {tv.value[0] for tv in inputs} == {0, 1, 2} and {tv.value[1] for tv in inputs} <= set(range(1, 10))
