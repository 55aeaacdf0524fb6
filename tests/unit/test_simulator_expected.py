"""The simulator's expected ledger obeys the money rules of docs/STRIPE_FLOWS.md, checked
against closed forms written here (not the code under test) with exact fractions."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.expected import (
    KIND_INVOICE,
    KIND_ONE_TIME,
    ChargeFact,
    CustomerFact,
    DisputeFact,
    LedgerInvariantError,
    PaymentFact,
    RefundFact,
    SimProgram,
    Tier,
    build_ledger,
    settle_payment,
    tenure_month,
)
from streams.ledger.programs import parse_programs_toml

FLAT = SimProgram(program_id="flat", tiers=(), duration_months=None)  # 20% of every invoice
PROGRAM = SimProgram()  # 30% months 1-2, 25% months 3-4, 20% month 5, nothing after
T0 = 1_750_000_000


def half_up(value: Fraction) -> int:
    """ROUND_HALF_UP of a non-negative fraction: floor(x + 1/2)."""
    return math.floor(value + Fraction(1, 2))


def charge(
    cid: str = "ch_1",
    captured: int = 10_000,
    *,
    refunds: tuple[RefundFact, ...] = (),
    disputes: tuple[DisputeFact, ...] = (),
    amount: int | None = None,
) -> ChargeFact:
    return ChargeFact(
        cid, f"pi_{cid}", "cus_1", False, None, "usd", amount or captured, captured, T0,
        refunds, disputes,
    )  # fmt: skip


def invoice(
    amount: int,
    shares: tuple[tuple[str, int], ...] | None = None,
    *,
    total: int | None = None,
    tax_free: int | None = None,
    code: str | None = "REF0001",
    pid: str = "in_1",
    service_at: int = T0,
) -> PaymentFact:
    total = amount if total is None else total
    return PaymentFact(
        payment_id=pid,
        kind=KIND_INVOICE,
        customer_key="cus_1",
        livemode=False,
        currency="usd",
        referral_code=code,
        amount_minor=amount,
        total_minor=total,
        total_excluding_tax_minor=total if tax_free is None else tax_free,
        paid_at=service_at + 60,
        shares=((("ch_1", amount),) if shares is None else shares),
        service_at=service_at,
    )


def settle(p: PaymentFact, *charges: ChargeFact, program: SimProgram = FLAT) -> object:
    return settle_payment(p, {c.charge_id: c for c in charges}, program)


def closed_form_reward(p: PaymentFact, rate: Fraction = Fraction(1, 5)) -> int:
    base = half_up(Fraction(p.amount_minor * p.total_excluding_tax_minor, p.total_minor))
    return half_up(base * rate)


def dispute(amount: int, *statuses: str, did: str = "du_1", at: int = T0 + 500) -> DisputeFact:
    return DisputeFact(did, amount, tuple((at + i, s) for i, s in enumerate(statuses)))


@st.composite
def refund_sequences(draw: st.DrawFn, captured: int) -> tuple[RefundFact, ...]:
    """Refunds of a charge in time order, some voided later, ending in a full refund."""
    out: list[RefundFact] = []
    counted, t = 0, T0
    while counted < captured:
        last = len(out) >= 5
        delta = captured - counted if last else draw(st.integers(1, captured - counted))
        t += draw(st.integers(1, 1000))
        if not last and draw(st.booleans()) and draw(st.booleans()):
            void = t + draw(st.integers(1, 1000))
            out.append(RefundFact(f"re_{len(out)}", delta, t, void, "failed"))
            t = void
            continue
        out.append(RefundFact(f"re_{len(out)}", delta, t))
        counted += delta
    return tuple(out)


@given(st.data(), st.integers(1, 10**7), st.integers(0, 100))
def test_any_refund_sequence_ending_in_a_full_refund_nets_to_exactly_the_reward(
    data: st.DataObject, captured: int, tax_percent: int
) -> None:
    refunds = data.draw(refund_sequences(captured))
    total = captured
    p = invoice(captured, total=total, tax_free=total * (100 - tax_percent) // 100)
    outcome = settle(p, charge(captured=captured, refunds=refunds))
    assert outcome.reward_minor == closed_form_reward(p)
    assert outcome.clawed_back_minor == outcome.reward_minor
    assert outcome.clawbacks_minor - outcome.reinstatements_minor == outcome.reward_minor


@given(
    st.integers(2, 10**7),
    st.integers(1, 10**7),
    st.data(),
)
def test_a_payments_refund_claws_only_its_share(a1: int, a2: int, data: st.DataObject) -> None:
    """An invoice paid by two payment intents: refunding one of them (even fully) claws
    RHU(R x a1 x r/c / A), and never touches the other's share."""
    r = data.draw(st.integers(0, a1))
    p = invoice(a1 + a2, (("ch_1", a1), ("ch_2", a2)))
    refunded = charge("ch_1", a1, refunds=(RefundFact("re_1", r, T0 + 5),) if r else ())
    outcome = settle(p, refunded, charge("ch_2", a2))
    reward = closed_form_reward(p)
    assert outcome.clawed_back_minor == half_up(Fraction(reward * r, a1 + a2))
    assert outcome.clawed_back_minor <= half_up(Fraction(reward * a1, a1 + a2))


