"""Deterministic ids of every record the correction core emits.

An id is derived from what caused the record, so a re-emission after a crash or replay
carries the same id and sinks keep one copy. Parts are joined with "/" (Stripe ids and
reward ids never contain it; the ids stay readable in ClickHouse).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def refund_clawback_id(reward_id: str, refunded_total_minor: int) -> str:
    """The clawback that brought a reward's refund share up to a cumulative refunded point.

    The point only grows, so each point is reached once per reward."""
    return f"{reward_id}/refund/{refunded_total_minor}"


def refund_catch_up_id(reward_id: str, refunded_total_minor: int, dispute_id: str) -> str:
    """Refund share that an open dispute held back, clawed once the dispute is reinstated."""
    return f"{reward_id}/refund/{refunded_total_minor}/after/{dispute_id}"


def dispute_clawback_id(reward_id: str, dispute_id: str) -> str:
    return f"{reward_id}/dispute/{dispute_id}/opened"


def dispute_reinstatement_id(reward_id: str, dispute_id: str) -> str:
    return f"{reward_id}/dispute/{dispute_id}/reinstated"


def status_id(reward_id: str, status: str, cause: str) -> str:
    """A status change, named by its cause: "hold", a correction id, or a payout id."""
    return f"{reward_id}/{status}/{cause}"


def payout_fingerprint(payout: Mapping[str, Any]) -> str:
    """Short digest of a payout's content: tells a true repeat from a reused payout id."""
    canonical = json.dumps(
        {key: payout.get(key) for key in sorted(payout)}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def rejection_id(reward_id: str, payout_id: str, fingerprint: str) -> str:
    # The fingerprint keeps two different payouts reusing one id from sharing a record id.
    return f"{reward_id}/payout_rejected/{payout_id}/{fingerprint}"
