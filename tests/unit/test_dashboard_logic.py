"""The dashboard's pure parts: who may do what (auth), the program form against the CLI's
parser, money display, ledger modes, monthly shaping and the statement CSV."""

from __future__ import annotations

import base64
import csv
import io

import pytest

from dashboard.auth import AuthConfig, Identity, Refusal, authenticate, decide
from dashboard.modes import in_mode, ledger_modes, pick_mode
from dashboard.money import format_minor
from dashboard.overview import month_end, month_starts, rewards_by_month, trim_leading
from dashboard.programs_form import field_of, form_from_program, read_form, to_program
from dashboard.statement import statement_csv
from refstream.settings import Secret, SettingsError, load_settings
from streams.ledger.programs import ProgramError, parse_program

TOKEN = "tok_" + "x" * 20
USERS = (("alice", Secret("alice-password-0001")), ("bob", Secret("bob-password-00002")))
CONFIG = AuthConfig(token=Secret(TOKEN), users=USERS)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_logins_and_the_token_identify_their_holder() -> None:
    assert authenticate(basic("bob", "bob-password-00002"), CONFIG) == Identity("bob", "basic")
    assert authenticate(f"Bearer {TOKEN}", CONFIG) == Identity("api-token", "bearer")
    for wrong in (
        basic("bob", "alice-password-0001"),
        basic("eve", "x"),
        f"Bearer {TOKEN}x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        "Digest a",
    ):
        assert authenticate(wrong, CONFIG) is None, wrong  # fmt: skip


@pytest.mark.parametrize(
    ("config", "remote", "write", "expected"),
    [
        (AuthConfig(), "127.0.0.1", False, "anonymous"),
        (AuthConfig(), "127.0.0.1", True, 403),  # writes always need a login
        (AuthConfig(), "10.0.0.8", False, 401),  # beyond loopback: always a login
        (CONFIG, "127.0.0.1", False, 401),  # configured: reads need it too
        (CONFIG, "127.0.0.1", True, 401),
    ],
)
def test_who_may_read_and_write(config: AuthConfig, remote: str, write: bool, expected: object
                                ) -> None:  # fmt: skip
    verdict = decide("", remote, config, write=write)
    if isinstance(expected, str):
        assert isinstance(verdict, Identity) and verdict.name == expected
    else:
        assert isinstance(verdict, Refusal) and verdict.status == expected
    if expected == 403:
        assert "REFSTREAM_DASHBOARD_USERS" in verdict.message  # type: ignore[union-attr]


def test_dashboard_users_setting_is_validated_without_echoing_passwords() -> None:
    settings = load_settings({"REFSTREAM_DASHBOARD_USERS": "alice:alice-password-0001, bob:"
                              "bob-password-00002"})  # fmt: skip
    assert [name for name, _ in settings.sink.dashboard_users] == ["alice", "bob"]
    assert "alice-password" not in repr(settings)
    for bad in ("alice", "al ice:alice-password-0001", "alice:short-pass",
                "a:aaaaaaaaaaaaaaaaaa,a:bbbbbbbbbbbbbbbbbbbb"):  # fmt: skip
        with pytest.raises(SettingsError, match="REFSTREAM_DASHBOARD_USERS") as exc:
            load_settings({"REFSTREAM_DASHBOARD_USERS": bad})
        assert "short-pass" not in str(exc.value) and "bbbb" not in str(exc.value)


EXAMPLE = {
    "id": "standard", "rate": "20%", "duration_months": 12, "hold_days": 30, "basis": "net",
    "first_invoice_bonus": {"eur": 2300, "usd": 2500}, "cap": {"usd": 50000},
    "tiers": [{"from_month": 1, "to_month": 3, "rate": "30%"}], "applies_to": ["AMB-"],
    "one_time_payments": False, "active": True, "description": "Partners",
}  # fmt: skip


def submitted(program: dict[str, object], **changes: str) -> dict[str, str]:
    form = form_from_program(program)
    fields = dict(form.values)
    for i, tier in enumerate(form.tiers):
        fields.update({f"tier_{k}_{i}": v for k, v in tier.items()})
    fields.update(changes)
    return {k: v for k, v in fields.items() if v != "" or not k.startswith(("active", "one_"))}


def test_a_program_survives_the_form_unchanged() -> None:
    program = to_program(read_form(submitted(EXAMPLE), "standard"))
    assert program is not None and program == parse_program(EXAMPLE)


def test_flat_terms_and_flat_tiers_from_the_form() -> None:
    form = read_form(submitted(EXAMPLE, terms_kind="flat", flat="usd=1000, EUR=900",
                               tier_terms_0="usd=500"), "standard")  # fmt: skip
    program = to_program(form)
    assert program is not None, form.errors
    assert dict(program.terms.flat_minor or {}) == {"usd": 1000, "eur": 900}
    assert dict(program.tiers[0].terms.flat_minor or {}) == {"usd": 500}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rate": "0.2"}, "rate"),
        ({"hold_days": "-1"}, "hold_days"),
        ({"basis": "gross-ish"}, "basis"),
        ({"duration_months": "2"}, "tiers[0].to_month"),
        ({"tier_terms_1": "10%", "tier_from_month_1": "2", "tier_to_month_1": "4"}, "tiers"),
        (
            {"tier_from_month_1": "5", "tier_to_month_1": "6", "tier_terms_1": "bogus"},
            "tiers[1].terms",
        ),
        ({"cap": "usd=0"}, "cap"),
    ],
)
def test_parser_messages_land_next_to_their_field(changes: dict[str, str], field: str) -> None:
    form = read_form(submitted(EXAMPLE, **changes), "standard")
    assert to_program(form) is None
    assert field in form.errors, form.errors


