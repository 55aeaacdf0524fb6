"""Real Stripe flows end to end (docs/STRIPE_FLOWS.md): signed webhooks through the real
ingress, the real broker and a worker that is SIGKILLed and restarted mid-stream; every
delivery shuffled and duplicated. The expected amounts are computed here from the rules
with plain integer arithmetic, independently of the code under test.

Flows, one customer each (20% of the net amount, ROUND_HALF_UP):
- ALICE (basil, invoices linked to charges only by invoice_payment.paid): a partial
  refund, a refund that fails after it was counted, a partial dispute lost, an inquiry
  that closes, an inquiry that escalates to a chargeback and is lost;
- BOB (basil): one invoice paid by two payment intents; one of them refunded in full;
- CAROL (pre-basil guest): a partially captured one-time charge (the released remainder
  is not a refund), then a real refund measured against the captured amount;
- DAVE (basil): an invoice partly paid out of band (earns on the Stripe part only) and one
  paid wholly out of band (earns nothing);
- ERIN (basil, a Connect account's customer, same code as ALICE): refunded in full; her
  records carry the account and never touch the platform's;
- FRANK (pre-basil): an invoice paid by a charge made without a payment intent, disputed
  and lost (the dispute names only the charge).
"""

from __future__ import annotations

import copy
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from refstream import topics
from refstream.settings import KafkaSettings
from streams.ledger.programs import parse_programs_toml
from streams.worker_programs import apply_programs
from tests.support.factories import (
    BASIL,
    PRE_BASIL,
    Line,
    StripeFactory,
    one_time_story,
    subscription_story,
)
from tests.support.pipeline import Pipeline, shuffled_with_duplicates
from tests.support.processes import read_topic, wait_until

pytestmark = pytest.mark.e2e

PROGRAM = '[[program]]\nid = "standard"\nrate = "20%"\nhold_days = 30\n'
DAY = 86_400
T0 = 1_746_057_600  # 2025-05-01


def pct20(amount: int) -> int:
    return (amount * 20 + 50) // 100  # ROUND_HALF_UP of amount x 0.20, integers only


def share(reward: int, part: int, whole: int) -> int:
    return (2 * reward * part + whole) // (2 * whole)  # ROUND_HALF_UP(reward x part / whole)


async def records(kafka: KafkaSettings, name: str) -> list[dict[str, Any]]:
    found = await read_topic(kafka.bootstrap, kafka.topic(name), topics.TOPIC_SCHEMAS[name])
    return [record for _, record in found]


