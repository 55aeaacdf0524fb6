"""End-to-end latency and sustainable rate: from the ingress's 2xx for a paid invoice to
its reward being visible in ClickHouse, at fixed event rates.

    .venv/bin/python bench/pipeline_bench.py [--rates 10,20,40,80] [--seconds 15]

Needs the local broker (`refstream kafka start`). Starts its own ingress, one worker and a
sink on a temporary embedded ClickHouse, under a fresh topic prefix. Each unit of load is
one new referred customer (customer.created carrying the code) and its paid invoice; the
latency of a unit is from the invoice's 2xx to the first poll of the sink's query API that
shows the referrer's reward (polled every 250 ms: that is the resolution). A rate is
sustained when every reward shows up and the backlog drains within a few seconds after the
load stops; the first rate whose drain time keeps growing is past the limit.

Reference, measured in the same run: the Kafka round trip (acks=all produce to a consumer
in this process) — the floor under any pipeline on this broker. Ratios against it are
what to compare across machines; the absolute numbers drift on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from refstream.settings import REPO_ROOT, load_settings
from refstream.topics import TopicSpec, ensure_topics
from simulator.stripe_factory import PRE_BASIL, Line, StripeFactory, event_bytes
from streams.programs import parse_programs_toml
from streams.worker_programs import apply_programs

SECRET = "whsec_pipeline_bench"
PROGRAM = '[[program]]\nid = "bench"\nrate = "20%"\nhold_days = 30\n'


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def kafka_round_trip_ms(bootstrap: str, topic: str, samples: int = 200) -> list[float]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        out = []
        for i in range(samples):
            started = time.perf_counter()
            await producer.send_and_wait(topic, value=str(i).encode())
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                if any(m.value == str(i).encode() for ms in batch.values() for m in ms):
                    break
            out.append((time.perf_counter() - started) * 1000)
        return out
    finally:
        await producer.stop()
        await consumer.stop()


def signed(body: bytes) -> dict[str, str]:
    ts = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={ts},v1={digest}", "Content-Type": "application/json"}


class Load:
    """Units of (customer.created with code, invoice.paid), and when each was acknowledged."""

    def __init__(self, port: int, tag: str) -> None:
        self.url = f"http://127.0.0.1:{port}/webhooks/stripe"
        self.factory = StripeFactory(PRE_BASIL, seed=hash(tag) & 0xFFFF)
        self.tag = tag
        self.acked_at: dict[str, float] = {}

    async def unit(self, session: aiohttp.ClientSession, i: int) -> None:
        f, code, t0 = self.factory, f"{self.tag}-{i}", int(time.time()) - 3600
        customer = f.customer(created=t0, metadata={"cello_ucc": code})
        invoice = f.invoice(
            customer["id"],
            lines=[Line(4_900, t0, t0 + 30 * 86_400)],
            created=t0,
            paid_at=t0 + 60,
            billing_reason="subscription_create",
            subscription=f.new_id("sub"),
            payment_intent=f.new_id("pi"),
            charge=f.new_id("ch"),
        )
        for event in (
            f.event("customer.created", customer, created=t0),
            f.event("invoice.paid", invoice, created=t0 + 60),
        ):
            body = event_bytes(event)
            async with session.post(self.url, data=body, headers=signed(body)) as response:
                if response.status != 200:
                    raise RuntimeError(f"ingress answered {response.status}")
        self.acked_at[code] = time.perf_counter()


async def visible_codes(session: aiohttp.ClientSession, query_port: int) -> set[str]:
    url = f"http://127.0.0.1:{query_port}/reports/referrer_rewards?limit=10000"
    try:
        async with session.get(url) as response:
            body = await response.json()
            if 400 <= response.status < 500:
                raise RuntimeError(f"query API refused the poll: {body}")
    except (aiohttp.ClientError, json.JSONDecodeError):
        return set()  # the sink is starting or busy: poll again
    column = body.get("columns", []).index("referral_code") if body.get("columns") else 0
    return {row[column] for row in body.get("rows", [])}


async def run_rate(
    rate: int, seconds: int, port: int, query_port: int, seen_at: dict[str, float]
) -> dict[str, float]:
    load = Load(port, f"r{rate}x{uuid.uuid4().hex[:6]}")
    poll_ms: list[float] = []
    units = rate * seconds
    async with aiohttp.ClientSession() as session:
        load_done = asyncio.Event()

        async def poll_until_all_seen(deadline_after_load_s: float = 90) -> None:
            # Polls run while the load runs: a row seen by a poll became visible before
            # that poll returned, so its end is the (slightly pessimistic) visibility time.
            while True:
                polled_from = time.perf_counter()
                codes = await visible_codes(session, query_port)
                now = time.perf_counter()
                poll_ms.append((now - polled_from) * 1000)
                for code in codes:
                    seen_at.setdefault(code, now)
                if load_done.is_set() and (
                    all(code in seen_at for code in load.acked_at)
                    or now > load_end + deadline_after_load_s
                ):
                    return
                await asyncio.sleep(0.25)

        poller = asyncio.create_task(poll_until_all_seen())
        tasks = []
        started = time.perf_counter()
        for i in range(units):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(load.unit(session, i)))
        await asyncio.gather(*tasks)
        load_end = time.perf_counter()
        load_done.set()
        achieved = units / (load_end - started)
        await poller
    latencies = [
        (seen_at[code] - acked) * 1000 for code, acked in load.acked_at.items() if code in seen_at
    ]
    last_seen = max((seen_at[c] for c in load.acked_at if c in seen_at), default=load_end)
    return {
        "rate": rate,
        "achieved": achieved,
        "units": units,
        "visible": len(latencies),
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "drain_s": last_seen - load_end,
        "poll_p50_ms": pct(poll_ms, 0.5),
    }


async def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


def start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "refstream.cli", command],
            env={**os.environ, **env},
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,20,40,80", help="units (2 events) per second")
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    kafka = replace(load_settings({}).kafka, topic_prefix=prefix, events_partitions=4)
    await ensure_topics(kafka)
    await ensure_topics(kafka, [TopicSpec(kafka.topic("bench.roundtrip"), 1)])
    await apply_programs(kafka, parse_programs_toml(PROGRAM))
    reference = await kafka_round_trip_ms(kafka.bootstrap, kafka.topic("bench.roundtrip"))
    ref_p50, ref_p99 = pct(reference, 0.5), pct(reference, 0.99)

    workdir = Path(tempfile.mkdtemp(prefix="refstream-bench-"))
    port, query_port = 18000 + os.getpid() % 1000, 19000 + os.getpid() % 1000
    env = {
        "REFSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "REFSTREAM_TOPIC_PREFIX": prefix,
        "REFSTREAM_EVENTS_PARTITIONS": "4",
        "REFSTREAM_WEBHOOK_SECRETS": SECRET,
        "REFSTREAM_INGRESS_PORT": str(port),
        "REFSTREAM_QUERY_API_PORT": str(query_port),
        "REFSTREAM_CLICKHOUSE_DSN": f"chdb://{workdir / 'clickhouse'}",
        "REFSTREAM_WORKER_DATA_DIR": str(workdir / "worker"),
        "REFSTREAM_SINK_BATCH_MAX_WAIT_MS": "200",
        "REFSTREAM_LOG_LEVEL": "WARNING",
    }
    processes = [
        start(name, env, workdir / f"{name}.log") for name in ("ingress", "worker", "sink")
    ]
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        await wait_http(f"http://127.0.0.1:{query_port}/health")
        seen_at: dict[str, float] = {}
        # Warm-up: the worker's group must be assigned and the sink's schema applied.
        await run_rate(2, 10, port, query_port, seen_at)
        print(f"kafka round trip (reference): p50 {ref_p50:.1f} ms, p99 {ref_p99:.1f} ms")
        print("rate/s  achieved  visible    p50 ms    p99 ms  drain s  p50/ref  p99/ref  poll ms")
        for rate in rates:
            r = await run_rate(rate, args.seconds, port, query_port, seen_at)
            print(
                f"{rate:6d}  {r['achieved']:8.1f}  {r['visible']:4.0f}/{r['units']:<4.0f}"
                f"{r['p50_ms']:9.0f} {r['p99_ms']:9.0f}  {r['drain_s']:7.1f}"
                f"  {r['p50_ms'] / ref_p50:7.0f}  {r['p99_ms'] / ref_p99:7.0f}"
                f"  {r['poll_p50_ms']:7.0f}",
                flush=True,
            )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    print(f"logs: {workdir}")


if __name__ == "__main__":
    asyncio.run(main())
