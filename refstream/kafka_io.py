"""Small Kafka reading helpers shared by the CLI, the workers and the tests."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """Every partition of `topic` (asked of the cluster; a consumer's cached metadata may
    not know the topic yet). Raises LookupError when the topic does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"] != 0 or not description["partitions"]:
        raise LookupError(f"topic {topic} does not exist")
    return sorted(TopicPartition(topic, p["partition"]) for p in description["partitions"])


async def assign_from_start(consumer: AIOKafkaConsumer, bootstrap: str, topic: str) -> None:
    """Assign every partition of `topic` to a group-less consumer, from the first record."""
    assignment = await topic_partitions(bootstrap, topic)
    consumer.assign(assignment)
    await consumer.seek_to_beginning(*assignment)


async def read_to_end(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record of `topic` up to the end offsets it had when the call started."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await assign_from_start(consumer, bootstrap, topic)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        records: list[ConsumerRecord] = []
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                records.extend(m for m in messages if m.offset < ends[tp])
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return records
    finally:
        await consumer.stop()


async def delete_prefixed_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a test's or a benchmark's own
    namespace: a broker that keeps every run's partitions runs out of file handles)."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
        return ours
    finally:
        await admin.close()
