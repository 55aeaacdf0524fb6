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

log = logging.getLogger(__name__)

STRIPE_EVENTS = "stripe.events"
STRIPE_EVENTS_DLQ = "stripe.events.dlq"
REWARDS = "referral.rewards"
CLAWBACKS = "referral.clawbacks"
ATTRIBUTIONS = "referral.attributions"
LIFECYCLE = "referral.lifecycle"
REWARD_STATUS = "referral.status"
PAYOUTS = "referral.payouts"
PROGRAMS = "referral.programs"
# Internal: time signals for the workers' windows and holds (see streams/worker/).
TICKS = "refstream.ticks"
# Internal: payment intent -> owner, events to re-key and link probes (see streams/worker/).
LINKS = "refstream.links"

# The Avro schema (schemas/<name>.avsc) of each topic's record values.
TOPIC_SCHEMAS = {
    STRIPE_EVENTS: "stripe_event",
    STRIPE_EVENTS_DLQ: "dead_letter",
    REWARDS: "reward",
    CLAWBACKS: "clawback",
    ATTRIBUTIONS: "attribution",
    LIFECYCLE: "lifecycle",
    REWARD_STATUS: "reward_status",
    PAYOUTS: "payout",
}
# Schemas of the topics between the worker's own agents (names as in streams/worker/cores.py
# and streams/worker/). Not a contract with downstream services, but records outlive a
# deploy (retained, or in flight during a rolling upgrade), so they evolve by the same rules
# and the codec reads every committed version (schemas/history/).
INTERNAL_TOPIC_SCHEMAS = {
    "refstream.corrections": "correction",
    LINKS: "payment_link",
    TICKS: "tick",
    "refstream.referrer-ticks": "tick",
}
# refstream.rerouted carries stripe_event values, and link probe answers marked by a header.
LINK_PROBE_ANSWER_SCHEMA = "link_probe_answer"
# What the worker emits.
OUTPUT_TOPICS = (REWARDS, ATTRIBUTIONS, CLAWBACKS, REWARD_STATUS, LIFECYCLE)


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
