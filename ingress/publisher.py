"""Publishing accepted events to `stripe.events`, and knowing when that is impossible.

One idempotent aiokafka producer (acks=all) is shared by every request, so concurrent
requests share batches; each request awaits its own record's ack, bounded by
`publish_timeout_ms`. Errors the handler sees (the hierarchy):

    PublishError                  could not publish; nothing was acknowledged
    ├── PublishUnavailableError   Kafka down, slow or not ready yet: 503, Stripe retries
    └── PublishRefusedError       Kafka will never take this record (too large): 413

The producer is owned by a supervisor task, with three states:
  connecting  no producer yet; publishes wait for one (within their own timeout);
  ready       publishes go to the producer;
  down        the broker did not answer: publishes fail at once (fast 503s instead of
              requests piling up for the whole timeout), the supervisor retries with backoff.
Start-up never needs the broker: the ingress serves (503s) until Kafka appears.

Why the producer is replaced rather than trusted to recover: aiokafka's idempotent
producer retries a batch forever while the broker is away, except when a batch expires
with no known leader (as during a broker restart); then the batch's sequence number is
spent, the next batch fails with OutOfOrderSequenceNumber and the sender task dies, so
every later send fails although the broker is back. So after a failed publish the
supervisor probes the broker: unreachable -> the producer is dropped (state down) and a
new one is built once the broker answers; reachable -> the producer is replaced (at most
every RECREATE_MIN_INTERVAL_S). Records of failed requests may still reach Kafka from the
old producer: they were answered 503, Stripe delivers them again, and the streams
deduplicate by event id. What was acknowledged is always in Kafka.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from ingress.envelope import Envelope
from refstream.settings import IngressSettings, KafkaSettings
from refstream.topics import STRIPE_EVENTS

log = logging.getLogger(__name__)

# Kafka's default message.max.bytes is 1048588; staying below it means the producer refuses
# an oversized record itself, before it can fail a whole shared batch at the broker.
MAX_RECORD_BYTES = 1_000_000
# Large enough that many concurrent ~3 KB events travel in one request per partition.
MAX_BATCH_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 2.0
CLOSE_GRACE_S = 5.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 2.0
RECREATE_MIN_INTERVAL_S = 10.0
MAX_LINGERING_PRODUCERS = 4


class PublishError(Exception):
    """The event was not published; `reason` is a short machine word for logs and metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class PublishUnavailableError(PublishError):
    """Kafka is down, slow or not ready: answer 503 so that Stripe retries."""


class PublishRefusedError(PublishError):
    """Kafka will never accept this record (e.g. larger than the largest record)."""


@dataclass(frozen=True, slots=True)
class Receipt:
    partition: int
    offset: int


