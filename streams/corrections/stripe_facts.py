"""Read refund and dispute facts out of raw Stripe event dicts (both API families).

Only the few fields the correction core needs are read, defensively: ids may be expanded
objects, optional fields may be missing or null. An event of another type gives None; an
event of a handled type without the fields it must have raises CorrectionInputError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.corrections.errors import CorrectionInputError
from streams.corrections.refs import DisputeFact, RefundFact

CHARGE_REFUND_EVENTS = frozenset({"charge.refunded", "charge.updated", "charge.succeeded"})
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
DISPUTE_EVENTS = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
# A refund in these states moved no money (or moved it back).
_VOID_REFUND_STATUSES = frozenset({"failed", "canceled"})


def _id(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object carrying `id`."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _envelope(event: Mapping[str, Any]) -> tuple[str, int, Mapping[str, Any]]:
    event_id = event.get("id")
    created = event.get("created")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(event_id, str) or not event_id:
        raise CorrectionInputError("event without an id")
    if not isinstance(created, int) or isinstance(created, bool):
        raise CorrectionInputError(f"event {event_id}: created is not unix seconds")
    if not isinstance(obj, Mapping):
        raise CorrectionInputError(f"event {event_id}: data.object is missing")
    return event_id, created, obj


def _amount(obj: Mapping[str, Any], key: str, event_id: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorrectionInputError(f"event {event_id}: {key} is not a non-negative integer")
    return value


def refund_fact(event: Mapping[str, Any]) -> RefundFact | None:
    """Refund progress from charge.refunded (cumulative) or refund.* (one refund)."""
    kind = event.get("type")
    if kind not in CHARGE_REFUND_EVENTS and kind not in REFUND_EVENTS:
        return None
    event_id, created, obj = _envelope(event)
    currency = obj.get("currency") if isinstance(obj.get("currency"), str) else None
    if kind in CHARGE_REFUND_EVENTS:
        charge_id = _id(obj.get("id"))
        if charge_id is None:
            raise CorrectionInputError(f"event {event_id}: charge without an id")
        return RefundFact(
            charge_id=charge_id,
            payment_intent_id=_id(obj.get("payment_intent")),
            refunded_total_minor=_amount(obj, "amount_refunded", event_id) or 0,
            refund_id=None,
            refund_amount_minor=None,
            counts=True,
            currency=currency,
            event_id=event_id,
            occurred_at=created,
        )
    refund_id, charge_id = _id(obj.get("id")), _id(obj.get("charge"))
    if refund_id is None or charge_id is None:
        raise CorrectionInputError(f"event {event_id}: refund without its id or charge")
    amount = _amount(obj, "amount", event_id)
    if amount is None:
        raise CorrectionInputError(f"event {event_id}: refund without an amount")
    return RefundFact(
        charge_id=charge_id,
        payment_intent_id=_id(obj.get("payment_intent")),
        refunded_total_minor=None,
        refund_id=refund_id,
        refund_amount_minor=amount,
        counts=kind != "refund.failed" and obj.get("status") not in _VOID_REFUND_STATUSES,
        currency=currency,
        event_id=event_id,
        occurred_at=created,
    )


def dispute_fact(event: Mapping[str, Any]) -> DisputeFact | None:
    """A dispute observation; its status says open, won, lost (see payments.py)."""
    kind = event.get("type")
    if kind not in DISPUTE_EVENTS:
        return None
    event_id, created, obj = _envelope(event)
    dispute_id, charge_id = _id(obj.get("id")), _id(obj.get("charge"))
    status = obj.get("status")
    if dispute_id is None or charge_id is None or not isinstance(status, str):
        raise CorrectionInputError(f"event {event_id}: dispute without id, charge or status")
    return DisputeFact(
        dispute_id=dispute_id,
        charge_id=charge_id,
        payment_intent_id=_id(obj.get("payment_intent")),
        status=status,
        event_id=event_id,
        occurred_at=created,
    )
