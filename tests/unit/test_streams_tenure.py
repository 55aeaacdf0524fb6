"""Tenure months follow Stripe's monthly anniversaries (UTC, day clamped to month length)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from streams.ledger.tenure import add_months, tenure_month


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_month_end_anchor_clamps_like_stripe() -> None:
    anchor = ts(2025, 1, 31, 10, 0, 0)
    assert add_months(anchor, 1) == ts(2025, 2, 28, 10, 0, 0)
    assert add_months(anchor, 2) == ts(2025, 3, 31, 10, 0, 0)
    assert add_months(anchor, 3) == ts(2025, 4, 30, 10, 0, 0)
    assert add_months(ts(2024, 1, 31, 10), 1) == ts(2024, 2, 29, 10)  # leap year
    assert add_months(anchor, 12) == ts(2026, 1, 31, 10, 0, 0)
    assert add_months(anchor, -1) == ts(2024, 12, 31, 10, 0, 0)


def test_tenure_months_on_explicit_dates() -> None:
    anchor = ts(2025, 1, 31, 10, 0, 0)
    assert tenure_month(anchor, anchor) == 1
    assert tenure_month(anchor, ts(2024, 12, 1)) == 1  # before the anchor: month 1
    assert tenure_month(anchor, ts(2025, 2, 28, 9, 59, 59)) == 1
    assert tenure_month(anchor, ts(2025, 2, 28, 10, 0, 0)) == 2
    assert tenure_month(anchor, ts(2025, 3, 30, 23, 0, 0)) == 2
    assert tenure_month(anchor, ts(2025, 3, 31, 10, 0, 0)) == 3
    assert tenure_month(anchor, ts(2026, 1, 31, 10, 0, 0)) == 13
    mid_month = ts(2025, 1, 15, 12, 0, 0)
    assert tenure_month(mid_month, ts(2025, 2, 15, 11, 59, 59)) == 1
    assert tenure_month(mid_month, ts(2025, 2, 15, 12, 0, 0)) == 2


@given(
    anchor=st.integers(ts(2015, 1, 1), ts(2035, 1, 1)),
    months=st.integers(0, 60),
)
def test_each_anniversary_starts_the_next_month(anchor: int, months: int) -> None:
    start = add_months(anchor, months)
    assert tenure_month(anchor, start) == months + 1
    if months > 0:
        assert tenure_month(anchor, start - 1) == months
    assert tenure_month(anchor, add_months(anchor, months + 1) - 1) == months + 1
