"""Payouts from the dashboard: the payable rewards of a referrer, currency and platform
mode, the cash due for a selection (the worker's rule, streams/corrections/payouts.py
`absorption_minor`: the referrer's carry-over is settled from the rewards first), and the
`referral.payouts` record `refstream payouts mark` publishes. The worker applies it whole
or rejects it whole; `payout_outcome` reads what it decided.

Payout records carry no Connect account, so payouts are offered on the platform's live
and test screens only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dashboard.data import Data, Row
from streams.corrections.payouts import absorption_minor

PAYOUT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

# Payable platform rewards with their standing (reward + cancel-mode clawbacks), from the
# balance ledger's per-reward states (sinks/balance_ledger.py): the `reward_states` view
# computes the same figures from the base tables with FINAL and joins, which grows with
# history; the states table is one row per reward, kept current by the sink. A state's
# status is its latest transition, else the reward's emission status.
PAYABLE_SQL = """
SELECT reward_id, referral_code, currency, amount_minor + cancelled_minor AS standing_minor,
    toString(paid_at) AS paid_at
FROM balance_reward_states
WHERE has_reward AND if(status != '', status, emission_status) = 'payable'
    AND livemode = {live:Bool} AND account = ''
    AND ({referral_code:String} = '' OR referral_code = {referral_code:String})
ORDER BY referral_code, currency, reward_id
LIMIT 10000"""

# The referrer's carry-over (> 0: a debt from clawbacks of paid rewards, netted against
# later payouts) as ClickHouse sees it: negative-balance clawbacks (every correction of a
# reward but its cancel-mode ones) less what payouts absorbed.
CARRY_SQL = """
SELECT
    -(SELECT sum(corrections_minor - cancelled_minor) FROM balance_reward_states
      WHERE has_reward AND referral_code = {referral_code:String}
        AND currency = {currency:String} AND livemode = {live:Bool})
    - (SELECT sum(carryover_absorbed_minor) FROM reward_status FINAL
       WHERE referral_code = {referral_code:String} AND currency = {currency:String}
         AND livemode = {live:Bool} AND status = 'paid' AND account = '') AS carry_minor"""

OUTCOME_SQL = """
SELECT reward_id, toString(status) AS status, reason, toString(rejection_code) AS code,
    amount_minor, carryover_absorbed_minor
FROM reward_status FINAL
WHERE payout_id = {payout_id:String} AND status IN ('paid', 'payout_rejected')
ORDER BY reward_id"""


CASH_SQL = """
SELECT amount_minor, toString(currency) AS currency, referral_code
FROM payouts FINAL WHERE payout_id = {payout_id:String} LIMIT 1"""


class PayoutInputError(ValueError):
    """A payout form that cannot make a record; the message names the field."""


async def payable_rewards(data: Data, live: bool, code: str = "") -> list[Row]:
    return await data.query(PAYABLE_SQL, {"live": live, "referral_code": code})


async def carry_over_minor(data: Data, code: str, currency: str, live: bool) -> int:
    rows = await data.query(CARRY_SQL, {"referral_code": code, "currency": currency,
                                        "live": live})  # fmt: skip
    return int(rows[0]["carry_minor"] or 0) if rows else 0


def cash_due_minor(standings: list[int], carry_minor: int) -> int:
    return sum(standings) - sum(absorption_minor(standings, carry_minor))


@dataclass(frozen=True)
class Group:
    """One referrer's payable rewards in one currency."""

    referral_code: str
    currency: str
    rewards: list[Row]

    @property
    def standing_minor(self) -> int:
        return sum(int(r["standing_minor"]) for r in self.rewards)


def groups(rows: Iterable[Row]) -> list[Group]:
    out: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        out.setdefault((str(row["referral_code"]), str(row["currency"])), []).append(row)
    return [Group(code, currency, rewards) for (code, currency), rewards in out.items()]


def payout_record(
    *, payout_id: str, code: str, currency: str, live: bool, reward_ids: list[str],
    amount_minor: int, now_s: int,
) -> dict[str, Any]:  # fmt: skip
    """The referral.payouts record, checked like `refstream payouts mark` checks it."""
    if not code:
        raise PayoutInputError("referral_code: name the referrer paid")
    if not PAYOUT_ID.match(payout_id):
        raise PayoutInputError("payout_id: 1-100 letters, digits, '_', '.', ':', '-'")
    if not reward_ids:
        raise PayoutInputError("reward_id: choose at least one payable reward")
    if not re.fullmatch(r"[a-z]{3}", currency):
        raise PayoutInputError("currency: expected an ISO 4217 code")
    if amount_minor < 0:
        raise PayoutInputError("amount: the carry-over exceeds the rewards chosen")
    return {
        "payout_id": payout_id,
        "referral_code": code,
        "reward_ids": list(dict.fromkeys(reward_ids)),
        "amount_minor": amount_minor,
        "currency": currency,
        "livemode": live,
        "paid_at": now_s,
    }


async def payout_outcome(data: Data, payout_id: str) -> tuple[str, list[Row]]:
    """accepted (every reward paid), rejected (reasons per reward) or waiting."""
    rows = await data.query(OUTCOME_SQL, {"payout_id": payout_id})
    if any(r["status"] == "payout_rejected" for r in rows):
        return "rejected", [r for r in rows if r["status"] == "payout_rejected"]
    if rows:
        return "accepted", rows
    return "waiting", []


async def payout_cash(data: Data, payout_id: str) -> Row | None:
    """The payout record as recorded (cash, currency, referrer), None before the sink has it."""
    rows = await data.query(CASH_SQL, {"payout_id": payout_id})
    return rows[0] if rows else None
