"""Reward windows handed to ClickHouse as Avro containers (sinks/native_avro.py) store and
count exactly what the Python mapping stores and counts; a window ClickHouse cannot take
as it is (a corrupt record, a time out of range, an earlier schema version) is decoded in
Python record by record, its bad records dead-lettered as before.

Real embedded engine (chDB through clickhouse-connect); the last test runs the real sink
consumer against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from refstream.avro_codec import MAGIC, AvroCodec
from refstream.settings import KafkaSettings, SinkSettings
from refstream.topics import REWARDS as REWARDS_TOPIC
from schemas.history import committed_versions
from sinks import ledger
from sinks.base import ClickHouseSink, Window
from sinks.consumer import ALL_SPECS, SinkConsumer
from sinks.ledger_sink import table_sink
from sinks.rewards import SPEC as REWARDS
from tests.support import poison
from tests.support import sink_checks as check
from tests.support import sink_scenario as scenario

CODEC = AvroCodec.for_schema("reward")


@dataclass(frozen=True)
class Rec:
    """A Kafka record as the sink reads it (aiokafka's ConsumerRecord has these fields)."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


def older_schema() -> Any:
    """A committed earlier version of reward.avsc (not the current one)."""
    return next(
        schema for fp, schema in committed_versions("reward").items()
        if MAGIC + fp != CODEC.header
    )  # fmt: skip


def reward(i: int, **changes: Any) -> dict[str, Any]:
    base = scenario.complete("reward", scenario.rewards()[i % 5])
    return dict(base, reward_id=f"rw_n{i}", **changes)


def varied() -> list[dict[str, Any]]:
    """Rewards using every optional field both ways, accounts, modes, revisions."""
    out = []
    for i in range(30):
        out.append(reward(
            i, customer_id=None if i % 3 == 0 else f"cus_{i}",
            invoice_id=f"in_{i}" if i % 2 else None, rate=None if i % 4 == 0 else "0.25",
            tenure_month=None if i % 5 == 0 else i, account="acct_9" if i % 3 == 1 else None,
            livemode=bool(i % 2), revision=i % 2, referral_code=f"code_{i % 4}",
            paid_at=scenario.D1 + i * 86_400, reward_amount_minor=100 + i,
        ))  # fmt: skip
    return out


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with check.migrated_client(check.sink_settings(tmp_path / "ch")) as client:
        client.command("SYSTEM STOP MERGES")
        yield client


def _native(client: Client, records: list[dict[str, Any]], first: int = 0) -> bool:
    sink = table_sink(REWARDS, client)
    recs = [Rec(first + n, None, CODEC.encode(r)) for n, r in enumerate(records)]
    return sink.write_native(recs, Window(REWARDS.topic, 0, first, first + len(recs) - 1))


def _ledger(client: Client) -> list[tuple[Any, ...]]:
    return client.query(
        "SELECT referral_code, toString(at), kind, record_id, reward_id, toString(currency), "
        "livemode, account, amount_minor FROM referrer_statement_lines ORDER BY record_id"
    ).result_rows


def test_a_native_window_stores_and_counts_what_the_python_mapping_does(client: Client) -> None:
    records = varied()
    # A revised reward (same id, higher revision) and a repeat inside one window.
    records += [dict(records[3], revision=5), records[7]]
    assert _native(client, records)

    client.command("CREATE TABLE rewards_py AS rewards")
    rows = [REWARDS.to_row(r) for r in records]
    client.insert("rewards_py", rows, column_names=list(REWARDS.columns))
    for query in (
        "SELECT * FROM rewards EXCEPT SELECT * FROM rewards_py",
        "SELECT * FROM rewards_py EXCEPT SELECT * FROM rewards",
    ):
        assert client.query(query).result_rows == [], query
    # Repeats inside one insert collapse alike (optimize_on_insert).
    physical = client.query("SELECT count() FROM rewards").result_rows
    assert physical == client.query("SELECT count() FROM rewards_py").result_rows

    # The ledger counted each id once, with the lines sinks/ledger.py makes from rows.
    native_ledger = _ledger(client)
    assert len(native_ledger) == len({r["reward_id"] for r in records})
    client.command("TRUNCATE TABLE referrer_statement_lines")
    client.command("TRUNCATE TABLE ledger_counted")
    ledger.count(client, REWARDS.table, rows)
    assert _ledger(client) == native_ledger


NATIVE_SPECS = [spec for spec in ALL_SPECS if spec.native is not None]


@pytest.mark.parametrize("spec", NATIVE_SPECS, ids=lambda spec: spec.table)
def test_every_native_table_stores_what_its_mapping_stores(client: Client, spec: Any) -> None:
    schema, make, _key = scenario.RECORDS[spec.topic]
    codec = AvroCodec.for_schema(schema)
    records = [scenario.complete(schema, r) for r in make()]
    sink = table_sink(spec, client)
    recs = [Rec(n, None, codec.encode(r)) for n, r in enumerate(records)]
    assert sink.write_native(recs, Window(spec.topic, 0, 0, len(recs) - 1))
    client.command(f"CREATE TABLE py_copy AS {spec.table}")
    client.insert("py_copy", [spec.to_row(r) for r in records], column_names=list(spec.columns))
    columns = ", ".join(spec.columns)
    for one, other in ((spec.table, "py_copy"), ("py_copy", spec.table)):
        query = f"SELECT {columns} FROM {one} EXCEPT SELECT {columns} FROM {other}"  # noqa: S608 - our table names
        assert client.query(query).result_rows == [], query

    # A time the mapping refuses (each checked field, one at a time) sends it to Python.
    for name in spec.native.check_columns:
        bad = dict(records[0], **{name: -1})
        recs = [Rec(100, None, codec.encode(bad))]
        assert not sink.write_native(recs, Window(spec.topic, 0, 100, 100)), name


def test_a_window_read_again_or_re_emitted_is_counted_once(client: Client) -> None:
    records = varied()
    assert _native(client, records[:20])
    assert _native(client, records[:20])  # the same window after a crash before the commit
    assert _native(client, records[10:], first=100)  # other boundaries, re-emitted ids
    total = client.query(
        "SELECT sum(rewards), sum(rewards_minor) FROM referrer_ledger_monthly"
    ).result_rows[0]
    assert total == (len(records), sum(r["reward_amount_minor"] for r in records))
    # The first window's token made its second insert a no-op; the third window is new.
    assert check.counts(client, final=False)["rewards"] == 20 + 20


def test_what_clickhouse_would_misstore_or_cannot_read_goes_back_to_python(
    client: Client,
) -> None:
    good = varied()[:5]
    for bad in (
        reward(50, paid_at=-1),  # DateTime would wrap these around
        reward(51, hold_until=2**32),
        reward(52, decided_at=2**40),
    ):
        assert not _native(client, [*good, bad])
    sink = table_sink(REWARDS, client)
    corrupt = [Rec(n, None, CODEC.encode(r)) for n, r in enumerate(good)]
    corrupt.append(Rec(5, None, CODEC.encode(reward(53))[:-3]))  # truncated
    assert not sink.write_native(corrupt, Window(REWARDS.topic, 0, 0, 5))
    assert check.counts(client, final=False)["rewards"] == 0  # nothing half-written
    assert client.query("SELECT count() FROM ledger_counted").result_rows[0][0] == 0

    older = older_schema()
    old_codec = AvroCodec(older)
    old_record = {f.name: reward(54)[f.name] for f in older.fields}
    mixed = [Rec(0, None, CODEC.encode(good[0])), Rec(1, None, old_codec.encode(old_record))]
    assert isinstance(sink, ClickHouseSink)
    assert not sink.write_native(mixed, Window(REWARDS.topic, 0, 0, 1))
    assert not sink.write_native([Rec(0, None, None)], Window(REWARDS.topic, 0, 0, 0))


@pytest.fixture
def sink_settings(tmp_path: Path) -> SinkSettings:
    settings: SinkSettings = check.sink_settings(
        tmp_path / "ch-consumer", group_id=f"native-{uuid.uuid4().hex[:8]}", batch_max_rows=6
    )
    return settings


async def test_the_sink_dead_letters_bad_rewards_and_writes_the_rest(
    kafka_settings: KafkaSettings, sink_settings: SinkSettings
) -> None:
    good = varied()[:10]
    older = older_schema()
    old_record = reward(60)
    stream = [
        *[(r["reward_id"], CODEC.encode(r)) for r in good[:4]],
        ("rw_n61", CODEC.encode(reward(61, paid_at=-5))),
        ("rw_n62", CODEC.encode(reward(62))[:-2]),
        ("rw_n60", AvroCodec(older).encode({f.name: old_record[f.name] for f in older.fields})),
        *[(r["reward_id"], CODEC.encode(r)) for r in good[4:]],
    ]
    offsets = await poison.produce_to_partition(
        kafka_settings, REWARDS_TOPIC, 0, [(rid.encode(), value) for rid, value in stream]
    )
    with check.migrated_client(sink_settings) as client:
        consumer = SinkConsumer(kafka_settings, sink_settings, client, specs=[REWARDS])
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            await check.wait_caught_up(kafka_settings, sink_settings.group_id, consumer.topics)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
        stored = {row[0] for row in client.query("SELECT reward_id FROM rewards FINAL").result_rows}
        assert stored == {r["reward_id"] for r in good} | {"rw_n60"}
        dead = client.query(
            "SELECT source_offset FROM dead_letters FINAL ORDER BY source_offset"
        ).result_rows
        assert [row[0] for row in dead] == [offsets[4], offsets[5]]
        counted = client.query("SELECT sum(rewards) FROM referrer_ledger_daily").result_rows
        assert counted[0][0] == len(stored)
