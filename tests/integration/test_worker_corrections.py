"""Corrections end to end: refunds, disputes, holds and payouts through the real ingress,
real broker and two workers, one of them SIGKILLed and restarted; deliveries shuffled and
duplicated. Expected amounts are computed here with the documented rule (proportional to
the cumulative refunded share, ROUND_HALF_UP once per line), independently of the code."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from refstream import topics
from refstream.avro_codec import AvroCodec
from refstream.settings import KafkaSettings
from streams.ledger.programs import parse_programs_toml
from streams.worker_programs import apply_programs
from tests.support.factories import PRE_BASIL, StripeFactory, one_time_story, subscription_story
from tests.support.pipeline import Pipeline, half_up, shuffled_with_duplicates
from tests.support.processes import read_topic, wait_until

pytestmark = pytest.mark.e2e

PROGRAM = '[[program]]\nid = "standard"\nrate = "20%"\nhold_days = 30\n'
RATE = Decimal("0.20")
DAY = 86_400


def reward_of(amount_paid: int) -> int:
    return half_up(amount_paid * RATE)


def refund_share(reward: int, refunded: int, paid: int) -> int:
    return half_up(Decimal(reward) * refunded / paid)


async def records(kafka: KafkaSettings, name: str) -> list[dict[str, Any]]:
    found = await read_topic(kafka.bootstrap, kafka.topic(name), topics.TOPIC_SCHEMAS[name])
    return [record for _, record in found]


async def test_refunds_disputes_holds_and_payouts_are_exact(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kafka = kafka_settings
    f = StripeFactory(PRE_BASIL, seed=41)
    story = subscription_story(f, code="ALICE", code_on="customer", months=9)
    charges = story.charges  # month m's payment is charges[m]
    now = int(time.time())

    def refunded(charge: dict[str, Any], refunds: list[dict], at: int) -> dict[str, Any]:
        return f.event("charge.refunded", f.refunded_charge(charge, refunds), created=at)

    def refund(charge: dict[str, Any], amount: int, at: int) -> dict[str, Any]:
        return f.refund(charge, amount=amount, created=at)

    def dispute(charge: dict[str, Any], status: str, at: int, dispute_id: str) -> list[dict]:
        opened = f.dispute(charge, created=at, dispute_id=dispute_id)
        closed = f.dispute(charge, created=at, status=status, dispute_id=dispute_id)
        return [
            f.event("charge.dispute.created", opened, created=at),
            f.event("charge.dispute.closed", closed, created=at + DAY),
        ]

    later = story.events[-1]["created"] + DAY
    month8 = [e for e in story.events if e["data"]["object"]["id"] in _ids_of_month(story, 8)]
    first, second = refund(charges[2], 1_000, later), refund(charges[2], 1_500, later + 60)
    corrections = [
        refunded(charges[2], [first], later),  # a partial refund ...
        refunded(charges[2], [first, second], later + 60),  # ... and a second of the same charge
        refunded(charges[5], [refund(charges[5], charges[5]["amount"], later)], later),
        # a full refund that arrives before its payment
        refunded(charges[8], [refund(charges[8], charges[8]["amount"], later)], later),
        *dispute(charges[3], "won", later, f.new_id("du")),
        *dispute(charges[4], "lost", later, f.new_id("du")),
    ]
    # A recent one-time purchase whose 30-day hold ends while the test runs.
    guest_f = StripeFactory(PRE_BASIL, seed=42)
    recent = one_time_story(guest_f, created=now - 30 * DAY + 5, code="BOB", code_on="charge")
    phase1 = [e for e in story.events if e not in month8] + corrections + recent.events
    half_of_month1 = refund(charges[1], charges[1]["amount"] // 2, later + 120)
    paid_month1_refund = refunded(charges[1], [half_of_month1], later + 120)

    rewards = {m: reward_of(inv["amount_paid"]) for m, inv in enumerate(story.invoices)}
    paid = {m: inv["amount_paid"] for m, inv in enumerate(story.invoices)}
    expected_clawed = {
        2: ("refund", "cancel", refund_share(rewards[2], 2_500, paid[2])),
        5: ("refund", "cancel", rewards[5]),
        8: ("refund", "cancel", rewards[8]),
        3: ("dispute", "cancel", rewards[3]),  # then reinstated: won
        4: ("dispute", "cancel", rewards[4]),
        1: ("refund", "negative_balance", refund_share(rewards[1], paid[1] // 2, paid[1])),
    }

    await apply_programs(kafka, parse_programs_toml(PROGRAM))
    pipeline = Pipeline(kafka, tmp_path, {"REFSTREAM_ONE_TIME_WINDOW_S": "5"})
    rng = random.Random(7)
    reward_id_of: dict[int, str] = {}
    try:
        await pipeline.start()
        await pipeline.post(shuffled_with_duplicates(phase1, rng))

        async def phase1_settled() -> bool:
            found = {r["invoice_id"]: r["reward_id"] for r in await records(kafka, topics.REWARDS)}
            reward_id_of.update(
                {m: found[inv["id"]] for m, inv in enumerate(story.invoices) if inv["id"] in found}
            )
            clawbacks = await records(kafka, topics.CLAWBACKS)
            done = {r["reward_id"] for r in clawbacks if r["kind"] == "clawback"}
            return len(reward_id_of) == 8 and {reward_id_of[m] for m in (2, 3, 4, 5)} <= done

        await wait_until(phase1_settled, 180, 2, "phase-1 rewards and corrections")

        # Pay month 1's reward out, then refund half of its payment.
        payout = {
            "payout_id": "po_test_1",
            "referral_code": "ALICE",
            "reward_ids": [reward_id_of[1]],
            "amount_minor": rewards[1],
            "currency": "usd",
            "livemode": False,
            "paid_at": now,
        }
        payout_value = AvroCodec.for_schema("payout").encode(payout)
        await _produce(kafka, topics.PAYOUTS, "ALICE", payout_value)

        async def month1_paid() -> bool:
            statuses = await records(kafka, topics.REWARD_STATUS)
            return any(
                s["reward_id"] == reward_id_of[1] and s["status"] == "paid" for s in statuses
            )

        await wait_until(month1_paid, 60, 1, "the payout to be applied")

        # Phase 2: month 9's payment (its refund came first) and the refund after payout,
        # with a worker SIGKILLed in the middle and restarted.
        deliveries = shuffled_with_duplicates([*month8, paid_month1_refund], rng)
        await pipeline.post(deliveries[: len(deliveries) // 2])
        pipeline.worker(0).kill()
        await pipeline.post(deliveries[len(deliveries) // 2 :])
        pipeline.worker(0).start()

        async def all_settled() -> bool:
            found = {r["invoice_id"]: r["reward_id"] for r in await records(kafka, topics.REWARDS)}
            reward_id_of.update(
                {m: found[inv["id"]] for m, inv in enumerate(story.invoices) if inv["id"] in found}
            )
            if len(reward_id_of) < 9:
                return False
            clawed = {r["reward_id"] for r in await records(kafka, topics.CLAWBACKS)}
            statuses = await records(kafka, topics.REWARD_STATUS)
            bob_payable = any(
                s["referral_code"] == "BOB" and s["status"] == "payable" for s in statuses
            )
            return bob_payable and {reward_id_of[m] for m in expected_clawed} <= clawed

        await wait_until(all_settled, 240, 2, "every correction and the hold expiry")
        clawbacks = await records(kafka, topics.CLAWBACKS)
        statuses = await records(kafka, topics.REWARD_STATUS)
        all_rewards = await records(kafka, topics.REWARDS)
    finally:
        pipeline.stop()

    # Clawbacks, per reward: exact totals, reason and mode; reinstatement of the won dispute.
    by_id = {r["clawback_id"]: r for r in clawbacks}  # re-emissions carry the same record
    totals: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for record in by_id.values():
        key = (record["reward_id"], record["kind"], record["reason"], record["mode"])
        totals[key] += record["amount_minor"]
    expected_totals = {
        (reward_id_of[m], "clawback", reason, mode): amount
        for m, (reason, mode, amount) in expected_clawed.items()
    }
    expected_totals[(reward_id_of[3], "reinstatement", "dispute", "cancel")] = rewards[3]
    assert dict(totals) == expected_totals, pipeline.logs()
    # Statuses: month 1 paid, BOB's recent reward went pending -> payable, nothing else paid.
    reward_status = defaultdict(set)
    for status in statuses:
        reward_status[status["reward_id"]].add(status["status"])
    assert "paid" in reward_status[reward_id_of[1]]
    assert [rid for rid, s in reward_status.items() if "paid" in s] == [reward_id_of[1]]
    bob = [r for r in all_rewards if r["referral_code"] == "BOB"]
    assert {r["status"] for r in bob} == {"pending"}
    assert "payable" in reward_status[bob[0]["reward_id"]]
    # The payout paid exactly month 1's reward; its later refund went to the carry-over.
    paid_records = [s for s in statuses if s["status"] == "paid"]
    assert {s["amount_minor"] for s in paid_records} == {rewards[1]}


def _ids_of_month(story: Any, month: int) -> set[str]:
    return {story.invoices[month]["id"], story.charges[month]["id"]}


async def _produce(kafka: KafkaSettings, name: str, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(kafka.topic(name), key=key.encode(), value=value)
    finally:
        await producer.stop()
