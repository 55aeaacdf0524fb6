"""The worker creates every topic its agents read, changelogs included, before they run."""

from __future__ import annotations

from refstream.settings import load_settings
from streams.app import TABLES, changelog_specs, create_app, internal_specs


def test_every_table_has_its_changelog_created_up_front() -> None:
    settings = load_settings({"REFSTREAM_TOPIC_PREFIX": "t1.", "REFSTREAM_EVENTS_PARTITIONS": "6"})
    app = create_app(settings)
    changelogs = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    specs = changelog_specs(settings)
    assert changelogs == {spec.name for spec in specs}
    assert len(specs) == len(TABLES)
    assert all(spec.compacted and spec.partitions == 6 for spec in specs)
    assert {spec.name for spec in specs} <= {spec.name for spec in internal_specs(settings)}
