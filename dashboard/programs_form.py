"""The program form: a program's JSON form (docs/PROGRAMS.md) as form fields and back.

The form only restructures text into the file format's shapes (integers where digits
were typed, currency tables from `usd=1000, eur=900`); validation is the CLI's parser,
`streams.ledger.programs.parse_program`, and each of its messages is shown next to the field it
names (`program 'x': tiers[1]: rate: ...` -> field `tiers[1].rate`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.ledger.programs import Program, ProgramError, parse_program

BLANK_TIERS = 2  # empty tier rows offered below the existing ones
MAX_TIERS = 24
CURRENCY_TABLES = ("flat", "first_invoice_bonus", "minimum_invoice", "cap")
_ENTRY = re.compile(r"^\s*([A-Za-z]{3})\s*[=:]\s*(-?\d+)\s*$")
_WHERE = re.compile(r"^program(?: '[^']*')?: ")
_TIER = re.compile(r"^tiers\[(\d+)\]: (?:([a-z_]+): )?")
_KEY = re.compile(r"^([a-z_]+)(?:\.[A-Za-z]+)?: ")


@dataclass
class ProgramForm:
    values: dict[str, str] = field(default_factory=dict)
    tiers: list[dict[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # field -> message

    def error(self, name: str) -> str:
        return self.errors.get(name, "")


def _table_text(table: Mapping[str, int] | None) -> str:
    return ", ".join(f"{c}={a}" for c, a in sorted((table or {}).items()))


def _terms_text(data: Mapping[str, Any]) -> str:
    return str(data["rate"]) if "rate" in data else _table_text(data.get("flat"))


def form_from_program(program: Mapping[str, Any] | None) -> ProgramForm:
    """Fields of an existing program (its JSON form), or of a new one."""
    p: Mapping[str, Any] = program or {"active": True, "rate": "", "hold_days": 30,
                                       "basis": "net", "one_time_payments": True}  # fmt: skip
    values = {
        "id": str(p.get("id", "")),
        "description": str(p.get("description", "")),
        "active": "on" if p.get("active", True) else "",
        "terms_kind": "flat" if "flat" in p else "rate",
        "rate": str(p.get("rate", "")),
        "duration_months": str(p.get("duration_months", "")),
        "hold_days": str(p.get("hold_days", 30)),
        "basis": str(p.get("basis", "net")),
        "applies_to": ", ".join(p.get("applies_to") or []),
        "one_time_payments": "on" if p.get("one_time_payments", True) else "",
    }
    for key in CURRENCY_TABLES:
        values[key] = _table_text(p.get(key))
    tiers = [
        {"from_month": str(t.get("from_month", "")), "to_month": str(t.get("to_month", "")),
         "terms": _terms_text(t)}
        for t in p.get("tiers") or []
    ]  # fmt: skip
    tiers += [{"from_month": "", "to_month": "", "terms": ""} for _ in range(BLANK_TIERS)]
    return ProgramForm(values=values, tiers=tiers)


def _number(text: str) -> Any:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d{1,12}", text) else text  # the parser names it


def _table(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _ENTRY.match(part)
        if match is None:
            raise ValueError(f"expected currency=minor units such as usd=1000, got {part!r}")
        out[match.group(1).lower()] = int(match.group(2))
    return out


def read_form(form: Mapping[str, str], program_id: str | None = None) -> ProgramForm:
    """The submitted fields, kept for re-display, with the form's own shape errors."""
    values = {key: str(form.get(key, "")) for key in form_from_program(None).values}
    if program_id is not None:
        values["id"] = program_id  # an existing program's id is not editable
    tiers = []
    for i in range(MAX_TIERS):
        row = {k: str(form.get(f"tier_{k}_{i}", "")) for k in ("from_month", "to_month", "terms")}
        if f"tier_from_month_{i}" in form:
            tiers.append(row)
    return ProgramForm(values=values, tiers=tiers)


def to_program(pf: ProgramForm) -> Program | None:
    """Parse the form with the CLI's parser; None with `pf.errors` filled on failure."""
    v = pf.values
    raw: dict[str, Any] = {"id": v["id"].strip(), "active": v.get("active") == "on",
                           "one_time_payments": v.get("one_time_payments") == "on"}  # fmt: skip
    if v["description"].strip():
        raw["description"] = v["description"].strip()
    try:
        if v.get("terms_kind") == "flat":
            raw["flat"] = _table(v["flat"]) or None
        elif v["rate"].strip():
            raw["rate"] = v["rate"].strip()
    except ValueError as exc:
        pf.errors["flat"] = str(exc)
    for key in ("first_invoice_bonus", "minimum_invoice", "cap"):
        try:
            if v[key].strip():
                raw[key] = _table(v[key])
        except ValueError as exc:
            pf.errors[key] = str(exc)
    for key in ("duration_months", "hold_days"):
        if v[key].strip():
            raw[key] = _number(v[key])
    raw["basis"] = v["basis"].strip() or "net"
    if v["applies_to"].strip():
        raw["applies_to"] = [p.strip() for p in v["applies_to"].split(",")]
    tiers, rows_of_tiers = [], []
    for i, row in enumerate(pf.tiers):
        if not any(value.strip() for value in row.values()):
            continue
        tier: dict[str, Any] = {"from_month": _number(row["from_month"])}
        if row["to_month"].strip():
            tier["to_month"] = _number(row["to_month"])
        terms = row["terms"].strip()
        if terms.endswith("%") or not terms:
            if terms:
                tier["rate"] = terms
        else:
            try:
                tier["flat"] = _table(terms)
            except ValueError as exc:
                pf.errors[f"tiers[{i}].terms"] = str(exc)
        tiers.append(tier)
        rows_of_tiers.append(i)
    if tiers:
        raw["tiers"] = tiers
    if pf.errors:
        return None
    try:
        return parse_program({k: val for k, val in raw.items() if val is not None})
    except ProgramError as exc:
        pf.errors[field_of(str(exc), rows_of_tiers)] = str(exc)
        return None


def field_of(message: str, rows_of_tiers: list[int] | None = None) -> str:
    """The form field a parser message is about ('' for the form as a whole). The parser
    counts only the tiers it was given; `rows_of_tiers` maps them back to form rows."""
    where = _WHERE.match(message)
    if where is None:
        return ""
    rest = message[where.end() :]
    tier = _TIER.match(rest)
    if tier is not None:
        index = int(tier.group(1))
        if rows_of_tiers is not None and index < len(rows_of_tiers):
            index = rows_of_tiers[index]
        key = tier.group(2) or "terms"
        return f"tiers[{index}].{'terms' if key in ('rate', 'flat') else key}"
    if rest.startswith("tiers:"):
        return "tiers"
    if rest.startswith("give a rate") or rest.startswith("give either"):
        return "rate"
    key = _KEY.match(rest)
    return key.group(1) if key else ""
