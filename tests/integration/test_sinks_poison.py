"""A record ClickHouse refuses is dead-lettered; nothing else of its partition waits.

Real broker, real embedded engine (chDB through clickhouse-connect)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from refstream.settings import KafkaSettings, SinkSettings
from refstream.topics import STRIPE_EVENTS
from sinks import stripe_events
from sinks.base import SinkBugError
from sinks.consumer import ALL_SPECS, SinkConsumer, group_lag
from sinks.dead_letters import REFUSED_ERROR_TYPE
from tests.support import poison
from tests.support import sink_checks as check


@pytest.fixture
def sink(tmp_path: Path) -> SinkSettings:
    settings: SinkSettings = check.sink_settings(
        tmp_path / "ch", group_id=f"poison-{uuid.uuid4().hex[:8]}", batch_max_rows=4
    )
    return settings


@pytest.fixture
def client(sink: SinkSettings) -> Iterator[Client]:
    with check.migrated_client(sink) as client:
        yield client


async def _run_until_caught_up(kafka: KafkaSettings, sink: SinkSettings, client: Client) -> Any:
    consumer = SinkConsumer(kafka, sink, client)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await check.wait_caught_up(kafka, sink.group_id, consumer.topics)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    return consumer


async def test_refused_rows_are_dead_lettered_and_the_partition_goes_on(
    kafka_settings: KafkaSettings, sink: SinkSettings, client: Client
) -> None:
    good = [poison.charge_event(n) for n in range(12)]
    bad_currency = poison.charge_event(100, currency=poison.SURROGATE)
    bad_status = poison.charge_event(101, status="ok" + poison.SURROGATE)
    nested = poison.charge_event(102, body=poison.deeply_nested_body(102))
    huge = poison.charge_event(103, body=poison.huge_number_body(103))
    stream = [*good[:3], bad_currency, *good[3:7], nested, bad_status, *good[7:10], huge,
              *good[10:]]  # fmt: skip
    offsets = await poison.produce_to_partition(
        kafka_settings, STRIPE_EVENTS, 0, [(key, value) for _, key, value in stream]
    )
    offset_of = {event_id: offset for (event_id, _, _), offset in zip(stream, offsets, strict=True)}
    # Other partitions carry on with their own records meanwhile.
    others = [poison.charge_event(200 + n) for n in range(3)]
    await poison.produce_to_partition(
        kafka_settings, STRIPE_EVENTS, 1, [(key, value) for _, key, value in others]
    )

    await _run_until_caught_up(kafka_settings, sink, client)

    landed = dict(client.query("SELECT event_id, body_error FROM stripe_events FINAL").result_rows)
    # Bodies the mapping cannot parse (JSON nested past Python's recursion limit, a
    # 5000-digit number) land with their raw bytes and the reason; they move no money.
    assert set(landed) == {event_id for event_id, _, _ in [*good, *others, nested, huge]}
    assert landed[nested[0]].startswith("body is not JSON")
    assert landed[huge[0]].startswith("body is not JSON")

    dead = client.query(
        "SELECT source_topic, source_partition, source_offset, lower(hex(key)), lower(hex(value)), "
        "error_type, error, "
        "event_id FROM dead_letters FINAL ORDER BY source_offset"
    ).result_rows
    topic = kafka_settings.topic(STRIPE_EVENTS)
    # Refused by ClickHouse (found by bisection).
    assert [(d[0], d[1], d[2], d[5], d[7]) for d in dead] == [
        (topic, 0, offset_of[bad_currency[0]], REFUSED_ERROR_TYPE, bad_currency[0]),
        (topic, 0, offset_of[bad_status[0]], REFUSED_ERROR_TYPE, bad_status[0]),
    ]
    for row, original in zip(dead, (bad_currency, bad_status), strict=True):
        assert (row[3], row[4]) == (original[1].hex(), original[2].hex())  # bytes to replay
    for row in dead:
        assert "stripe_events refused the row" in row[6] and "surrogates" in row[6]
    assert await group_lag(kafka_settings, sink.group_id, [topic]) == 0


async def test_a_bug_in_a_mapping_stops_the_sink_instead_of_dead_lettering(
    kafka_settings: KafkaSettings, sink: SinkSettings, client: Client
) -> None:
    def broken(record: Any) -> Any:
        return stripe_events.to_row(record) + None  # type: ignore[operator]  # a TypeError

    specs = [replace(stripe_events.SPEC, to_row=broken) if s is stripe_events.SPEC else s
             for s in ALL_SPECS]  # fmt: skip
    _, key, value = poison.charge_event(1)
    await poison.produce_to_partition(kafka_settings, STRIPE_EVENTS, 0, [(key, value)])
    consumer = SinkConsumer(kafka_settings, sink, client, specs=specs)
    with pytest.raises(SinkBugError, match="TypeError"):
        await asyncio.wait_for(consumer.run(asyncio.Event()), 60)
    assert client.query("SELECT count() FROM dead_letters").result_rows[0][0] == 0
    topic = kafka_settings.topic(STRIPE_EVENTS)
    assert await group_lag(kafka_settings, sink.group_id, [topic]) == 1  # nothing committed
