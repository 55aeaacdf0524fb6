"""A real refstream pipeline for integration tests: the HTTP ingress and workers as
subprocesses on the real broker, fed with events signed the way Stripe signs them."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp

from refstream.settings import KafkaSettings
from tests.support.factories import event_bytes, signature_header
from tests.support.processes import RefstreamProcess, kafka_env, wait_until

SECRET = "whsec_pipeline_test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def half_up(value: Decimal) -> int:
    """The documented rounding rule, written out independently of the code under test."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def shuffled_with_duplicates(events: list[dict[str, Any]], rng: random.Random) -> list[dict]:
    deliveries = events + rng.sample(events, k=len(events) // 3)
    rng.shuffle(deliveries)
    return deliveries


@dataclass
class Pipeline:
    kafka: KafkaSettings
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: int = 2
    port: int = field(default_factory=free_port)
    processes: list[RefstreamProcess] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)  # worker n's /metrics port

    @property
    def env(self) -> dict[str, str]:
        return {
            **kafka_env(self.kafka),
            "REFSTREAM_WEBHOOK_SECRETS": SECRET,
            "REFSTREAM_INGRESS_PORT": str(self.port),
            "REFSTREAM_TICK_INTERVAL_S": "2",
            "REFSTREAM_WORKER_SESSION_TIMEOUT_S": "6",
            **self.extra_env,
        }

    def worker(self, n: int) -> RefstreamProcess:
        return self.processes[1 + n]

    async def start(self) -> Pipeline:
        self.processes.append(
            RefstreamProcess(["ingress"], self.env, self.workdir / "ingress.log").start()
        )
        for n in range(self.workers):
            self.metrics_ports.append(free_port())
            env = {
                **self.env,
                "REFSTREAM_WORKER_METRICS_PORT": str(self.metrics_ports[n]),
            }
            log = self.workdir / f"worker{n}.log"
            self.processes.append(RefstreamProcess(["worker"], env, log).start())
        async with aiohttp.ClientSession() as session:

            async def ingress_up() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ingress_up, 60, 0.5, "the ingress to listen")
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    async def post(self, events: list[dict[str, Any]], concurrency: int = 16) -> None:
        """POST each event, signed like Stripe; every one must be acknowledged (200)."""
        url = f"http://127.0.0.1:{self.port}/webhooks/stripe"
        limit = asyncio.Semaphore(concurrency)

        async def post_one(session: aiohttp.ClientSession, event: dict[str, Any]) -> None:
            body = event_bytes(event)
            headers = {
                "Stripe-Signature": signature_header(body, SECRET, int(time.time())),
                "Content-Type": "application/json",
            }
            async with limit, session.post(url, data=body, headers=headers) as response:
                assert response.status == 200, await response.text()

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(post_one(session, e) for e in events))

    def logs(self) -> str:
        return "\n".join(p.log_tail(3000) for p in self.processes)
