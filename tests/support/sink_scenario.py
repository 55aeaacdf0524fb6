"""A small, hand-checked stream for the sink tests: the records of every topic, as the
workers and the ingress would produce them, and the totals a person computed from them.

Customers (test mode, usd, unless said):
- cus_A, referred by alice: invoice in_A1 10000 on D1 (basil shape; its charge ch_A1 also
  arrives as charge.succeeded, and invoice.payment_succeeded duplicates invoice.paid);
  ch_A1 refunded to 2500 on D2 then to 4000 on D3 (the D3 event delivered twice);
  invoice in_A2 5000 on D2 (pre-basil shape, its charge ch_A2 names the invoice).
- cus_B, referred by bob: standalone charge ch_B1 3000 on D1; dispute dp_B1 lost on D3.
- cus_O organic: invoice in_O1 7000 on D1.   - cus_U no attribution: invoice in_U1 2000 D2.
- guest pi_G (no customer), referred by alice at checkout: charge ch_G 1500 on D1.
- cus_E live eur, referred by alice: invoice in_E1 9000 on D1.
Rewards: alice rw_A1 2000 (pending), rw_A2 1000 (payable), rw_G 300 (payable on D2);
bob rw_B1 600 (payable, paid on D2); alice live eur rw_E1 1800 (pending).
A payout naming rw_A2 is rejected on D3 (its status does not change).
Clawbacks: rw_A1 -500 (D2) and -300 (D3), cancel mode; rw_A2 -1000 dispute opened D2 and
+1000 reinstated D3; rw_B1 -600 dispute lost D3, negative_balance (it was paid).
"""

from __future__ import annotations

import json
from typing import Any

from refstream.avro_codec import AvroCodec
from refstream.topics import (
    ATTRIBUTIONS,
    CLAWBACKS,
    LIFECYCLE,
    PAYOUTS,
    REWARD_STATUS,
    REWARDS,
    STRIPE_EVENTS,
    STRIPE_EVENTS_DLQ,
)

D1 = 1_772_323_200  # 2026-03-01 00:00:00 UTC
D2 = D1 + 86_400
D3 = D2 + 86_400
DAY1, DAY2, DAY3 = "2026-03-01", "2026-03-02", "2026-03-03"


def stripe_event(
    event_id: str, event_type: str, created: int, obj: dict[str, Any], *, live: bool = False
) -> dict[str, Any]:
    """The stripe_event.avsc record the ingress would publish for this webhook."""
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": live,
        "api_version": "2026-10-28.endive",
        "data": {"object": obj},
    }
    customer = obj.get("customer") or obj.get("payment_intent") or obj.get("id")
    return {
        "event_id": event_id,
        "type": event_type,
        "created": created,
        "api_version": "2026-10-28.endive",
        "livemode": live,
        "account": None,
        "object_type": obj["object"],
        "object_id": obj.get("id"),
        "partition_key": str(customer),
        "key_source": "customer",
        "received_at_ms": created * 1000 + 250,
        "body": json.dumps(body).encode(),
    }


def _invoice(
    invoice_id: str,
    customer: str,
    amount: int,
    *,
    currency: str = "usd",
    payments: list[tuple[str, str]] = (),
    charge: str | None = None,
) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "currency": currency,
        "amount_paid": amount,
        "amount_due": amount,
        "status": "paid",
        "charge": charge,
        "payments": {
            "data": [
                {"payment": {"type": "charge", "charge": ch, "payment_intent": pi}}
                for ch, pi in payments
            ]
        },
    }


def _charge(
    charge_id: str,
    customer: str | None,
    amount: int,
    *,
    pi: str,
    invoice: str | None = None,
    refunded: int = 0,
) -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "customer": customer,
        "currency": "usd",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "captured": True,
        "payment_intent": pi,
        "invoice": invoice,
        "status": "succeeded",
    }


