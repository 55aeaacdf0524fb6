"""Property tests of the reward money math against an independent integer formulation.

The reference here never calls streams.ledger.rewards: ROUND_HALF_UP of a non-negative fraction n/d
is floor((2n + d) / 2d) in integers, rates are exact Fractions of their percent strings, and
tiers, durations and caps are re-derived month by month from the program's plain fields.
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.ledger.programs import parse_program
from streams.ledger.rewards import (
    LINE_FIRST_INVOICE_BONUS,
    LINE_INVOICE,
    base_amount,
    invoice_lines,
    net_base,
    one_time_lines,
    reward_id,
)
from streams.ledger.stripe_payloads import read_invoice
from tests.support.factories import API_VERSIONS, Line, StripeFactory

AMOUNTS = st.integers(min_value=0, max_value=10**12)
PERCENTS = st.decimals(min_value="0.000001", max_value=100, places=6).map(
    lambda d: f"{d.normalize():f}%"
)


def half_up(numerator: int, denominator: int) -> int:
    """ROUND_HALF_UP of numerator/denominator for numerator >= 0, denominator > 0."""
    return (2 * numerator + denominator) // (2 * denominator)


def rate_of(percent: str) -> Fraction:
    return Fraction(percent.rstrip("%")) / 100


def reward_ref(base: int, percent: str) -> int:
    rate = rate_of(percent)
    return half_up(base * rate.numerator, rate.denominator)


def test_half_up_reference_rounds_halves_up() -> None:
    assert [half_up(n, 2) for n in (0, 1, 2, 3, 5)] == [0, 1, 1, 2, 3]
    assert half_up(149, 100) == 1 and half_up(150, 100) == 2


@given(amount_paid=AMOUNTS, tax_free=AMOUNTS, tax=AMOUNTS)
def test_net_base_matches_integer_rounding(amount_paid: int, tax_free: int, tax: int) -> None:
    total = tax_free + tax
    expected = half_up(amount_paid * tax_free, total) if total > 0 and amount_paid > 0 else 0
    assert net_base(amount_paid, tax_free, total) == expected


def test_net_base_of_a_zero_total_is_zero() -> None:
    assert net_base(0, 0, 0) == 0
    assert net_base(500, 0, 0) == 0


@given(amount_paid=AMOUNTS, tax_free=AMOUNTS, tax=AMOUNTS)
def test_gross_base_is_the_amount_paid(amount_paid: int, tax_free: int, tax: int) -> None:
    assert base_amount("gross", amount_paid, tax_free, tax_free + tax) == amount_paid


@given(base=AMOUNTS, percent=PERCENTS)
def test_rate_reward_matches_integer_rounding(base: int, percent: str) -> None:
    program = parse_program({"id": "p", "rate": percent, "basis": "gross"})
    lines = invoice_lines(
        program,
        currency="usd",
        amount_paid=base,
        total_excluding_tax=base,
        total=base,
        tenure_month=1,
        first_invoice=False,
        used_minor=0,
    )
    expected = reward_ref(base, percent)
    assert [line.amount_minor for line in lines] == ([expected] if expected else [])


@settings(max_examples=200)
@given(
    api_version=st.sampled_from(API_VERSIONS),
    amounts=st.lists(st.integers(1, 500_000), min_size=1, max_size=4),
    discount_share=st.integers(0, 100),
    tax_bps=st.integers(0, 3_000),
    inclusive=st.booleans(),
    credit_share=st.integers(0, 100),
    percent=PERCENTS,
)
def test_net_base_of_taxed_discounted_credited_invoices(
    api_version: str,
    amounts: list[int],
    discount_share: int,
    tax_bps: int,
    inclusive: bool,
    credit_share: int,
    percent: str,
) -> None:
    """Built like Stripe builds invoices, read back through the payload reader."""
    subtotal = sum(amounts)
    discount = subtotal * discount_share // 100
    f = StripeFactory(api_version=api_version, seed=subtotal)
    t0 = 1_750_000_000
    lines = [Line(a, t0, t0 + 2_592_000) for a in amounts]
    tax_rate = f"{tax_bps / 10_000:.4f}" if tax_bps else None
    # The credit is a share of what would be due, so amount_paid stays >= 0.
    probe = f.invoice(
        "cus_x",
        lines=lines,
        created=t0,
        paid_at=t0,
        discount_minor=discount,
        tax_rate=tax_rate,
        tax_inclusive=inclusive,
    )
    credit = probe["total"] * credit_share // 100
    raw = f.invoice(
        "cus_x",
        lines=lines,
        created=t0,
        paid_at=t0,
        discount_minor=discount,
        tax_rate=tax_rate,
        tax_inclusive=inclusive,
        credit_minor=credit,
    )
    if api_version == API_VERSIONS[1]:
        del raw["total_excluding_tax"]  # older payloads: derived from total_taxes
    inv = read_invoice(raw)
    total, paid = raw["total"], raw["amount_paid"]
    tax = (raw.get("tax") or 0) if "tax" in raw else sum(t["amount"] for t in raw["total_taxes"])
    assert inv.total_excluding_tax == total - tax
    expected_base = half_up(paid * (total - tax), total) if total > 0 and paid > 0 else 0
    base = base_amount("net", inv.amount_paid, inv.total_excluding_tax, inv.total)
    assert base == expected_base
    if credit == 0:
        assert base == total - tax  # paid in full: the base is exactly the tax-free total
    program = parse_program({"id": "p", "rate": percent})
    lines_out = invoice_lines(
        program,
        currency="usd",
        amount_paid=inv.amount_paid,
        total_excluding_tax=inv.total_excluding_tax,
        total=inv.total,
        tenure_month=1,
        first_invoice=False,
        used_minor=0,
    )
    expected = reward_ref(expected_base, percent)
    assert [line.amount_minor for line in lines_out] == ([expected] if expected else [])


# --- tiers, durations, caps, bonus, minimum over a sequence of monthly invoices ---------------


@st.composite
def programs_and_months(draw: st.DrawFn) -> tuple[dict, list[int]]:
    duration = draw(st.one_of(st.none(), st.integers(1, 24)))
    limit = duration or 24
    cuts = sorted(draw(st.sets(st.integers(1, limit), max_size=4)))
    tiers = []
    for i, start in enumerate(cuts):
        end = cuts[i + 1] - 1 if i + 1 < len(cuts) else draw(st.integers(start, limit))
        if end >= start:
            tiers.append({"from_month": start, "to_month": end, "rate": draw(PERCENTS)})
    program: dict = {"id": "p", "rate": draw(PERCENTS), "tiers": tiers, "basis": "gross"}
    if duration is not None:
        program["duration_months"] = duration
    if draw(st.booleans()):
        program["cap"] = {"usd": draw(st.integers(1, 200_000))}
    if draw(st.booleans()):
        program["first_invoice_bonus"] = {"usd": draw(st.integers(1, 10_000))}
    if draw(st.booleans()):
        program["minimum_invoice"] = {"usd": draw(st.integers(0, 50_000))}
    months = draw(st.lists(st.integers(0, 100_000), min_size=1, max_size=30))
    return program, months


def expected_rewards(program: dict, amounts: list[int]) -> list[list[tuple[str, int]]]:
    """Month by month, from the program's plain fields (month i+1 pays amounts[i])."""
    cap = program.get("cap", {}).get("usd")
    bonus = program.get("first_invoice_bonus", {}).get("usd", 0)
    minimum = program.get("minimum_invoice", {}).get("usd", 0)
    used = 0
    out: list[list[tuple[str, int]]] = []
    for index, amount in enumerate(amounts):
        month = index + 1
        lines: list[tuple[str, int]] = []
        in_duration = program.get("duration_months") is None or month <= program["duration_months"]
        if amount > 0 and amount >= minimum and in_duration:
            percent = program["rate"]
            for tier in program["tiers"]:
                if tier["from_month"] <= month <= tier["to_month"]:
                    percent = tier["rate"]
            lines.append((LINE_INVOICE, reward_ref(amount, percent)))
            if month == 1 and bonus:
                lines.append((LINE_FIRST_INVOICE_BONUS, bonus))
        capped: list[tuple[str, int]] = []
        for kind, value in lines:
            if cap is not None:
                value = max(0, min(value, cap - used))
            if value > 0:
                used += value
                capped.append((kind, value))
        out.append(capped)
    return out


