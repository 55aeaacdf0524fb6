"""The sink consumer: every refstream topic into its ClickHouse table, exactly in effect.

Commit protocol (the body repeats these as `# Step N` comments):

1. Poll records (auto-commit off; read_committed, so aborted transactional writes of the
   workers never reach ClickHouse).
2. Turn each record into its table's row; a record that cannot be decoded or mapped becomes
   a `dead_letters` row with its bytes instead. Only a bug raises here (an error no input
   explains, e.g. a TypeError in a mapping): the sink then stops instead of dead-lettering
   every record. A `native` table (rewards) keeps the records undecoded instead: at step
   4 ClickHouse decodes the window (sinks/native_avro.py), and only a window it cannot
   take is turned into rows here, then, record by record.
3. Extend the topic-partition's open window (first..last offset) and its batches (each
   window holds its own rows, so it can be written while the next one fills).
4. A window is taken for writing when it holds `batch_max_rows` records, or, once the
   writer is free, when its oldest record waited `batch_max_wait_ms` (default 0: at once).
   One writer task writes the taken windows one at a time, in the order taken, in a
   thread, while steps 1-3 go on ("batch while busy": what arrives during a write waits
   for the next, so windows grow with the load). It writes each table's batch with
   `insert_deduplication_token = "{topic}:{partition}:{first}-{last}"`. The token is a pure
   function of the offsets, and the offsets of a window always hold the same records, so a
   window written again after a crash (written, not yet committed) with the same bounds is
   dropped by ClickHouse; one re-read with other bounds (windows depend on timing) is
   absorbed as below.
   If ClickHouse refuses the batch for its values (not for being unavailable), the batch
   is bisected (sinks/dead_letters_bisect.py): good rows are written in order under
   sub-batch tokens named by their offset span, each refused row becomes a `dead_letters`
   row (original bytes, coordinates, the engine's reason), written with the token
   "{topic}:{partition}:{first}-{last}:refused". Order: decode dead letters, the table
   (bisected), refusal dead letters; a crash anywhere in it re-reads the window, and every
   insert already done presents the same token again.
5. Only after every table accepted the window (refused rows being dead letters by then):
   commit offset last + 1 for the partition. Commits run one at a time, in order, each
   while the next window is written.
6. On a write error: forget the partition's open and taken windows (none of its later
   records is written ahead of the failed window) and pause the partition; the others go
   on (one broken table does not stop the rest). After an exponential backoff, rewind it
   to its committed offset and resume: its records are read again, never dropped, and no
   offset is committed past an unwritten one. Polling goes on meanwhile, which keeps the
   group membership.
7. On a rebalance: forget the open and taken windows and pauses (their records return
   with the partition to whoever owns it next) and ignore records polled before it; a
   window being written then is not committed, and the revocation waits for its write
   and for the commit under way (the next owner never writes alongside this process).

Exactness does not rest on the token alone: a record re-emitted upstream lands in another
window (another token), and a crash between two tables' writes of one window leaves one of
them written; both are absorbed by the ReplacingMergeTree tables, read with FINAL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.client import Client

from refstream.avro_codec import AvroCodec
from refstream.metrics import SinkMetrics
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
from sinks.base import (
    Batch,
    ClickHouseSink,
    KafkaRecord,
    RefusedRow,
    SinkBugError,
    SinkWriteError,
    SourceRecord,
    Window,
    source_of,
)
from sinks.ledger_sink import table_sink
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
# What odd-but-decodable input raises while decoding or mapping a record: AvroDecodeError
# and RowError are ValueErrors, as are json's and int()'s refusals (over-long digit
# strings); deeply nested JSON in a body raises RecursionError. Anything else is a bug.
BAD_INPUT: tuple[type[Exception], ...] = (ValueError, RecursionError, OverflowError)
# Suffix of the token of a window's second dead-letter insert (rows refused by a table).
REFUSED_TOKEN_SUFFIX = ":refused"  # noqa: S105 - a dedup token, not a secret


@dataclass
class _Window:
    """One topic-partition's records first..last, from the poll that opens it to its commit.

    It holds its own rows (and a native table's records), so one window can be written
    while the next one of the same partition fills up.
    """

    tp: TopicPartition
    first_offset: int
    last_offset: int
    count: int
    opened_at: float
    generation: int  # of the assignment it was read in (step 7)
    rows: Batch  # the table's rows (Python-decoded topics, or a native window's fallback)
    dead: Batch  # decode dead letters
    raw: list[KafkaRecord] = field(default_factory=list)  # a native table's records

    @property
    def span(self) -> Window:
        return Window(self.tp.topic, self.tp.partition, self.first_offset, self.last_offset)


@dataclass
class _Paused:
    resume_at: float
    backoff_ms: int


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: SinkConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Step 7: whatever is open or paused belongs to the previous assignment; the
        # rebalance goes on only once the write and commit under way ended.
        self.owner.forget_everything("rebalance")
        await self.owner.settle_in_flight()

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("sink_partitions_assigned", extra={"partitions": len(assigned)})


class SinkConsumer:
    """Consumes the topics of `specs` and writes their tables through `client`.

    Two tasks share the state, on one event loop: `run` polls, decodes and fills the open
    windows; the writer (`_write_loop`) takes windows and writes them one at a time, in a
    thread, then commits. Each side changes the state only between its awaits, so each
    sees it whole.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        sink: SinkSettings,
        client: Client,
        specs: Sequence[TableSpec] = ALL_SPECS,
        clock: Callable[[], float] = time.monotonic,
        metrics: SinkMetrics | None = None,
    ) -> None:
        self._kafka = kafka
        self._metrics = metrics if metrics is not None else SinkMetrics()
        self._settings = sink
        self._clock = clock
        self._dead = ClickHouseSink(dead_letters.SPEC, client)
        self._codecs: dict[str, AvroCodec] = {}
        self._sinks: dict[str, ClickHouseSink] = {}
        for spec in specs:
            topic = kafka.topic(spec.topic)
            self._codecs[topic] = AvroCodec.for_schema(spec.schema)
            self._sinks[topic] = (
                self._dead if spec is dead_letters.SPEC else table_sink(spec, client)
            )
        self._open: dict[TopicPartition, _Window] = {}
        # Windows taken for writing, in the order taken; the writer writes them in order.
        self._taken: deque[_Window] = deque()
        self._writing: _Window | None = None
        self._committing: asyncio.Task[None] | None = None  # the last written window's commit
        self._paused: dict[TopicPartition, _Paused] = {}
        self._backoff_ms: dict[TopicPartition, int] = {}
        self._generation = 0
        self._changed = asyncio.Event()  # records were added or windows taken
        self._progress = asyncio.Event()  # the writer took or finished a window, or idles
        self.committed_windows = 0  # observability and tests
        self.failed_writes = 0

    @property
    def topics(self) -> list[str]:
        return sorted(self._sinks)

    @property
    def paused(self) -> list[TopicPartition]:
        return sorted(self._paused)

    @property
    def records_waiting(self) -> int:
        """Records read and not yet handed to a write (open and taken windows)."""
        return sum(w.count for w in self._open.values()) + sum(w.count for w in self._taken)

    @property
    def windows_taken(self) -> int:
        """Windows closed for writing that wait for the writer (not the one it writes)."""
        return len(self._taken)

    def forget_everything(self, why: str) -> None:
        self._generation += 1
        if self._open or self._taken or self._paused:
            log.info("sink_state_dropped", extra={"why": why, "windows": len(self._open),
                                                  "taken": len(self._taken),
                                                  "paused": len(self._paused)})  # fmt: skip
        self._open.clear()
        self._taken.clear()  # a window being written finishes, but is not committed
        self._paused.clear()

    async def settle_in_flight(self) -> None:
        """Wait for the window being written and the commit under way, if any (step 7): a
        partition's next owner never writes while this process still writes it."""
        while self._writing is not None:
            self._progress.clear()
            await self._progress.wait()
        await self._settle_commit()

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
        writer = asyncio.create_task(self._write_loop(consumer), name="sink-writer")
        try:
            while not stop.is_set():
                _raise_if_failed(writer)
                await self._resume_due(consumer)
                assigned = consumer.assignment()
                if assigned and assigned <= self._paused.keys():
                    # Everything waits for ClickHouse; a poll would return at once.
                    await asyncio.sleep(_POLL_MS / 1000)
                await self._wait_for_room(writer)
                await self._poll_once(consumer)
            await self._drain(writer)
        finally:
            if not writer.done():
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if self._committing is not None:  # a commit under way ends before the consumer
                await asyncio.gather(self._committing, return_exceptions=True)
            await consumer.stop()

    async def _wait_for_room(self, writer: asyncio.Task[None]) -> None:
        """Poll on only while less than a full window waits for the writer (memory bound)."""
        while sum(w.count for w in self._taken) >= self._settings.batch_max_rows:
            _raise_if_failed(writer)
            self._progress.clear()
            await self._progress.wait()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        generation = self._generation
        # Step 1
        polled = await consumer.getmany(
            timeout_ms=_POLL_MS, max_records=self._settings.batch_max_rows
        )
        if self._generation != generation:
            return  # Step 7: polled before a rebalance; the new owner re-reads them
        max_rows = self._settings.batch_max_rows
        for tp, records in polled.items():
            if tp in self._paused:
                continue  # Step 6: read again from the committed offset after the pause
            # Records are added up to the window's room at once. Nothing here awaits, so
            # the writer cannot pause the partition or take its window meanwhile.
            start = 0
            while start < len(records):
                window = self._open.get(tp)
                room = max_rows - (window.count if window else 0)
                chunk = records[start : start + room]
                self._add(tp, chunk)
                start += len(chunk)
                if self._open[tp].count >= max_rows:
                    self._take(tp)  # full: written next, whatever its age
        if polled:
            self._changed.set()

    def _add(self, tp: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Consecutive records of one partition (at least one) into its open window."""
        window = self._open.get(tp)
        if window is None:
            window = self._open[tp] = _Window(
                tp, records[0].offset, records[0].offset, 0, self._clock(), self._generation,
                Batch(tp.topic, tp.partition), Batch(tp.topic, tp.partition),
            )  # fmt: skip
        if self._sinks[tp.topic].native:
            # Step 2 comes at the write: ClickHouse decodes the window (sinks/native_avro.py),
            # or, when it cannot, `_decode` does then what it does here for other topics.
            window.raw.extend(records)
        else:
            for record in records:
                self._decode(window, source_of(record))
        # Step 3
        window.last_offset = records[-1].offset
        window.count += len(records)

    def _decode(self, window: _Window, source: SourceRecord) -> None:
        topic, partition = window.tp.topic, window.tp.partition
        offset, value = source.offset, source.value
        main = self._sinks[topic]
        # Step 2
        try:
            if value is None:
                raise RowError("record has no value")
            window.rows.add(main.spec.to_row(self._codecs[topic].decode(value)), source)
        except BAD_INPUT as exc:  # a bad record is a dead letter, never a crash
            failure = dead_letters.sink_failure_row(
                topic, partition, offset, source.key, value, source.timestamp_ms, exc
            )
            # The dead-letter topic's own bad records go with its rows, in one insert.
            (window.rows if main is self._dead else window.dead).add(failure, source)
            log.warning(
                "sink_dead_letter",
                extra={"topic": topic, "partition": partition, "offset": offset,
                       "error_type": type(exc).__name__,
                       "error": dead_letters.utf8_safe(str(exc)[:300])},
            )  # fmt: skip
        except Exception as exc:
            # Not an input problem: dead-lettering would bury every record behind a bug.
            log.critical(
                "sink_mapping_bug",
                extra={"topic": topic, "partition": partition, "offset": offset,
                       "error_type": type(exc).__name__, "error": str(exc)[:300]},
            )  # fmt: skip
            raise SinkBugError(
                f"mapping {topic}:{partition}:{offset} failed unexpectedly: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _take(self, tp: TopicPartition) -> None:
        self._taken.append(self._open.pop(tp))
        self._changed.set()

    def _take_due(self) -> None:
        """Batch while busy: once the writer is free, every open window whose oldest record
        waited `batch_max_wait_ms` (0: every open window) is taken, oldest first. What
        arrives during a write waits for the next, so windows grow with the load."""
        now, wait_s = self._clock(), self._settings.batch_max_wait_ms / 1000
        for tp, window in sorted(self._open.items(), key=lambda item: item[1].opened_at):
            if now - window.opened_at >= wait_s:
                self._take(tp)

    def _next_due_s(self) -> float | None:
        if not self._open:
            return None
        oldest = min(window.opened_at for window in self._open.values())
        return max(0.0, oldest + self._settings.batch_max_wait_ms / 1000 - self._clock())

    async def _write_loop(self, consumer: AIOKafkaConsumer) -> None:
        """The writer: one window at a time, in the order taken (step 4), then its commit
        (step 5). Polling goes on while it writes; it never runs two writes at once."""
        while True:
            if not self._taken:
                self._take_due()
            if not self._taken:
                self._progress.set()  # idle
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), self._next_due_s())
                except TimeoutError:
                    pass
                continue
            window = self._taken.popleft()
            self._writing = window
            self._progress.set()  # room for the poller (`_wait_for_room`)
            try:
                await self._write_and_commit(consumer, window)
            finally:
                self._writing = None
                self._progress.set()

    async def _write_and_commit(self, consumer: AIOKafkaConsumer, window: _Window) -> None:
        span = window.span
        table = self._sinks[span.topic].spec.table
        # Step 4: one insert per table; a failure leaves the window uncommitted.
        try:
            await asyncio.to_thread(self._write, window)
        except SinkWriteError as exc:
            self._metrics.insert_failures.labels(table, type(exc).__name__).inc()
            await self._settle_commit()  # the rewind after the pause reads the commits
            if self._generation == window.generation:
                self._pause(consumer, window.tp, exc)
            return
        except SinkBugError as exc:
            log.critical("sink_stopped_on_bug", extra={"window": span.dedup_token,
                                                       "error": str(exc)[:1000]})  # fmt: skip
            raise
        if self._generation != window.generation:
            return  # Step 7: written, but the partition moved on; the owner re-reads it
        # Step 5, while the next window is written: commits stay in order, one at a time.
        await self._settle_commit()
        self._committing = asyncio.create_task(self._commit(consumer, window))

    async def _settle_commit(self) -> None:
        """Wait for the commit under way, if any (before the next, a pause or a rewind)."""
        if self._committing is not None:
            await self._committing

    async def _commit(self, consumer: AIOKafkaConsumer, window: _Window) -> None:
        span = window.span
        table = self._sinks[span.topic].spec.table
        try:
            await consumer.commit({window.tp: span.last_offset + 1})
        except (CommitFailedError, KafkaError) as exc:
            # Not committed: the window is read again and its token makes the write a no-op.
            log.warning("sink_commit_failed", extra={"window": span.dedup_token,
                                                     "error": str(exc)[:300]})  # fmt: skip
            return
        self.committed_windows += 1
        self._metrics.rows.labels(table).inc(window.count)
        self._metrics.batch_seconds.labels(table).observe(self._clock() - window.opened_at)
        self._backoff_ms.pop(window.tp, None)
        log.debug("sink_window_committed", extra={"window": span.dedup_token,
                                                  "records": window.count})  # fmt: skip

    def _write(self, window: _Window) -> None:
        """Step 4 for one window (in the writer's thread; the window is the writer's alone)."""
        span = window.span
        main = self._sinks[span.topic]
        if main.native and window.raw:
            with self._metrics.insert_seconds.labels(main.spec.table).time():
                if main.write_native(window.raw, span):
                    return
            for record in window.raw:  # ClickHouse could not take them as they are
                self._decode(window, source_of(record))
        if main is not self._dead:
            self._only_accepted(self._dead.write_batch(window.dead, span), span)
        with self._metrics.insert_seconds.labels(main.spec.table).time():
            refused = main.write_batch(window.rows, span)
        if refused:
            self._metrics.dead_letters.labels("sink", "refused_by_table").inc(len(refused))
            letters = Batch(span.topic, span.partition)
            for item in refused:
                letters.add(self._refused_dead_letter(main.spec, span, item), item.source)
            second = replace(span, token_suffix=REFUSED_TOKEN_SUFFIX)
            self._only_accepted(self._dead.write_batch(letters, second), span)

    @staticmethod
    def _refused_dead_letter(spec: TableSpec, window: Window, item: RefusedRow) -> tuple:
        named = dict(zip(spec.columns, item.row, strict=False))
        event_id = named.get("event_id") or named.get("source_event_id") or ""
        source = item.source
        log.warning(
            "sink_row_refused",
            extra={"topic": window.topic, "partition": window.partition,
                   "offset": source.offset, "table": spec.table,
                   "reason": dead_letters.utf8_safe(item.reason[:300])},
        )  # fmt: skip
        return dead_letters.refused_row(
            window.topic, window.partition, source.offset, source.key, source.value,
            source.timestamp_ms, spec.table, item.reason,
            event_id if isinstance(event_id, str) else "",
        )  # fmt: skip

    @staticmethod
    def _only_accepted(refused: list[RefusedRow], window: Window) -> None:
        # A dead letter is built by this sink from bytes and UTF-8-safe text; the table
        # refusing one means refstream is wrong, and there is nowhere left to put it.
        if refused:
            raise SinkBugError(
                f"dead_letters refused {len(refused)} dead letter(s) of {window.dedup_token}: "
                f"{refused[0].reason}"
            )

    def _pause(self, consumer: AIOKafkaConsumer, tp: TopicPartition, exc: SinkWriteError) -> None:
        # Step 6: nothing of the partition after the failed window may be written before it.
        self.failed_writes += 1
        backoff_ms = self._backoff_ms.get(tp, self._settings.retry_initial_ms)
        self._backoff_ms[tp] = min(backoff_ms * 2, self._settings.retry_max_ms)
        self._paused[tp] = _Paused(self._clock() + backoff_ms / 1000, backoff_ms)
        self._open.pop(tp, None)
        self._taken = deque(window for window in self._taken if window.tp != tp)
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

    async def _drain(self, writer: asyncio.Task[None]) -> None:
        """On stop: every open window is taken and written (and committed). A window that
        fails here stays uncommitted: the next run reads it again."""
        for tp in sorted(self._open, key=lambda tp: self._open[tp].opened_at):
            self._take(tp)
        while self._taken or self._writing is not None:
            _raise_if_failed(writer)
            self._progress.clear()
            await self._progress.wait()
        _raise_if_failed(writer)
        await self._settle_commit()


def _raise_if_failed(writer: asyncio.Task[None]) -> None:
    """The writer stops only on a bug (SinkBugError): the sink stops with it."""
    if writer.done():
        writer.result()
        raise SinkBugError("the sink's writer stopped")  # pragma: no cover - never returns


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
