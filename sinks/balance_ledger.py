"""Balances and rewards per program kept current by the sink: the I/O of the balance ledger.

Protocol, per window of the rewards, reward_status or clawbacks topic (sinks/ledger_sink.py
calls `count`, or `count_scratch` for a window ClickHouse decoded, after the window's
base-table insert, before the offset commit):

1. The window's accepted records, as the facts sinks/balance_core.py needs.
2. Look up the stored states of the rewards they touch in `balance_reward_states`
   (EmbeddedRocksDB: a point lookup per reward, as fast at 25 million rewards as at 25
   thousand).
3. Compute the new states and the changes of the totals (pure, sinks/balance_core.py).
4. Write the changed states and the changes to `balance_lines` (Null) in one
   all-or-nothing write (staged, then applied: sinks/fanout.py); its views upsert the
   states and add the changes to `balance_totals` and `program_totals_daily`/`_monthly`
   (SummingMergeTree, read without FINAL).

A window ClickHouse decoded (rewards, statuses) takes the same steps in SQL over the
scratch table its container went to (`balance_scratch_*`, emptied first): `count_scratch`.

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
process per database (as for the referrer ledger, sinks/ledger.py). ClickHouse does not
make the views of one insert atomic: a write cut short between them is applied again
before the next lookup of states (sinks/fanout.py), so no window is computed from states
whose totals were not written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks import clawbacks, fanout, reward_status, rewards
from sinks.balance_core import (
    IGNORED_STATUS,
    OTHER_RANK,
    STATUS_RANK,
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
LINES_TABLE = "balance_lines"


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
_FACTS = {"rewards": RewardFacts, "transitions": Transition, "clawbacks": ClawbackFacts}


def _facts(table: str, rows: Iterable[Row]) -> dict[str, list[Any]]:
    """Step 1 for decoded rows: the facts of each accepted row of `table`."""
    if table == rewards.SPEC.table:
        return {"rewards": [RewardFacts(*[row[i] for i in _R]) for row in rows]}
    if table == reward_status.SPEC.table:
        return {"transitions": [Transition(*[row[i] for i in _S]) for row in rows]}
    if table == clawbacks.SPEC.table:
        return {"clawbacks": [ClawbackFacts(*[row[i] for i in _C]) for row in rows]}
    raise ValueError(f"{table} does not feed the balances")


FOLLOWED = (rewards.SPEC.table, reward_status.SPEC.table, clawbacks.SPEC.table)


def follows_table(table: str) -> bool:
    """Whether the rows of `table` change balances."""
    return table in FOLLOWED


# The state columns as read back, the payment time as unix seconds.
_STATE_SELECT = ", ".join(
    "toUnixTimestamp({p}paid_at)" if c == "paid_at" else "{p}" + c for c in _STATE_COLUMNS
)

# A window ClickHouse decodes itself has no rows in Python: its container goes to a scratch
# table (the columns below, a Memory table emptied first) and is read back together with
# the stored states of its rewards (a direct join: a key lookup per record).
NATIVE_SCRATCH: dict[str, tuple[str, tuple[str, ...], str]] = {
    rewards.SPEC.table: ("balance_scratch_rewards", _REWARD_FIELDS, "rewards"),
    reward_status.SPEC.table: ("balance_scratch_status", _STATUS_FIELDS, "transitions"),
}
_JOIN_SETTINGS = {"join_algorithm": "direct", "join_use_nulls": 0}


def scratch_table(table: str) -> tuple[str, tuple[str, ...]]:
    name, columns, _ = NATIVE_SCRATCH[table]
    return name, columns


def clear_scratch(client: Client, table: str) -> None:
    client.command(f"TRUNCATE TABLE {NATIVE_SCRATCH[table][0]}")


def count_scratch(client: Client, table: str) -> None:
    """Steps 1-4 for a window of `table` ClickHouse decoded into its scratch table, in SQL:
    the rewards it changes beside their stored states go to `balance_scratch_changed`
    (a direct join: a key lookup each), then the new states and the changes of the totals
    are staged in one statement. No row of the window crosses into Python."""
    kind = NATIVE_SCRATCH[table][2]
    fanout.ready(client, LINES_TABLE)
    client.command("TRUNCATE TABLE balance_scratch_changed")
    client.command(_CHANGED_SQL[kind], settings=_JOIN_SETTINGS)
    fanout.write_select(client, LINES_TABLE, _CHANGES_SQL, settings=LINES_SETTINGS)


# `update` (sinks/balance_core.py) for a window of one topic ClickHouse decoded, in SQL,
# over the window's scratch copy. The same rules, step by step:
# - `with_reward` (`_CHANGED_SQL["rewards"]`): the highest revision of each id in the
#   window, beside its stored state; a stored state that has its reward at that revision
#   or a higher one is unchanged (the row is left out);
# - `with_transition` (`_CHANGED_SQL["transitions"]`): the greatest (effective_at, status
#   order, status) of each id in the window, payout_rejected left out; unchanged unless
#   greater than the stored transition (or there is none);
# - a missing state reads as the empty one (join_use_nulls = 0 gives '', 0, false, []);
# - `_contribute` (`_CHANGES_SQL`): a state with its reward puts (1, amount, standing in
#   its status's column) in its balance row and (1, amount, corrections) in its program
#   row on its payment day; the change is the new state's contribution minus the old
#   one's; rows whose every change is zero are left out, as `Update` leaves them out.
# tests/integration/test_balances_exact.py runs every scenario through both paths.
_STORED_FACTS = """s.referral_code, s.currency, s.livemode, s.account, s.amount_minor,
    s.emission_status, s.program_id, s.program_version, toInt64(toUnixTimestamp(s.paid_at))"""
_RANK_SQL = (
    "multiIf("
    + ", ".join(f"status = '{status}', {rank}" for status, rank in STATUS_RANK.items())
    + f", {OTHER_RANK})"
)
# Built from constants of this module and balance_core only: nothing to inject (S608).
_CHANGED_SQL = {
    "rewards": f"""
