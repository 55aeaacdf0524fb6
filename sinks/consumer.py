"""The sink consumer: every refstream topic into its ClickHouse table, exactly in effect.

Commit protocol (the body repeats these as `# Step N` comments):

1. Poll records (auto-commit off; read_committed, so aborted transactional writes of the
   workers never reach ClickHouse).
2. Turn each record into its table's row; a record that cannot be decoded or mapped becomes
   a `dead_letters` row with its bytes instead. Nothing in this step raises.
3. Extend the topic-partition's open window (first..last offset) and its batches.
4. When the window holds `batch_max_rows` records or its oldest record waited
   `batch_max_wait_ms`, write each table's batch of that window with
   `insert_deduplication_token = "{topic}:{partition}:{first}-{last}"`. The token is a pure
   function of the offsets, and the offsets of a window always hold the same records, so a
   window written again after a crash (written, not yet committed) is dropped by
   ClickHouse.
5. Only after every table accepted the window: commit offset last + 1 for the partition.
6. On a write error: forget the partition's window (its batches are cleared in a
   `finally`) and pause the partition; the others go on (one broken table does not stop
   the rest). After an exponential backoff, rewind it to its committed offset and resume:
   its records are read again, never dropped, and no offset is committed past an
   unwritten one. Polling goes on meanwhile, which keeps the group membership.
7. On a rebalance: forget the open windows and pauses (their records return with the
   partition to whoever owns it next) and ignore records polled before it.

Exactness does not rest on the token alone: a record re-emitted upstream lands in another
window (another token), and a crash between two tables' writes of one window leaves one of
them written; both are absorbed by the ReplacingMergeTree tables, read with FINAL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.client import Client

from refstream.avro_codec import AvroCodec
from refstream.settings import KafkaSettings, SinkSettings
from sinks import (
    attributions,
    clawbacks,
    dead_letters,
    lifecycle,
    payouts,
    reward_status,
    rewards,
    stripe_events,
)
from sinks.base import ClickHouseSink, SinkWriteError, Window
from sinks.rows import RowError, TableSpec

log = logging.getLogger(__name__)

ALL_SPECS: tuple[TableSpec, ...] = (
    stripe_events.SPEC,
    attributions.SPEC,
    rewards.SPEC,
    clawbacks.SPEC,
    reward_status.SPEC,
    payouts.SPEC,
    lifecycle.SPEC,
    dead_letters.SPEC,
)
# How long one poll may block: bounds how late a time-due window is noticed.
_POLL_MS = 200


@dataclass
class _OpenWindow:
    first_offset: int
    last_offset: int
    count: int
    opened_at: float


@dataclass
class _Paused:
    resume_at: float
    backoff_ms: int


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: SinkConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Step 7: whatever is open or paused belongs to the previous assignment.
        self.owner.forget_everything("rebalance")

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("sink_partitions_assigned", extra={"partitions": len(assigned)})


class SinkConsumer:
    """Consumes the topics of `specs` and writes their tables through `client`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        sink: SinkSettings,
        client: Client,
        specs: Sequence[TableSpec] = ALL_SPECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka = kafka
        self._settings = sink
        self._clock = clock
        self._dead = ClickHouseSink(dead_letters.SPEC, client)
        self._codecs: dict[str, AvroCodec] = {}
        self._sinks: dict[str, ClickHouseSink] = {}
        for spec in specs:
            topic = kafka.topic(spec.topic)
            self._codecs[topic] = AvroCodec.for_schema(spec.schema)
            self._sinks[topic] = (
                self._dead if spec is dead_letters.SPEC else ClickHouseSink(spec, client)
            )
        self._windows: dict[TopicPartition, _OpenWindow] = {}
        self._paused: dict[TopicPartition, _Paused] = {}
        self._backoff_ms: dict[TopicPartition, int] = {}
        self._generation = 0
        self.committed_windows = 0  # observability and tests
        self.failed_writes = 0

    @property
    def topics(self) -> list[str]:
        return sorted(self._sinks)

    @property
    def paused(self) -> list[TopicPartition]:
        return sorted(self._paused)

    def _tables_of(self, topic: str) -> list[ClickHouseSink]:
        main = self._sinks[topic]
        return [main] if main is self._dead else [self._dead, main]

    def forget_everything(self, why: str) -> None:
        self._generation += 1
        if self._windows or self._paused:
            log.info("sink_state_dropped", extra={"why": why, "windows": len(self._windows),
                                                  "paused": len(self._paused)})  # fmt: skip
        self._windows.clear()
        self._paused.clear()
        for sink in {*self._sinks.values(), self._dead}:
            sink.clear()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap,
            group_id=self._settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        consumer.subscribe(self.topics, listener=_Rebalance(self))
        await consumer.start()
        try:
            while not stop.is_set():
                await self._resume_due(consumer)
                assigned = consumer.assignment()
                if assigned and assigned <= self._paused.keys():
                    # Everything waits for ClickHouse; a poll would return at once.
                    await asyncio.sleep(_POLL_MS / 1000)
                await self._poll_once(consumer)
            await self._flush_all_on_stop(consumer)
        finally:
            await consumer.stop()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        generation = self._generation
        # Step 1
        polled = await consumer.getmany(
            timeout_ms=_POLL_MS, max_records=self._settings.batch_max_rows
        )
        for tp, records in polled.items():
            for record in records:
                if self._generation != generation:
                    return  # Step 7: polled before a rebalance; the new owner re-reads them
                if tp in self._paused:
                    break  # Step 6: the rest of this partition is read again after the pause
                self._add(tp, record)
                if self._windows[tp].count >= self._settings.batch_max_rows:
                    await self._flush(consumer, tp)
        now = self._clock()
        wait_s = self._settings.batch_max_wait_ms / 1000
        for tp in [tp for tp, w in self._windows.items() if now - w.opened_at >= wait_s]:
            if tp in self._windows:  # a rebalance during an earlier flush may have cleared it
                await self._flush(consumer, tp)

    def _add(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        offset, value = record.offset, record.value
        # Step 2
        try:
            if value is None:
                raise RowError("record has no value")
            row = self._sinks[tp.topic].spec.to_row(self._codecs[tp.topic].decode(value))
            self._sinks[tp.topic].add(row, tp.topic, tp.partition)
        except Exception as exc:  # noqa: BLE001 - any bad record is a dead letter, never a crash
            failure = dead_letters.sink_failure_row(
                tp.topic, tp.partition, offset, record.key, value, record.timestamp, exc
            )
            self._dead.add(failure, tp.topic, tp.partition)
            log.warning(
                "sink_dead_letter",
                extra={"topic": tp.topic, "partition": tp.partition, "offset": offset,
                       "error_type": type(exc).__name__, "error": str(exc)[:300]},
            )  # fmt: skip
        # Step 3
        window = self._windows.get(tp)
        if window is None:
            self._windows[tp] = _OpenWindow(offset, offset, 1, self._clock())
        else:
            window.last_offset = offset
            window.count += 1

    async def _flush(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        open_window = self._windows.pop(tp)
        generation = self._generation
        window = Window(tp.topic, tp.partition, open_window.first_offset, open_window.last_offset)
        # Step 4: one insert per table; a failure leaves the window uncommitted.
        try:
            await asyncio.to_thread(self._write, window)
        except SinkWriteError as exc:
            self._pause(consumer, tp, exc)
            return
        if self._generation != generation:
            return  # Step 7: written, but the partition moved on; the owner re-reads it
        # Step 5
        try:
            await consumer.commit({tp: window.last_offset + 1})
        except (CommitFailedError, KafkaError) as exc:
            # Not committed: the window is read again and its token makes the write a no-op.
            log.warning("sink_commit_failed", extra={"window": window.dedup_token,
                                                     "error": str(exc)[:300]})  # fmt: skip
            return
        self.committed_windows += 1
        self._backoff_ms.pop(tp, None)
        log.debug("sink_window_committed", extra={"window": window.dedup_token,
                                                  "records": open_window.count})  # fmt: skip

    def _write(self, window: Window) -> None:
        tables = self._tables_of(window.topic)
        try:
            for sink in tables:
                sink.flush(window)
        finally:
            for sink in tables:  # a failure in the first table must not leave the second's rows
                sink.clear(window.topic, window.partition)

    def _pause(self, consumer: AIOKafkaConsumer, tp: TopicPartition, exc: SinkWriteError) -> None:
        # Step 6
        self.failed_writes += 1
        backoff_ms = self._backoff_ms.get(tp, self._settings.retry_initial_ms)
        self._backoff_ms[tp] = min(backoff_ms * 2, self._settings.retry_max_ms)
        self._paused[tp] = _Paused(self._clock() + backoff_ms / 1000, backoff_ms)
        self._windows.pop(tp, None)
        for sink in self._tables_of(tp.topic):
            sink.clear(tp.topic, tp.partition)
        if tp in consumer.assignment():
            consumer.pause(tp)
        log.error(
            "sink_write_failed",
            extra={"topic": tp.topic, "partition": tp.partition, "error": str(exc),
                   "retry_in_ms": backoff_ms},
        )  # fmt: skip

    async def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = self._clock()
        due = [tp for tp, paused in self._paused.items() if paused.resume_at <= now]
        if not due:
            return
        generation = self._generation
        assigned = consumer.assignment()
        mine = [tp for tp in due if tp in assigned]
        await rewind_to_committed(consumer, mine)
        if self._generation != generation:
            return  # a rebalance reset positions and pauses meanwhile
        for tp in due:
            del self._paused[tp]
        consumer.resume(*mine)
        log.info("sink_partitions_resumed", extra={"partitions": [str(tp) for tp in mine]})

    async def _flush_all_on_stop(self, consumer: AIOKafkaConsumer) -> None:
        # A window that fails here stays uncommitted: the next run reads it again.
        for tp in list(self._windows):
            if tp in self._windows:
                await self._flush(consumer, tp)


async def rewind_to_committed(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
) -> None:
    """Position each partition at its committed offset (the beginning when none is)."""
    for tp in partitions:
        offset = await consumer.committed(tp)
        if offset is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, offset)


async def group_lag(kafka: KafkaSettings, group_id: str, topics: Sequence[str]) -> int:
    """Offsets of `topics` not yet committed by `group_id` (all of them if none is).

    With transactional producers a partition's end offset counts the commit markers too,
    so a caught-up group can show a lag of a few offsets there.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    try:
        partitions = []
        for described in await admin.describe_topics(list(topics)):
            if described.get("error_code") or not described.get("partitions"):
                raise ValueError(f"topic {described.get('topic')} does not exist")
            partitions += [TopicPartition(described["topic"], p["partition"])
                           for p in described["partitions"]]  # fmt: skip
        ends = await probe.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
        return sum(
            ends[tp]
            - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
            for tp in partitions
        )
    finally:
        await probe.stop()
        await admin.close()
