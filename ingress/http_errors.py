"""HTTP-level hygiene shared by the ingress listeners: JSON for every error, no banner.

aiohttp answers requests its parser refuses (header line too long, bad request line, bad
chunked framing) from `RequestHandler.handle_error`, before any app or middleware runs, as
text/plain with a `Server: Python/3.x aiohttp/3.x` header. `IngressRunner` serves the app
with a request handler whose `handle_error` answers JSON instead, and `strip_banner` (an
on_response_prepare hook) removes the Server header from every app response.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ingress.rejection import Reason

log = logging.getLogger(__name__)

HEADERS_TOO_LARGE_STATUS = 431  # RFC 6585 Request Header Fields Too Large


def json_error(status: int, reason: str, detail: str) -> web.Response:
    return web.json_response({"error": reason, "detail": detail}, status=status)


async def strip_banner(_: web.Request, response: web.StreamResponse) -> None:
    # The version banner only helps an attacker pick exploits.
    response.headers.popall(hdrs.SERVER, None)


@web.middleware
async def json_http_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Router and framework errors (404, 405, ...) as JSON, like every other answer."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return json_error(404, Reason.NOT_FOUND.value, f"no such path {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        detail = (
            f"{request.method} is not allowed here; use {', '.join(sorted(exc.allowed_methods))}"
        )
        return json_error(405, Reason.METHOD_NOT_ALLOWED.value, detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # a redirect is not an error
        return json_error(exc.status, Reason.BAD_HTTP_REQUEST.value, exc.reason)


class _NoBannerResponse(web.Response):
    """A response prepared outside any app (so no on_response_prepare): drop the banner
    after aiohttp's header defaults are applied."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)


class _JsonErrorRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: too late for another answer
            raise ConnectionError("response already started; cannot send an error")
        if isinstance(exc, LineTooLong):
            status, reason = HEADERS_TOO_LARGE_STATUS, Reason.HEADERS_TOO_LARGE.value
            detail = "a request line or header field is too long"
        elif 400 <= status < 500:
            reason, detail = Reason.BAD_HTTP_REQUEST.value, "the request is not valid HTTP/1.1"
        else:
            # aiohttp itself failed: log it (our bug or aiohttp's), answer opaquely.
            log.error("http_internal_error", exc_info=exc)
            status, reason, detail = 500, "internal_error", "internal error"
        # Client junk is routine on a public port: one info line, no traceback.
        log.info(
            "http_request_refused",
            extra={"status": status, "error": type(exc).__name__ if exc else None},
        )
        response = _NoBannerResponse(
            status=status,
            text=web.json_response({"error": reason, "detail": detail}).text,
            content_type="application/json",
        )
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class IngressRunner(web.AppRunner):
    """An AppRunner whose connections answer parser errors as JSON without a banner."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp offers no hook for the request handler class; the server's only job
        # beyond its state is to build handlers, so re-class it (same attributes).
        server.__class__ = _JsonErrorServer
        return server
