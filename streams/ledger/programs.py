"""Reward programs: the model, the file format (docs/PROGRAMS.md) and its validation.

A program file is TOML with one `[[program]]` table per program; the same keys, as a JSON
object, are what travels on the compacted `referral.programs` topic inside a
`ProgramVersion` (the version is assigned when a change is applied). Parsing is strict:
an unknown key, a wrong type or an impossible value raises `ProgramError` naming the
program and the field, e.g. `program 'standard': tiers[1].rate: ...`.

Rates are written as percent strings ("20%", "12.5%") and held as Decimal fractions
(Decimal("0.2")). Money is integer minor units per lowercase ISO currency
(`{ usd = 2500 }` is $25.00). A currency missing from a per-currency table means: no
flat reward / no bonus / no minimum / no cap in that currency.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

BASES = ("net", "gross")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PERCENT = re.compile(r"^\s*(\d{1,3}(?:\.\d{1,6})?)\s*%\s*$")
_CURRENCY = re.compile(r"^[a-z]{3}$")
_PROGRAM_KEYS = {
    "id",
    "description",
    "active",
    "rate",
    "flat",
    "tiers",
    "first_invoice_bonus",
    "duration_months",
    "minimum_invoice",
    "cap",
    "hold_days",
    "basis",
    "applies_to",
    "one_time_payments",
}
_TIER_KEYS = {"from_month", "to_month", "rate", "flat"}


class ProgramError(ValueError):
    """A program definition that cannot be used; the message names the field."""


def _frozen(mapping: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Terms:
    """What one paid invoice earns: a rate of the base, or a flat amount per currency."""

    rate: Decimal | None = None  # fraction: Decimal("0.2") is 20%
    flat_minor: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.flat_minor is None):
            raise ProgramError("terms need exactly one of rate or flat")


@dataclass(frozen=True)
class Tier:
    """Terms for tenure months from_month..to_month (inclusive; to_month None = onwards)."""

    from_month: int
    to_month: int | None
    terms: Terms

    def covers(self, month: int) -> bool:
        return month >= self.from_month and (self.to_month is None or month <= self.to_month)


@dataclass(frozen=True)
class Program:
    id: str
    terms: Terms
    tiers: tuple[Tier, ...] = ()
    first_invoice_bonus_minor: Mapping[str, int] = field(default_factory=dict)
    duration_months: int | None = None  # None: lifetime
    minimum_invoice_minor: Mapping[str, int] = field(default_factory=dict)
    cap_minor: Mapping[str, int] = field(default_factory=dict)
    hold_days: int = 30
    basis: str = "net"
    applies_to: tuple[str, ...] | None = None  # code prefixes; None: every code
    one_time_payments: bool = True
    active: bool = True
    description: str = ""

    def applies_to_code(self, code: str) -> bool:
        return self.applies_to is None or any(code.startswith(p) for p in self.applies_to)

    def terms_for_month(self, tenure_month: int) -> Terms | None:
        """The terms of an invoice in that tenure month; None once the duration is over."""
        if self.duration_months is not None and tenure_month > self.duration_months:
            return None
        for tier in self.tiers:
            if tier.covers(tenure_month):
                return tier.terms
        return self.terms

    def to_json(self) -> dict[str, Any]:
        """The program as a JSON object in the file format's keys (parse_program reads it)."""
        out: dict[str, Any] = {"id": self.id, "active": self.active}
        if self.description:
            out["description"] = self.description
        out.update(_terms_json(self.terms))
        if self.tiers:
            out["tiers"] = [
                {
                    "from_month": t.from_month,
                    **({} if t.to_month is None else {"to_month": t.to_month}),
                    **_terms_json(t.terms),
                }
                for t in self.tiers
            ]
        for key, table in (
            ("first_invoice_bonus", self.first_invoice_bonus_minor),
            ("minimum_invoice", self.minimum_invoice_minor),
            ("cap", self.cap_minor),
        ):
            if table:
                out[key] = dict(sorted(table.items()))
        if self.duration_months is not None:
            out["duration_months"] = self.duration_months
        out["hold_days"] = self.hold_days
        out["basis"] = self.basis
        if self.applies_to is not None:
            out["applies_to"] = list(self.applies_to)
        out["one_time_payments"] = self.one_time_payments
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Program:
        return parse_program(data)