@settings(max_examples=300)
@given(case=programs_and_months())
def test_tiers_durations_caps_switch_on_the_right_invoice(case: tuple[dict, list[int]]) -> None:
    raw, amounts = case
    program = parse_program(raw)
    used = 0
    got: list[list[tuple[str, int]]] = []
    for index, amount in enumerate(amounts):
        lines = invoice_lines(
            program,
            currency="usd",
            amount_paid=amount,
            total_excluding_tax=amount,
            total=amount,
            tenure_month=index + 1,
            first_invoice=index == 0,
            used_minor=used,
        )
        used += sum(line.amount_minor for line in lines)
        got.append([(line.line, line.amount_minor) for line in lines])
    assert got == expected_rewards(raw, amounts)
    if "cap" in raw:
        assert used <= raw["cap"]["usd"]


def test_the_reward_that_crosses_the_cap_is_reduced_and_later_ones_are_dropped() -> None:
    program = parse_program({"id": "p", "rate": "20%", "cap": {"usd": 5_000}, "basis": "gross"})
    used, got = 0, []
    for _ in range(4):  # 2000 each: 2000, 2000, then 1000 of 2000, then nothing
        lines = invoice_lines(
            program,
            currency="usd",
            amount_paid=10_000,
            total_excluding_tax=10_000,
            total=10_000,
            tenure_month=1,
            first_invoice=False,
            used_minor=used,
        )
        used += sum(line.amount_minor for line in lines)
        got.append([line.amount_minor for line in lines])
    assert got == [[2_000], [2_000], [1_000], []]


