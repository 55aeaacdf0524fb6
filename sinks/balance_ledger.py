"""Balances and rewards per program kept current by the sink: the I/O of the balance ledger.

Protocol, per window of the rewards, reward_status or clawbacks topic (sinks/ledger_sink.py
calls `count` or `count_native` after the window's base-table insert, before the offset
commit):

1. The window's accepted records, as the facts sinks/balance_core.py needs (from the rows,
   or for a window ClickHouse decoded, read back from a scratch table its container went
   to: `balance_scratch_*`, emptied first).
2. Look up the stored states of the rewards they touch in `balance_reward_states`
   (EmbeddedRocksDB: a point lookup per reward, as fast at 25 million rewards as at 25
   thousand).
3. Compute the new states and the changes of the totals (pure, sinks/balance_core.py).
4. Insert the changed states and the changes in ONE insert into `balance_lines` (Null);
   its views upsert the states and add the changes to `balance_totals` and
   `program_totals_daily`/`_monthly` (SummingMergeTree, read without FINAL).

Why this is exact: a state applies each record idempotently and in any order, and the
changes written are new contribution minus old, in the same insert as the new state. A
window read again after a crash (before or after step 4, with the same or other
boundaries), a record re-emitted in any later window, or the same record through the other
decoding path finds the state it would write already stored and adds nothing. A status or
clawback that comes before its reward waits in the reward's state; the reward's arrival
then adds everything at once.

Limits, written down: steps 2-4 rely on one writer per database whose windows are written
one at a time across all topics (the sink's loop awaits each write: sinks/consumer.py), so
no two windows touching one reward interleave; with a ClickHouse server run one sink
process per database (as for the referrer ledger, sinks/ledger.py). A crash inside the one
`balance_lines` INSERT, between its views, is the remaining gap (ClickHouse does not make
views of one insert atomic); a crash between statements, where a SIGKILL lands, is covered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks import clawbacks, reward_status, rewards
from sinks.balance_core import (
    ClawbackFacts,
    RewardFacts,
    RewardState,
    Transition,
    Update,
    update,
)
from sinks.rows import Row, TableSpec

_STATE_COLUMNS = (
    "reward_id", "has_reward", "referral_code", "currency", "livemode", "account",
    "amount_minor", "emission_status", "program_id", "program_version", "paid_at", "revision",
    "status", "status_at", "status_rank", "clawback_ids", "cancelled_minor",
    "corrections_minor",
)  # fmt: skip
_TOTAL_COLUMNS = ("lines", "rewards", "rewards_minor", "pending_minor", "payable_minor",
                  "paid_minor", "clawbacks_minor")  # fmt: skip
LINE_COLUMNS = ("line", *_STATE_COLUMNS, *_TOTAL_COLUMNS)
# Ids per lookup query: bounds the query's size (a window holds up to 20,000 rows).
_LOOKUP_CHUNK = 20_000
# The views of `balance_lines` (four targets) run side by side, as the ledger's do.
LINES_SETTINGS = {"parallel_view_processing": 1}


def _positions(spec: TableSpec, *names: str) -> tuple[int, ...]:
    return tuple(spec.columns.index(name) for name in names)


_REWARD_FIELDS = ("reward_id", "referral_code", "currency", "livemode", "account",
                  "reward_amount_minor", "status", "program_id", "program_version", "paid_at",
                  "revision")  # fmt: skip
_STATUS_FIELDS = ("reward_id", "status", "effective_at")
_CLAWBACK_FIELDS = ("clawback_id", "reward_id", "mode", "signed_amount_minor",
                    "referral_code", "currency", "livemode", "account")  # fmt: skip
_R = _positions(rewards.SPEC, *_REWARD_FIELDS)
_S = _positions(reward_status.SPEC, *_STATUS_FIELDS)
_C = _positions(clawbacks.SPEC, *_CLAWBACK_FIELDS)


def _reward(values: Sequence[Any]) -> RewardFacts:
    return RewardFacts(*values)


def _facts(table: str, rows: Iterable[Row]) -> dict[str, list[Any]]:
    """Step 1 for decoded rows: the facts of each accepted row of `table`."""
    if table == rewards.SPEC.table:
        return {"rewards": [_reward([row[i] for i in _R]) for row in rows]}
    if table == reward_status.SPEC.table:
        return {"transitions": [Transition(*(row[i] for i in _S)) for row in rows]}
    if table == clawbacks.SPEC.table:
        return {"clawbacks": [ClawbackFacts(*(row[i] for i in _C)) for row in rows]}
    raise ValueError(f"{table} does not feed the balances")


FOLLOWED = (rewards.SPEC.table, reward_status.SPEC.table, clawbacks.SPEC.table)


def follows_table(table: str) -> bool:
    """Whether the rows of `table` change balances."""
    return table in FOLLOWED


# A window ClickHouse decodes itself has no rows in Python: its container goes to a scratch
# table (the columns below, a Memory table emptied first) and is read back.
NATIVE_SCRATCH: dict[str, tuple[str, tuple[str, ...], str]] = {
    rewards.SPEC.table: (
        "balance_scratch_rewards",
        _REWARD_FIELDS,
        "rewards",
    ),
    reward_status.SPEC.table: ("balance_scratch_status", _STATUS_FIELDS, "transitions"),
}


def scratch_table(table: str) -> tuple[str, tuple[str, ...]]:
    name, columns, _ = NATIVE_SCRATCH[table]
    return name, columns


def clear_scratch(client: Client, table: str) -> None:
    client.command(f"TRUNCATE TABLE {NATIVE_SCRATCH[table][0]}")


def read_scratch(client: Client, table: str) -> dict[str, list[Any]]:
    """Step 1 for a window ClickHouse decoded: the facts of the container just inserted
    into the scratch table."""
    name, columns, kind = NATIVE_SCRATCH[table]
    result = client.query(f"SELECT {', '.join(columns)} FROM {name}")  # noqa: S608 - constants
    if kind == "rewards":
        return {"rewards": [_reward(row) for row in result.result_rows]}
    return {"transitions": [Transition(*row) for row in result.result_rows]}


def count_scratch(client: Client, table: str) -> Update:
    """Steps 1-4 for a window of `table` ClickHouse decoded into its scratch table."""
    return apply(client, read_scratch(client, table))


def _state(row: Sequence[Any]) -> RewardState:
    (reward_id, has_reward, code, currency, livemode, account, amount, emission, program_id,
     program_version, paid_at, revision, status, status_at, status_rank, ids, cancelled,
     corrections) = row  # fmt: skip
    facts = None
    if has_reward:
        facts = RewardFacts(reward_id, code, currency, livemode, account, amount, emission,
                            program_id, program_version, paid_at, revision)  # fmt: skip
    latest = (status_at, status_rank, status) if status != "" else None
    return RewardState(reward_id, facts, latest, tuple(ids), cancelled, corrections)


def load_states(client: Client, reward_ids: Sequence[str]) -> dict[str, RewardState]:
    """Step 2: the stored states of `reward_ids` (the ones that have one)."""
    columns = ", ".join(
        "toUnixTimestamp(paid_at)" if column == "paid_at" else column for column in _STATE_COLUMNS
    )
    found: dict[str, RewardState] = {}
    for start in range(0, len(reward_ids), _LOOKUP_CHUNK):
        result = client.query(
            f"SELECT {columns} FROM balance_reward_states "  # noqa: S608 - constants only
            "WHERE reward_id IN {ids:Array(String)}",
            parameters={"ids": list(reward_ids[start : start + _LOOKUP_CHUNK])},
        )
        for row in result.result_rows:
            found[row[0]] = _state(row)
    return found


_NO_TOTALS = (0,) * len(_TOTAL_COLUMNS)


def lines(change: Update) -> list[tuple[Any, ...]]:
    """The rows of `balance_lines` for an update: states, then total changes."""
    out: list[tuple[Any, ...]] = []
    for state in change.states:
        facts = state.reward
        reward = (
            (True, facts.referral_code, facts.currency, facts.livemode, facts.account,
             facts.amount_minor, facts.emission_status, facts.program_id,
             facts.program_version, facts.paid_at, facts.revision)
            if facts is not None
            else (False, "", "", False, "", 0, "", "", 0, 0, 0)
        )  # fmt: skip
        status_at, rank, status = state.latest if state.latest is not None else (0, 0, "")
        out.append(("state", state.reward_id, *reward, status, status_at, rank,
                    list(state.clawback_ids), state.cancelled_minor, state.corrections_minor,
                    *_NO_TOTALS))  # fmt: skip
    for (code, currency, livemode, account), v in change.balances.items():
        out.append(("balance", "", False, code, currency, livemode, account, 0, "", "", 0, 0,
                    0, "", 0, 0, [], 0, 0,
                    v[0], 0, v[1], v[2], v[3], v[4], v[5]))  # fmt: skip
    for key, v in change.programs.items():
        program_id, version, currency, livemode, account, code, paid_at = key
        out.append(("program", "", False, code, currency, livemode, account, 0, "", program_id,
                    version, paid_at, 0, "", 0, 0, [], 0, 0,
                    0, v[0], v[1], 0, 0, 0, v[2]))  # fmt: skip
    return out


def apply(client: Client, facts: dict[str, list[Any]]) -> Update:
    """Steps 2-4 for the facts of one window (or one backfill chunk)."""
    ids = sorted({item.reward_id for items in facts.values() for item in items})
    if not ids:
        return Update([], {}, {})
    change = update(load_states(client, ids), **facts)
    if not change.empty:
        client.insert(
            "balance_lines", lines(change), column_names=list(LINE_COLUMNS),
            settings=LINES_SETTINGS,
        )  # fmt: skip
    return change


def count(client: Client, table: str, rows: Iterable[Row]) -> Update:
    """Bring the balances up to date with the accepted rows of a window of `table`."""
    return apply(client, _facts(table, rows))


# What an existing deployment stored before the balance ledger existed, counted at start
# through the same steps, a bucket of reward ids at a time (every record of a reward in one
# bucket: one lookup per reward). Idempotent like any window.
_BACKFILL_QUERIES = {
    "rewards": "SELECT {columns} FROM rewards FINAL WHERE {bucket}",
    "transitions": "SELECT {columns} FROM reward_status FINAL WHERE {bucket}",
    "clawbacks": "SELECT {columns} FROM clawbacks FINAL WHERE {bucket}",
}
_AS_TEXT = ("currency", "status", "mode")  # LowCardinality columns, read as plain strings
_BACKFILL_COLUMNS = {
    "rewards": ", ".join(
        "toUnixTimestamp(paid_at)" if f == "paid_at" else f"toString({f})" if f in _AS_TEXT else f
        for f in _REWARD_FIELDS
    ),
    "transitions": "reward_id, toString(status), toUnixTimestamp(effective_at)",
    "clawbacks": ", ".join(f"toString({f})" if f in _AS_TEXT else f for f in _CLAWBACK_FIELDS),
}
_BACKFILL_BUCKET_ROWS = 100_000
BACKFILLED_KEY = "backfill:0007"


def backfill(client: Client) -> bool:
    """Count every stored reward, status and clawback into the balance ledger; the sink
    runs it at start, before consuming, so nothing else writes meanwhile. Returns False
    when an earlier start did it already (a backfill cut short by a crash runs again). The
    marker lives in the referrer ledger's `ledger_counted`."""
    marker = client.query(
        "SELECT count() FROM ledger_counted WHERE record_key = {key:String}",
        parameters={"key": BACKFILLED_KEY},
    ).result_rows[0][0]
    if marker:
        return False
    stored = client.query("SELECT count() FROM rewards").result_rows[0][0]
    buckets = max(1, -(-int(stored) // _BACKFILL_BUCKET_ROWS))
    for bucket in range(buckets):
        where = f"cityHash64(reward_id) % {buckets} = {bucket}"
        facts: dict[str, list[Any]] = {}
        for kind, query in _BACKFILL_QUERIES.items():
            sql = query.format(columns=_BACKFILL_COLUMNS[kind], bucket=where)
            rows = client.query(sql).result_rows  # constants and integers only
            if kind == "rewards":
                facts[kind] = [_reward(row) for row in rows]
            elif kind == "transitions":
                facts[kind] = [Transition(*row) for row in rows]
            else:
                facts[kind] = [ClawbackFacts(*row) for row in rows]
        apply(client, facts)
    client.insert("ledger_counted", [[BACKFILLED_KEY]], column_names=["record_key"])
    return True
