"""The ingress against real Kafka, over real HTTP with real Stripe signatures.

1. `refstream ingress` (the real CLI, a subprocess) takes a few thousand signed events,
   concurrently, redeliveries included: every acknowledged delivery is in the topic once,
   byte-identical, Avro-decodable, keyed by its customer (or guest payment intent).
2. An outage, on a broker of this test's own: the ingress starts before Kafka (503s), then
   serves; the broker is killed (503s, no 2xx); it comes back and the same ingress serves
   again without a restart.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingress.app import WEBHOOK_PATH, create_app
from ingress.publisher import KafkaPublisher
from refstream.avro_codec import AvroCodec
from refstream.kafka_local import LocalKafka
from refstream.settings import REPO_ROOT, IngressSettings, KafkaSettings, Secret
from refstream.topics import STRIPE_EVENTS, TopicSpec, ensure_topics
from tests.support.factories import (
    BASIL,
    PRE_BASIL,
    CustomerStory,
    StripeFactory,
    event_bytes,
    one_time_story,
    subscription_story,
)
from tests.support.processes import RefstreamProcess, kafka_env
from tests.support.signing import PostResult, post_raw, post_signed, sign

SECRET = "whsec_integration_current"
OLD_SECRET = "whsec_integration_previous"
CODEC = AvroCodec.for_schema("stripe_event")
OUTAGE_PARTITIONS = 2


def free_port(pair: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (and the next one too, for a broker's controller)."""
    for _ in range(200):
        port = random.randint(20_000, 60_000)
        try:
            for p in (port, port + 1) if pair else (port,):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


async def read_topic(bootstrap: str, topic: str, partition_count: int) -> list[Any]:
    """Every record of `topic`, up to the end offsets as they are when called."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        total = sum(end[tp] - start[tp] for tp in partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while len(records) < total:
            assert time.monotonic() < deadline, "topic not read to its end within 60 s"
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def wait_ready(session: aiohttp.ClientSession, base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass  # not listening yet
        await asyncio.sleep(0.2)
    raise TimeoutError(f"ingress at {base} not ready within {timeout_s:.0f} s")


# --- 1. thousands of concurrent deliveries -----------------------------------------------


def stories(seed: int) -> list[CustomerStory]:
    out: list[CustomerStory] = []
    for api_version in (PRE_BASIL, BASIL):
        f = StripeFactory(api_version=api_version, seed=seed)
        out += [subscription_story(f, months=12, code="ACME") for _ in range(32)]
        out += [one_time_story(f, customer_id=None) for _ in range(150)]  # guests
        out += [one_time_story(f, customer_id=f.new_id("cus", 14)) for _ in range(50)]
    return out


@pytest.fixture
def ingress_process(kafka_settings: KafkaSettings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **kafka_env(kafka_settings),
        "REFSTREAM_INGRESS_PORT": str(port),
        "REFSTREAM_WEBHOOK_SECRETS": f"{SECRET},{OLD_SECRET}",
        "REFSTREAM_LOG_LEVEL": "WARNING",
    }
    process = RefstreamProcess(["ingress"], env, tmp_path / "ingress.log").start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()
    assert "webhook_internal_error" not in process.log_tail(100_000)


async def test_concurrent_deliveries_are_all_in_kafka_byte_identical_and_keyed(
    kafka_settings: KafkaSettings, ingress_process: str
) -> None:
    rng = random.Random(11)
    deliveries: list[tuple[bytes, str, str]] = []  # (body, expected key, secret)
    for story in stories(seed=5):
        for event in story.events:
            deliveries.append((event_bytes(event), story.key, rng.choice([SECRET, OLD_SECRET])))
    # Stripe redelivers: 15% of the events twice more, each with a fresh signature.
    deliveries += [d for d in rng.sample(deliveries, len(deliveries) * 15 // 100) for _ in (1, 2)]
    # Forgeries and junk between them, none of which may reach Kafka.
    forged = [(event_bytes(event_for_forgery(i)), "", "whsec_forger") for i in range(100)]
    all_posts = deliveries + forged
    rng.shuffle(all_posts)
    assert len(all_posts) > 3000

    results: list[tuple[bytes, str, str, PostResult]] = []
    limit = asyncio.Semaphore(200)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        await wait_ready(session, ingress_process, timeout_s=60)
        url = ingress_process + WEBHOOK_PATH

        async def deliver(body: bytes, key: str, secret: str) -> None:
            async with limit:
                results.append((body, key, secret, await post_signed(session, url, body, secret)))

        await asyncio.gather(*(deliver(*post) for post in all_posts))

    acked = [(body, key) for body, key, secret, r in results if secret != "whsec_forger"]
    assert all(r.status == 200 for _, _, s, r in results if s != "whsec_forger")
    assert all(
        r.status == 400 and r.json["error"] == "signature_mismatch"
        for _, _, s, r in results
        if s == "whsec_forger"
    )

    records = await read_topic(
        kafka_settings.bootstrap,
        kafka_settings.topic(STRIPE_EVENTS),
        kafka_settings.events_partitions,
    )
    # Every acknowledged delivery is there exactly once (a redelivery is a new record:
    # the streams deduplicate by event id), and nothing else is.
    decoded = [(r, CODEC.decode(r.value)) for r in records]
    assert Counter(rec["body"] for _, rec in decoded) == Counter(body for body, _ in acked)
    expected_key = {body: key for body, key in acked}
    partition_of_key: dict[bytes, int] = {}
    for record, rec in decoded:
        key = expected_key[rec["body"]]
        assert record.key == key.encode() == rec["partition_key"].encode()
        assert rec["key_source"] == ("customer" if key.startswith("cus_") else "payment_intent")
        # One key, one partition: all of a customer's events are read in order by one worker.
        assert partition_of_key.setdefault(record.key, record.partition) == record.partition
    assert len(partition_of_key) > kafka_settings.events_partitions  # the keys did spread
    assert {r.partition for r, _ in decoded} == set(range(kafka_settings.events_partitions))


def event_for_forgery(i: int) -> dict[str, Any]:
    f = StripeFactory(seed=1000 + i)
    return f.event("customer.created", f.customer(created=1_746_057_600), created=1_746_057_600)


# --- 2. Kafka goes away and comes back ---------------------------------------------------


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this test's own (never the shared one), reusing the resolved jars."""
    root = tmp_path_factory.mktemp("kafka")
    (root / "libs").symlink_to(REPO_ROOT / ".local" / "kafka" / "libs")
    broker = LocalKafka(root=root, port=free_port(pair=True), heap="256m")
    yield broker
    kill_broker(broker)


