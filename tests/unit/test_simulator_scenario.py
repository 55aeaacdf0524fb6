"""The simulated stream: reproducible from its seed, realistic, and consistent with the
facts its expected ledger is computed from."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pytest

from refstream.avro_codec import AvroCodec
from simulator.scenario import Scenario, ScenarioConfig, ScenarioError, generate
from simulator.stripe_factory import BASIL, PRE_BASIL, StripeFactory, event_bytes


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioConfig(customers=300, months=12, seed=5))


def bodies(s: Scenario) -> list[bytes]:
    return [event_bytes(e) for e in s.events]


def test_the_same_seed_gives_the_same_stream_and_ledger() -> None:
    first = generate(ScenarioConfig(customers=80, months=6, seed=5))
    again = generate(ScenarioConfig(customers=80, months=6, seed=5))
    assert bodies(again) == bodies(first)
    assert again.expected_document() == first.expected_document()
    other = generate(ScenarioConfig(customers=80, months=6, seed=6))
    assert {e["id"] for e in other.events}.isdisjoint({e["id"] for e in first.events})
    assert other.expected_document()["referrers"] != first.expected_document()["referrers"]


def test_events_are_in_stripe_time_order_with_unique_ids(scenario: Scenario) -> None:
    created = [e["created"] for e in scenario.events]
    assert created == sorted(created)
    ids = [e["id"] for e in scenario.events]
    assert len(set(ids)) == len(ids)


def test_the_stream_covers_every_story_the_issue_names(scenario: Scenario) -> None:
    events = scenario.events
    types = Counter(e["type"] for e in events)
    for needed in (
        "customer.created",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "checkout.session.completed",
        "invoice.created",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "charge.succeeded",
        "charge.refunded",
        "refund.created",
        "charge.dispute.created",
        "charge.dispute.closed",
    ):
        assert types[needed] > 0, needed
    assert {e["api_version"] for e in events} == {PRE_BASIL, BASIL}
    assert {e["livemode"] for e in events} == {True, False}
    assert {e["data"]["object"].get("currency") for e in events} >= {"usd", "eur"}
    reasons = {e["data"]["object"]["billing_reason"] for e in events if e["type"] == "invoice.paid"}
    assert reasons == {"subscription_create", "subscription_cycle", "subscription_update"}
    customers = scenario.customers
    assert {c.kind for c in customers} == {"subscriber", "guest"}
    assert any(c.referral_code is None for c in customers)
    assert {c.code_on for c in customers} == {
        "customer",
        "subscription",
        "checkout_session",
        "invoice_only",
        "charge",
        "none",
    }
    guests = [e for e in events if e["type"] == "checkout.session.completed"]
    assert any(e["data"]["object"]["customer"] is None for e in guests)
    outcomes = {p.dispute.outcome for p in scenario.payments if p.dispute}
    assert outcomes == {"won", "lost"}
    refunded = [p for p in scenario.payments if p.refunds]
    assert any(p.refunded_minor == p.amount_minor for p in refunded)
    assert any(0 < p.refunded_minor < p.amount_minor for p in refunded)
    assert any(len(p.refunds) > 1 for p in refunded)
    counts = scenario.expected.counts
    assert counts["upgrades"] > 0 and counts["downgrades"] > 0
    assert len(scenario.expected.referrer_rows()) > 10


def test_refund_events_carry_the_cumulative_amount_refunded(scenario: Scenario) -> None:
    refunds_of: dict[str, int] = defaultdict(int)
    for event in scenario.events:
        obj = event["data"]["object"]
        if event["type"] == "refund.created":
            refunds_of[obj["charge"]] += obj["amount"]
        elif event["type"] == "charge.refunded":
            # Each charge.refunded follows its refund.created, in Stripe time order.
            assert obj["amount_refunded"] == refunds_of[obj["id"]]
            assert obj["refunded"] == (obj["amount_refunded"] == obj["amount"])
    facts = {p.charge_id: p.refunded_minor for p in scenario.payments if p.refunds}
    assert facts == dict(refunds_of)


def test_every_event_is_a_valid_ingress_record(scenario: Scenario) -> None:
    codec = AvroCodec.for_schema("stripe_event")
    f = StripeFactory()
    for event in scenario.events[:: max(1, len(scenario.events) // 500)]:
        envelope = f.envelope(event)
        assert codec.decode(codec.encode(envelope)) == envelope
        assert json.loads(envelope["body"]) == event


def test_basil_invoice_charges_are_named_by_payments_or_an_invoice_payment(
    scenario: Scenario,
) -> None:
    """Else the revenue view counts the charge next to its invoice (docs/ANALYTICS.md)."""
    named: set[str] = set()
    for event in scenario.events:
        obj = event["data"]["object"]
        if event["type"] == "invoice.paid" and event["api_version"] == BASIL:
            for item in (obj.get("payments") or {}).get("data", []):
                named.update(filter(None, item["payment"].values()))
        if event["type"] == "invoice_payment.paid":
            named.update(filter(None, obj["payment"].values()))
    charges = {
        e["data"]["object"]["id"]: e["data"]["object"]
        for e in scenario.events
        if e["type"] == "charge.succeeded"
    }
    for p in scenario.payments:
        if p.kind == "invoice":
            charge = charges[p.charge_id]
            if "invoice" not in charge:  # basil
                assert {charge["id"], charge["payment_intent"]} & named, p.payment_id
                if p.refunds or p.dispute:
                    assert charge["id"] in named  # the reward must name its charge


def test_the_code_sits_under_the_configured_metadata_key() -> None:
    s = generate(ScenarioConfig(customers=60, months=3, seed=9, code_key="ref_code"))
    text = b"".join(bodies(s))
    assert b"cello_ucc" not in text
    assert b'"ref_code": "REF' in text


def test_expected_ledger_sums_match_its_payments(scenario: Scenario) -> None:
    doc: dict[str, Any] = scenario.expected_document()
    payments = doc["payments"]
    assert sum(r["rewards_minor"] for r in doc["referrers"]) == sum(
        p["reward_minor"] for p in payments
    )
    assert sum(r["total_minor"] for r in doc["revenue"]) == sum(
        p["revenue_minor"] for p in payments
    )
    assert sum(r["referred_minor"] for r in doc["revenue"]) == sum(
        r["referred_revenue_minor"] for r in doc["referrers"]
    )
    for row in doc["referrers"]:
        assert 0 <= row["clawed_back_minor"] <= row["rewards_minor"]
        assert row["net_minor"] == row["rewards_minor"] - row["clawed_back_minor"]
    assert doc["scenario"]["seed"] == 5


@pytest.mark.parametrize(
    "config",
    [
        ScenarioConfig(customers=0),
        ScenarioConfig(months=0),
        ScenarioConfig(months=37),
        ScenarioConfig(currencies=("jpy",)),
        ScenarioConfig(refund_rate=1.5),
        ScenarioConfig(referrers=0),
    ],
)
def test_out_of_range_settings_are_refused(config: ScenarioConfig) -> None:
    with pytest.raises(ScenarioError):
        generate(config)
