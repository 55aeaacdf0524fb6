"""A referrer's statement: every reward, clawback, reinstatement and payout of one
currency and ledger mode, with the running balance, for the page and as CSV.

The named report `referrer_statement` (issue 11's contract: params referral_code,
currency, mode; columns at, kind, record_id, currency, mode, amount_minor signed,
running_balance_minor) is used when the report catalogue has it. Until then
FALLBACK_SQL below renders the same columns from the base tables.
TODO(issue 11): delete FALLBACK_SQL once `referrer_statement` is on main.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from dashboard.data import Data, Row
from dashboard.modes import in_mode

COLUMNS = ["at", "kind", "record_id", "currency", "mode", "amount_minor",
           "running_balance_minor"]  # fmt: skip
REPORT = "referrer_statement"

# Stand-in for the issue-11 report (to be replaced): rewards +, clawbacks - and
# reinstatements + (signed), payouts that the worker accepted - their cash; running balance
# = what is owed so far. Payout records carry no Connect account: platform modes only.
FALLBACK_SQL = """
SELECT at, kind, record_id, currency, mode, amount_minor,
    sum(amount_minor) OVER (ORDER BY at, record_id
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_balance_minor
FROM (
    SELECT toString(paid_at) AS at, 'reward' AS kind, reward_id AS record_id,
        toString(currency) AS currency,
        if(account = '', if(livemode, 'live', 'test'),
           concat(if(livemode, 'live', 'test'), '@', account)) AS mode,
        reward_amount_minor AS amount_minor
    FROM rewards FINAL
    WHERE referral_code = {referral_code:String} AND currency = {currency:String}
    UNION ALL
    SELECT toString(occurred_at), toString(kind), clawback_id, toString(currency),
        if(account = '', if(livemode, 'live', 'test'),
           concat(if(livemode, 'live', 'test'), '@', account)),
        signed_amount_minor
    FROM clawbacks FINAL
    WHERE referral_code = {referral_code:String} AND currency = {currency:String}
    UNION ALL
    SELECT toString(paid_at), 'payout', payout_id, toString(currency),
        if(livemode, 'live', 'test'), -amount_minor
    FROM payouts FINAL
    WHERE referral_code = {referral_code:String} AND currency = {currency:String}
        AND payout_id IN (SELECT payout_id FROM reward_status FINAL WHERE status = 'paid')
)
WHERE mode = {mode:String}
ORDER BY at, record_id
LIMIT 100000"""


async def load_statement(data: Data, code: str, currency: str, mode: str) -> list[Row]:
    if data.has_report(REPORT):
        rows = await data.report(REPORT, referral_code=code, currency=currency, mode=mode)
        return [{c: row.get(c) for c in COLUMNS} for row in in_mode(rows, mode)]
    rows = await data.query(
        FALLBACK_SQL, {"referral_code": code, "currency": currency.lower(), "mode": mode}
    )
    return [{c: row.get(c) for c in COLUMNS} for row in rows]


def statement_csv(rows: Iterable[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        # A leading = + - @ would make a spreadsheet evaluate a cell: codes and ids are
        # text, so quote them with an apostrophe; amounts stay numbers.
        writer.writerow(
            [_cell(row[c]) if c not in ("amount_minor", "running_balance_minor") else row[c]
             for c in COLUMNS]
        )  # fmt: skip
    return out.getvalue()


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
