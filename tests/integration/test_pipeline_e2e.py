"""The whole pipeline, end to end: the simulator's signed Stripe stream over HTTP into the
ingress, two workers, the ClickHouse sink on the embedded engine — every event delivered
twice, out of order, the sink and then a worker SIGKILLed mid-stream and restarted. The
ClickHouse totals must equal, to the cent, the ledger the simulator computed on its own
from what it generated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from refstream import topics
from refstream.settings import KafkaSettings, Secret
from simulator.deliver import DeliveryLimits, deliver
from simulator.plan import DeliveryOptions, delivery_plan
from simulator.scenario import ScenarioConfig, generate
from sinks.rewards import SPEC as REWARDS_SPEC
from streams.ledger.programs import parse_programs_toml
from streams.worker_programs import apply_programs
from tests.support.pipeline import SECRET, Pipeline, free_port
from tests.support.processes import RefstreamProcess, read_topic, wait_until

pytestmark = pytest.mark.e2e


async def report(port: int, name: str) -> list[dict[str, Any]] | None:
    """Rows of a named report from the sink's read-only query API; None while it is down."""
    url = f"http://127.0.0.1:{port}/reports/{name}?limit=10000"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            if response.status != 200:
                return None
            body = await response.json()
    except aiohttp.ClientError:
        return None
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def expected_referrers(expected: dict[str, Any]) -> dict[tuple, tuple[int, int, int]]:
    """(rewards, clawed back, net) per referrer, currency and ledger mode ("test", or
    "test@acct_..." for a Connect account: kept apart everywhere), from the simulator."""
    return {
        (r["referral_code"], r["currency"], r["ledger_mode"]): (
            r["rewards_minor"],
            r["clawed_back_minor"],
            r["net_minor"],
        )
        for r in expected["referrers"]
        if r["rewards_minor"] or r["clawed_back_minor"]
    }


def mode_of(record: dict[str, Any]) -> str:
    mode = "live" if record["livemode"] else "test"
    return mode if not record.get("account") else f"{mode}@{record['account']}"


async def kafka_totals(kafka: KafkaSettings) -> dict[tuple, tuple[int, int]]:
    """(rewards, clawed back net) per referrer, currency and mode, read from the topics:
    the highest revision of each reward, one copy of each clawback id."""
    rewards: dict[str, dict[str, Any]] = {}
    for _, r in await read_topic(kafka.bootstrap, kafka.topic(topics.REWARDS), "reward"):
        if r["reward_id"] not in rewards or r["revision"] > rewards[r["reward_id"]]["revision"]:
            rewards[r["reward_id"]] = r
    clawbacks = {
        c["clawback_id"]: c
        for _, c in await read_topic(kafka.bootstrap, kafka.topic(topics.CLAWBACKS), "clawback")
    }
    totals: dict[tuple, list[int]] = {}
    for r in rewards.values():
        key = (r["referral_code"], r["currency"], mode_of(r))
        totals.setdefault(key, [0, 0])[0] += r["reward_amount_minor"]
    for c in clawbacks.values():
        key = (c["referral_code"], c["currency"], mode_of(c))
        sign = 1 if c["kind"] == "clawback" else -1
        totals.setdefault(key, [0, 0])[1] += sign * c["amount_minor"]
    return {k: (v[0], v[1]) for k, v in totals.items() if v != [0, 0]}


def reward_totals(referrers: dict[tuple, tuple[int, int, int]]) -> dict[tuple[str, str], int]:
    """Rewards per currency and plain mode (metrics label live/test, not the account)."""
    totals: dict[tuple[str, str], int] = {}
    for (_, currency, mode), (rewards, _, _) in referrers.items():
        key = (currency, mode.split("@")[0])
        totals[key] = totals.get(key, 0) + rewards
    return totals


async def worker_samples(ports: list[int], name: str) -> list[Any]:
    """Every sample named `name` on the /metrics of the processes at `ports`."""
    found = []
    async with aiohttp.ClientSession() as session:
        for port in ports:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            for family in text_string_to_metric_families(text):
                found += [sample for sample in family.samples if sample.name == name]
    return found


async def worker_reward_minor(ports: list[int]) -> dict[tuple[str, str], int]:
    """refstream_worker_reward_minor_total summed over the workers, per currency and mode."""
    found: dict[tuple[str, str], int] = {}
    for sample in await worker_samples(ports, "refstream_worker_reward_minor_total"):
        key = (sample.labels["currency"], sample.labels["mode"])
        found[key] = found.get(key, 0) + int(sample.value)
    return found


def by_referrer(rows: list[dict[str, Any]]) -> dict[tuple, tuple[int, int, int]]:
    return {
        (r["referral_code"], r["currency"], r["mode"]): (
            int(r["rewards_minor"]),
            -int(r["clawbacks_minor"]),
            int(r["net_minor"]),
        )
        for r in rows
    }


