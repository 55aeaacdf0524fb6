"""What the worker reads, keeps and writes: its agents' topics, tables and changelogs.

Every agent reads co-partitioned topics (same partition count, same key), so partition p of
every input topic goes to the same worker (the range assignor gives equal partition numbers
of equal-sized topics to the same member) and p's tables live where p's records are read.
Each table partition is one partition of a compacted changelog topic
"<app id>-<table>-changelog"; every topic here is created before the worker consumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from refstream import topics
from refstream.settings import Settings
from refstream.topics import TopicSpec
from streams.worker.cores import CORRECTIONS, LINKS, REROUTED

__all__ = ["CORRECTIONS", "LINKS", "REROUTED"]  # cores names the internal topics
CUSTOMER_TICKS = topics.TICKS
REFERRER_TICKS = "refstream.referrer-ticks"
# Internal topics the worker creates beside refstream's public ones (same partitions).
INTERNAL_TOPICS = (CORRECTIONS, LINKS, REROUTED, REFERRER_TICKS)


@dataclass(frozen=True)
class AgentTopology:
    name: str
    sources: tuple[str, ...]  # unprefixed input topics
    tables: tuple[str, ...]


CUSTOMERS = AgentTopology(
    "customers", (topics.STRIPE_EVENTS, REROUTED, CUSTOMER_TICKS), ("customers", "customer-due")
)
PAYMENT_LINKS = AgentTopology("payment-links", (LINKS,), ("payment-owners",))
REFERRERS = AgentTopology(
    "referrers",
    (topics.REWARDS, CORRECTIONS, topics.PAYOUTS, REFERRER_TICKS),
    ("referrers", "reward-entries", "referrer-due"),
)
AGENTS = (CUSTOMERS, PAYMENT_LINKS, REFERRERS)
TABLES = tuple(table for agent in AGENTS for table in agent.tables)


def group_id(settings: Settings) -> str:
    """The workers' consumer group (also the prefix of their changelog topics)."""
    return settings.kafka.topic(settings.streams.app_id)


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{group_id(settings)}-{table}-changelog"


def changelog_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.kafka.events_partitions
    return [TopicSpec(changelog_topic(settings, name), n, compacted=True) for name in TABLES]


def internal_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the worker needs beyond refstream's public ones."""
    n = settings.kafka.events_partitions
    internal = [TopicSpec(settings.kafka.topic(name), n) for name in INTERNAL_TOPICS]
    return internal + changelog_specs(settings)
