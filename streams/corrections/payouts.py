"""Payouts: mark payable rewards paid, or reject the whole payout with reasons.

A payout record (schemas/payout.avsc) names rewards of one referrer, currency and mode,
and the cash paid. It is applied whole or not at all:

- every named reward must exist, belong to that referrer, currency and mode, be payable,
  and be named once; otherwise every named reward gets a payout_rejected record whose
  `rejection_code` says why (its own problem, or other_reward_rejected);
- `amount_minor` must equal the cash due: the rewards' standing minus the referrer's
  carry-over (absorbed from those rewards in the payout's order, each at most its
  standing), plus any credit. `plan_payout` computes it. A mismatch rejects the payout
  (e.g. a refund shrank a reward after the payer read the balance: pay again, new id);
- a payout id applies once. The same id with the same content is a repeat: no effect,
  no records. The same id with other content is rejected (payout_id_reused) and the first
  payout stands. A rejected payout id stays rejected: retry with a new id.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from streams.corrections import balances, holds, ids
from streams.corrections.errors import CorrectionInputError, invariant
from streams.corrections.holds import PAID, PAYABLE, PAYOUT_REJECTED, Entry
from streams.corrections.referrer_state import State, Step


class Rejection(StrEnum):
    """Why a payout was rejected (reward_status.rejection_code)."""

    EMPTY_PAYOUT = "empty_payout"
    DUPLICATE_REWARD = "duplicate_reward"
    UNKNOWN_REWARD = "unknown_reward"
    WRONG_REFERRER = "wrong_referrer"
    WRONG_CURRENCY = "wrong_currency"
    WRONG_MODE = "wrong_mode"
    NOT_PAYABLE = "not_payable"
    ALREADY_PAID = "already_paid"
    AMOUNT_MISMATCH = "amount_mismatch"
    PAYOUT_ID_REUSED = "payout_id_reused"
    OTHER_REWARD_REJECTED = "other_reward_rejected"


def read_payout(record: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a payout record's shape; CorrectionInputError names the bad field."""

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = record.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CorrectionInputError(f"payout: {key} is missing or not {kind}")
        return value

    payout = {
        "payout_id": need("payout_id", str),
        "referral_code": need("referral_code", str),
        "reward_ids": list(need("reward_ids", (list, tuple))),
        "amount_minor": need("amount_minor", int),
        "currency": need("currency", str).lower(),
        "livemode": need("livemode", bool),
        "paid_at": need("paid_at", int),
    }
    if not payout["payout_id"] or not payout["referral_code"]:
        raise CorrectionInputError("payout: payout_id and referral_code must not be empty")
    if not all(isinstance(r, str) and r for r in payout["reward_ids"]):
        raise CorrectionInputError("payout: reward_ids must be non-empty strings")
    if payout["amount_minor"] < 0:
        raise CorrectionInputError("payout: amount_minor must be >= 0")
    return payout


def absorption_minor(standings: list[int], carry_over_minor: int) -> list[int]:
    """How much of each reward's standing settles the carry-over instead of being paid:
    a debt (> 0) is taken from the rewards in order, each at most its standing; a credit
    (< 0) is added, whole, to the first reward's cash."""
    if carry_over_minor < 0:
        return [carry_over_minor] + [0] * (len(standings) - 1) if standings else []
    out, left = [], carry_over_minor
    for standing in standings:
        take = min(standing, left)
        out.append(take)
        left -= take
    return out


def plan_payout(
    state: State,
    entries: Mapping[str, Entry],
    *,
    payout_id: str,
    currency: str,
    livemode: bool,
    paid_at: int,
    reward_ids: list[str] | None = None,
) -> dict[str, Any]:
    """A payout record paying `reward_ids` (default: every payable reward of that currency
    and mode, sorted by id) with the exact cash due. It may still be rejected if the
    rewards change before it is applied."""
    currency = currency.lower()
    if reward_ids is None:
        reward_ids = sorted(
            e["reward_id"]
            for e in entries.values()
            if e["referral_code"] == state["referral_code"]
            and (e["currency"], e["livemode"]) == (currency, livemode)
            and e["status"] == PAYABLE
        )
    standings = [holds.standing_minor(entries[r]) for r in reward_ids if r in entries]
    balance = state["balances"].get(balances.balance_key(currency, livemode))
    carry = balance["carry_over_minor"] if balance else 0
    return {
        "payout_id": payout_id,
        "referral_code": state["referral_code"],
        "reward_ids": list(reward_ids),
        "amount_minor": sum(standings) - sum(absorption_minor(standings, carry)),
        "currency": currency,
        "livemode": livemode,
        "paid_at": paid_at,
    }


def apply_payout(
    state: State, entries: Mapping[str, Entry], record: Mapping[str, Any], now: int
) -> Step:
    """Apply a payout whole (every named reward paid) or reject it whole (a record per
    named reward); `step.outcome` is accepted, rejected or repeat."""
    payout = read_payout(record)
    step = Step.begin(state, now)
    invariant(
        payout["referral_code"] == step.state["referral_code"],
        f"payout {payout['payout_id']} routed to {step.state['referral_code']}",
    )
    fingerprint = ids.payout_fingerprint(payout)
    seen = step.state["payouts"].get(payout["payout_id"])
    if seen is not None and seen["fingerprint"] == fingerprint:
        step.outcome = "repeat"
        step.notes.append(f"payout {payout['payout_id']} repeated: no second effect")
        return step
    if seen is not None:
        problems = {
            r: (Rejection.PAYOUT_ID_REUSED, "payout id already used with other content")
            for r in payout["reward_ids"]
        } or {"": (Rejection.PAYOUT_ID_REUSED, "payout id already used with other content")}
    else:
        problems = _problems(step, entries, payout)
    if problems:
        _reject(step, entries, payout, fingerprint, problems)
        if seen is None:
            step.state["payouts"][payout["payout_id"]] = {
                "fingerprint": fingerprint,
                "accepted": False,
            }
        step.outcome = "rejected"
        return step
    _pay(step, entries, payout)
    step.state["payouts"][payout["payout_id"]] = {"fingerprint": fingerprint, "accepted": True}
    step.outcome = "accepted"
    return step


