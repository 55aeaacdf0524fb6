"""`refstream ingress`: serve the webhook endpoint until SIGINT/SIGTERM.

On shutdown aiohttp stops accepting, lets in-flight requests finish (each is bounded by
the publish timeout) and then the publisher flushes and closes the producer.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from ingress.app import WEBHOOK_PATH, create_app
from ingress.publisher import KafkaPublisher
from refstream.settings import ENV_PREFIX, Settings

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
            "topic": publisher.topic,
            "bootstrap": settings.kafka.bootstrap,
            "secrets": len(ingress.webhook_secrets),  # how many, never which
        },
    )
    try:
        web.run_app(
            app,
            host=ingress.host,
            port=ingress.port,
            access_log=None,  # the structured logs and /metrics cover requests
            # A client that hangs up does not cancel its handler: each request is seen
            # through to an outcome that is logged and counted.
            handler_cancellation=False,
            print=None,
            shutdown_timeout=ingress.publish_timeout_ms / 1000 + 2,
        )
    except OSError as exc:  # e.g. the port is taken
        print(
            f"refstream ingress: cannot listen on {ingress.host}:{ingress.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    log.info("ingress_stopped")
    return 0
