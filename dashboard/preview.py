"""What an edited program would have paid on the latest month of this program's rewarded
payments, in one ledger mode, next to what the version in force paid: per currency, with
the reward engine's own math (streams/ledger/rewards.py `invoice_lines` / `one_time_lines`).

From each reward record's own fields: the payment's amount, its base and its tenure month.
An estimate, and the page says so: payments the version in force did not reward (below its
minimum, past its duration, other codes) are not in the month; caps are applied within the
month only; a first invoice is one in tenure month 1; a change of basis from gross to net
cannot be previewed (the records keep no tax split), those payments are counted apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dashboard.data import Data, Row
from dashboard.modes import account_of, base_mode
from streams.ledger.programs import Program
from streams.ledger.rewards import (
    LINE_FIRST_INVOICE_BONUS,
    LINE_ONE_TIME,
    invoice_lines,
    one_time_lines,
)

LATEST_MONTH_SQL = """
SELECT reward_id, line, customer_key, invoice_id, charge_id, toString(currency) AS currency,
    payment_amount_minor, base_amount_minor, reward_amount_minor, tenure_month,
    toString(basis) AS basis, toString(toStartOfMonth(paid_at)) AS month
FROM rewards FINAL
WHERE program_id = {program_id:String} AND livemode = {live:Bool} AND account = {account:String}
    AND toStartOfMonth(paid_at) = (
        SELECT toStartOfMonth(max(paid_at)) FROM rewards FINAL
        WHERE program_id = {program_id:String} AND livemode = {live:Bool}
            AND account = {account:String})
ORDER BY paid_at, reward_id
LIMIT 100000"""


@dataclass
class CurrencyPreview:
    payments: int = 0
    in_force_minor: int = 0
    edited_minor: int = 0
    not_previewed: int = 0  # payments whose base cannot be recomputed (gross -> net)


@dataclass
class Preview:
    mode: str
    month: str
    currencies: dict[str, CurrencyPreview] = field(default_factory=dict)


def preview(program: Program, rows: Iterable[Row], mode: str) -> Preview:
    rows = list(rows)
    result = Preview(mode=mode, month=str(rows[0]["month"])[:7] if rows else "")
    payments: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        ref = str(row["invoice_id"] or row["charge_id"])
        payments.setdefault((str(row["currency"]), ref), []).append(row)
    used: dict[tuple[str, str], int] = {}  # (customer, currency) -> earned this month
    for (currency, _), lines in payments.items():
        out = result.currencies.setdefault(currency, CurrencyPreview())
        out.payments += 1
        out.in_force_minor += sum(int(r["reward_amount_minor"]) for r in lines)
        main = next((r for r in lines if r["line"] != LINE_FIRST_INVOICE_BONUS), lines[0])
        paid = int(main["payment_amount_minor"])
        if program.basis == main["basis"]:
            base = int(main["base_amount_minor"])
        elif program.basis == "gross":
            base = paid
        else:
            out.not_previewed += 1
            continue
        if not program.active:
            continue
        key = (str(main["customer_key"]), currency)
        # total = amount paid and total_excluding_tax = base give back exactly this base.
        if main["line"] == LINE_ONE_TIME:
            new = one_time_lines(program, currency=currency, amount=paid,
                                 total_excluding_tax=base, total=paid,
                                 used_minor=used.get(key, 0))  # fmt: skip
        else:
            month = int(main["tenure_month"] or 1)
            new = invoice_lines(program, currency=currency, amount_paid=paid,
                                total_excluding_tax=base, total=paid, tenure_month=month,
                                first_invoice=month == 1, used_minor=used.get(key, 0))  # fmt: skip
        earned = sum(line.amount_minor for line in new)
        used[key] = used.get(key, 0) + earned
        out.edited_minor += earned
    result.currencies = dict(sorted(result.currencies.items()))
    return result


async def load_preview(data: Data, program: Program, mode: str) -> Preview:
    rows = await data.query(LATEST_MONTH_SQL, {"program_id": program.id,
                                               "live": base_mode(mode) == "live",
                                               "account": account_of(mode)})  # fmt: skip
    return preview(program, rows, mode)
