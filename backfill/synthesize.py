"""Stripe objects older than the Events API's 30 days -> the events a webhook would have
carried. Pure: no I/O, no clock.

Each object, as the API renders it now (at the account's API version), becomes the events
that describe its current state, with the object as `data.object`:

    customer                 customer.created
    subscription             customer.subscription.created (+ .deleted when canceled)
    checkout session         checkout.session.completed (status complete)
    invoice (payments exp.)  invoice.paid (status paid)
    invoice payment          invoice_payment.paid (status paid)
    charge                   charge.succeeded (captured) (+ charge.refunded when refunded)
    refund                   refund.created (+ refund.failed / refund.updated when voided)
    dispute                  charge.dispute.created (+ charge.dispute.closed when final)

Why the current state is enough: the ledger is idempotent on Stripe object ids and keeps
cumulative facts (amount_refunded, a refund's or a dispute's status rank, invoice shares),
not deltas of events, so one snapshot of the final state yields the same rewards and
clawbacks as the whole history of webhooks, and mixes with real events of the same objects
(replayed or live) without counting twice (docs/STRIPE_FLOWS.md, streams/corrections/).

Event ids are deterministic: `evt_bf_` + a digest of (account, type, object id, object
content). Running the backfill twice on an unchanged account yields the same ids (the
worker drops the repeats); an object that changed in between gets new ids, and its new
state is applied through the object-id idempotence above.

`created` is when the state the event describes came about, as far as the object says:
paid_at for invoices and invoice payments, canceled_at for a deleted subscription, the
object's creation otherwise (a refund's failure or a dispute's closing time is not on the
object). Rewards and clawbacks are dated by it; amounts never depend on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

Json = dict[str, Any]
EVENT_ID_PREFIX = "evt_bf_"

FINAL_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})


def _created(obj: Mapping[str, Any]) -> int:
    value = obj.get("created")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _paid_at(obj: Mapping[str, Any]) -> int:
    transitions = obj.get("status_transitions")
    if isinstance(transitions, dict):
        paid_at = transitions.get("paid_at")
        if isinstance(paid_at, int) and not isinstance(paid_at, bool) and paid_at > 0:
            return paid_at
    return _created(obj)


def _customer(obj: Json) -> list[tuple[str, int]]:
    return [("customer.created", _created(obj))]


def _subscription(obj: Json) -> list[tuple[str, int]]:
    out = [("customer.subscription.created", _created(obj))]
    if obj.get("status") in ("canceled", "incomplete_expired"):
        ended = obj.get("ended_at") or obj.get("canceled_at")
        at = ended if isinstance(ended, int) and not isinstance(ended, bool) else _created(obj)
        out.append(("customer.subscription.deleted", at))
    return out


def _checkout_session(obj: Json) -> list[tuple[str, int]]:
    return (
        [("checkout.session.completed", _created(obj))] if obj.get("status") == "complete" else []
    )


def _invoice(obj: Json) -> list[tuple[str, int]]:
    return [("invoice.paid", _paid_at(obj))] if obj.get("status") == "paid" else []


def _invoice_payment(obj: Json) -> list[tuple[str, int]]:
    return [("invoice_payment.paid", _paid_at(obj))] if obj.get("status") == "paid" else []


def _charge(obj: Json) -> list[tuple[str, int]]:
    if obj.get("status") != "succeeded" or obj.get("captured") is False:
        return []  # failed or still uncaptured: no money moved
    out = [("charge.succeeded", _created(obj))]
    refunded = obj.get("amount_refunded")
    if isinstance(refunded, int) and not isinstance(refunded, bool) and refunded > 0:
        out.append(("charge.refunded", _created(obj)))
    return out


def _refund(obj: Json) -> list[tuple[str, int]]:
    out = [("refund.created", _created(obj))]
    if obj.get("status") == "failed":
        out.append(("refund.failed", _created(obj)))
    elif obj.get("status") == "canceled":
        out.append(("refund.updated", _created(obj)))
    return out


def _dispute(obj: Json) -> list[tuple[str, int]]:
    out = [("charge.dispute.created", _created(obj))]
    if obj.get("status") in FINAL_DISPUTE_STATUSES:
        out.append(("charge.dispute.closed", _created(obj)))
    return out


# By the API object name (`object` of what the list returns).
_RULES: dict[str, Callable[[Json], list[tuple[str, int]]]] = {
    "customer": _customer,
    "subscription": _subscription,
    "checkout.session": _checkout_session,
    "invoice": _invoice,
    "invoice_payment": _invoice_payment,
    "charge": _charge,
    "refund": _refund,
    "dispute": _dispute,
}


def event_id(account: str | None, type_: str, obj: Mapping[str, Any]) -> str:
    """`evt_bf_` + 32 hex digits of sha256 over (account, type, object id, object JSON)."""
    content = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(
        "\x1f".join((account or "", type_, str(obj.get("id")), content)).encode("utf-8")
    )
    return EVENT_ID_PREFIX + digest.hexdigest()[:32]


def events_for(obj: Json, *, api_version: str, account: str | None) -> list[Json]:
    """The events that describe `obj`'s current state (none for an unknown object type or
    a state that moved no money and carries no referral, e.g. a failed charge)."""
    rule = _RULES.get(str(obj.get("object")))
    if rule is None:
        return []
    livemode = obj.get("livemode")
    events = []
    for type_, created in rule(obj):
        event: Json = {
            "id": event_id(account, type_, obj),
            "object": "event",
            "api_version": api_version,
            "created": created,
            "data": {"object": obj},
            "livemode": livemode if isinstance(livemode, bool) else False,
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        if account is not None:
            event["account"] = account
        events.append(event)
    return events


def supported_objects() -> frozenset[str]:
    return frozenset(_RULES)
