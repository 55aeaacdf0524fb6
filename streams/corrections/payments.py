"""Per-customer correction state: turns refund and dispute facts into corrections.

State (JSON-serialisable, one value per customer key; `new_customer_state()`):

    {"payments": {payment_key: {
        "payment_intent_id": str | None,
        "charge_ids": [str, ...],
        "currency": str | None,
        "charges": {charge_id: {"refunded_max_minor": int, "refunds": {refund_id: int}}},
        "refund_cause": {"event_id", "occurred_at", "charge_id", "refund_id"} | None,
        "disputes": {dispute_id: {"charge_id", "state": "open" | "lost" | "reinstated",
                                  "opened": {"event_id", "occurred_at"},
                                  "closed": {"event_id", "occurred_at"} | None}},
        "rewards": {reward_id: {"ref": RewardRef.to_dict(), "refund_clawed_minor": int,
                                "dispute_clawed": {dispute_id: int},
                                "reinstated": {dispute_id: int}}}}}}

A payment is found by its payment intent or any of its charges; an event that reveals
both links (and, if needed, merges) what was seen under each. Facts are stored even when
no reward exists yet (refund or dispute before the payment event): they settle when the
reward is registered.

How much of a charge is refunded: the larger of the highest cumulative amount_refunded
seen (charge events) and the sum of distinct refunds seen (refund events). Both are lower
bounds of the truth that only grow, so duplicates and stale, reordered events change
nothing. Known limit: a refund that fails after it was counted is not given back.

Outputs are corrections: clawback records (schemas/clawback.avsc) without `mode` and
`applied_to_status`, which the referrer side decides (`referrer_book.apply_correction`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from streams.corrections import ids
from streams.corrections.clawback_math import refund_clawback_minor, refund_target_minor
from streams.corrections.errors import CorrectionInputError, invariant
from streams.corrections.refs import DisputeFact, RefundFact, RewardRef

Correction = dict[str, Any]
State = dict[str, Any]

# Dispute statuses that end in the merchant's favour: the money came back.
FAVOURABLE_DISPUTE_STATUSES = frozenset({"won", "warning_closed", "prevented"})
LOST_DISPUTE_STATUSES = frozenset({"lost"})


def new_customer_state() -> State:
    return {"payments": {}}


def register_reward(state: State, ref: RewardRef) -> tuple[State, list[Correction]]:
    """Record a reward on its payment and settle refunds and disputes already seen.

    A reward id seen before has no second effect."""
    state = copy.deepcopy(state)
    if any(ref.reward_id in p["rewards"] for p in state["payments"].values()):
        return state, []
    charges = [ref.charge_id] if ref.charge_id else []
    key = _locate(state, ref.payment_intent_id, charges, fallback=f"reward:{ref.reward_id}")
    payment = state["payments"][key]
    _check_currency(payment, ref.currency, ref.reward_id)
    payment["rewards"][ref.reward_id] = {
        "ref": ref.to_dict(),
        "refund_clawed_minor": 0,
        "dispute_clawed": {},
        "reinstated": {},
    }
    return state, _settle(payment)


def apply_refund(state: State, fact: RefundFact) -> tuple[State, list[Correction]]:
    """Advance a charge's refund progress; claw back each reward's new refunded share."""
    state = copy.deepcopy(state)
    key = _locate(state, fact.payment_intent_id, [fact.charge_id])
    payment = state["payments"][key]
    if fact.currency:
        _check_currency(payment, fact.currency.lower(), fact.event_id)
    before = _refunded_total(payment)
    charge = payment["charges"][fact.charge_id]
    if fact.refunded_total_minor is not None:
        charge["refunded_max_minor"] = max(charge["refunded_max_minor"], fact.refunded_total_minor)
    if fact.refund_id and fact.counts and fact.refund_amount_minor is not None:
        charge["refunds"].setdefault(fact.refund_id, fact.refund_amount_minor)
    if _refunded_total(payment) > before:
        # Only the event that moved the point is its cause; stale repeats are not.
        payment["refund_cause"] = {
            "event_id": fact.event_id,
            "occurred_at": fact.occurred_at,
            "charge_id": fact.charge_id,
            "refund_id": fact.refund_id,
        }
    return state, _settle(payment)


def apply_dispute(state: State, fact: DisputeFact) -> tuple[State, list[Correction]]:
    """Open, lose or win a dispute. Opening claws back what is left of each reward on the
    payment; a favourable close reinstates exactly that. A dispute closed in the merchant's
    favour is final, so later or stale events about it have no effect; a lost dispute can
    still be won on appeal. A close seen before the open acts as both, with the same ids."""
    state = copy.deepcopy(state)
    key = _locate(state, fact.payment_intent_id, [fact.charge_id])
    payment = state["payments"][key]
    seen = {"event_id": fact.event_id, "occurred_at": fact.occurred_at}
    if fact.status in FAVOURABLE_DISPUTE_STATUSES:
        new_state = "reinstated"
    elif fact.status in LOST_DISPUTE_STATUSES:
        new_state = "lost"
    else:
        new_state = "open"
    dispute = payment["disputes"].get(fact.dispute_id)
    if dispute is None:
        payment["disputes"][fact.dispute_id] = {
            "charge_id": fact.charge_id,
            "state": new_state,
            "opened": seen,
            "closed": None if new_state == "open" else seen,
        }
    elif dispute["state"] != "reinstated":
        dispute["state"] = new_state
        if new_state != "open":
            dispute["closed"] = seen
    return state, _settle(payment)


def reward_left_minor(entry: dict[str, Any]) -> int:
    """What is left of a reward after its refund and dispute corrections."""
    return (
        entry["ref"]["amount_minor"]
        - entry["refund_clawed_minor"]
        - sum(entry["dispute_clawed"].values())
        + sum(entry["reinstated"].values())
    )


# --- payment lookup ---------------------------------------------------------------------


def _new_payment(payment_intent_id: str | None) -> dict[str, Any]:
    return {
        "payment_intent_id": payment_intent_id,
        "charge_ids": [],
        "currency": None,
        "charges": {},
        "refund_cause": None,
        "disputes": {},
        "rewards": {},
    }


def _locate(
    state: State, payment_intent_id: str | None, charge_ids: Iterable[str], fallback: str = ""
) -> str:
    """Key of the payment these ids belong to: found, created, or merged from several."""
    payments = state["payments"]
    charge_ids = list(charge_ids)
    matches = sorted(
        key
        for key, p in payments.items()
        if (payment_intent_id and p["payment_intent_id"] == payment_intent_id)
        or any(c in p["charge_ids"] for c in charge_ids)
    )
    if not matches:
        if payment_intent_id:
            key = f"pi:{payment_intent_id}"
        elif charge_ids:
            key = f"ch:{charge_ids[0]}"
        else:
            key = fallback
        invariant(bool(key), "a payment needs a payment intent, a charge or a fallback key")
        payments[key] = _new_payment(payment_intent_id)
        matches = [key]
    key = matches[0]
    for other in matches[1:]:
        _merge(payments[key], payments.pop(other))
    payment = payments[key]
    if payment_intent_id and payment["payment_intent_id"] is None:
        payment["payment_intent_id"] = payment_intent_id
    if payment_intent_id and payment["payment_intent_id"] != payment_intent_id:
        raise CorrectionInputError(f"charge {charge_ids} seen under two payment intents")
    for charge_id in charge_ids:
        if charge_id not in payment["charge_ids"]:
            payment["charge_ids"] = sorted([*payment["charge_ids"], charge_id])
        payment["charges"].setdefault(charge_id, {"refunded_max_minor": 0, "refunds": {}})
    return key


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    if (
        into["payment_intent_id"]
        and other["payment_intent_id"]
        and into["payment_intent_id"] != other["payment_intent_id"]
    ):
        raise CorrectionInputError(
            f"a charge links payment intents {into['payment_intent_id']} "
            f"and {other['payment_intent_id']}"
        )
    into["payment_intent_id"] = into["payment_intent_id"] or other["payment_intent_id"]
    into["charge_ids"] = sorted(set(into["charge_ids"]) | set(other["charge_ids"]))
    if other["currency"]:
        _check_currency(into, other["currency"], "merged payment")
    for charge_id, charge in other["charges"].items():
        mine = into["charges"].setdefault(charge_id, {"refunded_max_minor": 0, "refunds": {}})
        mine["refunded_max_minor"] = max(mine["refunded_max_minor"], charge["refunded_max_minor"])
        for refund_id, amount in charge["refunds"].items():
            mine["refunds"].setdefault(refund_id, amount)
    causes = [c for c in (into["refund_cause"], other["refund_cause"]) if c]
    into["refund_cause"] = max(causes, key=lambda c: c["occurred_at"]) if causes else None
    rank = {"open": 0, "lost": 1, "reinstated": 2}
    for dispute_id, dispute in other["disputes"].items():
        mine = into["disputes"].get(dispute_id)
        if mine is None or rank[dispute["state"]] > rank[mine["state"]]:
            into["disputes"][dispute_id] = dispute
    into["rewards"].update(other["rewards"])


def _check_currency(payment: dict[str, Any], currency: str, what: str) -> None:
    if payment["currency"] is None:
        payment["currency"] = currency
    elif payment["currency"] != currency:
        raise CorrectionInputError(
            f"{what}: currency {currency} on a payment in {payment['currency']}"
        )


def _refunded_total(payment: dict[str, Any]) -> int:
    return sum(
        max(c["refunded_max_minor"], sum(c["refunds"].values()))
        for c in payment["charges"].values()
    )


# --- settlement -------------------------------------------------------------------------


def _settle(payment: dict[str, Any]) -> list[Correction]:
    """Bring every reward of the payment up to date: refunds first, then disputes in id
    order. Idempotent: settling twice emits nothing the second time."""
    out: list[Correction] = []
    refunded = _refunded_total(payment)
    for reward_id in sorted(payment["rewards"]):
        entry = payment["rewards"][reward_id]
        out.extend(_settle_refunds(payment, entry, refunded, None))
        for dispute_id in sorted(payment["disputes"]):
            out.extend(_settle_dispute(payment, entry, refunded, dispute_id))
        _check_entry(entry, refunded)
    return out


def _settle_refunds(
    payment: dict[str, Any], entry: dict[str, Any], refunded: int, after_dispute: str | None
) -> list[Correction]:
    ref = entry["ref"]
    amount = refund_clawback_minor(
        reward_minor=ref["amount_minor"],
        payment_minor=ref["payment_amount_minor"],
        refunded_total_minor=refunded,
        refund_clawed_minor=entry["refund_clawed_minor"],
        left_minor=reward_left_minor(entry),
    )
    if amount == 0:
        return []
    cause = payment["refund_cause"]
    invariant(cause is not None, "a refund clawback without a refund")
    entry["refund_clawed_minor"] += amount
    if after_dispute is None:
        clawback_id = ids.refund_clawback_id(ref["reward_id"], refunded)
        source = cause
    else:
        clawback_id = ids.refund_catch_up_id(ref["reward_id"], refunded, after_dispute)
        source = payment["disputes"][after_dispute]["closed"]
    return [
        _correction(
            ref,
            clawback_id=clawback_id,
            kind="clawback",
            reason="refund",
            amount_minor=amount,
            charge_id=cause["charge_id"],
            refund_id=cause["refund_id"],
            dispute_id=None,
            refunded_total_minor=refunded,
            source=source,
        )
    ]


def _settle_dispute(
    payment: dict[str, Any], entry: dict[str, Any], refunded: int, dispute_id: str
) -> list[Correction]:
    ref, dispute = entry["ref"], payment["disputes"][dispute_id]
    out: list[Correction] = []
    common = {
        "reason": "dispute",
        "charge_id": dispute["charge_id"],
        "refund_id": None,
        "dispute_id": dispute_id,
        "refunded_total_minor": None,
    }
    if dispute_id not in entry["dispute_clawed"]:
        amount = reward_left_minor(entry)
        entry["dispute_clawed"][dispute_id] = amount  # recorded even at 0: opened once
        if amount > 0:
            out.append(
                _correction(
                    ref,
                    clawback_id=ids.dispute_clawback_id(ref["reward_id"], dispute_id),
                    kind="clawback",
                    amount_minor=amount,
                    source=dispute["opened"],
                    **common,
                )
            )
    if dispute["state"] == "reinstated" and dispute_id not in entry["reinstated"]:
        amount = entry["dispute_clawed"][dispute_id]
        entry["reinstated"][dispute_id] = amount
        if amount > 0:
            out.append(
                _correction(
                    ref,
                    clawback_id=ids.dispute_reinstatement_id(ref["reward_id"], dispute_id),
                    kind="reinstatement",
                    amount_minor=amount,
                    source=dispute["closed"],
                    **common,
                )
            )
        # Refund share the dispute held back (it had taken everything) is due now.
        out.extend(_settle_refunds(payment, entry, refunded, dispute_id))
    return out


def _check_entry(entry: dict[str, Any], refunded: int) -> None:
    ref = entry["ref"]
    left = reward_left_minor(entry)
    invariant(
        0 <= left <= ref["amount_minor"],
        f"reward {ref['reward_id']}: {left} left of {ref['amount_minor']}",
    )
    target = refund_target_minor(ref["amount_minor"], refunded, ref["payment_amount_minor"])
    invariant(
        entry["refund_clawed_minor"] <= target,
        f"reward {ref['reward_id']}: refunds clawed {entry['refund_clawed_minor']} > {target}",
    )


def _correction(
    ref: dict[str, Any],
    *,
    clawback_id: str,
    kind: str,
    reason: str,
    amount_minor: int,
    charge_id: str | None,
    refund_id: str | None,
    dispute_id: str | None,
    refunded_total_minor: int | None,
    source: dict[str, Any],
) -> Correction:
    return {
        "clawback_id": clawback_id,
        "reward_id": ref["reward_id"],
        "kind": kind,
        "reason": reason,
        "referral_code": ref["referral_code"],
        "customer_key": ref["customer_key"],
        "amount_minor": amount_minor,
        "currency": ref["currency"],
        "livemode": ref["livemode"],
        "charge_id": charge_id,
        "refund_id": refund_id,
        "dispute_id": dispute_id,
        "refunded_total_minor": refunded_total_minor,
        "source_event_id": source["event_id"],
        "occurred_at": source["occurred_at"],
    }
