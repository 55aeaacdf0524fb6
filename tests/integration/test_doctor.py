"""`refstream doctor` against the real broker and stripe-mock: required event types never
seen, and webhook endpoints whose enabled_events miss some."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from refstream import topics
from refstream.settings import KafkaSettings
from streams.ledger.required_events import BASIL, required_types
from tests.support.factories import BASIL as BASIL_VERSION
from tests.support.factories import StripeFactory
from tests.support.processes import kafka_env

REPO = Path(__file__).resolve().parents[2]
STRIPE_MOCK = "http://127.0.0.1:12111"


async def publish(kafka: KafkaSettings, types: list[str]) -> None:
    f = StripeFactory(BASIL_VERSION, seed=5)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for n, type_ in enumerate(types):
            obj = f.customer(created=1_750_000_000 + n)
            envelope = f.envelope(f.event(type_, obj, created=1_750_000_000 + n))
            from refstream.avro_codec import AvroCodec

            value = AvroCodec.for_schema("stripe_event").encode(envelope)
            await producer.send_and_wait(
                kafka.topic(topics.STRIPE_EVENTS), key=obj["id"].encode(), value=value
            )
    finally:
        await producer.stop()


def doctor(kafka: KafkaSettings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refstream.cli", "doctor", "--format", "json", *args],
        cwd=REPO,
        env={**os.environ, **kafka_env(kafka), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_doctor_names_required_types_never_seen(kafka_settings: KafkaSettings) -> None:
    everything_but = [t for t in required_types(BASIL) if t != "invoice_payment.paid"]
    asyncio.run(publish(kafka_settings, everything_but))
    done = doctor(kafka_settings)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    (check,) = result["checks"]
    assert (check["check"], check["family"], check["records"]) == (
        "seen",
        BASIL,
        len(everything_but),
    )
    assert [gap["type"] for gap in check["missing"]] == ["invoice_payment.paid"]
    assert "claw back nothing" in check["missing"][0]["lost_without"]

    asyncio.run(publish(kafka_settings, ["invoice_payment.paid"]))
    assert doctor(kafka_settings).returncode == 0


def test_doctor_compares_webhook_endpoints_with_the_required_set(
    kafka_settings: KafkaSettings,
) -> None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(STRIPE_MOCK, timeout=2)
    except urllib.error.HTTPError:
        pass  # it answers (401 without a key): it is up
    except OSError:
        if os.environ.get("CI"):
            pytest.fail("stripe-mock is not running on :12111 (scripts/test starts it)")
        pytest.skip("stripe-mock is not running on :12111 (scripts/test starts it)")
    asyncio.run(publish(kafka_settings, required_types(BASIL)))
    key = "sk_test_" + "doctor0000000000"
    done = doctor(
        kafka_settings,
        REFSTREAM_STRIPE_API_KEY=key,
        REFSTREAM_STRIPE_API_BASE=STRIPE_MOCK,
    )
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    enabled = [c for c in result["checks"] if c["check"] == "enabled"]
    # stripe-mock's canned endpoint enables charge.failed and charge.succeeded only.
    assert len(enabled) == 1 and enabled[0]["endpoint"].startswith("we_")
    missing = {gap["type"] for gap in enabled[0]["missing"]}
    assert missing == set(required_types(BASIL)) - {"charge.succeeded"}
    assert key not in done.stdout + done.stderr