def _problems(
    step: Step, entries: Mapping[str, Entry], payout: dict[str, Any]
) -> dict[str, tuple[Rejection, str]]:
    """Each named reward's problem; payout-level problems are put on every reward."""
    reward_ids = payout["reward_ids"]
    if not reward_ids:
        return {"": (Rejection.EMPTY_PAYOUT, "payout names no rewards")}
    problems: dict[str, tuple[Rejection, str]] = {}
    for reward_id in reward_ids:
        if reward_id in problems:
            continue
        entry = entries.get(reward_id)
        if reward_ids.count(reward_id) > 1:
            problems[reward_id] = (Rejection.DUPLICATE_REWARD, "named more than once")
        elif entry is None:
            problems[reward_id] = (Rejection.UNKNOWN_REWARD, "no such reward")
        elif entry["referral_code"] != payout["referral_code"]:
            problems[reward_id] = (Rejection.WRONG_REFERRER, "reward of another referrer")
        elif entry["currency"] != payout["currency"]:
            problems[reward_id] = (
                Rejection.WRONG_CURRENCY,
                f"reward in {entry['currency']}, payout in {payout['currency']}",
            )
        elif entry["livemode"] != payout["livemode"]:
            problems[reward_id] = (Rejection.WRONG_MODE, "live and test mode never mix")
        elif entry["status"] == PAID:
            problems[reward_id] = (
                Rejection.ALREADY_PAID,
                f"already paid by payout {entry['payout_id']}",
            )
        elif entry["status"] != PAYABLE:
            detail = f"until {entry['hold_until']}" if entry["status"] == "pending" else ""
            problems[reward_id] = (
                Rejection.NOT_PAYABLE,
                f"reward is {entry['status']} {detail}".strip(),
            )
    if problems:
        first_id, (code, message) = next(iter(problems.items()))
        for reward_id in reward_ids:
            problems.setdefault(
                reward_id,
                (Rejection.OTHER_REWARD_REJECTED, f"reward {first_id}: {code}: {message}"),
            )
        return problems
    expected = _cash_due(step, entries, payout)
    if payout["amount_minor"] != expected:
        message = f"amount {payout['amount_minor']} but {expected} is due"
        return {r: (Rejection.AMOUNT_MISMATCH, message) for r in reward_ids}
    return {}


def _cash_due(step: Step, entries: Mapping[str, Entry], payout: dict[str, Any]) -> int:
    standings = [holds.standing_minor(entries[r]) for r in payout["reward_ids"]]
    carry = _carry(step, payout)
    return sum(standings) - sum(absorption_minor(standings, carry))


def _carry(step: Step, payout: dict[str, Any]) -> int:
    key = balances.balance_key(payout["currency"], payout["livemode"])
    balance = step.state["balances"].get(key)
    return balance["carry_over_minor"] if balance else 0


def _reject(
    step: Step,
    entries: Mapping[str, Entry],
    payout: dict[str, Any],
    fingerprint: str,
    problems: dict[str, tuple[Rejection, str]],
) -> None:
    for reward_id, (code, message) in problems.items():
        stored = entries.get(reward_id) if reward_id else None
        key = ("referral_code", "currency", "livemode")
        if stored is not None and all(stored[k] == payout[k] for k in key):
            entry: dict[str, Any] = stored
        else:
            # Unknown, or not this payout's referrer/currency/mode: the record goes under
            # the payout's own key, and no amount of another currency is put beside it.
            entry = {
                "reward_id": reward_id,
                "referral_code": payout["referral_code"],
                "currency": payout["currency"],
                "livemode": payout["livemode"],
                "status": stored["status"] if stored else None,
                "amount_minor": 0,
                "clawed_minor": 0,
                "reinstated_minor": 0,
            }
        record = holds.status_record(
            entry,
            PAYOUT_REJECTED,
            status_id=ids.rejection_id(reward_id, payout["payout_id"], fingerprint),
            effective_at=payout["paid_at"],
            payout_id=payout["payout_id"],
            reason=f"{code.value}: {message}",
            rejection_code=code.value,
        )
        step.emit("reward_status", record)


def _pay(step: Step, entries: Mapping[str, Entry], payout: dict[str, Any]) -> None:
    paid = [step.entry(entries, r) for r in payout["reward_ids"]]
    standings = [holds.standing_minor(e) for e in paid]  # type: ignore[arg-type]
    absorbed = absorption_minor(standings, _carry(step, payout))
    for entry, take in zip(paid, absorbed, strict=True):
        record = holds.transition(
            entry,  # type: ignore[arg-type]
            PAID,
            cause=payout["payout_id"],
            effective_at=payout["paid_at"],
            payout_id=payout["payout_id"],
            carryover_absorbed_minor=take,
        )
        step.emit("reward_status", record)
    cash = sum(standings) - sum(absorbed)
    invariant(cash == payout["amount_minor"], f"payout {payout['payout_id']}: paid {cash}")
    for balance in step.state["balances"].values():
        balances.check(balance)
