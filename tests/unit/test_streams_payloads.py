"""The payload readers read both API families, and bad payloads fail with a named field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refstream.avro_codec import AvroCodec
from streams.ledger.stripe_payloads import (
    ParseError,
    _json_body,
    is_basil,
    parse_envelope,
    read_charge,
    read_checkout_session,
    read_customer,
    read_invoice,
    read_invoice_payment,
    read_subscription,
)
from tests.support.factories import API_VERSIONS, BASIL, PRE_BASIL, Line, StripeFactory

T0 = 1_750_000_000
MONTH = 2_592_000


def paid_invoice(f: StripeFactory, **kwargs: object) -> dict:
    return f.invoice(
        "cus_A",
        lines=[Line(10_000, T0, T0 + MONTH, metadata={"cello_ucc": "L"})],
        created=T0,
        paid_at=T0 + 60,
        billing_reason="subscription_create",
        subscription="sub_1",
        subscription_metadata={"cello_ucc": "SNAP"},
        tax_rate="0.19",
        payment_intent="pi_1",
        charge="ch_1",
        **kwargs,  # type: ignore[arg-type]
    )


def test_api_version_families() -> None:
    assert not is_basil(PRE_BASIL) and not is_basil("2025-02-24.acacia")
    assert is_basil(BASIL) and is_basil("2025-05-28.basil") and is_basil("2026-10-28.endive")
    assert not is_basil(None)


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_invoice_reads_the_same_facts_in_both_families(api_version: str) -> None:
    f = StripeFactory(api_version=api_version)
    raw = paid_invoice(f, include_payments=True)
    inv = read_invoice(raw)
    assert (inv.customer, inv.currency, inv.subscription_id) == ("cus_A", "usd", "sub_1")
    assert (inv.amount_paid, inv.total, inv.total_excluding_tax) == (11_900, 11_900, 10_000)
    assert inv.subtotal == 10_000 and inv.billing_reason == "subscription_create"
    assert inv.paid_at == T0 + 60 and inv.status == "paid"
    assert inv.subscription_metadata == {"cello_ucc": "SNAP"}
    assert [(li.is_subscription_line, li.subscription_id) for li in inv.lines] == [(True, "sub_1")]
    assert inv.lines[0].metadata == {"cello_ucc": "L"}
    assert inv.service_start == T0
    assert inv.payment_intent_ids == ("pi_1",) or inv.charge_ids == ("ch_1",)
    if api_version == PRE_BASIL:
        assert "parent" not in raw and raw["subscription"] == "sub_1"
        assert (inv.payment_intent_ids, inv.charge_ids) == (("pi_1",), ("ch_1",))
    else:
        assert "subscription" not in raw and "charge" not in raw and "tax" not in raw
        assert inv.charge_ids == ("ch_1",)  # from payments.data[].payment.charge


def test_basil_invoice_without_payments_names_no_payment() -> None:
    inv = read_invoice(paid_invoice(StripeFactory(api_version=BASIL)))
    assert inv.payment_intent_ids == () and inv.charge_ids == ()


def test_basil_payment_intent_payments_are_read() -> None:
    f = StripeFactory(api_version=BASIL)
    raw = f.invoice(
        "cus_A",
        lines=[Line(500, T0, T0 + MONTH)],
        created=T0,
        paid_at=T0,
        subscription="sub_1",
        payment_intent="pi_9",
        include_payments=True,
    )
    assert read_invoice(raw).payment_intent_ids == ("pi_9",)
    raw["payments"]["data"][0]["status"] = "canceled"
    assert read_invoice(raw).payment_intent_ids == ()


@pytest.mark.parametrize(
    ("api_version", "drop", "expected"),
    [
        (PRE_BASIL, "tax", 11_900),
        (PRE_BASIL, None, 10_000),
        (BASIL, "total_taxes", 11_900),
        (BASIL, None, 10_000),
    ],
)
def test_total_excluding_tax_is_derived_when_absent(
    api_version: str, drop: str | None, expected: int
) -> None:
    raw = paid_invoice(StripeFactory(api_version=api_version))
    del raw["total_excluding_tax"]
    if drop:
        del raw[drop]  # no tax information at all: nothing to take out
    assert read_invoice(raw).total_excluding_tax == expected


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_charge_invoice_link_only_before_basil(api_version: str) -> None:
    f = StripeFactory(api_version=api_version)
    ch = read_charge(
        f.charge(
            amount=700,
            created=T0,
            customer="cus_A",
            payment_intent="pi_1",
            invoice="in_1",
            metadata={"cello_ucc": "X"},
        )
    )
    assert (ch.customer, ch.payment_intent, ch.amount, ch.amount_captured) == (
        "cus_A",
        "pi_1",
        700,
        700,
    )
    assert ch.invoice == ("in_1" if api_version == PRE_BASIL else None)
    assert ch.metadata == {"cello_ucc": "X"} and ch.status == "succeeded"


def test_other_objects() -> None:
    f = StripeFactory(api_version=BASIL)
    cus = read_customer(f.customer(created=T0, metadata={"k": "v"}, customer_id="cus_Z"))
    assert (cus.id, cus.metadata, cus.created) == ("cus_Z", {"k": "v"}, T0)
    sub = read_subscription(
        f.subscription("cus_Z", created=T0, unit_amount=900, metadata={"cello_ucc": "S"})
    )
    assert (sub.customer, sub.metadata, sub.status) == ("cus_Z", {"cello_ucc": "S"}, "active")
    ses = read_checkout_session(
        f.checkout_session(
            mode="payment", created=T0, amount_total=1_190, amount_tax=190, payment_intent="pi_2"
        )
    )
    assert (ses.mode, ses.customer, ses.payment_intent_id, ses.amount_tax) == (
        "payment",
        None,
        "pi_2",
        190,
    )
    inv = paid_invoice(f)
    ip = read_invoice_payment(f.invoice_payment(inv, payment_intent="pi_1", created=T0))
    assert (ip.invoice_id, ip.payment_intent, ip.charge, ip.amount_paid) == (
        inv["id"],
        "pi_1",
        None,
        11_900,
    )


def test_expanded_fields_read_as_their_id() -> None:
    f = StripeFactory()
    raw = f.charge(amount=700, created=T0, payment_intent="pi_1")
    raw["customer"] = {"id": "cus_E", "object": "customer"}
    assert read_charge(raw).customer == "cus_E"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.update(amount_paid="12"), "invoice.amount_paid: expected an integer"),
        (lambda o: o.update(amount_paid=True), "invoice.amount_paid: expected an integer"),
        (lambda o: o.pop("id"), "invoice.id: required"),
        (lambda o: o.update(currency="dollars"), "invoice.currency: expected an ISO 4217"),
        (lambda o: o.update(object="charge"), "invoice.object: expected 'invoice'"),
        (
            lambda o: o["lines"]["data"][0]["period"].update(start="x"),
            "invoice.lines.data[0].period.start: expected an integer",
        ),
        (
            lambda o: o["lines"]["data"][0]["metadata"].update(cello_ucc=5),
            "invoice.lines.data[0].metadata.cello_ucc: expected a string",
        ),
        (lambda o: o.update(lines="nope"), "invoice.lines: expected a list"),
    ],
)
def test_bad_invoice_payloads_name_the_field(
    mutate: Callable[[dict], object], message: str
) -> None:
    raw = paid_invoice(StripeFactory(api_version=BASIL))
    mutate(raw)
    with pytest.raises(ParseError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_invoice(raw)


def test_envelope_round_trip_through_avro() -> None:
    f = StripeFactory(api_version=BASIL, livemode=True)
    event = f.event("invoice.paid", paid_invoice(f), created=T0 + 61)
    record = f.envelope(event)
    codec = AvroCodec.for_schema("stripe_event")
    parsed = parse_envelope(codec.decode(codec.encode(record)))
    assert (parsed.event_id, parsed.type, parsed.created, parsed.livemode) == (
        event["id"],
        "invoice.paid",
        T0 + 61,
        True,
    )
    assert (parsed.partition_key, parsed.key_source) == ("cus_A", "customer")
    assert parsed.basil and parsed.data_object["id"] == event["data"]["object"]["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "stripe_event.body: not JSON"),
        (b"[]", "event: expected an object"),
        (json.dumps({"id": "evt_other", "data": {"object": {}}}).encode(), "event.id: differs"),
        (json.dumps({"id": "evt_1", "object": "v2.core.event"}).encode(), "event.data: required"),
        (json.dumps({"id": "evt_1", "data": {}}).encode(), "event.data.object: required"),
    ],
)
def test_bad_envelopes_name_the_problem(body: bytes, message: str) -> None:
    record = StripeFactory().envelope(
        StripeFactory().event(
            "customer.created", {"id": "cus_1", "object": "customer"}, created=T0, event_id="evt_1"
        )
    )
    bad = copy.deepcopy(record)
    bad["body"] = body
    with pytest.raises(ParseError, match=message):
        parse_envelope(bad)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON_VALUES, st.booleans())
def test_an_event_body_is_read_exactly_as_json_reads_it(value: object, spaced: bool) -> None:
    """orjson reads bodies, except what it would read otherwise (integers beyond 64 bits,
    NaN, lone surrogates): the same values as json.loads, and the same errors."""
    raw = json.dumps(value, indent=1 if spaced else None).encode()
    assert repr(_json_body(raw)) == repr(json.loads(raw))
    for bad in (raw[:-1] + b"}", b"\xff" + raw, b""):
        try:
            expected: object = json.loads(bad)
        except ValueError as exc:
            expected = type(exc)
        try:
            got: object = _json_body(bad)
        except ValueError as exc:
            got = type(exc)
        assert repr(got) == repr(expected)
