"""The money math of rewards, pure: base amounts, rates, tiers, bonus, minimum and cap.

Amounts are integers in the currency's minor unit; rates are Decimal fractions.

Rounding rule: ROUND_HALF_UP to the minor unit (half a cent goes up, away from zero),
applied once per amount that appears on a reward record:

1. base (base_amount_minor):
   - gross: the amount paid, as is;
   - net:   ROUND_HALF_UP(amount_paid x total_excluding_tax / total); total <= 0 gives 0.
     Discounts and customer credits are already inside amount_paid; the fraction takes out
     the payment's proportional share of tax (tax-exclusive and tax-inclusive alike).
2. reward line (reward_amount_minor):
   - rate: ROUND_HALF_UP(base x rate), computed from the rounded base printed on the record,
     so that anyone can recompute a record from its own fields;
   - flat: the program's amount for the currency (no rounding involved);
   - first-invoice bonus: the program's flat amount for the currency.
3. cap: a line that crosses the program's per-customer cap is reduced to what remains of
   it; lines after that are 0. Caps count rewards earned (clawbacks do not free room).
4. A line of 0 is not a reward: nothing is emitted.

A payment below the program's minimum invoice amount (compared with the amount paid, in
its currency) earns nothing, bonus included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from streams.ledger.programs import Program, Terms

LINE_INVOICE = "invoice"
LINE_ONE_TIME = "one_time"
LINE_FIRST_INVOICE_BONUS = "first_invoice_bonus"
_ONE = Decimal(1)


@dataclass(frozen=True)
class RewardLine:
    line: str  # invoice, one_time or first_invoice_bonus
    base_minor: int
    amount_minor: int
    rate: Decimal | None  # None for flat amounts and bonuses


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(_ONE, rounding=ROUND_HALF_UP))


def net_base(amount_paid: int, total_excluding_tax: int, total: int) -> int:
    """amount_paid less its proportional share of tax, ROUND_HALF_UP; 0 when total <= 0."""
    if total <= 0 or amount_paid <= 0:
        return 0
    if total_excluding_tax == total:
        return amount_paid
    # 60 digits keep the quotient exact far beyond where it could change the rounding: for
    # integers below 10**18 the quotient is never within 10**-19 of a half unless it is one.
    with localcontext(prec=60):
        return round_half_up(Decimal(amount_paid) * Decimal(total_excluding_tax) / Decimal(total))


def base_amount(basis: str, amount_paid: int, total_excluding_tax: int, total: int) -> int:
    if basis == "gross":
        return max(amount_paid, 0)
    return net_base(amount_paid, total_excluding_tax, total)


def terms_amount(terms: Terms, base_minor: int, currency: str) -> int:
    """What the terms pay on that base: ROUND_HALF_UP(base x rate) or the flat amount."""
    if terms.rate is not None:
        with localcontext(prec=60):
            return round_half_up(Decimal(base_minor) * terms.rate)
    return (terms.flat_minor or {}).get(currency, 0)


def apply_cap(amount_minor: int, cap_minor: int | None, used_minor: int) -> int:
    """The part of `amount_minor` that still fits under the cap (all of it when uncapped)."""
    if cap_minor is None:
        return amount_minor
    return max(0, min(amount_minor, cap_minor - used_minor))


def _capped(
    program: Program, currency: str, lines: list[RewardLine], used_minor: int
) -> list[RewardLine]:
    cap = program.cap_minor.get(currency)
    out: list[RewardLine] = []
    for line in lines:
        amount = apply_cap(line.amount_minor, cap, used_minor)
        if amount > 0:
            used_minor += amount
            out.append(RewardLine(line.line, line.base_minor, amount, line.rate))
    return out


def _below_minimum(program: Program, currency: str, amount_paid: int) -> bool:
    minimum = program.minimum_invoice_minor.get(currency)
    return amount_paid <= 0 or (minimum is not None and amount_paid < minimum)


def invoice_lines(
    program: Program,
    *,
    currency: str,
    amount_paid: int,
    total_excluding_tax: int,
    total: int,
    tenure_month: int,
    first_invoice: bool,
    used_minor: int,
) -> list[RewardLine]:
    """The reward lines one paid invoice earns under `program`.

    `used_minor` is what this program already rewarded this customer in `currency` (for the
    cap); `first_invoice` marks the customer's first paid invoice (for the bonus).
    """
    if _below_minimum(program, currency, amount_paid):
        return []
    base = base_amount(program.basis, amount_paid, total_excluding_tax, total)
    lines: list[RewardLine] = []
    terms = program.terms_for_month(tenure_month)
    if terms is not None:
        lines.append(
            RewardLine(LINE_INVOICE, base, terms_amount(terms, base, currency), terms.rate)
        )
        bonus = program.first_invoice_bonus_minor.get(currency, 0)
        if first_invoice and bonus:
            lines.append(RewardLine(LINE_FIRST_INVOICE_BONUS, base, bonus, None))
    return _capped(program, currency, lines, used_minor)


def one_time_lines(
    program: Program,
    *,
    currency: str,
    amount: int,
    total_excluding_tax: int,
    total: int,
    used_minor: int,
) -> list[RewardLine]:
    """The reward line of a one-time payment: the program's base terms, no tenure."""
    if not program.one_time_payments or _below_minimum(program, currency, amount):
        return []
    base = base_amount(program.basis, amount, total_excluding_tax, total)
    line = RewardLine(
        LINE_ONE_TIME, base, terms_amount(program.terms, base, currency), program.terms.rate
    )
    return _capped(program, currency, [line], used_minor)


def reward_id(
    livemode: bool, program_id: str, payment_id: str, line: str, account: str | None = None
) -> str:
    """Deterministic id of a reward: the same cause always yields the same id. The mode (and
    the Connect account) is part of it so that live and test records, or two accounts'
    records, can never replace each other downstream."""
    mode = "live" if livemode else "test"
    mode = mode if account is None else f"{mode}@{account}"
    return f"{mode}/{program_id}/{payment_id}/{line}"


def used_by_program(
    rewards: Mapping[str, Mapping[str, object]], program_id: str, currency: str
) -> int:
    """Sum of the reward records (reward.avsc dicts) of one program in one currency."""
    total = 0
    for record in rewards.values():
        if record["program_id"] == program_id and record["currency"] == currency:
            amount = record["reward_amount_minor"]
            total += amount if isinstance(amount, int) else 0
    return total
