"""`refstream status`: is the pipeline keeping up? One screen, or `--format json`.

CONTRACT (the dashboard calls it): `async def collect_status(settings) -> dict[str, Any]`,
JSON-able, with these keys (times are unix milliseconds unless named `_s`):

    broker         {"bootstrap": str, "reachable": bool, "error": str | None}
    topics         {topic: {"partitions": int, "records": int}}   (refstream's, prefixed)
    lag            {group: {"role": "worker" | "sink", "total": int,
                            "topics": {topic: {partition (str): int}}}}
    dead_letters   {stage: {"total": int | None, "by_error": {error_type: int},
                            "note": str | None}}   (stages: worker, sink; None = unknown)
    last_event_at  {stripe event type: {"received_at_ms": int, "created_s": int}}
    programs       [{"id": str, "version": int, "active": bool, "program": {file format}}]
    warnings       [str]   (empty when all is well)
    collected_at_ms int

Sources: the broker (topic offsets, consumer-group offsets of the workers' group
REFSTREAM_WORKER_APP_ID and the sinks' REFSTREAM_SINK_GROUP_ID), the last
`SAMPLE_PER_PARTITION` records of each stripe.events and stripe.events.dlq partition, the
programs topic, and ClickHouse's dead_letters table for the sink stage (when it can be
opened: the embedded engine is locked while the sink runs; a ClickHouse server always can).

Warnings: broker unreachable; required Stripe event types never seen for an API family
that is seen (streams/ledger/required_events.py); dead letters present; a group whose lag grew in
each of the last (up to LAG_GROWTH_SAMPLES) samples taken by this process (the dashboard
polls; the CLI takes two samples a second apart).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
import time
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from refstream import topics
from refstream.avro_codec import AvroCodec, AvroDecodeError
from refstream.settings import Settings
from streams.ledger.required_events import FAMILIES, family_of, missing

log = logging.getLogger(__name__)
SAMPLE_PER_PARTITION = 2_000
LAG_GROWTH_SAMPLES = 3
TIMEOUT_S = 10.0
# (bootstrap, group) -> the last lag totals this process saw.
_LAG_HISTORY: dict[tuple[str, str], deque[int]] = {}


async def collect_status(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    out: dict[str, Any] = {
        "broker": {"bootstrap": kafka.bootstrap, "reachable": False, "error": None},
        "topics": {},
        "lag": {},
        "dead_letters": {},
        "last_event_at": {},
        "programs": [],
        "warnings": [],
        "collected_at_ms": int(time.time() * 1000),
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, request_timeout_ms=5_000)
    probe = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await admin.start()
            await probe.start()
    except (KafkaError, OSError, TimeoutError) as exc:
        out["broker"]["error"] = type(exc).__name__
        out["warnings"].append(f"Kafka at {kafka.bootstrap} is not reachable")
        await _close(admin, probe)
        return out
    try:
        out["broker"]["reachable"] = True
        # refstream's topics and the worker app's internal ones (repartition, changelogs);
        # a shared cluster may hold many more that are none of our business.
        ours = {spec.name for spec in topics.topic_specs(kafka)}
        app_prefix = kafka.topic(settings.streams.app_id)
        ends = await _topic_offsets(admin, probe, ours, app_prefix, out["topics"])
        groups = {
            kafka.topic(settings.streams.app_id): "worker",
            settings.sink.group_id: "sink",
        }
        for group, role in groups.items():
            out["lag"][group] = await _group_lag(admin, group, role, ends)
        events_topic, dlq_topic = (
            kafka.topic(topics.STRIPE_EVENTS),
            kafka.topic(topics.STRIPE_EVENTS_DLQ),
        )
        families: set[str] = set()
        seen_types: set[str] = set()
        for record in await _tail(probe, ends, events_topic, "stripe_event"):
            type_ = str(record["type"])
            seen_types.add(type_)
            families.add(family_of(record.get("api_version")))
            last = out["last_event_at"].setdefault(type_, {"received_at_ms": 0, "created_s": 0})
            last["received_at_ms"] = max(last["received_at_ms"], int(record["received_at_ms"]))
            last["created_s"] = max(last["created_s"], int(record["created"]))
        out["dead_letters"]["worker"] = _count_errors(
            await _tail(probe, ends, dlq_topic, "dead_letter")
        )
        from streams.worker_programs import read_programs

        try:
            in_force = await read_programs(kafka)
        except LookupError:
            in_force = {}
        out["programs"] = [
            {"id": pv.program.id, "version": pv.version, "active": pv.program.active,
             "program": pv.program.to_json()}
            for pv in in_force.values()
        ]  # fmt: skip
        absent = sorted(ours - set(out["topics"]))
        if absent:
            out["warnings"].append(f"topics missing (run refstream topics): {', '.join(absent)}")
    finally:
        await _close(admin, probe)
    out["dead_letters"]["sink"] = await asyncio.to_thread(_sink_dead_letters, settings)
    out["warnings"] += _warnings(out, families, seen_types)
    return out


async def group_lag(
    bootstrap: str, group: str, topic_names: list[str]
) -> dict[TopicPartition, int]:
    """Records of each partition of `topic_names` the group has not committed yet (the
    lag the worker and the sink export as refstream_consumer_lag)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    try:
        partitions = [
            TopicPartition(described["topic"], p["partition"])
            for described in await admin.describe_topics(topic_names)
            for p in described.get("partitions") or []
        ]
        if not partitions:
            return {}
        ends = await probe.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        lag = {}
        for tp in partitions:
            meta = committed.get(tp)
            lag[tp] = ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0)
        return lag
    finally:
        await admin.close()
        try:
            await probe.stop()
        except asyncio.CancelledError:
            # aiokafka's consumer re-raises the cancellation of its own internal task on
            # stop; only a cancellation of the caller must go on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise


