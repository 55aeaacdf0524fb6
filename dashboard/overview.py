"""The overview page's figures: revenue referred / organic / awaiting attribution per month,
rewards, clawbacks and net per month, top referrers and customers awaiting attribution,
each per currency of one ledger mode. Shaping is pure; `load_overview` fetches."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dashboard.data import MAX_ROWS, Data, Row
from dashboard.modes import account_of, base_mode, by_currency, in_mode
from dashboard.money import major

TOP = 10


def month_starts(last_day: dt.date, count: int) -> list[dt.date]:
    """`count` first-of-month dates ending with the month of `last_day`, oldest first."""
    year, month = last_day.year, last_day.month
    out = []
    for _ in range(count):
        out.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def month_end(start: dt.date) -> dt.date:
    following = dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return following - dt.timedelta(days=1)


@dataclass
class Series:
    """One currency's monthly figures: label -> {measure: minor units}."""

    months: list[str]
    values: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, month: str, measure: str, amount_minor: int) -> None:
        row = self.values.setdefault(month, {})
        row[measure] = row.get(measure, 0) + int(amount_minor)

    def get(self, month: str, measure: str) -> int:
        return self.values.get(month, {}).get(measure, 0)


def rewards_by_month(rows: Iterable[Row], months: list[str]) -> dict[str, Series]:
    """referrer_daily rows of one ledger mode -> rewards, clawbacks (signed), net per month
    and currency (sums stay inside a currency)."""
    out: dict[str, Series] = {}
    for row in rows:
        month = str(row["day"])[:7]
        if month not in months:
            continue
        series = out.setdefault(str(row["currency"]), Series(months))
        for measure in ("rewards_minor", "clawbacks_minor", "net_minor"):
            series.add(month, measure, row[measure])
    return dict(sorted(out.items()))


def revenue_by_month(per_month: Mapping[str, Iterable[Row]], months: list[str]
                     ) -> dict[str, Series]:  # fmt: skip
    """revenue_split rows of one ledger mode per month -> referred / organic / awaiting."""
    out: dict[str, Series] = {}
    for month, rows in per_month.items():
        for row in rows:
            series = out.setdefault(str(row["currency"]), Series(months))
            for measure in ("referred_minor", "organic_minor", "unattributed_minor"):
                series.add(month, measure, row[measure])
    return dict(sorted(out.items()))


def top_by_currency(rows: Iterable[Row], key: str, limit: int = TOP) -> dict[str, list[Row]]:
    """The first `limit` rows per currency, descending by `key` (ties by code)."""
    return {
        currency: sorted(group, key=lambda r: (-int(r[key]), str(r["referral_code"])))[:limit]
        for currency, group in by_currency(rows).items()
    }


@dataclass
class Overview:
    mode: str
    months: list[str]
    revenue: dict[str, Series]
    rewards: dict[str, Series]
    top_net: dict[str, list[Row]]
    top_revenue: dict[str, list[Row]]
    awaiting: dict[str, list[Row]]
    truncated: list[str]
    revenue_measures: dict[str, str] = field(default_factory=dict)  # column -> label


_DATA_RANGE = """
    SELECT toString(max(day)) AS last_day, count() AS entries
    FROM revenue_entries
    WHERE livemode = {live:Bool} AND account = {account:String}"""


MONTHLY_REPORT = "rewards_by_month"  # issue 11's contract (docs/ANALYTICS.md)


SeriesMap = dict[str, Series]  # currency -> its monthly series


def monthly_from_report(rows: Iterable[Row], month_count: int
                        ) -> tuple[list[str], SeriesMap, SeriesMap]:  # fmt: skip
    """rewards_by_month rows of one ledger mode -> the last `month_count` months with data
    (gaps included), revenue and rewards series per currency."""
    rows = list(rows)
    last = max((str(r["month"]) for r in rows), default=dt.date.today().isoformat())
    months = [s.isoformat()[:7] for s in month_starts(dt.date.fromisoformat(last), month_count)]
    revenue: dict[str, Series] = {}
    rewards: dict[str, Series] = {}
    for row in rows:
        month, currency = str(row["month"])[:7], str(row["currency"])
        if month not in months:
            continue
        rev = revenue.setdefault(currency, Series(months))
        rev.add(month, "referred_minor", row["referred_revenue_minor"])
        rev.add(month, "organic_minor", row["organic_revenue_minor"])
        rew = rewards.setdefault(currency, Series(months))
        for measure in ("rewards_minor", "clawbacks_minor", "net_minor"):
            rew.add(month, measure, row[measure])
    return months, dict(sorted(revenue.items())), dict(sorted(rewards.items()))


