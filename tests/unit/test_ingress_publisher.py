"""The publisher's supervision, with a fake producer: start without a broker, fail fast while
it is away, recover when it returns, replace a producer that stops delivering although the
broker answers (aiokafka's stuck idempotent producer). The real broker is exercised by
tests/integration/test_ingress_kafka.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

import ingress.publisher as publisher_module
from ingress.envelope import Envelope, parse_envelope
from ingress.publisher import (
    KafkaPublisher,
    PublishRefusedError,
    PublishUnavailableError,
    State,
)
from ingress.signature import SignatureVerifier, VerifiedBody
from refstream.settings import IngressSettings, KafkaSettings, Secret
from tests.support.signing import sign

SECRET = "whsec_publisher_tests"
KAFKA = KafkaSettings(topic_prefix="unit.")
TOPIC = "unit.stripe.events"


@dataclass
class FakeBroker:
    up: bool = True
    topics: set[str] = field(default_factory=lambda: {TOPIC})
    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)


@dataclass
class Metadata:
    partition: int
    offset: int


class FakeCluster:
    def __init__(self, topics: set[str]) -> None:
        self._topics = topics

    def topics(self) -> set[str]:
        return self._topics


class FakeClient:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    async def fetch_all_metadata(self) -> FakeCluster:
        if not self.broker.up:
            raise KafkaConnectionError("broker down")
        return FakeCluster(set(self.broker.topics))


class FakeProducer:
    """Delivers at once while the broker is up; `stuck` never delivers (a dead sender)."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.client = FakeClient(broker)
        self.stuck = False
        self.stopped = False

    async def start(self) -> None:
        if not self.broker.up:
            raise KafkaConnectionError("broker down")

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Metadata]:
        if len(value) > 100_000:
            raise MessageSizeTooLargeError()
        future: asyncio.Future[Metadata] = asyncio.get_running_loop().create_future()
        if self.broker.up and not self.stuck:
            self.broker.records.append((topic, key, value))
            future.set_result(Metadata(partition=0, offset=len(self.broker.records) - 1))
        return future

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture(autouse=True)
def fast_supervision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher_module, "BACKOFF_MIN_S", 0.01)
    monkeypatch.setattr(publisher_module, "BACKOFF_MAX_S", 0.02)
    monkeypatch.setattr(publisher_module, "RECREATE_MIN_INTERVAL_S", 0.0)


@dataclass
class Rig:
    broker: FakeBroker
    producers: list[FakeProducer]
    publisher: KafkaPublisher


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def make(broker_up: bool = True) -> Rig:
        broker = FakeBroker(up=broker_up)
        producers: list[FakeProducer] = []

        def factory() -> Any:
            producers.append(FakeProducer(broker))
            return producers[-1]

        ingress = IngressSettings(webhook_secrets=(Secret(SECRET),), publish_timeout_ms=100)
        publisher = KafkaPublisher(KAFKA, ingress, factory=factory)
        await publisher.start()
        rigs.append(Rig(broker, producers, publisher))
        return rigs[-1]

    yield make
    for rig in rigs:
        await rig.publisher.stop()


def envelope(event_id: str = "evt_pub_1", padding: int = 0) -> Envelope:
    event = {
        "id": event_id,
        "object": "event",
        "created": 1_800_000_000,
        "livemode": False,
        "type": "invoice.paid",
        "data": {"object": {"id": "in_1", "object": "invoice", "customer": "cus_A"}},
        "padding": "x" * padding,
    }
    body = json.dumps(event).encode()
    verified = SignatureVerifier([Secret(SECRET)], 300).verify(
        body, sign(body, SECRET, 1_800_000_000), now=1_800_000_000
    )
    assert isinstance(verified, VerifiedBody)
    result = parse_envelope(verified, 0)
    assert isinstance(result, Envelope)
    return result


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


async def test_a_published_envelope_is_keyed_and_avro_encoded(make_rig: Callable[..., Any]) -> None:
    rig = await make_rig()
    await eventually(lambda: rig.publisher.state is State.READY, "ready")
    env = envelope()
    receipt = await rig.publisher.publish(env)
    assert rig.broker.records == [(TOPIC, b"cus_A", env.encode())]
    assert receipt.offset == 0


async def test_only_envelopes_can_be_published(make_rig: Callable[..., Any]) -> None:
    rig = await make_rig()
    with pytest.raises(TypeError):
        await rig.publisher.publish(b'{"id": "evt_unverified"}')


async def test_it_starts_without_a_broker_fails_fast_and_recovers_when_one_appears(
    make_rig: Callable[..., Any],
) -> None:
    rig = await make_rig(broker_up=False)
    await eventually(lambda: rig.publisher.state is State.DOWN, "down")
    with pytest.raises(PublishUnavailableError) as refused:
        await rig.publisher.publish(envelope())
    assert refused.value.reason == "kafka_unreachable"
    assert not await rig.publisher.ready()

    rig.broker.up = True
    await eventually(lambda: rig.publisher.state is State.READY, "ready")
    await rig.publisher.publish(envelope())
    assert len(rig.broker.records) == 1
    assert await rig.publisher.ready()


async def test_losing_the_broker_drops_the_producer_until_it_answers_again(
    make_rig: Callable[..., Any],
) -> None:
    rig = await make_rig()
    await eventually(lambda: rig.publisher.state is State.READY, "ready")
    first = rig.producers[-1]
    rig.broker.up = False
    with pytest.raises(PublishUnavailableError) as timed_out:
        await rig.publisher.publish(envelope("evt_lost"))
    assert timed_out.value.reason == "publish_timeout"
    await eventually(lambda: rig.publisher.state is State.DOWN, "down")
    with pytest.raises(PublishUnavailableError) as fast:
        await rig.publisher.publish(envelope("evt_refused"))
    assert fast.value.reason == "kafka_unreachable"

    rig.broker.up = True
    await eventually(lambda: rig.publisher.state is State.READY, "ready again")
    await rig.publisher.publish(envelope("evt_back"))
    assert rig.producers[-1] is not first
    assert [key for _, key, _ in rig.broker.records] == [b"cus_A"]
    await eventually(lambda: first.stopped, "old producer closed")


async def test_a_producer_that_stops_delivering_while_the_broker_answers_is_replaced(
    make_rig: Callable[..., Any],
) -> None:
    rig = await make_rig()
    await eventually(lambda: rig.publisher.state is State.READY, "ready")
    stuck = rig.producers[-1]
    stuck.stuck = True  # as aiokafka's idempotent producer after OutOfOrderSequenceNumber
    with pytest.raises(PublishUnavailableError):
        await rig.publisher.publish(envelope("evt_stuck"))
    await eventually(lambda: len(rig.producers) == 2, "a new producer")
    await eventually(lambda: rig.publisher.state is State.READY, "ready again")
    await rig.publisher.publish(envelope("evt_after"))
    assert len(rig.broker.records) == 1
    await eventually(lambda: stuck.stopped, "stuck producer closed")


async def test_a_missing_topic_is_not_ready(make_rig: Callable[..., Any]) -> None:
    rig = await make_rig()
    await eventually(lambda: rig.publisher.state is State.READY, "ready")
    rig.broker.topics.clear()
    assert not await rig.publisher.ready()


async def test_a_record_kafka_would_refuse_is_refused_not_retried(
    make_rig: Callable[..., Any],
) -> None:
    rig = await make_rig()
    await eventually(lambda: rig.publisher.state is State.READY, "ready")
    with pytest.raises(PublishRefusedError):
        await rig.publisher.publish(envelope(padding=200_000))
    assert len(rig.producers) == 1  # not a reason to replace the producer
