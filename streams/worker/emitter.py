"""Outputs of a batch: encoded before anything is sent, sent without waiting between
records, acknowledged together when the batch is flushed.

Records keep their deterministic ids, so a crash before the flush re-emits identical
records when the batch is replayed (consumers deduplicate). Dead letters go out the same
way: a batch's offsets are committed only after its dead letters are acknowledged too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from refstream import topics
from refstream.avro_codec import AvroCodec
from refstream.metrics import WorkerMetrics
from streams.corrections import InvariantViolation
from streams.errors import DEAD_LETTER, OutputEncodeError
from streams.worker.cores import Output
from streams.worker.due import DueHandler

log = logging.getLogger(__name__)

# (unprefixed topic, key, value, headers) of one record to produce
Encoded = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def encode(records: list[Output]) -> list[Encoded]:
    """Every output as bytes: a record its schema cannot carry (a lone surrogate, an integer
    beyond a long) fails the event (OutputEncodeError), not the worker."""
    encoded = []
    for out in records:
        try:
            value = AvroCodec.for_schema(out.schema).encode(out.record)
            encoded.append((out.topic, out.key.encode(), value, list(out.headers)))
        except (ValueError, TypeError, OverflowError) as exc:  # UnicodeEncodeError too
            raise OutputEncodeError(f"{out.topic} record: {exc}"[:500]) from exc
    return encoded


@dataclass(frozen=True)
class Sent:
    """Records sent (the futures of their acks) and the outputs among them to count."""

    pending: list[asyncio.Future[Any]]
    outputs: list[Output]


class Emitter:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        prefixed: Callable[[str], str],
        metrics: WorkerMetrics,
    ) -> None:
        self.producer = producer
        self.prefixed = prefixed
        self.metrics = metrics
        self._pending: list[asyncio.Future[Any]] = []
        self._uncounted: list[Output] = []
        self._dead_letter_codec = AvroCodec.for_schema("dead_letter")
        self.dead_lettered = 0

    async def send(self, encoded: list[Encoded], outputs: list[Output] | None = None) -> None:
        for name, key, value, headers in encoded:
            sent = await self.producer.send(
                self.prefixed(name), value=value, key=key, headers=headers or None
            )
            self._pending.append(sent)
        self._uncounted.extend(outputs or [])

    async def emit(self, outputs: list[Output]) -> None:
        await self.send(encode(outputs), outputs)

    async def dead_letter(
        self,
        record: ConsumerRecord,
        error: Exception,
        event_id: str | None,
        due_key: bytes | None = None,
    ) -> None:
        """The record's original bytes and the reason, to the dead-letter topic. For a due
        key that failed at a tick, the key names which state (the tick itself is fine)."""
        dead_letter_id = f"worker:{record.topic}:{record.partition}:{record.offset}"
        if due_key is not None:
            dead_letter_id += f":{due_key.decode(errors='replace')}"
        letter = {
            "dead_letter_id": dead_letter_id,
            "stage": "worker",
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "key": record.key if due_key is None else due_key,
            "value": record.value,
            "event_id": event_id,
            "error_type": type(error).__name__,
            "error": str(error)[:2000],
            "failed_at_ms": int(time.time() * 1000),
        }
        value = self._dead_letter_codec.encode(letter)
        dlq = self.prefixed(topics.STRIPE_EVENTS_DLQ)
        self._pending.append(await self.producer.send(dlq, value=value, key=record.key))
        self.dead_lettered += 1
        self.metrics.dead_letters.labels("worker", type(error).__name__).inc()
        log.warning(
            "dead_lettered",
            extra={k: letter[k] for k in ("source_topic", "source_offset", "event_id", "error")},
        )

    def isolated(self, handler: DueHandler, tick: ConsumerRecord) -> DueHandler:
        """A due handler whose bad-input failure dead-letters that key alone; the other
        keys of the tick's bucket keep draining."""

        async def run(key: bytes, now: int) -> int | None:
            try:
                return await handler(key, now)
            except InvariantViolation:
                raise  # the ledger itself would break: stop loudly
            except DEAD_LETTER as exc:
                await self.dead_letter(tick, exc, None, due_key=key)
                return None  # filed again by the key's next event

        return run

    async def flush(self) -> int:
        """Wait for every record sent since the last flush; then count what went out."""
        return await self.settle(self.take())

    def take(self) -> Sent:
        """The records sent since the last call (their acks still to come)."""
        sent = Sent(self._pending, self._uncounted)
        self._pending, self._uncounted = [], []
        return sent

    async def settle(self, sent: Sent) -> int:
        """Wait for the acks of taken records; then count what went out."""
        for future in sent.pending:
            await future  # a send that failed for good raises here: the batch is not committed
        for out in sent.outputs:
            self._count(out)
        return len(sent.pending)

    def _count(self, out: Output) -> None:
        """Rewards and clawbacks emitted, by currency and mode (after their acks)."""
        r = out.record
        if out.topic == topics.REWARDS and r["revision"] == 0:  # a revision repeats it
            self.metrics.reward(r["currency"], r["livemode"], r["reward_amount_minor"])
        elif out.topic == topics.CLAWBACKS:
            self.metrics.clawback(r["kind"], r["currency"], r["livemode"], r["amount_minor"])
