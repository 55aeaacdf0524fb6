"""referral.payouts (payout.avsc) -> table `payouts`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refstream.topics import PAYOUTS
from sinks.rows import Row, TableSpec, seconds

COLUMNS = (
    "payout_id", "referral_code", "reward_ids", "amount_minor", "currency", "livemode",
    "paid_at",
)  # fmt: skip


def to_row(r: Mapping[str, Any]) -> Row:
    return (
        r["payout_id"], r["referral_code"], list(r["reward_ids"]), r["amount_minor"],
        r["currency"], r["livemode"], seconds(r, "paid_at"),
    )  # fmt: skip


SPEC = TableSpec(PAYOUTS, "payout", "payouts", COLUMNS, to_row)
