"""The batching sink: rows collected per topic-partition, written one batch at a time.

Shaped like quix-streams' BatchingSink: `add` collects, `flush` hands one topic-partition's
batch to `write` and clears it in a `finally` whether the write worked or not. A failed
write raises `SinkWriteError`; the consumer then rewinds to the last committed offset and
reads the records again, so the rows kept in memory never outlive a failure (and are never
the only copy: Kafka still has them until the offset is committed).

A flush covers a window of offsets, first..last, of one topic-partition. The window, not
the rows, names the write: its `dedup_token` is deterministic, so the same window written
again after a crash is recognised by ClickHouse and dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from sinks.rows import Row, TableSpec


class SinkWriteError(RuntimeError):
    """The target refused a batch; nothing of the window may be committed."""


@dataclass(frozen=True)
class Window:
    """The offsets first..last (inclusive) of one topic-partition that one flush covers."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int

    @property
    def dedup_token(self) -> str:
        return f"{self.topic}:{self.partition}:{self.first_offset}-{self.last_offset}"


@dataclass
class Batch:
    topic: str
    partition: int
    rows: list[Row] = field(default_factory=list)


class BatchingSink(ABC):
    """Collects rows per topic-partition; `write` is the one method a target implements."""

    def __init__(self) -> None:
        self._batches: dict[tuple[str, int], Batch] = {}

    def add(self, row: Row, topic: str, partition: int) -> None:
        key = (topic, partition)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = Batch(topic, partition)
        batch.rows.append(row)

    def pending_rows(self, topic: str, partition: int) -> int:
        batch = self._batches.get((topic, partition))
        return len(batch.rows) if batch else 0

    def flush(self, window: Window) -> None:
        """Write the window's batch (if it has rows); it is cleared even when writing fails."""
        key = (window.topic, window.partition)
        try:
            batch = self._batches.get(key)
            if batch is not None and batch.rows:
                self.write(batch, window)
        finally:
            self._batches.pop(key, None)

    def clear(self, topic: str | None = None, partition: int | None = None) -> None:
        """Forget unwritten rows (all, or one topic-partition's) before re-reading them."""
        if topic is None:
            self._batches.clear()
        else:
            self._batches.pop((topic, partition if partition is not None else -1), None)

    @abstractmethod
    def write(self, batch: Batch, window: Window) -> None:
        """Persist the batch durably or raise SinkWriteError."""


class ClickHouseSink(BatchingSink):
    """Inserts a batch into one table with the window's deduplication token.

    The table has `non_replicated_deduplication_window` set (sinks/ddl), without which
    ClickHouse ignores the token on a non-replicated table.
    """

    def __init__(self, spec: TableSpec, client: Client) -> None:
        super().__init__()
        self.spec = spec
        self.client = client

    def write(self, batch: Batch, window: Window) -> None:
        try:
            self.client.insert(
                self.spec.table,
                batch.rows,
                column_names=list(self.spec.columns),
                settings={"insert_deduplication_token": window.dedup_token},
            )
        except Exception as exc:  # network, server and engine errors of assorted types
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
            raise SinkWriteError(
                f"insert into {self.spec.table} ({window.dedup_token}) failed: {first_line}"
            ) from exc