def kill_broker(broker: LocalKafka) -> None:
    """SIGKILL, as in a crash. LocalKafka.launch made the broker our child, so reap it:
    a zombie would still look alive to LocalKafka.running_pid()."""
    pid = broker.running_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    broker.pid_file.unlink(missing_ok=True)


@pytest.fixture
async def ingress_on(own_broker: LocalKafka) -> AsyncIterator[tuple[str, KafkaPublisher]]:
    """The ingress app on a real port, publishing to `own_broker` (not started yet)."""
    kafka = KafkaSettings(bootstrap=own_broker.bootstrap, topic_prefix="outage.")
    ingress = IngressSettings(webhook_secrets=(Secret(SECRET),), publish_timeout_ms=1500)
    publisher = KafkaPublisher(kafka, ingress)
    runner = web.AppRunner(create_app(ingress, publisher))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", publisher
    finally:
        await runner.cleanup()


async def start_broker(broker: LocalKafka) -> None:
    await asyncio.to_thread(broker.start, 90.0)
    kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="outage.")
    await ensure_topics(kafka, [TopicSpec(kafka.topic(STRIPE_EVENTS), OUTAGE_PARTITIONS)])


async def test_the_ingress_answers_503_while_kafka_is_away_and_recovers_without_restart(
    own_broker: LocalKafka, ingress_on: tuple[str, KafkaPublisher]
) -> None:
    base, publisher = ingress_on
    url = base + WEBHOOK_PATH
    f = StripeFactory(seed=42)
    fresh = (event_bytes(e) for _ in range(10_000) for e in one_time_story(f).events)
    acked: list[bytes] = []
    refused: list[PostResult] = []

    async with aiohttp.ClientSession() as session:

        async def post_many(n: int) -> list[tuple[bytes, PostResult]]:
            bodies = [next(fresh) for _ in range(n)]
            results = await asyncio.gather(*(post_signed(session, url, b, SECRET) for b in bodies))
            acked.extend(b for b, r in zip(bodies, results, strict=True) if r.status == 200)
            return list(zip(bodies, results, strict=True))

        async def until_accepted(timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while not any(r.status == 200 for _, r in await post_many(1)):
                assert time.monotonic() < deadline, "the ingress did not recover"
                await asyncio.sleep(0.3)

        async def readyz() -> int:
            async with session.get(f"{base}/readyz") as response:
                return response.status

        # Started before Kafka: serving, not ready, every event refused with a 503.
        assert (await session.get(f"{base}/healthz")).status == 200
        assert await readyz() == 503
        before = await post_many(5)
        assert {r.status for _, r in before} == {503}
        refused += [r for _, r in before]

        # Kafka appears: the same ingress takes events.
        await start_broker(own_broker)
        await until_accepted(timeout_s=60)
        assert {r.status for _, r in await post_many(50)} == {200}
        assert await readyz() == 200

        # Kafka crashes: nothing is acknowledged.
        kill_broker(own_broker)
        during = await post_many(20) + await post_many(20)
        assert {r.status for _, r in during} == {503}
        refused += [r for _, r in during]
        assert await readyz() == 503

        # Kafka is back: the same ingress (no restart) takes events again.
        await start_broker(own_broker)
        await until_accepted(timeout_s=60)
        assert {r.status for _, r in await post_many(50)} == {200}

        # A signature failure is still a 400, not a 503, whatever Kafka's state.
        body = next(fresh)
        assert (await post_raw(session, url, body, sign(body, "whsec_x"))).status == 400

    assert all(r.json["error"] in ("kafka_unreachable", "publish_timeout") for r in refused)
    records = await read_topic(own_broker.bootstrap, publisher.topic, OUTAGE_PARTITIONS)
    in_kafka = Counter(CODEC.decode(r.value)["body"] for r in records)
    missing = [body for body in acked if in_kafka[body] < 1]
    assert missing == [], f"{len(missing)} acknowledged events are not in Kafka"
    assert len(acked) >= 100
