"""stripe.events.dlq (dead_letter.avsc) -> table `dead_letters`, plus the sink's own dead
letters: records of any topic that could not be decoded or mapped (stage `sink`).

A sink dead letter is built only from the Kafka record's coordinates, bytes and timestamp,
so a retry after a crash produces the identical row with the identical id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refstream.topics import STRIPE_EVENTS_DLQ
from sinks.rows import Row, RowError, TableSpec, millis, text

COLUMNS = (
    "dead_letter_id", "stage", "source_topic", "source_partition", "source_offset", "key",
    "value", "event_id", "error_type", "error", "failed_at",
)  # fmt: skip

SINK_STAGE = "sink"
_ERROR_MAX_CHARS = 2_000


def to_row(r: Mapping[str, Any]) -> Row:
    return (
        r["dead_letter_id"], r["stage"], r["source_topic"], r["source_partition"],
        r["source_offset"], r["key"], r["value"], text(r["event_id"]), r["error_type"],
        r["error"], millis(r["failed_at_ms"], "failed_at_ms"),
    )  # fmt: skip


def sink_failure_row(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int,
    error: Exception,
) -> Row:
    """The dead letter of a record this sink could not turn into a row."""
    try:
        failed_at = millis(timestamp_ms, "timestamp_ms")
    except RowError:
        failed_at = millis(0, "timestamp_ms")  # a broker timestamp can be -1 (unknown)
    return (
        f"{topic}:{partition}:{offset}:{SINK_STAGE}", SINK_STAGE, topic, partition, offset, key,
        value if value is not None else b"", "", type(error).__name__,
        str(error)[:_ERROR_MAX_CHARS], failed_at,
    )  # fmt: skip


SPEC = TableSpec(STRIPE_EVENTS_DLQ, "dead_letter", "dead_letters", COLUMNS, to_row)
