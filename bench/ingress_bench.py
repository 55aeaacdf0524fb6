"""Ingress throughput and latency against a signature-only ceiling and a naive handler.

    .venv/bin/python bench/ingress_bench.py [--requests 5000] [--concurrency 256] [--rounds 3]

Variants, each posted the same kind of signed ~3 KB `invoice.paid` events:
  (a) ingress  the real app (create_app + KafkaPublisher: verify, envelope, Avro, one shared
               idempotent acks=all producer, 200 after the ack) on a fresh topic prefix of
               the local broker (`refstream kafka start`);
  (b) bare     an aiohttp handler that reads the body and verifies the signature, nothing
               else: the ceiling of an aiohttp webhook endpoint on this machine;
  (c) naive    what most integrations ship: stripe.Webhook.construct_event, then one
               `send_and_wait` per request on a default AIOKafkaProducer.

How it measures, and why: the machine has 2 cores, so each server variant runs alone in a
process of its own (this script with `--serve`), and the load comes from this process over
raw asyncio streams (keep-alive HTTP/1.1, requests pre-built and pre-signed, closed loop:
each connection sends its next request when the previous answer arrived), which costs
the client far less CPU than an HTTP library would and leaves the server the CPU it can
use. The broker is the shared local one and competes for the same cores in (a) and (c),
as Kafka would on a small machine. Rounds interleave a, b, c; the figures are medians over
rounds. Latency is client-side, from writing a request to reading its answer. The server
process's CPU time per request is printed too: neighbours on a shared machine move it far
less than they move requests/s. Not a test: only the ratios mean much.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

# Run as a script from anywhere: the repository's packages come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stripe
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from ingress.app import WEBHOOK_PATH, create_app
from ingress.publisher import KafkaPublisher
from ingress.signature import SIGNATURE_HEADER, SignatureVerifier
from refstream.settings import IngressSettings, KafkaSettings, Secret, load_settings
from refstream.topics import STRIPE_EVENTS, TopicSpec, ensure_topics

SECRET = "whsec_bench_0123456789abcdef"
VARIANTS = ("ingress", "bare", "naive")
PARTITIONS = 8


# --- events ------------------------------------------------------------------------------


def event_body(n: int, tag: str) -> bytes:
    """A pretty-printed invoice.paid event of about 3 KB, as Stripe sends them."""
    customer = f"cus_{n % 1000:014d}"
    lines = [
        {
            "id": f"il_{tag}_{n}_{i}",
            "object": "line_item",
            "amount": 4900,
            "currency": "usd",
            "description": "1 x Pro (at $49.00 / month)",
            "period": {"start": 1_746_057_600, "end": 1_748_736_000},
            "pricing": {"price_details": {"price": "price_pro_monthly"}},
            "quantity": 1,
            "metadata": {},
        }
        for i in range(4)
    ]
    event = {
        "id": f"evt_{tag}_{n:08d}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"in_{tag}_{n:08d}",
                "object": "invoice",
                "amount_due": 14700,
                "amount_paid": 14700,
                "billing_reason": "subscription_cycle",
                "currency": "usd",
                "customer": customer,
                "customer_email": f"{customer}@example.com",
                "lines": {"object": "list", "data": lines, "has_more": False},
                "metadata": {"cello_ucc": "ACME"},
                "parent": {
                    "type": "subscription_details",
                    "subscription_details": {
                        "subscription": f"sub_{n % 1000:014d}",
                        "metadata": {"cello_ucc": "ACME", "new_user_id": f"u_{n % 1000}"},
                    },
                },
                "period_end": 1_748_736_000,
                "period_start": 1_746_057_600,
                "status": "paid",
                "status_transitions": {"paid_at": 1_746_061_200},
                "subtotal": 14700,
                "total": 14700,
                "total_excluding_tax": 14700,
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "invoice.paid",
    }
    return json.dumps(event, indent=2).encode()


def build_requests(count: int, tag: str, port: int) -> list[bytes]:
    requests = []
    for n in range(count):
        body = event_body(n, tag)
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET)
        head = (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\n"
            f"{SIGNATURE_HEADER}: {header}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


# --- servers (each in its own process) ---------------------------------------------------


def ingress_app(port: int, kafka: KafkaSettings) -> web.Application:
    settings = IngressSettings(port=port, webhook_secrets=(Secret(SECRET),))
    return create_app(settings, KafkaPublisher(kafka, settings))


def bare_app() -> web.Application:
    verifier = SignatureVerifier([Secret(SECRET)], 300)

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        result = verifier.verify(body, request.headers.get(SIGNATURE_HEADER), time.time())
        ok = result.__class__.__name__ == "VerifiedBody"
        return web.json_response({"received": ok}, status=200 if ok else 400)

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, webhook)
    return app


def naive_app(kafka: KafkaSettings) -> web.Application:
    topic = kafka.topic(STRIPE_EVENTS)
    app = web.Application()
    producer_key = web.AppKey("producer", AIOKafkaProducer)

    async def webhook(request: web.Request) -> web.Response:
        payload = await request.read()
        try:
            event = stripe.Webhook.construct_event(
                payload, request.headers.get(SIGNATURE_HEADER), SECRET
            )
        except (ValueError, stripe.SignatureVerificationError):
            return web.json_response({"error": "bad request"}, status=400)
        await request.app[producer_key].send_and_wait(topic, payload, key=event.id.encode())
        return web.json_response({"received": True})

    async def producer_lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        app[producer_key] = producer
        yield
        await producer.stop()

    app.cleanup_ctx.append(producer_lifecycle)
    app.router.add_post(WEBHOOK_PATH, webhook)
    return app


def serve(variant: str, port: int, kafka: KafkaSettings) -> None:
    logging.basicConfig(level=logging.WARNING)
    if variant == "ingress":
        app = ingress_app(port, kafka)
    elif variant == "bare":
        app = bare_app()
    else:
        app = naive_app(kafka)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    if variant != "ingress":  # the ingress has its own, and /readyz
        app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- load generator ----------------------------------------------------------------------


@dataclass
class Result:
    variant: str
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float  # server process CPU per request: less sensitive to noisy neighbours
    statuses: dict[int, int]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_all(port: int, requests: list[bytes], concurrency: int) -> tuple[float, list]:
    """Closed-loop load: `concurrency` keep-alive connections share the request list."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0

    async def connection() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while next_index < len(requests):
                request = requests[next_index]
                next_index += 1
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                status = int(head.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - started, [latencies, statuses]


async def wait_up(port: int, path: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = await reader.read()
            writer.close()
            if answer.startswith(b"HTTP/1.1 200"):
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"server on port {port} not ready ({path})")


async def measure(
    variant: str, port: int, kafka: KafkaSettings, count: int, concurrency: int, tag: str
) -> Result:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, "--port", str(port),
         "--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix],
        env=env,
    )  # fmt: skip
    try:
        await wait_up(port, "/readyz" if variant == "ingress" else "/healthz")
        await send_all(port, build_requests(300, f"w{tag}", port), concurrency)  # warm-up
        requests = build_requests(count, tag, port)
        cpu_before = cpu_seconds(server.pid)
        elapsed, (latencies, statuses) = await send_all(port, requests, concurrency)
        server_cpu_s = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=60)
    latencies.sort()
    return Result(
        variant=variant,
        rps=count / elapsed,
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[int(len(latencies) * 0.99)],
        server_cpu_us=1e6 * server_cpu_s / count,
        statuses=statuses,
    )


