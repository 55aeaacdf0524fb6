"""The reference for the revenue reports: their SQL before the revenue ledger, over the
views of the base tables read with FINAL (`revenue_entries`, `customer_referrers`,
`customer_revenue`, `referrer_daily`: sinks/ddl/0002, 0003), which stay exact by
construction. `assert_exact` runs every revenue report and its reference with the same
parameters and compares the rows."""

# ruff: noqa: S608 - the reference SQL is assembled from constants only

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.reports import (
    _CODE,
    _CURRENCY,
    _DAYS,
    _LEDGER,
    _MODE,
    _MODE_ACCOUNT,
    _MODE_NAME,
    _MODE_OR_ACCOUNT,
    QUERY_SETTINGS,
    get_report,
    run_report,
    validate_params,
)

REFERENCE = {
    "top_referrers_revenue": f"""SELECT referral_code, currency, {_MODE_ACCOUNT},
            sum(referred_revenue_minor) AS referred_revenue_minor
        FROM referrer_daily
        WHERE {_MODE} AND {_CURRENCY} AND {_DAYS}
        GROUP BY referral_code, currency, livemode, account
        HAVING referred_revenue_minor != 0
        ORDER BY referred_revenue_minor DESC, referral_code, currency, mode
        LIMIT {{limit:UInt32}}""",
    "revenue_split": """SELECT r.currency AS currency,
            if(r.account = '', if(r.livemode, 'live', 'test'),
               concat(if(r.livemode, 'live', 'test'), '@', r.account)) AS mode,
            sumIf(r.amount_minor, a.referral_code != '') AS referred_minor,
            sumIf(r.amount_minor, a.referral_code = '' AND o.customer_key != '')
                AS organic_minor,
            sumIf(r.amount_minor, a.referral_code = '' AND o.customer_key = '')
                AS unattributed_minor,
            sum(r.amount_minor) AS total_minor
        FROM revenue_entries AS r
        LEFT JOIN customer_referrers AS a
            ON r.customer_key = a.customer_key AND r.livemode = a.livemode
        LEFT JOIN (SELECT DISTINCT customer_key, livemode FROM attributions FINAL
                   WHERE kind = 'organic') AS o
            ON r.customer_key = o.customer_key AND r.livemode = o.livemode
        WHERE ({mode:String} = 'all' OR r.livemode = ({mode:String} = 'live'))
            AND ({currency:String} = '' OR r.currency = {currency:String})
            AND r.day BETWEEN toDate({since:String}) AND toDate({until:String})
        GROUP BY currency, mode
        ORDER BY currency, mode
        LIMIT {limit:UInt32}""",
    "awaiting_attribution": f"""SELECT customer_key, currency, {_MODE_NAME},
            toString(first_paid_date) AS first_paid_date, revenue_minor
        FROM customer_revenue
        WHERE attribution = 'unattributed' AND {_MODE} AND {_CURRENCY}
        ORDER BY revenue_minor DESC, customer_key, currency
        LIMIT {{limit:UInt32}}""",
    "customers": f"""SELECT customer_key, currency, {_MODE_NAME}, attribution, referral_code,
            toString(first_paid_date) AS first_paid_date, revenue_minor,
            referred_revenue_minor
        FROM customer_revenue
        WHERE {_MODE} AND {_CURRENCY} AND {_CODE}
            AND ({{attribution:String}} = 'all' OR attribution = {{attribution:String}})
        ORDER BY revenue_minor DESC, customer_key, currency
        LIMIT {{limit:UInt32}}""",
    "referrer_daily": f"""SELECT referral_code, toString(day) AS day, currency, {_MODE_ACCOUNT},
            referred_revenue_minor, rewards_minor, clawbacks_minor, net_minor
        FROM (SELECT * FROM referrer_daily
              WHERE {_MODE} AND {_CURRENCY} AND {_CODE} AND {_DAYS})
        ORDER BY day, referral_code, currency, mode
        LIMIT {{limit:UInt32}}""",
    "rewards_by_month": f"""SELECT toString(month) AS month, currency, mode,
            sum(rewards) AS rewards_minor, sum(clawbacks) AS clawbacks_minor,
            sum(rewards) + sum(clawbacks) AS net_minor,
            sum(referred) AS referred_revenue_minor, sum(organic) AS organic_revenue_minor
        FROM (
            SELECT month, currency, livemode, {_MODE_ACCOUNT}, rewards_minor AS rewards,
                clawbacks_minor AS clawbacks, toInt64(0) AS referred, toInt64(0) AS organic
            FROM {_LEDGER}
            WHERE {_CODE}
            UNION ALL
            SELECT toStartOfMonth(r.day), r.currency, r.livemode,
                if(a.account = '', if(r.livemode, 'live', 'test'),
                   concat(if(r.livemode, 'live', 'test'), '@', a.account)),
                toInt64(0), toInt64(0), r.amount_minor, toInt64(0)
            FROM revenue_entries AS r
            INNER JOIN customer_referrers AS a
                ON r.customer_key = a.customer_key AND r.livemode = a.livemode
            WHERE ({{referral_code:String}} = '' OR a.referral_code = {{referral_code:String}})
                AND r.day BETWEEN toDate({{since:String}}) AND toDate({{until:String}})
            UNION ALL
            SELECT toStartOfMonth(r.day), r.currency, r.livemode,
                if(r.account = '', if(r.livemode, 'live', 'test'),
                   concat(if(r.livemode, 'live', 'test'), '@', r.account)),
                toInt64(0), toInt64(0), toInt64(0), r.amount_minor
            FROM revenue_entries AS r
            INNER JOIN (SELECT DISTINCT customer_key, livemode FROM attributions FINAL
                        WHERE kind = 'organic') AS o
                ON r.customer_key = o.customer_key AND r.livemode = o.livemode
            LEFT JOIN customer_referrers AS a
                ON r.customer_key = a.customer_key AND r.livemode = a.livemode
            WHERE {{referral_code:String}} = '' AND a.referral_code = ''
                AND r.day BETWEEN toDate({{since:String}}) AND toDate({{until:String}})
        )
        WHERE {_MODE_OR_ACCOUNT} AND {_CURRENCY}
        GROUP BY month, currency, mode
        ORDER BY month, currency, mode
        LIMIT {{limit:UInt32}}""",
}
REVENUE_REPORTS = tuple(REFERENCE)


