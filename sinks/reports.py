"""Named reports: the analytics questions, as parameterized SQL over the views.

A report is chosen by name and takes only the parameters it declares, each parsed and
checked here (`ReportError` on anything else) and bound by ClickHouse as a typed query
parameter (`{name:Type}`): no input is ever formatted into SQL text. The same definitions
serve the CLI (`refstream report`) and the query API (sinks/query_api.py).

The SQL texts are assembled from this module's constant fragments only (hence the S608
exemption below); user input reaches ClickHouse exclusively as bound parameters.
"""

# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

# Every report query runs with these limits on top of the client's readonly setting.
QUERY_SETTINGS = {"max_execution_time": 60, "max_result_rows": 100_000}


class ReportError(ValueError):
    """An unknown report or a parameter that does not validate; the message says which."""


@dataclass(frozen=True)
class Param:
    name: str
    help: str
    default: Any
    parse: Callable[[str], Any]
    required: bool = False


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    sql: str
    params: tuple[Param, ...]


@dataclass(frozen=True)
class ReportResult:
    name: str
    params: dict[str, Any]
    columns: list[str]
    rows: list[list[Any]]

    def to_json(self) -> dict[str, Any]:
        return {"report": self.name, "params": self.params, "columns": self.columns,
                "rows": self.rows}  # fmt: skip


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise ValueError("must be an integer from 1 to 10000")
    return int(raw)


def _mode(raw: str) -> str:
    if raw not in ("live", "test", "all"):
        raise ValueError("must be live, test or all")
    return raw


def _mode_or_account(raw: str) -> str:
    if raw in ("live", "test", "all") or re.fullmatch(r"(live|test)@acct_[A-Za-z0-9]{1,100}", raw):
        return raw
    raise ValueError("must be live, test, all, or live@acct_... / test@acct_...")


