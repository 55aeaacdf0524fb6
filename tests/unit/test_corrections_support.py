"""Builders shared by the test_corrections_* modules: Stripe event dicts shaped like the
real ones (only the fields the correction core reads, both API families), reward refs,
and a tiny driver for the referrer side. Holds no tests itself."""

from __future__ import annotations

from typing import Any

from streams.corrections.refs import RewardRef

DAY = 86_400
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def reward(
    reward_id: str = "rw_1",
    *,
    amount_minor: int = 2000,
    payment_amount_minor: int = 10_000,
    code: str = "ANNA",
    customer: str = "cus_1",
    charge: str | None = "ch_1",
    payment_intent: str | None = "pi_1",
    currency: str = "usd",
    livemode: bool = True,
    paid_at: int = T0,
    hold_days: int = 30,
    status: str = "pending",
) -> RewardRef:
    return RewardRef(
        reward_id=reward_id,
        referral_code=code,
        customer_key=customer,
        amount_minor=amount_minor,
        currency=currency,
        livemode=livemode,
        charge_id=charge,
        payment_intent_id=payment_intent,
        payment_amount_minor=payment_amount_minor,
        paid_at=paid_at,
        hold_until=paid_at + hold_days * DAY,
        status=status,
    )


def event(event_id: str, kind: str, obj: dict[str, Any], created: int = T0) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "livemode": True,
        "data": {"object": obj},
    }


def charge_refunded(
    event_id: str,
    cumulative_minor: int,
    *,
    charge: str = "ch_1",
    payment_intent: str | None = "pi_1",
    amount_minor: int = 10_000,
    currency: str = "usd",
    created: int = T0,
) -> dict[str, Any]:
    obj = {
        "id": charge,
        "object": "charge",
        "amount": amount_minor,
        "amount_captured": amount_minor,
        "amount_refunded": cumulative_minor,
        "refunded": cumulative_minor == amount_minor,
        "currency": currency,
        "customer": "cus_1",
        "payment_intent": payment_intent,
        "status": "succeeded",
    }
    return event(event_id, "charge.refunded", obj, created)


def refund_event(
    event_id: str,
    refund_id: str,
    amount_minor: int,
    *,
    charge: str = "ch_1",
    payment_intent: str | None = "pi_1",
    status: str = "succeeded",
    kind: str = "refund.created",
    currency: str = "usd",
    created: int = T0,
) -> dict[str, Any]:
    obj = {
        "id": refund_id,
        "object": "refund",
        "amount": amount_minor,
        "charge": charge,
        "payment_intent": payment_intent,
        "currency": currency,
        "status": status,
        "reason": "requested_by_customer",
    }
    return event(event_id, kind, obj, created)


def dispute_event(
    event_id: str,
    kind: str,
    status: str,
    *,
    dispute: str = "dp_1",
    charge: str = "ch_1",
    payment_intent: str | None = "pi_1",
    created: int = T0,
) -> dict[str, Any]:
    obj = {
        "id": dispute,
        "object": "dispute",
        "amount": 10_000,
        "charge": charge,
        "payment_intent": payment_intent,
        "currency": "usd",
        "status": status,
        "reason": "fraudulent",
    }
    return event(event_id, kind, obj, created)


def net_clawed(corrections: list[dict[str, Any]], reward_id: str) -> int:
    """Clawbacks minus reinstatements of one reward, from correction records."""
    sign = {"clawback": 1, "reinstatement": -1}
    return sum(
        sign[c["kind"]] * c["amount_minor"] for c in corrections if c["reward_id"] == reward_id
    )