def stripe_events() -> list[dict[str, Any]]:
    refunded_d3 = stripe_event(
        "evt_ref2",
        "charge.refunded",
        D3,
        _charge("ch_A1", "cus_A", 10000, pi="pi_A1", refunded=4000),
    )
    return [
        stripe_event(
            "evt_inA1",
            "invoice.paid",
            D1,
            _invoice("in_A1", "cus_A", 10000, payments=[("ch_A1", "pi_A1")]),
        ),
        stripe_event(
            "evt_inA1s",
            "invoice.payment_succeeded",
            D1 + 1,
            _invoice("in_A1", "cus_A", 10000, payments=[("ch_A1", "pi_A1")]),
        ),
        stripe_event(
            "evt_chA1", "charge.succeeded", D1, _charge("ch_A1", "cus_A", 10000, pi="pi_A1")
        ),
        stripe_event(
            "evt_ref1",
            "charge.refunded",
            D2,
            _charge("ch_A1", "cus_A", 10000, pi="pi_A1", refunded=2500),
        ),
        refunded_d3,
        dict(refunded_d3, received_at_ms=refunded_d3["received_at_ms"] + 5000),  # redelivery
        stripe_event(
            "evt_inA2", "invoice.paid", D2, _invoice("in_A2", "cus_A", 5000, charge="ch_A2")
        ),
        stripe_event(
            "evt_chA2",
            "charge.succeeded",
            D2,
            _charge("ch_A2", "cus_A", 5000, pi="pi_A2", invoice="in_A2"),
        ),
        stripe_event(
            "evt_chB1", "charge.succeeded", D1, _charge("ch_B1", "cus_B", 3000, pi="pi_B1")
        ),
        stripe_event(
            "evt_dpB1",
            "charge.dispute.closed",
            D3,
            {
                "id": "dp_B1",
                "object": "dispute",
                "charge": "ch_B1",
                "payment_intent": "pi_B1",
                "amount": 3000,
                "currency": "usd",
                "status": "lost",
            },
        ),
        stripe_event("evt_inO1", "invoice.paid", D1, _invoice("in_O1", "cus_O", 7000)),
        stripe_event("evt_inU1", "invoice.paid", D2, _invoice("in_U1", "cus_U", 2000)),
        stripe_event("evt_chG", "charge.succeeded", D1, _charge("ch_G", None, 1500, pi="pi_G")),
        stripe_event(
            "evt_inE1",
            "invoice.paid",
            D1,
            _invoice("in_E1", "cus_E", 9000, currency="eur"),
            live=True,
        ),
        stripe_event(
            "evt_cus",
            "customer.created",
            D1,
            {"id": "cus_A", "object": "customer", "metadata": {"cello_ucc": "alice"}},
        ),
    ]


def _attribution(
    customer_key: str,
    code: str | None,
    kind: str,
    source: str,
    *,
    live: bool = False,
    customer_id: str | None = None,
) -> dict[str, Any]:
    return {
        "attribution_id": f"{kind}:{customer_key}",
        "kind": kind,
        "customer_key": customer_key,
        "customer_id": customer_id,
        "referral_code": code,
        "new_user_id": None,
        "new_user_organization_id": None,
        "source": source,
        "source_object_id": customer_key,
        "event_id": f"evt_attr_{customer_key}",
        "event_type": "customer.created",
        "attributed_at": D1 - 60,
        "livemode": live,
    }


def attributions() -> list[dict[str, Any]]:
    return [
        _attribution("cus_A", "alice", "attribution", "customer_metadata", customer_id="cus_A"),
        _attribution("cus_B", "bob", "attribution", "subscription_metadata", customer_id="cus_B"),
        _attribution("cus_O", None, "organic", "none", customer_id="cus_O"),
        _attribution("pi_G", "alice", "attribution", "checkout_payment_intent_data"),
        _attribution(
            "cus_E", "alice", "attribution", "customer_metadata", live=True, customer_id="cus_E"
        ),
        # a later, different code for cus_A: recorded, never applied
        dict(
            _attribution("cus_A", "mallory", "conflict", "invoice_line", customer_id="cus_A"),
            attribution_id="conflict:cus_A:mallory",
        ),
    ]


