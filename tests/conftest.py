"""Shared fixtures. Integration tests use the real local broker that scripts/test starts
(`refstream kafka start`); each test gets its own topic prefix, so tests never see each
other's records and the broker is never restarted between them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from refstream.kafka_io import delete_prefixed_topics
from refstream.kafka_local import broker_answers
from refstream.settings import KafkaSettings, Settings, load_settings
from refstream.topics import ensure_topics


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings({})


@pytest.fixture(scope="session")
def broker(base_settings: Settings) -> str:
    """The bootstrap address of the running local broker; fails loudly when it is down."""
    bootstrap = base_settings.kafka.bootstrap
    if not asyncio.run(broker_answers(bootstrap, timeout_s=10)):
        pytest.fail(
            f"no Kafka broker at {bootstrap}: run `refstream kafka start` (scripts/test does)"
        )
    return bootstrap


@pytest.fixture
def kafka_settings(broker: str, base_settings: Settings) -> Iterator[KafkaSettings]:
    """Kafka settings with a fresh topic prefix; refstream's topics exist under it, and
    every topic under it is deleted after the test (a local broker that keeps every test's
    partitions runs out of file handles)."""
    kafka = replace(
        base_settings.kafka,
        bootstrap=broker,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        events_partitions=4,
    )
    asyncio.run(ensure_topics(kafka))
    yield kafka
    asyncio.run(delete_prefixed_topics(broker, kafka.topic_prefix))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
