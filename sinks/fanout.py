"""All-or-nothing inserts into a table whose views write several tables (the ledgers).

Each ledger writes a window in one INSERT into a Null table (`ledger_lines`, `revenue_in`,
`balance_lines`) whose materialized views write four to six tables. ClickHouse commits
each target on its own: a key-value table (EmbeddedRocksDB) as its rows arrive, a
MergeTree part when the insert finishes. A crash or an error in between leaves some
targets written and others not, and for good: a record marked counted whose amount never
reached the totals (an end-to-end run with a SIGKILLed sink lost 4 of 136 rewards so).

Protocol, per fan-out table X:

1. stage: the rows go to `X_pending` (MergeTree: one part, all or nothing) under a fresh
   token.
2. apply: INSERT INTO X SELECT ... FROM X_pending with that token as the insert's
   deduplication token, also for the views' blocks: each MergeTree target remembers the
   token (`non_replicated_deduplication_window`, sinks/ddl/0008) and takes the block once;
   the key-value targets are upserts, and writing the same rows again changes nothing.
3. clear: TRUNCATE X_pending.

Whatever `X_pending` holds was staged and maybe applied in part: `ready` applies it again
(the targets that took it drop it) and clears it. Each ledger calls `ready` before it reads
the states a window is computed from, so no window is computed on half-written states:
once per process for each table (the first window after a start, when a crash may have
left something) and again after a write that failed.

The apply reads one part in one thread into one block, so a retry builds the same block
under the same token. One writer per database, as the ledgers require anyway.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

TOKEN_COLUMN = "fanout_token"  # noqa: S105 (a column name, not a secret)
FANOUT_TABLES = ("ledger_lines", "revenue_in", "balance_lines")
_APPLY_SETTINGS = {
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "insert_deduplicate": 1,
    "max_threads": 1,
    "max_insert_threads": 1,
}

# Tables known to have nothing staged, per client: a table leaves the set while a write
# of it is under way and returns when the write finished, so after a failure the next
# `ready` looks (a weak map: a closed client takes its entry with it).
_clean: weakref.WeakKeyDictionary[Client, set[str]] = weakref.WeakKeyDictionary()


def pending_table(table: str) -> str:
    return f"{table}_pending"


def new_token() -> str:
    return "fanout-" + uuid.uuid4().hex


def ready(client: Client, table: str) -> None:
    """Finish what an earlier write of `table` left staged, if anything."""
    clean = _clean.setdefault(client, set())
    if table in clean:
        return
    pending = pending_table(table)
    tokens = client.query(
        f"SELECT DISTINCT {TOKEN_COLUMN} FROM {pending}"  # noqa: S608 (a table name constant)
    ).result_rows
    for (token,) in tokens:
        _apply(client, table, token)
    client.command(f"TRUNCATE TABLE {pending}")
    clean.add(table)


def write(
    client: Client,
    table: str,
    columns: Sequence[str],
    data: Sequence[Sequence[Any]],
    *,
    column_oriented: bool = False,
    settings: dict[str, Any] | None = None,
) -> None:
    """Steps 1-3 for rows (or columns) of `table`'s `columns`."""
    token = new_token()
    if column_oriented:
        n = len(data[0]) if data else 0
        staged: Sequence[Sequence[Any]] = [*data, [token] * n]
    else:
        staged = [(*row, token) for row in data]
    _staged(client, table)
    client.insert(
        pending_table(table),
        staged,
        column_names=[*columns, TOKEN_COLUMN],
        column_oriented=column_oriented,
    )
    _finish(client, table, token, settings)


def write_select(
    client: Client,
    table: str,
    select: str,
    parameters: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Steps 1-3 for the rows of `select` (every column of `table` in order, then
    `{token:String}` as the last column): rows ClickHouse has, e.g. a scratch table."""
    token = new_token()
    _staged(client, table)
    client.command(
        f"INSERT INTO {pending_table(table)} {select}",
        parameters={**(parameters or {}), "token": token},
        settings=settings,
    )
    _finish(client, table, token, settings)


def _staged(client: Client, table: str) -> None:
    ready(client, table)
    _clean[client].discard(table)


def _finish(client: Client, table: str, token: str, settings: dict[str, Any] | None) -> None:
    _apply(client, table, token, settings)
    client.command(f"TRUNCATE TABLE {pending_table(table)}")
    _clean[client].add(table)


def _apply(client: Client, table: str, token: str, settings: dict[str, Any] | None = None) -> None:
    columns = _columns(client, table)
    names = ", ".join(columns)
    client.command(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {pending_table(table)} "  # noqa: S608
        f"WHERE {TOKEN_COLUMN} = {{token:String}}",
        parameters={"token": token},
        settings={**(settings or {}), **_APPLY_SETTINGS, "insert_deduplication_token": token},
    )


_COLUMNS: dict[str, tuple[str, ...]] = {}


def _columns(client: Client, table: str) -> tuple[str, ...]:
    if table not in _COLUMNS:
        rows = client.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() "
            "AND table = {table:String} ORDER BY position",
            parameters={"table": table},
        ).result_rows
        _COLUMNS[table] = tuple(row[0] for row in rows)
    return _COLUMNS[table]
