"""The worker creates every topic its agents read, changelogs included, before they run."""

from __future__ import annotations

import asyncio

from refstream.metrics import WorkerMetrics
from refstream.settings import Settings, load_settings
from refstream.topics import topic_specs
from streams.worker.runtime import WorkerRuntime
from streams.worker.topology import AGENTS, TABLES, changelog_specs, internal_specs


def test_every_table_has_its_changelog_created_up_front() -> None:
    settings = load_settings({"REFSTREAM_TOPIC_PREFIX": "t1.", "REFSTREAM_EVENTS_PARTITIONS": "6"})
    runtime = asyncio.run(_runtime(settings))  # Kafka clients are made inside a loop
    specs = changelog_specs(settings)
    assert set(runtime.store.changelogs.values()) == {spec.name for spec in specs}
    assert len(specs) == len(TABLES) == len(set(TABLES))
    assert all(spec.compacted and spec.partitions == 6 for spec in specs)
    internal = {spec.name for spec in internal_specs(settings)}
    assert {spec.name for spec in specs} <= internal
    public = {spec.name for spec in topic_specs(settings.kafka)}
    # every topic an agent reads is either public (refstream kafka topics) or created here
    assert set(runtime.source_of) <= internal | public
    assert {source for agent in AGENTS for source in agent.sources} == set(
        runtime.source_of.values()
    )


async def _runtime(settings: Settings) -> WorkerRuntime:
    return WorkerRuntime(settings, WorkerMetrics())
