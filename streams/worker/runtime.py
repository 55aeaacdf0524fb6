"""The worker's consumer loop: one consumer group over every agent's topics, batches decided
in memory, outputs and state made durable before offsets are committed.

Per batch (up to REFSTREAM_WORKER_BATCH_MAX records, as many as the fetcher has):
  1. decide every record in order, each against the table state the records before it
     left (a dict per table partition), queuing its outputs without waiting;
  2. wait for the acks of every output and dead letter of the batch;
  3. write the changed table keys to their changelogs and wait for those acks;
  4. commit the batch's offsets.
A crash before 3 replays the batch from the old state and re-emits identical records
(deterministic ids); a crash after 3 finds the work recorded in the state. Steps 2-4 of a
batch run while the next batch is decided (whose outputs may go out before this batch's
state is written: a crash then replays both from the old state, identically); the next
batch's steps 2-4 start only once this batch is committed, so at most one batch is in
flight, and a rebalance and a stop wait for it. A record is never
skipped: offsets are committed only here, for records this loop decided, and a batch that a
rebalance overtook is fetched again (faust-streaming's consumer committed past records it
had never delivered after a rebalance: docs/OPERATIONS.md).

Rebalances wait for the batch in hand (the revocation callback takes the batch lock), so a
partition changes hands only between batches; on assignment its tables are read from their
changelogs before any of its records is decided. Each worker sends the ticks of the
partitions it owns (time-driven decisions ride on tick records, decided where the tables
live).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from refstream.avro_codec import AvroCodec
from refstream.metrics import WorkerMetrics
from refstream.settings import Settings
from streams.errors import crash_loudly
from streams.worker.clock import now_s
from streams.worker.cores import CustomerCore
from streams.worker.customers import CustomerAgent
from streams.worker.due import DueIndex
from streams.worker.emitter import Emitter, Sent
from streams.worker.links import LinkAgent
from streams.worker.referrers import ReferrerAgent
from streams.worker.stripe_lookup import CustomerLookup, LookupConfig
from streams.worker.tables import Changes, TableStore
from streams.worker.topology import (
    AGENTS,
    CUSTOMER_TICKS,
    CUSTOMERS,
    PAYMENT_LINKS,
    REFERRER_TICKS,
    TABLES,
    changelog_topic,
    group_id,
)
from streams.worker_programs import ProgramCache

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: WorkerRuntime) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.worker.batch_lock:  # the batch in hand is committed first
            try:
                await self.worker.finished()
            except Exception as exc:  # noqa: BLE001 -- aiokafka would only log it: stop loudly
                crash_loudly("worker", exc)
            self.worker.generation += 1
            self.worker.ready = set()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # The fetcher starts on new partitions before this returns: the lock keeps their
        # records waiting until the tables are read.
        async with self.worker.batch_lock:
            await self.worker.assign(set(assigned))


class WorkerRuntime:
    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        kafka, conf = settings.kafka, settings.streams
        self.group = group_id(settings)
        self.source_of = {kafka.topic(t): t for agent in AGENTS for t in agent.sources}
        self.store = TableStore({t: changelog_topic(settings, t) for t in TABLES})
        self.programs = ProgramCache(kafka)
        self.stats: Counter[str] = Counter()
        self.batch_lock = asyncio.Lock()
        self.generation = 0
        self.ready: set[TopicPartition] = set()  # assigned, and their tables read
        self.stopping = asyncio.Event()
        self._finishing: asyncio.Task[None] | None = None  # steps 2-4 of the last batch
        self.producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            acks="all",
            enable_idempotence=True,  # no duplicates or reordering from producer retries
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),  # co-partitioned
            session_timeout_ms=conf.session_timeout_s * 1000,
            heartbeat_interval_ms=max(1000, conf.session_timeout_s * 250),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        # "earliest": a restore from offset 0 of a changelog whose start moved must read
        # from its first record, never jump to its end.
        self.restorer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        self.emitter = Emitter(self.producer, kafka.topic, metrics)
        core = CustomerCore.from_settings(settings)
        lookup = None
        if conf.stripe_api_key is not None:
            lookup = CustomerLookup(
                LookupConfig(conf.stripe_api_key, conf.stripe_api_base, core.config.keys)
            )
        self.customers = CustomerAgent(
            core, self.programs, self.emitter, metrics, lookup, self.stats
        )
        self.links = LinkAgent(self.emitter)
        self.referrers = ReferrerAgent(self.emitter)
        self.tick_codec = AvroCodec.for_schema("tick")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.producer.start()
        await self.restorer.start()
        await self.consumer.start()
        tasks = [
            asyncio.create_task(self.programs.run(), name="programs"),
            asyncio.create_task(self._send_ticks(), name="ticks"),
            asyncio.create_task(self._log_stats(), name="stats"),
        ]
        try:
            await self.programs.loaded.wait()  # never decide against half-read programs
            self.consumer.subscribe(topics=sorted(self.source_of), listener=_Rebalance(self))
            log.info("worker_started", extra={"group": self.group})
            await self._consume()
            await self.finished()
        except Exception as exc:  # noqa: BLE001 -- a bug or a broker gone for good: stop loudly
            crash_loudly("worker", exc)
        finally:
            for task in tasks:
                task.cancel()
            await self.consumer.stop()  # leaves the group: the others take over at once
            await self.restorer.stop()
            await self.producer.stop()
            log.info("worker_stopped", extra=dict(self.stats))

    async def _consume(self) -> None:
        stopping = asyncio.create_task(self.stopping.wait())
        max_records = self.settings.streams.batch_max
        while not self.stopping.is_set():
            self._check_finishing()
            generation = self.generation
            fetch = asyncio.create_task(
                self.consumer.getmany(timeout_ms=500, max_records=max_records)
            )
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch
                return
            batch = fetch.result()
            if not batch:
                continue
            async with self.batch_lock:
                if generation != self.generation:  # a rebalance came between fetch and decide
                    self._fetch_again(batch)
                    continue
                unready = {tp: records for tp, records in batch.items() if tp not in self.ready}
                self._fetch_again(unready)
                ready = {tp: records for tp, records in batch.items() if tp in self.ready}
                if ready:
                    await self._decide(ready)

    def _fetch_again(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Records fetched before a rebalance, or before their tables were read: read them
        again from the first one (never before the committed offset: this loop commits
        only what it decided)."""
        assigned = self.consumer.assignment()
        for tp, records in batch.items():
            if tp in assigned:
                self.consumer.seek(tp, records[0].offset)

    async def _decide(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Step 1 for a batch; steps 2-4 go on in the background (`_finish`) while the
        next batch is decided, one batch after the other."""
        started = time.perf_counter()
        count = 0
        for tp, records in batch.items():
            source = self.source_of[tp.topic]
            for record in records:
                await self._handle(source, record)
            count += len(records)
        self.customers.end_batch()  # the batch's decoded states, encoded once each
        # What this batch sent and changed, taken now: the next batch's go with the next.
        sent, changes = self.emitter.take(), self.store.take_dirty()
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        await self.finished()  # the batch before: committed first (at most one in flight)
        self._finishing = asyncio.create_task(
            self._finish(sent, changes, offsets, count, started), name="finish"
        )

    async def finished(self) -> None:
        """Wait until every decided batch is committed (a failure raises here)."""
        if self._finishing is not None:
            finishing, self._finishing = self._finishing, None
            await finishing

    def _check_finishing(self) -> None:
        """A batch whose outputs or state could not be written stops the worker."""
        if self._finishing is not None and self._finishing.done():
            self._finishing.result()  # raises what it raised
            self._finishing = None

    async def _finish(
        self,
        sent: Sent,
        changes: Changes,
        offsets: dict[TopicPartition, int],
        count: int,
        started: float,
    ) -> None:
        await self.emitter.settle(sent)  # 2: every output acknowledged
        await self.store.write(self.producer, changes)  # 3: then the state
        try:
            await self.consumer.commit(offsets)  # 4
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the new owner replays from the last commit, which finds
            # this batch's work in the state (or re-emits identical records).
            log.warning("commit_failed", extra={"error": str(exc)[:300]})
        elapsed = time.perf_counter() - started
        for _ in range(count):
            self.metrics.decision_seconds.observe(elapsed)
        self.stats["records"] += count
        self.stats["batches"] += 1
        for tp in offsets:
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - offsets[tp])
                self.metrics.consumer_lag.labels(self.group, tp.topic, str(tp.partition)).set(lag)

    async def _handle(self, source: str, record: ConsumerRecord) -> None:
        p, table = record.partition, self.store.table
        if source in CUSTOMERS.sources:
            due = DueIndex(table("customer-due", p))
            await self.customers.handle(record, source, table("customers", p), due)
        elif source in PAYMENT_LINKS.sources:
            await self.links.handle(record, table("payment-owners", p))
        else:
            due = DueIndex(table("referrer-due", p))
            await self.referrers.handle(
                record, source, table("referrers", p), table("reward-entries", p), due
            )

    async def assign(self, assigned: set[TopicPartition]) -> None:
        """Hold the tables of the assigned partitions, read from their changelogs."""
        wanted = set()
        for tp in assigned:
            source = self.source_of[tp.topic]
            for agent in AGENTS:
                if source in agent.sources:
                    wanted |= {(name, tp.partition) for name in agent.tables}
        started = time.perf_counter()
        read = await self.store.restore(self.restorer, wanted)
        self.ready = set(assigned)
        log.info(
            "partitions_assigned",
            extra={
                "partitions": sorted({tp.partition for tp in assigned}),
                "changelog_records_read": read,
                "restore_s": round(time.perf_counter() - started, 3),
            },
        )

    async def _send_ticks(self) -> None:
        """A tick for each tick partition this process owns, every tick interval."""
        kafka = self.settings.kafka
        tick_topics = {kafka.topic(CUSTOMER_TICKS), kafka.topic(REFERRER_TICKS)}
        while True:
            await asyncio.sleep(self.settings.streams.tick_interval_s)
            value = self.tick_codec.encode({"now_s": now_s()})
            try:
                sent = [
                    await self.producer.send(
                        tp.topic, value=value, key=b"tick", partition=tp.partition
                    )
                    for tp in self.consumer.assignment()
                    if tp.topic in tick_topics
                ]
                await asyncio.gather(*sent)
            except KafkaError as exc:  # the next interval sends again
                log.warning("tick_not_sent", extra={"error": str(exc)[:300]})

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(60)
            log.info(
                "worker_stats", extra=dict(self.stats, dead_lettered=self.emitter.dead_lettered)
            )


def main(settings: Settings, args: object) -> int:
    """`refstream worker`: run one worker process until SIGTERM/SIGINT."""
    from refstream.metrics import serve_worker
    from refstream.topics import ensure_topics
    from streams.worker.topology import internal_specs

    asyncio.run(ensure_topics(settings.kafka))
    asyncio.run(ensure_topics(settings.kafka, internal_specs(settings)))
    metrics = WorkerMetrics()
    serve_worker(metrics, settings)  # not served when REFSTREAM_WORKER_METRICS_PORT is unset
    asyncio.run(_run(settings, metrics))
    return 0


async def _run(settings: Settings, metrics: WorkerMetrics) -> None:
    await WorkerRuntime(settings, metrics).run()  # its Kafka clients bind to this loop