def test_cap_and_flat_are_per_currency() -> None:
    program = parse_program(
        {"id": "p", "flat": {"usd": 1_000}, "cap": {"usd": 1_500}, "basis": "gross"}
    )

    def earn(currency: str, used: int) -> list[int]:
        lines = invoice_lines(
            program,
            currency=currency,
            amount_paid=9_999,
            total_excluding_tax=9_999,
            total=9_999,
            tenure_month=1,
            first_invoice=False,
            used_minor=used,
        )
        return [line.amount_minor for line in lines]

    assert earn("usd", 0) == [1_000]
    assert earn("usd", 1_000) == [500]
    assert earn("eur", 0) == []  # no flat amount in eur: nothing, never a converted amount


@given(amount=st.integers(1, 10**9), percent=PERCENTS, tax=st.integers(0, 10**6))
def test_one_time_lines_use_base_terms_and_checkout_tax(
    amount: int, percent: str, tax: int
) -> None:
    tax = min(tax, amount - 1) if amount > 1 else 0
    program = parse_program(
        {"id": "p", "rate": percent, "tiers": [{"from_month": 1, "to_month": 2, "rate": "99%"}]}
    )
    lines = one_time_lines(
        program,
        currency="usd",
        amount=amount,
        total_excluding_tax=amount - tax,
        total=amount,
        used_minor=0,
    )
    base = half_up(amount * (amount - tax), amount)
    expected = reward_ref(base, percent)
    assert [(line.line, line.base_minor, line.amount_minor) for line in lines] == (
        [("one_time", base, expected)] if expected else []
    )
    off = parse_program({"id": "p", "rate": percent, "one_time_payments": False})
    assert (
        one_time_lines(
            off,
            currency="usd",
            amount=amount,
            total_excluding_tax=amount,
            total=amount,
            used_minor=0,
        )
        == []
    )


def test_reward_ids_are_derived_from_the_cause() -> None:
    assert reward_id(True, "std", "in_1", "invoice") == "live/std/in_1/invoice"
    ids = {
        reward_id(mode, p, x, line)
        for mode in (True, False)
        for p in ("a", "b")
        for x in ("in_1", "ch_1")
        for line in ("invoice", "one_time", "first_invoice_bonus")
    }
    assert len(ids) == 24


def test_exact_halves_round_up_not_to_even() -> None:
    program = parse_program({"id": "p", "rate": "10%", "basis": "gross"})

    def earn(amount: int) -> list[int]:
        lines = invoice_lines(
            program,
            currency="usd",
            amount_paid=amount,
            total_excluding_tax=amount,
            total=amount,
            tenure_month=1,
            first_invoice=False,
            used_minor=0,
        )
        return [line.amount_minor for line in lines]

    assert earn(5) == [1]  # 0.5 -> 1 (half-even would give 0 and emit nothing)
    assert earn(25) == [3]  # 2.5 -> 3
    assert earn(4) == []  # 0.4 -> 0: nothing emitted
    assert net_base(1, 1, 2) == 1  # 0.5 -> 1
