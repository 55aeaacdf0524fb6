"""The sink's writer on the real broker and engine: a window is written while the next
records are polled and decoded, writes stay one at a time and in offset order, and a
window that fails holds back every later record of its partition."""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from refstream.avro_codec import AvroCodec
from refstream.settings import KafkaSettings, SinkSettings
from refstream.topics import REWARDS as REWARDS_TOPIC
from sinks.base import SinkWriteError, Window
from sinks.consumer import SinkConsumer
from sinks.rewards import SPEC as REWARDS
from tests.support import poison
from tests.support import sink_checks as check
from tests.support import sink_scenario as scenario

CODEC = AvroCodec.for_schema("reward")


def rewards(first: int, n: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"alice", CODEC.encode(scenario._reward(f"rw_{i:04d}", "alice", f"cus_{i}", 1000, 200,
                                                 scenario.D1, "pending")))
        for i in range(first, first + n)
    ]  # fmt: skip


class Writes:
    """Wraps consumers' window writes: records each window's span, how many writes ran at
    once, and runs `before(span)` in the writer's thread ahead of each write."""

    def __init__(self, consumer: SinkConsumer, before: Callable[[Window], None]) -> None:
        self.spans: list[Window] = []
        self.events: list[tuple[str, int]] = []  # ("start" | "end", id of the consumer)
        self.most_at_once = 0
        self._running = 0
        self._lock = threading.Lock()
        self._before = before
        self.also(consumer)

    def also(self, consumer: SinkConsumer) -> None:
        """Counts `consumer`'s writes too (with the same `before`)."""
        write = consumer._write

        def counted(window: Any) -> None:
            with self._lock:
                self._running += 1
                self.most_at_once = max(self.most_at_once, self._running)
                self.spans.append(window.span)
                self.events.append(("start", id(consumer)))
            try:
                self._before(window.span)
                write(window)
            finally:
                with self._lock:
                    self._running -= 1
                    self.events.append(("end", id(consumer)))

        consumer._write = counted  # type: ignore[method-assign]


@pytest.fixture
def settings(tmp_path: Path) -> SinkSettings:
    return check.sink_settings(  # type: ignore[no-any-return]
        tmp_path / "ch", group_id=f"writer-{uuid.uuid4().hex[:8]}",
        batch_max_rows=3, batch_max_wait_ms=0,
    )  # fmt: skip


@pytest.fixture
def client(settings: SinkSettings) -> Iterator[Client]:
    with check.migrated_client(settings) as client:
        yield client


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def contiguous(spans: list[Window], first: int, last: int) -> bool:
    return (
        bool(spans)
        and spans[0].first_offset == first
        and spans[-1].last_offset == last
        and all(b.first_offset == a.last_offset + 1 for a, b in itertools.pairwise(spans))
    )


def stored(client: Client) -> tuple[int, int, int]:
    """(rewards stored, rewards physically stored, rewards the ledger counted)."""
    final = client.query("SELECT count() FROM rewards FINAL").result_rows[0][0]
    physical = client.query("SELECT count() FROM rewards").result_rows[0][0]
    counted = client.query("SELECT sum(rewards) FROM referrer_ledger_daily").result_rows[0][0]
    return final, physical, counted


async def test_a_window_is_written_while_the_next_records_are_polled(
    kafka_settings: KafkaSettings, settings: SinkSettings, client: Client
) -> None:
    release = threading.Event()
    settings = replace(settings, batch_max_rows=20)  # the next records fit one open window
    consumer = SinkConsumer(kafka_settings, settings, client, specs=[REWARDS])
    writes = Writes(consumer, lambda span: None if writes.spans[1:] else release.wait(60))
    first = await poison.produce_to_partition(kafka_settings, REWARDS_TOPIC, 0, rewards(0, 3))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(lambda: bool(writes.spans), "the first write")
        later = await poison.produce_to_partition(kafka_settings, REWARDS_TOPIC, 0, rewards(3, 10))
        # The first write still holds the writer: the next records are read meanwhile,
        # and no second write starts.
        await until(lambda: consumer.records_waiting == 10, "the next records read")
        assert len(writes.spans) == 1
        release.set()
        await check.wait_caught_up(kafka_settings, settings.group_id, consumer.topics)
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, 60)
    assert writes.most_at_once == 1
    assert contiguous(writes.spans, first[0], later[-1])  # in offset order, none twice
    assert stored(client) == (13, 13, 13)


