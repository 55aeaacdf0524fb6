"""The HTTP app with a fake publisher: status codes, JSON reasons, nothing published on a
rejection, 2xx only after the publish returned, metrics, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from ingress.app import METRICS_KEY, WEBHOOK_PATH, create_app
from ingress.envelope import Envelope
from ingress.publisher import PublishRefusedError, PublishUnavailableError, Receipt
from ingress.rejection import Reason
from refstream.logs import JsonFormatter
from refstream.settings import IngressSettings, Secret
from tests.support.signing import headers_for, sign

SECRET = "whsec_app_tests_current"
OLD_SECRET = "whsec_app_tests_previous"
NOW = 1_800_000_000
MAX_BODY_BYTES = 4096


def event_body(event_id: str = "evt_app_1", customer: str = "cus_A") -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": NOW - 5,
        "data": {"object": {"id": "in_1", "object": "invoice", "customer": customer}},
        "livemode": False,
        "type": "invoice.paid",
    }
    return json.dumps(event, indent=2).encode()


class FakePublisher:
    def __init__(self, error: Exception | None = None, ready: bool = True) -> None:
        self.published: list[Envelope] = []
        self.error = error
        self.is_ready = ready
        self.gate: asyncio.Event | None = None  # when set, publish waits for it
        self.entered = asyncio.Event()
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def publish(self, envelope: Envelope) -> Receipt:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.published.append(envelope)
        return Receipt(partition=0, offset=len(self.published) - 1)

    async def ready(self) -> bool:
        return self.is_ready


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[TestClient] = []

    async def make(publisher: FakePublisher, secrets: tuple[str, ...] = (SECRET,)) -> TestClient:
        settings = IngressSettings(
            webhook_secrets=tuple(Secret(s) for s in secrets), max_body_bytes=MAX_BODY_BYTES
        )
        client = TestClient(TestServer(create_app(settings, publisher, clock=lambda: NOW)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def post(
    client: TestClient, body: bytes | Any, header: str | None
) -> tuple[int, dict[str, Any]]:
    response = await client.post(WEBHOOK_PATH, data=body, headers=headers_for(header))
    return response.status, await response.json()


async def counters(client: TestClient) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "refstream_ingress_requests_total":
                out[sample.labels["outcome"]] = sample.value
            elif sample.name in (
                "refstream_ingress_in_flight",
                "refstream_ingress_publish_seconds_count",
            ):
                out[sample.name] = sample.value
    return out


async def test_a_signed_event_is_published_then_acknowledged(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = await make_client(publisher)
    body = event_body()
    status, answer = await post(client, body, sign(body, SECRET, NOW))
    assert (status, answer) == (200, {"received": True, "event_id": "evt_app_1"})
    [envelope] = publisher.published
    assert envelope.verified.body == body
    assert (envelope.partition_key, envelope.key_source) == ("cus_A", "customer")
    assert envelope.received_at_ms == NOW * 1000
    metrics = await counters(client)
    assert metrics["accepted"] == 1
    assert metrics["refstream_ingress_publish_seconds_count"] == 1


async def test_the_publisher_lives_and_dies_with_the_app(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = await make_client(publisher)
    assert publisher.started and not publisher.stopped
    await client.close()
    assert publisher.stopped


async def test_either_secret_is_accepted_while_rolling(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = await make_client(publisher, secrets=(SECRET, OLD_SECRET))
    for i, secret in enumerate((OLD_SECRET, SECRET)):
        body = event_body(f"evt_roll_{i}")
        assert (await post(client, body, sign(body, secret, NOW)))[0] == 200
    assert len(publisher.published) == 2


def bad_signatures() -> list[tuple[str | None, Reason]]:
    body = event_body()
    good = sign(body, SECRET, NOW).split(",")[1]
    return [
        (None, Reason.MISSING_SIGNATURE),
        (f"v1={'0' * 64}", Reason.MALFORMED_SIGNATURE_HEADER),
        (f"t={NOW},{good.replace('v1=', 'v0=')}", Reason.NO_V1_SIGNATURE),
        (sign(body, "whsec_someone_else", NOW), Reason.SIGNATURE_MISMATCH),
        (sign(body, SECRET, NOW - 301), Reason.TIMESTAMP_OUTSIDE_TOLERANCE),
        (sign(body, SECRET, NOW + 301), Reason.TIMESTAMP_OUTSIDE_TOLERANCE),
    ]


@pytest.mark.parametrize(("header", "reason"), bad_signatures())
async def test_a_bad_signature_is_a_400_with_its_reason_and_nothing_is_published(
    make_client: MakeClient, header: str | None, reason: Reason
) -> None:
    publisher = FakePublisher()
    client = await make_client(publisher)
    status, answer = await post(client, event_body(), header)
    assert status == 400
    assert answer["error"] == reason.value and answer["detail"]
    assert publisher.published == []
    assert (await counters(client))[reason.value] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", Reason.INVALID_JSON),
        (b"\xff\xfe\x00", Reason.INVALID_JSON),
        (b'{"id": "evt_1"}', Reason.NOT_A_STRIPE_EVENT),
        (
            b'{"id": "evt_1", "object": "v2.core.event", "type": "v1.x", "created": "now"}',
            Reason.THIN_EVENT,
        ),
    ],
)
async def test_a_signed_body_that_is_not_a_stripe_event_is_a_400(
    make_client: MakeClient, body: bytes, reason: Reason
) -> None:
    publisher = FakePublisher()
    client = await make_client(publisher)
    status, answer = await post(client, body, sign(body, SECRET, NOW))
    assert (status, answer["error"]) == (400, reason.value)
    assert publisher.published == []


async def test_a_body_over_the_limit_is_a_413(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = await make_client(publisher)
    body = b" " * (MAX_BODY_BYTES + 1)
    status, answer = await post(client, body, sign(body, SECRET, NOW))
    assert (status, answer["error"]) == (413, Reason.BODY_TOO_LARGE.value)

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to go by
        for _ in range(5):
            yield b" " * 1024

    status, answer = await post(client, chunks(), sign(b" " * 5120, SECRET, NOW))
    assert (status, answer["error"]) == (413, Reason.BODY_TOO_LARGE.value)
    assert publisher.published == []


async def test_a_body_at_the_limit_is_accepted(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = await make_client(publisher)
    body = event_body()
    body = body + b" " * (MAX_BODY_BYTES - len(body))  # JSON allows trailing whitespace
    assert (await post(client, body, sign(body, SECRET, NOW)))[0] == 200


async def test_kafka_unavailable_is_a_503_so_that_stripe_retries(make_client: MakeClient) -> None:
    publisher = FakePublisher(error=PublishUnavailableError("publish_timeout", "no ack in 10 s"))
    client = await make_client(publisher)
    body = event_body()
    status, answer = await post(client, body, sign(body, SECRET, NOW))
    assert (status, answer["error"]) == (503, "publish_timeout")
    assert (await counters(client))["publish_timeout"] == 1


async def test_a_record_kafka_refuses_is_a_413(make_client: MakeClient) -> None:
    publisher = FakePublisher(error=PublishRefusedError("record_too_large", "too large"))
    client = await make_client(publisher)
    body = event_body()
    status, answer = await post(client, body, sign(body, SECRET, NOW))
    assert (status, answer["error"]) == (413, "record_too_large")


async def test_a_bug_is_an_opaque_500_and_the_app_keeps_serving(
    make_client: MakeClient,
) -> None:
    publisher = FakePublisher(error=RuntimeError("internal detail"))
    client = await make_client(publisher)
    body = event_body()
    status, answer = await post(client, body, sign(body, SECRET, NOW))
    assert (status, answer) == (500, {"error": "internal_error"})
    publisher.error = None
    assert (await post(client, body, sign(body, SECRET, NOW)))[0] == 200


async def test_the_answer_waits_for_the_publish(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    publisher.gate = asyncio.Event()
    client = await make_client(publisher)
    body = event_body()
    request = asyncio.create_task(post(client, body, sign(body, SECRET, NOW)))
    await asyncio.wait_for(publisher.entered.wait(), 10)
    assert not request.done()
    assert (await counters(client))["refstream_ingress_in_flight"] == 1
    publisher.gate.set()
    assert (await asyncio.wait_for(request, 10))[0] == 200
    assert (await counters(client))["refstream_ingress_in_flight"] == 0


async def test_health_and_readiness(make_client: MakeClient) -> None:
    publisher = FakePublisher(ready=False)
    client = await make_client(publisher)
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert (response.status, await response.json()) == (503, {"ready": False})
    publisher.is_ready = True
    assert (await client.get("/readyz")).status == 200


async def test_secrets_never_reach_logs_or_answers(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    publisher = FakePublisher()
    client = await make_client(publisher, secrets=(SECRET, OLD_SECRET))
    body = event_body()
    answers = [
        await post(client, body, sign(body, SECRET, NOW)),
        await post(client, body, sign(body, "whsec_someone_else", NOW)),
        await post(client, body, None),
        await post(client, b"[]", sign(b"[]", SECRET, NOW)),
    ]
    publisher.error = PublishUnavailableError("kafka_unreachable", "Kafka is not reachable")
    answers.append(await post(client, body, sign(body, SECRET, NOW)))
    metrics_text = await (await client.get("/metrics")).text()
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "webhook_rejected" in logged  # the logs were captured at all
    for secret in (SECRET, OLD_SECRET):
        for text in (logged, json.dumps(answers), metrics_text):
            assert secret not in text
            assert secret.removeprefix("whsec_") not in text


async def test_a_client_gone_mid_body_is_an_incomplete_body_not_a_bug() -> None:
    # Served as `refstream ingress` serves (aiohttp's test server cancels handlers instead).
    publisher = FakePublisher()
    settings = IngressSettings(webhook_secrets=(Secret(SECRET),))
    app = create_app(settings, publisher, clock=lambda: NOW)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"id": "evt_'
        )
        await writer.drain()
        registry = app[METRICS_KEY].registry

        def sample(name: str, outcome: str | None = None) -> float | None:
            return registry.get_sample_value(name, {"outcome": outcome} if outcome else None)

        async with asyncio.timeout(10):
            while sample("refstream_ingress_in_flight") != 1:  # the handler reads the body
                await asyncio.sleep(0.01)
            writer.close()
            while sample("refstream_ingress_in_flight") != 0:
                await asyncio.sleep(0.01)
        assert sample("refstream_ingress_requests_total", "body_incomplete") == 1
        assert sample("refstream_ingress_requests_total", "internal_error") == 0
        assert publisher.published == []
    finally:
        await runner.cleanup()
