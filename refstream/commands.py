"""Handlers of the operational subcommands: local broker, topics, whole pipeline."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading

from refstream.kafka_local import LocalKafka, LocalKafkaError, broker_answers
from refstream.settings import Settings
from refstream.supervisor import Child, Supervisor
from refstream.topics import ensure_topics


def kafka(settings: Settings, args: argparse.Namespace) -> int:
    broker = LocalKafka.from_settings(settings.kafka)
    try:
        if args.action == "start":
            broker.start()
            print(f"kafka ready at {broker.bootstrap}")
        elif args.action == "stop":
            print("kafka stopped" if broker.stop() else "kafka was not running")
        else:
            up = asyncio.run(broker_answers(broker.bootstrap))
            print(f"kafka at {broker.bootstrap}: {'up' if up else 'down'}")
            return 0 if up else 1
    except LocalKafkaError as exc:
        print(f"refstream kafka: {exc}", file=sys.stderr)
        return 1
    return 0


def topics(settings: Settings, args: argparse.Namespace) -> int:
    created = asyncio.run(ensure_topics(settings.kafka))
    print(f"created: {', '.join(created)}" if created else "all topics exist")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Start the local broker (unless one serves already), create topics, then run the
    pipeline's processes until interrupted, restarting any that dies (refstream/
    supervisor.py). Ctrl-C or SIGTERM stops the children, and the broker if this run
    started it; a broker that was already serving is left running. Each process is a
    `refstream` subcommand, so each can also run alone."""
    broker = LocalKafka.from_settings(settings.kafka)
    try:
        launched = broker.start()
    except LocalKafkaError as exc:
        print(f"refstream run: {exc}", file=sys.stderr)
        return 1
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    supervisor = Supervisor(
        [Child(name, [sys.executable, "-m", "refstream.cli", name]) for name in PIPELINE]
    )
    try:
        asyncio.run(ensure_topics(settings.kafka))
        supervisor.start()
        print(
            f"refstream running: webhooks at http://{settings.ingress.host}:"
            f"{settings.ingress.port}/webhooks/stripe (Ctrl-C stops)",
            flush=True,
        )
        while not stopping.wait(SUPERVISE_INTERVAL_S):
            supervisor.poll()
    finally:
        supervisor.stop()
        if launched:
            broker.stop()
    return 0


SUPERVISE_INTERVAL_S = 0.5
# The long-running processes `refstream run` supervises, in start order.
PIPELINE = ["ingress", "worker", "sink"]
