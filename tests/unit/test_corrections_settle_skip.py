"""Settlement skips the targets of rewards none of whose payments is refunded or disputed
(streams/corrections/payments.py `_settle`): the corrections and the book must be exactly
those of settling every reward in full, in any order, with duplicates."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.corrections import payments
from streams.corrections.payments import new_customer_state, register_reward
from tests.unit.test_corrections_disputes import feed
from tests.unit.test_corrections_support import charge_refunded, dispute_event, reward

PAYMENTS = [("ch_1", "pi_1"), ("ch_2", "pi_2"), ("ch_3", None)]


@st.composite
def history(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Rewards on three payments (one without a payment intent) mixed with refunds and
    disputes of some of them, in any order, some delivered twice."""
    steps: list[tuple[str, Any]] = []
    for n, (charge, pi) in enumerate(PAYMENTS):
        for r in range(draw(st.integers(0, 2))):
            amount = draw(st.integers(0, 3000))
            ref = reward(f"rw_{n}_{r}", amount_minor=amount, charge=charge, payment_intent=pi)
            steps.append(("reward", ref))
    for n, (charge, pi) in enumerate(PAYMENTS):
        if draw(st.booleans()):
            for p in sorted(draw(st.lists(st.integers(1, 10_000), max_size=2, unique=True))):
                e = charge_refunded(f"e_r{n}_{p}", p, charge=charge, payment_intent=pi)
                steps.append(("event", e))
        if draw(st.booleans()):
            status = draw(st.sampled_from(["lost", "won", "warning_closed"]))
            d = f"dp_{n}"
            for i, (kind, s) in enumerate(
                [("charge.dispute.created", "needs_response"), ("charge.dispute.closed", status)]
            ):
                e = dispute_event(
                    f"e_d{n}{i}", kind, s, dispute=d, charge=charge, payment_intent=pi
                )
                steps.append(("event", e))
    extra = draw(st.lists(st.sampled_from(steps), max_size=4)) if steps else []
    return draw(st.permutations(steps + extra))


def run(steps: list[tuple[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state, out = new_customer_state(), []
    for kind, item in steps:
        if kind == "reward":
            state, found = register_reward(state, item)
        else:
            state, found = feed(state, [copy.deepcopy(item)])
        out += found
    return state, out


@settings(max_examples=300, deadline=None)
@given(history())
def test_skipping_quiet_rewards_settles_exactly_as_settling_all(
    steps: list[tuple[str, Any]],
) -> None:
    skipped = run(steps)
    with pytest.MonkeyPatch.context() as mp:
        # No payment quiet, no reward untouched: every reward's targets computed in full.
        mp.setattr(payments._Charges, "quiet", lambda self, key: False)
        mp.setattr(payments, "_untouched", lambda entry: False)
        full = run(steps)
    assert skipped == full
