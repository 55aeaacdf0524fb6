"""Referrer totals counted once per record: the sink's side of `referrer_ledger_daily`.

Protocol, per window of the rewards, clawbacks or payouts topic (sinks/ledger_sink.py
calls `count` after the window's base-table insert, before the offset commit):

1. Turn the window's accepted rows into ledger lines, one per record id (the first of a
   repeated id in the window).
2. Look the ids up in `ledger_counted` (EmbeddedRocksDB: a point lookup per id, as fast
   at 25 million counted records as at 25 thousand).
3. Write the lines whose id is not there to `ledger_lines` (staged, then applied as one
   all-or-nothing write: sinks/fanout.py); its materialized views add the amounts to
   `referrer_ledger_daily` and `_monthly`, the lines to `referrer_statement_lines` and the
   ids to `ledger_counted`.

Why this is exact: an id is counted only when `ledger_counted` lacks it, and the write
that counts it also records it; a write cut short between its views (a crash, an error)
is applied again before the next lookup, and the targets that took it drop it. A window
read again after a crash (before or after step 3, with the same or with other
boundaries) and a record re-emitted in any later window find their ids recorded and add
nothing; a crash before step 3 left nothing to undo. The reports sum the monthly and daily
tables, whose size depends on referrers and months or days, not on how many records were
counted, and need no FINAL.

A window ClickHouse decoded itself (sinks/native_avro.py) takes the same three steps in
SQL (`count_scratch`), from the copy of it in the balance ledger's scratch table.

Limits, written down: the lookup-then-insert is not atomic across writers, so one sink
process writes a database's ledger (the embedded engine allows one process anyway; with a
server, run one sink process per database: during a rebalance an old and a new owner of
a partition could both count its window). Rows a base table refused are not counted
(they are dead letters; a replay counts them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks import clawbacks, fanout, payouts, rewards
from sinks.rows import Row, TableSpec

LINE_COLUMNS = (
    "record_key", "at", "kind", "reward_id", "referral_code", "currency", "livemode",
    "account", "program_id", "program_version", "rewards", "rewards_minor",
    "clawbacks_minor", "payouts_minor",
)  # fmt: skip
# Ids per lookup query: bounds the query's size (a window holds up to 20,000 rows).
_LOOKUP_CHUNK = 20_000


# Positions in the table rows (sinks/rewards.py and friends) of what a line needs; DateTime
# values go to ClickHouse as the unix seconds the rows hold, so a line is only a tuple.
def _positions(spec: TableSpec, *names: str) -> tuple[int, ...]:
    return tuple(spec.columns.index(name) for name in names)


_R = _positions(rewards.SPEC, "reward_id", "paid_at", "referral_code", "currency", "livemode",
                "account", "program_id", "program_version", "reward_amount_minor")  # fmt: skip
_C = _positions(clawbacks.SPEC, "clawback_id", "occurred_at", "kind", "reward_id",
                "referral_code", "currency", "livemode", "account",
                "signed_amount_minor")  # fmt: skip
_P = _positions(payouts.SPEC, "payout_id", "paid_at", "referral_code", "currency", "livemode",
                "amount_minor")  # fmt: skip


def _reward_line(r: Row) -> tuple[Any, ...]:
    return ("reward:" + r[_R[0]], r[_R[1]], "reward", r[_R[0]], r[_R[2]], r[_R[3]], r[_R[4]],
            r[_R[5]], r[_R[6]], r[_R[7]], 1, r[_R[8]], 0, 0)  # fmt: skip


def _clawback_line(r: Row) -> tuple[Any, ...]:
    return ("clawback:" + r[_C[0]], r[_C[1]], r[_C[2]], r[_C[3]], r[_C[4]], r[_C[5]], r[_C[6]],
            r[_C[7]], "", 0, 0, 0, r[_C[8]], 0)  # fmt: skip


def _payout_line(r: Row) -> tuple[Any, ...]:
    return ("payout:" + r[_P[0]], r[_P[1]], "payout", "", r[_P[2]], r[_P[3]], r[_P[4]], "",
            "", 0, 0, 0, 0, r[_P[5]])  # fmt: skip


_LINES: dict[str, Callable[[Row], tuple[Any, ...]]] = {
    rewards.SPEC.table: _reward_line,
    clawbacks.SPEC.table: _clawback_line,
    payouts.SPEC.table: _payout_line,
}


def counts_table(table: str) -> bool:
    """Whether the rows of `table` feed the ledger."""
    return table in _LINES


def lines(table: str, rows: Iterable[Row]) -> list[tuple[Any, ...]]:
    """Step 1: one ledger line per record id of `rows` (a row tuple of `table`'s spec)."""
    line = _LINES[table]
    seen: set[str] = set()
    out = []
    for row in rows:
        item = line(row)
        if item[0] not in seen:
            seen.add(item[0])
            out.append(item)
    return out


def counted(client: Client, keys: Sequence[str]) -> set[str]:
    """Step 2: which of `keys` are counted already."""
    found: set[str] = set()
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        result = client.query(
            "SELECT record_key FROM ledger_counted WHERE record_key IN {keys:Array(String)}",
            parameters={"keys": list(keys[start : start + _LOOKUP_CHUNK])},
        )
        found.update(row[0] for row in result.result_rows)
    return found


def count(client: Client, table: str, rows: Iterable[Row]) -> int:
    """Count the rows of `table` not counted yet; returns how many were new."""
    new = lines(table, rows)
    if not new:
        return 0
    fanout.ready(client, LINES_TABLE)  # what a cut-short write left, before the lookup
    done = counted(client, [item[0] for item in new])
    fresh = [item for item in new if item[0] not in done]
    if fresh:  # Step 3
        fanout.write(client, LINES_TABLE, LINE_COLUMNS, fresh, settings=LINES_SETTINGS)
    return len(fresh)


# A window of rewards ClickHouse decoded itself (sinks/native_avro.py) is counted in SQL
# from the balance ledger's scratch copy of it (`balance_scratch_rewards`, filled just
# before): the same lines as `_reward_line`, the first of a repeated id, and only the ids
# `ledger_counted` lacks (a direct join: one key lookup per id), staged like any window.
_SCRATCH_LINES = """SELECT n.record_key, toDateTime(n.paid_at, 'UTC'), 'reward', n.reward_id,
        n.referral_code, n.currency, n.livemode, n.account, n.program_id, n.program_version,
        toUInt64(1), n.reward_amount_minor, toInt64(0), toInt64(0), {token:String}
    FROM
    (
        SELECT concat('reward:', reward_id) AS record_key, *
        FROM balance_scratch_rewards
        LIMIT 1 BY record_key
    ) AS n
    LEFT JOIN ledger_counted AS c ON n.record_key = c.record_key
    WHERE c.record_key = ''"""
# The views of `ledger_lines` (four targets) run side by side: measured 1.3-1.6x faster.
LINES_SETTINGS = {"parallel_view_processing": 1}
_SCRATCH_SETTINGS = {"join_algorithm": "direct", "join_use_nulls": 0, **LINES_SETTINGS}
LINES_TABLE = "ledger_lines"


def count_scratch(client: Client, table: str) -> None:
    """Count the rewards of a window of `table` (rewards) that ClickHouse decoded into
    `balance_scratch_rewards` and are not counted yet."""
    assert table == rewards.SPEC.table, table
    fanout.ready(client, LINES_TABLE)
    fanout.write_select(client, LINES_TABLE, _SCRATCH_LINES, settings=_SCRATCH_SETTINGS)


# What an existing deployment stored before the ledger existed, as ledger lines (the same
# mapping as above, in SQL), minus what is counted already: idempotent, run at start.
_BACKFILL = (
    """SELECT concat('reward:', reward_id), paid_at, 'reward', reward_id,
        referral_code, currency, livemode, account, program_id, program_version, 1,
        reward_amount_minor, 0, 0, {token:String}
    FROM rewards FINAL
    WHERE concat('reward:', reward_id) NOT IN (SELECT record_key FROM ledger_counted)""",
    """SELECT concat('clawback:', clawback_id), occurred_at, kind, reward_id,
        referral_code, currency, livemode, account, '', 0, 0, 0, signed_amount_minor, 0,
        {token:String}
    FROM clawbacks FINAL
    WHERE concat('clawback:', clawback_id) NOT IN (SELECT record_key FROM ledger_counted)""",
    """SELECT concat('payout:', payout_id), paid_at, 'payout', '',
        referral_code, currency, livemode, '', '', 0, 0, 0, 0, amount_minor, {token:String}
    FROM payouts FINAL
    WHERE concat('payout:', payout_id) NOT IN (SELECT record_key FROM ledger_counted)""",
)


# Recorded in ledger_counted once a backfill finished: later starts skip the NOT IN over
# every counted id (a set of millions of keys).
BACKFILLED_KEY = "backfill:0004"


def backfill(client: Client) -> bool:
    """Count every stored record the ledger has not counted; the sink runs it at start,
    before consuming, so nothing else writes the ledger meanwhile. Returns False when an
    earlier start did it already (a backfill cut short by a crash runs again)."""
    if counted(client, [BACKFILLED_KEY]):
        return False
    fanout.ready(client, LINES_TABLE)
    for select in _BACKFILL:
        fanout.write_select(client, LINES_TABLE, select, settings=LINES_SETTINGS)
    client.insert("ledger_counted", [[BACKFILLED_KEY]], column_names=["record_key"])
    return True
