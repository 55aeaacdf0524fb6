"""The pure arithmetic of bench/pipeline_bench.py: no I/O, no clock.

How a reward's visibility is timed without a clock in ClickHouse: every unit of load (one
new referred customer and its paid first invoice) earns the same reward, and the units
offered within one time bucket (e.g. 100 ms) share one referral code. A poll of the sink's
`referrer_rewards` report then says how many of each bucket's rewards are visible
(rewards_minor / the reward). Within a bucket, rewards are matched to acknowledgements in
order (first 2xx with the first reward seen): any other matching moves no latency by more
than the bucket's spread of 2xx times, so a percentile is off by at most that, plus the
poll interval (a reward counts as visible at the end of the first poll that shows it).

    visible = Visibility()
    anomalies = visible.observe({"code": 3}, at=12.5)     # after each poll
    latencies, missing = visible.latencies({"code": [10.1, 10.2, 10.4]})
    percentile(latencies, 0.99)
    lag_grows([(t, lag), ...], offered_per_s=1000)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# A consumer group falls behind when, over the second half of the load, its lag grows
# faster than LAG_GROWTH_SHARE of the offered event rate AND by more than LAG_FLOOR_S
# seconds of offered events (at least LAG_FLOOR_RECORDS): committed offsets trail by up to
# a commit interval or a batch's records (the worker commits after each batch, the sink after each
# write), so a short window of that jitter alone is no growth.
LAG_GROWTH_SHARE = 0.05
LAG_FLOOR_S = 3.0
LAG_FLOOR_RECORDS = 100


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def match_latencies(acked_at: Sequence[float], seen_at: Sequence[float]) -> list[float]:
    """Latencies of one bucket: the k-th 2xx matched with the k-th reward seen. A reward
    can show before the 2xx of its unit's last webhook (it needs only the earlier ones):
    such a latency counts as 0. Rewards beyond the 2xx count are ignored (see anomalies)."""
    acks, seen = sorted(acked_at), sorted(seen_at)
    return [max(0.0, s - a) for a, s in zip(acks, seen, strict=False)]


@dataclass
class Visibility:
    """When each additional reward of each code was first seen by a poll."""

    seen_at: dict[str, list[float]] = field(default_factory=dict)

    def observe(self, counts: Mapping[str, int], at: float) -> list[str]:
        """Record a poll's visible reward counts per code; returns what cannot happen in
        an exact pipeline (a count that went down)."""
        anomalies = []
        for code, count in counts.items():
            times = self.seen_at.setdefault(code, [])
            if count < len(times):
                anomalies.append(f"{code}: {count} rewards visible after {len(times)}")
            times.extend([at] * (count - len(times)))
        return anomalies

    def latencies(
        self, acked_at: Mapping[str, Sequence[float]]
    ) -> tuple[list[float], int, list[str]]:
        """(latencies of the rewards seen, units whose reward was never seen, anomalies:
        codes with more rewards than units)."""
        out: list[float] = []
        missing = 0
        anomalies = []
        for code, acks in acked_at.items():
            seen = self.seen_at.get(code, [])
            out += match_latencies(acks, seen)
            missing += max(0, len(acks) - len(seen))
            if len(seen) > len(acks):
                anomalies.append(f"{code}: {len(seen)} rewards for {len(acks)} customers")
        return out, missing, anomalies


def counts_from_rows(
    rows: Sequence[Mapping[str, object]], reward_minor: int
) -> tuple[dict[str, int], list[str]]:
    """Rewards per code from `referrer_rewards` rows; anomalies for totals that are not a
    whole number of rewards (a reward counted twice or split would show here)."""
    counts: dict[str, int] = {}
    anomalies = []
    for row in rows:
        code, minor = str(row["referral_code"]), int(str(row["rewards_minor"]))
        whole, rest = divmod(minor, reward_minor)
        if rest:
            anomalies.append(f"{code}: {minor} is not a multiple of {reward_minor}")
        counts[code] = counts.get(code, 0) + whole
    return counts, anomalies


def lag_slope(samples: Sequence[tuple[float, int]]) -> float:
    """Least-squares slope (records per second) of (time, lag) samples; 0 for fewer than 2."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_l = sum(lag for _, lag in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (lag - mean_l) for t, lag in samples) / spread


def lag_grows(samples: Sequence[tuple[float, int]], offered_per_s: float) -> bool:
    """Whether a group's lag grows over the second half of the load (the first half is
    the pipeline warming up): see LAG_GROWTH_SHARE and LAG_FLOOR_S."""
    if len(samples) < 4:
        return False
    start, end = samples[0][0], samples[-1][0]
    late = [s for s in samples if s[0] >= start + (end - start) / 2]
    slope = lag_slope(late)
    grown = slope * (late[-1][0] - late[0][0])
    return slope > LAG_GROWTH_SHARE * offered_per_s and grown > max(
        LAG_FLOOR_S * offered_per_s, LAG_FLOOR_RECORDS
    )


def next_rate(
    passed: Sequence[int], failed: Sequence[int], factor: float, resolution: float
) -> int | None:
    """The next rate of the search for the highest sustained one: `factor` times the best
    pass until a rate fails, then halfway between the best pass and the lowest failure
    until they are within `resolution` (a share of the lowest failure); None when done."""
    best = max(passed, default=0)
    lowest_fail = min((f for f in failed if f > best), default=None)
    if lowest_fail is None:
        return int(best * factor) if best else None
    if lowest_fail - best <= max(1.0, resolution * lowest_fail):
        return None
    return (best + lowest_fail) // 2
