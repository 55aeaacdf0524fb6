"""Who changed which program, and when: one JSON record per applied version on the topic
`referral.programs.changes` (key: program id; value: program_id, version, changed_by,
auth method, changed_at, program), written right after `apply_programs` published the
version. The programs topic itself stays exactly what `refstream programs apply` writes;
versions applied with the CLI simply have no change record (shown as "CLI").

History = every version still on the (compacted) programs topic, plus every change record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from refstream import topics
from refstream.kafka_io import read_to_end
from refstream.settings import KafkaSettings
from refstream.topics import TopicSpec, ensure_topics
from streams.ledger.programs import Program, ProgramVersion
from streams.worker_programs import apply_programs

log = logging.getLogger(__name__)

CHANGES_TOPIC = "referral.programs.changes"


@dataclass(frozen=True)
class Change:
    program_id: str
    version: int
    changed_by: str
    method: str
    changed_at: int  # unix seconds
    program: dict[str, Any]


async def ensure_changes_topic(kafka: KafkaSettings) -> None:
    # Not compacted: the history is the point. One partition keeps it in order.
    await ensure_topics(kafka, [TopicSpec(kafka.topic(CHANGES_TOPIC), 1)])


async def apply_change(
    kafka: KafkaSettings, program: Program, *, changed_by: str, method: str, now_s: int
) -> ProgramVersion | None:
    """Publish `program` like `refstream programs apply` (a new version only when its
    definition changed), then record who did it. None: nothing changed."""
    applied = await apply_programs(kafka, (program,))
    if not applied:
        return None
    version = applied[0]
    await ensure_changes_topic(kafka)
    change = Change(program.id, version.version, changed_by, method, now_s, program.to_json())
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka.topic(CHANGES_TOPIC),
            key=program.id.encode(),
            value=json.dumps(change.__dict__, sort_keys=True).encode(),
        )
    finally:
        await producer.stop()
    log.info("program_changed", extra={"program_id": program.id, "version": version.version,
                                       "changed_by": changed_by})  # fmt: skip
    return version


@dataclass(frozen=True)
class HistoryEntry:
    program_id: str
    version: int
    program: dict[str, Any]
    changed_by: str | None  # None: applied without the dashboard (CLI)
    changed_at: int | None


async def read_history(kafka: KafkaSettings) -> dict[str, list[HistoryEntry]]:
    """Per program, every version known, newest first."""
    versions: dict[tuple[str, int], dict[str, Any]] = {}
    for record in await read_to_end(kafka.bootstrap, kafka.topic(topics.PROGRAMS)):
        try:
            pv = ProgramVersion.from_json(json.loads(record.value or b"null"))
        except (ValueError, TypeError):
            continue  # the worker logs and skips such records too
        versions[(pv.program.id, pv.version)] = pv.program.to_json()
    changes: dict[tuple[str, int], Change] = {}
    try:
        records = await read_to_end(kafka.bootstrap, kafka.topic(CHANGES_TOPIC))
    except LookupError:  # no change was ever made from the dashboard: no topic yet
        records = []
    for record in records:
        try:
            change = Change(**json.loads(record.value or b"null"))
        except (ValueError, TypeError):
            continue
        changes[(change.program_id, change.version)] = change
        versions.setdefault((change.program_id, change.version), change.program)
    history: dict[str, list[HistoryEntry]] = {}
    for (program_id, version), program in sorted(versions.items(), key=lambda kv: -kv[0][1]):
        found = changes.get((program_id, version))
        history.setdefault(program_id, []).append(
            HistoryEntry(program_id, version, program,
                         found.changed_by if found else None,
                         found.changed_at if found else None)
        )  # fmt: skip
    return dict(sorted(history.items()))
