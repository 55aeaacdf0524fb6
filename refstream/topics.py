"""The topics refstream owns, and their explicit creation (broker auto-creation stays off).

Names are the contract with downstream services; `KafkaSettings.topic_prefix` is prepended
to each so that tests and tenants can share one cluster.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from refstream.settings import KafkaSettings
from refstream.topic_names import (  # re-exported: the names are part of this module's API
    ATTRIBUTIONS,
    CLAWBACKS,
    INTERNAL_TOPIC_SCHEMAS,
    LIFECYCLE,
    LINK_PROBE_ANSWER_SCHEMA,
    LINKS,
    OUTPUT_TOPICS,
    PAYOUTS,
    PROGRAMS,
    REWARD_STATUS,
    REWARDS,
    STRIPE_EVENTS,
    STRIPE_EVENTS_DLQ,
    TICKS,
    TOPIC_SCHEMAS,
)

__all__ = [  # the names, and what creates the topics
    "ATTRIBUTIONS",
    "CLAWBACKS",
    "INTERNAL_TOPIC_SCHEMAS",
    "LIFECYCLE",
    "LINKS",
    "LINK_PROBE_ANSWER_SCHEMA",
    "OUTPUT_TOPICS",
    "PAYOUTS",
    "PROGRAMS",
    "REWARDS",
    "REWARD_STATUS",
    "STRIPE_EVENTS",
    "STRIPE_EVENTS_DLQ",
    "TICKS",
    "TOPIC_SCHEMAS",
    "TopicSpec",
    "ensure_topics",
    "topic_specs",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False


def topic_specs(kafka: KafkaSettings) -> list[TopicSpec]:
    """Every topic refstream reads or writes. Per-customer topics share the events'
    partition count so that co-partitioned joins stay on one worker."""
    n = kafka.events_partitions
    return [
        TopicSpec(kafka.topic(STRIPE_EVENTS), n),
        TopicSpec(kafka.topic(STRIPE_EVENTS_DLQ), 1),
        TopicSpec(kafka.topic(REWARDS), n),
        TopicSpec(kafka.topic(CLAWBACKS), n),
        TopicSpec(kafka.topic(ATTRIBUTIONS), n),
        TopicSpec(kafka.topic(LIFECYCLE), n),
        TopicSpec(kafka.topic(REWARD_STATUS), n),
        TopicSpec(kafka.topic(PAYOUTS), n),
        # Programs are a small, keyed, latest-wins configuration stream.
        TopicSpec(kafka.topic(PROGRAMS), 1, compacted=True),
        # Co-partitioned with stripe.events: a tick reaches the worker owning the partition.
        TopicSpec(kafka.topic(TICKS), n),
    ]


async def ensure_topics(kafka: KafkaSettings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the missing topics; existing ones are left as they are. Returns those created."""
    specs = topic_specs(kafka) if specs is None else specs
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        new_topics = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=kafka.replication_factor,
                topic_configs={"cleanup.policy": "compact"} if s.compacted else {},
            )
            for s in missing
        ]
        try:
            await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            pass  # another process created them between our list and create: harmless
        await _wait_for_topics(admin, {s.name for s in missing})
        log.info("topics_created", extra={"topics": [s.name for s in missing]})
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _wait_for_topics(admin: AIOKafkaAdminClient, names: set[str]) -> None:
    # Topic creation is asynchronous in KRaft; wait until metadata shows all of them.
    for _ in range(100):
        try:
            if names <= set(await admin.list_topics()):
                return
        except KafkaError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topics not visible after creation: {sorted(names)}")
