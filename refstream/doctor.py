"""`refstream doctor`: is Stripe sending every event type the ledger needs?

Two checks against streams/ledger/required_events.py, per API family:
1. seen: the event types in the retained `stripe.events` log (the last `--sample` records
   of each partition), with the API versions they were rendered in;
2. enabled (only with REFSTREAM_STRIPE_API_KEY): the `enabled_events` of the account's
   webhook endpoints, read with stripe-python (`GET /v1/webhook_endpoints`).
A required type missing from either is reported with what the ledger loses without it.
Exit status: 0 all present, 1 something missing, 2 the check itself could not run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

from refstream import topics
from refstream.avro_codec import AvroCodec, AvroDecodeError
from refstream.kafka_io import topic_partitions
from refstream.settings import Settings
from streams.ledger.required_events import FAMILIES, family_of, missing

DEFAULT_SAMPLE = 20_000


@dataclass
class Seen:
    types: Counter[str] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    records: int = 0


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    api_version: str | None
    enabled_events: tuple[str, ...]
    status: str


async def seen_events(bootstrap: str, topic: str, sample: int) -> Seen:
    """Event types and API families of the last `sample` records of each partition."""
    codec = AvroCodec.for_schema("stripe_event")
    seen = Seen()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, topic)
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - sample))
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset >= ends[tp] or message.value is None:
                        continue
                    try:
                        record = codec.decode(message.value)
                    except AvroDecodeError:
                        continue  # the worker dead-letters those; not this check's business
                    seen.records += 1
                    seen.types[str(record["type"])] += 1
                    seen.families[family_of(record.get("api_version"))] += 1
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return seen


def webhook_endpoints(api_key: str, api_base: str, account: str | None = None) -> list[Endpoint]:
    """The account's webhook endpoints (all pages)."""
    import stripe

    client = stripe.StripeClient(api_key, base_addresses={"api": api_base}, max_network_retries=2)
    options: dict[str, Any] = {} if account is None else {"stripe_account": account}
    page = client.v1.webhook_endpoints.list(params={"limit": 100}, options=options)  # type: ignore[arg-type]
    found: list[Endpoint] = []
    for item in page.auto_paging_iter():
        data = item.to_dict()
        found.append(
            Endpoint(
                id=str(data.get("id")),
                url=str(data.get("url")),
                api_version=data.get("api_version"),
                enabled_events=tuple(data.get("enabled_events") or ()),
                status=str(data.get("status")),
            )
        )
    return found


def report(
    seen: Seen | None, endpoints: list[Endpoint] | None, families: Iterable[str]
) -> dict[str, Any]:
    """The doctor's findings as JSON-ready data; `ok` is False when anything is missing."""
    out: dict[str, Any] = {"families": sorted(families), "checks": []}
    for family in out["families"]:
        if seen is not None:
            gaps = missing(family, seen.types)
            out["checks"].append(
                {
                    "check": "seen",
                    "family": family,
                    "records": seen.records,
                    "missing": [{"type": e.type, "lost_without": e.lost_without} for e in gaps],
                }
            )
        for endpoint in endpoints or []:
            if endpoint.status != "enabled":
                continue
            if endpoint.api_version is not None and family_of(endpoint.api_version) != family:
                continue
            gaps = missing(family, endpoint.enabled_events)
            out["checks"].append(
                {
                    "check": "enabled",
                    "family": family,
                    "endpoint": endpoint.id,
                    "url": endpoint.url,
                    "missing": [{"type": e.type, "lost_without": e.lost_without} for e in gaps],
                }
            )
    out["ok"] = all(not check["missing"] for check in out["checks"])
    return out


def render(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for check in result["checks"]:
        where = (
            f"seen in the last {check['records']} events"
            if check["check"] == "seen"
            else f"enabled on {check['endpoint']} ({check['url']})"
        )
        head = f"[{check['family']}] {where}: "
        if not check["missing"]:
            lines.append(head + "every required event type")
            continue
        lines.append(head + f"{len(check['missing'])} required type(s) missing")
        for gap in check["missing"]:
            lines.append(f"  - {gap['type']}: without it, no {gap['lost_without']}")
    lines.append("OK" if result["ok"] else "MISSING EVENTS: enable them on the endpoint")
    return "\n".join(lines)


def main(settings: Settings, args: Any) -> int:
    kafka, streams = settings.kafka, settings.streams
    try:
        seen = asyncio.run(
            seen_events(kafka.bootstrap, kafka.topic(topics.STRIPE_EVENTS), args.sample)
        )
    except (LookupError, OSError) as exc:
        print(f"refstream doctor: cannot read {topics.STRIPE_EVENTS}: {exc}", file=sys.stderr)
        return 2
    endpoints = None
    if streams.stripe_api_key is not None:
        import stripe

        try:
            endpoints = webhook_endpoints(
                streams.stripe_api_key.value, streams.stripe_api_base, args.account
            )
        except stripe.StripeError as exc:  # its message never carries the key
            print(f"refstream doctor: Stripe API: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    families = set(seen.families) or set(FAMILIES)
    if args.family:
        families = {args.family}
    result = report(seen, endpoints, families)
    print(json.dumps(result, indent=2) if args.format == "json" else render(result))
    return 0 if result["ok"] else 1
