"""Every payload the factory and the simulator build is shaped like Stripe's: the event
envelope against the spec's `event`, data.object against its object's schema (Stripe's
own OpenAPI spec from the stripe-mock module; pre-basil shapes through the documented
allow/deny lists of tests/support/openapi_spec.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from simulator.scenario import ScenarioConfig, generate
from tests.support import openapi_spec
from tests.support.factories import (
    ALL_API_VERSIONS,
    BASIL,
    DAY,
    OLD_2018,
    OLD_2019,
    PRE_BASIL,
    Json,
    Line,
    StripeFactory,
    one_time_story,
    subscription_story,
)
from tests.support.openapi_spec import SPEC_VERSION, StripeSpec, load_spec

T0 = 1_750_000_000
MONTH = 30 * DAY
SUB = "sub_1QxYz2AbCdEfGhIjKlMnOpQr"


@pytest.fixture(scope="module")
def spec() -> StripeSpec:
    return load_spec()


def factory_events(api_version: str) -> Iterator[Json]:
    """At least one event of every factory method and option, in one API version."""
    f = StripeFactory(api_version=api_version, seed=11)
    cus = f.customer(created=T0, metadata={"cello_ucc": "ACME", "new_user_id": "u1"})
    yield f.event("customer.created", cus, created=T0)
    yield f.event("customer.created", cus, created=T0, account="acct_1Conn3ct3dAcc0unt")
    sub = f.subscription(cus["id"], created=T0, unit_amount=4_900, metadata={"cello_ucc": "A"})
    yield f.event("customer.subscription.created", sub, created=T0)
    canceled = f.subscription(
        cus["id"], created=T0, unit_amount=4_900, status="canceled", canceled_at=T0 + MONTH
    )
    yield f.event(
        "customer.subscription.deleted",
        canceled,
        created=T0 + MONTH,
        previous_attributes={"status": "active", "canceled_at": None},
    )
    for mode, customer in (("subscription", cus["id"]), ("payment", None)):
        session = f.checkout_session(
            mode=mode,
            created=T0,
            amount_total=4_900,
            customer=customer,
            subscription=sub["id"] if customer else None,
            payment_intent=None if customer else "pi_guest",
            metadata={"cello_ucc": "A"},
            amount_tax=400,
            client_reference_id="ref",
        )
        yield f.event("checkout.session.completed", session, created=T0)

    # Invoices: plain, taxed/discounted/credited, prorations, metered usage in arrears,
    # truncated lines, partial payment, out of band, included payments.
    lines = [
        Line(4_900, T0, T0 + MONTH, metadata={"cello_ucc": "A"}),
        Line(-1_200, T0 - MONTH // 2, T0, kind="proration", description="Unused time"),
        Line(2_400, T0 - MONTH // 2, T0, kind="proration", on_subscription_item=True),
        Line(730, T0 - MONTH, T0, kind="metered", description="Usage", quantity=73),
        Line(1_000, T0, T0, kind="item", description="Setup fee"),
    ]
    common: Json = {"created": T0, "subscription": SUB, "subscription_metadata": {"a": "b"}}
    invoices = [
        f.invoice(cus["id"], lines=lines, paid_at=T0 + 60, payment_intent="pi_1", **common),
        f.invoice(
            cus["id"],
            lines=lines[:1],
            paid_at=T0 + 60,
            tax_rate="0.2",
            discount_minor=500,
            credit_minor=300,
            charge="ch_1",
            billing_reason="subscription_create",
            **common,
        ),
        f.invoice(cus["id"], lines=lines, paid_at=T0 + 60, lines_shown=1, **common),
        f.invoice(cus["id"], lines=lines[:1], paid_at=None, **common),
        f.invoice(
            cus["id"],
            lines=lines[:1],
            paid_at=T0 + 60,
            amount_paid=1_000,
            payment_intent="pi_2",
            include_payments=True,
            **common,
        ),
        f.invoice(cus["id"], lines=lines[:1], paid_at=T0 + 60, out_of_band=True, **common),
        f.invoice(
            cus["id"],
            lines=[Line(9_900, T0, T0, kind="item")],
            created=T0,
            paid_at=T0 + 5,
            billing_reason="manual",
            tax_rate="0.1",
            tax_inclusive=True,
            payment_intent="pi_3",
            include_payments=True,
        ),
    ]
    for inv in invoices:
        yield f.event(
            "invoice.paid" if inv["status"] == "paid" else "invoice.updated", inv, created=T0
        )
    yield f.event("invoice.payment_succeeded", invoices[0], created=T0)
    if f.basil:
        paid, partial = invoices[0], invoices[4]
        for ip in (
            f.invoice_payment(paid, payment_intent="pi_1", created=T0),
            f.invoice_payment(paid, charge="ch_only", created=T0),
            f.invoice_payment(partial, payment_intent="pi_2", created=T0, amount_paid=1_000),
            f.invoice_payment(paid, payment_intent="pi_x", created=T0, status="open"),
            f.invoice_payment(paid, payment_intent="pi_y", created=T0, status="canceled"),
        ):
            yield f.event(f"invoice_payment.{ip['status']}", ip, created=T0)

    # Charges, refunds, disputes.
    charge = f.charge(amount=4_900, created=T0, customer=cus["id"], payment_intent="pi_1")
    with_invoice = f.charge(amount=4_900, created=T0, invoice=invoices[0]["id"])
    no_intent = f.charge(amount=2_000, created=T0, customer=cus["id"])
    partial = f.charge(amount=5_000, created=T0, payment_intent="pi_p", amount_captured=3_000)
    uncaptured = f.charge(amount=5_000, created=T0, payment_intent="pi_u", captured=False)
    failed = f.charge(amount=5_000, created=T0, status="failed", captured=False)
    for ch in (charge, with_invoice, no_intent, partial, uncaptured, failed):
        yield f.event("charge.succeeded", ch, created=T0)
    yield f.event("charge.refunded", f.canceled_charge(uncaptured, created=T0 + 9), created=T0 + 9)
    refunds = [
        f.refund(charge, amount=1_000, created=T0 + 1),
        f.refund(charge, amount=500, created=T0 + 2, status="pending", reason=None),
        f.refund(no_intent, amount=200, created=T0 + 3, reason="duplicate"),
        f.refund(charge, amount=100, created=T0 + 4, status="requires_action"),
        f.refund(charge, amount=100, created=T0 + 4, status="canceled"),
        f.refund(charge, amount=100, created=T0 + 4, status="failed", failure_reason="declined"),
    ]
    for r in refunds:
        yield f.event("refund.created", r, created=T0 + 5)
    yield f.event("refund.updated", f.failed_refund(refunds[0], status="canceled"), created=T0)
    yield f.event("charge.refunded", f.refunded_charge(charge, refunds[:2]), created=T0 + 6)
    yield f.event(
        "charge.refunded",
        f.refunded_charge(partial, [f.refund(partial, amount=1, created=T0)]),
        created=T0,
    )
    yield from f.refund_failure_events(charge, refunds[:2], refunds[0], created=T0 + 7)
    for status in (
        "warning_needs_response",
        "warning_under_review",
        "warning_closed",
        "needs_response",
        "under_review",
        "won",
        "lost",
        "prevented",
    ):
        yield f.event(
            "charge.dispute.created", f.dispute(charge, created=T0, status=status), created=T0
        )
    yield f.event(
        "charge.dispute.created", f.dispute(no_intent, created=T0, amount=500), created=T0
    )

    # Credit notes: post-payment with a refund, pre-payment, out of band.
    yield f.event(
        "credit_note.created",
        f.credit_note(invoices[0], created=T0, amount=1_000, refunds=[refunds[0]]),
        created=T0,
    )
    yield f.event("credit_note.created", f.credit_note(invoices[3], created=T0), created=T0)
    yield f.event(
        "credit_note.created",
        f.credit_note(invoices[1], created=T0, out_of_band_amount=500, reason="order_change"),
        created=T0,
    )

    # Stories.
    stories = [
        subscription_story(
            f,
            months=3,
            code="A",
            code_on="subscription",
            via_checkout=True,
            upgrade=(2, 9_900),
            tax_rate="0.1",
            payment_succeeded_too=True,
            invoice_payment_events=True,
            include_payments=True,
        ),
        subscription_story(f, months=2, with_charges=False, code_on="none"),
        one_time_story(f, customer_id=None, code="B"),
        one_time_story(f, customer_id=cus["id"], code="C", code_on="checkout_session"),
    ]
    for story in stories:
        yield from story.events


def _report(events: list[Json], spec: StripeSpec) -> list[str]:
    return [
        f"{e['type']} ({e['api_version']}): {err}" for e in events for err in spec.event_errors(e)
    ]


@pytest.mark.parametrize("api_version", ALL_API_VERSIONS)
def test_every_factory_payload_matches_the_stripe_spec(api_version: str, spec: StripeSpec) -> None:
    events = list(factory_events(api_version))
    assert len(events) > 60
    errors = _report(events, spec)
    assert not errors, "\n".join(errors[:40])


@pytest.mark.parametrize("seed", [3, 8])
def test_every_simulated_event_matches_the_stripe_spec(seed: int, spec: StripeSpec) -> None:
    scenario = generate(ScenarioConfig(customers=60, months=6, seed=seed))
    events = list(scenario.events)
    assert {e["api_version"] for e in events} >= {PRE_BASIL, BASIL}
    errors = _report(events, spec)
    assert not errors, "\n".join(errors[:40])


# --- the validator itself ------------------------------------------------------------------


def test_the_spec_is_the_basil_family_one(spec: StripeSpec) -> None:
    assert spec.version == SPEC_VERSION
    assert (
        "invoice_payment" in spec.schemas
        and "subscription" not in spec.schemas["invoice"]["properties"]
    )


def test_a_missing_spec_fails_and_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFSTREAM_STRIPE_SPEC", "/nonexistent/spec3.json")
    with pytest.raises(openapi_spec.SpecMissingError, match="run scripts/test"):
        load_spec.__wrapped__()


def _basil_invoice() -> Json:
    f = StripeFactory(api_version=BASIL, seed=1)
    return f.invoice(
        "cus_1", lines=[Line(100, T0, T0 + MONTH)], created=T0, paid_at=T0, subscription=SUB
    )


def test_the_validator_catches_type_missing_and_unknown_fields(spec: StripeSpec) -> None:
    inv = _basil_invoice()
    assert spec.errors(inv, "invoice", api_version=BASIL) == []
    cases: list[tuple[str, object, str]] = [
        ("amount_paid", True, "is not an integer"),  # a bool is not an integer
        ("amount_paid", 1.5, "is not an integer"),
        ("amount_paid", None, "null is not allowed"),
        ("attempted", 1, "is not a boolean"),
        ("status", "settled", "is not one of"),
        ("subscription", SUB, "not in the spec"),  # pre-basil only
        ("customer", {"id": "cus_1"}, "required, missing"),  # expandable: an object
    ]
    for key, value, message in cases:
        bad = copy.deepcopy(inv)
        bad[key] = value
        errors = spec.errors(bad, "invoice", api_version=BASIL)
        assert any(message in e for e in errors), (key, value, errors)
    missing = copy.deepcopy(inv)
    del missing["amount_due"]
    assert spec.errors(missing, "invoice", api_version=BASIL) == [
        "invoice.amount_due: required, missing"
    ]
    nested = copy.deepcopy(inv)
    nested["lines"]["data"][0]["period"]["start"] = "yesterday"
    nested["metadata"] = {"k": 1}
    errors = spec.errors(nested, "invoice", api_version=BASIL)
    assert errors == [
        "invoice.lines.data[0].period.start: 'yesterday' is not an integer",
        "invoice.metadata.k: 1 is not a string",
    ]


def test_pre_basil_allow_and_deny_lists(spec: StripeSpec) -> None:
    f = StripeFactory(api_version=PRE_BASIL, seed=1)
    inv = f.invoice(
        "cus_1", lines=[Line(100, T0, T0 + MONTH)], created=T0, paid_at=T0, subscription=SUB
    )
    assert spec.errors(inv, "invoice", api_version=PRE_BASIL) == []
    # A pre-basil invoice read as basil: its pre-basil fields are unknown to the spec.
    as_basil = spec.errors(inv, "invoice", api_version=BASIL)
    assert "invoice.paid_out_of_band: not in the spec" in as_basil
    assert "invoice.amount_paid_off_stripe: required, missing" in as_basil
    # Basil-only fields must not appear before basil.
    for key, value in (("parent", None), ("total_taxes", []), ("amount_paid_off_stripe", 0)):
        bad = {**inv, key: value}
        assert f"invoice.{key}: not in the spec" in spec.errors(
            bad, "invoice", api_version=PRE_BASIL
        )
    bad = copy.deepcopy(inv)
    bad["paid"] = "yes"
    assert spec.errors(bad, "invoice", api_version=PRE_BASIL) == [
        "invoice.paid: 'yes' is not a boolean"
    ]


def test_old_versions_date_and_amount_paid(spec: StripeSpec) -> None:
    for version, absent in ((OLD_2019, {"created"}), (OLD_2018, {"created", "amount_paid"})):
        f = StripeFactory(api_version=version, seed=1)
        inv = f.invoice("cus_1", lines=[Line(100, T0, T0 + MONTH)], created=T0, paid_at=T0)
        assert absent.isdisjoint(inv) and inv["date"] == T0
        assert spec.errors(inv, "invoice", api_version=version) == []
        assert "invoice.date: not in the spec" in spec.errors(inv, "invoice", api_version=PRE_BASIL)
        bad = {**inv, "created": T0}
        assert "invoice.created: not in the spec" in spec.errors(
            bad, "invoice", api_version=version
        )


def test_previous_attributes_are_checked_too(spec: StripeSpec) -> None:
    f = StripeFactory(api_version=BASIL, seed=1)
    ch = f.charge(amount=100, created=T0)
    good = f.event("charge.updated", ch, created=T0, previous_attributes={"amount_refunded": 50})
    assert spec.event_errors(good) == []
    bad = f.event("charge.updated", ch, created=T0, previous_attributes={"amount_refundd": 50})
    assert spec.event_errors(bad) == [
        "charge.previous_attributes.amount_refundd: not a property of charge"
    ]
    envelope = {**good, "account": None}
    assert spec.event_errors(envelope) == ["event: event.account: null is not allowed"]
