"""The load of bench/pipeline_bench.py: realistic signed Stripe webhooks offered at a fixed
event rate over keep-alive HTTP, with the time of every 2xx.

A unit is one new referred subscriber from the simulator (simulator.stripe_factory's
subscription_story, the code on the customer), alternately on a pre-basil and a basil API
version: customer.created, customer.subscription.created, charge.succeeded, invoice.paid,
invoice.payment_succeeded and, on basil, invoice_payment.paid, posted in that order, each
after the previous one's answer, as Stripe delivers one object's events. Every unit's first
invoice is the same $49.00, so every unit earns the same reward. Units start on a fixed
schedule (the n-th event of the run is due at n / rate); the units due in the same bucket
share a referral code (bench/pipeline_latency.py says why).

Requests are built and signed (tests/support/signing.py: stripe-python's signer) before
the clock starts, and written over raw asyncio streams: an HTTP library would cost the
load generator more CPU than the 2-core machine can spare next to the pipeline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from simulator.stripe_factory import BASIL, PRE_BASIL, StripeFactory, event_bytes
from simulator.stripe_factory import subscription_story as story
from tests.support.signing import SIGNATURE_HEADER, sign

WEBHOOK_PATH = "/webhooks/stripe"
UNIT_AMOUNT = 4_900  # the first invoice of every unit, usd minor units


@dataclass
class Unit:
    code: str
    due_s: float  # offset from the start of the load
    requests: list[bytes]
    acked_at: float | None = None  # perf_counter of the 2xx of the unit's last webhook


@dataclass
class Offered:
    """What one run of the load did."""

    units: list[Unit]
    elapsed_s: float  # first due time to the last answer
    events_acked: int
    answer_ms: list[float] = field(default_factory=list)  # per webhook, write to answer
    late_ms: list[float] = field(default_factory=list)  # per unit, start behind its schedule
    errors: dict[str, int] = field(default_factory=dict)  # status or exception -> count

    @property
    def achieved_per_s(self) -> float:
        return self.events_acked / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def acked_by_code(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for unit in self.units:
            if unit.acked_at is not None:
                out.setdefault(unit.code, []).append(unit.acked_at)
        return out


def build_units(
    *,
    rate: float,
    seconds: float,
    code_prefix: str,
    bucket_s: float,
    port: int,
    secret: str,
    seed: int,
) -> list[Unit]:
    """Units whose events add up to `rate` per second for `seconds`, signed now."""
    factories = [StripeFactory(PRE_BASIL, seed=seed), StripeFactory(BASIL, seed=seed + 1)]
    start = int(time.time()) - 600
    total_events = rate * seconds
    units: list[Unit] = []
    events = 0
    while events < total_events:
        due_s = events / rate
        code = f"{code_prefix}{int(due_s / bucket_s):05d}"
        built = story(
            factories[len(units) % 2],
            start=start,
            months=1,
            unit_amount=UNIT_AMOUNT,
            code=code,
            payment_succeeded_too=True,
            invoice_payment_events=True,
        )
        units.append(
            Unit(code, due_s, [_request(event_bytes(e), port, secret) for e in built.events])
        )
        events += len(built.events)
    return units


def _request(body: bytes, port: int, secret: str) -> bytes:
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\n"
        f"{SIGNATURE_HEADER}: {sign(body, secret)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Connections:
    """Idle keep-alive connections to the ingress; a new one whenever none is idle."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.opened.append(writer)
        return reader, writer

    def give_back(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(conn)

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()
        for writer in self.opened:
            try:
                await writer.wait_closed()
            except OSError:
                pass


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Write one request, read its answer; returns the status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def offer(units: list[Unit], port: int, *, max_in_flight: int = 512) -> Offered:
    """Post every unit at its due time (open loop: a slow answer does not delay the next
    unit, up to `max_in_flight` units at once; a unit started late says so in late_ms)."""
    connections = _Connections(port)
    result = Offered(units=units, elapsed_s=0.0, events_acked=0)
    limit = asyncio.Semaphore(max_in_flight)

    async def post(unit: Unit, due: float) -> None:
        try:
            conn = await connections.take()
            result.late_ms.append(max(0.0, time.perf_counter() - due) * 1000)
            for request in unit.requests:
                sent = time.perf_counter()
                status = await _exchange(*conn, request)
                result.answer_ms.append((time.perf_counter() - sent) * 1000)
                if not 200 <= status < 300:
                    result.errors[str(status)] = result.errors.get(str(status), 0) + 1
                    conn[1].close()  # the connection's state is unknown: not reused
                    return
                result.events_acked += 1
            unit.acked_at = time.perf_counter()
            connections.give_back(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            name = type(exc).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
        finally:
            limit.release()

    tasks = []
    started = time.perf_counter()
    try:
        for unit in units:
            due = started + unit.due_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await limit.acquire()
            tasks.append(asyncio.create_task(post(unit, due)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await connections.close()
    result.elapsed_s = time.perf_counter() - started
    return result
