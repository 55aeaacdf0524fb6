"""Lifecycle records (schemas/lifecycle.avsc) from customer.subscription.* events.

One event can yield several changes: created; plan_changed (the set of prices changed);
amount_changed (the recurring amount per period changed); cancel_scheduled /
cancel_unscheduled (cancel_at_period_end or cancel_at set or cleared); status_changed;
canceled (customer.subscription.deleted). Renewals (only the period moved) yield nothing.

"Before" is the object with `data.previous_attributes` laid over it, as Stripe sends only
the changed fields. Both API families are read: subscription items (`items.data[]` with
`price`, or the older `plan`), and the single-plan shape (`plan` + `quantity` on the
subscription itself). The recurring amount is the sum over licensed items of unit_amount x
quantity (unit_amount_decimal rounded ROUND_HALF_UP when that is all there is); metered
items add nothing (their amount is not known in advance); a tiered price makes the amount
unknown (null). Discounts and taxes are not applied: it is the list recurring amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from streams.corrections.errors import CorrectionInputError

EVENT_TYPES = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)


def lifecycle_records(
    event: Mapping[str, Any], referral_code: str | None = None
) -> list[dict[str, Any]]:
    """The lifecycle records of one subscription event (empty for other event types)."""
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        return []
    event_id, created = event.get("id"), event.get("created")
    raw_data = event.get("data")
    data: Mapping[str, Any] = raw_data if isinstance(raw_data, Mapping) else {}
    obj = data.get("object")
    if not isinstance(event_id, str) or not event_id:
        raise CorrectionInputError("subscription event without an id")
    if not isinstance(created, int) or isinstance(created, bool):
        raise CorrectionInputError(f"event {event_id}: created is not unix seconds")
    if not isinstance(obj, Mapping):
        raise CorrectionInputError(f"event {event_id}: data.object is missing")
    subscription_id, customer = _id(obj.get("id")), _id(obj.get("customer"))
    if subscription_id is None or customer is None:
        raise CorrectionInputError(f"event {event_id}: subscription without id or customer")
    previous = data.get("previous_attributes")
    previous = previous if isinstance(previous, Mapping) else {}
    before = {**obj, **previous}

    items, items_before = _items(obj), _before_items(obj, previous, before)
    amount, amount_before = _amount(items), _amount(items_before)
    prices, prices_before = _price_ids(items), _price_ids(items_before)
    changes: list[str] = []
    if kind == "customer.subscription.created":
        changes.append("created")
    if prices_before and prices and prices_before != prices:
        changes.append("plan_changed")
    if amount is not None and amount_before is not None and amount != amount_before:
        changes.append("amount_changed")
    if "cancel_at_period_end" in previous or "cancel_at" in previous:
        now_scheduled, was_scheduled = _cancel_scheduled(obj), _cancel_scheduled(before)
        if now_scheduled != was_scheduled:
            changes.append("cancel_scheduled" if now_scheduled else "cancel_unscheduled")
    status = obj.get("status") if isinstance(obj.get("status"), str) else "unknown"
    if "status" in previous and previous.get("status") != status:
        changes.append("status_changed")
    if kind == "customer.subscription.deleted":
        changes.append("canceled")

    interval, interval_count = _interval(items)
    common = {
        "customer_key": customer,
        "referral_code": referral_code,
        "subscription_id": subscription_id,
        "status": status,
        "previous_amount_minor": amount_before,
        "amount_minor": amount,
        "currency": _currency(obj, items),
        "interval": interval,
        "livemode": bool(event.get("livemode", obj.get("livemode", False))),
        "account": event.get("account") if isinstance(event.get("account"), str) else None,
        "source_event_id": event_id,
        "occurred_at": created,
        "interval_count": interval_count,
        "price_ids": prices,
        "previous_price_ids": prices_before,
        "cancel_at": _cancel_at(obj),
    }
    return [
        {"lifecycle_id": f"{event_id}/{change}", "change": change, **common} for change in changes
    ]


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _items(sub: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = sub.get("items")
    if isinstance(items, Mapping):
        items = items.get("data")
    if isinstance(items, list):
        return [i for i in items if isinstance(i, Mapping)]
    if isinstance(sub.get("plan"), Mapping):  # single-plan subscriptions (old API versions)
        return [{"plan": sub["plan"], "quantity": sub.get("quantity", 1)}]
    return []


def _before_items(
    obj: Mapping[str, Any], previous: Mapping[str, Any], before: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    if "items" in previous:
        return _items(previous)
    if "plan" in previous or "quantity" in previous:
        # Old single-plan change: rebuild the one item from the previous plan/quantity.
        plan = before.get("plan")
        return [{"plan": plan, "quantity": before.get("quantity", 1)}] if plan else []
    return _items(obj)


def _price(item: Mapping[str, Any]) -> Mapping[str, Any]:
    price = item.get("price") or item.get("plan")
    return price if isinstance(price, Mapping) else {}


def _price_ids(items: list[Mapping[str, Any]]) -> list[str]:
    return sorted(pid for pid in (_id(_price(i)) for i in items) if pid)


def _item_amount(item: Mapping[str, Any]) -> int | None:
    price = _price(item)
    raw = price.get("recurring")
    recurring: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    usage = recurring.get("usage_type") or price.get("usage_type")
    if usage == "metered":
        return 0
    quantity = item.get("quantity", 1)
    if quantity is None:
        quantity = 1
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
        return None
    unit = price.get("unit_amount", price.get("amount"))
    if isinstance(unit, int) and not isinstance(unit, bool):
        return unit * quantity
    decimal = price.get("unit_amount_decimal")
    if isinstance(decimal, str):
        try:
            exact = Decimal(decimal) * quantity
        except InvalidOperation:
            return None
        if not exact.is_finite() or abs(exact) >= _MAX_MINOR:
            return None  # "Infinity", "NaN" or beyond any amount Stripe can carry
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return None  # tiered or unknown pricing


_MAX_MINOR = Decimal(2**63)


def _amount(items: list[Mapping[str, Any]]) -> int | None:
    if not items:
        return None
    amounts = [_item_amount(i) for i in items]
    known = [a for a in amounts if a is not None]
    return None if len(known) != len(amounts) else sum(known)


def _interval(items: list[Mapping[str, Any]]) -> tuple[str | None, int | None]:
    for item in items:
        price = _price(item)
        raw = price.get("recurring")
        recurring: Mapping[str, Any] = raw if isinstance(raw, Mapping) else price
        interval = recurring.get("interval")
        if isinstance(interval, str):
            count = recurring.get("interval_count")
            return interval, count if isinstance(count, int) else None
    return None, None


def _currency(obj: Mapping[str, Any], items: list[Mapping[str, Any]]) -> str | None:
    currency = obj.get("currency")
    if not isinstance(currency, str):
        currency = next(
            (c for c in (_price(i).get("currency") for i in items) if isinstance(c, str)), None
        )
    return currency.lower() if isinstance(currency, str) else None


def _cancel_at(sub: Mapping[str, Any]) -> int | None:
    value = sub.get("cancel_at")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cancel_scheduled(sub: Mapping[str, Any]) -> bool:
    return bool(sub.get("cancel_at_period_end")) or _cancel_at(sub) is not None
