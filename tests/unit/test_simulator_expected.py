"""The simulator's expected ledger obeys the money rules, checked against closed forms
written here with exact fractions (not the Decimal code under test)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.expected import (
    KIND_INVOICE,
    KIND_ONE_TIME,
    CustomerFact,
    DisputeFact,
    LedgerInvariantError,
    PaymentFact,
    RefundStep,
    SimProgram,
    build_ledger,
    settle_payment,
)
from streams.programs import parse_programs_toml

PROGRAM = SimProgram()
T0 = 1_750_000_000


def half_up(value: Fraction) -> int:
    """ROUND_HALF_UP of a non-negative fraction: floor(x + 1/2)."""
    return math.floor(value + Fraction(1, 2))


def closed_form_reward(p: PaymentFact) -> int:
    base = half_up(Fraction(p.amount_minor * p.total_excluding_tax_minor, p.total_minor))
    return half_up(base * Fraction(20, 100))


def payment(
    amount: int,
    *,
    total: int | None = None,
    tax_free: int | None = None,
    refunds: tuple[RefundStep, ...] = (),
    dispute: DisputeFact | None = None,
    code: str | None = "REF0001",
) -> PaymentFact:
    total = amount if total is None else total
    return PaymentFact(
        payment_id="in_1",
        kind=KIND_INVOICE,
        customer_key="cus_1",
        livemode=False,
        currency="usd",
        referral_code=code,
        amount_minor=amount,
        total_minor=total,
        total_excluding_tax_minor=total if tax_free is None else tax_free,
        paid_at=T0,
        charge_id="ch_1",
        refunds=refunds,
        dispute=dispute,
    )


@st.composite
def payments(draw: st.DrawFn) -> PaymentFact:
    amount = draw(st.integers(1, 10**9))
    total = draw(st.integers(amount, amount * 2))
    tax_free = draw(st.integers(0, total))
    points = sorted(set(draw(st.lists(st.integers(1, amount), max_size=4))))
    if draw(st.booleans()) and points:
        points[-1] = amount  # ends fully refunded
    times = sorted(draw(st.lists(st.integers(1, 10**6), min_size=len(points), max_size=4)))
    refunds = tuple(RefundStep(T0 + t, total) for t, total in zip(times, points, strict=False))
    dispute = None
    if draw(st.booleans()):
        opened = T0 + draw(st.integers(1, 10**6))
        closed = opened + draw(st.integers(0, 10**6))
        outcome = draw(st.sampled_from(("won", "lost")))
        dispute = DisputeFact("du_1", opened, closed, outcome, amount)
    return payment(amount, total=total, tax_free=tax_free, refunds=refunds, dispute=dispute)


@given(payments())
def test_reward_and_clawbacks_follow_the_closed_forms(p: PaymentFact) -> None:
    outcome = settle_payment(p, PROGRAM)
    reward = closed_form_reward(p)
    assert outcome.reward_minor == reward
    assert 0 <= outcome.clawed_back_minor <= outcome.reward_minor
    assert outcome.reinstatements_minor <= outcome.clawbacks_minor
    if p.dispute is not None and p.dispute.outcome == "lost":
        assert outcome.clawed_back_minor == reward  # a lost dispute takes what is left
    else:
        # Refunds telescope to one rounding of the final point; a won dispute gives back
        # exactly what it took, whenever it happened.
        assert outcome.clawed_back_minor == half_up(
            Fraction(reward * p.refunded_minor, p.amount_minor)
        )
    if p.refunded_minor == p.amount_minor:
        assert outcome.reward_minor - outcome.clawed_back_minor == 0  # full refund nets to 0


@given(st.integers(1, 10**7), st.lists(st.integers(1, 10**7), min_size=1, max_size=6))
def test_any_split_of_a_full_refund_claws_back_exactly_the_reward(
    amount: int, cuts: list[int]
) -> None:
    points = sorted({min(c, amount) for c in cuts} | {amount})
    refunds = tuple(RefundStep(T0 + i, total) for i, total in enumerate(points))
    outcome = settle_payment(payment(amount, refunds=refunds), PROGRAM)
    assert outcome.clawed_back_minor == outcome.reward_minor
    assert outcome.revenue_minor == 0


def test_won_dispute_after_a_partial_refund_leaves_the_refund_share() -> None:
    # R = 20% of 10_000 = 2_000; 2_500 refunded -> 500 owed by the refund.
    refunds = (RefundStep(T0 + 10, 2_500),)
    won = DisputeFact("du_1", T0 + 20, T0 + 30, "won", 7_500)
    outcome = settle_payment(payment(10_000, refunds=refunds, dispute=won), PROGRAM)
    assert (outcome.reward_minor, outcome.clawbacks_minor, outcome.reinstatements_minor) == (
        2_000,
        2_000,  # 500 by the refund, then the 1_500 left by the dispute
        1_500,
    )
    assert outcome.clawed_back_minor == 500
    assert outcome.revenue_minor == 7_500  # a won dispute costs no revenue


def test_lost_dispute_removes_the_disputed_amount_from_revenue() -> None:
    lost = DisputeFact("du_1", T0 + 20, T0 + 30, "lost", 6_000)
    refunds = (RefundStep(T0 + 10, 4_000),)
    outcome = settle_payment(payment(10_000, refunds=refunds, dispute=lost), PROGRAM)
    assert outcome.revenue_minor == 0
    assert outcome.clawed_back_minor == outcome.reward_minor == 2_000


def test_net_base_takes_the_tax_out_before_the_rate() -> None:
    # 12_000 paid, of which 2_000 tax: base 10_000, reward 2_000.
    outcome = settle_payment(payment(12_000, total=12_000, tax_free=10_000), PROGRAM)
    assert outcome.reward_minor == 2_000
    # 1 minor unit paid on a taxed total: base rounds to 1, reward rounds to 0 (no reward).
    assert settle_payment(payment(1, total=3, tax_free=2), PROGRAM).reward_minor == 0


def test_organic_payments_earn_nothing_but_count_as_revenue() -> None:
    outcome = settle_payment(payment(5_000, code=None), PROGRAM)
    assert (outcome.reward_minor, outcome.revenue_minor) == (0, 5_000)


def test_impossible_refund_is_an_invariant_violation() -> None:
    with pytest.raises(LedgerInvariantError):
        settle_payment(payment(100, refunds=(RefundStep(T0, 101),)), PROGRAM)


def test_ledger_rows_add_up_per_referrer_currency_and_mode() -> None:
    def pay(pid: str, code: str | None, currency: str, live: bool, amount: int) -> PaymentFact:
        return PaymentFact(
            pid, KIND_ONE_TIME, f"cus_{pid}", live, currency, code, amount, amount, amount,
            T0, f"ch_{pid}",
        )  # fmt: skip

    payments_ = [
        pay("a", "REF1", "usd", False, 10_000),
        pay("b", "REF1", "usd", False, 5_000),
        pay("c", "REF1", "eur", False, 1_000),
        pay("d", "REF1", "usd", True, 2_000),
        pay("e", None, "usd", False, 7_000),
    ]
    customers = [
        CustomerFact(p.customer_key, p.livemode, p.currency, p.referral_code, "charge", "guest")
        for p in payments_
    ]
    doc = build_ledger(payments_, customers, PROGRAM).to_json()
    rows = {(r["referral_code"], r["currency"], r["mode"]): r for r in doc["referrers"]}
    assert rows[("REF1", "usd", "test")]["rewards_minor"] == 3_000
    assert rows[("REF1", "usd", "test")]["referred_revenue_minor"] == 15_000
    assert rows[("REF1", "usd", "test")]["customers"] == 2
    assert rows[("REF1", "eur", "test")]["net_minor"] == 200
    assert rows[("REF1", "usd", "live")]["rewards_minor"] == 400
    revenue = {(r["currency"], r["mode"]): r for r in doc["revenue"]}
    assert revenue[("usd", "test")] == {
        "currency": "usd",
        "livemode": False,
        "mode": "test",
        "referred_minor": 15_000,
        "organic_minor": 7_000,
        "unattributed_minor": 0,
        "total_minor": 22_000,
    }


def test_program_file_is_what_the_pipeline_parses() -> None:
    (program,) = parse_programs_toml(PROGRAM.toml())
    assert program.id == PROGRAM.program_id
    assert program.to_json()["rate"] == PROGRAM.rate_percent
    assert program.to_json()["hold_days"] == PROGRAM.hold_days
    assert program.to_json()["basis"] == "net"
    assert program.active
