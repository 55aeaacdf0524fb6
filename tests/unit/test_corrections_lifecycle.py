"""Lifecycle records from customer.subscription.* events, both API families."""

from __future__ import annotations

from typing import Any

import pytest

from refstream.avro_codec import AvroCodec
from streams.corrections.errors import CorrectionInputError
from streams.corrections.lifecycle import lifecycle_records
from tests.unit.test_corrections_support import T0, event


def price(price_id: str, unit_amount: int | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": price_id,
        "object": "price",
        "currency": "usd",
        "unit_amount": unit_amount,
        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
        **extra,
    }


def item(p: dict[str, Any], quantity: int | None = 1) -> dict[str, Any]:
    # Since basil the period lives on the item; it must not matter to lifecycle records.
    return {
        "id": f"si_{p['id']}",
        "object": "subscription_item",
        "price": p,
        "quantity": quantity,
        "current_period_start": T0,
        "current_period_end": T0 + 30 * 86_400,
    }


def subscription(items: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "status": "active",
        "currency": "usd",
        "cancel_at_period_end": False,
        "cancel_at": None,
        "canceled_at": None,
        "items": {"object": "list", "data": items},
        **fields,
    }


def updated(sub: dict[str, Any], previous: dict[str, Any], kind: str = "updated") -> dict:
    e = event("evt_1", f"customer.subscription.{kind}", sub, created=T0 + 100)
    e["data"]["previous_attributes"] = previous
    return e


def changes(records: list[dict[str, Any]]) -> list[tuple]:
    return [(r["change"], r["previous_amount_minor"], r["amount_minor"]) for r in records]


BASIC, PRO = price("price_basic", 10_000), price("price_pro", 50_000)


def test_upgrade_is_a_plan_change_and_an_amount_change() -> None:
    e = updated(subscription([item(PRO)]), {"items": {"object": "list", "data": [item(BASIC)]}})
    records = lifecycle_records(e, referral_code="ANNA")
    assert changes(records) == [
        ("plan_changed", 10_000, 50_000),
        ("amount_changed", 10_000, 50_000),
    ]
    first = records[0]
    assert first["lifecycle_id"] == "evt_1/plan_changed"
    assert (first["customer_key"], first["referral_code"], first["subscription_id"]) == (
        "cus_1",
        "ANNA",
        "sub_1",
    )
    assert (first["interval"], first["interval_count"], first["currency"]) == ("month", 1, "usd")
    assert (first["price_ids"], first["previous_price_ids"]) == (["price_pro"], ["price_basic"])
    assert (first["source_event_id"], first["occurred_at"]) == ("evt_1", T0 + 100)


def test_seat_change_is_an_amount_change_only() -> None:
    e = updated(
        subscription([item(BASIC, quantity=3)]),
        {"items": {"object": "list", "data": [item(BASIC, quantity=2)]}},
    )
    assert changes(lifecycle_records(e)) == [("amount_changed", 20_000, 30_000)]


@pytest.mark.parametrize(
    ("now", "before", "expected"),
    [
        ({"cancel_at_period_end": True}, {"cancel_at_period_end": False}, "cancel_scheduled"),
        ({"cancel_at_period_end": False}, {"cancel_at_period_end": True}, "cancel_unscheduled"),
        ({"cancel_at": T0 + 999}, {"cancel_at": None}, "cancel_scheduled"),  # newer API shape
        ({"cancel_at": None}, {"cancel_at": T0 + 999}, "cancel_unscheduled"),
    ],
)
def test_cancel_scheduling(now: dict, before: dict, expected: str) -> None:
    records = lifecycle_records(updated(subscription([item(BASIC)], **now), before))
    assert [r["change"] for r in records] == [expected]
    if "cancel_at" in now:
        assert records[0]["cancel_at"] == now["cancel_at"]


def test_status_change_and_cancellation() -> None:
    trial_ended = updated(subscription([item(BASIC)]), {"status": "trialing"})
    assert [(r["change"], r["status"]) for r in lifecycle_records(trial_ended)] == [
        ("status_changed", "active")
    ]
    deleted = updated(subscription([item(BASIC)], status="canceled"), {}, kind="deleted")
    assert [(r["change"], r["status"]) for r in lifecycle_records(deleted)] == [
        ("canceled", "canceled")
    ]
    created = event("evt_0", "customer.subscription.created", subscription([item(BASIC)]))
    assert changes(lifecycle_records(created)) == [("created", 10_000, 10_000)]


def test_renewal_alone_is_not_a_lifecycle_change() -> None:
    # Before basil the period sat on the subscription and changed on every renewal.
    e = updated(
        subscription([item(BASIC)], current_period_start=T0, current_period_end=T0 + 1),
        {"current_period_start": T0 - 30, "current_period_end": T0},
    )
    assert lifecycle_records(e) == []


def test_old_single_plan_subscriptions() -> None:
    old = {"id": "plan_a", "object": "plan", "amount": 1000, "interval": "year", "currency": "usd"}
    new = {**old, "id": "plan_b", "amount": 2500}
    sub = {"id": "sub_1", "customer": {"id": "cus_1"}, "status": "active", "plan": new,
           "quantity": 2}  # fmt: skip
    records = lifecycle_records(updated(sub, {"plan": old}))
    assert changes(records) == [("plan_changed", 2000, 5000), ("amount_changed", 2000, 5000)]
    assert records[0]["interval"] == "year" and records[0]["customer_key"] == "cus_1"
    seats = lifecycle_records(updated({**sub, "plan": old, "quantity": 3}, {"quantity": 1}))
    assert changes(seats) == [("amount_changed", 1000, 3000)]


def test_amounts_of_metered_decimal_and_tiered_prices() -> None:
    metered = price("price_m", 7, recurring={"interval": "month", "usage_type": "metered"})
    decimal = price("price_d", None, unit_amount_decimal="12.5")
    tiered = price("price_t", None, billing_scheme="tiered")
    e = event(
        "evt_0",
        "customer.subscription.created",
        subscription([item(metered, None), item(decimal, 3)]),
    )
    assert changes(lifecycle_records(e)) == [("created", 38, 38)]  # metered adds 0; 37.5 -> 38
    e = event("evt_0", "customer.subscription.created", subscription([item(tiered)]))
    assert changes(lifecycle_records(e)) == [("created", None, None)]


def test_other_events_and_malformed_ones() -> None:
    assert lifecycle_records(event("evt_1", "invoice.paid", {"id": "in_1"})) == []
    no_customer = {"id": "sub_1", "object": "subscription", "status": "active"}
    with pytest.raises(CorrectionInputError, match="customer"):
        lifecycle_records(event("evt_1", "customer.subscription.updated", no_customer))
    with pytest.raises(CorrectionInputError, match="created"):
        lifecycle_records({**event("evt_1", "customer.subscription.deleted", {}), "created": "x"})


def test_records_fit_the_lifecycle_schema() -> None:
    codec = AvroCodec.for_schema("lifecycle")
    e = updated(subscription([item(PRO)]), {"items": {"object": "list", "data": [item(BASIC)]}})
    for record in lifecycle_records(e, referral_code=None):
        assert codec.decode(codec.encode(record)) == record