def test_the_message_is_the_parsers_own() -> None:
    form = read_form(submitted(EXAMPLE, rate="0.2"), "standard")
    to_program(form)
    with pytest.raises(ProgramError) as parser:
        parse_program({**EXAMPLE, "rate": "0.2"})
    assert form.errors["rate"] == str(parser.value)


def test_tier_messages_are_mapped_back_to_form_rows() -> None:
    message = "program 'x': tiers[0]: rate: bad"
    assert field_of(message, rows_of_tiers=[3]) == "tiers[3].terms"
    assert field_of("program 'x': unknown key(s) 'z'") == ""


def test_money_is_shown_in_the_currencys_own_unit() -> None:
    assert format_minor(123456, "usd") == "1,234.56 USD"
    assert format_minor(-5, "eur") == "-0.05 EUR"
    assert format_minor(500, "jpy") == "500 JPY"
    assert format_minor(1234, "kwd") == "1.234 KWD"


def test_ledger_modes_never_mix() -> None:
    rows = [{"mode": m} for m in ("test@acct_1", "test", "live", "live@acct_2", "test")]
    assert ledger_modes(rows) == ["live", "test", "live@acct_2", "test@acct_1"]
    assert in_mode(rows, "test") == [{"mode": "test"}, {"mode": "test"}]
    assert pick_mode("test@acct_1", ["live"]) == "test@acct_1"
    assert pick_mode("nonsense", ["test"]) == "test"


def test_months_and_monthly_sums_stay_per_currency() -> None:
    import datetime as dt

    starts = month_starts(dt.date(2025, 2, 14), 3)
    assert starts == [dt.date(2024, 12, 1), dt.date(2025, 1, 1), dt.date(2025, 2, 1)]
    assert month_end(dt.date(2024, 2, 1)) == dt.date(2024, 2, 29)
    rows = [
        {"day": "2025-01-03", "currency": "usd", "rewards_minor": 100, "clawbacks_minor": -10,
         "net_minor": 90},
        {"day": "2025-01-20", "currency": "usd", "rewards_minor": 50, "clawbacks_minor": 0,
         "net_minor": 50},
        {"day": "2025-01-20", "currency": "eur", "rewards_minor": 7, "clawbacks_minor": 0,
         "net_minor": 7},
    ]  # fmt: skip
    series = rewards_by_month(rows, ["2024-12", "2025-01", "2025-02"])
    assert trim_leading(["2024-12", "2025-01", "2025-02"], series) == ["2025-01", "2025-02"]
    assert series["usd"].months == ["2025-01", "2025-02"]
    assert series["usd"].get("2025-01", "net_minor") == 140
    assert series["eur"].get("2025-01", "rewards_minor") == 7
    assert series["usd"].get("2025-02", "net_minor") == 0


def test_statement_csv_keeps_numbers_and_defuses_formulas() -> None:
    rows = [{"at": "2025-01-01 00:00:00", "kind": "reward", "record_id": "=HYPERLINK(1)",
             "currency": "usd", "mode": "test", "amount_minor": -120,
             "running_balance_minor": -120}]  # fmt: skip
    parsed = list(csv.DictReader(io.StringIO(statement_csv(rows))))
    assert parsed[0]["record_id"] == "'=HYPERLINK(1)"
    assert parsed[0]["amount_minor"] == "-120"


def _reward(ref: str, line: str, paid: int, base: int, amount: int, month: int | None,
            basis: str = "net", customer: str = "c1") -> dict[str, object]:  # fmt: skip
    return {"invoice_id": ref if line != "one_time" else "", "charge_id": ref, "line": line,
            "currency": "usd", "payment_amount_minor": paid, "base_amount_minor": base,
            "reward_amount_minor": amount, "tenure_month": month, "basis": basis,
            "customer_key": customer, "month": "2025-07-01"}  # fmt: skip


def test_preview_recomputes_each_payment_with_the_reward_engine() -> None:
    from dashboard.preview import preview

    rows = [
        _reward("in_1", "invoice", 1100, 1000, 300, 1),  # 30% of the net base
        _reward("in_1", "first_invoice_bonus", 1100, 1000, 2500, 1),
        _reward("in_2", "invoice", 1100, 1000, 200, 4, customer="c2"),
        _reward("ch_1", "one_time", 500, 500, 100, None, basis="gross"),
    ]
    tiers = [{"from_month": 1, "to_month": 3, "flat": {"usd": 70}}]
    edited = parse_program({"id": "p", "rate": "10%", "basis": "net", "tiers": tiers})
    result = preview(edited, rows, "test").currencies["usd"]
    assert result.payments == 3 and result.in_force_minor == 3100
    # in_1: tier flat 70, no bonus in the edit; in_2: 10% of 1000; ch_1 was gross, the edit
    # is net: a gross -> net change cannot be recomputed.
    assert result.edited_minor == 70 + 100
    assert result.not_previewed == 1
    gross = parse_program({"id": "p", "rate": "10%", "basis": "gross", "cap": {"usd": 150}})
    capped = preview(gross, rows, "test").currencies["usd"]
    # gross 10%: in_1 110 (c1), in_2 110 (c2), ch_1 50 but c1 has only 150 - 110 = 40 left.
    assert capped.edited_minor == 110 + 110 + 40 and capped.not_previewed == 0