async def _close(admin: AIOKafkaAdminClient, probe: AIOKafkaConsumer) -> None:
    for stop in (probe.stop, admin.close):
        try:
            await stop()
        except Exception as exc:  # noqa: BLE001 - closing a half-started client must not mask why
            log.debug("status_close_failed", extra={"error": type(exc).__name__})


async def _topic_offsets(
    admin: AIOKafkaAdminClient,
    probe: AIOKafkaConsumer,
    ours: set[str],
    app_prefix: str,
    out: dict[str, Any],
) -> dict[TopicPartition, int]:
    names = sorted(t for t in await admin.list_topics() if t in ours or t.startswith(app_prefix))
    partitions: list[TopicPartition] = []
    for described in await admin.describe_topics(names) if names else []:
        partitions += [TopicPartition(described["topic"], p["partition"])
                       for p in described.get("partitions") or []]  # fmt: skip
    ends: dict[TopicPartition, int] = await probe.end_offsets(partitions) if partitions else {}
    starts: dict[TopicPartition, int] = (
        await probe.beginning_offsets(partitions) if partitions else {}
    )
    for tp in partitions:
        entry = out.setdefault(tp.topic, {"partitions": 0, "records": 0})
        entry["partitions"] += 1
        entry["records"] += ends[tp] - starts[tp]
    return ends


async def _group_lag(
    admin: AIOKafkaAdminClient, group: str, role: str, ends: dict[TopicPartition, int]
) -> dict[str, Any]:
    committed = await admin.list_consumer_group_offsets(group)
    by_topic: dict[str, dict[str, int]] = {}
    total = 0
    for tp, meta in committed.items():
        if tp not in ends or meta.offset < 0:
            continue
        lag = max(0, ends[tp] - meta.offset)
        by_topic.setdefault(tp.topic, {})[str(tp.partition)] = lag
        total += lag
    return {"role": role, "total": total, "topics": by_topic}


async def _tail(
    probe: AIOKafkaConsumer, ends: dict[TopicPartition, int], topic: str, schema: str
) -> list[dict[str, Any]]:
    """The last SAMPLE_PER_PARTITION decodable records of each partition of `topic`."""
    partitions = sorted(tp for tp in ends if tp.topic == topic)
    if not partitions:
        return []
    codec = AvroCodec.for_schema(schema)
    probe.assign(partitions)
    starts = await probe.beginning_offsets(partitions)
    for tp in partitions:
        probe.seek(tp, max(starts[tp], ends[tp] - SAMPLE_PER_PARTITION))
    records: list[dict[str, Any]] = []
    remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
    while remaining:
        batch = await probe.getmany(*remaining, timeout_ms=1000)
        for tp, messages in batch.items():
            for message in messages:
                if message.offset < ends[tp] and message.value is not None:
                    try:
                        records.append(codec.decode(message.value))
                    except AvroDecodeError:
                        continue  # the worker dead-letters those; counted there
        remaining = {tp for tp in remaining if await probe.position(tp) < ends[tp]}
    probe.unsubscribe()
    return records