def _currency(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise ValueError("must be a 3-letter ISO 4217 code")
    return raw.lower()


def _code(raw: str) -> str:
    if not 1 <= len(raw) <= 200 or not raw.isprintable():
        raise ValueError("must be 1 to 200 printable characters")
    return raw


def _date(raw: str) -> str:
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ValueError("must be a date YYYY-MM-DD") from None


def _attribution(raw: str) -> str:
    if raw not in ("referred", "organic", "unattributed", "all"):
        raise ValueError("must be referred, organic, unattributed or all")
    return raw


LIMIT = Param("limit", "rows to return (1-10000)", 20, _limit)
MODE = Param("mode", "live, test or all", "all", _mode)
CURRENCY = Param("currency", "ISO currency, e.g. usd (default: all)", "", _currency)
CODE = Param("referral_code", "one referrer's code (default: all)", "", _code)
SINCE = Param("since", "first day included, YYYY-MM-DD", "1970-01-01", _date)
UNTIL = Param("until", "last day included, YYYY-MM-DD", "2105-12-31", _date)
MODE_ACCOUNT = Param(
    "mode", "live, test, all, or one Connect account: test@acct_...", "all", _mode_or_account
)
CODE_REQUIRED = Param("referral_code", "the referrer's code (required)", None, _code, True)
STATEMENT_LIMIT = Param("limit", "lines to return, earliest first (1-10000)", 10_000, _limit)
MONTHS_LIMIT = Param("limit", "rows to return, earliest month first (1-10000)", 120, _limit)
ATTRIBUTION = Param("attribution", "referred, organic, unattributed or all", "all", _attribution)

# Filters shared by the reports; every one is a no-op at its default.
_MODE = "({mode:String} = 'all' OR livemode = ({mode:String} = 'live'))"
_CURRENCY = "({currency:String} = '' OR currency = {currency:String})"
_CODE = "({referral_code:String} = '' OR referral_code = {referral_code:String})"
_DAYS = "day BETWEEN toDate({since:String}) AND toDate({until:String})"
# For reports whose mode parameter may name one Connect account ("test@acct_..."); `mode`
# is the row's rendered mode (_MODE_ACCOUNT).
_MODE_OR_ACCOUNT = (
    "({mode:String} = 'all' OR mode = {mode:String} "
    "OR (position({mode:String}, '@') = 0 AND livemode = ({mode:String} = 'live')))"
)
_MODE_NAME = "if(livemode, 'live', 'test') AS mode"
# Per Connect account too: "test@acct_..." like the record ids ('' = the platform's own).
_MODE_ACCOUNT = (
    "if(account = '', if(livemode, 'live', 'test'), "
    "concat(if(livemode, 'live', 'test'), '@', account)) AS mode"
)

# The referrer ledger over since..until: whole months from the monthly table, the days of
# partial months from the daily one (sinks/ddl/0004_referrer_ledger.sql). Columns:
# referral_code, currency, livemode, account, month, rewards_minor, clawbacks_minor.
_WHOLE_MONTH = (
    "({m} >= toDate({{since:String}}) "
    "AND addMonths({m}, 1) <= addDays(toDate({{until:String}}), 1))"
)
_LEDGER = f"""(
    SELECT referral_code, toString(currency) AS currency, livemode, account, month,
        rewards_minor, clawbacks_minor
    FROM referrer_ledger_monthly
    WHERE {_WHOLE_MONTH.format(m="month")}
    UNION ALL
    SELECT referral_code, toString(currency), livemode, account, toStartOfMonth(day),
        rewards_minor, clawbacks_minor
    FROM referrer_ledger_daily
    WHERE {_DAYS} AND NOT {_WHOLE_MONTH.format(m="toStartOfMonth(day)")}
)"""


def _revenue(where: str) -> str:
    """The revenue ledger over since..until, rows matching `where` (whole months from
    revenue_monthly, the days of partial months from revenue_daily; sinks/ddl/0006).
    Columns: bucket (referred / organic / unattributed), referral_code, currency, livemode,
    account (the revenue's), attr_account (the attribution's), month, amount_minor, entries
    (revenue entries summed in: a group with entries exists even when its sum is 0)."""
    return f"""(
    SELECT bucket, referral_code, toString(currency) AS currency, livemode, account,
        attr_account, month, amount_minor, entries
    FROM revenue_monthly
    WHERE ({where}) AND {_WHOLE_MONTH.format(m="month")}
    UNION ALL
    SELECT bucket, referral_code, toString(currency), livemode, account, attr_account,
        toStartOfMonth(day), amount_minor, entries
    FROM revenue_daily
    WHERE ({where}) AND {_DAYS} AND NOT {_WHOLE_MONTH.format(m="toStartOfMonth(day)")}
)"""


# rewards_by_month: referred revenue (of one referrer with referral_code), organic without.
_MONTH_BUCKETS = (
    "(bucket = 'referred' AND "
    "({referral_code:String} = '' OR referral_code = {referral_code:String})) "
    "OR (bucket = 'organic' AND {referral_code:String} = '')"
)


def _mode_of(account: str) -> str:
    return (
        f"if({account} = '', if(livemode, 'live', 'test'), "
        f"concat(if(livemode, 'live', 'test'), '@', {account})) AS mode"
    )


# Per customer x mode x currency with revenue (the revenue ledger's customer states and the
# customers' first touches): the columns of the `customer_revenue` view.
_CUSTOMERS = """(
    SELECT c.customer_key AS customer_key, c.livemode AS livemode, c.currency AS currency,
        a.referral_code AS referral_code,
        multiIf(a.referral_code != '', 'referred', a.organic, 'organic', 'unattributed')
            AS attribution,
        c.first_paid_date AS first_paid_date, c.revenue_minor AS revenue_minor,
        if(a.referral_code != '', c.revenue_minor, toInt64(0)) AS referred_revenue_minor
    FROM (SELECT customer_key, livemode, currency, first_paid_date, revenue_minor
          FROM revenue_customers WHERE entries > 0) AS c
    LEFT JOIN (SELECT customer_key, livemode, referral_code, organic
               FROM revenue_attributions) AS a
        ON c.customer_key = a.customer_key AND c.livemode = a.livemode
)"""

# Rewards and all their corrections per program by the reward's payment day, over
# since..until: whole months from the monthly table, the days of partial months from the
# daily one (sinks/ddl/0007_balance_ledger.sql). Columns: program_id, program_version,
# currency, livemode, account, mode, rewards, rewards_minor, clawbacks_minor.
_PROGRAMS = f"""(
    SELECT program_id, program_version, toString(currency) AS currency, livemode, account,
        {_MODE_ACCOUNT}, rewards, rewards_minor, clawbacks_minor
    FROM program_totals_monthly
    WHERE {_WHOLE_MONTH.format(m="month")} AND {_CODE}
    UNION ALL
    SELECT program_id, program_version, toString(currency), livemode, account,
        {_MODE_ACCOUNT}, rewards, rewards_minor, clawbacks_minor
    FROM program_totals_daily
    WHERE {_DAYS} AND NOT {_WHOLE_MONTH.format(m="toStartOfMonth(day)")} AND {_CODE}
)"""

_REPORTS = (
    Report(
        "top_referrers_revenue",
        "referrers ranked by referred revenue (revenue of the customers they referred)",
        f"""SELECT referral_code, currency, {_mode_of("attr_account")},
                sum(amount_minor) AS referred_revenue_minor
            FROM {_revenue("bucket = 'referred'")}
            WHERE {_MODE} AND {_CURRENCY}
            GROUP BY referral_code, currency, livemode, attr_account
            HAVING referred_revenue_minor != 0
            ORDER BY referred_revenue_minor DESC, referral_code, currency, mode
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE, CURRENCY, SINCE, UNTIL),
    ),
    Report(
        "top_referrers_net_reward",
        "referrers ranked by net reward (rewards minus clawbacks plus reinstatements)",
        f"""SELECT referral_code, toString(currency) AS currency, {_MODE_ACCOUNT},
                sum(rewards_minor) AS rewards_minor, sum(clawbacks_minor) AS clawbacks_minor,
                rewards_minor + clawbacks_minor AS net_minor
            FROM {_LEDGER}
            WHERE {_MODE} AND {_CURRENCY}
            GROUP BY referral_code, currency, livemode, account
            HAVING rewards_minor != 0 OR clawbacks_minor != 0
            ORDER BY net_minor DESC, referral_code, currency, mode
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE, CURRENCY, SINCE, UNTIL),
    ),
    Report(
        "revenue_split",
        "referred vs organic vs unattributed (awaiting attribution) revenue per currency",
        f"""SELECT currency, {_mode_of("account")},
                sumIf(amount_minor, bucket = 'referred') AS referred_minor,
                sumIf(amount_minor, bucket = 'organic') AS organic_minor,
                sumIf(amount_minor, bucket = 'unattributed') AS unattributed_minor,
                sum(amount_minor) AS total_minor
            FROM {_revenue("1")}
            WHERE {_MODE} AND {_CURRENCY}
            GROUP BY currency, livemode, account
            HAVING sum(entries) > 0
            ORDER BY currency, mode
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE, CURRENCY, SINCE, UNTIL),
    ),
    Report(
        "referrer_rewards",
        "rewards, clawbacks and net per referrer and currency",
        f"""SELECT referral_code, toString(currency) AS currency, {_MODE_ACCOUNT},
                sum(rewards_minor) AS rewards_minor, sum(clawbacks_minor) AS clawbacks_minor,
                rewards_minor + clawbacks_minor AS net_minor
            FROM {_LEDGER}
            WHERE {_MODE} AND {_CURRENCY} AND {_CODE}
            GROUP BY referral_code, currency, livemode, account
            HAVING rewards_minor != 0 OR clawbacks_minor != 0
            ORDER BY referral_code, currency, mode
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE, CURRENCY, CODE, SINCE, UNTIL),
    ),
    Report(
        "balances",
        "balance per referrer and currency: pending, payable, paid, clawed back, net",
        f"""SELECT referral_code, toString(currency) AS currency, {_MODE_ACCOUNT},
                sum(rewards_minor) AS rewards_minor, sum(pending_minor) AS pending_minor,
                sum(payable_minor) AS payable_minor, sum(paid_minor) AS paid_minor,
                -sum(clawbacks_minor) AS clawed_back_minor,
                rewards_minor - clawed_back_minor AS earned_minor,
                earned_minor - paid_minor AS net_minor
            FROM balance_totals
            WHERE {_MODE} AND {_CURRENCY} AND {_CODE}
            GROUP BY referral_code, currency, livemode, account
            HAVING sum(lines) > 0
            ORDER BY referral_code, currency, mode
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE, CURRENCY, CODE),
    ),
    Report(
        "attribution_sources",
        "attributed customers by the Stripe object that carried the code",
        f"""SELECT toString(kind) AS kind, toString(source) AS source, {_MODE_NAME},
                uniqExact(customer_key) AS customers
            FROM attributions FINAL
            WHERE {_MODE}
            GROUP BY kind, source, livemode
            ORDER BY kind, customers DESC, source, mode
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE),
    ),
    Report(
        "awaiting_attribution",
        "customers with revenue but no attribution record yet (neither referred nor organic)",
        f"""SELECT customer_key, currency, {_MODE_NAME},
                toString(first_paid_date) AS first_paid_date, revenue_minor
            FROM {_CUSTOMERS}
            WHERE attribution = 'unattributed' AND {_MODE} AND {_CURRENCY}
            ORDER BY revenue_minor DESC, customer_key, currency
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE, CURRENCY),
    ),
    Report(
        "customers",
        "per customer: attribution, first paid date, lifetime and referred revenue",
        f"""SELECT customer_key, currency, {_MODE_NAME}, attribution, referral_code,
                toString(first_paid_date) AS first_paid_date, revenue_minor,
                referred_revenue_minor
            FROM {_CUSTOMERS}
            WHERE {_MODE} AND {_CURRENCY} AND {_CODE}
                AND ({{attribution:String}} = 'all' OR attribution = {{attribution:String}})
            ORDER BY revenue_minor DESC, customer_key, currency
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE, CURRENCY, CODE, ATTRIBUTION),
    ),
    Report(
        "referrer_daily",
        "per referrer, day, currency: referred revenue, rewards, clawbacks, net",
        f"""SELECT referral_code, toString(day) AS day, currency, {_MODE_ACCOUNT},
                referred_revenue_minor, rewards_minor, clawbacks_minor, net_minor
            FROM (
                SELECT referral_code, day, currency, livemode, account,
                    sum(revenue) AS referred_revenue_minor, sum(reward) AS rewards_minor,
                    sum(clawback) AS clawbacks_minor, rewards_minor + clawbacks_minor
                        AS net_minor
                FROM (
                    SELECT referral_code, day, toString(currency) AS currency, livemode,
                        attr_account AS account, amount_minor AS revenue,
                        toInt64(0) AS reward, toInt64(0) AS clawback, entries AS lines
                    FROM revenue_daily
                    WHERE bucket = 'referred' AND {_MODE} AND {_CURRENCY} AND {_CODE}
                        AND {_DAYS}
                    UNION ALL
                    SELECT referral_code, day, toString(currency), livemode, account,
                        toInt64(0), rewards_minor, clawbacks_minor,
                        toInt64(rewards) + toInt64(clawbacks_minor != 0)
                    FROM referrer_ledger_daily
                    WHERE {_MODE} AND {_CURRENCY} AND {_CODE} AND {_DAYS}
                )
                GROUP BY referral_code, day, currency, livemode, account
                HAVING sum(lines) > 0
            )
            ORDER BY day, referral_code, currency, mode
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE, CURRENCY, CODE, SINCE, UNTIL),
    ),
    Report(
        "referrer_statement",
        "one referrer's rewards, clawbacks, reinstatements and payouts with running balance",
        f"""SELECT toString(at) AS at, kind, record_id, reward_id, currency, mode, amount_minor,
                running_balance_minor
            FROM (
                SELECT at, kind, kind_order, record_id, reward_id, currency, mode, amount_minor,
                    sum(amount_minor) OVER (PARTITION BY currency, mode
                        ORDER BY at, kind_order, record_id
                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                        AS running_balance_minor
                FROM (
                    SELECT at, toString(kind) AS kind, kind_order, record_id, reward_id,
                        toString(currency) AS currency, livemode, {_MODE_ACCOUNT},
                        amount_minor
                    FROM referrer_statement_lines
                    WHERE referral_code = {{referral_code:String}}
                )
                WHERE {_MODE_OR_ACCOUNT} AND {_CURRENCY}
            )
            WHERE toDate(at) BETWEEN toDate({{since:String}}) AND toDate({{until:String}})
            ORDER BY at, kind_order, record_id, currency, mode
            LIMIT {{limit:UInt32}}""",
        (CODE_REQUIRED, CURRENCY, MODE_ACCOUNT, SINCE, UNTIL, STATEMENT_LIMIT),
    ),
    Report(
        "rewards_by_month",
        "per month, currency and mode: rewards, clawbacks, net, referred and organic revenue",
        f"""SELECT toString(month) AS month, currency, mode,
                sum(rewards) AS rewards_minor, sum(clawbacks) AS clawbacks_minor,
                sum(rewards) + sum(clawbacks) AS net_minor,
                sum(referred) AS referred_revenue_minor, sum(organic) AS organic_revenue_minor
            FROM (
                SELECT month, currency, livemode, {_MODE_ACCOUNT}, rewards_minor AS rewards,
                    clawbacks_minor AS clawbacks, toInt64(0) AS referred, toInt64(0) AS organic
                FROM {_LEDGER}
                WHERE {_CODE}
                UNION ALL
                SELECT month, currency, livemode, mode, toInt64(0), toInt64(0), referred,
                    organic
                FROM (
                    SELECT month, currency, livemode,
                        if(bucket = 'referred', attr_account, account) AS shown_account,
                        {_mode_of("shown_account")},
                        sumIf(amount_minor, bucket = 'referred') AS referred,
                        sumIf(amount_minor, bucket = 'organic') AS organic
                    FROM {_revenue(_MONTH_BUCKETS)}
                    GROUP BY month, currency, livemode, shown_account
                    HAVING sum(entries) > 0
                )
            )
            WHERE {_MODE_OR_ACCOUNT} AND {_CURRENCY}
            GROUP BY month, currency, mode
            ORDER BY month, currency, mode
            LIMIT {{limit:UInt32}}""",
        (MONTHS_LIMIT, MODE_ACCOUNT, CURRENCY, CODE, SINCE, UNTIL),
    ),
    Report(
        "rewards_by_program",
        "per reward program version, currency and mode: rewards, their clawbacks, net",
        f"""SELECT program_id, program_version, currency, mode,
                toUInt64(sum(rewards)) AS rewards, sum(rewards_minor) AS rewards_minor,
                sum(clawbacks_minor) AS clawbacks_minor, rewards_minor + clawbacks_minor
                    AS net_minor
            FROM {_PROGRAMS}
            WHERE {_MODE_OR_ACCOUNT} AND {_CURRENCY}
            GROUP BY program_id, program_version, currency, mode
            HAVING rewards != 0
            ORDER BY program_id, program_version, currency, mode
            LIMIT {{limit:UInt32}}""",
        (LIMIT, MODE_ACCOUNT, CURRENCY, CODE, SINCE, UNTIL),
    ),
)
REPORTS: dict[str, Report] = {report.name: report for report in _REPORTS}


def get_report(name: str) -> Report:
    report = REPORTS.get(name)
    if report is None:
        raise ReportError(f"unknown report {name!r}; reports: {', '.join(REPORTS)}")
    return report


def validate_params(report: Report, raw: Mapping[str, str]) -> dict[str, Any]:
    """The report's parameters with defaults filled in; ReportError names any bad one."""
    known = {param.name: param for param in report.params}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ReportError(
            f"report {report.name} takes no parameter {', '.join(unknown)}; "
            f"it takes: {', '.join(known) or 'none'}"
        )
    values: dict[str, Any] = {}
    for name, param in known.items():
        if name not in raw:
            if param.required:
                raise ReportError(f"report {report.name} needs parameter {name}")
            values[name] = param.default
            continue
        if not isinstance(raw[name], str):
            raise ReportError(f"parameter {name} must be given once, as text")
        try:
            values[name] = param.parse(raw[name])
        except ValueError as exc:
            raise ReportError(f"parameter {name} {exc}") from None
    if values.get("since", "") > values.get("until", "~"):
        raise ReportError("parameter since must not be after until")
    return values


def run_report(client: Client, name: str, raw: Mapping[str, str]) -> ReportResult:
    report = get_report(name)
    params = validate_params(report, raw)
    result = client.query(report.sql, parameters=params, settings=QUERY_SETTINGS)
    rows = [[_plain(value) for value in row] for row in result.result_rows]
    return ReportResult(report.name, params, list(result.column_names), rows)


def _plain(value: Any) -> Any:
    # Dates are rendered in SQL; anything else not JSON-native becomes its text.
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def format_table(result: ReportResult) -> str:
    """A fixed-width text table; numbers right-aligned."""
    cells = [result.columns] + [["" if v is None else str(v) for v in row] for row in result.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(result.columns))]
    numeric = [
        all(isinstance(row[i], int) and not isinstance(row[i], bool) for row in result.rows)
        and bool(result.rows)
        for i in range(len(result.columns))
    ]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ).rstrip()

    out = [line(cells[0]), "  ".join("-" * width for width in widths)]
    out += [line(row) for row in cells[1:]]
    out.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    return "\n".join(out)