@dataclass(frozen=True)
class ProgramVersion:
    """A program as applied: `version` grows by one with every applied change."""

    program: Program
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "program": self.program.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProgramVersion:
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ProgramError(f"version: expected an integer >= 1, got {version!r}")
        program = data.get("program")
        if not isinstance(program, Mapping):
            raise ProgramError("program: expected an object")
        return cls(program=parse_program(program), version=version)


# --- formatting helpers ---------------------------------------------------------------------


def format_percent(rate: Decimal) -> str:
    """Decimal("0.125") -> "12.5%"."""
    return f"{(rate * 100).normalize():f}%"


def _terms_json(terms: Terms) -> dict[str, Any]:
    if terms.rate is not None:
        return {"rate": format_percent(terms.rate)}
    return {"flat": dict(sorted((terms.flat_minor or {}).items()))}


# --- parsing ---------------------------------------------------------------------------------


class _Fields:
    """Reads one table, naming `where.key` in every error."""

    def __init__(self, data: Any, where: str, allowed: set[str]) -> None:
        if not isinstance(data, Mapping):
            raise ProgramError(f"{where}: expected a table/object")
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ProgramError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        self.data = data
        self.where = where

    def err(self, key: str, message: str) -> ProgramError:
        return ProgramError(f"{self.where}: {key}: {message}")

    def integer(self, key: str, default: int | None, minimum: int) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise self.err(key, f"must be >= {minimum}, got {value}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.err(key, f"expected true or false, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.err(key, f"expected a string, got {value!r}")
        return value

    def rate(self, key: str) -> Decimal | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            # Floats are refused: 0.2 vs 20 is ambiguous and binary floats are not exact.
            raise self.err(key, f'write rates as a percent string such as "20%", got {value!r}')
        match = _PERCENT.match(value)
        if match is None:
            raise self.err(key, f'expected a percent such as "20%" or "12.5%", got {value!r}')
        try:
            rate = Decimal(match.group(1)) / 100
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
            raise self.err(key, f"not a number: {value!r}") from exc
        if not Decimal(0) < rate <= Decimal(1):
            raise self.err(key, f"must be above 0% and at most 100%, got {value!r}")
        return rate

    def money(self, key: str, *, positive: bool) -> Mapping[str, int] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not value:
            raise self.err(key, "expected a table of currency = minor units, e.g. { usd = 500 }")
        out: dict[str, int] = {}
        for currency, amount in value.items():
            code = str(currency).lower()
            if not _CURRENCY.match(code):
                raise self.err(f"{key}.{currency}", "expected a 3-letter ISO currency code")
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise self.err(
                    f"{key}.{currency}", f"expected an integer in minor units, got {amount!r}"
                )
            if amount < (1 if positive else 0):
                raise self.err(f"{key}.{currency}", f"must be >= {int(positive)}, got {amount}")
            if code in out:
                raise self.err(f"{key}.{currency}", "currency given twice")
            out[code] = amount
        return _frozen(out)

    def terms(self) -> Terms | None:
        rate = self.rate("rate")
        flat = self.money("flat", positive=True)
        if rate is not None and flat is not None:
            raise ProgramError(f"{self.where}: give either rate or flat, not both")
        if rate is None and flat is None:
            return None
        return Terms(rate=rate, flat_minor=flat)


def _tiers(raw: Any, where: str, duration: int | None) -> tuple[Tier, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProgramError(f"{where}: tiers: expected a list of tables")
    tiers: list[Tier] = []
    for i, item in enumerate(raw):
        f = _Fields(item, f"{where}: tiers[{i}]", _TIER_KEYS)
        start = f.integer("from_month", None, minimum=1)
        if start is None:
            raise f.err("from_month", "required")
        end = f.integer("to_month", None, minimum=start)
        terms = f.terms()
        if terms is None:
            raise ProgramError(f"{f.where}: give a rate or a flat amount")
        if duration is not None and (end is None or end > duration):
            raise f.err("to_month", f"tiers must end within duration_months ({duration})")
        tiers.append(Tier(from_month=start, to_month=end, terms=terms))
    tiers.sort(key=lambda t: t.from_month)
    for prev, cur in itertools.pairwise(tiers):
        if prev.to_month is None or prev.to_month >= cur.from_month:
            raise ProgramError(
                f"{where}: tiers: months {prev.from_month}-{prev.to_month or 'onwards'} "
                f"overlap the tier starting at month {cur.from_month}"
            )
    return tuple(tiers)


def parse_program(data: Mapping[str, Any], where: str | None = None) -> Program:
    """Validate one program table (TOML or JSON) into a Program."""
    raw_id = data.get("id") if isinstance(data, Mapping) else None
    where = where or (f"program {raw_id!r}" if isinstance(raw_id, str) else "program")
    f = _Fields(data, where, _PROGRAM_KEYS)
    program_id = f.text("id")
    if program_id is None or not _ID.match(program_id):
        raise f.err("id", "required: 1-64 letters, digits, '_', '.', '-' (starting alnum)")
    terms = f.terms()
    if terms is None:
        raise ProgramError(f'{where}: give a rate (e.g. "20%") or a flat amount per currency')
    duration = f.integer("duration_months", None, minimum=1)
    basis = f.text("basis", "net")
    if basis not in BASES:
        raise f.err("basis", f"expected one of {', '.join(BASES)}, got {basis!r}")
    applies = data.get("applies_to")
    applies_to: tuple[str, ...] | None = None
    if applies is not None:
        if (
            not isinstance(applies, list)
            or not applies
            or not all(isinstance(p, str) and p.strip() for p in applies)
        ):
            raise f.err(
                "applies_to", "expected a non-empty list of code prefixes (omit it for all codes)"
            )
        applies_to = tuple(p.strip() for p in applies)
    hold_days = f.integer("hold_days", 30, minimum=0) or 0
    return Program(
        id=program_id,
        terms=terms,
        tiers=_tiers(data.get("tiers"), where, duration),
        first_invoice_bonus_minor=f.money("first_invoice_bonus", positive=True) or _frozen({}),
        duration_months=duration,
        minimum_invoice_minor=f.money("minimum_invoice", positive=False) or _frozen({}),
        cap_minor=f.money("cap", positive=True) or _frozen({}),
        hold_days=hold_days,
        basis=basis,
        applies_to=applies_to,
        one_time_payments=f.flag("one_time_payments", True),
        active=f.flag("active", True),
        description=f.text("description", "") or "",
    )


def parse_programs_toml(text: str, origin: str = "<programs>") -> tuple[Program, ...]:
    """Every `[[program]]` of a program file; ids must be unique."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"{origin}: not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - {"program"})
    if unknown:
        raise ProgramError(f"{origin}: unknown top-level key(s) {', '.join(map(repr, unknown))}")
    tables = doc.get("program")
    if not isinstance(tables, list) or not tables:
        raise ProgramError(f"{origin}: no [[program]] tables")
    programs = [parse_program(table) for table in tables]
    seen: set[str] = set()
    for program in programs:
        if program.id in seen:
            raise ProgramError(f"{origin}: program id {program.id!r} defined twice")
        seen.add(program.id)
    return tuple(programs)


def load_programs(path: Path | str) -> tuple[Program, ...]:
    path = Path(path)
    return parse_programs_toml(path.read_text(encoding="utf-8"), origin=str(path))
