"""Clawback money math: ROUND_HALF_UP once per point, telescoping to exactly the reward."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.corrections.clawback_math import (
    refund_clawback_minor,
    refund_target_minor,
    share_minor,
)
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


@given(reward_and_payment(), st.data())
def test_target_is_monotonic_and_ends_at_the_reward(rp: tuple[int, int], data: st.DataObject):
    reward, payment = rp
    low = data.draw(st.integers(min_value=0, max_value=payment))
    high = data.draw(st.integers(min_value=low, max_value=payment * 3))
    assert (
        0 <= refund_target_minor(reward, low, payment) <= refund_target_minor(reward, high, payment)
    )
    assert refund_target_minor(reward, 0, payment) == 0
    assert refund_target_minor(reward, payment, payment) == reward
    # Refunded beyond the payment (a bigger charge) is a full refund, never more.
    assert refund_target_minor(reward, payment + 1, payment) == reward


@given(reward_and_payment(), st.data())
def test_partial_refunds_ending_in_full_telescope_to_the_reward(
    rp: tuple[int, int], data: st.DataObject
) -> None:
    reward, payment = rp
    points = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=payment), max_size=12)))
    clawed = 0
    for point in [*points, payment]:
        amount = refund_clawback_minor(
            reward_minor=reward,
            payment_minor=payment,
            refunded_total_minor=point,
            refund_clawed_minor=clawed,
            left_minor=reward - clawed,
        )
        assert amount >= 0
        clawed += amount
        assert clawed == half_up_reference(reward * point, payment) <= reward
    assert clawed == reward


@given(reward_and_payment(), st.data())
def test_clawback_never_exceeds_what_is_left(rp: tuple[int, int], data: st.DataObject) -> None:
    reward, payment = rp
    clawed = data.draw(st.integers(min_value=0, max_value=reward))
    left = data.draw(st.integers(min_value=0, max_value=reward - clawed))
    point = data.draw(st.integers(min_value=0, max_value=payment * 2))
    amount = refund_clawback_minor(
        reward_minor=reward,
        payment_minor=payment,
        refunded_total_minor=point,
        refund_clawed_minor=clawed,
        left_minor=left,
    )
    assert 0 <= amount <= left


def test_share_refuses_impossible_inputs() -> None:
    with pytest.raises(InvariantViolation):
        share_minor(100, 1, 0)
    with pytest.raises(InvariantViolation):
        share_minor(100, 11, 10)