async def test_a_failed_window_holds_back_its_partitions_later_records(
    kafka_settings: KafkaSettings, settings: SinkSettings, client: Client
) -> None:
    queued = asyncio.Event()
    loop = asyncio.get_running_loop()

    def fail_the_first_once_more_are_queued(span: Window) -> None:
        if len(writes.spans) == 1:
            asyncio.run_coroutine_threadsafe(asyncio.wait_for(queued.wait(), 60), loop).result()
            raise SinkWriteError("test: ClickHouse is down")

    consumer = SinkConsumer(kafka_settings, settings, client, specs=[REWARDS])
    writes = Writes(consumer, fail_the_first_once_more_are_queued)
    offsets = await poison.produce_to_partition(kafka_settings, REWARDS_TOPIC, 0, rewards(0, 3))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(lambda: bool(writes.spans), "the first write")
        offsets += await poison.produce_to_partition(
            kafka_settings, REWARDS_TOPIC, 0, rewards(3, 9)
        )
        # A full window of the same partition waits behind the failing one (and polling
        # stops there: at most one full window waits for the writer).
        await until(lambda: consumer.windows_taken >= 1, "the next window taken")
        queued.set()
        await check.wait_caught_up(kafka_settings, settings.group_id, consumer.topics)
    finally:
        queued.set()
        stop.set()
        await asyncio.wait_for(task, 60)
    assert consumer.failed_writes == 1
    # After the failure the partition starts again at the failed window: none of the
    # windows queued behind it was written ahead of it.
    assert writes.spans[1].first_offset == offsets[0]
    assert contiguous(writes.spans[1:], offsets[0], offsets[-1])
    assert writes.most_at_once == 1
    assert stored(client) == (12, 12, 12)


async def test_a_rebalance_waits_for_the_write_under_way(
    kafka_settings: KafkaSettings, settings: SinkSettings, client: Client
) -> None:
    # Records on every partition: whichever half the second consumer gets holds some.
    offsets = {}
    for partition in range(kafka_settings.events_partitions):
        offsets[partition] = await poison.produce_to_partition(
            kafka_settings, REWARDS_TOPIC, partition, rewards(partition * 3, 3)
        )
    release = threading.Event()
    first = SinkConsumer(kafka_settings, settings, client, specs=[REWARDS])
    writes = Writes(first, lambda span: None if writes.spans[1:] else release.wait(60))
    second = SinkConsumer(kafka_settings, settings, client, specs=[REWARDS])
    writes.also(second)  # one count across both
    stop = asyncio.Event()
    tasks = [asyncio.create_task(first.run(stop))]
    try:
        await until(lambda: bool(writes.spans), "the first write")
        generation = first._generation
        tasks.append(asyncio.create_task(second.run(stop)))
        await until(lambda: first._generation != generation, "the first consumer's revocation")
        # The held write keeps the rebalance from ending: the second consumer writes nothing
        # while it lasts (without the wait it would write its partitions' windows now).
        await asyncio.sleep(3)
        assert len(writes.spans) == 1
        release.set()
        await check.wait_caught_up(kafka_settings, settings.group_id, first.topics)
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    # The second consumer's first write began after the first one's held write ended.
    assert writes.events[:2] == [("start", id(first)), ("end", id(first))]
    assert ("start", id(second)) in writes.events[2:]  # it did get partitions
    total = sum(len(o) for o in offsets.values())
    assert stored(client)[0] == total
