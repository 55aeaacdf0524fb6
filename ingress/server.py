"""`refstream ingress`: serve the webhook endpoint until SIGINT/SIGTERM.

With REFSTREAM_INGRESS_ADMIN_PORT set, /healthz, /readyz and /metrics get a listener of
their own (the admin app). On SIGINT/SIGTERM aiohttp stops accepting, lets in-flight
requests finish (each is bounded by the publish timeout) and then the publisher flushes
and closes the producer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import dataclass

from aiohttp import web

from ingress.app import ADMIN_APP_KEY, WEBHOOK_PATH, create_app
from ingress.http_errors import IngressRunner
from ingress.publisher import KafkaPublisher
from refstream.settings import ENV_PREFIX, IngressSettings, Settings

log = logging.getLogger(__name__)


def main(settings: Settings, args: argparse.Namespace) -> int:
    ingress = settings.ingress
    if not ingress.webhook_secrets:
        print(
            "refstream ingress: no webhook signing secret configured. Set "
            f"{ENV_PREFIX}WEBHOOK_SECRETS to the endpoint's whsec_... secret (several, "
            "comma-separated, while a secret is being rolled).",
            file=sys.stderr,
        )
        return 2
    publisher = KafkaPublisher(settings.kafka, ingress)
    app = create_app(ingress, publisher)
    log.info(
        "ingress_starting",
        extra={
            "url": f"http://{ingress.host}:{ingress.port}{WEBHOOK_PATH}",
            "admin": None
            if ingress.admin_port is None
            else f"http://{ingress.admin_host}:{ingress.admin_port}",
            "topic": publisher.topic,
            "bootstrap": settings.kafka.bootstrap,
            "secrets": len(ingress.webhook_secrets),  # how many, never which
        },
    )
    try:
        asyncio.run(_serve_until_signalled(app, ingress))
    except OSError as exc:  # e.g. the port is taken
        print(f"refstream ingress: cannot listen: {exc}", file=sys.stderr)
        return 1
    log.info("ingress_stopped")
    return 0


@dataclass
class Listening:
    """The running listeners; `port`/`admin_port` are the bound ports (useful with 0)."""

    runners: list[web.AppRunner]
    port: int
    admin_port: int | None

    async def close(self) -> None:
        # The public listener first, so no new webhook arrives while the rest stops.
        for runner in self.runners:
            await runner.cleanup()


async def start_listeners(app: web.Application, settings: IngressSettings) -> Listening:
    """Serve `app` (and its admin app, when configured) with the HTTP limits of `settings`."""
    runners: list[web.AppRunner] = []
    ports: list[int] = []
    apps = [(app, settings.host, settings.port)]
    if ADMIN_APP_KEY in app:
        assert settings.admin_port is not None
        apps.append((app[ADMIN_APP_KEY], settings.admin_host, settings.admin_port))
    try:
        for served, host, port in apps:
            runner = IngressRunner(
                served,
                access_log=None,  # the structured logs and /metrics cover requests
                # A client that hangs up does not cancel its handler: each request is seen
                # through to an outcome that is logged and counted.
                handler_cancellation=False,
                shutdown_timeout=settings.publish_timeout_ms / 1000 + 2,
                max_line_size=settings.max_header_bytes,
                max_field_size=settings.max_header_bytes,
                # The app refuses every Content-Encoding (415); without this the parser
                # would inflate (and could fail on, or be bombed by) a body nobody reads.
                auto_decompress=False,
            )
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, port).start()
            ports.append(int(runner.addresses[0][1]))
    except BaseException:
        for started in reversed(runners):
            await started.cleanup()
        raise
    return Listening(runners, ports[0], ports[1] if len(ports) > 1 else None)


async def _serve_until_signalled(app: web.Application, settings: IngressSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listening = await start_listeners(app, settings)
    try:
        await stop.wait()
    finally:
        await listening.close()