def _reward(
    reward_id: str,
    code: str,
    customer_key: str,
    payment: int,
    reward: int,
    paid_at: int,
    status: str,
    *,
    currency: str = "usd",
    live: bool = False,
) -> dict[str, Any]:
    return {
        "reward_id": reward_id,
        "line": "invoice",
        "referral_code": code,
        "customer_key": customer_key,
        "customer_id": customer_key,
        "new_user_id": None,
        "new_user_organization_id": None,
        "invoice_id": None,
        "charge_id": None,
        "payment_intent_id": None,
        "subscription_id": None,
        "payment_amount_minor": payment,
        "base_amount_minor": payment,
        "reward_amount_minor": reward,
        "currency": currency,
        "rate": "0.20",
        "basis": "gross",
        "tenure_month": 1,
        "program_id": "default",
        "program_version": 1,
        "livemode": live,
        "status": status,
        "hold_until": paid_at + 30 * 86_400,
        "paid_at": paid_at,
        "source_event_id": f"evt_{reward_id}",
        "decided_at": paid_at,
    }


def rewards() -> list[dict[str, Any]]:
    return [
        _reward("rw_A1", "alice", "cus_A", 10000, 2000, D1, "pending"),
        _reward("rw_A2", "alice", "cus_A", 5000, 1000, D2, "payable"),
        _reward("rw_G", "alice", "pi_G", 1500, 300, D1, "pending"),
        _reward("rw_B1", "bob", "cus_B", 3000, 600, D1, "payable"),
        _reward("rw_E1", "alice", "cus_E", 9000, 1800, D1, "pending", currency="eur", live=True),
    ]


def _clawback(
    clawback_id: str,
    reward_id: str,
    code: str,
    kind: str,
    reason: str,
    mode: str,
    amount: int,
    at: int,
) -> dict[str, Any]:
    return {
        "clawback_id": clawback_id,
        "reward_id": reward_id,
        "kind": kind,
        "reason": reason,
        "mode": mode,
        "referral_code": code,
        "customer_key": "cus",
        "amount_minor": amount,
        "currency": "usd",
        "livemode": False,
        "charge_id": None,
        "refund_id": None,
        "dispute_id": None,
        "refunded_total_minor": None,
        "source_event_id": f"evt_{clawback_id}",
        "occurred_at": at,
    }


def clawbacks() -> list[dict[str, Any]]:
    return [
        _clawback("cb_A1a", "rw_A1", "alice", "clawback", "refund", "cancel", 500, D2),
        _clawback("cb_A1b", "rw_A1", "alice", "clawback", "refund", "cancel", 300, D3),
        _clawback("cb_A2d", "rw_A2", "alice", "clawback", "dispute", "cancel", 1000, D2),
        _clawback("cb_A2w", "rw_A2", "alice", "reinstatement", "dispute", "cancel", 1000, D3),
        _clawback("cb_B1", "rw_B1", "bob", "clawback", "dispute", "negative_balance", 600, D3),
    ]


def _status(
    reward_id: str,
    code: str,
    status: str,
    previous: str,
    amount: int,
    at: int,
    payout: str | None = None,
) -> dict[str, Any]:
    return {
        "status_id": f"{reward_id}:{status}",
        "reward_id": reward_id,
        "referral_code": code,
        "status": status,
        "previous_status": previous,
        "amount_minor": amount,
        "currency": "usd",
        "livemode": False,
        "payout_id": payout,
        "reason": None,
        "effective_at": at,
    }


def statuses() -> list[dict[str, Any]]:
    return [
        _status("rw_G", "alice", "payable", "pending", 300, D2),
        _status("rw_B1", "bob", "paid", "payable", 600, D2, payout="po_1"),
        # a payout naming rw_A2 was rejected: the reward stays payable
        dict(
            _status("rw_A2", "alice", "payout_rejected", "payable", 1000, D3, payout="po_2"),
            rejection_code="amount_mismatch",
        ),
    ]


def payouts() -> list[dict[str, Any]]:
    return [
        {
            "payout_id": "po_1",
            "referral_code": "bob",
            "reward_ids": ["rw_B1"],
            "amount_minor": 600,
            "currency": "usd",
            "livemode": False,
            "paid_at": D2,
        }
    ]


def lifecycle() -> list[dict[str, Any]]:
    return [
        {
            "lifecycle_id": "evt_sub:created",
            "customer_key": "cus_A",
            "referral_code": "alice",
            "subscription_id": "sub_A",
            "change": "created",
            "status": "active",
            "previous_amount_minor": None,
            "amount_minor": 5000,
            "currency": "usd",
            "interval": "month",
            "livemode": False,
            "source_event_id": "evt_sub",
            "occurred_at": D1,
        }
    ]