@given(st.integers(2, 10**7), st.integers(2, 10**7), st.data())
def test_one_payment_paying_two_invoices_claws_each_by_its_share(
    a1: int, a2: int, data: st.DataObject
) -> None:
    c = a1 + a2
    r = data.draw(st.integers(0, c))
    ch = charge("ch_1", c, refunds=(RefundFact("re_1", r, T0 + 5),) if r else ())
    for pid, a in (("in_1", a1), ("in_2", a2)):
        p = invoice(a, (("ch_1", a),), pid=pid)
        outcome = settle(p, ch)
        reward = closed_form_reward(p)
        assert outcome.clawed_back_minor == half_up(Fraction(reward * a * r, c * a))


@given(st.integers(2, 10**7), st.data(), st.sampled_from(("won", "lost")))
def test_a_partial_dispute_claws_its_share_and_a_won_one_gives_it_back(
    captured: int, data: st.DataObject, outcome_status: str
) -> None:
    refunded = data.draw(st.integers(0, captured - 1))
    disputed = data.draw(st.integers(1, captured - refunded))
    refunds = (RefundFact("re_1", refunded, T0 + 5),) if refunded else ()
    du = dispute(disputed, "needs_response", "under_review", outcome_status)
    p = invoice(captured)
    outcome = settle(p, charge(captured=captured, refunds=refunds, disputes=(du,)))
    reward = closed_form_reward(p)
    lost = refunded + (disputed if outcome_status == "lost" else 0)
    assert outcome.clawed_back_minor == half_up(Fraction(reward * lost, captured))
    assert outcome.refund_clawed_minor == half_up(Fraction(reward * refunded, captured))


def test_inquiries_claw_nothing_and_an_escalated_one_claws_like_a_chargeback() -> None:
    p = invoice(10_000)  # R = 2_000
    closed = dispute(10_000, "warning_needs_response", "warning_under_review", "warning_closed")
    outcome = settle(p, charge(disputes=(closed,)))
    assert (outcome.reward_minor, outcome.clawed_back_minor, outcome.clawbacks_minor) == (
        2_000,
        0,
        0,
    )
    escalated = dispute(4_000, "warning_needs_response", "needs_response", "lost")
    outcome = settle(p, charge(disputes=(escalated,)))
    assert outcome.clawed_back_minor == 800  # 2_000 x 4_000 / 10_000


def test_a_failed_refund_is_reinstated_and_the_release_of_a_capture_is_no_refund() -> None:
    p = invoice(10_000)
    failed = RefundFact("re_1", 5_000, T0 + 5, T0 + 9, "failed")
    outcome = settle(p, charge(refunds=(failed,)))
    assert (outcome.clawbacks_minor, outcome.reinstatements_minor) == (1_000, 1_000)
    assert outcome.clawed_back_minor == 0
    # Authorized 12_000, captured 10_000: the 2_000 release is not a customer refund.
    release = RefundFact("re_0", 2_000, T0, release=True)
    real = RefundFact("re_1", 2_500, T0 + 50)
    ch = charge(captured=10_000, amount=12_000, refunds=(release, real))
    assert settle(p, ch).clawed_back_minor == 500
    assert ch.revenue_minor == -2_500


def test_won_dispute_after_a_partial_refund_leaves_the_refund_share() -> None:
    # R = 20% of 10_000 = 2_000; 2_500 refunded -> 500 owed by the refund.
    refunds = (RefundFact("re_1", 2_500, T0 + 10),)
    won = dispute(7_500, "needs_response", "won", at=T0 + 20)
    outcome = settle(invoice(10_000), charge(refunds=refunds, disputes=(won,)))
    assert (outcome.reward_minor, outcome.clawbacks_minor, outcome.reinstatements_minor) == (
        2_000,
        2_000,  # 500 by the refund, then 1_500 by the dispute
        1_500,
    )
    assert outcome.clawed_back_minor == 500


def test_tenure_months_pick_the_tier_and_end_with_the_duration() -> None:
    anchor = int(datetime(2025, 1, 31, 10, tzinfo=UTC).timestamp())

    def at(y: int, m: int, d: int) -> int:
        return int(datetime(y, m, d, 10, tzinfo=UTC).timestamp())

    # Jan 31 -> Feb 28 -> Mar 31 -> Apr 30 (day clamped, from the anchor, not chained).
    assert tenure_month(anchor, at(2025, 2, 27)) == 1
    assert tenure_month(anchor, at(2025, 2, 28)) == 2
    assert tenure_month(anchor, at(2025, 3, 30)) == 2
    assert tenure_month(anchor, at(2025, 3, 31)) == 3
    assert tenure_month(anchor, anchor - 5) == 1
    rates = []
    for month, service in enumerate((anchor, at(2025, 2, 28), at(2025, 3, 31), at(2025, 4, 30),
                                     at(2025, 5, 31), at(2025, 6, 30)), start=1):  # fmt: skip
        p = invoice(10_000, service_at=service)
        o = settle_payment(p, {"ch_1": charge()}, PROGRAM, anchor_at=anchor)
        assert o.tenure_month == month
        rates.append(o.reward_minor)
    assert rates == [3_000, 3_000, 2_500, 2_500, 2_000, 0]
    # A one-time payment earns the program's own rate, whatever the tenure.
    one = PaymentFact("ch_9", KIND_ONE_TIME, "cus_1", False, "usd", "REF1", 10_000, 10_000,
                      10_000, at(2026, 1, 1), (("ch_1", 10_000),))  # fmt: skip
    assert settle_payment(one, {"ch_1": charge()}, PROGRAM).reward_minor == 2_000