async def test_simulated_stream_lands_exactly_in_clickhouse(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kafka = kafka_settings
    scenario = generate(ScenarioConfig(customers=40, months=6, seed=5))
    expected = scenario.expected_document()
    want_referrers = expected_referrers(expected)
    want_revenue = {
        (r["currency"], r["ledger_mode"]): (r["referred_minor"], r["organic_minor"])
        for r in expected["revenue"]
    }
    # The scenario must exercise corrections and organic revenue, or the check proves little.
    assert any(clawed for _, clawed, _ in want_referrers.values())
    assert any(organic for _, organic in want_revenue.values())
    await apply_programs(kafka, parse_programs_toml(scenario.program.toml()))

    query_port = free_port()
    pipeline = Pipeline(
        kafka,
        tmp_path,
        {
            # Windows are wall-clock: they must outlast the whole delivery (a slow CI
            # machine spreads it over tens of seconds), or a touch or an invoice payment
            # delivered "late" by the test itself would rightly change the ledger.
            "REFSTREAM_ATTRIBUTION_WINDOW_S": "75",
            "REFSTREAM_ONE_TIME_WINDOW_S": "75",
            "REFSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'clickhouse'}",
            "REFSTREAM_QUERY_API_PORT": str(query_port),
            "REFSTREAM_SINK_BATCH_MAX_ROWS": "300",
            "REFSTREAM_SINK_BATCH_MAX_WAIT_MS": "300",
        },
    )
    sink_metrics_port = free_port()
    sink_env = {**pipeline.env, "REFSTREAM_SINK_METRICS_PORT": str(sink_metrics_port)}
    sink = RefstreamProcess(["sink"], sink_env, tmp_path / "sink.log")
    plan = delivery_plan(
        scenario.events, DeliveryOptions(seed=3, duplicates=1.0, shuffle_window=25)
    )
    url = f"http://127.0.0.1:{pipeline.port}/webhooks/stripe"
    limits = DeliveryLimits(concurrency=16, deadline_s=300)
    got: dict[str, Any] = {}
    try:
        await pipeline.start()
        sink.start()

        # The sink serving before delivery starts: no pause between the halves below.
        async def sink_serving() -> bool:
            return await report(query_port, "referrer_rewards") is not None

        await wait_until(sink_serving, 120, 0.5, "the sink's report API")
        half = len(plan) // 2
        first = await deliver(plan[:half], url=url, secret=Secret(SECRET), limits=limits)
        assert first.ok, first.to_json()

        async def sink_wrote_something() -> bool:
            rows = await report(query_port, "referrer_rewards")
            return bool(rows)

        await wait_until(sink_wrote_something, 120, 1, "the sink's first rows")
        sink.kill()  # mid-stream: batches in flight, offsets not yet committed
        three_quarters = half + (len(plan) - half) // 2
        second = await deliver(
            plan[half:three_quarters], url=url, secret=Secret(SECRET), limits=limits
        )
        assert second.ok, second.to_json()
        # A worker too, with a batch in hand: its outputs may be out and its state not
        # written; the other worker takes its partitions and replays from the last commit.
        pipeline.worker(0).kill()
        rest = await deliver(plan[three_quarters:], url=url, secret=Secret(SECRET), limits=limits)
        assert rest.ok, rest.to_json()
        pipeline.worker(0).start()
        sink.start()

        async def totals_match() -> bool:
            rows = await report(query_port, "referrer_rewards")
            revenue = await report(query_port, "revenue_split")
            if rows is None or revenue is None:
                return False
            got["referrers"] = by_referrer(rows)
            got["revenue"] = {
                (r["currency"], r["mode"]): (int(r["referred_minor"]), int(r["organic_minor"]))
                for r in revenue
            }
            return got["referrers"] == want_referrers and got["revenue"] == want_revenue

        try:
            await wait_until(totals_match, 300, 3, "ClickHouse totals to equal the simulator's")
        except TimeoutError:
            diff = {
                k: (got.get("referrers", {}).get(k), v)
                for k, v in want_referrers.items()
                if got.get("referrers", {}).get(k) != v
            }
            extra = set(got.get("referrers", {})) - set(want_referrers)
            # The difference first and short (CI shows the end of a long message); the
            # process logs stay in tmp_path.
            pytest.fail(
                f"referrers differ (got, want): {diff}; unexpected: {extra}; "
                f"revenue got {got.get('revenue')} want {want_revenue}; logs in {tmp_path}"
            )
        # The same figures on the topics downstream services consume.
        in_kafka = await kafka_totals(kafka)
        assert in_kafka == {k: v[:2] for k, v in want_referrers.items()}
        # And the workers' metrics count rewards in every currency and mode. Not the
        # totals: the SIGKILLed worker's counters started again from 0 (Prometheus reads
        # that as a reset), and a replay after a rebalance counts a record again.
        emitted = await worker_reward_minor(pipeline.metrics_ports)
        for currency_mode in reward_totals(want_referrers):
            assert emitted.get(currency_mode, 0) > 0, currency_mode

        # The restarted sink counts what it wrote since its start, and its group's lag.
        rows = await worker_samples([sink_metrics_port], "refstream_sink_rows_total")
        assert sum(s.value for s in rows if s.labels["table"] == REWARDS_SPEC.table) > 0
        lag = await worker_samples([sink_metrics_port], "refstream_consumer_lag")
        assert {s.labels["topic"] for s in lag} >= {kafka.topic(topics.REWARDS)}
    finally:
        sink.stop()
        pipeline.stop()
