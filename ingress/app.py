"""The ingress HTTP app: Stripe webhooks in, `stripe.events` records out.

POST /webhooks/stripe, in order:
  1. refuse any Content-Encoding but identity (415: Stripe never compresses, and a body
     aiohttp would decompress is not the bytes Stripe signed); read the raw body, at most
     `max_body_bytes` (413 beyond) within `body_read_timeout_ms` (408 beyond);
  2. verify Stripe-Signature over those bytes (400 + reason); nothing about the content
     is said before this step;
  3. parse the body, refusing what no downstream stage can carry (ingress/body_limits.py),
     and read the routing fields into an envelope (400 + reason);
  4. publish and wait for Kafka's ack (503 when Kafka is down or slow);
  5. 200 {"received": true, "event_id": ...}: only now is the event Stripe's to forget.
Bad input is a 4xx with a JSON `error` reason and is never published; a bug is logged with
context and answered with an opaque 500.

GET /healthz (the process serves), GET /readyz (Kafka answers and the topic exists),
GET /metrics (Prometheus text): on the same listener, or, when `admin_port` is set, only on
the admin app (`app[ADMIN_APP_KEY]`, served by ingress/server.py); then the public app
serves the webhook path alone. Unknown paths and methods are JSON 404/405, and no answer
carries aiohttp's Server banner (ingress/http_errors.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from ingress.envelope import parse_envelope
from ingress.http_errors import json_http_errors, strip_banner
from ingress.metrics import ACCEPTED, INTERNAL_ERROR, IngressMetrics
from ingress.publisher import Publisher, PublishError, PublishRefusedError
from ingress.rejection import Reason, Rejected
from ingress.signature import SIGNATURE_HEADER, SignatureVerifier
from refstream.settings import IngressSettings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/stripe"
METRICS_KEY = web.AppKey("metrics", IngressMetrics)
ADMIN_APP_KEY = web.AppKey("admin_app", web.Application)
_IDENTITY = ("", "identity")


def create_app(
    settings: IngressSettings,
    publisher: Publisher,
    *,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The app; it starts and stops `publisher` with itself. `clock` gives unix seconds."""
    metrics = IngressMetrics()
    handlers = _Handlers(settings, publisher, metrics, clock)
    app = _bare_app(client_max_size=settings.max_body_bytes)
    app[METRICS_KEY] = metrics
    app.router.add_post(WEBHOOK_PATH, handlers.webhook)
    admin = app
    if settings.admin_port is not None:
        admin = _bare_app()
        app[ADMIN_APP_KEY] = admin
    admin.router.add_get("/healthz", handlers.healthz)
    admin.router.add_get("/readyz", handlers.readyz)
    admin.router.add_get("/metrics", handlers.metrics)

    async def publisher_lifecycle(_: web.Application) -> AsyncIterator[None]:
        await publisher.start()
        yield
        await publisher.stop()

    app.cleanup_ctx.append(publisher_lifecycle)
    return app


def _bare_app(**kwargs: Any) -> web.Application:
    app = web.Application(middlewares=[json_http_errors], **kwargs)
    app.on_response_prepare.append(strip_banner)
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
        self._read_timeout_s = settings.body_read_timeout_ms / 1000
        self._max_depth = settings.max_json_depth
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
        envelope = parse_envelope(verified, received_at_ms, max_depth=self._max_depth)
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
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        if encoding not in _IDENTITY:
            return Rejected(
                Reason.UNSUPPORTED_CONTENT_ENCODING,
                "Stripe sends uncompressed bodies; no Content-Encoding is accepted",
            )
        too_large = Rejected(Reason.BODY_TOO_LARGE, f"body exceeds {self._max_body_bytes} bytes")
        length = request.content_length
        if length is not None and length > self._max_body_bytes:
            return too_large  # refused before reading a byte of it
        try:
            async with asyncio.timeout(self._read_timeout_s):
                return await request.read()  # enforces client_max_size on chunked bodies too
        except web.HTTPRequestEntityTooLarge:
            return too_large
        except TimeoutError:
            return Rejected(
                Reason.BODY_READ_TIMEOUT,
                f"the body did not arrive within {self._read_timeout_s:g} s",
            )
        except ConnectionResetError:  # nobody will read the answer, but it is not our bug
            return Rejected(Reason.BODY_INCOMPLETE, "the connection closed mid-body")
        except HttpProcessingError:  # bad chunked framing or a short body: the client's fault
            return Rejected(Reason.BODY_INCOMPLETE, "the body is not validly framed")

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
        response = _json(
            rejected.status, {"error": rejected.reason.value, "detail": rejected.detail}
        )
        if rejected.reason in _UNREAD_BODY:
            response.force_close()  # the rest of the body is unread: do not reuse the stream
        return response

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


_UNREAD_BODY = frozenset(
    {
        Reason.UNSUPPORTED_CONTENT_ENCODING,
        Reason.BODY_TOO_LARGE,
        Reason.BODY_READ_TIMEOUT,
        Reason.BODY_INCOMPLETE,
    }
)


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.json_response(payload, status=status)