def test_out_of_band_money_earns_nothing_and_adds_no_revenue() -> None:
    # Pre-basil paid_out_of_band: A = 0, no charge.
    p = invoice(0, (), total=5_000)
    assert settle(p).reward_minor == 0
    doc = build_ledger([p], [CustomerFact("cus_1", False, "usd", "REF0001", "customer",
                                          "subscriber")], FLAT).to_json()  # fmt: skip
    assert doc["revenue"][0]["referred_minor"] == 0


def test_net_base_takes_the_tax_out_before_the_rate() -> None:
    outcome = settle(invoice(12_000, total=12_000, tax_free=10_000), charge(captured=12_000))
    assert outcome.reward_minor == 2_000
    # 1 minor unit paid on a taxed total: base rounds to 1, reward rounds to 0 (no reward).
    assert settle(invoice(1, total=3, tax_free=2), charge(captured=1)).reward_minor == 0


def test_impossible_refund_is_an_invariant_violation() -> None:
    refunds = (RefundFact("re_1", 100, T0),)
    lost = dispute(50, "needs_response", "lost")
    ch = charge(captured=100, refunds=refunds, disputes=(lost,))
    with pytest.raises(LedgerInvariantError):
        build_ledger([invoice(100, (("ch_1", 100),))], [], FLAT, charges=[ch])


def test_ledger_rows_add_up_per_referrer_currency_mode_and_account() -> None:
    def pay(
        pid: str, code: str | None, cur: str, live: bool, amount: int, account: str | None = None
    ) -> tuple[PaymentFact, ChargeFact, CustomerFact]:
        key = f"cus_{pid}"
        p = PaymentFact(pid, KIND_ONE_TIME, key, live, cur, code, amount, amount, amount, T0,
                        ((f"ch_{pid}", amount),), account=account)  # fmt: skip
        ch = ChargeFact(f"ch_{pid}", None, key, live, account, cur, amount, amount, T0)
        return p, ch, CustomerFact(key, live, cur, code, "charge", "guest", account=account)

    rows_in = [
        pay("a", "REF1", "usd", False, 10_000),
        pay("b", "REF1", "usd", False, 5_000),
        pay("c", "REF1", "eur", False, 1_000),
        pay("d", "REF1", "usd", True, 2_000),
        pay("e", None, "usd", False, 7_000),
        pay("f", "REF1", "usd", False, 3_000, account="acct_1"),
    ]
    doc = build_ledger(
        [r[0] for r in rows_in], [r[2] for r in rows_in], FLAT, charges=[r[1] for r in rows_in]
    ).to_json()
    rows = {(r["referral_code"], r["currency"], r["ledger_mode"]): r for r in doc["referrers"]}
    assert rows[("REF1", "usd", "test")]["rewards_minor"] == 3_000
    assert rows[("REF1", "usd", "test")]["referred_revenue_minor"] == 15_000
    assert rows[("REF1", "usd", "test")]["customers"] == 2
    assert rows[("REF1", "eur", "test")]["net_minor"] == 200
    assert rows[("REF1", "usd", "live")]["rewards_minor"] == 400
    assert rows[("REF1", "usd", "test@acct_1")]["rewards_minor"] == 600  # never mixed
    revenue = {(r["currency"], r["ledger_mode"]): r for r in doc["revenue"]}
    assert revenue[("usd", "test")] == {
        "currency": "usd",
        "livemode": False,
        "mode": "test",
        "account": None,
        "ledger_mode": "test",
        "referred_minor": 15_000,
        "organic_minor": 7_000,
        "unattributed_minor": 0,
        "total_minor": 22_000,
    }
    assert revenue[("usd", "test@acct_1")]["referred_minor"] == 3_000


@pytest.mark.parametrize(
    "program", [PROGRAM, FLAT, SimProgram(tiers=(Tier(1, None, "10%"),), duration_months=None)]
)
def test_program_file_is_what_the_pipeline_parses(program: SimProgram) -> None:
    (parsed,) = parse_programs_toml(program.toml())
    assert parsed.id == program.program_id
    assert parsed.to_json()["rate"] == program.rate_percent
    assert parsed.to_json()["hold_days"] == program.hold_days
    assert parsed.to_json()["basis"] == "net"
    assert parsed.to_json().get("duration_months") == program.duration_months
    assert parsed.to_json().get("tiers", []) == program.to_json().get("tiers", [])
    assert parsed.active
