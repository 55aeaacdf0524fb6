"""Clawback money math: the one rounding rule.

Targets are exact fractions (docs/STRIPE_FLOWS.md §4: a reward's share of an invoice's
refunded or lost money, over all its payments' shares) rounded once, ROUND_HALF_UP, by
`fraction_half_up`; a correction is the difference between two rounded targets, so the
sum telescopes: partial refunds that end in a full refund claw exactly the reward, with
no drift from adding rounded steps. `share_minor` is the same rule on integers.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from streams.corrections.errors import invariant

# Enough digits that R x r / P is exact before rounding for any amount Stripe can carry
# (amounts are < 10^12 minor units, so the quotient needs < 40 significant digits).
_PRECISION = 60


def share_minor(reward_minor: int, part_minor: int, whole_minor: int) -> int:
    """ROUND_HALF_UP(reward x part / whole) for 0 <= part <= whole, whole > 0."""
    invariant(whole_minor > 0, f"share of a non-positive whole {whole_minor}")
    invariant(0 <= part_minor <= whole_minor, f"part {part_minor} outside 0..{whole_minor}")
    invariant(reward_minor >= 0, f"negative reward {reward_minor}")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        exact = Decimal(reward_minor) * Decimal(part_minor) / Decimal(whole_minor)
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fraction_half_up(value: Fraction) -> int:
    """ROUND_HALF_UP of an exact non-negative fraction: the one rounding rule, on exact
    arithmetic (shares of shares stay exact until this single rounding)."""
    invariant(value >= 0, f"negative amount {value}")
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)
