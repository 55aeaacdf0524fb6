"""The sink consumer on the real broker and the real embedded engine."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from refstream.avro_codec import AvroCodec
from refstream.settings import KafkaSettings
from refstream.topics import CLAWBACKS, LIFECYCLE, REWARDS
from sinks.consumer import SinkConsumer
from tests.support import sink_checks as check
from tests.support import sink_scenario as scenario

GARBAGE = b"\x00\x01 not avro"


@pytest.fixture
def sink(tmp_path: Path) -> Any:
    return check.sink_settings(
        tmp_path / "ch", group_id=f"sinks-{uuid.uuid4().hex[:8]}", batch_max_rows=3
    )


@pytest.fixture
def client(sink: Any) -> Any:
    with check.migrated_client(sink) as client:
        yield client


class Running:
    """A SinkConsumer running as a task of the test's event loop."""

    def __init__(self, kafka: KafkaSettings, sink: Any, client: Client) -> None:
        self.consumer = SinkConsumer(kafka, sink, client)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.consumer.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 60)


@pytest.fixture
async def running(kafka_settings: KafkaSettings, sink: Any, client: Client) -> AsyncIterator[Any]:
    started: list[Running] = []

    def start() -> Running:
        started.append(Running(kafka_settings, sink, client))
        return started[-1]

    yield start
    for run in started:
        if not run.task.done():
            await run.close()


def _topics(kafka: KafkaSettings, run: Running) -> list[str]:
    return run.consumer.topics


async def test_every_topic_lands_exactly_and_bad_records_become_dead_letters(
    kafka_settings: KafkaSettings, sink: Any, client: Client, running: Any
) -> None:
    wrong_schema = AvroCodec.for_schema("attribution").encode(scenario.attributions()[0])
    await check.produce(
        kafka_settings,
        [
            *scenario.encoded_records(),
            (REWARDS, b"alice", GARBAGE),
            (REWARDS, b"alice", wrong_schema),
            (LIFECYCLE, b"cus_A", None),
        ],
    )
    run = running()
    await check.wait_caught_up(kafka_settings, sink.group_id, _topics(kafka_settings, run))
    await run.close()

    assert check.counts(client) == dict(scenario.EXPECTED_COUNTS, dead_letters=4)
    assert check.balances(client) == scenario.EXPECTED_BALANCES
    assert check.daily(client) == scenario.EXPECTED_DAILY
    assert check.customers(client) == scenario.EXPECTED_CUSTOMERS
    assert check.split(client) == scenario.EXPECTED_SPLIT

    dead = client.query(
        "SELECT stage, source_topic, lower(hex(value)), error_type, dead_letter_id, "
        "source_partition, "
        "source_offset FROM dead_letters FINAL WHERE stage = 'sink' ORDER BY error_type, value"
    ).result_rows
    assert [(d[0], d[1], d[2], d[3]) for d in dead] == [
        ("sink", kafka_settings.topic(REWARDS), GARBAGE.hex(), "AvroDecodeError"),
        ("sink", kafka_settings.topic(REWARDS), wrong_schema.hex(), "AvroDecodeError"),
        ("sink", kafka_settings.topic(LIFECYCLE), "", "RowError"),
    ]
    for row in dead:
        assert row[4] == f"{row[1]}:{row[5]}:{row[6]}:sink"


async def test_a_clickhouse_failure_pauses_commits_nothing_and_resumes(
    kafka_settings: KafkaSettings, sink: Any, client: Client, running: Any
) -> None:
    await check.produce(kafka_settings, scenario.encoded_records())
    client.command("DETACH TABLE clawbacks")  # every insert into it now fails
    run = running()
    others = [t for t in _topics(kafka_settings, run) if t != kafka_settings.topic(CLAWBACKS)]
    await check.wait_caught_up(kafka_settings, sink.group_id, others)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while run.consumer.failed_writes < 3 and loop.time() < deadline:
        await asyncio.sleep(0.1)
    assert run.consumer.failed_writes >= 3  # retried, with backoff, and still retrying
    from sinks.consumer import group_lag

    # Nothing of the failing topic was committed, not even the records after the failure.
    assert await group_lag(kafka_settings, sink.group_id, [kafka_settings.topic(CLAWBACKS)]) == 5
    # Its partitions wait; the other topics went on. Between a backoff's end and the next
    # failure a partition is briefly resumed (read again), so look until one is paused.
    deadline = loop.time() + 30
    while not run.consumer.paused and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert run.consumer.paused

    client.command("ATTACH TABLE clawbacks")
    await check.wait_caught_up(kafka_settings, sink.group_id, _topics(kafka_settings, run))
    await run.close()
    assert check.counts(client) == scenario.EXPECTED_COUNTS
    assert check.balances(client) == scenario.EXPECTED_BALANCES
    assert check.daily(client) == scenario.EXPECTED_DAILY


async def test_a_restarted_consumer_resumes_from_its_commits(
    kafka_settings: KafkaSettings, sink: Any, client: Client, running: Any
) -> None:
    records = scenario.encoded_records()
    await check.produce(kafka_settings, records[:20])
    first = running()
    await check.wait_caught_up(kafka_settings, sink.group_id, _topics(kafka_settings, first))
    await first.close()
    await check.produce(kafka_settings, records[20:])
    second = running()
    await check.wait_caught_up(kafka_settings, sink.group_id, _topics(kafka_settings, second))
    await second.close()
    assert check.counts(client) == scenario.EXPECTED_COUNTS
    assert check.balances(client) == scenario.EXPECTED_BALANCES
