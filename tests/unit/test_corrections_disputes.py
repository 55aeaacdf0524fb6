"""Customer side, disputes: claw back what is left, reinstate exactly that when won."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.corrections.payments import (
    apply_dispute,
    apply_refund,
    new_customer_state,
    register_reward,
)
from streams.corrections.stripe_facts import dispute_fact, refund_fact
from tests.unit.test_corrections_math import half_up_reference
from tests.unit.test_corrections_support import (
    charge_refunded,
    dispute_event,
    net_clawed,
    reward,
)


def feed(state: dict, events: list[dict[str, Any]]) -> tuple[dict, list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    for e in events:
        if e["type"].startswith("charge.dispute."):
            fact = dispute_fact(e)
            assert fact is not None
            state, corrections = apply_dispute(state, fact)
        else:
            refund = refund_fact(e)
            assert refund is not None
            state, corrections = apply_refund(state, refund)
        out.extend(corrections)
    return state, out


CREATED = dispute_event("evt_d1", "charge.dispute.created", "needs_response")
WON = dispute_event("evt_d2", "charge.dispute.closed", "won", created=1_767_300_000)
LOST = dispute_event("evt_d3", "charge.dispute.closed", "lost", created=1_767_300_000)


def test_dispute_claws_back_everything_and_a_win_reinstates_it() -> None:
    state, _ = register_reward(new_customer_state(), reward(amount_minor=2000))
    state, opened = feed(state, [CREATED])
    assert [(c["clawback_id"], c["kind"], c["amount_minor"]) for c in opened] == [
        ("rw_1/dispute/dp_1/opened", "clawback", 2000)
    ]
    assert opened[0]["reason"] == "dispute" and opened[0]["dispute_id"] == "dp_1"
    state, won = feed(state, [WON])
    assert [(c["clawback_id"], c["kind"], c["amount_minor"]) for c in won] == [
        ("rw_1/dispute/dp_1/reinstated", "reinstatement", 2000)
    ]
    assert won[0]["source_event_id"] == "evt_d2"
    state, again = feed(state, [WON, CREATED, LOST])  # won is final: nothing more
    assert again == []


def test_lost_dispute_leaves_the_reward_clawed_back() -> None:
    state, _ = register_reward(new_customer_state(), reward(amount_minor=2000))
    state, out = feed(state, [CREATED, LOST, CREATED, LOST])
    assert net_clawed(out, "rw_1") == 2000 and len(out) == 1


def test_lost_then_won_on_appeal_reinstates() -> None:
    appeal = dispute_event("evt_d4", "charge.dispute.updated", "appeal_under_review")
    state, _ = register_reward(new_customer_state(), reward(amount_minor=2000))
    state, out = feed(state, [CREATED, LOST, appeal, WON])
    assert net_clawed(out, "rw_1") == 0


def test_closed_before_created_nets_the_same_and_a_win_seen_first_moves_nothing() -> None:
    state, _ = register_reward(new_customer_state(), reward(amount_minor=2000))
    _, in_order = feed(state, [CREATED, WON])
    _, reordered = feed(state, [WON, CREATED])
    assert net_clawed(in_order, "rw_1") == net_clawed(reordered, "rw_1") == 0
    assert [c["kind"] for c in in_order] == ["clawback", "reinstatement"]
    assert reordered == []  # the dispute is final (won): the stale open changes nothing


def test_dispute_after_partial_refund_takes_the_rest_and_a_win_gives_back_exactly_that() -> None:
    state, _ = register_reward(new_customer_state(), reward(amount_minor=2000))
    state, out = feed(state, [charge_refunded("evt_1", 2500), CREATED])
    assert [c["amount_minor"] for c in out] == [500, 1500]
    state, won = feed(state, [WON])
    assert [(c["kind"], c["amount_minor"]) for c in won] == [("reinstatement", 1500)]
    assert net_clawed(out + won, "rw_1") == 500


def test_refund_held_back_by_an_open_dispute_is_caught_up_when_it_is_won() -> None:
    state, _ = register_reward(new_customer_state(), reward(amount_minor=2000))
    state, out = feed(state, [CREATED, charge_refunded("evt_1", 5000)])
    assert net_clawed(out, "rw_1") == 2000  # nothing left for the refund to take
    # The refund's share moves from the dispute to the refund at once: same total.
    assert [(c["clawback_id"], c["kind"], c["amount_minor"]) for c in out[1:]] == [
        ("rw_1/dispute/dp_1/reinstated", "reinstatement", 1000),
        ("rw_1/refund/5000", "clawback", 1000),
    ]
    state, won = feed(state, [WON])
    assert [(c["clawback_id"], c["amount_minor"]) for c in won] == [
        ("rw_1/dispute/dp_1/reinstated/2", 1000),
    ]
    assert net_clawed(out + won, "rw_1") == 1000


def test_an_inquiry_moves_no_money_and_the_chargeback_after_it_does() -> None:
    inquiry = dispute_event("evt_i1", "charge.dispute.created", "warning_needs_response")
    review = dispute_event("evt_i2", "charge.dispute.updated", "warning_under_review")
    closed = dispute_event("evt_i3", "charge.dispute.closed", "warning_closed")
    state, _ = register_reward(new_customer_state(), reward(amount_minor=2000))
    state, out = feed(state, [inquiry, review, closed])
    assert out == []  # no funds were withdrawn: nothing to claw back
    escalated = dispute_event("evt_c1", "charge.dispute.created", "needs_response", dispute="dp_2")
    state, chargeback = feed(state, [escalated])
    assert [(c["kind"], c["amount_minor"]) for c in chargeback] == [("clawback", 2000)]


def test_a_partial_dispute_claws_back_only_the_disputed_share() -> None:
    partial = dispute_event("evt_p1", "charge.dispute.created", "needs_response")
    partial["data"]["object"]["amount"] = 2_500  # of a 10,000 charge
    state, _ = register_reward(new_customer_state(), reward(amount_minor=333))
    state, out = feed(state, [partial])
    assert net_clawed(out, "rw_1") == half_up_reference(333 * 2_500, 10_000)  # 83.25 -> 83
    lost = dispute_event("evt_p2", "charge.dispute.closed", "lost")
    lost["data"]["object"]["amount"] = 2_500
    state, more = feed(state, [lost])
    assert more == []  # lost keeps what the chargeback took, no more
    state, refund = feed(state, [charge_refunded("evt_r", 7_500)])  # the rest, refunded
    assert net_clawed(out + more + refund, "rw_1") == 333


def test_dispute_before_the_reward_settles_on_registration() -> None:
    state, parked = feed(new_customer_state(), [CREATED, WON])
    assert parked == []
    state, out = register_reward(state, reward(amount_minor=2000))
    assert out == []  # won before the reward existed: nothing was ever withdrawn from it


@st.composite
def dispute_history(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str, int]:
    """A dispute's events (optionally with appeal) and some refunds, plus how it ends."""
    ending = draw(st.sampled_from(["open", "lost", "won", "lost_then_won", "inquiry_closed"]))
    d = "dp_1"
    events = {
        "open": [dispute_event("e_c", "charge.dispute.created", "needs_response", dispute=d)],
        "lost": [
            dispute_event("e_c", "charge.dispute.created", "needs_response", dispute=d),
            dispute_event("e_l", "charge.dispute.closed", "lost", dispute=d),
        ],
        "won": [
            dispute_event("e_c", "charge.dispute.created", "under_review", dispute=d),
            dispute_event("e_w", "charge.dispute.closed", "won", dispute=d),
        ],
        "lost_then_won": [
            dispute_event("e_c", "charge.dispute.created", "needs_response", dispute=d),
            dispute_event("e_l", "charge.dispute.closed", "lost", dispute=d),
            dispute_event("e_a", "charge.dispute.updated", "appeal_needs_response", dispute=d),
            dispute_event("e_w", "charge.dispute.closed", "won", dispute=d),
        ],
        "inquiry_closed": [
            dispute_event("e_c", "charge.dispute.created", "warning_needs_response", dispute=d),
            dispute_event("e_x", "charge.dispute.closed", "warning_closed", dispute=d),
        ],
    }[ending]
    points = sorted(draw(st.lists(st.integers(1, 10_000), max_size=3, unique=True)))
    events += [charge_refunded(f"e_r{p}", p) for p in points]
    return events, ending, max(points, default=0)


