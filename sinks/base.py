"""The batching sink: rows collected per topic-partition, written one batch at a time.

Shaped like quix-streams' BatchingSink: `add` collects, `flush` hands one topic-partition's
batch to `write` and clears it in a `finally` whether the write worked or not. A failed
write raises `SinkWriteError`; the consumer then rewinds to the last committed offset and
reads the records again, so the rows kept in memory never outlive a failure (and are never
the only copy: Kafka still has them until the offset is committed).

A flush covers a window of offsets, first..last, of one topic-partition. The window, not
the rows, names the write: its `dedup_token` is deterministic, so the same window written
again after a crash is recognised by ClickHouse and dropped.

A write ends one of three ways (`insert_outcome` tells them apart):
- the target is unavailable (connection, timeout, server trouble): `SinkWriteError`, the
  consumer pauses the partition and retries the whole window later;
- the target refused rows for their data (a value that cannot be encoded or parsed): the
  batch is split to find them (sinks/dead_letters_bisect.py), the others are written, and
  `write` returns the refused ones for the dead letters;
- anything else is a bug in refstream: `SinkBugError`, the sink stops.
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from clickhouse_connect.driver import exceptions as ch_errors
from clickhouse_connect.driver.client import Client

from refstream.avro_codec import AvroCodec
from sinks.dead_letters_bisect import Refusal, insert_isolating
from sinks.native_avro import AvroContainer
from sinks.rows import Row, TableSpec

log = logging.getLogger(__name__)


class _SerialisationNoise(logging.Filter):
    """clickhouse-connect logs a traceback at ERROR for every value it cannot serialise,
    then raises; bisection provokes that on purpose, and the sink logs each refused row
    itself (`sink_row_refused`), so these lines would only bury the real ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Error serializing column")


logging.getLogger("clickhouse_connect.driver.transform").addFilter(_SerialisationNoise())


class SinkWriteError(RuntimeError):
    """The target could not take a batch now; nothing of the window may be committed."""


class SinkBugError(RuntimeError):
    """A write failed in a way no input explains: refstream is wrong, so the sink stops."""


class RowsRefusedError(Exception):
    """The target refused an insert because of the values it holds (internal to a write)."""


class NativeRefusedError(Exception):
    """ClickHouse did not take a window's Avro as it is: decode it in Python instead."""


class SourceRecord(NamedTuple):
    """The Kafka record a row came from: what a dead letter must keep to be replayed.

    A tuple: the sink makes one per record it reads (half the cost of a frozen dataclass).
    """

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


class KafkaRecord(Protocol):
    """What the sink reads of a Kafka record (aiokafka's ConsumerRecord has these)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


def source_of(record: KafkaRecord) -> SourceRecord:
    return SourceRecord(record.offset, record.key, record.value, record.timestamp)


@dataclass(frozen=True)
class Window:
    """The offsets first..last (inclusive) of one topic-partition that one flush covers."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    # Tells apart a second insert of the same window into one table (refusal dead letters).
    token_suffix: str = ""

    @property
    def dedup_token(self) -> str:
        span = span_token(self.topic, self.partition, self.first_offset, self.last_offset)
        return span + self.token_suffix


def span_token(topic: str, partition: int, first_offset: int, last_offset: int) -> str:
    """The dedup token of "this table's rows of offsets first..last of this partition".

    Records at an offset never change and a mapping is a pure function, so one span always
    names the same rows: a window and a bisection sub-batch with equal spans hold equal
    rows, which is what makes sharing the token namespace safe.
    """
    return f"{topic}:{partition}:{first_offset}-{last_offset}"


@dataclass(frozen=True)
class RefusedRow:
    """A row the target refused for its values, with the record it came from."""

    row: Row
    source: SourceRecord
    reason: str


@dataclass
class Batch:
    topic: str
    partition: int
    rows: list[Row] = field(default_factory=list)
    # Parallel to `rows` when every row was added with its source (the consumer does);
    # without sources a refused batch cannot be bisected (nothing to name sub-batches by).
    sources: list[SourceRecord | None] = field(default_factory=list)

    def add(self, row: Row, source: SourceRecord | None = None) -> None:
        self.rows.append(row)
        self.sources.append(source)


