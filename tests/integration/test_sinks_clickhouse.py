"""The schema, views, read-only access and query API on the real embedded engine (chDB)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from clickhouse_connect.driver.client import Client

from sinks.base import ClickHouseSink, Window
from sinks.clickhouse import connect
from sinks.migrations import DDL_DIR, MigrationError, apply_migrations, load_migrations
from sinks.query_api import start_query_api
from sinks.reports import REPORTS, run_report
from sinks.rewards import SPEC as REWARDS
from tests.support import sink_checks as check
from tests.support import sink_scenario as scenario

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sink(tmp_path: Path) -> Any:
    return check.sink_settings(tmp_path / "ch")


@pytest.fixture
def client(sink: Any) -> Iterator[Client]:
    client = connect(sink)
    apply_migrations(client)
    try:
        yield client
    finally:
        client.close()  # one engine folder per process: release it for the next test


def test_migrations_apply_once_and_are_recorded(client: Client) -> None:
    assert apply_migrations(client) == []
    recorded = client.query("SELECT version, name FROM refstream_migrations FINAL ORDER BY version")
    assert recorded.result_rows == [(m.version, m.name) for m in load_migrations()]


def test_concurrent_migrations_on_a_fresh_database_both_succeed(sink: Any) -> None:
    clients = [connect(sink), connect(sink)]
    errors: list[BaseException] = []
    applied: list[list[str]] = []

    def migrate(c: Client) -> None:
        try:
            applied.append(apply_migrations(c))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(c,)) for c in clients]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        # Each version was applied by one thread or both; none is missing.
        every = {f"{m.version:04d}_{m.name}" for m in load_migrations()}
        assert {name for names in applied for name in names} == every
        rows = clients[0].query("SELECT count() FROM refstream_migrations FINAL").result_rows
        assert rows == [(len(every),)]
        assert apply_migrations(clients[0]) == []
    finally:
        for c in clients:
            c.close()


def test_an_applied_migration_that_changed_is_refused(client: Client, tmp_path: Path) -> None:
    ddl = tmp_path / "ddl"
    shutil.copytree(DDL_DIR, ddl)
    views = ddl / "0002_views.sql"
    views.write_text(views.read_text() + "\n-- edited after release\n")
    with pytest.raises(MigrationError, match=r"0002_views\.sql changed after it was applied"):
        apply_migrations(client, ddl)


def test_views_give_the_hand_computed_totals(client: Client) -> None:
    check.write_scenario(client)
    assert check.counts(client) == scenario.EXPECTED_COUNTS
    assert check.balances(client) == scenario.EXPECTED_BALANCES
    assert check.daily(client) == scenario.EXPECTED_DAILY
    assert check.customers(client) == scenario.EXPECTED_CUSTOMERS
    assert check.split(client) == scenario.EXPECTED_SPLIT


def test_a_retried_window_and_a_re_emitted_record_change_no_total(client: Client) -> None:
    client.command("SYSTEM STOP MERGES")  # physical row counts must show any double insert
    check.write_scenario(client)
    stored = check.counts(client, final=False)
    # The same windows again (a sink that crashed after writing, before committing).
    check.write_scenario(client)
    assert check.counts(client, final=False) == stored
    # A worker re-emits two rewards: same ids, a later window, another token.
    sink = ClickHouseSink(REWARDS, client)
    for record in scenario.rewards()[:2]:
        sink.add(REWARDS.to_row(record), "referral.rewards", 0)
    sink.flush(Window("referral.rewards", 0, 100, 101))
    assert check.counts(client, final=False)["rewards"] == stored["rewards"] + 2
    assert check.counts(client) == scenario.EXPECTED_COUNTS
    assert check.balances(client) == scenario.EXPECTED_BALANCES
    assert check.daily(client) == scenario.EXPECTED_DAILY
    client.command("SYSTEM START MERGES")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO rewards (reward_id) VALUES ('forged')",
        "ALTER TABLE rewards DELETE WHERE 1",
        "DROP TABLE rewards",
        "CREATE TABLE x (a Int8) ENGINE = Log",
        "TRUNCATE TABLE clawbacks",
    ],
)
def test_a_readonly_client_cannot_modify_anything(
    client: Client, sink: Any, statement: str
) -> None:
    reader = connect(sink, readonly=True)
    try:
        with pytest.raises(Exception, match="readonly"):
            reader.command(statement)
    finally:
        reader.close()
    assert client.query("SELECT count() FROM rewards WHERE reward_id = 'forged'").result_rows == [
        (0,)
    ]


async def test_the_query_api_serves_reports_read_only(client: Client, sink: Any) -> None:
    check.write_scenario(client)
    reader = connect(sink, readonly=True)
    port = check.free_port()
    runner = await start_query_api(reader, "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/reports/balances", params={"mode": "test"}) as response:
                assert response.status == 200
                body = await response.json()
            got = {tuple(row[:3]): tuple(row[3:]) for row in body["rows"]}
            assert got == {k: v for k, v in scenario.EXPECTED_BALANCES.items() if k[2] == "test"}

            # Values are bound as parameters: an injection attempt is just an unknown code.
            sneaky = "alice' OR 1=1 --"
            async with http.get(
                f"{base}/reports/balances", params={"referral_code": sneaky}
            ) as response:
                assert response.status == 200
                assert (await response.json())["rows"] == []
            async with http.post(f"{base}/reports/balances", data="DROP TABLE rewards") as response:
                assert response.status == 405
            async with http.get(
                f"{base}/reports/balances", params={"limit": "1; DROP"}
            ) as response:
                assert response.status == 400
                assert "limit" in (await response.json())["error"]
    finally:
        await runner.cleanup()
        reader.close()
    assert check.counts(client) == scenario.EXPECTED_COUNTS


def test_the_report_cli_opens_the_folder_when_no_sink_runs(sink: Any, tmp_path: Path) -> None:
    with connect(sink) as writer:
        apply_migrations(writer)
        check.write_scenario(writer)
    env = {
        "PATH": "/usr/bin:/bin",
        "REFSTREAM_CLICKHOUSE_DSN": sink.clickhouse_dsn.value,
        "REFSTREAM_QUERY_API_PORT": str(check.free_port()),  # nothing listens there
    }
    cmd = [sys.executable, "-m", "refstream.cli", "report", "balances", "--format", "json"]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    rows = json.loads(done.stdout)["rows"]
    assert {tuple(r[:3]): tuple(r[3:]) for r in rows} == scenario.EXPECTED_BALANCES

    table = subprocess.run(
        [*cmd[:-2], "--referral-code", "bob"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    assert "-600" in table.stdout and "alice" not in table.stdout

    bad = subprocess.run(
        [*cmd, "--limit", "many"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert "parameter limit must be an integer" in bad.stderr


ALL_FILTERS = {
    "limit": "50",
    "mode": "test",
    "currency": "USD",
    "referral_code": "alice",
    "since": scenario.DAY1,
    "until": scenario.DAY2,
    "attribution": "referred",
}


@pytest.mark.parametrize("name", list(REPORTS))
def test_every_report_runs_with_defaults_and_with_every_filter(client: Client, name: str) -> None:
    check.write_scenario(client)
    required = {p.name: ALL_FILTERS[p.name] for p in REPORTS[name].params if p.required}
    assert run_report(client, name, required).rows
    declared = {p.name for p in REPORTS[name].params}
    filtered = run_report(client, name, {k: v for k, v in ALL_FILTERS.items() if k in declared})
    for row in filtered.rows:
        named = dict(zip(filtered.columns, row, strict=True))
        assert named.get("mode", "test") == "test"
        assert named.get("currency", "usd") == "usd"
        if "referral_code" in declared:
            assert named.get("referral_code", "alice") in ("alice", "")
        assert scenario.DAY1 <= named.get("day", scenario.DAY1) <= scenario.DAY2


def test_filtered_reports_give_the_hand_computed_figures(client: Client) -> None:
    check.write_scenario(client)
    daily = run_report(client, "referrer_daily", {"referral_code": "alice", "until": scenario.DAY2})
    assert daily.rows == [
        ["alice", scenario.DAY1, "eur", "live", 9000, 1800, 0, 1800],
        ["alice", scenario.DAY1, "usd", "test", 11500, 2300, 0, 2300],
        ["alice", scenario.DAY2, "usd", "test", 2500, 1000, -1500, -500],
    ]
    top = run_report(client, "top_referrers_revenue", {"mode": "test"})
    assert top.rows == [["alice", "usd", "test", 12500]]  # bob: 3000 - 3000 lost dispute
    net = run_report(client, "top_referrers_net_reward", {"currency": "usd"})
    assert net.rows == [
        ["alice", "usd", "test", 3300, -800, 2500],
        ["bob", "usd", "test", 600, -600, 0],
    ]
    waiting = run_report(client, "awaiting_attribution", {})
    assert waiting.rows == [["cus_U", "usd", "test", scenario.DAY2, 2000]]
    sources = run_report(client, "attribution_sources", {"mode": "test"})
    assert sources.rows == [
        ["attribution", "checkout_payment_intent_data", "test", 1],
        ["attribution", "customer_metadata", "test", 1],
        ["attribution", "subscription_metadata", "test", 1],
        ["conflict", "invoice_line", "test", 1],
        ["organic", "none", "test", 1],
    ]


def test_the_statement_lists_every_money_line_with_its_running_balance(client: Client) -> None:
    check.write_scenario(client)
    d1, d2, d3 = (f"{day} 00:00:00" for day in (scenario.DAY1, scenario.DAY2, scenario.DAY3))
    alice = run_report(client, "referrer_statement", {"referral_code": "alice"})
    assert alice.columns[:8] == [
        "at", "kind", "record_id", "reward_id", "currency", "mode", "amount_minor",
        "running_balance_minor",
    ]  # fmt: skip
    assert alice.rows == [
        [d1, "reward", "rw_A1", "rw_A1", "usd", "test", 2000, 2000],
        [d1, "reward", "rw_E1", "rw_E1", "eur", "live", 1800, 1800],
        [d1, "reward", "rw_G", "rw_G", "usd", "test", 300, 2300],
        [d2, "reward", "rw_A2", "rw_A2", "usd", "test", 1000, 3300],
        [d2, "clawback", "cb_A1a", "rw_A1", "usd", "test", -500, 2800],
        [d2, "clawback", "cb_A2d", "rw_A2", "usd", "test", -1000, 1800],
        [d3, "reinstatement", "cb_A2w", "rw_A2", "usd", "test", 1000, 2800],
        [d3, "clawback", "cb_A1b", "rw_A1", "usd", "test", -300, 2500],
    ]
    # A payout lowers the balance; a clawback of a paid reward takes it below zero.
    bob = run_report(client, "referrer_statement", {"referral_code": "bob", "mode": "test"})
    assert [row[1:3] + row[6:8] for row in bob.rows] == [
        ["reward", "rw_B1", 600, 600],
        ["payout", "po_1", -600, 0],
        ["clawback", "cb_B1", -600, -600],
    ]
    # A window shows its lines with the balance of the whole history.
    late = run_report(
        client, "referrer_statement", {"referral_code": "alice", "since": scenario.DAY3}
    )
    assert [row[7] for row in late.rows] == [2800, 2500]
    live = run_report(client, "referrer_statement", {"referral_code": "alice", "mode": "live"})
    assert [row[2] for row in live.rows] == ["rw_E1"]
    assert (
        run_report(
            client, "referrer_statement", {"referral_code": "alice", "mode": "test@acct_1"}
        ).rows
        == []
    )


def test_monthly_and_program_breakdowns_give_the_hand_computed_figures(client: Client) -> None:
    check.write_scenario(client)
    months = run_report(client, "rewards_by_month", {})
    assert months.columns == [
        "month", "currency", "mode", "rewards_minor", "clawbacks_minor", "net_minor",
        "referred_revenue_minor", "organic_revenue_minor",
    ]  # fmt: skip
    assert months.rows == [
        ["2026-03-01", "eur", "live", 1800, 0, 1800, 9000, 0],
        ["2026-03-01", "usd", "test", 3900, -1400, 2500, 12500, 7000],
    ]
    bob = run_report(client, "rewards_by_month", {"referral_code": "bob"})
    assert bob.rows == [["2026-03-01", "usd", "test", 600, -600, 0, 0, 0]]
    programs = run_report(client, "rewards_by_program", {})
    assert programs.columns[:8] == [
        "program_id", "program_version", "currency", "mode", "rewards", "rewards_minor",
        "clawbacks_minor", "net_minor",
    ]  # fmt: skip
    assert programs.rows == [
        ["default", 1, "eur", "live", 1, 1800, 0, 1800],
        ["default", 1, "usd", "test", 4, 3900, -1400, 2500],
    ]
