"""Reward status machine and the referrer-side reward entry.

    pending ──hold ends──▶ payable ──payout──▶ paid
       │                      │
       └──nothing left──▶ clawed_back ◀──┘
                              │
                              └──reinstated──▶ pending (hold not over) / payable

A reward is pending until `hold_until` (the payment's Stripe time + the program's hold
days, decided by the reward engine), then payable. A reward whose hold is already over
when it is first seen (replays, backfills) is payable at once. A pending or payable
reward with nothing left is clawed_back; a reinstatement brings it back. `paid` is final:
corrections of a paid reward go to the referrer's carry-over (see balances.py).

Time is always injected (`now`, unix seconds); nothing here reads a clock.

Reward entry (JSON, one per reward id, written only from the referrer's partition):

    {"reward_id", "referral_code", "customer_key", "currency", "livemode",
     "amount_minor", "hold_until", "status", "clawed_minor", "reinstated_minor",
     "payout_id": str | None, "corrections": [correction ids applied]}
"""

from __future__ import annotations

from typing import Any

from streams.corrections import ids
from streams.corrections.errors import invariant
from streams.corrections.refs import RewardRef

PENDING = "pending"
PAYABLE = "payable"
PAID = "paid"
CLAWED_BACK = "clawed_back"
PAYOUT_REJECTED = "payout_rejected"  # a record about a payout, not a state of the reward

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({PAYABLE, CLAWED_BACK}),
    PAYABLE: frozenset({PAID, CLAWED_BACK}),
    CLAWED_BACK: frozenset({PENDING, PAYABLE}),
    PAID: frozenset(),
}

Entry = dict[str, Any]


def hold_over(hold_until: int, now: int) -> bool:
    return hold_until <= now


def new_entry(ref: RewardRef) -> Entry:
    return {
        "reward_id": ref.reward_id,
        "referral_code": ref.referral_code,
        "customer_key": ref.customer_key,
        "currency": ref.currency,
        "livemode": ref.livemode,
        "account": ref.account,
        "amount_minor": ref.amount_minor,
        "hold_until": ref.hold_until,
        "status": ref.status,
        "clawed_minor": 0,
        "reinstated_minor": 0,
        "payout_id": None,
        "corrections": [],
    }


def standing_minor(entry: Entry) -> int:
    """What the reward is still worth: amount - clawbacks + reinstatements."""
    return entry["amount_minor"] - entry["clawed_minor"] + entry["reinstated_minor"]


def status_after_change(entry: Entry, now: int) -> str:
    """The status a reward should have after its standing changed (not for payouts)."""
    status = entry["status"]
    if status == PAID:
        return PAID
    if standing_minor(entry) == 0:
        return CLAWED_BACK
    if status == CLAWED_BACK:
        return PAYABLE if hold_over(entry["hold_until"], now) else PENDING
    return status


def transition(
    entry: Entry,
    new_status: str,
    *,
    cause: str,
    effective_at: int,
    payout_id: str | None = None,
    carryover_absorbed_minor: int = 0,
) -> dict[str, Any]:
    """Move `entry` (in place) to `new_status`; return the reward_status record."""
    old = entry["status"]
    invariant(
        new_status in TRANSITIONS.get(old, frozenset()),
        f"reward {entry['reward_id']}: no transition {old} -> {new_status}",
    )
    record = status_record(
        entry,
        new_status,
        status_id=ids.status_id(entry["reward_id"], new_status, cause),
        effective_at=effective_at,
        payout_id=payout_id,
        carryover_absorbed_minor=carryover_absorbed_minor,
    )
    entry["status"] = new_status
    if new_status == PAID:
        entry["payout_id"] = payout_id
    check_entry(entry)
    return record


def status_record(
    entry: Entry,
    status: str,
    *,
    status_id: str,
    effective_at: int,
    payout_id: str | None = None,
    reason: str | None = None,
    rejection_code: str | None = None,
    carryover_absorbed_minor: int = 0,
) -> dict[str, Any]:
    """A reward_status record (schemas/reward_status.avsc) about `entry` as it stands."""
    return {
        "status_id": status_id,
        "reward_id": entry["reward_id"],
        "referral_code": entry["referral_code"],
        "status": status,
        "previous_status": entry["status"],
        "amount_minor": standing_minor(entry),
        "currency": entry["currency"],
        "livemode": entry["livemode"],
        "account": entry.get("account"),
        "payout_id": payout_id,
        "reason": reason,
        "effective_at": effective_at,
        "rejection_code": rejection_code,
        "carryover_absorbed_minor": carryover_absorbed_minor,
    }


def check_entry(entry: Entry) -> None:
    """Per-reward invariants: 0 <= standing <= amount; status agrees with the standing."""
    rid, standing = entry["reward_id"], standing_minor(entry)
    invariant(entry["status"] in TRANSITIONS, f"reward {rid}: unknown status {entry['status']}")
    invariant(
        0 <= entry["reinstated_minor"] <= entry["clawed_minor"],
        f"reward {rid}: reinstated {entry['reinstated_minor']} of {entry['clawed_minor']}",
    )
    invariant(0 <= standing <= entry["amount_minor"], f"reward {rid}: standing {standing}")
    if entry["status"] in (PENDING, PAYABLE):
        # A zero reward may exist (a rate rounding to 0); a clawed-away one must not linger.
        invariant(
            standing > 0 or entry["clawed_minor"] == 0,
            f"reward {rid}: {entry['status']} with nothing left",
        )
    if entry["status"] == CLAWED_BACK:
        invariant(standing == 0, f"reward {rid}: clawed_back with {standing} left")
    invariant(
        (entry["status"] == PAID) == (entry["payout_id"] is not None),
        f"reward {rid}: payout id {entry['payout_id']} with status {entry['status']}",
    )