class BatchingSink(ABC):
    """Collects rows per topic-partition; `write` is the one method a target implements."""

    def __init__(self) -> None:
        self._batches: dict[tuple[str, int], Batch] = {}

    def add(self, row: Row, topic: str, partition: int, source: SourceRecord | None = None) -> None:
        key = (topic, partition)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = Batch(topic, partition)
        batch.add(row, source)

    def pending_rows(self, topic: str, partition: int) -> int:
        batch = self._batches.get((topic, partition))
        return len(batch.rows) if batch else 0

    def flush(self, window: Window) -> list[RefusedRow]:
        """Write the window's batch (if it has rows); it is cleared even when writing fails.

        Returns the rows the target refused for their data (all others are written).
        """
        batch = self._batches.pop((window.topic, window.partition), None)
        return [] if batch is None else self.write_batch(batch, window)

    def write_batch(self, batch: Batch, window: Window) -> list[RefusedRow]:
        """Write a batch held outside this sink (the consumer keeps each window's own, so
        that one window can be written while the next of its partition fills up)."""
        if not batch.rows:
            return []
        refusals = self.write(batch, window) or []
        refused = []
        for refusal in refusals:
            source = batch.sources[refusal.index]
            assert source is not None  # refusals only come from batches with sources
            refused.append(RefusedRow(batch.rows[refusal.index], source, refusal.reason))
        return refused

    def clear(self, topic: str | None = None, partition: int | None = None) -> None:
        """Forget unwritten rows (all, or one topic-partition's) before re-reading them."""
        if topic is None:
            self._batches.clear()
        else:
            self._batches.pop((topic, partition if partition is not None else -1), None)

    @abstractmethod
    def write(self, batch: Batch, window: Window) -> list[Refusal] | None:
        """Persist the batch durably (returning refused rows) or raise SinkWriteError."""


class Outcome(enum.Enum):
    UNAVAILABLE = "unavailable"
    REFUSED = "refused"
    BUG = "bug"


# ClickHouse error codes that mean "these values do not fit", never "try again later".
DATA_ERROR_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    26,  # CANNOT_PARSE_QUOTED_STRING
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    72,  # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    190,  # SIZES_OF_ARRAYS_DONT_MATCH
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    407,  # DECIMAL_OVERFLOW
    469,  # VIOLATED_CONSTRAINT
    691,  # UNKNOWN_ELEMENT_OF_ENUM
})  # fmt: skip


def insert_outcome(exc: BaseException) -> Outcome:
    """What a failed insert means.

    Measured with clickhouse-connect 1.12 on chDB 26.9: a lone surrogate in a String is
    refused while the client encodes it (UnicodeEncodeError), a value that does not fit its
    column type raises the client's DataError, a server refusal carries its error code.
    Network trouble is OperationalError or OSError. A TypeError, AttributeError or plain
    ValueError while serialising means a mapping produced the wrong Python type: a bug.
    """
    if isinstance(exc, UnicodeError | ch_errors.DataError):
        return Outcome.REFUSED
    if isinstance(exc, ch_errors.OperationalError | OSError | TimeoutError):
        return Outcome.UNAVAILABLE
    if isinstance(exc, ch_errors.DatabaseError):
        code = exc.code if exc.code is not None else ch_errors._error_code_from_message(str(exc))
        if code in DATA_ERROR_CODES:
            return Outcome.REFUSED
        if isinstance(exc, ch_errors.ProgrammingError) and code is None:
            return Outcome.BUG  # the client refused our call before reaching the server
        return Outcome.UNAVAILABLE  # a server-side condition (missing table, memory, ...)
    if isinstance(exc, ch_errors.Error):
        return Outcome.UNAVAILABLE  # InterfaceError and the like: transport, not data
    if type(exc).__module__.startswith(("urllib3", "chdb")):
        return Outcome.UNAVAILABLE
    return Outcome.BUG