class Flows:
    """Builds every customer's events and the expected net clawback per payment."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.rewards: dict[str, int] = {}  # payment id (invoice or charge) -> reward
        self.clawed: dict[str, int] = {}  # payment id -> net clawed back
        self.accounts: dict[str, str | None] = {}  # payment id -> Connect account
        self.later: list[dict[str, Any]] = []  # delivered once the rest has settled
        self.clawed_before_later: dict[str, int] = {}

    def alice(self) -> None:
        f = StripeFactory(BASIL, seed=101)
        story = subscription_story(f, code="ALICE", months=6, invoice_payment_events=True)
        assert not any("payments" in inv for inv in story.invoices)  # as in basil webhooks
        self.events += story.events
        inv, ch = story.invoices, story.charges
        late = story.events[-1]["created"] + DAY
        for m in range(6):
            self.rewards[inv[m]["id"]] = pct20(inv[m]["amount_paid"])
            self.clawed[inv[m]["id"]] = 0
        # m1: a partial refund of 1,000.
        re1 = f.refund(ch[1], amount=1_000, created=late)
        self.events += [
            f.event("refund.created", re1, created=late),
            f.event("charge.refunded", f.refunded_charge(ch[1], [re1]), created=late),
        ]
        self.clawed[inv[1]["id"]] = share(self.rewards[inv[1]["id"]], 1_000, inv[1]["amount_paid"])
        # m2: a full refund, counted, then it fails: the clawback is given back.
        re2 = f.refund(ch[2], amount=ch[2]["amount"], created=late, status="pending")
        failed = {**re2, "status": "failed", "failure_reason": "expired_or_canceled_card"}
        before = f.refunded_charge(ch[2], [re2])
        after = {**copy.deepcopy(ch[2]), "amount_refunded": 0, "refunded": False}
        self.events += [
            f.event("refund.created", re2, created=late),
            f.event("charge.refunded", before, created=late),
        ]
        self.clawed_before_later[inv[2]["id"]] = self.rewards[inv[2]["id"]]
        self.later += [
            f.event("refund.failed", failed, created=late + 600),
            f.event(
                "charge.updated",
                after,
                created=late + 600,
                previous_attributes={"amount_refunded": ch[2]["amount"], "refunded": True},
            ),
        ]
        # m3: a partial dispute (a quarter of the charge), lost.
        part = ch[3]["amount"] // 4
        dp3 = f.dispute(ch[3], created=late, amount=part)
        self.events += [
            f.event("charge.dispute.created", dp3, created=late),
            f.event("charge.dispute.closed", {**dp3, "status": "lost"}, created=late + DAY),
        ]
        self.clawed[inv[3]["id"]] = share(self.rewards[inv[3]["id"]], part, inv[3]["amount_paid"])
        # m4: an inquiry that closes: no money moved, nothing clawed.
        dp4 = f.dispute(ch[4], created=late, status="warning_needs_response")
        self.events += [
            f.event("charge.dispute.created", dp4, created=late),
            f.event(
                "charge.dispute.updated",
                {**dp4, "status": "warning_under_review"},
                created=late + 60,
            ),
            f.event(
                "charge.dispute.closed", {**dp4, "status": "warning_closed"}, created=late + DAY
            ),
        ]
        # m5: an inquiry that escalates to a chargeback, then lost: the whole reward.
        dp5 = f.dispute(ch[5], created=late, status="warning_needs_response")
        self.events += [
            f.event("charge.dispute.created", dp5, created=late),
            f.event(
                "charge.dispute.updated", {**dp5, "status": "needs_response"}, created=late + 60
            ),
            f.event(
                "charge.dispute.funds_withdrawn",
                {**dp5, "status": "needs_response"},
                created=late + 61,
            ),
            f.event("charge.dispute.closed", {**dp5, "status": "lost"}, created=late + DAY),
        ]
        self.clawed[inv[5]["id"]] = self.rewards[inv[5]["id"]]

    def bob(self) -> None:
        f = StripeFactory(BASIL, seed=102)
        cus = f.customer(created=T0, metadata={"cello_ucc": "BOB"})
        inv = f.invoice(
            cus["id"],
            lines=[Line(4_900, T0, T0 + 30 * DAY)],
            created=T0,
            paid_at=T0 + 3_600,
            billing_reason="subscription_create",
            subscription=f.new_id("sub"),
        )
        pays = []
        for amount, at in ((2_000, T0 + 60), (2_900, T0 + 3_600)):
            pi = f.new_id("pi")
            ch = f.charge(amount=amount, created=at, customer=cus["id"], payment_intent=pi)
            ip = f.invoice_payment(inv, payment_intent=pi, created=at + 1)
            ip["amount_paid"], ip["amount_requested"] = amount, amount
            ip["is_default"] = amount == 2_000
            pays.append(ch)
            self.events += [
                f.event("charge.succeeded", ch, created=at),
                f.event("invoice_payment.paid", ip, created=at + 1),
            ]
        self.events += [
            f.event("customer.created", cus, created=T0),
            f.event("invoice.paid", inv, created=T0 + 3_601),
        ]
        refund = f.refund(pays[1], amount=2_900, created=T0 + 10 * DAY)
        self.events += [
            f.event("refund.created", refund, created=T0 + 10 * DAY),
            f.event("charge.refunded", f.refunded_charge(pays[1], [refund]), created=T0 + 10 * DAY),
        ]
        reward = pct20(4_900)
        self.rewards[inv["id"]] = reward
        self.clawed[inv["id"]] = share(reward, 2_900, 4_900)  # only that payment's share

    def carol(self) -> None:
        f = StripeFactory(PRE_BASIL, seed=103)
        story = one_time_story(f, created=T0, code="CAROL", code_on="charge")
        (ch,) = story.charges
        ch_events = [e for e in story.events if e["data"]["object"].get("id") == ch["id"]]
        # Authorised 1.5x, captured what was charged: the remainder is released.
        captured = ch["amount"]
        authorised = captured + captured // 2
        for event in ch_events:
            obj = event["data"]["object"]
            obj.update(
                amount=authorised, amount_captured=captured, amount_refunded=authorised - captured
            )
        self.events += story.events
        release = f.refund(ch, amount=authorised - captured, created=T0 + 12, reason=None)
        real = f.refund(ch, amount=captured // 3, created=T0 + 5 * DAY)
        snapshot = {**copy.deepcopy(ch_events[0]["data"]["object"])}
        snapshot.update(amount_refunded=release["amount"] + real["amount"])
        self.events += [
            f.event("refund.created", release, created=T0 + 12),
            f.event("refund.created", real, created=T0 + 5 * DAY),
            f.event("charge.refunded", snapshot, created=T0 + 5 * DAY),
        ]
        reward = pct20(captured)
        self.rewards[ch["id"]] = reward
        self.clawed[ch["id"]] = share(reward, real["amount"], captured)

    def dave(self) -> None:
        f = StripeFactory(BASIL, seed=104)
        cus = f.customer(created=T0, metadata={"cello_ucc": "DAVE"})
        sub = f.new_id("sub")
        for month, off_stripe, reason in (
            (0, 1_900, "subscription_create"),
            (1, 4_900, "subscription_cycle"),
        ):
            start = T0 + month * 31 * DAY
            inv = f.invoice(
                cus["id"],
                lines=[Line(4_900, start, start + 31 * DAY)],
                created=start,
                paid_at=start + 60,
                billing_reason=reason,
                subscription=sub,
            )
            inv["amount_paid_off_stripe"] = off_stripe
            self.events.append(f.event("invoice.paid", inv, created=start + 61))
            if off_stripe < 4_900:
                self.rewards[inv["id"]] = pct20(4_900 - off_stripe)
                self.clawed[inv["id"]] = 0
        self.events.append(f.event("customer.created", cus, created=T0))

    def erin(self) -> None:
        f = StripeFactory(BASIL, seed=105)
        story = subscription_story(f, code="ALICE", months=1, invoice_payment_events=True)
        (inv,), (ch,) = story.invoices, story.charges
        refund = f.refund(ch, amount=ch["amount"], created=T0 + 40 * DAY)
        story.events += [
            f.event("refund.created", refund, created=T0 + 40 * DAY),
            f.event("charge.refunded", f.refunded_charge(ch, [refund]), created=T0 + 40 * DAY),
        ]
        for event in story.events:
            event["account"] = "acct_1ErinsPlatformSeller"
        self.events += story.events
        self.rewards[inv["id"]] = self.clawed[inv["id"]] = pct20(inv["amount_paid"])
        self.accounts[inv["id"]] = "acct_1ErinsPlatformSeller"

    def frank(self) -> None:
        f = StripeFactory(PRE_BASIL, seed=106)
        cus = f.customer(created=T0, metadata={"cello_ucc": "FRANK"})
        inv_id, ch_id = f.new_id("in"), f.new_id("ch")
        ch = f.charge(
            amount=4_900, created=T0 + 50, customer=cus["id"], invoice=inv_id, charge_id=ch_id
        )
        inv = f.invoice(
            cus["id"],
            lines=[Line(4_900, T0, T0 + 30 * DAY)],
            created=T0,
            paid_at=T0 + 60,
            billing_reason="subscription_create",
            subscription=f.new_id("sub"),
            charge=ch_id,
            invoice_id=inv_id,
        )
        dispute = f.dispute(ch, created=T0 + 20 * DAY)
        assert dispute["payment_intent"] is None and ch["payment_intent"] is None
        self.events += [
            f.event("customer.created", cus, created=T0),
            f.event("charge.succeeded", ch, created=T0 + 50),
            f.event("invoice.paid", inv, created=T0 + 61),
            f.event("charge.dispute.created", dispute, created=T0 + 20 * DAY),
            f.event("charge.dispute.closed", {**dispute, "status": "lost"}, created=T0 + 30 * DAY),
        ]
        self.rewards[inv_id] = self.clawed[inv_id] = pct20(4_900)


def build() -> Flows:
    flows = Flows()
    for make in (flows.alice, flows.bob, flows.carol, flows.dave, flows.erin, flows.frank):
        make()
    return flows


async def test_real_stripe_flows_claw_back_exactly(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kafka = kafka_settings
    flows = build()
    await apply_programs(kafka, parse_programs_toml(PROGRAM))
    pipeline = Pipeline(kafka, tmp_path, {"REFSTREAM_ONE_TIME_WINDOW_S": "5"})
    deliveries = shuffled_with_duplicates(flows.events, random.Random(8))

    def payment_of(record: dict[str, Any]) -> str:
        return record["invoice_id"] or record["charge_id"]

    async def settled(expected: dict[str, int]) -> bool:
        rewards = {payment_of(r) for r in await records(kafka, topics.REWARDS)}
        if rewards != set(flows.rewards):
            return False
        net = await net_clawed()
        return all(net.get(p, 0) == amount for p, amount in expected.items())

    reward_payment: dict[str, str] = {}

    async def net_clawed() -> dict[str, int]:
        for r in await records(kafka, topics.REWARDS):
            reward_payment[r["reward_id"]] = payment_of(r)
        by_id = {c["clawback_id"]: c for c in await records(kafka, topics.CLAWBACKS)}
        net: dict[str, int] = defaultdict(int)
        for c in by_id.values():
            sign = 1 if c["kind"] == "clawback" else -1
            net[reward_payment.get(c["reward_id"], c["reward_id"])] += sign * c["amount_minor"]
        return dict(net)

    try:
        await pipeline.start()
        await pipeline.post(deliveries[: len(deliveries) // 2])
        pipeline.worker(0).kill()
        await pipeline.post(deliveries[len(deliveries) // 2 :])
        pipeline.worker(0).start()
        phase1 = {**flows.clawed, **flows.clawed_before_later}
        try:
            await wait_until(lambda: settled(phase1), 240, 2, "every reward and correction")
            await pipeline.post(shuffled_with_duplicates(flows.later, random.Random(9)))
            await wait_until(lambda: settled(flows.clawed), 120, 2, "the failed refund")
        except Exception:
            print(pipeline.logs())
            raise
        all_rewards = await records(kafka, topics.REWARDS)
        clawbacks = await records(kafka, topics.CLAWBACKS)
        net = await net_clawed()
    finally:
        pipeline.stop()

    latest: dict[str, dict[str, Any]] = {}
    for r in all_rewards:
        if r["reward_id"] not in latest or r["revision"] > latest[r["reward_id"]]["revision"]:
            latest[r["reward_id"]] = r
    got = {payment_of(r): r["reward_amount_minor"] for r in latest.values()}
    assert got == flows.rewards
    assert {p: net.get(p, 0) for p in flows.clawed} == flows.clawed
    # Basil rewards name their payment once invoice_payment.paid linked it (a later revision).
    alice = [r for r in latest.values() if r["referral_code"] == "ALICE" and r["account"] is None]
    assert all(r["charge_id"] and r["payment_intent_id"] for r in alice)
    assert any(r["revision"] > 0 for r in all_rewards)
    # Connect: ERIN's records carry her account and ids of their own.
    for r in latest.values():
        assert r["account"] == flows.accounts.get(payment_of(r))
        assert ("@acct_" in r["reward_id"]) == (r["account"] is not None)
    erin = {r["reward_id"] for r in latest.values() if r["account"]}
    assert erin and all(c["account"] for c in clawbacks if c["reward_id"] in erin)
    # The failed refund was given back with a new record, never an edited one.
    reasons = {(c["kind"], c["reason"]) for c in clawbacks}
    assert ("reinstatement", "refund") in reasons
