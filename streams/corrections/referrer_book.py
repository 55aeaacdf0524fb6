"""Referrer-side ledger: rewards, corrections, hold expiry (payouts: payouts.py).

Everything about one referrer runs on one partition (keyed by referral code), so the
order of rewards, corrections, payouts and ticks is the order seen here, and the status a
correction meets decides its mode: a reward not yet paid is reduced (cancel); a paid one
puts the amount on the referrer's carry-over (negative_balance).

Each function takes the referrer state, read access to reward entries and an injected
`now`, and returns a `Step` (referrer_state.py); inputs are never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from streams.corrections import balances, holds
from streams.corrections.errors import CorrectionInputError, invariant
from streams.corrections.holds import PAID, PAYABLE, PENDING, Entry
from streams.corrections.payouts import apply_payout
from streams.corrections.referrer_state import Emitted, State, Step, new_referrer_state
from streams.corrections.refs import RewardRef


def register_reward(state: State, entries: Mapping[str, Entry], ref: RewardRef, now: int) -> Step:
    """Open a reward's entry, make it payable if its hold is already over, and apply any
    correction that arrived before it. A reward id seen before has no second effect."""
    step = Step.begin(state, now)
    _check_routing(step, ref.referral_code, ref.reward_id)
    existing = step.entry(entries, ref.reward_id)
    if existing is not None:
        if existing["amount_minor"] != ref.amount_minor:
            step.notes.append(
                f"reward {ref.reward_id} re-emitted with amount {ref.amount_minor}, "
                f"kept {existing['amount_minor']}"
            )
        step.rewards.pop(ref.reward_id)  # unchanged: nothing to write back
        return step
    entry = holds.new_entry(ref)
    step.rewards[ref.reward_id] = entry
    step.fold("reward", _reward_record(ref))
    if entry["status"] == PENDING:
        step.state["holds"][ref.reward_id] = ref.hold_until
        _expire_hold(step, entry)
    # In arrival order: a reinstatement must follow the clawback it gives back.
    for correction in _parked_in_order(step.state["parked"].pop(ref.reward_id, [])):
        _apply(step, entry, correction)
    _check_step(step)
    return step


def apply_correction(
    state: State, entries: Mapping[str, Entry], correction: Mapping[str, Any], now: int
) -> Step:
    """Apply one correction from the customer side (payments.py); park it if its reward
    is not registered yet. A correction id applied before has no second effect."""
    step = Step.begin(state, now)
    reward_id = correction["reward_id"]
    _check_routing(step, correction["referral_code"], reward_id)
    entry = step.entry(entries, reward_id)
    if entry is None:
        parked = _parked_in_order(step.state["parked"].get(reward_id, []))
        if all(p["clawback_id"] != correction["clawback_id"] for p in parked):
            parked.append(dict(correction))
        step.state["parked"][reward_id] = parked
        step.notes.append(f"correction {correction['clawback_id']} parked: reward unknown")
        return step
    _apply(step, entry, correction)
    _check_step(step)
    return step


def advance_holds(state: State, entries: Mapping[str, Entry], now: int) -> Step:
    """Make every pending reward whose hold is over payable (effective at its hold end)."""
    step = Step.begin(state, now)
    due = sorted(
        (until, reward_id)
        for reward_id, until in step.state["holds"].items()
        if holds.hold_over(until, step.now)
    )
    for _, reward_id in due:
        entry = step.entry(entries, reward_id)
        invariant(entry is not None, f"hold of reward {reward_id} without its entry")
        _expire_hold(step, entry)  # type: ignore[arg-type]
    _check_step(step)
    return step


def next_hold_until(state: State) -> int | None:
    """When the next hold of this referrer ends (for scheduling a tick), if any."""
    return min(state["holds"].values(), default=None)


def check_consistency(state: State, entries: Mapping[str, Entry]) -> None:
    """Full cross-check of a referrer's balances against its entries (O(rewards)): each
    bucket equals the standing of the entries in that status, and holds lists exactly the
    pending ones. For tests and audits; the per-step checks are cheaper."""
    code = state["referral_code"]
    expected: dict[str, dict[str, int]] = {}
    pending: set[str] = set()
    for entry in entries.values():
        if entry["referral_code"] != code:
            continue
        holds.check_entry(entry)
        key = balances.balance_key(entry["currency"], entry["livemode"], entry.get("account"))
        sums = expected.setdefault(key, dict.fromkeys(balances.BUCKETS, 0))
        if entry["status"] in sums:
            sums[entry["status"]] += holds.standing_minor(entry)
        if entry["status"] == PENDING:
            pending.add(entry["reward_id"])
    invariant(set(state["holds"]) == pending, f"{code}: holds {state['holds']} != {pending}")
    for key, balance in state["balances"].items():
        balances.check(balance)
        for status, field in balances.BUCKETS.items():
            want = expected.get(key, {}).get(status, 0)
            invariant(balance[field] == want, f"{code} {key}: {field} {balance[field]} != {want}")


class ReferrerBook:
    """The referrer-side functions over two mutable mappings (dicts, or table partitions):
    `referrers` by referral code and `rewards` by reward id. Each method runs one step,
    writes back what changed and returns the records to produce, in order."""

    def __init__(
        self,
        referrers: MutableMapping[str, State] | None = None,
        rewards: MutableMapping[str, Entry] | None = None,
    ) -> None:
        self.referrers: MutableMapping[str, State] = {} if referrers is None else referrers
        self.rewards: MutableMapping[str, Entry] = {} if rewards is None else rewards

    def state(self, referral_code: str) -> State:
        return self.referrers.get(referral_code) or new_referrer_state(referral_code)

    def on_reward(self, ref: RewardRef, now: int) -> Step:
        return self._commit(register_reward(self.state(ref.referral_code), self.rewards, ref, now))

    def on_correction(self, correction: Mapping[str, Any], now: int) -> Step:
        state = self.state(correction["referral_code"])
        return self._commit(apply_correction(state, self.rewards, correction, now))

    def on_tick(self, referral_code: str, now: int) -> Step:
        return self._commit(advance_holds(self.state(referral_code), self.rewards, now))

    def on_payout(self, payout: Mapping[str, Any], now: int) -> Step:
        state = self.state(str(payout.get("referral_code") or ""))
        return self._commit(apply_payout(state, self.rewards, payout, now))

    def balance(self, referral_code: str, currency: str, livemode: bool) -> dict | None:
        key = balances.balance_key(currency, livemode)
        return self.state(referral_code)["balances"].get(key)

    def _commit(self, step: Step) -> Step:
        self.referrers[step.state["referral_code"]] = step.state
        for reward_id, entry in step.rewards.items():
            self.rewards[reward_id] = entry
        return step


# --- internals --------------------------------------------------------------------------


def _parked_in_order(parked: Any) -> list[dict[str, Any]]:
    """Parked corrections of one reward as a list in arrival order. (The first format kept
    a dict keyed by id, which the sorted-key JSON of the state reordered: a reinstatement
    id can sort before its clawback's.)"""
    return list(parked.values()) if isinstance(parked, dict) else list(parked)


def _check_routing(step: Step, referral_code: str, what: str) -> None:
    if referral_code != step.state["referral_code"]:
        raise CorrectionInputError(
            f"{what} of referrer {referral_code!r} routed to {step.state['referral_code']!r}"
        )


def _reward_record(ref: RewardRef) -> dict[str, Any]:
    # The fields of the referral.rewards record that a balance folds.
    return {
        "reward_id": ref.reward_id,
        "referral_code": ref.referral_code,
        "reward_amount_minor": ref.amount_minor,
        "currency": ref.currency,
        "livemode": ref.livemode,
        "account": ref.account,
        "status": ref.status,
    }


def _expire_hold(step: Step, entry: Entry) -> None:
    if entry["status"] != PENDING or not holds.hold_over(entry["hold_until"], step.now):
        return
    record = holds.transition(entry, PAYABLE, cause="hold", effective_at=entry["hold_until"])
    step.state["holds"].pop(entry["reward_id"], None)
    step.emit("reward_status", record)


def _apply(step: Step, entry: Entry, correction: Mapping[str, Any]) -> None:
    correction_id, amount = correction["clawback_id"], correction["amount_minor"]
    if correction_id in entry["corrections"]:
        return
    kind = correction["kind"]
    same = (correction["currency"].lower(), correction["livemode"])
    invariant(same == (entry["currency"], entry["livemode"]), f"{correction_id}: currency/mode")
    invariant(amount > 0, f"{correction_id}: amount {amount} is not positive")
    if kind == "clawback":
        invariant(
            amount <= holds.standing_minor(entry),
            f"{correction_id}: claws {amount}, only {holds.standing_minor(entry)} left",
        )
    else:
        invariant(kind == "reinstatement", f"{correction_id}: unknown kind {kind!r}")
        outstanding = entry["clawed_minor"] - entry["reinstated_minor"]
        invariant(amount <= outstanding, f"{correction_id}: reinstates more than was clawed")
    record = {
        **correction,
        "mode": "negative_balance" if entry["status"] == PAID else "cancel",
        "applied_to_status": entry["status"],
    }
    entry["clawed_minor" if kind == "clawback" else "reinstated_minor"] += amount
    entry["corrections"].append(correction_id)
    step.emit("clawback", record)
    new_status = holds.status_after_change(entry, step.now)
    if new_status != entry["status"]:
        effective_at = int(correction["occurred_at"])
        status_record = holds.transition(
            entry, new_status, cause=correction_id, effective_at=effective_at
        )
        if new_status == PENDING:
            step.state["holds"][entry["reward_id"]] = entry["hold_until"]
        else:
            step.state["holds"].pop(entry["reward_id"], None)
        step.emit("reward_status", status_record)
    holds.check_entry(entry)


def _check_step(step: Step) -> None:
    for entry in step.rewards.values():
        holds.check_entry(entry)
        in_holds = entry["reward_id"] in step.state["holds"]
        invariant(
            in_holds == (entry["status"] == PENDING),
            f"reward {entry['reward_id']}: {entry['status']} but in holds={in_holds}",
        )
    for balance in step.state["balances"].values():
        balances.check(balance)
        # Rewards clawed back to nothing are worth nothing once the step is done.
        invariant(
            balance["clawed_back_standing_minor"] == 0,
            f"{balance['referral_code']}: clawed_back bucket is not empty: {balance}",
        )


__all__ = [
    "Emitted",
    "ReferrerBook",
    "advance_holds",
    "apply_correction",
    "check_consistency",
    "next_hold_until",
    "register_reward",
]
