"""The arithmetic bench/pipeline_bench.py judges the pipeline with: matching rewards seen
to 2xx within a referral-code bucket, lag growth, and the rate search."""

from __future__ import annotations

import random

import pytest

from bench.pipeline_latency import (
    Visibility,
    counts_from_rows,
    lag_grows,
    match_latencies,
    next_rate,
    percentile,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7


def test_matching_is_in_order_and_never_negative() -> None:
    # The third reward shows before the 2xx of its unit's last webhook: 0, not negative.
    assert match_latencies([3.0, 1.0, 2.0], [2.5, 1.5, 2.9]) == [0.5, 0.5, 0.0]
    # A reward not seen yet has no latency (counted as missing by Visibility).
    assert match_latencies([1.0, 2.0], [1.5]) == [0.5]


def test_bucketed_percentiles_are_within_the_bucket_spread_of_the_true_ones() -> None:
    rng = random.Random(4)
    width = 0.1
    acked: dict[str, list[float]] = {}
    true: list[float] = []
    visible = Visibility()
    for bucket in range(200):
        code = f"c{bucket}"
        for _ in range(rng.randint(1, 20)):
            ack = bucket * width + rng.uniform(0, width)
            latency = rng.expovariate(1 / 0.4)
            acked.setdefault(code, []).append(ack)
            visible.seen_at.setdefault(code, []).append(ack + latency)
            true.append(latency)
    estimated, missing, anomalies = visible.latencies(acked)
    assert (missing, anomalies) == (0, [])
    for q in (0.5, 0.95, 0.99):
        assert percentile(estimated, q) == pytest.approx(percentile(true, q), abs=width)


def test_visibility_counts_new_rewards_at_the_poll_that_shows_them() -> None:
    visible = Visibility()
    assert visible.observe({"a": 1}, at=10.0) == []
    assert visible.observe({"a": 3, "b": 1}, at=11.0) == []
    assert visible.seen_at == {"a": [10.0, 11.0, 11.0], "b": [11.0]}
    latencies, missing, anomalies = visible.latencies({"a": [9.0, 9.5, 10.5], "b": [10.0, 10.2]})
    assert sorted(latencies) == [0.5, 1.0, 1.0, 1.5]
    assert (missing, anomalies) == (1, [])


def test_what_an_exact_pipeline_cannot_do_is_reported() -> None:
    visible = Visibility()
    visible.observe({"a": 2}, at=1.0)
    assert visible.observe({"a": 1}, at=2.0) == ["a: 1 rewards visible after 2"]
    _, _, anomalies = visible.latencies({"a": [0.5]})
    assert anomalies == ["a: 2 rewards for 1 customers"]
    counts, odd = counts_from_rows(
        [
            {"referral_code": "a", "rewards_minor": 1960},
            {"referral_code": "b", "rewards_minor": 1000},
        ],
        980,
    )
    assert counts == {"a": 2, "b": 1}
    assert odd == ["b: 1000 is not a multiple of 980"]


def test_lag_that_only_jitters_by_commits_does_not_grow() -> None:
    # Offsets committed every 3 s at 1000 events/s: the lag saws between 0 and 3000.
    samples = [(float(t), (t % 3) * 1000) for t in range(60)]
    assert not lag_grows(samples, 1000)


def test_a_backlog_that_builds_up_grows() -> None:
    # The consumer keeps half of 1000 events/s: 500 more behind every second.
    samples = [(float(t), 500 * t) for t in range(60)]
    assert lag_grows(samples, 1000)
    # Growing by less than 3 s of events over the window is not yet a trend...
    assert not lag_grows([(float(t), 60 * t) for t in range(20)], 1000)
    # ...nor by a few dozen records at a low rate (a batch of the sink's).
    assert not lag_grows([(float(t), 2 * t) for t in range(20)], 15)
    assert lag_grows([(float(t), 20 * t) for t in range(20)], 15)


def test_search_doubles_then_bisects_to_the_resolution() -> None:
    assert next_rate([125], [], 2.0, 0.15) == 250
    assert next_rate([125, 250], [500], 2.0, 0.15) == 375
    assert next_rate([125, 250, 375], [500], 2.0, 0.15) == 437
    assert next_rate([125, 250, 375, 437], [500], 2.0, 0.15) is None  # within 15% of 500
    assert next_rate([], [125], 2.0, 0.15) == 62