async def _monthly_fallback(data: Data, mode: str, month_count: int
                            ) -> tuple[list[str], SeriesMap, SeriesMap, bool]:  # fmt: skip
    """Stand-in while `rewards_by_month` is not in the catalogue (TODO(issue 11): delete):
    revenue_split once per month and referrer_daily summed per month."""
    base, account = base_mode(mode), account_of(mode)
    # No report names the data's last day; the months shown end with it (a replayed or
    # simulated history is not "last year" from today).
    found = await data.query(_DATA_RANGE, {"live": base == "live", "account": account})
    has_data = bool(found) and int(found[0]["entries"]) > 0
    last = dt.date.fromisoformat(found[0]["last_day"]) if has_data else dt.date.today()
    starts = month_starts(last, month_count)
    months = [start.isoformat()[:7] for start in starts]
    per_month: dict[str, list[Row]] = {}
    for start in starts:
        rows = await data.report(
            "revenue_split", mode=base, since=start.isoformat(),
            until=month_end(start).isoformat(), limit=MAX_ROWS,
        )  # fmt: skip
        per_month[start.isoformat()[:7]] = in_mode(rows, mode)
    daily = await data.report(
        "referrer_daily", mode=base, since=starts[0].isoformat(),
        until=month_end(starts[-1]).isoformat(), limit=MAX_ROWS,
    )  # fmt: skip
    return (months, revenue_by_month(per_month, months),
            rewards_by_month(in_mode(daily, mode), months), len(daily) >= MAX_ROWS)  # fmt: skip


def trim_leading(months: list[str], *maps: SeriesMap) -> list[str]:
    """The months from the first one with any figure (a young ledger shows no empty year)."""
    for i, month in enumerate(months):
        if any(any(s.values.get(month, {}).values()) for m in maps for s in m.values()):
            kept = months[i:]
            for m in maps:
                for series in m.values():
                    series.months = kept
            return kept
    return months


async def load_overview(data: Data, mode: str, month_count: int = 12) -> Overview:
    base, account = base_mode(mode), account_of(mode)
    truncated: list[str] = []
    measures = {"referred_minor": "Referred", "organic_minor": "Organic"}
    if data.has_report(MONTHLY_REPORT):
        rows = await data.report(MONTHLY_REPORT, mode=mode, limit=MAX_ROWS)
        months, revenue, rewards = monthly_from_report(in_mode(rows, mode), month_count)
    else:
        months, revenue, rewards, cut = await _monthly_fallback(data, mode, month_count)
        if cut:
            truncated.append("rewards per month (more than 10000 referrer-days)")
        measures["unattributed_minor"] = "Awaiting attribution"
    months = trim_leading(months, revenue, rewards)
    top_net = await data.report("top_referrers_net_reward", mode=base, limit=MAX_ROWS)
    top_revenue = await data.report("top_referrers_revenue", mode=base, limit=MAX_ROWS)
    awaiting: dict[str, list[Row]] = {}
    if not account:
        # awaiting_attribution names live/test only (no account column): shown on the
        # platform's screens, where customer keys of connected accounts carry the account.
        rows = await data.report("awaiting_attribution", mode=base, limit=MAX_ROWS)
        awaiting = {c: g[:TOP] for c, g in by_currency(in_mode(rows, mode)).items()}
    return Overview(
        mode=mode,
        months=months,
        revenue=revenue,
        rewards=rewards,
        top_net=top_by_currency(in_mode(top_net, mode), "net_minor"),
        top_revenue=top_by_currency(in_mode(top_revenue, mode), "referred_revenue_minor"),
        awaiting=awaiting,
        truncated=truncated,
        revenue_measures=measures,
    )


def chart_payload(overview: Overview) -> dict[str, Any]:
    """What the page's chart script draws: one chart per currency and figure (major
    units for the axes; the tables beside them carry the exact minor units)."""

    def datasets(series: Series, currency: str, measures: dict[str, str]) -> list[Any]:
        return [
            {"label": label, "key": measure,
             "data": [major(series.get(m, measure), currency) for m in series.months]}
            for measure, label in measures.items()
        ]  # fmt: skip

    revenue = overview.revenue_measures
    rewards = {"rewards_minor": "Rewards", "clawbacks_minor": "Clawbacks",
               "net_minor": "Net"}  # fmt: skip
    return {
        "revenue": {c: {"labels": s.months, "datasets": datasets(s, c, revenue)}
                    for c, s in overview.revenue.items()},
        "rewards": {c: {"labels": s.months, "datasets": datasets(s, c, rewards)}
                    for c, s in overview.rewards.items()},
    }  # fmt: skip