INSERT INTO balance_scratch_changed
SELECT n.reward_id, true, n.referral_code, n.currency, n.livemode, n.account,
    n.reward_amount_minor, n.status, n.program_id, n.program_version, n.paid_at, n.revision,
    s.has_reward, {_STORED_FACTS},
    s.status, s.status_at, s.status_rank, s.status,
    s.clawback_ids, s.cancelled_minor, s.corrections_minor
FROM
(
    SELECT * FROM balance_scratch_rewards ORDER BY reward_id, revision DESC
    LIMIT 1 BY reward_id
) AS n
LEFT JOIN balance_reward_states AS s ON n.reward_id = s.reward_id
WHERE NOT (s.has_reward AND s.revision >= n.revision)
""",  # noqa: S608
    "transitions": f"""
INSERT INTO balance_scratch_changed
SELECT t.reward_id, s.has_reward, {_STORED_FACTS}, s.revision,
    s.has_reward, {_STORED_FACTS},
    t.latest.3, t.latest.1, t.latest.2, s.status,
    s.clawback_ids, s.cancelled_minor, s.corrections_minor
FROM
(
    SELECT reward_id, max((effective_at, {_RANK_SQL}, status)) AS latest
    FROM balance_scratch_status
    WHERE status != '{IGNORED_STATUS}'
    GROUP BY reward_id
) AS t
LEFT JOIN balance_reward_states AS s ON t.reward_id = s.reward_id
WHERE s.status = '' OR t.latest > (s.status_at, s.status_rank, s.status)
""",  # noqa: S608
}
_CHANGES_SQL = """
WITH contributions AS (
    SELECT toInt64(1) AS sign, code, currency, livemode, account, amount,
        if(status != '', status, emission) AS standing_status, cancelled, corrections,
        program_id, version, paid_at
    FROM balance_scratch_changed
    WHERE has
    UNION ALL
    SELECT toInt64(-1), old_code, old_currency, old_livemode, old_account, old_amount,
        if(old_status != '', old_status, old_emission), cancelled, corrections,
        old_program_id, old_version, old_paid_at
    FROM balance_scratch_changed
    WHERE had
)
SELECT 'state', reward_id, has, code, currency, livemode, account, amount, emission,
    program_id, version, toDateTime(paid_at, 'UTC'), revision, status, status_at,
    status_rank, clawback_ids, cancelled, corrections, 0, 0, 0, 0, 0, 0, 0, {token:String}
FROM balance_scratch_changed
UNION ALL
SELECT 'balance', '', false, code, currency, livemode, account, 0, '', '', 0,
    toDateTime(0, 'UTC'), 0, '', 0, 0, [], 0, 0, sum(sign) AS lines, 0,
    sum(sign * amount) AS rewards_minor,
    sum(if(standing_status = 'pending', sign * (amount + cancelled), 0)) AS pending_minor,
    sum(if(standing_status = 'payable', sign * (amount + cancelled), 0)) AS payable_minor,
    sum(if(standing_status = 'paid', sign * (amount + cancelled), 0)) AS paid_minor,
    0, {token:String}
FROM contributions
GROUP BY code, currency, livemode, account
HAVING lines != 0 OR rewards_minor != 0 OR pending_minor != 0 OR payable_minor != 0
    OR paid_minor != 0
UNION ALL
SELECT 'program', '', false, code, currency, livemode, account, 0, '', program_id, version,
    toDateTime(paid_at - paid_at % 86400, 'UTC') AS day, 0, '', 0, 0, [], 0, 0, 0,
    sum(sign) AS rewards, sum(sign * amount) AS rewards_minor, 0, 0, 0,
    sum(sign * corrections) AS clawbacks_minor, {token:String}
