"""Program files parse strictly, errors name the field, and the JSON form round-trips."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.ledger.programs import (
    ProgramError,
    ProgramVersion,
    load_programs,
    parse_program,
    parse_programs_toml,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example.toml"


def test_example_file_loads() -> None:
    programs = {p.id: p for p in load_programs(EXAMPLE)}
    assert set(programs) == {"standard", "ambassador-flat", "launch-2024"}
    std = programs["standard"]
    assert std.terms.rate == Decimal("0.2") and std.duration_months == 12
    assert [(t.from_month, t.to_month, t.terms.rate) for t in std.tiers] == [(1, 3, Decimal("0.3"))]
    assert dict(std.first_invoice_bonus_minor) == {"usd": 2500, "eur": 2300}
    assert dict(std.cap_minor) == {"usd": 50000, "eur": 46000}
    assert (std.basis, std.hold_days, std.applies_to, std.active) == ("net", 30, None, True)
    amb = programs["ambassador-flat"]
    assert amb.terms.rate is None and dict(amb.terms.flat_minor or {}) == {"usd": 1000, "eur": 900}
    assert amb.applies_to == ("AMB-",) and not amb.one_time_payments and amb.hold_days == 14
    assert amb.applies_to_code("AMB-7") and not amb.applies_to_code("PARTNER")
    assert not programs["launch-2024"].active and programs["launch-2024"].basis == "gross"


def test_terms_by_month_follow_tiers_and_duration() -> None:
    std = {p.id: p for p in load_programs(EXAMPLE)}["standard"]
    rates = [None if (t := std.terms_for_month(m)) is None else t.rate for m in range(1, 15)]
    assert rates == [Decimal("0.3")] * 3 + [Decimal("0.2")] * 9 + [None, None]


def test_defaults() -> None:
    p = parse_program({"id": "p", "rate": "12.5%"})
    assert p.terms.rate == Decimal("0.125")
    assert (p.basis, p.hold_days, p.duration_months, p.applies_to) == ("net", 30, None, None)
    assert p.active and p.one_time_payments and not p.tiers and not p.cap_minor


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"rate": "20%"}, "id: required"),
        ({"id": "bad id", "rate": "20%"}, "id: required"),
        ({"id": "p"}, "give a rate"),
        ({"id": "p", "rate": 0.2}, 'rate: write rates as a percent string such as "20%"'),
        ({"id": "p", "rate": "0.2"}, "rate: expected a percent"),
        ({"id": "p", "rate": "120%"}, "rate: must be above 0% and at most 100%"),
        ({"id": "p", "rate": "0%"}, "rate: must be above 0%"),
        ({"id": "p", "rate": "20%", "flat": {"usd": 5}}, "either rate or flat"),
        ({"id": "p", "flat": {"dollars": 5}}, "flat.dollars: expected a 3-letter"),
        ({"id": "p", "flat": {"usd": 5.5}}, "flat.usd: expected an integer in minor units"),
        ({"id": "p", "flat": {"usd": 0}}, "flat.usd: must be >= 1"),
        ({"id": "p", "rate": "5%", "basis": "net-ish"}, "basis: expected one of net, gross"),
        ({"id": "p", "rate": "5%", "hold_days": -1}, "hold_days: must be >= 0"),
        ({"id": "p", "rate": "5%", "applies_to": []}, "applies_to: expected a non-empty list"),
        ({"id": "p", "rate": "5%", "duration_months": 0}, "duration_months: must be >= 1"),
        ({"id": "p", "rate": "5%", "active": "yes"}, "active: expected true or false"),
        ({"id": "p", "rate": "5%", "rates": "5%"}, "unknown key(s) 'rates'"),
        (
            {"id": "p", "rate": "5%", "tiers": [{"from_month": 1, "to_month": 3, "rate": 3}]},
            "tiers[0]: rate: write rates as a percent",
        ),
        (
            {"id": "p", "rate": "5%", "tiers": [{"to_month": 3, "rate": "3%"}]},
            "tiers[0]: from_month: required",
        ),
        (
            {"id": "p", "rate": "5%", "tiers": [{"from_month": 4, "to_month": 3, "rate": "3%"}]},
            "tiers[0]: to_month: must be >= 4",
        ),
        (
            {
                "id": "p",
                "rate": "5%",
                "tiers": [
                    {"from_month": 1, "to_month": 3, "rate": "3%"},
                    {"from_month": 3, "to_month": 6, "rate": "2%"},
                ],
            },
            "months 1-3 overlap the tier starting at month 3",
        ),
        (
            {
                "id": "p",
                "rate": "5%",
                "duration_months": 6,
                "tiers": [{"from_month": 1, "to_month": 12, "rate": "3%"}],
            },
            "to_month: tiers must end within duration_months",
        ),
        (
            {"id": "p", "rate": "5%", "tiers": [{"from_month": 1, "to_month": 2}]},
            "tiers[0]: give a rate or a flat amount",
        ),
    ],
)
def test_validation_errors_name_the_field(table: dict, message: str) -> None:
    with pytest.raises(ProgramError, match=_escape(message)):
        parse_program(table)


def _escape(text: str) -> str:
    return re.escape(text)


def test_errors_name_the_program() -> None:
    with pytest.raises(ProgramError, match=r"^program 'std': rate: "):
        parse_program({"id": "std", "rate": "lots"})


def test_file_level_errors() -> None:
    with pytest.raises(ProgramError, match="not valid TOML"):
        parse_programs_toml("[[program]\n")
    with pytest.raises(ProgramError, match="no \\[\\[program\\]\\] tables"):
        parse_programs_toml("")
    with pytest.raises(ProgramError, match="unknown top-level key"):
        parse_programs_toml('[[programme]]\nid = "p"\n')
    twice = '[[program]]\nid = "p"\nrate = "5%"\n[[program]]\nid = "p"\nrate = "6%"\n'
    with pytest.raises(ProgramError, match="program id 'p' defined twice"):
        parse_programs_toml(twice)


PERCENT = st.decimals(min_value="0.01", max_value=100, places=2).map(lambda d: f"{d}%")
MONEY = st.dictionaries(
    st.sampled_from(["usd", "eur", "gbp", "jpy"]), st.integers(1, 10**7), min_size=1
)


@st.composite
def program_tables(draw: st.DrawFn) -> dict:
    table: dict = {"id": draw(st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True))}
    if draw(st.booleans()):
        table["rate"] = draw(PERCENT)
    else:
        table["flat"] = draw(MONEY)
    for key in ("first_invoice_bonus", "cap"):
        if draw(st.booleans()):
            table[key] = draw(MONEY)
    if draw(st.booleans()):
        table["minimum_invoice"] = draw(MONEY)
    if draw(st.booleans()):
        table["duration_months"] = draw(st.integers(3, 36))
        table["tiers"] = [{"from_month": 1, "to_month": 2, "rate": draw(PERCENT)}]
    table["hold_days"] = draw(st.integers(0, 120))
    table["basis"] = draw(st.sampled_from(["net", "gross"]))
    if draw(st.booleans()):
        table["applies_to"] = draw(st.lists(st.sampled_from(["A", "AMB-", "X1"]), min_size=1))
    table["one_time_payments"] = draw(st.booleans())
    table["active"] = draw(st.booleans())
    return table


@given(table=program_tables(), version=st.integers(1, 10**6))
def test_json_form_round_trips(table: dict, version: int) -> None:
    program = parse_program(table)
    again = ProgramVersion.from_json(ProgramVersion(program, version).to_json())
    assert again.version == version
    assert again.program.to_json() == program.to_json()
    assert again.program.terms == program.terms and again.program.tiers == program.tiers


def test_program_version_rejects_bad_envelopes() -> None:
    good = ProgramVersion(parse_program({"id": "p", "rate": "5%"}), 2).to_json()
    assert good == {
        "version": 2,
        "program": {
            "id": "p",
            "active": True,
            "rate": "5%",
            "hold_days": 30,
            "basis": "net",
            "one_time_payments": True,
        },
    }
    with pytest.raises(ProgramError, match="version: expected an integer >= 1"):
        ProgramVersion.from_json({**good, "version": 0})
    with pytest.raises(ProgramError, match="program: expected an object"):
        ProgramVersion.from_json({"version": 1, "program": None})