def first_line(exc: BaseException) -> str:
    """The first line of an error (ClickHouse appends stack traces), bounded."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:500]}" if lines else type(exc).__name__


class ClickHouseSink(BatchingSink):
    """Inserts a batch into one table with the window's deduplication token.

    The table has `non_replicated_deduplication_window` set (sinks/ddl), without which
    ClickHouse ignores the token on a non-replicated table.

    A table whose spec is `native` keeps a window's Kafka records undecoded (`add_raw`)
    and first offers them to ClickHouse as one Avro container (`write_native`); when that
    is not possible the consumer decodes them into rows and writes the batch as any other.
    """

    def __init__(self, spec: TableSpec, client: Client) -> None:
        super().__init__()
        self.spec = spec
        self.client = client
        self._container = (
            AvroContainer(AvroCodec.for_schema(spec.schema)) if spec.native is not None else None
        )
        # Native tables keep the records themselves: nothing is made per record until a
        # window has to be decoded in Python.
        self._raw: dict[tuple[str, int], list[KafkaRecord]] = {}

    @property
    def native(self) -> bool:
        return self._container is not None

    def add_raw(self, records: Sequence[KafkaRecord], topic: str, partition: int) -> None:
        self._raw.setdefault((topic, partition), []).extend(records)

    def take_raw(self, topic: str, partition: int) -> list[KafkaRecord]:
        return self._raw.pop((topic, partition), [])

    def clear(self, topic: str | None = None, partition: int | None = None) -> None:
        super().clear(topic, partition)
        if topic is None:
            self._raw.clear()
        else:
            self._raw.pop((topic, partition if partition is not None else -1), None)

    def write_native(self, records: Sequence[KafkaRecord], window: Window) -> bool:
        """Write the window's records as ClickHouse decodes them; False when they must be
        decoded in Python (a value of another schema version, or ClickHouse refused the
        container: a corrupt record, a value out of range, or the target unavailable, which
        the Python write then meets and reports as usual)."""
        assert self._container is not None
        block = self._container.container([record.value for record in records])
        if block is None:
            return False
        try:
            self._insert_native(block, window)
        except NativeRefusedError as exc:
            log.info("sink_native_fallback", extra={"window": window.dedup_token,
                                                    "reason": str(exc)[:300]})  # fmt: skip
            return False
        return True

    def _insert_native(self, block: bytes, window: Window) -> None:
        """The check table (refuses what the mapping refuses), then the table itself."""
        native = self.spec.native
        assert native is not None
        self._raw_insert(native.check_table, native.check_columns, block)
        self._raw_insert(self.spec.table, self.spec.columns, block, window.dedup_token)

    def _raw_insert(
        self,
        table: str,
        columns: Sequence[str],
        block: bytes,
        token: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        all_settings = dict(settings or {})
        if token is not None:
            all_settings["insert_deduplication_token"] = token
        try:
            self.client.raw_insert(table, list(columns), block, settings=all_settings, fmt="Avro")
        except Exception as exc:  # network, server and engine errors of assorted types
            if insert_outcome(exc) is Outcome.BUG:
                raise SinkBugError(
                    f"Avro insert into {table} failed unexpectedly: {first_line(exc)}"
                ) from exc
            raise NativeRefusedError(f"{table}: {first_line(exc)}") from exc

    def write(self, batch: Batch, window: Window) -> list[Refusal]:
        return self._write_table(batch, window)

    def _write_table(self, batch: Batch, window: Window) -> list[Refusal]:
        token = window.dedup_token
        offsets = [s.offset if s is not None else None for s in batch.sources]
        if any(offset is None for offset in offsets):
            # Without offsets sub-batches cannot be named: refusal stays a plain failure.
            self._insert(batch.rows, token, bisecting=False)
            return []

        def insert(rows: Sequence[Row], sub_token: str) -> None:
            self._insert(rows, sub_token, bisecting=True)

        def sub_token(first: int, last: int) -> str:
            return span_token(window.topic, window.partition, first, last)

        return insert_isolating(
            batch.rows,
            [o for o in offsets if o is not None],
            insert,
            token,
            sub_token,
            RowsRefusedError,
        )

    def _insert(self, rows: Sequence[Row], token: str, *, bisecting: bool) -> None:
        try:
            self.client.insert(
                self.spec.table,
                rows,
                column_names=list(self.spec.columns),
                settings={"insert_deduplication_token": token},
            )
        except Exception as exc:  # network, server and engine errors of assorted types
            outcome = insert_outcome(exc)
            where = f"insert into {self.spec.table} ({token})"
            if outcome is Outcome.REFUSED and bisecting:
                raise RowsRefusedError(first_line(exc)) from exc
            if outcome is Outcome.BUG:
                raise SinkBugError(f"{where} failed unexpectedly: {first_line(exc)}") from exc
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
            raise SinkWriteError(f"{where} failed: {message}") from exc