FROM contributions
GROUP BY program_id, version, currency, livemode, account, code, day
HAVING rewards != 0 OR rewards_minor != 0 OR clawbacks_minor != 0
"""


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
    found: dict[str, RewardState] = {}
    for start in range(0, len(reward_ids), _LOOKUP_CHUNK):
        result = client.query(
            f"SELECT {_STATE_SELECT.format(p='')} FROM balance_reward_states "  # noqa: S608
            "WHERE reward_id IN {ids:Array(String)}",
            parameters={"ids": list(reward_ids[start : start + _LOOKUP_CHUNK])},
        )
        for row in result.result_rows:
            found[row[0]] = _state(row)
    return found


_NO_REWARD = RewardFacts("", "", "", False, "", 0, "", "", 0, 0, 0)


def line_columns(change: Update) -> list[list[Any]]:
    """The columns of the `balance_lines` rows of an update (LINE_COLUMNS order): the new
    states, then the changes of balance totals, then of program totals."""
    states = change.states
    facts = [state.reward or _NO_REWARD for state in states]
    latest = [state.latest or (0, 0, "") for state in states]
    balances = list(change.balances.items())
    programs = list(change.programs.items())
    n_b, n_p = len(balances), len(programs)

    def column(from_state: list[Any], balance: Any, program: Any) -> list[Any]:
        return [*from_state, *balance, *program]

    zero_b, zero_p = [0] * n_b, [0] * n_p
    text_b, text_p = [""] * n_b, [""] * n_p
    p_key = [key for key, _ in programs]
    b_key = [key for key, _ in balances]
    p_val = [values for _, values in programs]
    b_val = [values for _, values in balances]
    return [
        column(["state"] * len(states), ["balance"] * n_b, ["program"] * n_p),
        column([state.reward_id for state in states], text_b, text_p),
        column([state.reward is not None for state in states], [False] * n_b, [False] * n_p),
        column([f.referral_code for f in facts], [k[0] for k in b_key], [k[5] for k in p_key]),
        column([f.currency for f in facts], [k[1] for k in b_key], [k[2] for k in p_key]),
        column([f.livemode for f in facts], [k[2] for k in b_key], [k[3] for k in p_key]),
        column([f.account for f in facts], [k[3] for k in b_key], [k[4] for k in p_key]),
        column([f.amount_minor for f in facts], zero_b, zero_p),
        column([f.emission_status for f in facts], text_b, text_p),
        column([f.program_id for f in facts], text_b, [k[0] for k in p_key]),
        column([f.program_version for f in facts], zero_b, [k[1] for k in p_key]),
        column([f.paid_at for f in facts], zero_b, [k[6] for k in p_key]),
        column([f.revision for f in facts], zero_b, zero_p),
        column([key[2] for key in latest], text_b, text_p),
        column([key[0] for key in latest], zero_b, zero_p),
        column([key[1] for key in latest], zero_b, zero_p),
        column([list(state.clawback_ids) for state in states], [[]] * n_b, [[]] * n_p),
        column([state.cancelled_minor for state in states], zero_b, zero_p),
        column([state.corrections_minor for state in states], zero_b, zero_p),
        # lines, rewards, rewards_minor, pending, payable, paid, clawbacks
        column([0] * len(states), [v[0] for v in b_val], zero_p),
        column([0] * len(states), zero_b, [v[0] for v in p_val]),
        column([0] * len(states), [v[1] for v in b_val], [v[1] for v in p_val]),
        column([0] * len(states), [v[2] for v in b_val], zero_p),
        column([0] * len(states), [v[3] for v in b_val], zero_p),
        column([0] * len(states), [v[4] for v in b_val], zero_p),
        column([0] * len(states), [v[5] for v in b_val], [v[2] for v in p_val]),
    ]


def apply(
    client: Client,
    facts: dict[str, list[Any]],
    states: dict[str, RewardState] | None = None,
) -> Update:
    """Steps 2-4 for the facts of one window (or one backfill chunk); `states`: the stored
    states of their rewards when the caller read them already."""
    if states is None:
        fanout.ready(client, LINES_TABLE)
        ids = sorted({item.reward_id for items in facts.values() for item in items})
        if not ids:
            return Update([], {}, {})
        states = load_states(client, ids)
    change = update(states, **facts)
    if not change.empty:
        fanout.write(client, LINES_TABLE, LINE_COLUMNS, line_columns(change),
                     column_oriented=True, settings=LINES_SETTINGS)  # fmt: skip
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
    fanout.ready(client, LINES_TABLE)
    stored = client.query("SELECT count() FROM rewards").result_rows[0][0]
    buckets = max(1, -(-int(stored) // _BACKFILL_BUCKET_ROWS))
    for bucket in range(buckets):
        where = f"cityHash64(reward_id) % {buckets} = {bucket}"
        facts: dict[str, list[Any]] = {}
        for kind, query in _BACKFILL_QUERIES.items():
            sql = query.format(columns=_BACKFILL_COLUMNS[kind], bucket=where)
            rows = client.query(sql).result_rows  # constants and integers only
            facts[kind] = [_FACTS[kind](*row) for row in rows]
        apply(client, facts)
    client.insert("ledger_counted", [[BACKFILLED_KEY]], column_names=["record_key"])
    return True
