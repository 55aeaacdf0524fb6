"""referral.rewards (reward.avsc) -> table `rewards`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refstream.topics import REWARDS
from sinks.rows import NativeInsert, Row, TableSpec, int32, seconds, text

COLUMNS = (
    "reward_id", "line", "referral_code", "customer_key", "customer_id", "new_user_id",
    "new_user_organization_id", "invoice_id", "charge_id", "payment_intent_id",
    "subscription_id", "payment_amount_minor", "base_amount_minor", "reward_amount_minor",
    "currency", "rate", "basis", "tenure_month", "program_id", "program_version", "livemode",
    "status", "hold_until", "paid_at", "source_event_id", "decided_at",
    "revision", "account",
)  # fmt: skip


def to_row(r: Mapping[str, Any]) -> Row:
    return (
        r["reward_id"], r["line"], r["referral_code"], r["customer_key"], text(r["customer_id"]),
        text(r["new_user_id"]), text(r["new_user_organization_id"]), text(r["invoice_id"]),
        text(r["charge_id"]), text(r["payment_intent_id"]), text(r["subscription_id"]),
        r["payment_amount_minor"], r["base_amount_minor"], r["reward_amount_minor"],
        r["currency"], text(r["rate"]), r["basis"], int32(r["tenure_month"], "tenure_month"),
        r["program_id"], int32(r["program_version"], "program_version"), r["livemode"],
        r["status"], seconds(r, "hold_until"), seconds(r, "paid_at"), r["source_event_id"],
        seconds(r, "decided_at"), r.get("revision", 0), text(r.get("account")),
    )  # fmt: skip


# Every column is a field of reward.avsc copied as it is; ClickHouse decodes the windows
# (sinks/native_avro.py) and rewards_avro_check refuses the seconds `seconds` refuses.
NATIVE = NativeInsert("rewards_avro_check", ("hold_until", "paid_at", "decided_at"))
SPEC = TableSpec(REWARDS, "reward", "rewards", COLUMNS, to_row, NATIVE)