async def bench(args: argparse.Namespace) -> int:
    kafka = replace(
        load_settings().kafka,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        events_partitions=PARTITIONS,
    )
    await ensure_topics(kafka, [TopicSpec(kafka.topic(STRIPE_EVENTS), PARTITIONS)])
    print(
        f"{args.requests} signed ~{len(event_body(0, 'x')) / 1000:.1f} KB events per variant, "
        f"{args.concurrency} connections, {args.rounds} rounds, topic {kafka.topic(STRIPE_EVENTS)}"
    )
    results: dict[str, list[Result]] = {v: [] for v in VARIANTS}
    try:
        for round_ in range(args.rounds):
            for variant in VARIANTS:
                result = await measure(
                    variant, args.port, kafka, args.requests, args.concurrency,
                    tag=f"r{round_}{variant[0]}",
                )  # fmt: skip
                results[variant].append(result)
                print(
                    f"  round {round_ + 1} {variant:8s} {result.rps:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
                    f"server CPU {result.server_cpu_us:5.0f} us/req  statuses {result.statuses}",
                    flush=True,
                )
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([kafka.topic(STRIPE_EVENTS)])
        finally:
            await admin.close()

    def med(variant: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[variant])

    print("\nmedians over rounds")
    labels = {"ingress": "(a) ingress", "bare": "(b) bare", "naive": "(c) naive"}
    for variant in VARIANTS:
        print(
            f"  {labels[variant]:12s} {med(variant, 'rps'):8.0f} req/s  "
            f"p50 {med(variant, 'p50_ms'):6.1f} ms  p99 {med(variant, 'p99_ms'):6.1f} ms  "
            f"server CPU {med(variant, 'server_cpu_us'):5.0f} us/req"
        )
    a, b, c = (med(v, "rps") for v in VARIANTS)
    print(f"\n  a/b = {a / b:.2f}  (aim >= 0.5)\n  a/c = {a / c:.2f}  (aim >= 3)")
    ca, cb, cc = (med(v, "server_cpu_us") for v in VARIANTS)
    print(f"  by server CPU per request: b/a = {cb / ca:.2f}, c/a = {cc / ca:.2f}")
    failed = [r for rs in results.values() for r in rs if set(r.statuses) != {200}]
    if failed:
        print(f"\nnon-200 answers in {len(failed)} runs: the figures are not comparable")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18_431)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic-prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kafka = replace(
            load_settings().kafka, bootstrap=args.bootstrap, topic_prefix=args.topic_prefix
        )
        serve(args.serve, args.port, kafka)
        return 0
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
