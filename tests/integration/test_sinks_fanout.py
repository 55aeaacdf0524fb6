"""A ledger write cut short between its views (sinks/fanout.py) is completed, never lost or
doubled, on the real embedded engine with merges stopped.

ClickHouse commits the targets of one insert's views one by one: a key-value target as its
rows arrive, a MergeTree part when the insert ends. An end-to-end run whose sink was
SIGKILLed inside that insert kept 4 of 136 rewards marked counted in `ledger_counted` but
absent from `referrer_ledger_daily`. Here the cut is made deterministic: an extra view on
the n-th write reaches only some of the tables (the others' views detached meanwhile),
then fails. The sink fails that window, and a restarted sink (fresh process state)
or the same one retrying reads the stream again; every report must equal its reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks import fanout
from sinks.base import SinkWriteError
from tests.integration import test_balances_exact as balances
from tests.integration import test_revenue_exact as revenue
from tests.integration.test_reports_exact import write
from tests.support import balance_reference, report_reference, revenue_reference
from tests.support import sink_checks as check


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with check.migrated_client(check.sink_settings(tmp_path / "ch")) as client:
        client.command("SYSTEM STOP MERGES")
        yield client


def _views(client: Client, table: str) -> dict[str, str]:
    """The views of `table`: name -> the engine of the table it writes."""
    engines = dict(
        client.query(
            "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
        ).result_rows
    )
    views = client.query(
        "SELECT name, create_table_query FROM system.tables "
        "WHERE database = currentDatabase() AND engine = 'MaterializedView'"
    ).result_rows
    source = re.compile(rf"FROM (\w+\.)?{table}\b")
    out = {}
    for name, query in views:
        if source.search(query):
            target = re.search(r" TO (\w+\.)?(\w+)", query)
            assert target is not None, query
            out[name] = engines[target[2]]
    return out


def _cut_short(
    monkeypatch: pytest.MonkeyPatch, table: str, nth: int, keeps: str, seen: dict[str, Any]
) -> None:
    """The `nth` apply of `table` reaches only some of its views' tables, as a crash
    inside the insert leaves it, then fails. `keeps`: "key-value", the EmbeddedRocksDB
    targets (what the end-to-end run showed), or "one-part", a single MergeTree target."""
    apply = fanout._apply
    calls = 0

    def apply_cut_short(
        client: Client, name: str, token: str, settings: dict[str, Any] | None = None
    ) -> None:
        nonlocal calls
        if name == table:
            calls += 1
            if calls == nth:
                views = _views(client, name)
                parts = sorted(v for v, engine in views.items() if "MergeTree" in engine)
                kept = set(views) - set(parts) if keeps == "key-value" else {parts[-1]}
                cut = sorted(set(views) - kept)
                seen["before"] = _committed(client)
                for view in cut:
                    client.command(f"DETACH TABLE {view}")
                try:
                    apply(client, name, token, settings)
                finally:
                    for view in cut:
                        client.command(f"ATTACH TABLE {view}")
                seen["after"] = _committed(client)
                raise ConnectionError("cut short by the test")
        apply(client, name, token, settings)

    monkeypatch.setattr(fanout, "_apply", apply_cut_short)


TARGETS = ("ledger_counted", "referrer_ledger_daily", "referrer_ledger_monthly",
           "referrer_statement_lines", "balance_reward_states", "balance_totals",
           "program_totals_daily", "program_totals_monthly", "revenue_keys", "revenue_customers",
           "revenue_attributions", "revenue_daily", "revenue_monthly",
           "revenue_customer_daily")  # fmt: skip


def _committed(client: Client) -> tuple[int, ...]:
    """Rows in each table a ledger's views write (merges are stopped)."""
    return tuple(
        client.query(f"SELECT count() FROM {t}").result_rows[0][0]  # noqa: S608
        for t in TARGETS
    )


@pytest.mark.parametrize(
    ("table", "nth", "keeps", "restart"),
    [
        ("ledger_lines", 3, "key-value", True),
        ("ledger_lines", 5, "one-part", False),
        ("balance_lines", 3, "key-value", False),
        ("balance_lines", 2, "one-part", True),
    ],
)
def test_a_referrer_or_balance_write_cut_short_is_completed(
    client: Client, monkeypatch: pytest.MonkeyPatch, table: str, nth: int, keeps: str,
    restart: bool,
) -> None:  # fmt: skip
    records = balances.stream(11)
    seen: dict[str, Any] = {}
    _cut_short(monkeypatch, table, nth, keeps, seen)
    with pytest.raises(SinkWriteError, match="cut short by the test"):
        write(client, records, 0, 30)
    assert seen["after"] != seen["before"]  # the engine kept part of the write
    if restart:
        fanout._clean.clear()  # a new process knows nothing of what was under way
    # The sink reads again from its last commit (the start here), in other windows.
    write(client, records, 0, 23)
    balance_reference.assert_exact(client)
    report_reference.assert_exact(client)
    staged = f"SELECT count() FROM {fanout.pending_table(table)}"  # noqa: S608
    assert client.query(staged).result_rows == [(0,)]


@pytest.mark.parametrize(("keeps", "restart"), [("key-value", True), ("one-part", False)])
def test_a_revenue_write_cut_short_is_completed(
    client: Client, monkeypatch: pytest.MonkeyPatch, keeps: str, restart: bool
) -> None:
    records = revenue.stream(3)
    seen: dict[str, Any] = {}
    _cut_short(monkeypatch, "revenue_in", 3, keeps, seen)
    with pytest.raises(SinkWriteError, match="cut short by the test"):
        revenue.write(client, records, 25)
    assert seen["after"] != seen["before"]
    if restart:
        fanout._clean.clear()
    revenue.write(client, records, 19)
    revenue_reference.assert_exact(client, revenue.DEFAULTS)


def test_a_write_applied_but_not_cleared_is_not_applied_twice(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the apply, before the staged rows are cleared: the next start applies
    them again and every MergeTree target drops them by their token."""
    records = balances.stream(12)
    command = client.command
    truncates = 0

    def command_dying_at_third_clear(sql: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal truncates
        if sql.startswith("TRUNCATE TABLE ledger_lines_pending"):
            truncates += 1
            if truncates == 3:
                raise ConnectionError("the sink died here")
        return command(sql, *args, **kwargs)

    monkeypatch.setattr(client, "command", command_dying_at_third_clear)
    with pytest.raises(SinkWriteError, match="the sink died here"):
        write(client, records, 0, 30)
    monkeypatch.setattr(client, "command", command)
    assert client.query("SELECT count() FROM ledger_lines_pending").result_rows[0][0] > 0
    fanout._clean.clear()
    write(client, records, 0, 30)
    report_reference.assert_exact(client)
    balance_reference.assert_exact(client)


def test_every_target_of_a_fanout_table_remembers_tokens(client: Client) -> None:
    """The MergeTree targets keep a deduplication window (0008); without one a retried
    apply would add its block twice."""
    engines = dict(
        client.query(
            "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
        ).result_rows
    )
    for table in fanout.FANOUT_TABLES:
        views = _views(client, table)
        assert len(views) >= 4, (table, views)
        targets = {
            re.search(r" TO (\w+\.)?(\w+)", query)[2]  # type: ignore[index]
            for (name, query) in client.query(
                "SELECT name, create_table_query FROM system.tables "
                "WHERE database = currentDatabase() AND engine = 'MaterializedView'"
            ).result_rows
            if name in views
        }
        for target in targets:
            if "MergeTree" in engines[target]:
                assert "non_replicated_deduplication_window = 1000" in engines[target], target
