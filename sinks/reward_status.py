"""referral.status (reward_status.avsc) -> table `reward_status`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refstream.topics import REWARD_STATUS
from sinks.rows import NativeInsert, Row, TableSpec, seconds, text

COLUMNS = (
    "status_id", "reward_id", "referral_code", "status", "previous_status", "amount_minor",
    "currency", "livemode", "payout_id", "reason", "effective_at", "rejection_code",
    "carryover_absorbed_minor", "account",
)  # fmt: skip


def to_row(r: Mapping[str, Any]) -> Row:
    return (
        r["status_id"], r["reward_id"], r["referral_code"], r["status"],
        text(r["previous_status"]), r["amount_minor"], r["currency"], r["livemode"],
        text(r["payout_id"]), text(r["reason"]), seconds(r, "effective_at"),
        text(r.get("rejection_code")), r.get("carryover_absorbed_minor", 0),
        text(r.get("account")),
    )  # fmt: skip


# Columns copy the schema's fields: ClickHouse decodes the windows (sinks/native_avro.py).
NATIVE = NativeInsert("reward_status_avro_check", ("effective_at",))
SPEC = TableSpec(REWARD_STATUS, "reward_status", "reward_status", COLUMNS, to_row, NATIVE)
