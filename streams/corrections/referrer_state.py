"""The referrer-side state and the unit of work every referrer-side function returns.

Referrer state (JSON, one value per referral code; `new_referrer_state(code)`):

    {"referral_code": str,
     "now_high": int,                       # latest `now` seen: hold expiry never goes back
     "balances": {balance_key: Balance},    # balances.py, one per currency and mode
     "holds": {reward_id: hold_until},      # exactly the rewards in status pending
     "payouts": {payout_id: {"fingerprint": str, "accepted": bool}},
     "parked": {reward_id: {correction_id: correction}}}   # corrections before their reward

Reward entries (holds.py) live in a second mapping keyed by reward id, because a busy
referrer has many: a step reads only the entries it needs and returns those it changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.corrections import balances
from streams.corrections.errors import invariant
from streams.corrections.holds import Entry

State = dict[str, Any]
Emitted = tuple[str, dict[str, Any]]  # (kind: "clawback" | "reward_status", record)


def new_referrer_state(referral_code: str) -> State:
    return {
        "referral_code": referral_code,
        "now_high": 0,
        "balances": {},
        "holds": {},
        "payouts": {},
        "parked": {},
    }


@dataclass
class Step:
    """Result of one referrer-side operation. Write `state` back under its referral code
    and each of `rewards` under its reward id, then produce `records` in order (kind
    clawback -> referral.clawbacks, reward_status -> referral.status). `notes` are
    anomalies worth a log line (a parked correction, a repeated payout), not errors.
    `outcome` is set by payouts: accepted, rejected or repeat."""

    state: State
    rewards: dict[str, Entry] = field(default_factory=dict)
    records: list[Emitted] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome: str | None = None

    @classmethod
    def begin(cls, state: State, now: int) -> Step:
        state = copy.deepcopy(state)
        state["now_high"] = max(state["now_high"], now)
        return cls(state=state)

    @property
    def now(self) -> int:
        return int(self.state["now_high"])

    def entry(self, entries: Mapping[str, Entry], reward_id: str) -> Entry | None:
        """The entry as changed so far in this step, else a private copy of the stored one."""
        if reward_id not in self.rewards:
            stored = entries.get(reward_id)
            if stored is None:
                return None
            self.rewards[reward_id] = copy.deepcopy(stored)
        return self.rewards[reward_id]

    def fold(self, kind: str, record: dict[str, Any]) -> None:
        """Apply a record to its balance (creating it), checking the invariant."""
        invariant(
            record["referral_code"] == self.state["referral_code"],
            f"record of {record['referral_code']} in the state of {self.state['referral_code']}",
        )
        if balances.moves_nothing(kind, record):
            return
        key = balances.balance_key(record["currency"], record["livemode"], record.get("account"))
        current = self.state["balances"].get(key) or balances.new_balance(
            record["referral_code"], record["currency"], record["livemode"]
        )
        self.state["balances"][key] = balances.fold(current, kind, record)

    def emit(self, kind: str, record: dict[str, Any]) -> None:
        self.fold(kind, record)
        self.records.append((kind, record))