def reference(client: Client, name: str, raw: Mapping[str, str]) -> list[list[Any]]:
    params = validate_params(get_report(name), raw)
    result = client.query(REFERENCE[name], parameters=params, settings=QUERY_SETTINGS)
    return [[_plain(v) for v in row] for row in result.result_rows]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def parameter_sets(client: Client) -> list[tuple[str, dict[str, str]]]:
    """(report, parameters) covering every parameter of the revenue reports: the defaults,
    each mode, currency, referral code, attribution, and day ranges with partial months."""
    codes = [r[0] for r in client.query(
        "SELECT DISTINCT referral_code FROM attributions FINAL WHERE referral_code != '' "
        "ORDER BY referral_code LIMIT 3").result_rows]  # fmt: skip
    bounds = client.query(
        "SELECT toString(min(created)), toString(toDate(max(created)) - 20), "
        "toString(toDate(min(created)) + 45) FROM stripe_events"
    ).result_rows[0]
    ranges = [{}, {"since": bounds[0][:10]}, {"until": bounds[1]},
              {"since": bounds[2], "until": bounds[1]}]  # fmt: skip
    out: list[tuple[str, dict[str, str]]] = []
    for name in REVENUE_REPORTS:
        names = {p.name for p in get_report(name).params}
        options: list[dict[str, str]] = [{}]
        if "mode" in names:
            options += [{"mode": m} for m in ("live", "test")]
            if name == "rewards_by_month":
                options.append({"mode": "test@acct_1"})
        if "currency" in names:
            options.append({"currency": "eur"})
        if "referral_code" in names:
            options += [{"referral_code": code} for code in codes]
        if "attribution" in names:
            options += [{"attribution": a} for a in ("referred", "organic", "unattributed")]
        if "since" in names:
            options += ranges[1:]
        out += [(name, {"limit": "10000", **option}) for option in options]
    return out


def assert_exact(client: Client, sets: Iterable[tuple[str, dict[str, str]]] | None = None) -> None:
    """Every revenue report equals its reference, for every parameter set."""
    for name, params in sets if sets is not None else parameter_sets(client):
        got = run_report(client, name, params).rows
        assert got == reference(client, name, params), (name, params)
