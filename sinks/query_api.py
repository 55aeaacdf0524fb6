"""The read-only report API the sink process serves (aiohttp).

In embedded mode the sink process owns the engine folder, so it is the only process that
can read it; this API lets `refstream report` (and anyone) ask the named reports. There is
no raw SQL: a request names a report and passes its declared parameters, which are
validated (sinks/reports.py) and bound as typed ClickHouse parameters, and every query runs
on a client with `readonly` set, so even a bug here cannot modify data.

Routes (JSON in, JSON out; every error is `{"error": "..."}` with its status):
- GET /health                 -> {"status": "ok"}
- GET /reports                -> {"reports": [{"name", "description", "params": {...}}]}
- GET /reports/{name}?k=v...  -> {"report", "params", "columns", "rows"}
Malformed input -> 400, unknown report or path -> 404, any other method -> 405,
internal failure -> 500 with an opaque message (details only in the log).

With a token (REFSTREAM_QUERY_API_TOKEN), every route but /health needs
`Authorization: Bearer <token>` (else 401): the reports are referrers' revenue. Listening
beyond loopback without a token is refused at start (settings and `start_query_api`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from clickhouse_connect.driver.client import Client

from dashboard import PREFIX as DASHBOARD_PREFIX
from dashboard.mount import mount_dashboard
from refstream.settings import ENV_PREFIX, Secret, is_loopback
from sinks.reports import REPORTS, ReportError, ReportResult, run_report

log = logging.getLogger(__name__)

RunReport = Callable[[str, dict[str, str]], ReportResult]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return _error(405, f"{request.method} is not allowed: this API is read-only (use GET)")
    except web.HTTPNotFound:
        return _error(404, f"no such path {request.path}; see GET /reports")
    except web.HTTPException as exc:
        return _error(exc.status, exc.reason)
    except Exception:  # answer opaquely, log the detail
        log.exception("query_api_error", extra={"path": request.path})
        return _error(500, "internal error")


def _bearer_auth(token: Secret) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token.value}".encode()

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # The dashboard (issue 13) checks its own logins: basic auth or this same token.
        if request.path != "/health" and not request.path.startswith(DASHBOARD_PREFIX + "/"):
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):  # constant time: no length oracle
                response = _error(401, "missing or wrong bearer token")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return await handler(request)

    return check


def build_app(run: RunReport, token: Secret | None = None) -> web.Application:
    """The API around `run(name, params)`, which must be safe to call from a thread; with a
    `token`, requests must carry it as a bearer token."""
    lock = asyncio.Lock()  # one query at a time: a small API, and chDB queries share cores

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def catalogue(request: web.Request) -> web.Response:
        reports = [
            {
                "name": report.name,
                "description": report.description,
                "params": {
                    p.name: {"help": p.help, "default": p.default, "required": p.required}
                    for p in report.params
                },
            }
            for report in REPORTS.values()
        ]
        return web.json_response({"reports": reports})

    async def report(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in REPORTS:
            return _error(404, f"unknown report {name!r}; see GET /reports")
        params: dict[str, str] = {}
        for key in request.query:
            values = request.query.getall(key)
            if len(values) != 1:
                return _error(400, f"parameter {key} given {len(values)} times")
            params[key] = values[0]
        try:
            async with lock:
                result = await asyncio.to_thread(run, name, params)
        except ReportError as exc:
            return _error(400, str(exc))
        return web.json_response(result.to_json())

    middlewares = [_json_errors] if token is None else [_json_errors, _bearer_auth(token)]
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/health", health, allow_head=False)
    app.router.add_get("/reports", catalogue, allow_head=False)
    app.router.add_get("/reports/{name}", report, allow_head=False)
    return app


def client_runner(client: Client) -> RunReport:
    def run(name: str, params: dict[str, str]) -> ReportResult:
        return run_report(client, name, params)

    return run


async def start_query_api(
    client: Client, host: str, port: int, token: Secret | None = None
) -> web.AppRunner:
    """Serve the API for `client` (which should be a readonly one) until runner.cleanup()."""
    if token is None and not is_loopback(host):
        raise ValueError(
            f"the report API would listen on {host} without {ENV_PREFIX}QUERY_API_TOKEN"
        )
    app = build_app(client_runner(client), token)
    mount_dashboard(app, client)  # issue 13: the web dashboard under /dashboard/
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("query_api_listening", extra={"host": host, "port": port})
    return runner
