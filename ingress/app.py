"""The ingress HTTP app: Stripe webhooks in, `stripe.events` records out.

POST /webhooks/stripe, in order:
  1. read the raw body, at most `max_body_bytes` (413 beyond);
  2. verify Stripe-Signature over those bytes (400 + reason);
  3. read the routing fields into an envelope (400 + reason);
  4. publish and wait for Kafka's ack (503 when Kafka is down or slow);
  5. 200 {"received": true, "event_id": ...}: only now is the event Stripe's to forget.
Bad input is a 4xx with a JSON `error` reason and is never published; a bug is logged with
context and answered with an opaque 500.

GET /healthz (the process serves), GET /readyz (Kafka answers and the topic exists),
GET /metrics (Prometheus text).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from ingress.envelope import parse_envelope
from ingress.metrics import ACCEPTED, INTERNAL_ERROR, IngressMetrics
from ingress.publisher import Publisher, PublishError, PublishRefusedError
from ingress.rejection import Reason, Rejected
from ingress.signature import SIGNATURE_HEADER, SignatureVerifier
from refstream.settings import IngressSettings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/stripe"
METRICS_KEY = web.AppKey("metrics", IngressMetrics)


def create_app(
    settings: IngressSettings,
    publisher: Publisher,
    *,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The app; it starts and stops `publisher` with itself. `clock` gives unix seconds."""
    metrics = IngressMetrics()
    handlers = _Handlers(settings, publisher, metrics, clock)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[METRICS_KEY] = metrics
    app.router.add_post(WEBHOOK_PATH, handlers.webhook)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)

    async def publisher_lifecycle(_: web.Application) -> AsyncIterator[None]:
        await publisher.start()
        yield
        await publisher.stop()

    app.cleanup_ctx.append(publisher_lifecycle)
    return app


class _Handlers:
    def __init__(
        self,
        settings: IngressSettings,
        publisher: Publisher,
        metrics: IngressMetrics,
        clock: Callable[[], float],
    ) -> None:
        self._verifier = SignatureVerifier(settings.webhook_secrets, settings.signature_tolerance_s)
        self._max_body_bytes = settings.max_body_bytes
        self._publisher = publisher
        self._metrics = metrics
        self._clock = clock

    async def webhook(self, request: web.Request) -> web.Response:
        received_at_ms = int(self._clock() * 1000)
        self._metrics.in_flight.inc()
        try:
            return await self._webhook(request, received_at_ms)
        except Exception:  # a bug, not bad input: keep serving, say nothing of the cause
            log.exception("webhook_internal_error", extra={"remote": request.remote})
            self._metrics.count(INTERNAL_ERROR)
            return _json(500, {"error": INTERNAL_ERROR})
        finally:
            self._metrics.in_flight.dec()

    async def _webhook(self, request: web.Request, received_at_ms: int) -> web.Response:
        # Step 1: the raw body, bounded.
        body = await self._read_body(request)
        if isinstance(body, Rejected):
            return self._reject(request, body)
        # Step 2: the signature, over exactly those bytes.
        header = request.headers.get(SIGNATURE_HEADER)
        verified = self._verifier.verify(body, header, now=received_at_ms / 1000)
        if isinstance(verified, Rejected):
            return self._reject(request, verified)
        # Step 3: the routing fields.
        envelope = parse_envelope(verified, received_at_ms)
        if isinstance(envelope, Rejected):
            return self._reject(request, envelope)
        # Step 4: Kafka's ack.
        context: dict[str, Any] = {"event_id": envelope.event_id, "type": envelope.type}
        started = time.perf_counter()
        try:
            receipt = await self._publisher.publish(envelope)
        except PublishError as exc:
            refused = isinstance(exc, PublishRefusedError)
            status = 413 if refused else 503
            log.log(
                logging.ERROR if refused else logging.WARNING,
                "webhook_not_published",
                extra={**context, "reason": exc.reason, "detail": exc.detail},
            )
            self._metrics.count(exc.reason)
            return _json(status, {"error": exc.reason, "detail": exc.detail})
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        # Step 5: acknowledged.
        self._metrics.count(ACCEPTED)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "webhook_accepted",
                extra={**context, "partition": receipt.partition, "offset": receipt.offset},
            )
        return _json(200, {"received": True, "event_id": envelope.event_id})

    async def _read_body(self, request: web.Request) -> bytes | Rejected:
        too_large = Rejected(Reason.BODY_TOO_LARGE, f"body exceeds {self._max_body_bytes} bytes")
        length = request.content_length
        if length is not None and length > self._max_body_bytes:
            return too_large  # refused before reading a byte of it
        try:
            return await request.read()  # enforces client_max_size on chunked bodies too
        except web.HTTPRequestEntityTooLarge:
            return too_large
        except ConnectionResetError:  # nobody will read the answer, but it is not our bug
            return Rejected(Reason.BODY_INCOMPLETE, "the connection closed mid-body")

    def _reject(self, request: web.Request, rejected: Rejected) -> web.Response:
        log.info(
            "webhook_rejected",
            extra={
                "reason": rejected.reason.value,
                "detail": rejected.detail,
                "remote": request.remote,
            },
        )
        self._metrics.count(rejected.reason.value)
        return _json(rejected.status, {"error": rejected.reason.value, "detail": rejected.detail})

    async def healthz(self, _: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        ready = await self._publisher.ready()
        return _json(200 if ready else 503, {"ready": ready})

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.exposition(),
            headers={"Content-Type": self._metrics.content_type},
        )


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.json_response(payload, status=status)
