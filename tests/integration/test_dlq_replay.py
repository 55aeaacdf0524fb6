"""`refstream dlq list|replay` on the real broker and the embedded engine.

A sink dead letter replayed (twice) after its bug is "fixed" ends as exactly one row; a
worker dead letter is re-published byte for byte to its source topic."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from refstream import dlq_cli
from refstream.avro_codec import AvroCodec
from refstream.cli import build_parser
from refstream.kafka_io import read_to_end
from refstream.settings import KafkaSettings, Settings, SinkSettings
from refstream.topics import STRIPE_EVENTS, STRIPE_EVENTS_DLQ
from sinks import dead_letters, stripe_events
from sinks.consumer import ALL_SPECS, SinkConsumer
from sinks.dead_letters_replay import REPLAY_HEADER
from tests.support import poison
from tests.support import sink_checks as check


@pytest.fixture
def sink(tmp_path: Path) -> SinkSettings:
    settings: SinkSettings = check.sink_settings(
        tmp_path / "ch", group_id=f"dlq-{uuid.uuid4().hex[:8]}", batch_max_rows=4
    )
    return settings


@pytest.fixture
def client(sink: SinkSettings) -> Iterator[Client]:
    with check.migrated_client(sink) as client:
        yield client


def _fixed_specs() -> list[Any]:
    """The sink after the "bug fix": stripe_events keeps odd text as escapes."""

    def to_row(record: Any) -> Any:
        return tuple(
            dead_letters.utf8_safe(v) if isinstance(v, str) else v
            for v in stripe_events.to_row(record)
        )

    fixed = replace(stripe_events.SPEC, to_row=to_row)
    return [fixed if spec is stripe_events.SPEC else spec for spec in ALL_SPECS]


async def _sink_until_caught_up(
    kafka: KafkaSettings, sink: SinkSettings, client: Client, specs: Any = ALL_SPECS
) -> None:
    consumer = SinkConsumer(kafka, sink, client, specs=specs)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await check.wait_caught_up(kafka, sink.group_id, consumer.topics)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _dlq(settings: Settings, capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    args = build_parser().parse_args(["dlq", *argv])
    code = await asyncio.to_thread(dlq_cli.main, settings, args)
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_sink_dead_letter_replayed_twice_after_the_fix_is_one_row(
    kafka_settings: KafkaSettings, sink: SinkSettings, client: Client, capsys: Any
) -> None:
    settings = Settings(kafka=kafka_settings, sink=sink)
    event_id, key, value = poison.charge_event(7, currency="us" + poison.SURROGATE)
    good = [poison.charge_event(n) for n in range(3)]
    offsets = await poison.produce_to_partition(
        kafka_settings, STRIPE_EVENTS, 2, [(k, v) for _, k, v in [good[0], (event_id, key, value),
                                                                  *good[1:]]]
    )  # fmt: skip
    await _sink_until_caught_up(kafka_settings, sink, client)
    dead_id = f"{kafka_settings.topic(STRIPE_EVENTS)}:2:{offsets[1]}:sink"

    code, out, _ = await _dlq(settings, capsys, "list", "--stage", "sink", "--format", "json")
    assert code == 0
    (listed,) = json.loads(out)["dead_letters"]
    assert listed["dead_letter_id"] == dead_id and listed["event_id"] == event_id
    assert base64.b64decode(listed["value_base64"]) == value
    assert base64.b64decode(listed["key_base64"]) == key

    code, out, _ = await _dlq(settings, capsys, "replay", "--stage", "sink", "--id", dead_id,
                              "--dry-run")  # fmt: skip
    assert code == 0 and out.startswith(f"would replay {dead_id}")
    for _ in range(2):  # idempotent: the second replay has no second effect
        code, out, err = await _dlq(settings, capsys, "replay", "--stage", "sink", "--id", dead_id)
        assert code == 0, err
        assert out.startswith(f"replayed {dead_id} -> {kafka_settings.topic(STRIPE_EVENTS)}[2]@")
    replays = [r for r in await read_to_end(kafka_settings.bootstrap,
                                            kafka_settings.topic(STRIPE_EVENTS))
               if dict(r.headers).get(REPLAY_HEADER) == dead_id.encode()]  # fmt: skip
    assert [(r.key, r.value) for r in replays] == [(key, value), (key, value)]

    await _sink_until_caught_up(kafka_settings, sink, client, _fixed_specs())
    query = "SELECT count() FROM stripe_events {} WHERE event_id = {{id:String}}"
    final = client.query(query.format("FINAL"), parameters={"id": event_id}).result_rows
    assert final == [(1,)]
    client.command("OPTIMIZE TABLE stripe_events FINAL")
    stored = client.query(query.format(""), parameters={"id": event_id}).result_rows
    assert stored == [(1,)]  # exactly one row, not merely one visible one
    currency = client.query(
        "SELECT currency FROM stripe_events FINAL WHERE event_id = {id:String}",
        parameters={"id": event_id},
    ).result_rows
    assert currency == [("us\\udc00",)]


def _worker_dead_letter(
    kafka: KafkaSettings, source_topic: str, offset: int
) -> tuple[str, bytes, bytes, bytes]:
    _, key, value = poison.charge_event(offset)
    dead_id = f"worker:{source_topic}:0:{offset}"
    record = {
        "dead_letter_id": dead_id, "stage": "worker", "source_topic": source_topic,
        "source_partition": 0, "source_offset": offset, "key": key, "value": value,
        "event_id": f"evt_poison_{offset:03d}", "error_type": "ParseError",
        "error": "the bug", "failed_at_ms": int(time.time() * 1000),
    }  # fmt: skip
    return dead_id, key, value, AvroCodec.for_schema("dead_letter").encode(record)


async def test_a_worker_dead_letter_is_replayed_to_its_source_topic(
    kafka_settings: KafkaSettings, sink: SinkSettings, capsys: Any
) -> None:
    settings = Settings(kafka=kafka_settings, sink=sink)
    dead_id, key, value, letter = _worker_dead_letter(
        kafka_settings, kafka_settings.topic(STRIPE_EVENTS), 5
    )
    foreign_id, _, _, foreign = _worker_dead_letter(kafka_settings, "elsewhere.stripe.events", 6)
    await poison.produce_to_partition(
        kafka_settings, STRIPE_EVENTS_DLQ, 0, [(key, letter), (key, foreign), (b"x", b"junk")]
    )

    code, out, _ = await _dlq(settings, capsys, "list", "--stage", "worker")
    assert code == 0 and dead_id in out and foreign_id in out and "(2 dead letters)" in out

    code, out, err = await _dlq(settings, capsys, "replay", "--stage", "worker", "--id", dead_id)
    assert code == 0, err
    events = await read_to_end(kafka_settings.bootstrap, kafka_settings.topic(STRIPE_EVENTS))
    assert [(r.key, r.value, dict(r.headers)[REPLAY_HEADER]) for r in events] == [
        (key, value, dead_id.encode())
    ]

    # Errors name the problem, exit 2, and replay nothing.
    since = "2000-01-01T00:00:00"
    for argv, message in [
        (["replay", "--stage", "worker", "--id", "worker:nope"], "no worker dead letter with id"),
        (["replay", "--stage", "worker", "--id", foreign_id], "does not read: elsewhere"),
        (["replay", "--stage", "worker"], "needs a selection"),
        (["replay", "--id", dead_id], "needs --stage"),
        (["replay", "--stage", "worker", "--since", since, "--limit", "1"], "more than 1"),
        (["list", "--since", "yesterday"], "not an ISO 8601"),
        (["list", "--limit", "0"], "--limit must be"),
    ]:
        code, _, err = await _dlq(settings, capsys, *argv)
        assert (code, message in err) == (2, True), err
    events = await read_to_end(kafka_settings.bootstrap, kafka_settings.topic(STRIPE_EVENTS))
    assert len(events) == 1
