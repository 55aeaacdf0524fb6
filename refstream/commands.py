"""Handlers of the operational subcommands: local broker, topics, whole pipeline."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import threading

from refstream.kafka_local import LocalKafka, LocalKafkaError, broker_answers
from refstream.settings import Settings
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
    """Start the local broker, create topics, then run the pipeline's processes until
    interrupted. Each process is a `refstream` subcommand, so each can also run alone."""
    try:
        LocalKafka.from_settings(settings.kafka).start()
    except LocalKafkaError as exc:
        print(f"refstream run: {exc}", file=sys.stderr)
        return 1
    asyncio.run(ensure_topics(settings.kafka))
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    children = [
        subprocess.Popen([sys.executable, "-m", "refstream.cli", name]) for name in PIPELINE
    ]
    print(
        f"refstream running: webhooks at http://{settings.ingress.host}:{settings.ingress.port}"
        "/webhooks/stripe (Ctrl-C stops)",
        flush=True,
    )
    try:
        # Run until told to stop, or until one process dies (then stop the others too).
        while not stopping.wait(1.0) and all(child.poll() is None for child in children):
            pass
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


# The long-running processes `refstream run` supervises, in start order.
PIPELINE = ["ingress", "worker", "sink"]
