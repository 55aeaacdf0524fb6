"""referral.attributions (attribution.avsc) -> table `attributions`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refstream.topics import ATTRIBUTIONS
from sinks.rows import NativeInsert, Row, TableSpec, seconds, text

COLUMNS = (
    "attribution_id", "kind", "customer_key", "customer_id", "referral_code", "new_user_id",
    "new_user_organization_id", "source", "source_object_id", "event_id", "event_type",
    "attributed_at", "livemode", "account",
)  # fmt: skip


def to_row(r: Mapping[str, Any]) -> Row:
    return (
        r["attribution_id"], r["kind"], r["customer_key"], text(r["customer_id"]),
        text(r["referral_code"]), text(r["new_user_id"]), text(r["new_user_organization_id"]),
        r["source"], text(r["source_object_id"]), r["event_id"], r["event_type"],
        seconds(r, "attributed_at"), r["livemode"], text(r.get("account")),
    )  # fmt: skip


# Columns copy the schema's fields: ClickHouse decodes the windows (sinks/native_avro.py).
NATIVE = NativeInsert("attributions_avro_check", ("attributed_at",))
SPEC = TableSpec(ATTRIBUTIONS, "attribution", "attributions", COLUMNS, to_row, NATIVE)
