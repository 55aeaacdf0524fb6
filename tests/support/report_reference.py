"""The reference for the fast referrer reports: what they computed before the ledger,
sums over the views of the base tables read with FINAL (docs/ANALYTICS.md)."""

# ruff: noqa: S608 - the reference SQL is assembled from this module's constants only

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.reports import run_report

# Grouped like each report.
_MODE = "if(account = '', if(livemode, 'live', 'test'), concat(if(livemode, 'live', 'test'), '@', account))"  # noqa: E501
REFERENCE = {
    "referrer_rewards": f"""SELECT referral_code, currency, {_MODE} AS mode,
            sum(rewards_minor) AS r, sum(clawbacks_minor) AS c, sum(net_minor)
        FROM referrer_daily GROUP BY referral_code, currency, livemode, account
        HAVING r != 0 OR c != 0 ORDER BY referral_code, currency, mode""",
    "top_referrers_net_reward": f"""SELECT referral_code, currency, {_MODE} AS mode,
            sum(rewards_minor) AS r, sum(clawbacks_minor) AS c, sum(net_minor) AS n
        FROM referrer_daily GROUP BY referral_code, currency, livemode, account
        HAVING r != 0 OR c != 0 ORDER BY n DESC, referral_code, currency, mode""",
    "rewards_by_month": f"""SELECT toString(toStartOfMonth(day)) AS month, currency,
            {_MODE} AS mode, sum(rewards_minor), sum(clawbacks_minor), sum(net_minor)
        FROM referrer_daily GROUP BY month, currency, livemode, account
        HAVING sum(rewards_minor) != 0 OR sum(clawbacks_minor) != 0
        ORDER BY month, currency, mode""",
}
LIMITS = {"limit": "10000"}


def fast(client: Client, name: str) -> list[list[Any]]:
    rows = run_report(client, name, LIMITS).rows
    if name == "rewards_by_month":  # the reference has no revenue columns
        return [row[:6] for row in rows if row[3] != 0 or row[4] != 0]
    return rows


def reference(client: Client, name: str) -> list[list[Any]]:
    return [list(row) for row in client.query(REFERENCE[name]).result_rows]


def assert_exact(client: Client) -> None:
    for name in REFERENCE:
        assert fast(client, name) == reference(client, name), name