class Publisher(Protocol):
    """What the HTTP app needs; tests inject a fake."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, envelope: Envelope) -> Receipt: ...

    async def ready(self) -> bool: ...


class State(enum.StrEnum):
    CONNECTING = "connecting"
    READY = "ready"
    DOWN = "down"


class _Probe(enum.Enum):
    OK = enum.auto()
    UNREACHABLE = enum.auto()
    TOPIC_MISSING = enum.auto()


ProducerFactory = Callable[[], AIOKafkaProducer]


def producer_factory(kafka: KafkaSettings, ingress: IngressSettings) -> ProducerFactory:
    def build() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            client_id="refstream-ingress",
            enable_idempotence=True,
            acks="all",
            linger_ms=ingress.producer_linger_ms,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_RECORD_BYTES,
        )

    return build


class KafkaPublisher:
    def __init__(
        self,
        kafka: KafkaSettings,
        ingress: IngressSettings,
        factory: ProducerFactory | None = None,
    ) -> None:
        self.topic = kafka.topic(STRIPE_EVENTS)
        self._timeout_s = ingress.publish_timeout_ms / 1000
        self._factory = factory or producer_factory(kafka, ingress)
        self._producer: AIOKafkaProducer | None = None
        self._producer_since = 0.0
        self._state = State.CONNECTING
        # Replaced by a fresh Event at every state change; waiters hold the old one.
        self._changed = asyncio.Event()
        self._suspect = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        if ingress.max_body_bytes > MAX_RECORD_BYTES - 4096:
            log.warning(
                "max_body_bytes_above_kafka_limit",
                extra={"max_body_bytes": ingress.max_body_bytes, "limit": MAX_RECORD_BYTES},
            )

    @property
    def state(self) -> State:
        return self._state

    async def start(self) -> None:
        """Returns at once; the producer connects in the background."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="kafka-supervisor")

    async def stop(self) -> None:
        """Flush and close; what Kafka has not taken within CLOSE_GRACE_S is abandoned
        (those requests are answered 503 or were already)."""
        if self._supervisor is not None:
            # Repeated: a cancellation can be lost when it races a completing wait.
            while not self._supervisor.done():
                self._supervisor.cancel()
                await asyncio.wait({self._supervisor}, timeout=1)
            self._supervisor = None
        self._retire()
        if self._closing:
            _, pending = await asyncio.wait(self._closing, timeout=CLOSE_GRACE_S)
            if pending:
                log.warning("kafka_producer_abandoned", extra={"producers": len(pending)})
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def publish(self, envelope: Envelope) -> Receipt:
        if not isinstance(envelope, Envelope):
            raise TypeError("only an Envelope built from a VerifiedBody can be published")
        value = envelope.encode()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + self._timeout_s):
                producer = await self._usable_producer()
                # Cancelling the awaited message future on timeout is safe: aiokafka skips
                # futures that are already done when the batch completes.
                metadata = await (await producer.send(self.topic, value, key=envelope.key))
        except TimeoutError as exc:
            self._suspect.set()
            raise PublishUnavailableError(
                "publish_timeout", f"no Kafka ack within {self._timeout_s:g} s"
            ) from exc
        except MessageSizeTooLargeError as exc:
            raise PublishRefusedError(
                "record_too_large", f"the record exceeds Kafka's {MAX_RECORD_BYTES} bytes"
            ) from exc
        except KafkaError as exc:
            self._suspect.set()
            raise PublishUnavailableError("kafka_error", type(exc).__name__) from exc
        return Receipt(partition=metadata.partition, offset=metadata.offset)

    async def ready(self) -> bool:
        """True when the broker answers and the topic exists (GET /readyz)."""
        producer = self._producer
        if producer is None:
            return False
        probe = await self._probe(producer)
        if probe is _Probe.UNREACHABLE:
            self._suspect.set()
        return probe is _Probe.OK

    # -- supervision ---------------------------------------------------------------------

    async def _usable_producer(self) -> AIOKafkaProducer:
        while self._producer is None:
            changed = self._changed
            if self._state is State.DOWN:
                raise PublishUnavailableError("kafka_unreachable", "Kafka is not reachable")
            await changed.wait()
        return self._producer

    def _set_state(self, state: State) -> None:
        self._state = state
        self._changed.set()
        self._changed = asyncio.Event()

    async def _supervise(self) -> None:
        backoff_s = BACKOFF_MIN_S
        while True:
            try:
                if self._producer is None:
                    producer = await self._connect(quiet=self._state is State.DOWN)
                    if producer is None:
                        if self._state is not State.DOWN:
                            self._set_state(State.DOWN)
                        await asyncio.sleep(backoff_s)
                        backoff_s = min(2 * backoff_s, BACKOFF_MAX_S)
                        continue
                    backoff_s = BACKOFF_MIN_S
                    self._install(producer)
                await self._suspect.wait()
                self._suspect.clear()
                await self._check()
            except Exception:  # the supervisor must outlive any surprise from aiokafka
                log.exception("kafka_supervisor_error", extra={"topic": self.topic})
                await asyncio.sleep(BACKOFF_MAX_S)

    async def _check(self) -> None:
        """After a failed publish: is it the broker, the topic, or the producer?"""
        producer = self._producer
        if producer is None:
            return
        probe = await self._probe(producer)
        if probe is _Probe.UNREACHABLE:
            log.warning("kafka_unreachable", extra={"topic": self.topic})
            self._retire()
            self._set_state(State.DOWN)
        elif probe is _Probe.TOPIC_MISSING:
            log.error("kafka_topic_missing", extra={"topic": self.topic})
        elif asyncio.get_running_loop().time() - self._producer_since < RECREATE_MIN_INTERVAL_S:
            pass  # a fresh producer gets time to prove itself
        elif len(self._closing) >= MAX_LINGERING_PRODUCERS:
            # Old producers still cannot deliver although the broker answers: replacing
            # more would only pile them up.
            log.error("kafka_producer_not_replaced", extra={"lingering": len(self._closing)})
        else:
            log.warning("kafka_producer_replaced", extra={"topic": self.topic})
            self._retire()

    async def _connect(self, quiet: bool) -> AIOKafkaProducer | None:
        producer = self._factory()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            if not quiet:  # one line per outage, not one per retry
                log.warning("kafka_connect_failed", extra={"error": type(exc).__name__})
            await self._close(producer)  # nothing was sent: returns at once
            return None
        if await self._probe(producer) is _Probe.TOPIC_MISSING:
            log.error("kafka_topic_missing", extra={"topic": self.topic})
        return producer

    def _install(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._producer_since = asyncio.get_running_loop().time()
        self._set_state(State.READY)
        log.info("kafka_producer_ready", extra={"topic": self.topic})

    def _retire(self) -> None:
        """Take the producer out of service now; close it in the background."""
        producer, self._producer = self._producer, None
        if producer is not None:
            self._set_state(State.CONNECTING)
            task = asyncio.create_task(self._close(producer))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _probe(self, producer: AIOKafkaProducer) -> _Probe:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                cluster = await producer.client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError):
            return _Probe.UNREACHABLE
        return _Probe.OK if self.topic in cluster.topics() else _Probe.TOPIC_MISSING

    @staticmethod
    async def _close(producer: AIOKafkaProducer) -> None:
        """Stop a producer that is out of service. aiokafka's stop() first delivers every
        pending batch, so while the broker is away this waits until it returns (or until
        the producer's sender gives up and fails them); aiokafka has no abort that leaves
        its accumulator consistent. One such producer at most lingers per outage."""
        try:
            await producer.stop()
        except Exception as exc:  # noqa: BLE001 - a discarded producer must not break anything
            log.warning("kafka_producer_close_failed", extra={"error": repr(exc)})
