"""Records the sink must isolate: stripe.events envelopes as the ingress would publish them
(the body is the JSON bytes Stripe sent), some with values ClickHouse refuses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from refstream.avro_codec import AvroCodec
from refstream.settings import KafkaSettings
from tests.support import sink_scenario as scenario

SURROGATE = "\udc00"  # a lone UTF-16 surrogate: valid in a JSON escape, not in UTF-8


def charge_event(
    n: int, *, currency: str = "usd", status: str = "succeeded", body: bytes | None = None
) -> tuple[str, bytes, bytes]:
    """(event_id, key, Avro value) of a charge.succeeded envelope of customer cus_P."""
    event_id = f"evt_poison_{n:03d}"
    obj = {"object": "charge", "id": f"ch_{n}", "customer": "cus_P", "amount": 100 + n,
           "amount_captured": 100 + n, "currency": currency, "status": status}  # fmt: skip
    record = scenario.complete(
        "stripe_event", scenario.stripe_event(event_id, "charge.succeeded", scenario.D1, obj)
    )
    if body is not None:
        record["body"] = body
    # json.dumps escapes the surrogate as \\udc00: the body bytes are plain ASCII, as the
    # ingress receives them; only the sink's json.loads brings the surrogate back.
    assert SURROGATE not in record["body"].decode("ascii")
    return event_id, b"cus_P", AvroCodec.for_schema("stripe_event").encode(record)


def deeply_nested_body(n: int) -> bytes:
    return json.dumps({"id": f"evt_poison_{n:03d}", "data": {"object": {}}}).encode()[:-2] + (
        b', "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}"
    )


def huge_number_body(n: int) -> bytes:
    return b'{"id": "evt_poison_%03d", "data": {"object": {"amount": ' % n + b"9" * 5000 + b"}}}"


async def produce_to_partition(
    kafka: KafkaSettings, topic: str, partition: int, records: Sequence[tuple[bytes, bytes]]
) -> list[int]:
    """Send (key, value) records to one partition in order; returns their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(kafka.topic(topic), value=value, key=key, partition=partition)
            for key, value in records
        ]
        return [(await future).offset for future in futures]
    finally:
        await producer.stop()


async def wait_until(predicate: Any, timeout_s: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.1)
