"""Kill the sink between a ClickHouse write and its offset commit, or in the middle of a
window's write while the next records are read, restart it, and check that neither the
tables nor the aggregates count anything twice, and that nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp

from refstream.settings import KafkaSettings
from refstream.topics import REWARDS
from sinks.clickhouse import connect
from tests.support import sink_checks as check
from tests.support import sink_scenario as scenario
from tests.support.report_reference import assert_exact

REPO = Path(__file__).resolve().parents[2]
GARBAGE = b"\x00 not avro"


def _records_per_table(records: list[tuple[str, bytes, bytes]]) -> dict[str, int]:
    from sinks.consumer import ALL_SPECS

    table = {spec.topic: spec.table for spec in ALL_SPECS}
    stored = dict.fromkeys(check.TABLES, 0)
    for topic, _key, _value in records:
        stored[table[topic]] += 1
    return stored


def _env(kafka_settings: KafkaSettings, folder: Path, group: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "REFSTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "REFSTREAM_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "REFSTREAM_EVENTS_PARTITIONS": str(kafka_settings.events_partitions),
        "REFSTREAM_CLICKHOUSE_DSN": f"chdb://{folder}",
        "REFSTREAM_SINK_GROUP_ID": group,
        "REFSTREAM_SINK_BATCH_MAX_ROWS": "2",  # many small windows: the kill lands mid-stream
        "REFSTREAM_QUERY_API_PORT": str(port),
        "REFSTREAM_LOG_LEVEL": "WARNING",
    }


CHILD = [sys.executable, "-m", "tests.support.sink_child"]


async def test_killed_between_write_and_commit_then_restarted_counts_nothing_twice(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    records = scenario.encoded_records()
    await check.produce(kafka_settings, [*records, (REWARDS, b"alice", GARBAGE)])
    folder, port, group = tmp_path / "ch", check.free_port(), f"crash-{uuid.uuid4().hex[:8]}"
    # Windows by size only (a full window, or one that waited 3 s): the restarted sink
    # forms the same windows again, so its re-write of the killed one is dropped by token.
    env = {**_env(kafka_settings, folder, group, port), "REFSTREAM_SINK_BATCH_MAX_WAIT_MS": "3000"}
    child = CHILD

    # 1. The first sink dies inside its 4th commit, after that window was written.
    first_out = tmp_path / "first.json"
    first = subprocess.run(
        [*child, str(first_out), "4"],
        env=env,
        cwd=REPO,
        timeout=180,
        capture_output=True,
        text=True,
    )
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    killed = json.loads(first_out.read_text())["killed_before_commit"]
    assert len(killed) == 1

    # 2. A second sink catches up; meanwhile its query API and the report CLI read through it.
    second_out = tmp_path / "second.json"
    second = subprocess.Popen(
        [*child, str(second_out)], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        topics = [kafka_settings.topic(spec) for spec in scenario.RECORDS]
        await check.wait_caught_up(kafka_settings, group, topics, timeout_s=120)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/reports/balances"
            async with http.get(url) as response:
                body = await response.json()
        assert {tuple(r[:3]): tuple(r[3:]) for r in body["rows"]} == scenario.EXPECTED_BALANCES
        report = subprocess.run(
            [
                sys.executable,
                "-m",
                "refstream.cli",
                "report",
                "referrer_daily",
                "--format",
                "json",
                "--limit",
                "100",
            ],
            env=env,
            cwd=REPO,
            timeout=120,
            capture_output=True,
            text=True,
        )
        assert report.returncode == 0, report.stderr[-2000:]
        rows = json.loads(report.stdout)["rows"]
        assert {(r[0], r[1], r[2], r[3]): tuple(r[4:]) for r in rows} == scenario.EXPECTED_DAILY
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr[-2000:]

    # 3. Physically stored rows: one per Kafka record, so the re-read window was dropped.
    expected_stored = _records_per_table(records)
    expected_stored["dead_letters"] += 1  # the garbage record
    assert json.loads(second_out.read_text())["stored_rows"] == expected_stored

    # 4. And the tables and aggregates, read as analysts read them, are exact.
    with connect(check.sink_settings(folder)) as client:
        assert check.counts(client) == dict(scenario.EXPECTED_COUNTS, dead_letters=2)
        assert check.balances(client) == scenario.EXPECTED_BALANCES
        assert check.daily(client) == scenario.EXPECTED_DAILY
        assert check.customers(client) == scenario.EXPECTED_CUSTOMERS
        assert check.split(client) == scenario.EXPECTED_SPLIT
        assert_exact(client)  # the ledger-backed reports too


async def test_killed_inside_a_window_write_while_reading_on_loses_and_doubles_nothing(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    records = scenario.encoded_records()
    await check.produce(kafka_settings, [*records, (REWARDS, b"alice", GARBAGE)])
    folder, port, group = tmp_path / "ch", check.free_port(), f"crash-{uuid.uuid4().hex[:8]}"
    # Windows written as soon as the writer is free (the default's batching while busy):
    # the restarted sink's windows need not be the killed one's, so a window may be
    # stored twice physically, and the tables (FINAL) and the ledger must absorb it.
    env = {**_env(kafka_settings, folder, group, port), "REFSTREAM_SINK_BATCH_MAX_WAIT_MS": "0"}

    # 1. The first sink dies inside its 2nd ledger write: that window is in its table,
    #    not in the ledger, not committed; the poller has read on meanwhile.
    first_out = tmp_path / "first.json"
    first = subprocess.run(
        [*CHILD, str(first_out), "ledger:2"], env=env, cwd=REPO, timeout=180,
        capture_output=True, text=True,
    )  # fmt: skip
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert json.loads(first_out.read_text())["killed_in_ledger"]

    # 2. A second sink catches up and stops.
    second_out = tmp_path / "second.json"
    second = subprocess.Popen(
        [*CHILD, str(second_out)], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        topics = [kafka_settings.topic(spec) for spec in scenario.RECORDS]
        await check.wait_caught_up(kafka_settings, group, topics, timeout_s=120)
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr[-2000:]

    # 3. Every record is stored (nothing lost), each id once as analysts read it, and the
    #    ledger counted each once.
    with connect(check.sink_settings(folder)) as client:
        assert check.counts(client) == dict(scenario.EXPECTED_COUNTS, dead_letters=2)
        assert check.balances(client) == scenario.EXPECTED_BALANCES
        assert check.daily(client) == scenario.EXPECTED_DAILY
        assert check.customers(client) == scenario.EXPECTED_CUSTOMERS
        assert check.split(client) == scenario.EXPECTED_SPLIT
        assert_exact(client)  # the ledger-backed reports too
