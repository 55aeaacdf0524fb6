"""The envelope: what counts as a Stripe event, the partition key rule (one test per rule),
and the Avro record the ingress writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.envelope import Envelope, parse_envelope
from ingress.rejection import Reason, Rejected
from ingress.signature import SignatureVerifier, VerifiedBody
from refstream.avro_codec import AvroCodec
from refstream.settings import Secret
from tests.support.factories import (
    BASIL,
    PRE_BASIL,
    StripeFactory,
    event_bytes,
    one_time_story,
    routing_key,
    subscription_story,
)
from tests.support.signing import sign

SECRET = "whsec_envelope_tests"
NOW = 1_800_000_000
RECEIVED_AT_MS = NOW * 1000 + 123
VERIFIER = SignatureVerifier([Secret(SECRET)], 300)


def verified(body: bytes) -> VerifiedBody:
    result = VERIFIER.verify(body, sign(body, SECRET, NOW), now=NOW)
    assert isinstance(result, VerifiedBody)
    return result


def envelope_of(event: Any) -> Envelope | Rejected:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    return parse_envelope(verified(body), RECEIVED_AT_MS)


def accepted(event: Any) -> Envelope:
    result = envelope_of(event)
    assert isinstance(result, Envelope), result
    return result


def event(type_: str, obj: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "id": "evt_1NqXYZ",
        "object": "event",
        "api_version": BASIL,
        "created": 1_746_057_600,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
        **top,
    }


# --- partition key rule ------------------------------------------------------------------


def key_of(ev: dict[str, Any]) -> tuple[str, str]:
    env = accepted(ev)
    assert env.key == env.partition_key.encode()
    return env.partition_key, env.key_source


def test_rule_1_customer_events_use_the_customers_own_id() -> None:
    cus = {"id": "cus_A", "object": "customer", "metadata": {}}
    assert key_of(event("customer.created", cus)) == ("cus_A", "customer")
    assert key_of(event("customer.deleted", cus)) == ("cus_A", "customer")


@pytest.mark.parametrize(
    ("type_", "obj"),
    [
        (
            "customer.subscription.updated",
            {"id": "sub_1", "object": "subscription", "customer": "cus_A"},
        ),
        ("customer.discount.created", {"id": "di_1", "object": "discount", "customer": "cus_A"}),
        (
            "invoice.paid",
            {"id": "in_1", "object": "invoice", "customer": {"id": "cus_A", "object": "customer"}},
        ),
        (
            "charge.succeeded",
            {"id": "ch_1", "object": "charge", "customer": "cus_A", "payment_intent": "pi_1"},
        ),
        (
            "payment_intent.succeeded",
            {"id": "pi_1", "object": "payment_intent", "customer": "cus_A"},
        ),
    ],
)
def test_rule_2_an_object_with_a_customer_uses_that_customer(
    type_: str, obj: dict[str, Any]
) -> None:
    assert key_of(event(type_, obj)) == ("cus_A", "customer")


@pytest.mark.parametrize(
    "obj",
    [
        {"id": "ch_1", "object": "charge", "customer": None, "payment_intent": "pi_G"},
        {"id": "du_1", "object": "dispute", "charge": "ch_1", "payment_intent": "pi_G"},
        {"id": "re_1", "object": "refund", "customer": None, "payment_intent": {"id": "pi_G"}},
        {"id": "cs_1", "object": "checkout.session", "customer": "", "payment_intent": "pi_G"},
    ],
)
def test_rule_3_without_a_customer_the_payment_intent_is_the_key(obj: dict[str, Any]) -> None:
    assert key_of(event(f"{obj['object']}.updated", obj)) == ("pi_G", "payment_intent")


def test_rule_4_a_guest_payment_intent_is_keyed_by_its_own_id() -> None:
    pi = {"id": "pi_G", "object": "payment_intent", "customer": None}
    assert key_of(event("payment_intent.succeeded", pi)) == ("pi_G", "payment_intent")


def test_rule_5_otherwise_the_object_id() -> None:
    product = {"id": "prod_1", "object": "product", "name": "Pro"}
    assert key_of(event("product.created", product)) == ("prod_1", "object")


def test_rule_5_a_customer_object_outside_customer_events_is_keyed_as_an_object() -> None:
    cus = {"id": "cus_A", "object": "customer"}
    assert key_of(event("radar.early_fraud_warning.created", cus)) == ("cus_A", "object")


def test_rule_6_an_object_without_id_falls_back_to_the_event_id() -> None:
    balance = {"object": "balance", "available": [{"amount": 0, "currency": "usd"}]}
    assert key_of(event("balance.available", balance)) == ("evt_1NqXYZ", "event")


def test_unusable_references_fall_through_to_the_next_rule() -> None:
    obj = {
        "id": "ch_1",
        "object": "charge",
        "customer": {"object": "customer"},
        "payment_intent": 7,
    }
    assert key_of(event("charge.succeeded", obj)) == ("ch_1", "charge")


def test_rule_5_an_invoice_payment_is_keyed_by_its_payment() -> None:
    ip = {
        "id": "inpay_1",
        "object": "invoice_payment",
        "invoice": "in_1",
        "payment": {"type": "payment_intent", "payment_intent": "pi_9"},
    }
    assert key_of(event("invoice_payment.paid", ip)) == ("pi_9", "payment_intent")
    ip["payment"] = {"type": "charge", "charge": "ch_9"}
    assert key_of(event("invoice_payment.paid", ip)) == ("ch_9", "charge")


def test_rule_6_a_dispute_without_payment_intent_is_keyed_by_its_charge() -> None:
    dp = {"id": "dp_1", "object": "dispute", "charge": "ch_7", "payment_intent": None}
    assert key_of(event("charge.dispute.created", dp)) == ("ch_7", "charge")


@pytest.mark.parametrize("api_version", [PRE_BASIL, BASIL])
def test_every_event_of_a_customer_story_shares_the_customer_key(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=3)
    stories = [
        subscription_story(f, months=3, code="ACME", via_checkout=True),
        one_time_story(f, customer_id="cus_OneTime"),
        one_time_story(f, customer_id=None),  # a guest: keyed by its payment intent
    ]
    for story in stories:
        for ev in story.events:
            env = accepted(event_bytes(ev))
            assert env.partition_key == story.key, ev["type"]
            # The factory's copy of the rule agrees (it has no payment_intent-self rule, and
            # these stories contain no payment_intent.* events).
            assert (env.partition_key, env.key_source) == routing_key(ev)


# --- the record --------------------------------------------------------------------------


def test_the_record_copies_the_routing_fields_and_keeps_the_body_byte_for_byte() -> None:
    ev = event(
        "invoice.paid",
        {"id": "in_1", "object": "invoice", "customer": "cus_A"},
        account="acct_1",
        livemode=True,
    )
    body = json.dumps(ev, indent=3).encode()  # any formatting: it is never re-serialised
    env = accepted(body)
    record = AvroCodec.for_schema("stripe_event").decode(env.encode())
    assert record == {
        "event_id": "evt_1NqXYZ",
        "type": "invoice.paid",
        "created": 1_746_057_600,
        "api_version": BASIL,
        "livemode": True,
        "account": "acct_1",
        "object_type": "invoice",
        "object_id": "in_1",
        "partition_key": "cus_A",
        "key_source": "customer",
        "received_at_ms": RECEIVED_AT_MS,
        "body": body,
        "backfill": None,  # a webhook, not a backfilled event
    }


def test_optional_fields_absent_or_of_the_wrong_type_are_null() -> None:
    ev = event("balance.available", {"object": "balance"}, api_version=20250101)
    del ev["object"]  # a top-level `object` is optional
    env = accepted(ev)
    assert (env.api_version, env.account, env.object_id) == (None, None, None)


# --- what is not a Stripe event ----------------------------------------------------------

VALID = event("invoice.paid", {"id": "in_1", "object": "invoice", "customer": "cus_A"})


def without(*path: str) -> dict[str, Any]:
    ev = json.loads(json.dumps(VALID))
    target = ev
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return ev


def with_(value: Any, *path: str) -> dict[str, Any]:
    ev = json.loads(json.dumps(VALID))
    target = ev
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return ev


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe{}", Reason.INVALID_JSON),
        (b"not json", Reason.INVALID_JSON),
        (b"", Reason.INVALID_JSON),
        (b"[" * 200_000 + b"]" * 200_000, Reason.INVALID_JSON),
        (b'{"id": NaN', Reason.NON_FINITE_NUMBER),  # Python's json would take it: refused
        (b"[]", Reason.NOT_A_STRIPE_EVENT),
        (b'"evt_1"', Reason.NOT_A_STRIPE_EVENT),
        (b"null", Reason.NOT_A_STRIPE_EVENT),
    ],
)
def test_bodies_that_are_not_json_objects(body: bytes, reason: Reason) -> None:
    result = envelope_of(body)
    assert isinstance(result, Rejected) and result.reason is reason


@pytest.mark.parametrize(
    "ev",
    [
        without("id"),
        with_(42, "id"),
        with_("", "id"),
        with_("evt_" + "x" * 252, "id"),
        without("type"),
        with_(None, "type"),
        without("created"),
        with_("1746057600", "created"),
        with_(True, "created"),
        with_(1.5, "created"),
        with_(-1, "created"),
        without("livemode"),
        with_("false", "livemode"),
        with_(0, "livemode"),
        without("data"),
        with_([], "data"),
        without("data", "object"),
        with_("in_1", "data", "object"),
        without("data", "object", "object"),
        with_(None, "data", "object", "object"),
        with_("customer", "object"),
    ],
)
def test_json_that_is_not_a_stripe_event(ev: dict[str, Any]) -> None:
    result = envelope_of(ev)
    assert isinstance(result, Rejected) and result.reason is Reason.NOT_A_STRIPE_EVENT, result


@pytest.mark.parametrize(
    ("ev", "reason"),
    [
        # A lone surrogate cannot be UTF-8 (Avro, Kafka key): refused wherever it is.
        (with_("evt_\ud800", "id"), Reason.LONE_SURROGATE),
        (with_(2**64, "created"), Reason.INTEGER_OUT_OF_RANGE),  # beyond Avro long
    ],
)
def test_unrepresentable_values_have_their_own_reason(ev: dict[str, Any], reason: Reason) -> None:
    result = envelope_of(ev)
    assert isinstance(result, Rejected) and result.reason is reason, result


def test_an_event_id_of_255_characters_is_fine() -> None:
    assert accepted(with_("evt_" + "x" * 251, "id")).event_id == "evt_" + "x" * 251


def test_thin_events_are_refused_with_their_own_reason() -> None:
    thin = {
        "id": "evt_test_65R9",
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "livemode": False,
        "created": "2024-09-17T06:20:52.246Z",
        "related_object": {"id": "mtr_1", "type": "billing.meter", "url": "/v1/billing/meters"},
    }
    result = envelope_of(thin)
    assert isinstance(result, Rejected) and result.reason is Reason.THIN_EVENT
    assert "snapshot" in result.detail


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    data_object=st.dictionaries(
        st.sampled_from(["id", "object", "customer", "payment_intent"]), json_values
    ),
    top=st.dictionaries(
        st.sampled_from(["id", "object", "type", "created", "livemode", "api_version", "account"]),
        json_values,
    ),
)
def test_any_json_gets_an_envelope_or_a_reason_never_an_exception(
    data_object: dict[str, Any], top: dict[str, Any]
) -> None:
    result = envelope_of({**VALID, **top, "data": {"object": data_object}})
    if isinstance(result, Envelope):
        AvroCodec.for_schema("stripe_event").decode(result.encode())
        assert result.key.decode() == result.partition_key
    else:
        assert isinstance(result, Rejected)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300))
def test_any_bytes_get_an_envelope_or_a_reason(body: bytes) -> None:
    assert isinstance(parse_envelope(verified(body), 0), Envelope | Rejected)
