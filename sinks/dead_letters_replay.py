"""Replaying dead letters: their original bytes, re-published to their source topic.

The key and value are sent exactly as they were first published, to the topic and
partition they came from (the partition is where that key's state lives, whichever
partitioner the original producer used), with a `refstream-replay-of` header naming the
dead letter (for audit; no stage reads it). The record gets a new offset, so it is
processed like a redelivery: the worker recognises a Stripe event id it already recorded,
and the sink tables are ReplacingMergeTree on the record ids. Replaying a record twice
therefore has no second effect; replaying one that still fails dead-letters it again.

Only topics the stage reads are accepted as targets: a dead letter naming anything else
(another prefix, a hand-made record) is refused rather than published somewhere new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from refstream import topics
from refstream.settings import KafkaSettings
from sinks.dead_letters_read import DeadLetter

REPLAY_HEADER = "refstream-replay-of"
# Where the worker's dead letters can come from: the customer agent's inputs (events and
# re-keyed events) and the referrer agent's (rewards, payouts, corrections). Names of
# streams/worker/cores.py, repeated so that the CLI does not load the worker.
_WORKER_SOURCES = (
    topics.STRIPE_EVENTS,
    "refstream.rerouted",
    topics.REWARDS,
    topics.PAYOUTS,
    "refstream.corrections",
)
# Every topic a sink table is written from (sinks/consumer.py ALL_SPECS).
_SINK_SOURCES = (*topics.TOPIC_SCHEMAS,)


class ReplayTargetError(ValueError):
    """A dead letter names a source topic its stage never reads."""


@dataclass(frozen=True)
class Replayed:
    letter: DeadLetter
    partition: int
    offset: int


def allowed_targets(kafka: KafkaSettings, stage: str) -> frozenset[str]:
    names = _WORKER_SOURCES if stage == "worker" else _SINK_SOURCES
    return frozenset(kafka.topic(name) for name in names)


def check_targets(kafka: KafkaSettings, stage: str, letters: Sequence[DeadLetter]) -> None:
    allowed = allowed_targets(kafka, stage)
    wrong = sorted({d.source_topic for d in letters if d.source_topic not in allowed})
    if wrong:
        raise ReplayTargetError(
            f"{stage} dead letters name source topics that stage does not read: "
            f"{', '.join(wrong)} (expected one of {', '.join(sorted(allowed))})"
        )


async def replay(kafka: KafkaSettings, stage: str, letters: Sequence[DeadLetter]) -> list[Replayed]:
    """Publish each letter's original record to its source topic, acks=all, in order."""
    check_targets(kafka, stage, letters)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        done = []
        for letter in letters:
            metadata = await producer.send_and_wait(
                letter.source_topic,
                value=letter.value,
                key=letter.key,
                partition=letter.source_partition,
                headers=[(REPLAY_HEADER, letter.dead_letter_id.encode())],
            )
            done.append(Replayed(letter, metadata.partition, metadata.offset))
        return done
    finally:
        await producer.stop()
