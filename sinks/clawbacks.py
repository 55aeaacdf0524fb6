"""referral.clawbacks (clawback.avsc) -> table `clawbacks`.

The topic carries positive amounts and a kind; the table adds `signed_amount_minor`, the
effect on the referrer's earnings (clawback negative, reinstatement positive), so that
corrections are negative numbers that sum, not rows to interpret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refstream.topics import CLAWBACKS
from sinks.rows import Row, RowError, TableSpec, seconds, text

COLUMNS = (
    "clawback_id", "reward_id", "kind", "reason", "mode", "referral_code", "customer_key",
    "amount_minor", "signed_amount_minor", "currency", "livemode", "charge_id", "refund_id",
    "dispute_id", "refunded_total_minor", "source_event_id", "occurred_at", "applied_to_status",
    "account",
)  # fmt: skip

_SIGN = {"clawback": -1, "reinstatement": 1}


def signed_amount(kind: str, amount_minor: int) -> int:
    if kind not in _SIGN:
        raise RowError(f"unknown clawback kind {kind!r} (expected clawback or reinstatement)")
    if amount_minor < 0:
        raise RowError(f"clawback amount_minor must be >= 0, got {amount_minor}")
    return _SIGN[kind] * amount_minor


def to_row(r: Mapping[str, Any]) -> Row:
    return (
        r["clawback_id"], r["reward_id"], r["kind"], r["reason"], r["mode"], r["referral_code"],
        r["customer_key"], r["amount_minor"], signed_amount(r["kind"], r["amount_minor"]),
        r["currency"], r["livemode"], text(r["charge_id"]), text(r["refund_id"]),
        text(r["dispute_id"]), r["refunded_total_minor"], r["source_event_id"],
        seconds(r, "occurred_at"), text(r.get("applied_to_status")), text(r.get("account")),
    )  # fmt: skip


SPEC = TableSpec(CLAWBACKS, "clawback", "clawbacks", COLUMNS, to_row)
