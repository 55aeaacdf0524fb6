"""The worker's ledger end to end, on the real broker, through the real HTTP ingress.

Five customers, both API-version families, every attribution source, an organic customer, a
year of invoices with an upgrade, a tax-bearing invoice stream, a one-time guest purchase
and a program changed mid-year — delivered shuffled and with duplicates to two workers
sharing the partitions, one of which is killed with SIGKILL mid-run and restarted. The
expected rewards are computed here from the generated invoices with the documented rule
(net base, ROUND_HALF_UP once), independently of the worker's code.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from refstream import topics
from refstream.settings import KafkaSettings
from streams.ledger.programs import parse_programs_toml
from streams.worker_programs import apply_programs
from tests.support.factories import (
    BASIL,
    DEFAULT_START,
    PRE_BASIL,
    CustomerStory,
    StripeFactory,
    one_time_story,
    subscription_story,
)
from tests.support.pipeline import Pipeline, half_up, shuffled_with_duplicates
from tests.support.processes import read_topic, wait_until

pytestmark = pytest.mark.e2e

PROGRAM_V1 = '[[program]]\nid = "standard"\nrate = "20%"\nhold_days = 30\n'
PROGRAM_V2 = '[[program]]\nid = "standard"\nrate = "25%"\nhold_days = 30\n'
MID_YEAR = DEFAULT_START + 6 * 30 * 86_400  # invoices created after this are phase 2


def expected_invoice_reward(invoice: dict[str, Any], rate: Decimal) -> int:
    paid, total = invoice["amount_paid"], invoice["total"]
    base = half_up(Decimal(paid) * invoice["total_excluding_tax"] / total) if total else 0
    return half_up(base * rate)


def build_stories() -> dict[str, tuple[CustomerStory, str | None]]:
    pre, basil = StripeFactory(PRE_BASIL, seed=11), StripeFactory(BASIL, seed=12)
    return {
        # code on the customer, pre-basil, upgrade in month 4
        "customer": (
            subscription_story(pre, code="ALICE", code_on="customer", upgrade=(4, 9_900)),
            "ALICE",
        ),
        # code in subscription_data via Checkout, basil, taxed invoices
        "checkout": (
            subscription_story(
                basil, code="BOB", code_on="subscription", via_checkout=True, tax_rate="0.2"
            ),
            "BOB",
        ),
        # only the invoice's subscription snapshot carries the code, basil
        "invoice_only": (subscription_story(basil, code="CAROL", code_on="invoice_only"), "CAROL"),
        # a guest's one-time purchase, code copied to the charge
        "one_time": (one_time_story(basil, code="DAVE", code_on="charge", amount=19_900), "DAVE"),
        # nobody referred this one
        "organic": (subscription_story(pre, code=None, code_on="none", months=3), None),
    }


def expected_rewards(stories: dict[str, tuple[CustomerStory, str | None]]) -> dict[str, tuple]:
    """payment id -> (referral code, reward amount, program version)."""
    expected: dict[str, tuple] = {}
    for story, code in stories.values():
        if code is None:
            continue
        for invoice in story.invoices:
            if invoice["amount_paid"] <= 0:
                continue
            phase2 = invoice["created"] >= MID_YEAR
            rate, version = (Decimal("0.25"), 2) if phase2 else (Decimal("0.20"), 1)
            expected[invoice["id"]] = (code, expected_invoice_reward(invoice, rate), version)
        if not story.invoices:
            for charge in story.charges:
                expected[charge["id"]] = (code, half_up(charge["amount"] * Decimal("0.20")), 1)
    return expected


async def rewards_by_payment(kafka: KafkaSettings) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, record in await read_topic(kafka.bootstrap, kafka.topic(topics.REWARDS), "reward"):
        assert isinstance(record, dict)
        found[record["invoice_id"] or record["charge_id"]].append(record)
    return found


async def test_ledger_is_exact_under_shuffles_duplicates_and_a_killed_worker(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kafka = kafka_settings
    await apply_programs(kafka, parse_programs_toml(PROGRAM_V1))
    pipeline = Pipeline(
        kafka,
        tmp_path,
        {"REFSTREAM_ATTRIBUTION_WINDOW_S": "20", "REFSTREAM_ONE_TIME_WINDOW_S": "10"},
    )
    stories = build_stories()
    expected = expected_rewards(stories)
    rng = random.Random(2026)
    events = [e for story, _ in stories.values() for e in story.events]
    phase1 = [e for e in events if e["created"] < MID_YEAR]
    phase2 = [e for e in events if e["created"] >= MID_YEAR]
    try:
        await pipeline.start()
        # A record that is no Stripe event (a misbehaving producer, not the ingress) must
        # end in the dead-letter topic with its bytes, and the worker must go on.
        garbage = b"\xc3\x01 not an envelope"
        await produce_raw(kafka, topics.STRIPE_EVENTS, b"cus_garbage", garbage)
        # Phase 1: months 1-6 under program version 1.
        await pipeline.post(shuffled_with_duplicates(phase1, rng))
        phase1_ids = {k for k, v in expected.items() if v[2] == 1}

        async def phase1_done() -> bool:
            return phase1_ids <= set(await rewards_by_payment(kafka))

        await wait_until(phase1_done, 180, 2, "phase-1 rewards")

        # Mid-year the program changes; both workers must have read version 2.
        await apply_programs(kafka, parse_programs_toml(PROGRAM_V2))
        workers = [pipeline.worker(0), pipeline.worker(1)]
        await wait_until(
            lambda: all('"version": 2' in w.log_tail(1_000_000) for w in workers),
            60,
            0.5,
            "workers to load program version 2",
        )

        # Phase 2: the rest of the year; one worker is SIGKILLed half-way and restarted.
        deliveries = shuffled_with_duplicates(phase2, rng)
        half = len(deliveries) // 2
        await pipeline.post(deliveries[:half])
        workers[0].kill()
        await pipeline.post(deliveries[half:])
        workers[0].start()

        async def all_decided() -> bool:
            attributions = await read_topic(
                kafka.bootstrap, kafka.topic(topics.ATTRIBUTIONS), "attribution"
            )
            organic = any(r["kind"] == "organic" for _, r in attributions)
            return organic and set(expected) <= set(await rewards_by_payment(kafka))

        await wait_until(all_decided, 240, 2, "every reward and the organic decision")
        # Let every one-time window close, so that a wrongly-classified charge would show.
        await asyncio.sleep(14)
        found = await rewards_by_payment(kafka)
        attributions = await read_topic(
            kafka.bootstrap, kafka.topic(topics.ATTRIBUTIONS), "attribution"
        )
        lifecycle = await read_topic(kafka.bootstrap, kafka.topic(topics.LIFECYCLE), "lifecycle")
        dead = await read_topic(
            kafka.bootstrap, kafka.topic(topics.STRIPE_EVENTS_DLQ), "dead_letter"
        )
    finally:
        pipeline.stop()

    # Exactly the expected payments earned, once each (re-emissions carry the same record).
    assert set(found) == set(expected), (set(found) ^ set(expected), pipeline.logs())
    for payment_id, records in found.items():
        distinct = {r["reward_id"] for r in records}
        assert len(distinct) == 1, f"{payment_id} rewarded under several ids: {distinct}"
        code, amount, version = expected[payment_id]
        for record in records:
            assert record["referral_code"] == code
            assert record["reward_amount_minor"] == amount, (payment_id, record)
            assert record["program_version"] == version
            assert record["currency"] == "usd" and record["livemode"] is False
    # Each customer attributed once, from the source that carried its code.
    attributed = [r for _, r in attributions if r["kind"] == "attribution"]
    sources = {r["customer_key"]: r["source"] for r in attributed}
    story_of = {name: story for name, (story, _) in stories.items()}
    assert sources[story_of["customer"].key] == "customer_metadata"
    assert sources[story_of["invoice_only"].key] in {
        "invoice_subscription_snapshot",
        "invoice_line",
    }
    assert sources[story_of["one_time"].key] == "charge_metadata"
    assert story_of["organic"].key not in sources
    assert any(
        r["kind"] == "organic" and r["customer_key"] == story_of["organic"].key
        for _, r in attributions
    )
    # The upgrade of the referred subscriber is a lifecycle record carrying its referrer.
    upgrades = [
        r
        for _, r in lifecycle
        if r["customer_key"] == story_of["customer"].key and r["change"] == "plan_changed"
    ]
    assert upgrades and {r["referral_code"] for r in upgrades} == {"ALICE"}
    assert {(r["previous_amount_minor"], r["amount_minor"]) for r in upgrades} == {(4_900, 9_900)}
    # The garbage record was dead-lettered once per processing, byte for byte.
    assert dead and {r["value"] for _, r in dead} == {garbage}
    assert {r["stage"] for _, r in dead} == {"worker"}


async def produce_raw(kafka: KafkaSettings, name: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(kafka.topic(name), key=key, value=value)
    finally:
        await producer.stop()
