"""Referrer balances per (referral code, currency, livemode), folded from records only.

A balance is built from the append-only records and nothing else, so anyone holding the
topics (a ClickHouse view, a replay) can rebuild it exactly:

    reward record (referral.rewards)      rewards += R;  bucket[status at emission] += R
    clawback, kind clawback               clawbacks += c
        mode cancel                         bucket[applied_to_status] -= c
        mode negative_balance               carry_over += c   (the reward was paid)
    clawback, kind reinstatement          reinstatements += c, the mirror image
    reward_status (not payout_rejected)   bucket[previous] -= S   (S: amount_minor)
        status paid                         paid += S - a;  carry_over -= a
                                            (a: carryover_absorbed_minor)
        any other status                    bucket[status] += S
    reward_status payout_rejected         nothing (a rejected payout moved no money)

Buckets hold what the rewards in each status are still worth: pending, payable,
clawed_back_standing (rewards clawed back to nothing: always 0 once a step is done; it
carries a reinstatement to the status record that moves it on). `paid` is the money
actually paid out. `carry_over` is signed: > 0 the referrer owes that much (a paid reward
was clawed back), < 0 the referrer is owed it (a reinstatement after the debt was settled).

Invariant (checked after every record, raises InvariantViolation):

    rewards - clawbacks + reinstatements
        == pending + payable + clawed_back_standing + paid - carry_over

with every bucket and total >= 0 and reinstatements <= clawbacks.

Netting: a carry-over is absorbed by the next payout: its cash is the standing of the
rewards it pays minus the carry-over (taken from those rewards in the payout's order, never
more than each is worth), plus any credit. `net_payable_minor` shows that figure ahead of
the payout, so a debt is visibly netted as soon as later rewards become payable.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from streams.corrections.errors import InvariantViolation, invariant

Balance = dict[str, Any]
BUCKETS = {
    "pending": "pending_minor",
    "payable": "payable_minor",
    "clawed_back": "clawed_back_standing_minor",
}


def balance_key(currency: str, livemode: bool, account: str | None = None) -> str:
    """Key of a balance inside one referrer's state (per Connect account too)."""
    mode = "live" if livemode else "test"
    return f"{currency.lower()}:{mode if account is None else f'{mode}@{account}'}"


def new_balance(referral_code: str, currency: str, livemode: bool) -> Balance:
    return {
        "referral_code": referral_code,
        "currency": currency.lower(),
        "livemode": livemode,
        "rewards_minor": 0,
        "clawbacks_minor": 0,
        "reinstatements_minor": 0,
        "pending_minor": 0,
        "payable_minor": 0,
        "clawed_back_standing_minor": 0,
        "paid_minor": 0,
        "carry_over_minor": 0,
    }


def earned_minor(balance: Balance) -> int:
    """rewards - clawbacks + reinstatements: what the referrer has earned, net."""
    return balance["rewards_minor"] - balance["clawbacks_minor"] + balance["reinstatements_minor"]


def net_payable_minor(balance: Balance) -> int:
    """Payable after netting the carry-over; negative while the referrer owes more than is
    payable (nothing is paid out then)."""
    return balance["payable_minor"] - balance["carry_over_minor"]


def fold(balance: Balance, kind: str, record: Mapping[str, Any]) -> Balance:
    """A new balance with one record applied; `kind` is reward, clawback or reward_status."""
    out = copy.copy(balance)
    invariant(
        record["referral_code"] == out["referral_code"]
        and record["currency"].lower() == out["currency"]
        and record["livemode"] == out["livemode"],
        f"record {kind} of {record['referral_code']}/{record['currency']} folded into "
        f"the balance of {out['referral_code']}/{out['currency']}",
    )
    if kind == "reward":
        _fold_reward(out, record)
    elif kind == "clawback":
        _fold_clawback(out, record)
    elif kind == "reward_status":
        _fold_status(out, record)
    else:
        raise InvariantViolation(f"cannot fold a {kind} record into a balance")
    check(out)
    return out


def fold_records(records: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[tuple, Balance]:
    """Balances keyed (referral_code, currency, livemode) from (kind, record) pairs in
    the order they were emitted; duplicate ids (redeliveries) count once."""
    balances: dict[tuple, Balance] = {}
    seen: set[tuple[str, str]] = set()
    id_field = {"reward": "reward_id", "clawback": "clawback_id", "reward_status": "status_id"}
    for kind, record in records:
        record_id = (kind, record[id_field[kind]])
        if record_id in seen:
            continue
        seen.add(record_id)
        if moves_nothing(kind, record):
            continue
        key = (record["referral_code"], record["currency"].lower(), record["livemode"])
        current = balances.get(key) or new_balance(*key)
        balances[key] = fold(current, kind, record)
    return balances


def moves_nothing(kind: str, record: Mapping[str, Any]) -> bool:
    """A rejected payout's record: no balance is created or changed for it."""
    return kind == "reward_status" and record["status"] == "payout_rejected"


def check(balance: Balance) -> None:
    """The balance invariant; raises InvariantViolation naming the balance."""
    who = f"{balance['referral_code']}/{balance['currency']}/{balance['livemode']}"
    for field in (
        "rewards_minor",
        "clawbacks_minor",
        "reinstatements_minor",
        "pending_minor",
        "payable_minor",
        "clawed_back_standing_minor",
        "paid_minor",
    ):
        invariant(balance[field] >= 0, f"balance {who}: {field} = {balance[field]} < 0")
    invariant(
        balance["reinstatements_minor"] <= balance["clawbacks_minor"],
        f"balance {who}: more reinstated than clawed back",
    )
    held = (
        balance["pending_minor"]
        + balance["payable_minor"]
        + balance["clawed_back_standing_minor"]
        + balance["paid_minor"]
        - balance["carry_over_minor"]
    )
    invariant(
        earned_minor(balance) == held,
        f"balance {who}: earned {earned_minor(balance)} != buckets {held} ({balance})",
    )


def _bucket(status: Any) -> str:
    invariant(status in BUCKETS, f"no balance bucket for status {status!r}")
    return BUCKETS[status]


def _fold_reward(out: Balance, record: Mapping[str, Any]) -> None:
    amount = record["reward_amount_minor"]
    out["rewards_minor"] += amount
    out[_bucket(record["status"])] += amount


def _fold_clawback(out: Balance, record: Mapping[str, Any]) -> None:
    amount, kind, mode = record["amount_minor"], record["kind"], record["mode"]
    invariant(amount >= 0, f"clawback {record['clawback_id']}: negative amount")
    invariant(kind in ("clawback", "reinstatement"), f"unknown clawback kind {kind!r}")
    sign = -1 if kind == "clawback" else 1
    out["clawbacks_minor" if kind == "clawback" else "reinstatements_minor"] += amount
    if mode == "cancel":
        out[_bucket(record.get("applied_to_status"))] += sign * amount
    elif mode == "negative_balance":
        out["carry_over_minor"] -= sign * amount
    else:
        raise InvariantViolation(f"clawback {record['clawback_id']}: unknown mode {mode!r}")


def _fold_status(out: Balance, record: Mapping[str, Any]) -> None:
    status, moved = record["status"], record["amount_minor"]
    if status == "payout_rejected":
        return
    out[_bucket(record["previous_status"])] -= moved
    if status == "paid":
        absorbed = record.get("carryover_absorbed_minor") or 0
        out["paid_minor"] += moved - absorbed
        out["carry_over_minor"] -= absorbed
    else:
        out[_bucket(status)] += moved