@settings(max_examples=300)
@given(dispute_history(), st.integers(0, 3000), st.data())
def test_dispute_outcome_is_exact_in_any_order_with_duplicates(
    history: tuple[list[dict[str, Any]], str, int], amount: int, data: st.DataObject
) -> None:
    events, ending, refunded = history
    extra = data.draw(st.lists(st.sampled_from(events), max_size=5))
    delivered = data.draw(st.permutations(events + extra))
    at = data.draw(st.integers(0, len(delivered)))
    state, out = feed(new_customer_state(), delivered[:at])
    state, registered = register_reward(state, reward(amount_minor=amount))
    state, rest = feed(state, delivered[at:])
    out = out + registered + rest
    refund_share = half_up_reference(amount * refunded, 10_000)
    if ending in ("won", "lost_then_won", "inquiry_closed"):
        # Reinstated exactly what the dispute took: only the refunds' share stays clawed.
        assert net_clawed(out, "rw_1") == refund_share
    else:
        assert net_clawed(out, "rw_1") == amount
    running = 0
    for c in out:
        running += c["amount_minor"] if c["kind"] == "clawback" else -c["amount_minor"]
        assert 0 <= running <= amount  # never more than the reward, never below zero
    disputed = [c for c in out if c["reason"] == "dispute"]
    if ending in ("won", "lost_then_won", "inquiry_closed"):
        assert net_clawed(disputed, "rw_1") == 0  # a win gives back exactly what it took
    if ending == "inquiry_closed":
        assert disputed == []  # an inquiry never claws back
    assert len({c["clawback_id"] for c in out}) == len(out)
