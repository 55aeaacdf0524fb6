"""Customer side, refunds: proportional clawbacks under duplicates, reordering and refunds
that arrive before their payment."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.corrections.errors import CorrectionInputError
from streams.corrections.payments import apply_refund, new_customer_state, register_reward
from streams.corrections.refs import RewardRef
from streams.corrections.stripe_facts import refund_fact
from tests.unit.test_corrections_math import half_up_reference
from tests.unit.test_corrections_support import (
    charge_refunded,
    event,
    net_clawed,
    refund_event,
    reward,
)


def feed(state: dict, events: list[dict[str, Any]]) -> tuple[dict, list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    for e in events:
        fact = refund_fact(e)
        assert fact is not None
        state, corrections = apply_refund(state, fact)
        out.extend(corrections)
    return state, out


def test_two_partial_refunds_then_the_rest_claw_back_proportionally() -> None:
    state, out = register_reward(new_customer_state(), reward(amount_minor=2000))
    assert out == []
    state, first = feed(state, [charge_refunded("evt_1", 2500)])
    state, second = feed(state, [charge_refunded("evt_2", 5000)])
    state, rest = feed(state, [charge_refunded("evt_3", 10_000)])
    assert [c["amount_minor"] for c in first + second + rest] == [500, 500, 1000]
    assert [c["clawback_id"] for c in first + second + rest] == [
        "rw_1/refund/2500",
        "rw_1/refund/5000",
        "rw_1/refund/10000",
    ]
    assert first[0]["source_event_id"] == "evt_1"
    assert first[0]["refunded_total_minor"] == 2500
    assert {c["reason"] for c in first + second + rest} == {"refund"}


def test_halves_round_half_up_and_the_sum_is_still_exact() -> None:
    state, _ = register_reward(
        new_customer_state(), reward(amount_minor=333, payment_amount_minor=1000)
    )
    state, out = feed(state, [refund_event("evt_1", "re_1", 500, payment_intent=None)])
    assert out[0]["amount_minor"] == 167  # 166.5 -> 167
    assert out[0]["refund_id"] == "re_1"
    state, out2 = feed(state, [refund_event("evt_2", "re_2", 500)])
    assert out2[0]["amount_minor"] == 166
    assert net_clawed(out + out2, "rw_1") == 333


def test_duplicates_and_stale_snapshots_have_no_effect() -> None:
    state, _ = register_reward(new_customer_state(), reward())
    state, out = feed(state, [charge_refunded("evt_2", 6000)])
    state, again = feed(
        state,
        [
            charge_refunded("evt_2", 6000),  # redelivery
            charge_refunded("evt_1", 3000),  # older snapshot, delivered late
            refund_event("evt_r1", "re_1", 3000),  # its refund: already inside 6000
        ],
    )
    assert [c["amount_minor"] for c in out] == [1200]
    assert again == []


def test_refund_before_the_payment_settles_when_the_reward_appears() -> None:
    state, parked = feed(new_customer_state(), [charge_refunded("evt_1", 4000)])
    assert parked == []
    state, out = register_reward(state, reward())
    assert [(c["clawback_id"], c["amount_minor"], c["source_event_id"]) for c in out] == [
        ("rw_1/refund/4000", 800, "evt_1")
    ]
    # Registering the same reward again (a re-emission) changes nothing.
    state, again = register_reward(state, reward())
    assert again == []


def test_several_rewards_on_one_payment_are_each_clawed_back_proportionally() -> None:
    state = new_customer_state()
    state, _ = register_reward(state, reward("rw_invoice", amount_minor=2000))
    state, _ = register_reward(state, reward("rw_bonus", amount_minor=1500))
    state, out = feed(state, [charge_refunded("evt_1", 5000)])
    assert {c["reward_id"]: c["amount_minor"] for c in out} == {"rw_invoice": 1000, "rw_bonus": 750}
    state, out2 = feed(state, [charge_refunded("evt_2", 10_000)])
    assert net_clawed(out + out2, "rw_invoice") == 2000
    assert net_clawed(out + out2, "rw_bonus") == 1500


def test_one_time_payment_without_payment_intent_is_matched_by_charge() -> None:
    ref = reward(payment_intent=None, charge="ch_9")
    state, _ = register_reward(new_customer_state(), ref)
    state, out = feed(state, [charge_refunded("evt_1", 10_000, charge="ch_9", payment_intent=None)])
    assert net_clawed(out, "rw_1") == 2000


def test_reward_known_by_payment_intent_only_is_matched_through_the_refund() -> None:
    # Basil invoices may name only the payment intent; the refund names both.
    state, _ = register_reward(new_customer_state(), reward(charge=None))
    state, out = feed(state, [refund_event("evt_1", "re_1", 10_000)])
    assert net_clawed(out, "rw_1") == 2000


def test_facts_seen_under_charge_and_payment_intent_separately_are_merged() -> None:
    state, _ = register_reward(new_customer_state(), reward(charge=None))  # pi_1 only
    state, early = feed(state, [charge_refunded("evt_1", 3000, payment_intent=None)])  # ch_1
    assert early == []  # ch_1 is not known to belong to pi_1 yet
    state, out = feed(state, [refund_event("evt_2", "re_2", 1000)])  # ch_1 + pi_1: one payment
    # re_2 may be inside the 3000 already seen: 3000 is what is known to be refunded.
    assert [c["amount_minor"] for c in out] == [600]
    state, later = feed(state, [charge_refunded("evt_3", 4000)])
    assert [c["amount_minor"] for c in later] == [200]


def test_failed_refund_seen_first_claws_nothing() -> None:
    state, _ = register_reward(new_customer_state(), reward())
    state, out = feed(
        state, [refund_event("evt_1", "re_1", 5000, status="failed", kind="refund.failed")]
    )
    assert out == []


def test_refund_in_another_currency_is_refused() -> None:
    state, _ = register_reward(new_customer_state(), reward(currency="eur"))
    with pytest.raises(CorrectionInputError, match="currency"):
        feed(state, [charge_refunded("evt_1", 100)])


def test_inputs_are_not_mutated() -> None:
    state, _ = register_reward(new_customer_state(), reward())
    before = repr(state)
    feed(state, [charge_refunded("evt_1", 100)])
    assert repr(state) == before


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "charge.refunded", "created": 1, "data": {"object": {"id": "ch_1"}}},
        event("evt_1", "charge.refunded", {"id": "ch_1", "amount_refunded": -5}),
        event("evt_1", "refund.created", {"id": "re_1", "amount": 5}),  # no charge
        event("evt_1", "refund.created", {"id": "re_1", "charge": "ch_1"}),  # no amount
        {"id": "evt_1", "type": "charge.refunded", "created": 1, "data": {}},
    ],
)
def test_malformed_refund_events_raise_a_clear_error(bad: dict[str, Any]) -> None:
    with pytest.raises(CorrectionInputError):
        refund_fact(bad)


def test_other_events_are_not_refund_facts_and_expanded_ids_are_read() -> None:
    assert refund_fact(event("evt_1", "invoice.paid", {"id": "in_1"})) is None
    fact = refund_fact(
        event("evt_1", "refund.created", {"id": "re_1", "amount": 5, "charge": {"id": "ch_7"}})
    )
    assert fact is not None and fact.charge_id == "ch_7" and fact.payment_intent_id is None


# --- properties -------------------------------------------------------------------------


@st.composite
def refund_history(draw: st.DrawFn) -> dict[str, Any]:
    """A payment P refunded in parts (summing to P), several rewards on it, and the events
    that describe it: for each part a refund.created and/or a charge.refunded snapshot."""
    payment = draw(st.integers(min_value=1, max_value=10**9))
    cuts = sorted(
        draw(st.lists(st.integers(min_value=1, max_value=payment), max_size=6, unique=True))
    )
    points = [c for c in cuts if c < payment] + [payment]
    parts = [b - a for a, b in zip([0, *points], points, strict=False)]
    rewards = [
        draw(st.integers(min_value=0, max_value=payment)) for _ in range(draw(st.integers(1, 3)))
    ]
    # Stripe sends both for every refund; a history may also lack one family entirely
    # (an endpoint not subscribed to it), never single events (delivery is at least once).
    via = draw(st.sampled_from(["refund", "charge", "both"]))
    events: list[dict[str, Any]] = []
    for i, (part, point) in enumerate(zip(parts, points, strict=True)):
        if via in ("refund", "both"):
            events.append(refund_event(f"evt_r{i}", f"re_{i}", part))
        if via in ("charge", "both"):
            events.append(charge_refunded(f"evt_c{i}", point, amount_minor=payment))
    return {"payment": payment, "rewards": rewards, "events": events}


def refs_for(history: dict[str, Any]) -> list[RewardRef]:
    return [
        reward(f"rw_{i}", amount_minor=amount, payment_amount_minor=history["payment"])
        for i, amount in enumerate(history["rewards"])
    ]


def known_refunded(events: list[dict[str, Any]]) -> int:
    """Independent lower bound of what is refunded, from the events delivered."""
    snapshots = [
        e["data"]["object"]["amount_refunded"] for e in events if e["type"] == "charge.refunded"
    ]
    refunds = {
        e["data"]["object"]["id"]: e["data"]["object"]["amount"]
        for e in events
        if e["type"] == "refund.created"
    }
    return max(max(snapshots, default=0), sum(refunds.values()))


@settings(max_examples=300)
@given(refund_history(), st.data())
def test_any_order_with_duplicates_ending_in_full_refund_nets_every_reward_to_zero(
    history: dict[str, Any], data: st.DataObject
) -> None:
    refs = refs_for(history)
    events = history["events"]
    delivered = data.draw(
        st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=6)))
    )
    # The rewards may be registered at any point among the events.
    slots = sorted(
        data.draw(st.lists(st.integers(0, len(delivered)), min_size=len(refs), max_size=len(refs)))
    )
    state, out, seen = new_customer_state(), [], []
    for position in range(len(delivered) + 1):
        for ref, slot in zip(refs, slots, strict=True):
            if slot == position:
                state, corrections = register_reward(state, ref)
                out.extend(corrections)
        if position < len(delivered):
            seen.append(delivered[position])
            state, corrections = feed(state, [delivered[position]])
            out.extend(corrections)
        registered = [r for r, s in zip(refs, slots, strict=True) if s <= position]
        for ref in registered:
            # At every step: exactly the rounded share of what is known to be refunded.
            expected = half_up_reference(
                ref.amount_minor * known_refunded(seen), history["payment"]
            )
            assert net_clawed(out, ref.reward_id) == expected <= ref.amount_minor
    for ref in refs:
        assert net_clawed(out, ref.reward_id) == ref.amount_minor
    assert all(c["amount_minor"] > 0 and c["kind"] == "clawback" for c in out)
    ids = [c["clawback_id"] for c in out]
    assert len(ids) == len(set(ids))
