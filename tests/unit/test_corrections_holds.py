"""Referrer side: status transitions, holds, parked and repeated corrections."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.corrections import holds
from streams.corrections.errors import CorrectionInputError, InvariantViolation
from streams.corrections.referrer_book import (
    ReferrerBook,
    apply_correction,
    check_consistency,
    next_hold_until,
    register_reward,
)
from streams.corrections.referrer_state import new_referrer_state
from tests.unit.test_corrections_support import DAY, T0, reward


def correction(
    clawback_id: str, amount: int, *, kind: str = "clawback", reward_id: str = "rw_1", at: int = T0
) -> dict[str, Any]:
    return {
        "clawback_id": clawback_id,
        "reward_id": reward_id,
        "kind": kind,
        "reason": "refund" if kind == "clawback" else "dispute",
        "referral_code": "ANNA",
        "customer_key": "cus_1",
        "amount_minor": amount,
        "currency": "usd",
        "livemode": True,
        "charge_id": "ch_1",
        "refund_id": None,
        "dispute_id": None,
        "refunded_total_minor": None,
        "source_event_id": "evt_x",
        "occurred_at": at,
    }


def statuses(step: Any) -> list[tuple[str, str | None, int]]:
    return [
        (r["status"], r["previous_status"], r["amount_minor"])
        for kind, r in step.records
        if kind == "reward_status"
    ]


def test_pending_until_the_hold_ends_then_payable_effective_at_the_hold_end() -> None:
    book = ReferrerBook()
    assert book.on_reward(reward(hold_days=30), now=T0).records == []
    assert book.on_tick("ANNA", now=T0 + 30 * DAY - 1).records == []
    step = book.on_tick("ANNA", now=T0 + 31 * DAY)
    assert statuses(step) == [("payable", "pending", 2000)]
    record = step.records[0][1]
    assert record["effective_at"] == T0 + 30 * DAY
    assert record["status_id"] == "rw_1/payable/hold"
    assert book.on_tick("ANNA", now=T0 + 40 * DAY).records == []
    assert book.balance("ANNA", "usd", True)["payable_minor"] == 2000


def test_reward_whose_hold_is_over_when_first_seen_is_payable_at_once() -> None:
    book = ReferrerBook()
    step = book.on_reward(reward(hold_days=30), now=T0 + 400 * DAY)  # a replay
    assert statuses(step) == [("payable", "pending", 2000)]
    # A reward emitted as payable needs no status record: the reward record says it.
    assert book.on_reward(reward("rw_2", status="payable"), now=T0).records == []
    assert book.balance("ANNA", "usd", True)["payable_minor"] == 4000


def test_time_never_goes_back() -> None:
    book = ReferrerBook()
    book.on_reward(reward(), now=T0 + 31 * DAY)
    book.on_reward(reward("rw_2"), now=T0)  # an older clock: still after rw_2's hold
    assert book.rewards["rw_2"]["status"] == "payable"


def test_full_clawback_of_a_pending_reward_voids_it_and_a_reinstatement_restores_it() -> None:
    book = ReferrerBook()
    book.on_reward(reward(), now=T0)
    step = book.on_correction(correction("c1", 2000, at=T0 + DAY), now=T0 + DAY)
    assert [r["mode"] for k, r in step.records if k == "clawback"] == ["cancel"]
    assert statuses(step) == [("clawed_back", "pending", 0)]
    assert book.referrers["ANNA"]["holds"] == {}
    back = book.on_correction(correction("c2", 2000, kind="reinstatement"), now=T0 + 2 * DAY)
    assert statuses(back) == [("pending", "clawed_back", 2000)]  # hold not over yet
    assert next_hold_until(book.referrers["ANNA"]) == T0 + 30 * DAY
    book.on_correction(correction("c3", 2000, at=T0 + 3 * DAY), now=T0 + 3 * DAY)
    late = book.on_correction(correction("c4", 2000, kind="reinstatement"), now=T0 + 60 * DAY)
    assert statuses(late) == [("payable", "clawed_back", 2000)]
    check_consistency(book.referrers["ANNA"], book.rewards)


def test_partial_clawback_keeps_the_status_and_reduces_the_standing() -> None:
    book = ReferrerBook()
    book.on_reward(reward(), now=T0)
    step = book.on_correction(correction("c1", 500), now=T0)
    assert statuses(step) == []
    assert book.balance("ANNA", "usd", True)["pending_minor"] == 1500
    assert holds.standing_minor(book.rewards["rw_1"]) == 1500


def test_correction_before_its_reward_is_parked_and_applied_once_registered() -> None:
    book = ReferrerBook()
    step = book.on_correction(correction("c1", 500), now=T0)
    assert step.records == [] and step.notes
    again = book.on_correction(correction("c1", 500), now=T0)  # duplicate while parked
    assert again.records == []
    registered = book.on_reward(reward(), now=T0)
    assert [(k, r["amount_minor"]) for k, r in registered.records] == [("clawback", 500)]
    assert book.referrers["ANNA"]["parked"] == {}


def test_parked_corrections_apply_in_arrival_order_after_the_state_is_stored() -> None:
    # A refund that failed: clawback "…/refund/2450", then "…/refund/0/reinstated", both
    # before the reward. The worker stores the state as sorted-key JSON between records,
    # and the reinstatement's id sorts first: it must still be applied second.
    state = new_referrer_state("ANNA")
    for item in (
        correction("rw_1/refund/2450", 400),
        correction("rw_1/refund/0/reinstated", 400, kind="reinstatement"),
    ):
        step = apply_correction(state, {}, item, T0)
        state = json.loads(json.dumps(step.state, sort_keys=True))
    step = register_reward(state, {}, reward(), T0)
    assert [(r["kind"], r["amount_minor"]) for k, r in step.records if k == "clawback"] == [
        ("clawback", 400),
        ("reinstatement", 400),
    ]


def test_repeated_correction_and_repeated_reward_have_no_second_effect() -> None:
    book = ReferrerBook()
    book.on_reward(reward(), now=T0)
    book.on_correction(correction("c1", 500), now=T0)
    assert book.on_correction(correction("c1", 500), now=T0).records == []
    repeat = book.on_reward(reward(amount_minor=9999), now=T0)
    assert repeat.records == [] and "re-emitted" in repeat.notes[0]
    assert book.balance("ANNA", "usd", True)["rewards_minor"] == 2000


def test_a_correction_larger_than_what_is_left_fails_loudly() -> None:
    book = ReferrerBook()
    book.on_reward(reward(), now=T0)
    with pytest.raises(InvariantViolation, match="only 2000 left"):
        book.on_correction(correction("c1", 2001), now=T0)
    with pytest.raises(InvariantViolation, match="reinstates more"):
        book.on_correction(correction("c2", 1, kind="reinstatement"), now=T0)
    assert book.balance("ANNA", "usd", True)["clawbacks_minor"] == 0  # nothing half-applied


def test_misrouted_input_is_refused() -> None:
    book = ReferrerBook()
    state = book.state("BOB")
    with pytest.raises(CorrectionInputError, match="routed"):
        register_reward(state, {}, reward(), now=T0)


def test_transitions_outside_the_machine_are_refused() -> None:
    entry = holds.new_entry(reward())
    with pytest.raises(InvariantViolation, match="pending -> paid"):
        holds.transition(entry, holds.PAID, cause="p1", effective_at=T0, payout_id="p1")
    entry["status"] = holds.PAID
    entry["payout_id"] = "p1"
    with pytest.raises(InvariantViolation):
        holds.transition(entry, holds.PAYABLE, cause="x", effective_at=T0)
