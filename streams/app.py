"""Faust wiring of the worker: topics, tables, the per-customer agent and the tick timer.

Decisions live in `streams.worker_core` (pure); this module only loads state, calls the core,
emits its outputs and stores the new state, in an order that makes a crash harmless:

  1. decode the record (a record that cannot be decoded goes to the dead-letter topic);
  2. load the customer's state from the `customers` table;
  3. call the core, which returns the new state and the output records;
  4. send every output and WAIT for the broker's acks;
  5. only then store the new state (and its due time in the `due` index).

A crash before step 5 replays the event from the old state and re-emits the same records
(deterministic ids: downstream deduplicates); a crash after it finds the event id already in
the state and does nothing. Offsets are committed by Faust after step 5 (at-least-once), and
the agent runs with concurrency 1 (faust-streaming #606).

Time-driven decisions (attribution windows, hold expiries) ride on tick records: the leader
sends one tick per partition of the internal ticks topic every `tick_interval_s`; the agent
reads ticks and events from co-partitioned topics, so a tick for partition p is processed
where the tables of partition p live and may modify them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT

from refstream import topics
from refstream.avro_codec import AvroCodec, AvroDecodeError
from refstream.settings import Settings
from streams.stripe_payloads import ParseError
from streams.worker_core import Output, WorkerCore
from streams.worker_programs import ProgramCache

log = logging.getLogger(__name__)

# Due times are indexed in buckets of this many seconds, so one tick reads few keys.
DUE_BUCKET_S = 60


@dataclass
class Worker:
    app: faust.App
    core: WorkerCore
    programs: ProgramCache


def now() -> int:
    """Worker time, unix seconds: the only clock the worker reads (the core is given it)."""
    return int(time.time())


def create_app(settings: Settings) -> Worker:
    kafka, conf = settings.kafka, settings.streams
    n = kafka.events_partitions
    app = faust.App(
        kafka.topic(conf.app_id),  # its internal topics follow the topic prefix
        broker=f"kafka://{kafka.bootstrap.replace(',', ';kafka://')}",
        store="rocksdb://",
        datadir=str(conf.data_dir),
        topic_partitions=n,
        topic_replication_factor=kafka.replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=conf.session_timeout_s,
        broker_heartbeat_interval=max(1, conf.session_timeout_s // 4),
        broker_commit_interval=1.0,
        producer_acks=-1,
        web_enabled=False,
        table_standby_replicas=0,
    )
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source = app.topic(
        kafka.topic(topics.STRIPE_EVENTS), kafka.topic(topics.TICKS), partitions=n, **raw
    )
    ticks = app.topic(kafka.topic(topics.TICKS), partitions=n, **raw)
    outputs = {name: app.topic(kafka.topic(name), **raw) for name in topics.OUTPUT_TOPICS}
    dead_letters = app.topic(kafka.topic(topics.STRIPE_EVENTS_DLQ), **raw)
    customers = app.Table("customers", default=None, partitions=n, key_type=bytes, value_type=bytes)
    due = app.Table("due", default=None, partitions=n, key_type=bytes, value_type=bytes)
    program_cache = ProgramCache(kafka)
    core = WorkerCore.from_settings(settings)
    envelope_codec = AvroCodec.for_schema("stripe_event")
    dead_letter_codec = AvroCodec.for_schema("dead_letter")
    codecs: dict[str, AvroCodec] = {}
    ticks_name = kafka.topic(topics.TICKS)
    stats: Counter[str] = Counter()

    async def emit(records: list[Output]) -> None:
        pending = []
        for out in records:
            codec = codecs.get(out.schema) or codecs.setdefault(
                out.schema, AvroCodec.for_schema(out.schema)
            )
            value = codec.encode(out.record)
            # force=True: produce now. Faust would otherwise "attach" the record to the source
            # offset and produce it at commit time, and a rebalance in between loses it.
            topic = outputs[out.topic]
            pending.append(await topic.send(key=out.key.encode(), value=value, force=True))
        # Step 4: every output acknowledged before the state that caused it is stored.
        await asyncio.gather(*pending)

    async def dead_letter(event: EventT, error: Exception, event_id: str | None) -> None:
        message = event.message
        record = {
            "dead_letter_id": f"worker:{message.topic}:{message.partition}:{message.offset}",
            "stage": "worker",
            "source_topic": message.topic,
            "source_partition": message.partition,
            "source_offset": message.offset,
            "key": event.key,
            "value": event.value,
            "event_id": event_id,
            "error_type": type(error).__name__,
            "error": str(error)[:2000],
            "failed_at_ms": int(time.time() * 1000),
        }
        value = dead_letter_codec.encode(record)
        fut = await dead_letters.send(key=event.key, value=value, force=True)
        await fut
        log.warning(
            "dead_lettered",
            extra={
                k: record[k]
                for k in (
                    "source_topic",
                    "source_partition",
                    "source_offset",
                    "event_id",
                    "error_type",
                )
            },
        )

    def index_due(partition: int, customer_key: bytes, due_s: int | None) -> None:
        if due_s is None:
            return
        cursor_key = f"{partition}:cursor".encode()
        raw_cursor = due.get(cursor_key)
        bucket = due_s // DUE_BUCKET_S
        if raw_cursor is None:
            due[cursor_key] = str(bucket).encode()
        else:
            # Already past that minute: the next tick reads the cursor's bucket again.
            bucket = max(bucket, int(raw_cursor))
        bucket_key = f"{partition}:{bucket}".encode()
        members = json.loads(due.get(bucket_key) or b"[]")
        if customer_key.decode() not in members:
            due[bucket_key] = json.dumps([*members, customer_key.decode()]).encode()

    async def on_event(event: EventT) -> None:
        try:
            envelope = envelope_codec.decode(event.value)
            routed = core.route(envelope)
        except (AvroDecodeError, ParseError) as exc:
            await dead_letter(event, exc, None)
            return
        if routed is None:
            stats["skipped"] += 1
            return
        try:
            result = core.on_event(
                customers.get(routed.state_key), routed, program_cache.current(), now()
            )
        except Exception as exc:  # one odd event must not stop the worker
            log.exception("event_failed", extra={"event_id": routed.event.event_id})
            await dead_letter(event, exc, routed.event.event_id)
            return
        stats[result.outcome] += 1
        await emit(result.outputs)
        if result.state is not None:
            customers[routed.state_key] = result.state  # Step 5
        index_due(event.message.partition, routed.state_key, result.due_s)

    async def on_tick(event: EventT) -> None:
        partition = event.message.partition
        now_s = int(json.loads(event.value)["now_s"])
        cursor_key = f"{partition}:cursor".encode()
        raw_cursor = due.get(cursor_key)
        if raw_cursor is None:
            return  # nothing was ever due on this partition
        cursor, current = int(raw_cursor), now_s // DUE_BUCKET_S
        for bucket in range(cursor, current + 1):
            bucket_key = f"{partition}:{bucket}".encode()
            members = json.loads(due.get(bucket_key) or b"[]")
            if bucket < current and members:
                del due[bucket_key]
            for member in members:
                await on_due(partition, member.encode(), now_s, bucket == current)
        # The current minute's bucket stays: later due times in it are read on the next tick.
        due[cursor_key] = str(max(cursor, current)).encode()

    async def on_due(partition: int, state_key: bytes, now_s: int, in_current: bool) -> None:
        try:
            result = core.on_tick(customers.get(state_key), program_cache.current(), now_s)
        except Exception:
            log.exception("tick_failed", extra={"state_key": state_key.decode()})
            return
        await emit(result.outputs)
        if result.state is not None:
            customers[state_key] = result.state
        same_bucket = (
            result.due_s is not None and result.due_s // DUE_BUCKET_S == now_s // DUE_BUCKET_S
        )
        if not (in_current and same_bucket):
            index_due(partition, state_key, result.due_s)

    @app.agent(source, concurrency=1)
    async def process(stream: Any) -> None:
        await program_cache.loaded.wait()
        async for event in stream.events():
            if event.message.topic == ticks_name:
                await on_tick(event)
            else:
                await on_event(event)

    @app.timer(interval=float(conf.tick_interval_s), on_leader=True)
    async def send_ticks() -> None:
        value = json.dumps({"now_s": now()}).encode()
        for partition in range(n):
            await ticks.send(key=b"tick", value=value, partition=partition)

    @app.task
    async def follow_programs() -> None:
        await program_cache.run()

    @app.timer(interval=60.0)
    async def log_stats() -> None:
        log.info("worker_stats", extra=dict(stats))

    return Worker(app=app, core=core, programs=program_cache)


def main(settings: Settings, args: Any) -> int:
    """`refstream worker`: run one worker process until SIGTERM/SIGINT."""
    from faust.worker import Worker as FaustWorker

    settings.streams.data_dir.mkdir(parents=True, exist_ok=True)
    worker = create_app(settings)
    FaustWorker(
        worker.app,
        loglevel=settings.log_level.lower(),
        redirect_stdouts=False,
        override_logging=False,  # keep refstream's JSON log lines
    ).execute_from_commandline()
    return 0
