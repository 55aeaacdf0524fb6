"""The simulated stream: reproducible from its seed, realistic, and consistent with the
facts its expected ledger is computed from."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pytest

from refstream.avro_codec import AvroCodec
from simulator.scenario import Scenario, ScenarioConfig, ScenarioError, generate
from simulator.stripe_factory import (
    BASIL,
    OLD_2018,
    OLD_2019,
    PRE_BASIL,
    StripeFactory,
    event_bytes,
)


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


FLOW_COUNTS = (
    "refunds",
    "voided_refunds",
    "disputes",
    "partial_disputes",
    "inquiries",
    "escalated_inquiries",
    "partial_captures",
    "partial_payments",
    "multi_invoice_payments",
    "out_of_band",
    "credit_notes",
    "truncated_lines",
    "metered",
    "upgrades",
    "downgrades",
    "churned",
    "no_payment_intent",
)


def covered_flows(s: Scenario) -> None:
    """Every flow of docs/STRIPE_FLOWS.md shows up in `s`, in the events and the facts."""
    events = s.events
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
        "charge.captured",
        "charge.refunded",
        "charge.updated",
        "refund.created",
        "refund.failed",
        "refund.updated",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
        "credit_note.created",
    ):
        assert types[needed] > 0, needed
    for name in FLOW_COUNTS:
        assert s.expected.counts[name] > 0, name
    assert {e["api_version"] for e in events} == {OLD_2018, OLD_2019, PRE_BASIL, BASIL}
    assert {e["livemode"] for e in events} == {True, False}
    assert {e.get("account") for e in events} > {None}
    assert {e["data"]["object"].get("currency") for e in events} >= {"usd", "eur"}
    reasons = {e["data"]["object"]["billing_reason"] for e in events if e["type"] == "invoice.paid"}
    assert reasons == {"subscription_create", "subscription_cycle", "subscription_update", "manual"}
    invoices = [e["data"]["object"] for e in events if e["type"] == "invoice.paid"]
    assert any("date" in i and "created" not in i for i in invoices)
    assert any("amount_paid" not in i for i in invoices)
    assert any(i.get("amount_paid_off_stripe") for i in invoices)
    assert any(i.get("paid_out_of_band") for i in invoices)
    assert any(i["lines"]["has_more"] for i in invoices)
    flows = {f for p in s.payments for f in p.flows}
    assert flows >= {"metered", "prorations_on_renewal", "partial_payment", "partial_capture",
                     "multi_invoice_payment", "no_payment_intent", "connect"}  # fmt: skip
    disputes = [d for ch in s.charges for d in ch.disputes]
    assert {d.outcome for d in disputes} == {"won", "lost", "inquiry"}
    assert any(d.escalated for d in disputes)
    charges = {ch.charge_id: ch for ch in s.charges}
    assert any(
        d.amount_minor < charges[ch.charge_id].captured_minor
        for ch in s.charges
        for d in ch.disputes
        if d.outcome == "lost"
    )
    no_pi = [e for e in events if e["type"] == "charge.dispute.created"
             and e["data"]["object"]["payment_intent"] is None]  # fmt: skip
    assert no_pi and all(ch.payment_intent_id is None for ch in s.charges
                         if ch.disputes and ch.disputes[0].dispute_id in
                         {e["data"]["object"]["id"] for e in no_pi})  # fmt: skip
    assert any(ch.release_minor and ch.refunded_minor for ch in s.charges)
    assert any(r.void_status == "failed" for ch in s.charges for r in ch.refunds)
    assert any(r.void_status == "canceled" for ch in s.charges for r in ch.refunds)
    assert any(ch.refunded_minor == ch.captured_minor for ch in s.charges)
    assert any(0 < ch.refunded_minor < ch.captured_minor for ch in s.charges)
    customers = s.customers
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
    months = {o.tenure_month for o in s.expected.outcomes if o.tenure_month}
    assert {1, 2, 3, 5, 6} <= months  # every tier, and past the duration
    assert any(o.reward_minor == 0 and o.payment.referral_code for o in s.expected.outcomes)
    assert len(s.expected.referrer_rows()) > 5


def test_the_stream_covers_every_flow(scenario: Scenario) -> None:
    covered_flows(scenario)


def test_the_end_to_end_scenario_covers_every_flow_too() -> None:
    """tests/integration/test_pipeline_e2e.py runs this config: it must exercise them all."""
    covered_flows(generate(ScenarioConfig(customers=40, months=6, seed=5)))


def test_refund_events_carry_the_cumulative_amount_refunded(scenario: Scenario) -> None:
    refunds_of: dict[str, dict[str, int]] = defaultdict(dict)
    voided: set[str] = set()
    for event in scenario.events:
        obj = event["data"]["object"]
        if event["type"] == "refund.created":
            refunds_of[obj["charge"]][obj["id"]] = obj["amount"]
        elif event["type"] in ("refund.failed", "refund.updated"):
            assert obj["status"] in ("failed", "canceled")
            voided.add(obj["id"])
        elif event["type"] in ("charge.refunded", "charge.updated"):
            # Each snapshot follows its refund events, in Stripe time order.
            counted = {k: v for k, v in refunds_of[obj["id"]].items() if k not in voided}
            assert obj["amount_refunded"] == sum(counted.values())
            if event["type"] == "charge.updated":
                before = event["data"]["previous_attributes"]["amount_refunded"]
                assert before > obj["amount_refunded"]  # back down after a void
    for ch in scenario.charges:
        customer = sum(r.amount_minor for r in ch.refunds if r.counts)
        assert ch.refunded_minor == customer
        assert ch.release_minor == ch.amount_minor - ch.captured_minor or not ch.release_minor


def test_basil_invoice_payments_are_linked_by_invoice_payment_paid_only(
    scenario: Scenario,
) -> None:
    """Webhooks never render invoice.payments; every basil charge of an invoice is linked
    by exactly one invoice_payment.paid per invoice it paid, with its share."""
    links: dict[tuple[str, str], int] = {}
    for event in scenario.events:
        obj = event["data"]["object"]
        if event["type"].startswith("invoice.") and obj.get("object") == "invoice":
            assert "payments" not in obj
        if event["type"] == "invoice_payment.paid":
            assert obj["payment"]["type"] == "payment_intent"
            key = (obj["invoice"], obj["payment"]["payment_intent"])
            assert key not in links
            links[key] = obj["amount_paid"]
    charges = {ch.charge_id: ch for ch in scenario.charges}
    api = {c.customer_key: c.api_version for c in scenario.customers}
    seen = 0
    for p in scenario.payments:
        if p.kind != "invoice" or api[p.customer_key] != BASIL:
            continue
        for charge_id, share in p.shares:
            assert links[(p.payment_id, charges[charge_id].payment_intent_id)] == share
            seen += 1
    assert seen == len(links)


def test_every_event_is_a_valid_ingress_record(scenario: Scenario) -> None:
    codec = AvroCodec.for_schema("stripe_event")
    f = StripeFactory()
    for event in scenario.events[:: max(1, len(scenario.events) // 500)]:
        envelope = f.envelope(event)
        assert codec.decode(codec.encode(envelope)) == envelope
        assert json.loads(envelope["body"]) == event


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
    revenue = sum(p["amount_minor"] for p in payments) + sum(
        c["revenue_minor"] for c in doc["charges"]
    )
    assert sum(r["total_minor"] for r in doc["revenue"]) == revenue
    assert sum(r["total_minor"] for r in doc["revenue"]) == sum(
        c["revenue_minor"] for c in doc["customers"]
    )
    assert sum(r["referred_minor"] for r in doc["revenue"]) == sum(
        r["referred_revenue_minor"] for r in doc["referrers"]
    )
    for row in doc["referrers"]:
        assert 0 <= row["clawed_back_minor"] <= row["rewards_minor"]
        assert row["net_minor"] == row["rewards_minor"] - row["clawed_back_minor"]
    assert doc["scenario"]["seed"] == 5
    # Shares add up to what each invoice earns; no charge pays more than it captured.
    charges = {c["charge_id"]: c for c in doc["charges"]}
    paid_by: dict[str, int] = defaultdict(int)
    for p in payments:
        assert sum(a for _, a in p["shares"]) == p["amount_minor"]
        for charge_id, share in p["shares"]:
            paid_by[charge_id] += share
    for charge_id, total in paid_by.items():
        assert total == charges[charge_id]["captured_minor"]


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
