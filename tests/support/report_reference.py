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
# The statement over the base tables read with FINAL.
STATEMENT = f"""SELECT toString(at), kind, record_id, reward_id, currency, mode, amount_minor,
        sum(amount_minor) OVER (PARTITION BY currency, mode ORDER BY at, kind_order, record_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    FROM (
        SELECT paid_at AS at, 'reward' AS kind, 0 AS kind_order, reward_id AS record_id,
            reward_id, toString(currency) AS currency, {_MODE} AS mode,
            reward_amount_minor AS amount_minor
        FROM rewards FINAL WHERE referral_code = {{code:String}}
        UNION ALL
        SELECT occurred_at, toString(kind), if(kind = 'reinstatement', 1, 2), clawback_id,
            reward_id, toString(currency), {_MODE}, signed_amount_minor
        FROM clawbacks FINAL WHERE referral_code = {{code:String}}
        UNION ALL
        SELECT paid_at, 'payout', 3, payout_id, '', toString(currency),
            if(livemode, 'live', 'test'), -amount_minor
        FROM payouts FINAL WHERE referral_code = {{code:String}}
    )
    ORDER BY at, kind_order, record_id, currency, mode"""


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
    codes = client.query("SELECT DISTINCT referral_code FROM rewards").result_rows
    for (code,) in codes:
        expected = client.query(STATEMENT, parameters={"code": code}).result_rows
        params = {"referral_code": code, "limit": "10000"}
        assert run_report(client, "referrer_statement", params).rows == [list(r) for r in expected]
