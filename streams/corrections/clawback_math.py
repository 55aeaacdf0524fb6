"""Clawback amounts: the one place money is divided.

Rule (see streams/corrections/README.md): a reward R on a payment P whose cumulative refunded
amount is r is clawed back, in total, ROUND_HALF_UP(R x r / P) minor units. Each refund
claws back the difference between that total at the new point and what was already
clawed for refunds, so

- the sum telescopes: any sequence of partial refunds that ends at r = P claws exactly R;
- one rounding per point, never a sum of rounded deltas drifting away from the total;
- a clawback never takes more than is left of the reward (a dispute may have taken it),
  and a shortfall held back that way is caught up once the money is back.
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


def refund_target_minor(reward_minor: int, refunded_total_minor: int, payment_minor: int) -> int:
    """Total a reward owes back once `refunded_total_minor` of its payment is refunded.

    Refunded totals above the payment (a charge larger than the invoice share the reward
    was computed on) count as a full refund."""
    refunded = max(0, min(refunded_total_minor, payment_minor))
    return share_minor(reward_minor, refunded, payment_minor)


def refund_clawback_minor(
    *,
    reward_minor: int,
    payment_minor: int,
    refunded_total_minor: int,
    refund_clawed_minor: int,
    left_minor: int,
) -> int:
    """What a refund point claws back now: the target minus what refunds already took,
    never below zero (a stale, lower point) and never more than is left of the reward."""
    due = refund_target_minor(reward_minor, refunded_total_minor, payment_minor)
    return max(0, min(due - refund_clawed_minor, left_minor))


def fraction_half_up(value: Fraction) -> int:
    """ROUND_HALF_UP of an exact non-negative fraction: the one rounding rule, on exact
    arithmetic (shares of shares stay exact until this single rounding)."""
    invariant(value >= 0, f"negative amount {value}")
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)
