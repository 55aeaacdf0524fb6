"""Reward programs at runtime: the compacted `referral.programs` topic, read and written.

Every worker follows the whole topic (all partitions, from the beginning, outside the
consumer group) so each one knows every program whatever partitions it owns; a change
applies to every event processed after the worker read it. `apply_programs` is what
`refstream programs apply FILE` runs: it publishes each program whose content changed with
the next version number, so re-applying the same file is a no-op.

Record: key = program id (UTF-8), value = JSON of `ProgramVersion` (version + program).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from types import MappingProxyType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from refstream import topics
from refstream.kafka_io import assign_from_start, read_to_end
from refstream.settings import KafkaSettings
from streams.ledger.programs import Program, ProgramError, ProgramVersion

log = logging.getLogger(__name__)


def _apply_record(
    programs: dict[str, ProgramVersion], key: bytes | None, value: bytes | None
) -> None:
    if key is None:
        return
    program_id = key.decode("utf-8", "replace")
    if value is None:  # tombstone: the program was removed
        programs.pop(program_id, None)
        return
    try:
        programs[program_id] = version = ProgramVersion.from_json(json.loads(value))
    except (ProgramError, ValueError) as exc:
        # A bad record must not stop the worker; the previous version stays in force.
        log.error("program_record_rejected", extra={"program_id": program_id, "error": str(exc)})
        return
    log.info("program_in_force", extra={"program_id": program_id, "version": version.version})


def _consumer(kafka: KafkaSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, group_id=None
    )


class ProgramCache:
    """The latest version of every program, kept current by `run()`."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._programs: dict[str, ProgramVersion] = {}
        self.loaded = asyncio.Event()

    def current(self) -> Mapping[str, ProgramVersion]:
        return MappingProxyType(self._programs)

    async def run(self) -> None:
        """Follow the topic forever; `loaded` is set once everything that was on it when
        the worker started has been read (the agent waits for it before its first event,
        so no payment is ever decided against a half-read set of programs)."""
        consumer = _consumer(self._kafka)
        await consumer.start()
        try:
            topic = self._kafka.topic(topics.PROGRAMS)
            await assign_from_start(consumer, self._kafka.bootstrap, topic)
            ends = await consumer.end_offsets(list(consumer.assignment()))
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for messages in batch.values():
                    for message in messages:
                        _apply_record(self._programs, message.key, message.value)
                if not self.loaded.is_set() and all(
                    [await consumer.position(tp) >= end for tp, end in ends.items()]
                ):
                    self.loaded.set()
                    log.info("programs_loaded", extra={"programs": sorted(self._programs)})
        finally:
            await consumer.stop()


async def read_programs(kafka: KafkaSettings) -> dict[str, ProgramVersion]:
    """The programs in force now, read once from the topic."""
    programs: dict[str, ProgramVersion] = {}
    for record in await read_to_end(kafka.bootstrap, kafka.topic(topics.PROGRAMS)):
        _apply_record(programs, record.key, record.value)
    return programs


async def apply_programs(
    kafka: KafkaSettings, programs: tuple[Program, ...]
) -> list[ProgramVersion]:
    """Publish each program whose definition changed, with version = previous + 1."""
    current = await read_programs(kafka)
    changed = [
        ProgramVersion(p, current[p.id].version + 1 if p.id in current else 1)
        for p in programs
        if p.id not in current or current[p.id].program.to_json() != p.to_json()
    ]
    if not changed:
        return []
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for pv in changed:
            await producer.send_and_wait(
                kafka.topic(topics.PROGRAMS),
                key=pv.program.id.encode(),
                value=json.dumps(pv.to_json(), sort_keys=True).encode(),
            )
    finally:
        await producer.stop()
    return changed
