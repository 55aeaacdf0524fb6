"""The revenue ledger's ClickHouse side: states looked up, effects written in one insert.

Protocol, per window of stripe_events or attributions (sinks/revenue_sink.py calls `count`
after the window's base-table insert, before the offset commit):

1. Look up the states the window touches in `revenue_keys`, `revenue_customers` and
   `revenue_attributions` (EmbeddedRocksDB: point lookups, as fast at 25 million keys as at
   25 thousand), and for a customer whose attribution bucket changes, its days in
   `revenue_customer_daily` (by primary key).
2. Compute the new states and the deltas in Python (sinks/revenue/windows.py).
3. Write states and deltas to `revenue_in` (Null) in one all-or-nothing write (staged,
   then applied: sinks/fanout.py); its views upsert the states and add the deltas to
   `revenue_daily`, `revenue_monthly` and `revenue_customer_daily` (sinks/ddl/0006).

Why this is exact: the states are merges of the stored rows that give the same result when
a row comes again (max, min, union), and a key's state remembers what the totals hold for
it, so a window read again after a crash (before or after step 3, with any boundaries), or
a record re-emitted in a later window, computes the states already stored: no delta. A
crash before step 3 left nothing to undo, and a write cut short between its views is
applied again before the next window's lookups (sinks/fanout.py). Windows are applied one at a
time across all topics (the sink writes serially), so each sees the earlier ones' effects;
one sink process writes a database's ledger, as for the referrer ledger.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks import attributions, fanout, stripe_events
from sinks.revenue.state import Event
from sinks.revenue.windows import (
    AttributionRow,
    CustomerDay,
    Effects,
    attribution_window,
    stripe_window,
)
from sinks.rows import Row

log = logging.getLogger(__name__)

_LOOKUP_CHUNK = 5_000
_LOOKUP_SETTINGS = {"join_algorithm": "direct", "join_use_nulls": 0}
_EPOCH = dt.date(1970, 1, 1)
IN_COLUMNS = (
    "target", "key", "state", "customer_key", "livemode", "currency", "account", "day",
    "bucket", "referral_code", "attr_account", "amount_minor", "entries", "rebucket",
    "first_paid_date", "organic",
)  # fmt: skip
# The views of `revenue_in` (six targets) run side by side.
IN_SETTINGS = {"parallel_view_processing": 1}
IN_TABLE = "revenue_in"

_E = tuple(
    stripe_events.COLUMNS.index(name)
    for name in ("created", "livemode", "account", "customer_id", "customer_key", "currency",
                 "charge_id", "payment_intent_id", "payment_refs", "money_kind", "money_key",
                 "money_minor", "money_seq")
)  # fmt: skip
_A = tuple(
    attributions.COLUMNS.index(name)
    for name in ("attribution_id", "kind", "customer_key", "referral_code", "attributed_at",
                 "livemode", "account")
)  # fmt: skip


@lru_cache(maxsize=65_536)
def _date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=day)


def _day(value: dt.date) -> int:
    return (value - _EPOCH).days


def events_of(rows: Iterable[Row]) -> list[Event]:
    """The revenue columns of stripe_events rows (a row tuple of sinks/stripe_events.py)."""
    pick, refs = itemgetter(*_E), _E.index(stripe_events.COLUMNS.index("payment_refs"))
    out = []
    for r in rows:
        values = pick(r)
        if values[refs]:
            values = (*values[:refs], tuple(values[refs]), *values[refs + 1 :])
        else:
            values = (*values[:refs], (), *values[refs + 1 :])
        out.append(Event._make(values))
    return out


def attribution_rows_of(rows: Iterable[Row]) -> list[AttributionRow]:
    out = []
    for r in rows:
        row = AttributionRow(*(r[i] for i in _A))
        out.append(row._replace(referral_code=row.referral_code or "", account=row.account or "",
                                attributed_at=int(row.attributed_at),
                                livemode=bool(row.livemode)))  # fmt: skip
    return out


class ClickHouseStore:
    """The `Store` of sinks/revenue/windows.py over the revenue tables."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _states(self, table: str, keys: Collection[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            # One text parameter split in SQL (binding an Array of thousands of strings
            # costs more than the lookup); the direct join makes them RocksDB key lookups.
            result = self.client.query(
                f"""SELECT k.key, t.state
                FROM (SELECT arrayJoin(splitByChar('\n', {{keys:String}})) AS key) AS k
                INNER JOIN {table} AS t ON k.key = t.key""",  # noqa: S608
                parameters={"keys": "\n".join(wanted[start : start + _LOOKUP_CHUNK])},
                settings=_LOOKUP_SETTINGS,
            )
            found.update((row[0], row[1]) for row in result.result_rows)
        return found

    def keys(self, keys: Collection[str]) -> dict[str, str]:
        return self._states("revenue_keys", keys)

    def customers(self, keys: Collection[str]) -> dict[str, str]:
        return self._states("revenue_customers", keys)

    def attributions(self, keys: Collection[str]) -> dict[str, str]:
        return self._states("revenue_attributions", keys)

    def customer_days(self, customer_keys: Collection[str]) -> list[CustomerDay]:
        out: list[CustomerDay] = []
        wanted = list(customer_keys)
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            result = self.client.query(
                """SELECT customer_key, livemode, toString(currency), account, day,
                    sum(amount_minor) AS amount, sum(entries) AS n
                FROM revenue_customer_daily
                WHERE customer_key IN {keys:Array(String)}
                GROUP BY customer_key, livemode, currency, account, day
                HAVING amount != 0 OR n != 0""",
                parameters={"keys": wanted[start : start + _LOOKUP_CHUNK]},
            )
            out += [
                CustomerDay(r[0], bool(r[1]), r[2], r[3], _day(r[4]), r[5], r[6])
                for r in result.result_rows
            ]
        return out


