"""The worker's tables on a real broker: what a batch flushes to the changelogs is what a
fresh process (or the same one after a rebalance) reads back, deletes included."""

from __future__ import annotations

from dataclasses import replace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from refstream.settings import KafkaSettings, load_settings
from refstream.topics import ensure_topics
from streams.worker.tables import DecodedView, PartitionTable, TableStore
from streams.worker.topology import changelog_specs, changelog_topic


def _store(kafka: KafkaSettings) -> TableStore:
    settings = replace(load_settings({}), kafka=kafka)
    names = ("customers", "customer-due")
    return TableStore({name: changelog_topic(settings, name) for name in names})


async def _clients(kafka: KafkaSettings) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
    settings = replace(load_settings({}), kafka=kafka)
    await ensure_topics(kafka, changelog_specs(settings))
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=None)
    await producer.start()
    await consumer.start()
    return producer, consumer


async def test_a_flushed_partition_is_read_back_whole_and_caught_up(
    kafka_settings: KafkaSettings,
) -> None:
    producer, consumer = await _clients(kafka_settings)
    try:
        writer = _store(kafka_settings)
        await writer.restore(consumer, [("customers", 1), ("customer-due", 1)])
        customers = writer.table("customers", 1)
        for n in range(50):  # several versions of a few keys, one batch each
            customers[f"cus_{n % 7}".encode()] = f"v{n}".encode()
            await writer.flush(producer)
        del customers[b"cus_3"]
        customers[b"cus_new"] = b"late"
        assert await writer.flush(producer) == 2
        assert customers.dirty == {}

        reader = _store(kafka_settings)
        read = await reader.restore(consumer, [("customers", 1), ("customer-due", 1)])
        assert read == 52
        assert dict(reader.table("customers", 1)) == dict(customers)
        assert b"cus_3" not in reader.table("customers", 1)
        assert len(reader.table("customer-due", 1)) == 0

        # Another owner writes meanwhile; the next restore reads only what is new.
        customers[b"cus_0"] = b"moved on"
        await writer.flush(producer)
        assert await reader.restore(consumer, [("customers", 1), ("customer-due", 1)]) == 1
        assert reader.table("customers", 1)[b"cus_0"] == b"moved on"
        # A partition no longer wanted is dropped, not kept stale.
        await reader.restore(consumer, [("customers", 2)])
        assert reader.held() == {(reader.changelogs["customers"], 2)}
    finally:
        await consumer.stop()
        await producer.stop()


def test_a_decoded_view_encodes_each_changed_key_once_at_the_end_of_a_batch() -> None:
    table = PartitionTable()
    table[b"a"] = b"1"
    table.dirty = {}
    encoded: list[int] = []

    def dump(value: int) -> bytes:
        encoded.append(value)
        return str(value).encode()

    view = DecodedView(table, lambda raw: None if raw is None else int(raw), dump)
    assert view.get(b"a") == 1 and view.get(b"missing") is None
    for n in range(2, 6):
        view.put(b"a", n, lambda _, n=n: n)
    view.put(b"b", 9, lambda _: 9)
    assert table[b"a"] == b"1"  # nothing written before the batch ends
    view.end_batch()
    assert sorted(encoded) == [5, 9]
    assert table.dirty == {b"a": b"5", b"b": b"9"}
    assert view.get(b"a") == 5  # read again from the table in the next batch


def test_changes_taken_for_a_batch_leave_the_next_batch_s_changes_for_the_next() -> None:
    """A batch's state is written after its outputs while the next batch is decided: what
    is taken at the end of a batch is that batch's changes only."""
    store = TableStore({"customers": "c-changelog"})
    store._partitions[("c-changelog", 0)] = table = PartitionTable()
    table[b"a"] = b"1"
    first = store.take_dirty()
    table[b"a"] = b"2"  # the next batch changes the key again
    del table[b"a"]
    table[b"b"] = b"3"
    second = store.take_dirty()
    assert [(t, p, d) for t, p, _, d in first] == [("c-changelog", 0, {b"a": b"1"})]
    assert [(t, p, d) for t, p, _, d in second] == [("c-changelog", 0, {b"a": None, b"b": b"3"})]
    assert store.take_dirty() == []