def _count_errors(letters: list[dict[str, Any]]) -> dict[str, Any]:
    by_error: dict[str, int] = {}
    for letter in letters:
        by_error[str(letter["error_type"])] = by_error.get(str(letter["error_type"]), 0) + 1
    return {"total": len(letters), "by_error": by_error, "note": None}


def _sink_dead_letters(settings: Settings) -> dict[str, Any]:
    from sinks.clickhouse import ClickHouseError, connect, engine_folder, engine_folder_locked

    sink = settings.sink
    unknown: dict[str, Any] = {"total": None, "by_error": {}, "note": None}
    if sink.embedded:
        folder = engine_folder(sink)
        if not folder.is_dir():
            return {**unknown, "note": "no ClickHouse data yet"}
        if engine_folder_locked(folder):
            return {**unknown, "note": "the running sink holds the embedded engine"}
    try:
        client = connect(sink, readonly=True)
        rows = client.query(
            "SELECT error_type, count() FROM dead_letters FINAL GROUP BY error_type"
        ).result_rows
    except (ClickHouseError, Exception) as exc:  # noqa: BLE001 - status must still answer
        return {**unknown, "note": f"ClickHouse not readable: {type(exc).__name__}"}
    by_error = {str(error): int(count) for error, count in rows}
    return {"total": sum(by_error.values()), "by_error": by_error, "note": None}


def _warnings(status: dict[str, Any], families: set[str], seen: set[str]) -> list[str]:
    out = []
    for family in sorted(families & set(FAMILIES)):
        for required in missing(family, seen):
            out.append(f"{required.type} never seen ({family} events are): {required.lost_without}")
    for stage, letters in status["dead_letters"].items():
        if letters.get("total"):
            out.append(f"{letters['total']} dead letters at stage {stage}: see refstream dlq list")
    bootstrap = status["broker"]["bootstrap"]
    for group, lag in status["lag"].items():
        history = _LAG_HISTORY.setdefault((bootstrap, group), deque(maxlen=LAG_GROWTH_SAMPLES))
        history.append(lag["total"])
        samples = list(history)
        if len(samples) >= 2 and all(a < b for a, b in itertools.pairwise(samples)):
            out.append(f"lag of {lag['role']} group {group} is growing: {samples}")
    return out


def _ago(ms: int, now_ms: int) -> str:
    seconds = max(0, (now_ms - ms) // 1000)
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def render(status: dict[str, Any]) -> str:
    """The one screen."""
    now = status["collected_at_ms"]
    broker = status["broker"]
    lines = [f"broker  {broker['bootstrap']}: {'up' if broker['reachable'] else 'DOWN'}"]
    for group, lag in status["lag"].items():
        worst = max((v for parts in lag["topics"].values() for v in parts.values()), default=0)
        lines.append(f"lag     {lag['role']:<6} {group}: {lag['total']} (worst partition {worst})")
    for stage, letters in status["dead_letters"].items():
        total = "?" if letters["total"] is None else letters["total"]
        detail = ", ".join(f"{k} {v}" for k, v in letters["by_error"].items())
        note = f" ({letters['note']})" if letters.get("note") else ""
        lines.append(f"dlq     {stage:<6} {total}{': ' + detail if detail else ''}{note}")
    for program in status["programs"]:
        lines.append(f"program {program.get('id')} v{program.get('version')}")
    if status["last_event_at"]:
        lines.append("last events:")
        for type_, last in sorted(status["last_event_at"].items()):
            lines.append(f"  {type_:<34} {_ago(last['received_at_ms'], now)}")
    lines.append("topics: " + ", ".join(
        f"{name} {t['records']}" for name, t in sorted(status["topics"].items())
    ))  # fmt: skip
    lines += [f"WARNING {w}" for w in status["warnings"]] or ["no warnings"]
    return "\n".join(lines)


def main(settings: Settings, args: argparse.Namespace) -> int:
    async def twice() -> dict[str, Any]:
        await collect_status(settings)  # a first lag sample for the growth warning
        await asyncio.sleep(1)
        return await collect_status(settings)

    status = asyncio.run(twice())
    if args.format == "json":
        json.dump(status, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print(render(status))
    return 0 if status["broker"]["reachable"] else 1
