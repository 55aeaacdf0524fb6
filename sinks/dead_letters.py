"""stripe.events.dlq (dead_letter.avsc) -> table `dead_letters`, plus the sink's own dead
letters (stage `sink`): records of any topic that could not be decoded or mapped, and rows
ClickHouse refused for their values (found by sinks/dead_letters_bisect.py).

A sink dead letter is built only from the Kafka record's coordinates, bytes and timestamp
and the (deterministic) reason, so a retry after a crash produces the identical row with
the identical id. Its text is made UTF-8-safe first: a dead letter must never be refused
for the very value that made it one (a lone surrogate quoted in an error message).
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
WORKER_STAGE = "worker"
# error_type of a row ClickHouse refused (the engine's own error is in `error`).
REFUSED_ERROR_TYPE = "InsertRefused"
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
    return sink_dead_letter(
        topic, partition, offset, key, value, timestamp_ms, type(error).__name__, str(error)
    )


def refused_row(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int,
    table: str,
    reason: str,
    event_id: str = "",
) -> Row:
    """The dead letter of a record whose row `table` refused for its values."""
    return sink_dead_letter(
        topic, partition, offset, key, value, timestamp_ms, REFUSED_ERROR_TYPE,
        f"{table} refused the row: {reason}", event_id,
    )  # fmt: skip


def sink_dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int,
    error_type: str,
    error: str,
    event_id: str = "",
) -> Row:
    try:
        failed_at = millis(timestamp_ms, "timestamp_ms")
    except RowError:
        failed_at = millis(0, "timestamp_ms")  # a broker timestamp can be -1 (unknown)
    return (
        sink_dead_letter_id(topic, partition, offset), SINK_STAGE, topic, partition, offset,
        key, value if value is not None else b"", utf8_safe(event_id), utf8_safe(error_type),
        utf8_safe(error[:_ERROR_MAX_CHARS]), failed_at,
    )  # fmt: skip


def sink_dead_letter_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}:{SINK_STAGE}"


def utf8_safe(text: str) -> str:
    """`text` with anything UTF-8 cannot encode (lone surrogates) written as an escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


SPEC = TableSpec(STRIPE_EVENTS_DLQ, "dead_letter", "dead_letters", COLUMNS, to_row)
