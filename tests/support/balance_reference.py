"""The reference for `balances` and `rewards_by_program`: what they computed before the
balance ledger, over the views of the base tables read with FINAL (sinks/ddl/0003:
reward_states, referrer_balances), with the reports' own parameters bound."""

# ruff: noqa: S608 - the reference SQL is assembled from this module's constants only

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from dashboard import payouts
from sinks.reports import get_report, run_report, validate_params

_MODE_ACCOUNT = (
    "if(account = '', if(livemode, 'live', 'test'), "
    "concat(if(livemode, 'live', 'test'), '@', account)) AS mode"
)
REFERENCE = {
    "balances": f"""SELECT referral_code, currency, {_MODE_ACCOUNT}, rewards_minor,
            pending_minor, payable_minor, paid_minor, clawed_back_minor, earned_minor,
            net_minor
        FROM referrer_balances
        WHERE ({{mode:String}} = 'all' OR livemode = ({{mode:String}} = 'live'))
            AND ({{currency:String}} = '' OR currency = {{currency:String}})
            AND ({{referral_code:String}} = '' OR referral_code = {{referral_code:String}})
        ORDER BY referral_code, currency, mode
        LIMIT {{limit:UInt32}}""",
    "rewards_by_program": f"""SELECT program_id, program_version, currency, mode,
            count() AS rewards, sum(reward_amount_minor) AS rewards_minor,
            sum(corrections) AS clawbacks_minor, rewards_minor + clawbacks_minor AS net_minor
        FROM (
            SELECT r.program_id AS program_id, r.program_version AS program_version,
                toString(r.currency) AS currency, r.livemode AS livemode,
                r.account AS account, {_MODE_ACCOUNT}, r.reward_amount_minor
                    AS reward_amount_minor, c.corrections AS corrections
            FROM rewards AS r FINAL
            LEFT JOIN (SELECT reward_id, sum(signed_amount_minor) AS corrections
                       FROM clawbacks FINAL GROUP BY reward_id) AS c
                ON r.reward_id = c.reward_id
            WHERE ({{referral_code:String}} = '' OR referral_code = {{referral_code:String}})
                AND toDate(r.paid_at) BETWEEN toDate({{since:String}}) AND toDate({{until:String}})
        )
        WHERE ({{mode:String}} = 'all' OR mode = {{mode:String}}
            OR (position({{mode:String}}, '@') = 0 AND livemode = ({{mode:String}} = 'live')))
            AND ({{currency:String}} = '' OR currency = {{currency:String}})
        GROUP BY program_id, program_version, currency, mode
        ORDER BY program_id, program_version, currency, mode
        LIMIT {{limit:UInt32}}""",
}
LIMITS = {"limit": "10000"}

# The dashboard's payout queries (dashboard/payouts.py) before they read the balance
# ledger's states: over the `reward_states` view.
PAYOUT_REFERENCE = {
    "payable": """SELECT s.reward_id, s.referral_code, s.currency, s.standing_minor,
            toString(r.paid_at)
        FROM reward_states AS s
        INNER JOIN (SELECT reward_id, paid_at, account FROM rewards FINAL) AS r
            ON s.reward_id = r.reward_id
        WHERE s.status = 'payable' AND s.livemode = {live:Bool} AND r.account = ''
            AND ({referral_code:String} = '' OR s.referral_code = {referral_code:String})
        ORDER BY s.referral_code, s.currency, s.reward_id
        LIMIT 10000""",
    "carry": """SELECT
            -(SELECT sum(netted_minor) FROM reward_states
              WHERE referral_code = {referral_code:String} AND currency = {currency:String}
                AND livemode = {live:Bool})
            - (SELECT sum(carryover_absorbed_minor) FROM reward_status FINAL
               WHERE referral_code = {referral_code:String} AND currency = {currency:String}
                 AND livemode = {live:Bool} AND status = 'paid' AND account = '')""",
}


def reference(client: Client, name: str, raw: Mapping[str, str]) -> list[list[Any]]:
    params = validate_params(get_report(name), raw)
    return [list(row) for row in client.query(REFERENCE[name], parameters=params).result_rows]


def fast(client: Client, name: str, raw: Mapping[str, str]) -> list[list[Any]]:
    return run_report(client, name, raw).rows


def parameter_sets(client: Client) -> list[dict[str, str]]:
    """Everything, then each referrer, currency and mode filter, and a few day ranges."""
    sets: list[dict[str, str]] = [dict(LIMITS)]
    codes = client.query("SELECT DISTINCT referral_code FROM rewards ORDER BY 1").result_rows
    sets += [{**LIMITS, "referral_code": code} for (code,) in codes[:2]]
    sets += [{**LIMITS, "currency": "eur"}, {**LIMITS, "mode": "live"}, {**LIMITS, "mode": "test"}]
    return sets


PROGRAM_ONLY = [
    {"mode": "test@acct_1"},
    {"since": "2026-03-01", "until": "2026-04-30"},  # whole months
    {"since": "2026-03-02", "until": "2026-05-17"},  # partial months at either end
    {"since": "2026-04-10", "until": "2026-04-20"},  # inside one month
]


def assert_exact(client: Client) -> None:
    for raw in parameter_sets(client):
        for name in REFERENCE:
            assert fast(client, name, raw) == reference(client, name, raw), (name, raw)
    for extra in PROGRAM_ONLY:
        raw = {**LIMITS, **extra}
        name = "rewards_by_program"
        assert fast(client, name, raw) == reference(client, name, raw), (name, raw)
    assert_payouts_exact(client)


def assert_payouts_exact(client: Client) -> None:
    """The dashboard's payable rewards and carry-over equal the view-based reference, for
    every referrer, currency and platform mode (and all referrers' payable rewards)."""
    keys = client.query(
        "SELECT DISTINCT referral_code, toString(currency) FROM rewards ORDER BY 1, 2"
    ).result_rows
    for live in (True, False):
        for code in ["", *sorted({code for code, _ in keys})]:
            params = {"live": live, "referral_code": code}
            assert _rows(client, payouts.PAYABLE_SQL, params) == _rows(
                client, PAYOUT_REFERENCE["payable"], params
            ), params
        for code, currency in keys:
            params = {"live": live, "referral_code": code, "currency": currency}
            assert _rows(client, payouts.CARRY_SQL, params) == _rows(
                client, PAYOUT_REFERENCE["carry"], params
            ), params


def _rows(client: Client, sql: str, params: Mapping[str, Any]) -> list[list[Any]]:
    return [list(row) for row in client.query(sql, parameters=dict(params)).result_rows]
