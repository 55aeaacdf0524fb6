"""referral.lifecycle (lifecycle.avsc) -> table `lifecycle`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refstream.topics import LIFECYCLE
from sinks.rows import NativeInsert, Row, TableSpec, int32, seconds, text

COLUMNS = (
    "lifecycle_id", "customer_key", "referral_code", "subscription_id", "change", "status",
    "previous_amount_minor", "amount_minor", "currency", "interval", "livemode",
    "source_event_id", "occurred_at", "interval_count", "price_ids", "previous_price_ids",
    "cancel_at",
)  # fmt: skip


def to_row(r: Mapping[str, Any]) -> Row:
    return (
        r["lifecycle_id"], r["customer_key"], text(r["referral_code"]), r["subscription_id"],
        r["change"], r["status"], r["previous_amount_minor"], r["amount_minor"],
        text(r["currency"]), text(r["interval"]), r["livemode"], r["source_event_id"],
        seconds(r, "occurred_at"), int32(r.get("interval_count"), "interval_count"),
        list(r.get("price_ids", ())), list(r.get("previous_price_ids", ())),
        None if r.get("cancel_at") is None else seconds(r, "cancel_at"),
    )  # fmt: skip


# Columns copy the schema's fields: ClickHouse decodes the windows (sinks/native_avro.py).
NATIVE = NativeInsert("lifecycle_avro_check", ("occurred_at", "cancel_at"))
SPEC = TableSpec(LIFECYCLE, "lifecycle", "lifecycle", COLUMNS, to_row, NATIVE)
