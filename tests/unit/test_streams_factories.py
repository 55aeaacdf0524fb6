"""The shared Stripe factories: signed like Stripe, routed like ingress, valid Avro, seeded."""

from __future__ import annotations

import json

import pytest
import stripe

from refstream.avro_codec import AvroCodec
from tests.support.factories import (
    API_VERSIONS,
    BASIL,
    PRE_BASIL,
    Line,
    ScenarioClock,
    StripeFactory,
    event_bytes,
    one_time_story,
    routing_key,
    signature_header,
    subscription_story,
)

T0 = 1_750_000_000


def test_signature_verifies_with_stripe_python() -> None:
    f = StripeFactory(seed=1)
    body = event_bytes(f.event("customer.created", f.customer(created=T0), created=T0))
    header = signature_header(body, "whsec_test_secret", timestamp=T0)
    assert stripe.WebhookSignature.verify_header(
        body.decode(), header, "whsec_test_secret", tolerance=None
    )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), header, "whsec_other", tolerance=None)


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_every_story_event_is_a_valid_stripe_events_record(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=2)
    codec = AvroCodec.for_schema("stripe_event")
    stories = [
        subscription_story(
            f,
            months=3,
            code="A",
            upgrade=(2, 9_900),
            tax_rate="0.1",
            payment_succeeded_too=True,
            invoice_payment_events=True,
        ),
        one_time_story(f, customer_id=None, code="B"),
    ]
    for story in stories:
        created = [e["created"] for e in story.events]
        assert created == sorted(created)
        for envelope in story.envelopes(f):
            assert codec.decode(codec.encode(envelope)) == envelope
            body = json.loads(envelope["body"])
            assert body["api_version"] == api_version and body["livemode"] is False


def test_routing_follows_the_ingress_rule() -> None:
    f = StripeFactory(api_version=BASIL, seed=3)
    cus = f.customer(created=T0, customer_id="cus_R")
    charge = f.charge(amount=5, created=T0, customer="cus_R", payment_intent="pi_R")
    guest = f.charge(amount=5, created=T0, payment_intent="pi_G")
    cases = [
        (f.event("customer.created", cus, created=T0), ("cus_R", "customer")),
        (f.event("charge.succeeded", charge, created=T0), ("cus_R", "customer")),
        (f.event("charge.succeeded", guest, created=T0), ("pi_G", "payment_intent")),
        (
            f.event("charge.dispute.created", f.dispute(charge, created=T0), created=T0),
            ("pi_R", "payment_intent"),
        ),
        (
            f.event("product.created", {"id": "prod_1", "object": "product"}, created=T0),
            ("prod_1", "object"),
        ),
        (
            f.event("balance.available", {"object": "balance"}, created=T0, event_id="evt_B"),
            ("evt_B", "event"),
        ),
    ]
    for event, expected in cases:
        assert routing_key(event) == expected
        assert (f.envelope(event)["partition_key"], f.envelope(event)["key_source"]) == expected


def test_the_same_seed_builds_the_same_story() -> None:
    def build() -> list[dict]:
        f = StripeFactory(api_version=PRE_BASIL, seed=99)
        return subscription_story(f, months=2, code="A").events

    assert build() == build()
    other = subscription_story(StripeFactory(seed=100), months=2, code="A").events
    assert other != build()


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_invoice_money_adds_up(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=4)
    story = subscription_story(f, months=2, tax_rate="0.2", upgrade=(1, 9_900))
    for inv in story.invoices:
        subtotal = sum(line["amount"] for line in inv["lines"]["data"])
        assert inv["subtotal"] == subtotal
        tax = (
            inv["tax"] if api_version == PRE_BASIL else sum(t["amount"] for t in inv["total_taxes"])
        )
        assert inv["total"] == inv["total_excluding_tax"] + tax == subtotal + tax
        assert inv["amount_paid"] == inv["total"] and inv["status"] == "paid"
    charge_amounts = sorted(c["amount"] for c in story.charges)
    assert charge_amounts == sorted(i["amount_paid"] for i in story.invoices)


def test_credit_and_inclusive_tax() -> None:
    f = StripeFactory(seed=5)
    inv = f.invoice(
        "cus_1",
        lines=[Line(12_000, T0, T0 + 1)],
        created=T0,
        paid_at=T0,
        tax_rate="0.2",
        tax_inclusive=True,
        credit_minor=2_000,
        discount_minor=0,
    )
    assert (inv["total"], inv["total_excluding_tax"], inv["tax"]) == (12_000, 10_000, 2_000)
    assert (inv["amount_due"], inv["amount_paid"], inv["starting_balance"]) == (
        10_000,
        10_000,
        -2_000,
    )


def test_refunds_are_cumulative_on_the_charge() -> None:
    f = StripeFactory(seed=6)
    charge = f.charge(amount=10_000, created=T0, customer="cus_1", payment_intent="pi_1")
    first = f.refund(charge, amount=3_000, created=T0 + 10)
    second = f.refund(charge, amount=7_000, created=T0 + 20)
    partial = f.refunded_charge(charge, [first])
    full = f.refunded_charge(charge, [first, second])
    assert (partial["amount_refunded"], partial["refunded"]) == (3_000, False)
    assert (full["amount_refunded"], full["refunded"]) == (10_000, True)
    assert charge["amount_refunded"] == 0  # the original is untouched


def test_scenario_clock() -> None:
    clock = ScenarioClock(T0)
    assert clock.now == T0 and clock.advance(60) == T0 + 60 and clock.now == T0 + 60
    assert clock.month(0) == T0 and clock.month(12) > clock.month(11) > T0


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_routing_agrees_with_the_ingress(api_version: str) -> None:
    from ingress.envelope import partition_key_of

    f = StripeFactory(api_version=api_version, seed=7)
    story = subscription_story(f, months=2, code="A", invoice_payment_events=True)
    guest = one_time_story(f, customer_id=None, code="B")
    charge = story.charges[0]
    extra = [
        f.event("charge.dispute.created", f.dispute(charge, created=T0), created=T0),
        f.event("refund.created", f.refund(charge, amount=5, created=T0), created=T0),
        f.event(
            "payment_intent.succeeded",
            {"id": "pi_X", "object": "payment_intent", "customer": None},
            created=T0,
        ),
    ]
    for event in story.events + guest.events + extra:
        obj = event["data"]["object"]
        assert routing_key(event) == partition_key_of(event["id"], event["type"], obj)
