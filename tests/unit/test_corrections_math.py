"""Clawback money math: ROUND_HALF_UP once per point, telescoping to exactly the reward."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.corrections.clawback_math import fraction_half_up, share_minor
from streams.corrections.errors import InvariantViolation

AMOUNTS = st.integers(min_value=1, max_value=10**12)


def half_up_reference(numerator: int, denominator: int) -> int:
    """ROUND_HALF_UP(numerator / denominator) for numerator >= 0 in integers only:
    floor(n/d + 1/2) = floor((2n + d) / 2d). Independent of the Decimal code under test."""
    return (2 * numerator + denominator) // (2 * denominator)


@st.composite
def reward_and_payment(draw: st.DrawFn) -> tuple[int, int]:
    payment = draw(AMOUNTS)
    reward = draw(st.integers(min_value=0, max_value=payment * 2))
    return reward, payment


@given(reward_and_payment(), st.data())
def test_share_is_round_half_up_of_the_exact_quotient(rp: tuple[int, int], data: st.DataObject):
    reward, payment = rp
    part = data.draw(st.integers(min_value=0, max_value=payment))
    assert share_minor(reward, part, payment) == half_up_reference(reward * part, payment)


@pytest.mark.parametrize(
    ("reward", "part", "whole", "expected"),
    [
        (333, 500, 1000, 167),  # 166.5 rounds up
        (333, 499, 1000, 166),  # 166.167
        (1, 1, 2, 1),  # 0.5 rounds up
        (1, 1, 3, 0),  # 0.333
        (2000, 2500, 10_000, 500),
        (10**12, 10**12 - 1, 10**12, 10**12 - 1),  # no float drift at the top of the range
    ],
)
def test_share_examples(reward: int, part: int, whole: int, expected: int) -> None:
    assert share_minor(reward, part, whole) == expected


@given(st.integers(min_value=0, max_value=10**24), AMOUNTS)
def test_fraction_rounding_is_round_half_up_of_the_exact_value(numerator: int, den: int) -> None:
    assert fraction_half_up(Fraction(numerator, den)) == half_up_reference(numerator, den)


@given(reward_and_payment(), st.lists(AMOUNTS, min_size=1, max_size=4), st.data())
def test_shares_of_shares_round_once_and_telescope_to_the_reward(
    rp: tuple[int, int], shares: list[int], data: st.DataObject
) -> None:
    # F = sum a_p x r_p / c_p over an invoice's payments (STRIPE_FLOWS.md §4); rounded once.
    reward, _ = rp
    whole = sum(shares)
    refunded = [data.draw(st.integers(min_value=0, max_value=a)) for a in shares]
    money = sum((Fraction(r) for r in refunded), Fraction(0))
    target = fraction_half_up(reward * money / whole)
    assert target == half_up_reference(reward * sum(refunded), whole)
    assert fraction_half_up(reward * Fraction(whole) / whole) == reward


def test_rounding_refuses_a_negative_amount() -> None:
    with pytest.raises(InvariantViolation):
        fraction_half_up(Fraction(-1, 2))


def test_share_refuses_impossible_inputs() -> None:
    with pytest.raises(InvariantViolation):
        share_minor(100, 1, 0)
    with pytest.raises(InvariantViolation):
        share_minor(100, 11, 10)
