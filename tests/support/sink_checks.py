"""Read the sink tables and views into the shapes of tests/support/sink_scenario.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from clickhouse_connect.driver.client import Client

TABLES = (
    "stripe_events",
    "attributions",
    "rewards",
    "clawbacks",
    "reward_status",
    "payouts",
    "lifecycle",
    "dead_letters",
)


def _rows(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in client.query(sql).result_rows]


def counts(client: Client, *, final: bool = True) -> dict[str, int]:
    """Rows per table: distinct ids (FINAL) or physically stored rows (final=False)."""
    modifier = "FINAL" if final else ""
    return {t: _rows(client, f"SELECT count() FROM {t} {modifier}")[0][0] for t in TABLES}  # noqa: S608


def balances(client: Client) -> dict[tuple[str, str, str], tuple[int, ...]]:
    rows = _rows(
        client,
        "SELECT referral_code, currency, if(livemode, 'live', 'test'), "
        "rewards_minor, pending_minor, payable_minor, paid_minor, clawed_back_minor, "
        "earned_minor, net_minor FROM referrer_balances",
    )
    return {row[:3]: row[3:] for row in rows}


def daily(client: Client) -> dict[tuple[str, str, str, str], tuple[int, ...]]:
    rows = _rows(
        client,
        "SELECT referral_code, toString(day), currency, "
        "if(livemode, 'live', 'test'), referred_revenue_minor, rewards_minor, "
        "clawbacks_minor, net_minor FROM referrer_daily",
    )
    return {row[:4]: row[4:] for row in rows}


def customers(client: Client) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    rows = _rows(
        client,
        "SELECT customer_key, currency, if(livemode, 'live', 'test'), "
        "attribution, referral_code, toString(first_paid_date), revenue_minor, "
        "referred_revenue_minor FROM customer_revenue",
    )
    return {row[:3]: row[3:] for row in rows}


def split(client: Client) -> dict[tuple[str, str], tuple[int, ...]]:
    from sinks.reports import run_report

    result = run_report(client, "revenue_split", {})
    return {(row[0], row[1]): tuple(row[2:]) for row in result.rows}


def sink_settings(folder: Any, **overrides: Any) -> Any:
    """SinkSettings on an embedded engine in `folder`, with quick retries for tests."""
    from dataclasses import replace

    from refstream.settings import Secret, SinkSettings

    defaults = {"retry_initial_ms": 50, "retry_max_ms": 400, "batch_max_wait_ms": 200}
    return replace(
        SinkSettings(clickhouse_dsn=Secret(f"chdb://{folder}")), **{**defaults, **overrides}
    )


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_scenario(client: Client, *, topic_prefix: str = "") -> None:
    """Write every scenario record through the table sinks, one window per topic."""
    from sinks.base import Window
    from sinks.consumer import ALL_SPECS
    from sinks.ledger_sink import table_sink
    from tests.support import sink_scenario

    for spec in ALL_SPECS:
        sink = table_sink(spec, client)
        topic = topic_prefix + spec.topic
        records = sink_scenario.RECORDS[spec.topic][1]()
        for record in records:
            sink.add(spec.to_row(record), topic, 0)
        sink.flush(Window(topic, 0, 0, len(records) - 1))


async def produce(kafka: Any, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    """Send (topic without prefix, key, value) records and wait for every ack."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send(kafka.topic(topic), value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_caught_up(
    kafka: Any, group_id: str, topics: list[str], timeout_s: float = 90
) -> None:
    """Until `group_id` committed every record of `topics`; fails after `timeout_s`."""
    import asyncio

    from sinks.consumer import group_lag

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    lag = -1
    while loop.time() < deadline:
        lag = await group_lag(kafka, group_id, topics)
        if lag == 0:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"group {group_id} still {lag} records behind after {timeout_s}s")


@contextmanager
def migrated_client(sink: Any) -> Iterator[Client]:
    """A client of the sink's ClickHouse with every migration applied, closed after use."""
    from sinks.clickhouse import connect
    from sinks.migrations import apply_migrations

    client = connect(sink)
    apply_migrations(client)
    try:
        yield client
    finally:
        client.close()
