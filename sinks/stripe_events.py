"""stripe.events (stripe_event.avsc) -> table `stripe_events`: the raw body plus columns.

The body is whatever Stripe sent (and the ingress verified), in either API-version family
(STRIPE.md), so extraction is defensive: a missing or oddly typed field becomes '' or 0, an
unparsable body is kept with `body_error` set. Nothing here raises on a body.

Money columns (`money_kind`, `money_key`, `money_minor`) name the one money fact an event
carries, if any; the `revenue_entries` view turns them into signed revenue:
- invoice: invoice.paid / invoice.payment_succeeded, key the invoice (both events of one
  invoice are one fact), the money paid through Stripe (docs/STRIPE_FLOWS.md §1:
  amount_paid - amount_paid_off_stripe; nothing for a pre-basil paid_out_of_band invoice;
  amount_due of a paid invoice older than amount_paid);
- charge: charge.succeeded / charge.captured of a charge that belongs to no invoice (before
  basil `charge.invoice` says so; from basil the view drops charges an invoice lists among
  its `payments`, see `payment_refs`), amount captured;
- refund: charge.refunded, and charge.updated when amount_refunded changed, key the
  charge, the running customer refund total: `amount_refunded` less a pre-basil partial
  capture's released remainder; `money_seq` orders the snapshots (a refund that failed
  brings the total back down, and in the same second the lower snapshot is the later);
- dispute_lost: charge.dispute.closed with status lost, the disputed amount.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from refstream.topics import STRIPE_EVENTS
from sinks.rows import Row, TableSpec, millis, seconds, text

COLUMNS = (
    "event_id", "type", "created", "api_version", "livemode", "account", "object_type",
    "object_id", "partition_key", "key_source", "received_at", "customer_id", "customer_key",
    "currency", "amount_minor", "amount_refunded_minor", "invoice_id", "charge_id",
    "payment_intent_id", "subscription_id", "status", "payment_refs", "money_kind",
    "money_key", "money_minor", "body", "body_error", "money_seq",
)  # fmt: skip

_INT64 = 2**63
# Which field holds "the amount" of each object type.
_AMOUNT_FIELD = {
    "invoice": "amount_paid",
    "charge": "amount",
    "refund": "amount",
    "dispute": "amount",
    "payment_intent": "amount",
    "checkout.session": "amount_total",
    "credit_note": "total",
    "invoice_payment": "amount_paid",
}


# Bodies with more brackets than this are parsed by json alone: json refuses nesting
# deeper than about the recursion limit (RecursionError, kept as body_error), orjson
# parses up to 1,024 levels, and the same body must give the same columns either way.
_ORJSON_MAX_BRACKETS = 500


def loads(body: bytes) -> Any:
    """`json.loads(body)`, faster (orjson: about 3x on Stripe bodies), with json's answer.

    What orjson refuses, json decides, as before: lone surrogate escapes (which
    ClickHouse then refuses, making the event a dead letter), NaN and Infinity, a BOM,
    UTF-16/32 bodies, invalid UTF-8 (json's own error type is the one kept). Where both
    parse, they agree, except an integer outside [-2^63, 2^64): orjson makes it a float,
    json an int, and every number a column takes goes through `_int`, which maps both to 0.
    """
    if body.count(b"[") + body.count(b"{") <= _ORJSON_MAX_BRACKETS:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


def parse_body(body: bytes) -> tuple[dict[str, Any], str]:
    """(event dict, '') or ({}, what is wrong)."""
    try:
        event = loads(body)
    except (ValueError, RecursionError) as exc:  # not UTF-8/JSON, too deep, too big a number
        return {}, f"body is not JSON: {type(exc).__name__}"[:500]
    if not isinstance(event, dict):
        return {}, "body is not a JSON object"
    return event, ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ref(value: Any) -> str:
    """A Stripe reference: an id string, or an expanded object carrying its id."""
    if isinstance(value, dict):
        return text(value.get("id"))
    return text(value)


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64:
        return value
    return 0


def _own_or_ref(obj: dict[str, Any], object_type: str, wanted: str, field: str) -> str:
    return text(obj.get("id")) if object_type == wanted else _ref(obj.get(field))


def payment_refs(obj: dict[str, Any], object_type: str) -> list[str]:
    """Charges and payment intents that an invoice (or invoice payment) says it was paid by."""
    refs: list[str] = []
    if object_type == "invoice":
        refs += [_ref(obj.get("charge")), _ref(obj.get("payment_intent"))]  # before basil
        payments = _dict(obj.get("payments")).get("data")
        for item in payments if isinstance(payments, list) else []:
            payment = _dict(_dict(item).get("payment"))
            refs += [_ref(payment.get("charge")), _ref(payment.get("payment_intent"))]
    elif object_type == "invoice_payment":
        payment = _dict(obj.get("payment"))
        refs += [_ref(payment.get("charge")), _ref(payment.get("payment_intent"))]
    return sorted({ref for ref in refs if ref})


def _invoice_money(obj: dict[str, Any]) -> int:
    if obj.get("paid_out_of_band") is True:
        return 0
    paid = obj.get("amount_paid")
    if paid is None and obj.get("paid") is True:  # before 2018-02-28
        paid = obj.get("amount_due")
    return max(0, _int(paid) - _int(obj.get("amount_paid_off_stripe")))


def _customer_refunded(obj: dict[str, Any], api_version: str) -> int:
    refunded = _int(obj.get("amount_refunded"))
    if api_version[:10] < "2025-03-31" and "amount_captured" in obj:
        # Before basil the released remainder of a partial capture counted as refunded.
        refunded -= max(0, _int(obj.get("amount")) - _int(obj.get("amount_captured")))
    return max(0, refunded)


def money_fact(
    event_type: str,
    obj: dict[str, Any],
    object_type: str,
    api_version: str = "",
    previous: dict[str, Any] | None = None,
) -> tuple[str, str, int]:
    """(money_kind, money_key, money_minor) of the event, or ('', '', 0)."""
    object_id = text(obj.get("id"))
    if not object_id:
        return "", "", 0
    if event_type in ("invoice.paid", "invoice.payment_succeeded") and object_type == "invoice":
        return "invoice", f"invoice:{object_id}", _invoice_money(obj)
    if event_type in ("charge.succeeded", "charge.captured") and object_type == "charge":
        if _ref(obj.get("invoice")) or obj.get("captured") is False:
            return "", "", 0
        captured = _int(obj.get("amount_captured"))
        return "charge", f"charge:{object_id}", captured or _int(obj.get("amount"))
    refund_snapshot = event_type == "charge.refunded" or (
        event_type == "charge.updated" and "amount_refunded" in (previous or {})
    )
    if refund_snapshot and object_type == "charge":
        return "refund", f"refund:{object_id}", _customer_refunded(obj, api_version)
    if event_type == "charge.dispute.closed" and obj.get("status") == "lost":
        return "dispute_lost", f"dispute:{object_id}", _int(obj.get("amount"))
    return "", "", 0


def _subscription(obj: dict[str, Any], object_type: str) -> str:
    if object_type == "subscription":
        return text(obj.get("id"))
    parent = _dict(_dict(obj.get("parent")).get("subscription_details"))
    return _ref(obj.get("subscription")) or _ref(parent.get("subscription"))  # old or basil


def to_row(r: Mapping[str, Any]) -> Row:
    body: bytes = r["body"]
    event, body_error = parse_body(body)
    obj = _dict(_dict(event.get("data")).get("object"))
    object_type = r["object_type"]
    customer_id = _own_or_ref(obj, object_type, "customer", "customer")
    payment_intent_id = _own_or_ref(obj, object_type, "payment_intent", "payment_intent")
    previous = _dict(_dict(event.get("data")).get("previous_attributes"))
    money_kind, money_key, money_minor = money_fact(
        r["type"], obj, object_type, text(r["api_version"]), previous
    )
    decrease = _int(previous.get("amount_refunded")) > _int(obj.get("amount_refunded"))
    money_seq = _int(r["created"]) * 2 + (1 if decrease else 0)
    return (
        r["event_id"], r["type"], seconds(r, "created"), text(r["api_version"]), r["livemode"],
        text(r["account"]), object_type, text(r["object_id"]), r["partition_key"],
        r["key_source"], millis(r["received_at_ms"], "received_at_ms"), customer_id,
        customer_id or payment_intent_id, text(obj.get("currency")).lower(),
        _int(obj.get(_AMOUNT_FIELD.get(object_type, ""))), _int(obj.get("amount_refunded")),
        _own_or_ref(obj, object_type, "invoice", "invoice"),
        _own_or_ref(obj, object_type, "charge", "charge"), payment_intent_id,
        _subscription(obj, object_type), text(obj.get("status")),
        payment_refs(obj, object_type), money_kind, money_key, money_minor, body, body_error,
        money_seq,
    )  # fmt: skip


SPEC = TableSpec(STRIPE_EVENTS, "stripe_event", "stripe_events", COLUMNS, to_row)
