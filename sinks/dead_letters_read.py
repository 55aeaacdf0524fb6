"""Reading dead letters, bounded and filtered, from where each stage keeps them.

- stage `worker`: the worker's topic stripe.events.dlq (schemas/dead_letter.avsc), read
  from its start to the end offsets it has when the read starts;
- stage `sink`: the `dead_letters` table (rows with stage = 'sink'), read with FINAL so a
  dead letter written twice (crash-retry) is listed once.

Both give `DeadLetter`s carrying the original key and value bytes, which is what replay
needs. Bytes leave ClickHouse as hex: clickhouse-connect would decode a String as UTF-8
and could not give back a value that is not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from refstream.avro_codec import AvroCodec, AvroDecodeError
from refstream.kafka_io import read_to_end
from refstream.settings import KafkaSettings
from refstream.topics import STRIPE_EVENTS_DLQ
from sinks.dead_letters import SINK_STAGE

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000


@dataclass(frozen=True)
class Selection:
    """Which dead letters: failed in [since, until], with one of `ids` (if any), at most
    `limit` of them, oldest first."""

    since: datetime | None = None
    until: datetime | None = None
    ids: tuple[str, ...] = ()
    limit: int = 100

    def matches(self, letter: DeadLetter) -> bool:
        if self.since is not None and letter.failed_at < self.since:
            return False
        if self.until is not None and letter.failed_at > self.until:
            return False
        return not self.ids or letter.dead_letter_id in self.ids


@dataclass(frozen=True)
class DeadLetter:
    dead_letter_id: str
    stage: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes
    event_id: str
    error_type: str
    error: str
    failed_at: datetime


@dataclass(frozen=True)
class Found:
    """The dead letters selected (at most `limit`) and whether more matched."""

    letters: list[DeadLetter]
    more: bool


def _bounded(letters: list[DeadLetter], selection: Selection) -> Found:
    letters.sort(key=lambda d: (d.failed_at, d.dead_letter_id))
    return Found(letters[: selection.limit], len(letters) > selection.limit)


async def read_worker_stage(kafka: KafkaSettings, selection: Selection) -> Found:
    codec = AvroCodec.for_schema("dead_letter")
    topic = kafka.topic(STRIPE_EVENTS_DLQ)
    letters: dict[str, DeadLetter] = {}
    unreadable = 0
    for record in await read_to_end(kafka.bootstrap, topic):
        try:
            r = codec.decode(record.value or b"")
        except AvroDecodeError:
            unreadable += 1  # the sink dead-letters these itself (stage sink)
            continue
        letter = DeadLetter(
            r["dead_letter_id"], r["stage"], r["source_topic"], r["source_partition"],
            r["source_offset"], r["key"], r["value"], r["event_id"] or "", r["error_type"],
            r["error"], datetime.fromtimestamp(r["failed_at_ms"] / 1000, UTC),
        )  # fmt: skip
        # A re-emitted dead letter (worker crash-retry) has the same id: list it once.
        if selection.matches(letter):
            letters.setdefault(letter.dead_letter_id, letter)
    if unreadable:
        log.warning("dlq_unreadable_records", extra={"topic": topic, "records": unreadable})
    return _bounded(list(letters.values()), selection)


_SINK_QUERY = """
SELECT dead_letter_id, stage, source_topic, source_partition, source_offset,
       isNull(key), hex(ifNull(key, '')), hex(value), event_id, error_type, error,
       toUnixTimestamp64Milli(failed_at)
FROM dead_letters FINAL
WHERE stage = {stage:String} AND startsWith(source_topic, {prefix:String})
  AND ({since_ms:Int64} < 0 OR toUnixTimestamp64Milli(failed_at) >= {since_ms:Int64})
  AND ({until_ms:Int64} < 0 OR toUnixTimestamp64Milli(failed_at) <= {until_ms:Int64})
  AND (empty({ids:Array(String)}) OR has({ids:Array(String)}, dead_letter_id))
ORDER BY failed_at, dead_letter_id
LIMIT {limit:UInt32}
"""


def _ms(moment: datetime | None) -> int:
    return -1 if moment is None else int(moment.timestamp() * 1000)


def read_sink_stage(client: Client, kafka: KafkaSettings, selection: Selection) -> Found:
    parameters: dict[str, Any] = {
        "stage": SINK_STAGE,
        "prefix": kafka.topic_prefix,
        "since_ms": _ms(selection.since),
        "until_ms": _ms(selection.until),
        "ids": list(selection.ids),
        "limit": selection.limit + 1,  # one more tells whether more matched
    }
    rows = client.query(_SINK_QUERY, parameters=parameters).result_rows
    letters = [_from_row(row) for row in rows]
    return _bounded(letters, selection)


def _from_row(row: Sequence[Any]) -> DeadLetter:
    key = None if row[5] else bytes.fromhex(row[6])
    failed_at = datetime.fromtimestamp(row[11] / 1000, UTC)
    return DeadLetter(
        row[0], row[1], row[2], row[3], row[4], key, bytes.fromhex(row[7]), row[8], row[9],
        row[10], failed_at,
    )  # fmt: skip
