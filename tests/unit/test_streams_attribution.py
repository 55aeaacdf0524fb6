"""Every legitimate place of the referral code, in both API families."""

from __future__ import annotations

import pytest

from streams.ledger.attribution import MetadataKeys, Touch, touches_in
from streams.ledger.stripe_payloads import parse_envelope, read_object
from tests.support.factories import API_VERSIONS, Line, StripeFactory

T0 = 1_750_000_000
MONTH = 2_592_000
META = {"cello_ucc": "ACME-1", "new_user_id": "u_42", "new_user_organization_id": "org_7"}
KEYS = MetadataKeys()


def touches(f: StripeFactory, type_: str, obj: dict, keys: MetadataKeys = KEYS) -> list[Touch]:
    event = parse_envelope(f.envelope(f.event(type_, obj, created=T0 + 5, event_id="evt_T")))
    return touches_in(event, read_object(event.data_object), keys)


def only(found: list[Touch]) -> Touch:
    assert len(found) == 1, found
    return found[0]


def check(touch: Touch, source: str, object_id: str | None, type_: str) -> None:
    assert (touch.code, touch.new_user_id, touch.organization_id) == ("ACME-1", "u_42", "org_7")
    assert (touch.source, touch.source_object_id) == (source, object_id)
    assert (touch.event_id, touch.event_type, touch.at) == ("evt_T", type_, T0 + 5)


@pytest.fixture(params=API_VERSIONS)
def f(request: pytest.FixtureRequest) -> StripeFactory:
    return StripeFactory(api_version=request.param, seed=3)


@pytest.mark.parametrize("type_", ["customer.created", "customer.updated"])
def test_customer_metadata(f: StripeFactory, type_: str) -> None:
    cus = f.customer(created=T0, metadata=META)
    check(only(touches(f, type_, cus)), "customer_metadata", cus["id"], type_)


@pytest.mark.parametrize(
    "type_",
    [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ],
)
def test_subscription_metadata(f: StripeFactory, type_: str) -> None:
    sub = f.subscription("cus_A", created=T0, unit_amount=900, metadata=META)
    check(only(touches(f, type_, sub)), "subscription_metadata", sub["id"], type_)


def test_checkout_session_metadata(f: StripeFactory) -> None:
    ses = f.checkout_session(
        mode="subscription",
        created=T0,
        amount_total=900,
        customer="cus_A",
        subscription="sub_1",
        metadata=META,
    )
    check(
        only(touches(f, "checkout.session.completed", ses)),
        "checkout_session",
        ses["id"],
        "checkout.session.completed",
    )


def test_checkout_expanded_subscription_and_payment_intent(f: StripeFactory) -> None:
    sub = f.subscription("cus_A", created=T0, unit_amount=900, metadata=META)
    ses = f.checkout_session(mode="subscription", created=T0, amount_total=900, customer="cus_A")
    ses["subscription"] = sub
    check(
        only(touches(f, "checkout.session.completed", ses)),
        "checkout_subscription_data",
        sub["id"],
        "checkout.session.completed",
    )
    pay = f.checkout_session(mode="payment", created=T0, amount_total=900)
    pay["payment_intent"] = {"id": "pi_X", "object": "payment_intent", "metadata": META}
    check(
        only(touches(f, "checkout.session.completed", pay)),
        "checkout_payment_intent_data",
        "pi_X",
        "checkout.session.completed",
    )


def test_invoice_subscription_snapshot(f: StripeFactory) -> None:
    inv = f.invoice(
        "cus_A",
        lines=[Line(900, T0, T0 + MONTH)],
        created=T0,
        paid_at=T0,
        subscription="sub_1",
        subscription_metadata=META,
    )
    if f.basil:
        assert inv["parent"]["subscription_details"]["metadata"] == META
    else:
        assert inv["subscription_details"]["metadata"] == META
    check(
        only(touches(f, "invoice.paid", inv)),
        "invoice_subscription_snapshot",
        inv["id"],
        "invoice.paid",
    )


def test_invoice_subscription_line_metadata(f: StripeFactory) -> None:
    inv = f.invoice(
        "cus_A",
        lines=[
            Line(900, T0, T0 + MONTH, metadata=META),
            Line(100, T0, T0 + MONTH, kind="item", metadata={"cello_ucc": "NOT-A-SUB-LINE"}),
        ],
        created=T0,
        paid_at=T0,
        subscription="sub_1",
    )
    check(
        only(touches(f, "invoice.payment_succeeded", inv)),
        "invoice_line",
        inv["id"],
        "invoice.payment_succeeded",
    )


def test_snapshot_comes_before_line_in_one_event(f: StripeFactory) -> None:
    inv = f.invoice(
        "cus_A",
        lines=[Line(900, T0, T0 + MONTH, metadata=META)],
        created=T0,
        paid_at=T0,
        subscription="sub_1",
        subscription_metadata=META,
    )
    assert [t.source for t in touches(f, "invoice.paid", inv)] == [
        "invoice_subscription_snapshot",
        "invoice_line",
    ]


def test_charge_metadata_of_one_time_payments(f: StripeFactory) -> None:
    ch = f.charge(amount=900, created=T0, payment_intent="pi_1", metadata=META)
    check(only(touches(f, "charge.succeeded", ch)), "charge_metadata", ch["id"], "charge.succeeded")


def test_key_names_are_configurable(f: StripeFactory) -> None:
    cus = f.customer(created=T0, metadata={"ref": "R-9", "uid": "u1", "cello_ucc": "IGNORED"})
    keys = MetadataKeys(code="ref", new_user_id="uid", organization_id="org")
    touch = only(touches(f, "customer.created", cus, keys))
    assert (touch.code, touch.new_user_id, touch.organization_id) == ("R-9", "u1", None)


def test_blank_or_missing_codes_are_no_touch(f: StripeFactory) -> None:
    assert (
        touches(f, "customer.created", f.customer(created=T0, metadata={"cello_ucc": "  "})) == []
    )
    assert (
        touches(f, "customer.created", f.customer(created=T0, metadata={"new_user_id": "u"})) == []
    )
    assert touches(f, "customer.created", f.customer(created=T0)) == []


def test_touch_json_round_trip() -> None:
    touch = Touch("C", None, "o", "charge_metadata", "ch_1", "evt_1", "charge.succeeded", 5)
    assert Touch.from_json(touch.to_json()) == touch
