"""The worker's tables: one in-memory map per table partition, made durable by a changelog.

A table partition is a dict of bytes; every change made while a batch is decided is kept
as dirty and written, last value per key, to the table's changelog partition when the batch
is flushed (after the batch's outputs are acknowledged, before its offsets are committed).
On assignment a partition is rebuilt by reading its changelog partition to the end; a
partition this process held before the rebalance is only caught up from the offset it had
reached (eager rebalances revoke everything, and most partitions come straight back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

log = logging.getLogger(__name__)

T = TypeVar("T")


class PartitionTable(MutableMapping[bytes, bytes]):
    """One partition of one table; what changed since the last flush is `dirty`."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.dirty: dict[bytes, bytes | None] = {}  # None: deleted (a tombstone)
        self.next_offset = 0  # next changelog offset to read (what this copy has seen)

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return self.data.get(key, default)

    def __getitem__(self, key: bytes) -> bytes:
        return self.data[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self.dirty[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self.data[key]
        self.dirty[key] = None

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def apply_changelog(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is not None:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        self.next_offset = offset + 1


# (changelog topic, partition, its table, {key: value or None}) taken from the tables
Changes = list[tuple[str, int, "PartitionTable", dict[bytes, bytes | None]]]


class TableStore:
    """Every table partition this process holds, by (changelog topic, partition)."""

    def __init__(self, changelogs: dict[str, str]) -> None:
        self.changelogs = changelogs  # table name -> changelog topic
        self._partitions: dict[tuple[str, int], PartitionTable] = {}

    def table(self, name: str, partition: int) -> PartitionTable:
        return self._partitions[(self.changelogs[name], partition)]

    def held(self) -> set[tuple[str, int]]:
        return set(self._partitions)

    async def restore(self, consumer: AIOKafkaConsumer, wanted: Iterable[tuple[str, int]]) -> int:
        """Hold exactly `wanted` (table name, partition): drop the others, read the new or
        stale ones' changelogs to their end. Returns the records read."""
        keys = {(self.changelogs[name], p) for name, p in wanted}
        for dropped in set(self._partitions) - keys:
            del self._partitions[dropped]
        for key in keys - set(self._partitions):
            self._partitions[key] = PartitionTable()
        tps = [TopicPartition(topic, p) for topic, p in sorted(keys)]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        behind = {
            tp for tp in tps if self._partitions[(tp.topic, tp.partition)].next_offset < ends[tp]
        }
        if not behind:
            return 0
        consumer.assign(sorted(behind))
        for tp in behind:
            consumer.seek(tp, self._partitions[(tp.topic, tp.partition)].next_offset)
        read = 0
        while behind:
            batch = await consumer.getmany(*behind, timeout_ms=1000)
            for tp, records in batch.items():
                table = self._partitions[(tp.topic, tp.partition)]
                for record in records:
                    if record.offset < ends[tp]:
                        table.apply_changelog(record.key, record.value, record.offset)
                        read += 1
            behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
        for tp in tps:  # a compacted tail (or a transaction marker) may end past the last record
            table = self._partitions[(tp.topic, tp.partition)]
            table.next_offset = max(table.next_offset, ends[tp])
        consumer.assign([])
        return read

    async def flush(self, producer: AIOKafkaProducer) -> int:
        """Write every dirty key to its changelog partition and wait for the acks."""
        return await self.write(producer, self.take_dirty())

    def take_dirty(self) -> Changes:
        """What changed since the last call, taken out of the tables (later changes are
        the next batch's)."""
        taken = []
        for (topic, partition), table in self._partitions.items():
            if table.dirty:
                taken.append((topic, partition, table, table.dirty))
                table.dirty = {}
        return taken

    @staticmethod
    async def write(producer: AIOKafkaProducer, changes: Changes) -> int:
        """Write taken changes to their changelog partitions and wait for the acks."""
        pending: list[tuple[PartitionTable, asyncio.Future]] = []
        for topic, partition, table, dirty in changes:
            for key, value in dirty.items():
                sent = await producer.send(topic, value=value, key=key, partition=partition)
                pending.append((table, sent))
        for table, sent in pending:
            metadata = await sent
            table.next_offset = max(table.next_offset, metadata.offset + 1)
        return len(pending)


class DecodedView(Generic[T]):
    """A table partition's values decoded, for the batch in hand: a key is decoded on its
    first read and encoded once, when the batch ends (`end_batch`), however many of the
    batch's records changed it.

    A decision may change a value in place (no copy per record). So that a record that
    fails half way can be undone, every change is put with its `replay` (the same
    decision as a function of the value before it); `rebuild` decodes the key's value
    again from the table, which still holds what the batch started from, and replays the
    batch's changes to it in order. Decisions are deterministic, so that is the value the
    view held before the failed record."""

    def __init__(
        self,
        table: PartitionTable,
        load: Callable[[bytes | None], T | None],
        dump: Callable[[T], bytes],
    ) -> None:
        self.table, self._load, self._dump = table, load, dump
        self._values: dict[bytes, T | None] = {}
        self._replays: dict[bytes, list[Callable[[T | None], T]]] = {}

    def get(self, key: bytes) -> T | None:
        if key not in self._values:
            self._values[key] = self._load(self.table.get(key))
        return self._values[key]

    def put(self, key: bytes, value: T, replay: Callable[[T | None], T]) -> None:
        """`value` is the key's value now; `replay(before)` makes it again from the value
        the key had before this change (a fresh copy of it, which it may change)."""
        self._values[key] = value
        self._replays.setdefault(key, []).append(replay)

    def rebuild(self, key: bytes) -> T | None:
        """The key's value as the batch's changes left it, made again from the table."""
        value = self._load(self.table.get(key))
        for replay in self._replays.get(key, ()):
            value = replay(value)
        self._values[key] = value
        return value

    def end_batch(self) -> None:
        for key in self._replays:
            value = self._values[key]
            if value is not None:
                self.table[key] = self._dump(value)
        self._values, self._replays = {}, {}