def dead_letters() -> list[dict[str, Any]]:
    return [
        {
            "dead_letter_id": "stripe.events:0:7:worker",
            "stage": "worker",
            "source_topic": "stripe.events",
            "source_partition": 0,
            "source_offset": 7,
            "key": b"cus_X",
            "value": b"\x00garbage",
            "event_id": None,
            "error_type": "AvroDecodeError",
            "error": "not an Avro record",
            "failed_at_ms": D1 * 1000,
        }
    ]


# topic -> (schema, records, key field)
RECORDS = {
    STRIPE_EVENTS: ("stripe_event", stripe_events, "partition_key"),
    ATTRIBUTIONS: ("attribution", attributions, "customer_key"),
    REWARDS: ("reward", rewards, "referral_code"),
    CLAWBACKS: ("clawback", clawbacks, "referral_code"),
    REWARD_STATUS: ("reward_status", statuses, "referral_code"),
    PAYOUTS: ("payout", payouts, "referral_code"),
    LIFECYCLE: ("lifecycle", lifecycle, "customer_key"),
    STRIPE_EVENTS_DLQ: ("dead_letter", dead_letters, "dead_letter_id"),
}


def complete(schema: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with the declared default of every field it does not set (fields added to
    the schema later than this scenario was written)."""
    fields = AvroCodec.for_schema(schema).schema.fields
    return {f.name: record[f.name] if f.name in record else f.default for f in fields}


def encoded_records() -> list[tuple[str, bytes, bytes]]:
    """(topic without prefix, key, Avro value) for every record of the scenario."""
    out = []
    for topic, (schema, make, key_field) in RECORDS.items():
        codec = AvroCodec.for_schema(schema)
        for record in make():
            out.append(
                (topic, str(record[key_field]).encode(), codec.encode(complete(schema, record)))
            )
    return out


# ---- what a person computed from the stream above -------------------------------------

# Distinct rows per table (the stream holds one redelivered Stripe event).
EXPECTED_COUNTS = {
    "stripe_events": 14,
    "attributions": 6,
    "rewards": 5,
    "clawbacks": 5,
    "reward_status": 3,
    "payouts": 1,
    "lifecycle": 1,
    "dead_letters": 1,
}

# referral_code, currency, mode -> rewards, pending, payable, paid, clawed_back, earned, net
EXPECTED_BALANCES = {
    ("alice", "usd", "test"): (3300, 1200, 1300, 0, 800, 2500, 2500),
    ("alice", "eur", "live"): (1800, 1800, 0, 0, 0, 1800, 1800),
    ("bob", "usd", "test"): (600, 0, 0, 600, 600, 0, -600),
}

# referral_code, day, currency, mode -> referred revenue, rewards, clawbacks, net
EXPECTED_DAILY = {
    ("alice", DAY1, "usd", "test"): (11500, 2300, 0, 2300),
    ("alice", DAY2, "usd", "test"): (2500, 1000, -1500, -500),
    ("alice", DAY3, "usd", "test"): (-1500, 0, 700, 700),
    ("alice", DAY1, "eur", "live"): (9000, 1800, 0, 1800),
    ("bob", DAY1, "usd", "test"): (3000, 600, 0, 600),
    ("bob", DAY3, "usd", "test"): (-3000, 0, -600, -600),
}

# customer_key, currency, mode -> attribution, referral_code, first paid day, revenue, referred
EXPECTED_CUSTOMERS = {
    ("cus_A", "usd", "test"): ("referred", "alice", DAY1, 11000, 11000),
    ("cus_B", "usd", "test"): ("referred", "bob", DAY1, 0, 0),
    ("cus_O", "usd", "test"): ("organic", "", DAY1, 7000, 0),
    ("cus_U", "usd", "test"): ("unattributed", "", DAY2, 2000, 0),
    ("pi_G", "usd", "test"): ("referred", "alice", DAY1, 1500, 1500),
    ("cus_E", "eur", "live"): ("referred", "alice", DAY1, 9000, 9000),
}

# currency, mode -> referred, organic, unattributed, total
EXPECTED_SPLIT = {
    ("eur", "live"): (9000, 0, 0, 9000),
    ("usd", "test"): (12500, 7000, 2000, 21500),
}
