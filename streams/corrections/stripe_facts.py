"""Read refund and dispute facts out of raw Stripe event dicts (both API families).

Only the few fields the correction core needs are read, defensively: ids may be expanded
objects, optional fields may be missing or null. An event of another type gives None; an
event of a handled type without the fields it must have raises CorrectionInputError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.corrections.errors import CorrectionInputError
from streams.corrections.refs import DisputeFact, PaymentLink, RefundFact

BASIL_DATE = "2025-03-31"

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
    if type(value) is str:  # the usual case, before the costlier ABC check
        return value or None
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


def _time(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
        amount = _amount(obj, "amount", event_id)
        captured = _amount(obj, "amount_captured", event_id)
        if captured is None and amount is not None and obj.get("captured") is not False:
            captured = amount  # very old versions: a captured charge captured everything
        refunded = _amount(obj, "amount_refunded", event_id) or 0
        # An uncaptured authorisation (captured: false) says nothing yet about what will be
        # captured or released: only captured snapshots carry those amounts.
        is_captured = obj.get("captured") is not False
        release = 0
        if is_captured and not _basil(event) and amount is not None and captured is not None:
            # Before basil, releasing the uncaptured remainder created a Refund and grew
            # amount_refunded although the customer got nothing back (STRIPE.md).
            release = max(0, amount - captured)
        previous = _previous(event).get("amount_refunded")
        decreased = isinstance(previous, int) and previous > refunded
        return RefundFact(
            charge_id=charge_id,
            payment_intent_id=_id(obj.get("payment_intent")),
            refunded_total_minor=refunded,
            refund_id=None,
            refund_amount_minor=None,
            counts=True,
            currency=currency,
            event_id=event_id,
            occurred_at=created,
            amount_captured_minor=(
                captured if is_captured and obj.get("status") == "succeeded" else None
            ),
            release_minor=release,
            decreased=decreased,
            charge_created=_time(obj.get("created")),
        )
    refund_id, charge_id = _id(obj.get("id")), _id(obj.get("charge"))
    if refund_id is None or charge_id is None:
        raise CorrectionInputError(f"event {event_id}: refund without its id or charge")
    amount = _amount(obj, "amount", event_id)
    if amount is None:
        raise CorrectionInputError(f"event {event_id}: refund without an amount")
    status = obj.get("status") if isinstance(obj.get("status"), str) else None
    refund_created = obj.get("created")
    return RefundFact(
        charge_id=charge_id,
        payment_intent_id=_id(obj.get("payment_intent")),
        refunded_total_minor=None,
        refund_id=refund_id,
        refund_amount_minor=amount,
        counts=kind != "refund.failed" and status not in _VOID_REFUND_STATUSES,
        currency=currency,
        event_id=event_id,
        occurred_at=created,
        refund_status=status,
        refund_created=refund_created if isinstance(refund_created, int) else None,
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
    currency = obj.get("currency")
    return DisputeFact(
        dispute_id=dispute_id,
        charge_id=charge_id,
        payment_intent_id=_id(obj.get("payment_intent")),
        status=status,
        event_id=event_id,
        occurred_at=created,
        amount_minor=_amount(obj, "amount", event_id),
        currency=currency.lower() if isinstance(currency, str) else None,
    )


def link_facts(event: Mapping[str, Any]) -> list[PaymentLink]:
    """Invoice <-> payment links an event reveals (docs/STRIPE_FLOWS.md §2): the
    invoice_payment of invoice_payment.*, an invoice's `payments` (when included) or its
    pre-basil `charge`/`payment_intent`, and a pre-basil charge's `invoice`."""
    kind = event.get("type")
    if not isinstance(kind, str):
        return []
    if not kind.startswith(("invoice_payment.", "invoice.", "charge.")):
        return []
    event_id, created, obj = _envelope(event)
    out: list[PaymentLink] = []

    def add(invoice: Any, payment: Mapping[str, Any], share: int | None) -> None:
        invoice_id = _id(invoice)
        pi, charge = _id(payment.get("payment_intent")), _id(payment.get("charge"))
        if invoice_id and (pi or charge):
            out.append(PaymentLink(invoice_id, pi, charge, share, event_id, created))

    object_type = obj.get("object")
    if object_type == "invoice_payment":
        payment = obj.get("payment")
        if isinstance(payment, Mapping) and obj.get("status") != "canceled":
            add(obj.get("invoice"), payment, _amount(obj, "amount_paid", event_id))
    elif object_type == "invoice":
        payments = obj.get("payments")
        rows = payments.get("data") if isinstance(payments, Mapping) else None
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, Mapping) and row.get("status") != "canceled":
                payment = row.get("payment")
                if isinstance(payment, Mapping):
                    add(obj.get("id"), payment, _amount(row, "amount_paid", event_id))
        if not out:
            add(obj.get("id"), obj, None)  # pre-basil invoice.charge / payment_intent
    elif object_type == "charge" and obj.get("invoice"):
        add(obj.get("invoice"), {"charge": obj.get("id"), **_pi(obj)}, None)
    return out


def _pi(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"payment_intent": obj.get("payment_intent")}


def _basil(event: Mapping[str, Any]) -> bool:
    version = event.get("api_version")
    return isinstance(version, str) and version[:10] >= BASIL_DATE


def _previous(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    previous = data.get("previous_attributes") if isinstance(data, Mapping) else None
    return previous if isinstance(previous, Mapping) else {}
