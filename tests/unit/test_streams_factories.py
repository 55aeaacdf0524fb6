"""The shared Stripe factories: signed like Stripe, routed like ingress, valid Avro, seeded."""

from __future__ import annotations

import json

import pytest
import stripe

from refstream.avro_codec import AvroCodec
from tests.support.factories import (
    API_VERSIONS,
    BASIL,
    DAY,
    OLD_2018,
    OLD_2019,
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


# --- the flows of docs/STRIPE_FLOWS.md ---------------------------------------------------


def test_connect_events_carry_the_account() -> None:
    f = StripeFactory(seed=8)
    cus = f.customer(created=T0)
    assert "account" not in f.event("customer.created", cus, created=T0)
    event = f.event("customer.created", cus, created=T0, account="acct_X")
    assert event["account"] == "acct_X" and f.envelope(event)["account"] == "acct_X"


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_out_of_band_invoices_earn_nothing_on_either_family(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=9)
    inv = f.invoice(
        "cus_1", lines=[Line(4_900, T0, T0 + DAY)], created=T0, paid_at=T0, out_of_band=True
    )
    assert inv["status"] == "paid" and inv["status_transitions"]["paid_at"] == T0
    if api_version == BASIL:
        assert inv["amount_paid"] == inv["amount_paid_off_stripe"] == 4_900
    else:
        assert (inv["paid"], inv["paid_out_of_band"], inv["amount_paid"]) == (True, True, 0)


def test_old_api_versions_render_date_and_no_amount_paid() -> None:
    lines = [Line(4_900, T0, T0 + DAY)]
    old19 = StripeFactory(api_version=OLD_2019, seed=1).invoice(
        "cus_1", lines=lines, created=T0, paid_at=T0
    )
    assert old19["date"] == T0 and "created" not in old19 and old19["amount_paid"] == 4_900
    old18 = StripeFactory(api_version=OLD_2018, seed=1).invoice(
        "cus_1", lines=lines, created=T0, paid_at=T0
    )
    assert "amount_paid" not in old18 and old18["paid"] is True and old18["amount_due"] == 4_900


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_partial_payments_and_truncated_lines(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=10)
    lines = [Line(4_900, T0, T0 + DAY), Line(100, T0 - DAY, T0, kind="metered")]
    inv = f.invoice(
        "cus_1",
        lines=lines,
        created=T0,
        paid_at=T0,
        amount_paid=1_000,
        lines_shown=1,
        subscription="sub_1234567890abcdefghij",
    )
    assert (inv["status"], inv["amount_paid"], inv["amount_remaining"]) == ("open", 1_000, 4_000)
    assert inv["status_transitions"]["paid_at"] is None
    assert inv["lines"]["has_more"] is True and len(inv["lines"]["data"]) == 1
    assert inv["period_end"] == T0  # the licensed line's start, not the usage period's
    if api_version == BASIL:
        ip = f.invoice_payment(inv, payment_intent="pi_1", created=T0, amount_paid=1_000)
        assert (ip["amount_paid"], ip["amount_requested"], ip["is_default"]) == (
            1_000,
            1_000,
            False,
        )
        charge_only = f.invoice_payment(inv, charge="ch_1", created=T0)
        assert charge_only["payment"] == {"type": "charge", "charge": "ch_1"}
        canceled = f.invoice_payment(inv, payment_intent="pi_2", created=T0, status="canceled")
        assert canceled["amount_paid"] == 0 and canceled["status_transitions"]["canceled_at"] == T0
    else:
        assert inv["paid"] is False


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_proration_and_metered_lines(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=11)
    sub = "sub_1234567890abcdefghij"
    kinds = [
        Line(4_900, T0, T0 + DAY),
        Line(-100, T0 - DAY, T0, kind="proration"),
        Line(200, T0 - DAY, T0, kind="proration", on_subscription_item=True),
        Line(300, T0 - DAY, T0, kind="metered"),
    ]
    inv = f.invoice("cus_1", lines=kinds, created=T0, paid_at=T0, subscription=sub)
    data = inv["lines"]["data"]
    if api_version == BASIL:
        parents = [
            (li["parent"]["type"], li["parent"][li["parent"]["type"]]["proration"]) for li in data
        ]
        assert parents == [
            ("subscription_item_details", False),
            ("invoice_item_details", True),
            ("subscription_item_details", True),
            ("subscription_item_details", False),
        ]
    else:
        shapes = [
            (li["type"], li["proration"], li["price"]["recurring"]["usage_type"]) for li in data
        ]
        assert shapes == [
            ("subscription", False, "licensed"),
            ("invoiceitem", True, "licensed"),
            ("subscription", True, "licensed"),
            ("subscription", False, "metered"),
        ]


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_partial_capture_and_cancellation(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=12)
    ch = f.charge(amount=5_000, created=T0, payment_intent="pi_1", amount_captured=3_000)
    uncaptured = f.charge(amount=5_000, created=T0, captured=False)
    canceled = f.canceled_charge(uncaptured, created=T0 + 1)
    if api_version == BASIL:
        assert ch["amount_refunded"] == 0 and f.release_refund(ch) is None
        assert canceled["amount_refunded"] == 0 and canceled["refunds"]["data"] == []
    else:
        release = f.release_refund(ch)
        assert release is not None and release["amount"] == ch["amount_refunded"] == 2_000
        assert ch["refunded"] is False
        assert (canceled["amount_refunded"], canceled["refunded"]) == (5_000, True)
        refund = f.refund(ch, amount=3_000, created=T0 + 2)
        assert f.refunded_charge(ch, [refund])["amount_refunded"] == 5_000


def test_a_failed_refund_brings_amount_refunded_back_down() -> None:
    f = StripeFactory(api_version=BASIL, seed=13)
    ch = f.charge(amount=10_000, created=T0, payment_intent="pi_1")
    first = f.refund(ch, amount=3_000, created=T0)
    second = f.refund(ch, amount=2_000, created=T0, status="pending")
    failed_event, updated = f.refund_failure_events(ch, [first, second], second, created=T0 + 5)
    obj = failed_event["data"]["object"]
    assert failed_event["type"] == "refund.failed" and obj["status"] == "failed"
    assert obj["failure_reason"] == "expired_or_canceled_card"
    assert updated["type"] == "charge.updated"
    assert updated["data"]["object"]["amount_refunded"] == 3_000
    assert updated["data"]["previous_attributes"] == {"amount_refunded": 5_000}


def test_inquiries_partial_and_charge_only_disputes() -> None:
    f = StripeFactory(api_version=BASIL, seed=14)
    ch = f.charge(amount=10_000, created=T0, customer="cus_1")  # no payment intent
    du = f.dispute(ch, created=T0, status="warning_needs_response", amount=4_000)
    assert (du["payment_intent"], du["amount"], du["is_charge_refundable"]) == (None, 4_000, True)
    assert f.dispute(ch, created=T0)["is_charge_refundable"] is False


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_credit_notes(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=15)
    inv = f.invoice("cus_1", lines=[Line(4_900, T0, T0 + DAY)], created=T0, paid_at=T0)
    ch = f.charge(amount=4_900, created=T0, customer="cus_1")
    refund = f.refund(ch, amount=1_000, created=T0)
    note = f.credit_note(inv, created=T0, amount=1_000, refunds=[refund])
    assert (note["invoice"], note["customer"], note["total"], note["type"]) == (
        inv["id"],
        "cus_1",
        1_000,
        "post_payment",
    )
    if api_version == BASIL:
        assert note["refunds"] == [
            {
                "amount_refunded": 1_000,
                "payment_record_refund": None,
                "refund": refund["id"],
                "type": "refund",
            }
        ]
    else:
        assert note["refund"] == refund["id"] and "refunds" not in note
    unpaid = f.invoice("cus_1", lines=[Line(4_900, T0, T0 + DAY)], created=T0, paid_at=None)
    assert f.credit_note(unpaid, created=T0)["type"] == "pre_payment"
