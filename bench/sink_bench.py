"""Sink throughput: rows/s from Kafka into embedded ClickHouse through the sink, against a
plain clickhouse-connect insert of the same rows in the same run (the ceiling).

    .venv/bin/python bench/sink_bench.py [--rows 100000] [--partitions 4]

Needs the local broker (`refstream kafka start`). Uses a fresh topic prefix, consumer group
and a temporary engine folder; leaves nothing behind but the topics. Prints both rates,
their ratio, and the decode-only rate (fastavro + row mapping, no I/O: what the sink did
per record before ClickHouse decoded the reward windows itself, sinks/native_avro.py).
The sink's rate is its steady state, from its first committed window to its last (the
group join before it is printed apart). Not a test: the machines are shared, so only the
ratio means much.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

# Run as a script from anywhere: the repository's packages come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from refstream.avro_codec import AvroCodec
from refstream.settings import Secret, load_settings
from refstream.topics import REWARDS, TopicSpec, ensure_topics
from sinks.base import SourceRecord, Window
from sinks.clickhouse import connect
from sinks.consumer import SinkConsumer
from sinks.ledger_sink import table_sink
from sinks.migrations import apply_migrations
from sinks.rewards import SPEC


def make_reward(i: int) -> dict[str, object]:
    paid_at = 1_772_323_200 + i * 7
    return {
        "reward_id": f"rw_{i:09d}",
        "line": "invoice",
        "referral_code": f"code_{i % 5000}",
        "customer_key": f"cus_{i % 40000}",
        "customer_id": f"cus_{i % 40000}",
        "new_user_id": None,
        "new_user_organization_id": None,
        "invoice_id": f"in_{i:09d}",
        "charge_id": None,
        "payment_intent_id": None,
        "subscription_id": f"sub_{i % 40000}",
        "payment_amount_minor": 1000 + i % 9000,
        "base_amount_minor": 1000 + i % 9000,
        "reward_amount_minor": (1000 + i % 9000) // 5,
        "currency": "usd" if i % 3 else "eur",
        "rate": "0.20",
        "basis": "net",
        "tenure_month": 1 + i % 12,
        "program_id": "default",
        "program_version": 1,
        "livemode": bool(i % 2),
        "status": "pending",
        "hold_until": paid_at + 30 * 86_400,
        "paid_at": paid_at,
        "source_event_id": f"evt_{i:09d}",
        "decided_at": paid_at,
    }


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        for start in range(0, len(values), 5000):
            futures = [
                await producer.send(topic, value=value, key=key)
                for key, value in values[start : start + 5000]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed(
    admin: AIOKafkaAdminClient, group_id: str, partitions: list[TopicPartition]
) -> int:
    offsets = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
    return sum(max(0, offsets[tp].offset) for tp in partitions if tp in offsets)


async def run_sink(
    settings: object, client: object, topic: str, partitions: int, total: int
) -> tuple[float, float, int]:
    """(seconds from the consumer's start until every record is committed, seconds from
    its first committed window until the last, records committed by that first moment).

    The second span is the sink's steady state: it leaves out the consumer group's join
    (the broker delays a new group's first rebalance) and the first window; one admin
    client polls the committed offsets (a new client per poll would compete for the CPU).
    """
    stop = asyncio.Event()
    consumer = SinkConsumer(settings.kafka, settings.sink, client, specs=[SPEC])  # type: ignore[attr-defined]
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)  # type: ignore[attr-defined]
    await admin.start()
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run(stop))
    first_at, first_done = 0.0, 0
    try:
        while (done := await committed(admin, settings.sink.group_id, tps)) < total:  # type: ignore[attr-defined]
            if done and not first_done:
                first_at, first_done = time.perf_counter(), done
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        ended = time.perf_counter()
        if not first_done:  # everything arrived in the first poll: no steady state seen
            first_at, first_done = started, 0
        return ended - started, ended - first_at, first_done
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)
        await admin.close()


def ceiling(client: object, rows: list[tuple[object, ...]], batch_rows: int) -> float:
    """Seconds for plain inserts of the same rows in the same batch size (into a table
    like `rewards`, dropped afterwards so that its merges do not weigh on what follows)."""
    client.command("DROP TABLE IF EXISTS rewards_ceiling SYNC")  # type: ignore[attr-defined]
    client.command("CREATE TABLE rewards_ceiling AS rewards")  # type: ignore[attr-defined]
    started = time.perf_counter()
    for start in range(0, len(rows), batch_rows):
        client.insert(
            "rewards_ceiling",
            rows[start : start + batch_rows],  # type: ignore[attr-defined]
            column_names=list(SPEC.columns),
        )
    elapsed = time.perf_counter() - started
    client.command("DROP TABLE rewards_ceiling SYNC")  # type: ignore[attr-defined]
    return elapsed


@dataclass(frozen=True)
class _Record:  # a Kafka record as the sink reads it
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


def write_path(client: object, values: list[bytes], batch_rows: int) -> float:
    """Seconds for the sink's table writer alone (no Kafka) to write `values` in windows of
    `batch_rows`: the Avro container path when the table has one, else decode + mapping +
    rows (the ledger counted either way)."""
    sink = table_sink(SPEC, client)  # type: ignore[arg-type]
    codec = AvroCodec.for_schema(SPEC.schema)
    # The records exist before the clock starts, as aiokafka's do when the sink gets them.
    windows = [
        [
            _Record(first + n, None, value)
            for n, value in enumerate(values[first : first + batch_rows])
        ]
        for first in range(0, len(values), batch_rows)
    ]
    started = time.perf_counter()
    for records in windows:
        window = Window(SPEC.topic, 0, records[0].offset, records[-1].offset)
        if getattr(sink, "native", False):
            if not sink.write_native(records, window):
                raise SystemExit("the Avro container path refused the bench's records")
            continue
        for record in records:
            row = SPEC.to_row(codec.decode(record.value))
            sink.add(row, SPEC.topic, 0, SourceRecord(record.offset, None, record.value, 0))
        sink.flush(window)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--max-wait-ms", type=int, default=0,
        help="REFSTREAM_SINK_BATCH_MAX_WAIT_MS for the run (default 0, the setting's "
        "default: a window is written once the writer is free; main before the writer "
        "task was measured with 200)",
    )  # fmt: skip
    parser.add_argument(
        "--no-kafka", action="store_true",
        help="only the sink's table writer and the ceiling (no broker needed)",
    )  # fmt: skip
    args = parser.parse_args()

    base = load_settings()
    kafka = replace(base.kafka, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    topic = kafka.topic(REWARDS)
    codec = AvroCodec.for_schema("reward")
    records = [make_reward(i) for i in range(args.rows)]
    values = [(str(r["referral_code"]).encode(), codec.encode(r)) for r in records]
    if not args.no_kafka:
        await ensure_topics(kafka, [TopicSpec(topic, args.partitions)])
        await produce(kafka.bootstrap, topic, values)

    started = time.perf_counter()
    rows = [SPEC.to_row(codec.decode(value)) for _key, value in values]
    decode_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        sink = replace(
            base.sink,
            clickhouse_dsn=Secret(f"chdb://{folder}/ch"),
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            batch_max_wait_ms=args.max_wait_ms,
        )
        settings = replace(base, kafka=kafka, sink=sink)
        client = connect(sink)
        try:
            apply_migrations(client)
            # The ceiling right before and right after the sink: the machine's speed
            # drifts between phases, and the mean of the two brackets the sink's run.
            ceiling_before_s = ceiling(client, rows, sink.batch_max_rows)
            sink_s, steady_s, first_done = 0.0, 0.0, 0
            if not args.no_kafka:
                sink_s, steady_s, first_done = await run_sink(
                    settings, client, topic, args.partitions, args.rows
                )
                stored = client.query("SELECT count() FROM rewards FINAL").result_rows[0][0]
                if stored != args.rows:
                    raise SystemExit(f"sink stored {stored} rows, expected {args.rows}")
            ceiling_after_s = ceiling(client, rows, sink.batch_max_rows)
            # Rewards the sink has not seen (new ids), so the ledger counts them all.
            fresh = [codec.encode(make_reward(args.rows + i)) for i in range(args.rows)]
            write_s = write_path(client, fresh, sink.batch_max_rows)
        finally:
            client.close()

    ceiling_s = (ceiling_before_s + ceiling_after_s) / 2
    ceiling_rate = args.rows / ceiling_s
    print(
        f"rows: {args.rows}, partitions: {args.partitions}, batch_max_rows: "
        f"{sink.batch_max_rows}, batch_max_wait_ms: {sink.batch_max_wait_ms}"
    )
    print(
        f"ceiling (plain clickhouse-connect insert): {ceiling_rate:10,.0f} rows/s "
        f"({ceiling_s:.2f} s: mean of {ceiling_before_s:.2f} s before the sink and "
        f"{ceiling_after_s:.2f} s after)"
    )
    print(
        f"sink's table writer alone (no Kafka):     {args.rows / write_s:10,.0f} rows/s "
        f"({write_s:.2f} s; ratio {ceiling_s / write_s:.3f})"
    )
    print(f"decode only (Avro + row mapping, no I/O): {args.rows / decode_s:11,.0f} rows/s")
    if args.no_kafka:
        return
    sink_rate = (args.rows - first_done) / steady_s
    print(
        f"sink (Kafka -> chDB, commits), steady: {sink_rate:12,.0f} rows/s "
        f"({args.rows - first_done} rows after the first commit in {steady_s:.2f} s)"
    )
    print(
        f"sink from its start (group join incl.): {args.rows / sink_s:10,.0f} rows/s "
        f"({sink_s:.2f} s)"
    )
    print(
        f"ratio sink / ceiling: {sink_rate / ceiling_rate:.3f} (against the ceiling before "
        f"the sink {sink_rate * ceiling_before_s / args.rows:.3f}, after "
        f"{sink_rate * ceiling_after_s / args.rows:.3f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