def _rows(effects: Effects) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [
        ("key", key, state, "", False, "", "", _EPOCH, "", "", "", 0, 0, 0, None, False)
        for key, state in effects.keys.items()
    ]
    for c in effects.customers:
        first = c.first_paid_day
        rows.append(("customer", f"{c.customer_key}\t{int(c.livemode)}\t{c.currency}",
                     c.dumps(), c.customer_key, c.livemode, c.currency, "", _EPOCH, "", "", "",
                     c.revenue, c.entries, 0, None if first is None else _date(first),
                     False))  # fmt: skip
    for a in effects.attributions:
        rows.append(("attribution", f"{a.customer_key}\t{int(a.livemode)}", a.dumps(),
                     a.customer_key, a.livemode, "", "", _EPOCH, "", a.referral_code,
                     a.account, 0, 0, 0, None, a.organic))  # fmt: skip
    for line in effects.lines:
        rows.append(("line", "", "", line.customer_key, line.livemode, line.currency,
                     line.account, _date(line.day), line.bucket.kind,
                     line.bucket.referral_code, line.bucket.attr_account, line.amount,
                     line.entries, int(line.rebucket), None, False))  # fmt: skip
    return rows


def write(client: Client, effects: Effects) -> None:
    """Step 3: every state and delta of a window in one insert."""
    if effects:
        fanout.write(client, IN_TABLE, IN_COLUMNS, _rows(effects), settings=IN_SETTINGS)


def counts_table(table: str) -> bool:
    """Whether the rows of `table` feed the revenue ledger."""
    return table in (stripe_events.SPEC.table, attributions.SPEC.table)


def count(client: Client, table: str, rows: Sequence[Row]) -> Effects:
    """Apply a window of `table`'s accepted rows to the revenue ledger."""
    fanout.ready(client, IN_TABLE)  # what a cut-short write left, before the lookups
    store = ClickHouseStore(client)
    if table == stripe_events.SPEC.table:
        effects = stripe_window(events_of(rows), store)
    else:
        effects = attribution_window(attribution_rows_of(rows), store)
    write(client, effects)
    return effects


# What an existing deployment stored before this version, applied at start in pages of
# the stored rows (read back through the tables' own mappings' columns). Idempotent: the
# states absorb a row twice without change, so a backfill cut short simply runs again.
BACKFILLED_KEY = "backfill:0006"


def _unix(column: str) -> str:
    return f"toUnixTimestamp({column})" if column in ("created", "attributed_at") else column


_PAGE = 50_000
_STRIPE_PAGE = f"""SELECT event_id, {", ".join(_unix(stripe_events.COLUMNS[i]) for i in _E)}
    FROM stripe_events FINAL
    WHERE event_id > {{after:String}}
        AND (money_kind != '' OR notEmpty(payment_refs)
            OR (charge_id != '' AND customer_id != ''))
    ORDER BY event_id LIMIT {_PAGE}"""  # noqa: S608
_ATTRIBUTION_PAGE = f"""SELECT attribution_id,
        {", ".join(_unix(attributions.COLUMNS[i]) for i in _A)}
    FROM attributions FINAL
    WHERE attribution_id > {{after:String}}
    ORDER BY attribution_id LIMIT {_PAGE}"""  # noqa: S608


def _pages(client: Client, sql: str) -> Iterable[list[tuple[Any, ...]]]:
    after = ""
    while True:
        rows = client.query(sql, parameters={"after": after}).result_rows
        if not rows:
            return
        after = rows[-1][0]
        yield [tuple(row[1:]) for row in rows]


def backfill(client: Client) -> bool:
    """Apply every stored stripe event and attribution to the revenue ledger (the sink runs
    it at start, before consuming). False when an earlier start did it already."""
    store = ClickHouseStore(client)
    if store.keys([BACKFILLED_KEY]):
        return False
    fanout.ready(client, IN_TABLE)
    started, applied = dt.datetime.now(dt.UTC), 0
    for page in _pages(client, _ATTRIBUTION_PAGE):
        write(client, attribution_window(_attribution_page(page), store))
        applied += len(page)
    for page in _pages(client, _STRIPE_PAGE):
        write(client, stripe_window(_stripe_page(page), store))
        applied += len(page)
    client.insert("revenue_keys", [[BACKFILLED_KEY, ""]], column_names=["key", "state"])
    seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    log.info("revenue_ledger_backfilled", extra={"rows": applied, "seconds": seconds})
    return True


def _stripe_page(rows: list[tuple[Any, ...]]) -> list[Event]:
    out = []
    for r in rows:
        out.append(Event(int(r[0]), bool(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[8]),
                         r[9], r[10], r[11], r[12]))  # fmt: skip
    return out


def _attribution_page(rows: list[tuple[Any, ...]]) -> list[AttributionRow]:
    out = []
    for r in rows:
        out.append(AttributionRow(r[0], r[1], r[2], r[3], int(r[4]), bool(r[5]), r[6]))
    return out
