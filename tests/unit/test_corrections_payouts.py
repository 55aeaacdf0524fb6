"""Payouts: only payable rewards, whole or rejected with a reason, once per id; clawbacks
after payout become a carry-over that later payouts absorb."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.corrections.errors import CorrectionInputError
from streams.corrections.payouts import Rejection, plan_payout
from streams.corrections.referrer_book import ReferrerBook, check_consistency
from tests.unit.test_corrections_holds import correction
from tests.unit.test_corrections_support import DAY, T0, reward

LATER = T0 + 31 * DAY


def book_with(*refs: Any, now: int = LATER) -> ReferrerBook:
    book = ReferrerBook()
    for ref in refs:
        book.on_reward(ref, now=now)
    return book


def payout(reward_ids: list[str], amount: int, payout_id: str = "po_1", **kw: Any) -> dict:
    return {
        "payout_id": payout_id,
        "referral_code": "ANNA",
        "reward_ids": reward_ids,
        "amount_minor": amount,
        "currency": kw.get("currency", "usd"),
        "livemode": kw.get("livemode", True),
        "paid_at": kw.get("paid_at", LATER),
    }


def rejections(step: Any) -> dict[str, str]:
    return {r["reward_id"]: r["rejection_code"] for _, r in step.records}


def test_payable_rewards_are_paid() -> None:
    book = book_with(reward("rw_1"), reward("rw_2", amount_minor=500))
    step = book.on_payout(payout(["rw_1", "rw_2"], 2500), now=LATER)
    assert step.outcome == "accepted"
    assert [(r["status"], r["previous_status"], r["payout_id"]) for _, r in step.records] == [
        ("paid", "payable", "po_1"),
        ("paid", "payable", "po_1"),
    ]
    balance = book.balance("ANNA", "usd", True)
    assert (balance["payable_minor"], balance["paid_minor"]) == (0, 2500)
    check_consistency(book.referrers["ANNA"], book.rewards)


def test_repeated_payout_has_no_second_effect() -> None:
    book = book_with(reward("rw_1"))
    book.on_payout(payout(["rw_1"], 2000), now=LATER)
    step = book.on_payout(payout(["rw_1"], 2000), now=LATER)
    assert step.outcome == "repeat" and step.records == []
    assert book.balance("ANNA", "usd", True)["paid_minor"] == 2000


def test_reused_payout_id_with_other_content_is_rejected_and_the_first_stands() -> None:
    book = book_with(reward("rw_1"), reward("rw_2"))
    book.on_payout(payout(["rw_1"], 2000), now=LATER)
    step = book.on_payout(payout(["rw_2"], 2000), now=LATER)
    assert step.outcome == "rejected"
    assert rejections(step) == {"rw_2": "payout_id_reused"}
    assert book.rewards["rw_2"]["status"] == "payable"


@pytest.mark.parametrize(
    ("named", "amount", "kw", "expected"),
    [
        ([], 0, {}, {"": Rejection.EMPTY_PAYOUT}),
        (["rw_1", "rw_1"], 4000, {}, {"rw_1": Rejection.DUPLICATE_REWARD}),
        (
            ["rw_1", "rw_404"],
            2000,
            {},
            {"rw_404": Rejection.UNKNOWN_REWARD, "rw_1": Rejection.OTHER_REWARD_REJECTED},
        ),
        (["rw_1"], 2000, {"currency": "eur"}, {"rw_1": Rejection.WRONG_CURRENCY}),
        (["rw_1"], 2000, {"livemode": False}, {"rw_1": Rejection.WRONG_MODE}),
        (["rw_pending"], 2000, {}, {"rw_pending": Rejection.NOT_PAYABLE}),
        (["rw_1"], 1999, {}, {"rw_1": Rejection.AMOUNT_MISMATCH}),
    ],
)
def test_rejection_reasons(
    named: list[str], amount: int, kw: dict, expected: dict[str, Rejection]
) -> None:
    book = book_with(reward("rw_1"))
    book.on_reward(reward("rw_pending", paid_at=LATER), now=LATER)
    before = book.balance("ANNA", "usd", True)
    step = book.on_payout(payout(named, amount, **kw), now=LATER)
    assert step.outcome == "rejected"
    assert rejections(step) == {k: v.value for k, v in expected.items()}
    for _, record in step.records:
        assert record["status"] == "payout_rejected" and record["payout_id"] == "po_1"
        assert record["reason"].startswith(record["rejection_code"])
    # Never partially applied: every reward keeps its status, the balance is unchanged.
    assert book.rewards["rw_1"]["status"] == "payable"
    assert book.balance("ANNA", "usd", True) == before
    # The rejected id stays rejected, even once the payout would be valid.
    assert book.on_payout(payout(named, amount, **kw), now=LATER).outcome == "repeat"


def test_clawed_back_and_already_paid_rewards_cannot_be_paid() -> None:
    book = book_with(reward("rw_1"), reward("rw_2"))
    book.on_correction(correction("c1", 2000, reward_id="rw_2"), now=LATER)
    book.on_payout(payout(["rw_1"], 2000), now=LATER)
    step = book.on_payout(payout(["rw_1", "rw_2"], 2000, payout_id="po_2"), now=LATER)
    assert rejections(step) == {"rw_1": "already_paid", "rw_2": "not_payable"}
    assert "clawed_back" in step.records[1][1]["reason"]


def test_a_payout_of_a_reward_shrunk_by_a_refund_must_carry_the_new_amount() -> None:
    book = book_with(reward("rw_1"))
    planned = plan_payout(
        book.referrers["ANNA"], book.rewards, payout_id="po_1", currency="usd", livemode=True,
        paid_at=LATER,
    )  # fmt: skip
    assert planned["reward_ids"] == ["rw_1"] and planned["amount_minor"] == 2000
    book.on_correction(correction("c1", 500), now=LATER)  # a refund lands first
    step = book.on_payout(planned, now=LATER)
    assert rejections(step) == {"rw_1": "amount_mismatch"}
    assert "1500 is due" in step.records[0][1]["reason"]


def test_clawback_after_payout_is_a_negative_balance_that_later_rewards_absorb() -> None:
    book = book_with(reward("rw_1"))
    book.on_payout(payout(["rw_1"], 2000), now=LATER)
    step = book.on_correction(correction("c1", 800), now=LATER)
    assert [r["mode"] for _, r in step.records] == ["negative_balance"]
    assert [r["applied_to_status"] for _, r in step.records] == ["paid"]
    balance = book.balance("ANNA", "usd", True)
    assert balance["carry_over_minor"] == 800 and balance["paid_minor"] == 2000
    # A later reward: 500 standing, all of it absorbed; then 1000 more, 300 absorbed.
    book.on_reward(reward("rw_2", amount_minor=500), now=LATER)
    assert book.balance("ANNA", "usd", True)["payable_minor"] == 500
    step = book.on_payout(payout(["rw_2"], 0, payout_id="po_2"), now=LATER)
    assert step.outcome == "accepted"
    assert step.records[0][1]["carryover_absorbed_minor"] == 500
    book.on_reward(reward("rw_3", amount_minor=1000), now=LATER)
    step = book.on_payout(payout(["rw_3"], 700, payout_id="po_3"), now=LATER)
    assert step.outcome == "accepted"
    balance = book.balance("ANNA", "usd", True)
    assert balance["carry_over_minor"] == 0
    assert balance["paid_minor"] == 2000 + 0 + 700  # cash actually paid
    assert balance["paid_minor"] == 2000 - 800 + 500 + 1000  # = everything earned
    check_consistency(book.referrers["ANNA"], book.rewards)


def test_reinstatement_after_the_debt_was_absorbed_becomes_a_credit_paid_next_time() -> None:
    book = book_with(reward("rw_1"), reward("rw_2"))
    book.on_payout(payout(["rw_1"], 2000), now=LATER)
    book.on_correction(correction("d1", 2000), now=LATER)  # dispute after payout
    book.on_payout(payout(["rw_2"], 0, payout_id="po_2"), now=LATER)  # absorbs the debt
    step = book.on_correction(correction("d1r", 2000, kind="reinstatement"), now=LATER)
    assert [r["mode"] for _, r in step.records] == ["negative_balance"]
    assert book.balance("ANNA", "usd", True)["carry_over_minor"] == -2000  # owed to ANNA
    book.on_reward(reward("rw_3", amount_minor=100), now=LATER)
    assert book.on_payout(payout(["rw_3"], 2100, payout_id="po_3"), now=LATER).outcome == "accepted"
    balance = book.balance("ANNA", "usd", True)
    # Cash: 2000 + 0 + 2100 = everything earned (2000 + 2000 + 100 - 2000 + 2000).
    assert balance["carry_over_minor"] == 0 and balance["paid_minor"] == 4100


def test_malformed_payout_is_an_input_error() -> None:
    book = book_with(reward("rw_1"))
    with pytest.raises(CorrectionInputError, match="amount_minor"):
        book.on_payout({**payout(["rw_1"], 2000), "amount_minor": "2000"}, now=LATER)
    with pytest.raises(CorrectionInputError, match="livemode"):
        book.on_payout({**payout(["rw_1"], 2000), "livemode": None}, now=LATER)


@settings(max_examples=200)
@given(
    st.lists(st.integers(1, 10_000), min_size=1, max_size=4),
    st.lists(st.integers(0, 100), min_size=1, max_size=4),
    st.lists(st.integers(1, 10_000), min_size=1, max_size=5),
)
def test_clawbacks_after_payout_are_netted_exactly_by_later_payouts(
    first: list[int], percents: list[int], later: list[int]
) -> None:
    """Pay a first batch, claw back part of each, then pay later rewards one payout at a
    time: the cash paid in total is exactly what was earned once the debt is covered."""
    book = book_with(*[reward(f"a{i}", amount_minor=a) for i, a in enumerate(first)])
    state = book.referrers["ANNA"]
    book.on_payout(plan_payout(state, book.rewards, payout_id="p0", currency="usd",
                               livemode=True, paid_at=LATER), now=LATER)  # fmt: skip
    clawed = 0
    for i, (amount, pct) in enumerate(zip(first, percents, strict=False)):
        take = amount * pct // 100
        if take:
            step = book.on_correction(correction(f"c{i}", take, reward_id=f"a{i}"), now=LATER)
            assert {r["mode"] for _, r in step.records} == {"negative_balance"}
            clawed += take
    assert book.balance("ANNA", "usd", True)["carry_over_minor"] == clawed
    for j, amount in enumerate(later):
        book.on_reward(reward(f"b{j}", amount_minor=amount), now=LATER)
        plan = plan_payout(book.referrers["ANNA"], book.rewards, payout_id=f"p{j + 1}",
                           currency="usd", livemode=True, paid_at=LATER)  # fmt: skip
        assert book.on_payout(plan, now=LATER).outcome == "accepted"
        assert plan["amount_minor"] >= 0
    balance = book.balance("ANNA", "usd", True)
    earned = sum(first) - clawed + sum(later)
    assert balance["carry_over_minor"] == max(0, clawed - sum(later))
    assert balance["paid_minor"] == earned + balance["carry_over_minor"]
    check_consistency(book.referrers["ANNA"], book.rewards)
