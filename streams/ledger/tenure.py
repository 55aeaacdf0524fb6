"""Tenure months: which month of a customer's paying life a payment falls in.

Month 1 starts at the anchor (the service start of the customer's first paid invoice, see
streams/ledger/customer_ledger.py). Month k+1 starts at the k-th monthly anniversary of the anchor,
in UTC, with the day clamped to the month's length the way Stripe bills: an anchor on
Jan 31 10:00 has anniversaries Feb 28 10:00 (29 in leap years), Mar 31 10:00, Apr 30 10:00.
Anything at or before the anchor is month 1.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def tenure_month(anchor_s: int, at_s: int) -> int:
    """1-based tenure month of the instant `at_s` for a tenure anchored at `anchor_s`."""
    if at_s <= anchor_s:
        return 1
    a = datetime.fromtimestamp(anchor_s, UTC)
    b = datetime.fromtimestamp(at_s, UTC)
    months = (b.year - a.year) * 12 + (b.month - a.month)
    # This month's anniversary: the anchor's day clamped to this month, at the anchor's time.
    anniversary_day = min(a.day, _days_in_month(b.year, b.month))
    if (b.day, b.time()) < (anniversary_day, a.time()):
        months -= 1
    return months + 1


def add_months(ts_s: int, months: int) -> int:
    """The `months`-th anniversary of `ts_s` (UTC, day clamped): Stripe's monthly cycle."""
    a = datetime.fromtimestamp(ts_s, UTC)
    index = a.month - 1 + months
    year, month = a.year + index // 12, index % 12 + 1
    day = min(a.day, _days_in_month(year, month))
    return int(a.replace(year=year, month=month, day=day).timestamp())
