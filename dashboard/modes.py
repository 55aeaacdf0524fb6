"""Ledger modes and currencies: how rows of the reports are kept apart on a page.

A ledger mode is `live`, `test`, or `live@acct_...` / `test@acct_...` for a Connect
account, exactly the `mode` column of the reports. A page shows one ledger mode; within it,
every figure stays per currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Row = Mapping[str, Any]
PLATFORM_MODES = ("live", "test")


def base_mode(mode: str) -> str:
    """The report parameter for a ledger mode: live or test."""
    return mode.split("@", 1)[0]


def account_of(mode: str) -> str:
    """The Connect account of a ledger mode, '' for the platform."""
    return mode.split("@", 1)[1] if "@" in mode else ""


def is_mode(raw: str) -> bool:
    base, at, account = raw.partition("@")
    return base in PLATFORM_MODES and (not at or account.startswith("acct_"))


def ledger_modes(rows: Iterable[Row]) -> list[str]:
    """Distinct modes, platform modes first (live before test), then accounts by name."""
    found = {str(row["mode"]) for row in rows if row.get("mode")}
    return sorted(found, key=lambda m: ("@" in m, m.split("@")[0] != "live", m))


def pick_mode(requested: str | None, available: list[str]) -> str:
    if requested and is_mode(requested):
        return requested
    return available[0] if available else "live"


def in_mode(rows: Iterable[Row], mode: str) -> list[Row]:
    return [row for row in rows if row.get("mode") == mode]


def by_currency(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(str(row["currency"]), []).append(row)
    return dict(sorted(out.items()))
