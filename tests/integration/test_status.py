"""`refstream status` against the real broker: topics, lag of a group with committed
offsets, dead letters, last event per type, programs, and the warnings they imply."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from refstream import topics
from refstream.avro_codec import AvroCodec
from refstream.settings import KafkaSettings, Secret, Settings, SinkSettings
from refstream.status import collect_status, group_lag, render
from simulator.stripe_factory import BASIL, StripeFactory
from streams.ledger.programs import parse_programs_toml
from streams.worker_programs import apply_programs

PROGRAM = '[[program]]\nid = "std"\nrate = "10%"\n'


async def test_status_reports_lag_dead_letters_last_events_and_missing_types(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kafka = kafka_settings
    settings = Settings(
        kafka=kafka,
        sink=replace(SinkSettings(), clickhouse_dsn=Secret(f"chdb://{tmp_path / 'ch'}")),
    )
    f = StripeFactory(api_version=BASIL, seed=4)
    customer = f.customer(created=1_750_000_000, metadata={"cello_ucc": "R1"})
    events = [
        f.event("customer.created", customer, created=1_750_000_000),
        f.event("customer.created", f.customer(created=1_750_000_100), created=1_750_000_100),
    ]
    codec = AvroCodec.for_schema("stripe_event")
    events_topic = kafka.topic(topics.STRIPE_EVENTS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for n, event in enumerate(events):
            record = {**f.envelope(event), "received_at_ms": 1_000 + n}
            await producer.send_and_wait(events_topic, codec.encode(record), partition=0)
        letter = {
            "dead_letter_id": "x:0:0", "stage": "worker", "source_topic": events_topic,
            "source_partition": 0, "source_offset": 0, "key": None, "value": b"junk",
            "event_id": None, "error_type": "AvroDecodeError", "error": "not avro",
            "failed_at_ms": 5,
        }  # fmt: skip
        await producer.send_and_wait(
            kafka.topic(topics.STRIPE_EVENTS_DLQ),
            AvroCodec.for_schema("dead_letter").encode(letter),
        )
    finally:
        await producer.stop()
    # The worker group has read one of the two events.
    group = kafka.topic(settings.streams.app_id)
    # No auto-commit: its commit on stop() would store the fetcher's position (2), not 1.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(events_topic, 0)])
        await consumer.commit({TopicPartition(events_topic, 0): 1})
    finally:
        await consumer.stop()
    await apply_programs(kafka, parse_programs_toml(PROGRAM))

    status = await collect_status(settings)
    json.dumps(status)  # JSON-able, as the dashboard needs
    assert status["broker"]["reachable"] is True
    assert status["topics"][events_topic] == {"partitions": 4, "records": 2}
    assert status["lag"][group]["role"] == "worker"
    assert status["lag"][group]["topics"] == {events_topic: {"0": 1}}
    assert status["lag"][group]["total"] == 1
    assert status["dead_letters"]["worker"]["by_error"] == {"AvroDecodeError": 1}
    assert status["dead_letters"]["sink"]["total"] is None  # no ClickHouse data yet
    assert status["last_event_at"] == {
        "customer.created": {"received_at_ms": 1_001, "created_s": 1_750_000_100}
    }
    assert [(p["id"], p["version"]) for p in status["programs"]] == [("std", 1)]
    warnings = "\n".join(status["warnings"])
    assert "invoice_payment.paid never seen (basil+" in warnings
    assert "customer.created never seen" not in warnings
    assert "1 dead letters at stage worker" in warnings
    screen = render(status)
    assert "WARNING" in screen and "customer.created" in screen


async def test_status_of_an_unreachable_broker_says_so() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1"))
    status = await collect_status(settings)
    assert status["broker"]["reachable"] is False
    assert status["warnings"] == ["Kafka at 127.0.0.1:1 is not reachable"]


async def test_group_lag_counts_what_a_group_has_not_committed(
    kafka_settings: KafkaSettings,
) -> None:
    kafka = kafka_settings
    topic = kafka.topic(topics.STRIPE_EVENTS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, b"x", key=b"k", partition=n % 2)
    finally:
        await producer.stop()
    group = kafka.topic("lag-group")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): 1})  # 3 records there, 1 read
    finally:
        await consumer.stop()
    lag = await group_lag(kafka.bootstrap, group, [topic])
    assert lag[TopicPartition(topic, 0)] == 2
    assert lag[TopicPartition(topic, 1)] == 2  # nothing committed: all of it
    assert set(lag) == {TopicPartition(topic, p) for p in range(kafka.events_partitions)}
