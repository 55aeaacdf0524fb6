"""Drain rate of `refstream worker` on a backlog, against a bare consumer of the same records.

    .venv/bin/python bench/worker_bench.py [--customers 250] [--months 12] [--workers 1,2]

Needs the local broker (`refstream kafka start`). Under a fresh topic prefix it produces a
simulated account's signed-event envelopes (both API families, refunds, disputes, every
event delivered twice, shuffled) to `stripe.events`, then measures, in the same run:

- reference: a bare aiokafka consumer that reads every record and decodes it (Avro
  envelope, then the Stripe event's JSON body): the read ceiling on this broker;
- the worker: one (then N) `refstream worker` processes draining the same backlog from a
  fresh group; the rate is records decided (the workers' refstream_worker_events_total)
  per second between the first and the last decision, and per CPU second the workers
  used meanwhile (`rate_per_cpu_s`; the reference's per CPU second of its process, and
  `cpu_ratio` between the two: on a machine shared with other load these move much less
  than the wall-clock figures);
- state: the size of the customer states the worker wrote (its changelog), largest and mean;
- recovery: after a SIGKILL and a few more events, the time from the restart to the first
  decision.

Prints the figures and the ratio worker / reference. The absolute numbers drift on a
shared machine; the ratio within one run is what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from refstream.avro_codec import AvroCodec
from refstream.settings import REPO_ROOT, load_settings
from refstream.topics import STRIPE_EVENTS, ensure_topics
from simulator.plan import DeliveryOptions, delivery_plan
from simulator.scenario import ScenarioConfig, generate
from simulator.stripe_factory import StripeFactory
from streams.ledger.programs import parse_programs_toml
from streams.worker.topology import internal_specs
from streams.worker_programs import apply_programs

BOOTSTRAP = os.environ.get("REFSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
PARTITIONS = 8


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envelopes(customers: int, months: int, seed: int) -> tuple[list[dict], str]:
    scenario = generate(ScenarioConfig(customers=customers, months=months, seed=seed))
    plan = delivery_plan(scenario.events, DeliveryOptions(seed=seed, duplicates=1.0))
    factory = StripeFactory(seed=seed)
    return [factory.envelope(event) for event in plan], scenario.program.toml()


async def produce(topic: str, records: list[dict]) -> None:
    codec = AvroCodec.for_schema("stripe_event")
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=r["partition_key"].encode(), value=codec.encode(r))
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def reader_from_start(topic: str) -> AIOKafkaConsumer:
    """A started consumer (no group) positioned at the start of every partition of topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer


async def bare_consumer_rate(topic: str, expected: int) -> tuple[float, float]:
    """Records/s of read + Avro decode + JSON decode of the body, from the start: per
    second of wall clock, and per CPU second of this process."""
    codec = AvroCodec.for_schema("stripe_event")
    consumer = await reader_from_start(topic)
    try:
        seen, started, cpu = 0, time.perf_counter(), time.process_time()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for record in records:
                    json.loads(codec.decode(record.value)["body"])
                    seen += 1
        cpu = time.process_time() - cpu
        return seen / (time.perf_counter() - started), seen / cpu if cpu else 0.0
    finally:
        await consumer.stop()


def scrape_events(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            total += sum(
                s.value for s in family.samples if s.name == "refstream_worker_events_total"
            )
    return total


def start_worker(
    env: dict[str, str], workdir: Path, n: int, port: int, profile: Path | None = None
) -> subprocess.Popen:
    """One `refstream worker`; with `profile`, run under cProfile, its stats written there
    when it stops (SIGTERM)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / f"worker{n}.log", "ab")
    child_env = {
        **env,
        "REFSTREAM_WORKER_METRICS_PORT": str(port),
    }
    command = [str(REPO_ROOT / ".venv/bin/refstream"), "worker"]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command]
    return subprocess.Popen(
        command,
        env=child_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def drain(
    ports: list[int], pids: list[int], at_least: float, idle_s: float = 8.0, limit_s: float = 900
) -> dict:
    """Wait until the decision counter passed `at_least` and stayed still for idle_s.

    Besides the wall-clock rate, the rate per CPU second the workers used between the first
    and the last decision seen: on a shared machine the wall-clock rate follows the other
    load, the CPU rate much less (what one worker does with a core of its own)."""
    first_at = last_at = None
    first_cpu = last_cpu = 0.0
    first_count, last, deadline = 0.0, 0.0, time.monotonic() + limit_s
    while time.monotonic() < deadline:
        count = scrape_events(ports)
        now, cpu = time.monotonic(), cpu_seconds(pids)
        if count > last:
            if first_at is None:
                first_at, first_cpu, first_count = now, cpu, count
            last, last_at, last_cpu = count, now, cpu
        elif last >= at_least and last_at is not None and now - last_at > idle_s:
            break
        time.sleep(0.25)
    span, cpu_span = (last_at or 0) - (first_at or 0), last_cpu - first_cpu
    return {
        "decided": int(last),
        "seconds": round(span, 2),
        "rate": last / span if span else 0,
        "cpu_seconds": round(cpu_span, 2),
        "rate_per_cpu_s": (last - first_count) / cpu_span if cpu_span else 0,
    }


def state_sizes(topic: str) -> dict:
    async def read() -> list[int]:
        consumer = await reader_from_start(topic)
        try:
            sizes: list[int] = []
            while batches := await consumer.getmany(timeout_ms=1500, max_records=5000):
                for records in batches.values():
                    sizes += [len(r.value or b"") for r in records]
            return sizes
        finally:
            await consumer.stop()

    sizes = asyncio.run(read())
    if not sizes:
        return {"writes": 0}
    return {"writes": len(sizes), "max_bytes": max(sizes), "mean_bytes": sum(sizes) // len(sizes)}


def run_workers(
    count: int, records: list[dict], program: str, workdir: Path, profile: Path | None = None
) -> dict:
    prefix = f"wb{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "REFSTREAM_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "REFSTREAM_TOPIC_PREFIX": prefix,
        "REFSTREAM_EVENTS_PARTITIONS": str(PARTITIONS),
        "REFSTREAM_LOG_LEVEL": "WARNING",
    }
    settings = load_settings(env)
    topic = settings.kafka.topic(STRIPE_EVENTS)
    asyncio.run(ensure_topics(settings.kafka))
    asyncio.run(ensure_topics(settings.kafka, internal_specs(settings)))
    asyncio.run(apply_programs(settings.kafka, parse_programs_toml(program)))
    asyncio.run(produce(topic, records))
    reference, reference_cpu = asyncio.run(bare_consumer_rate(topic, len(records)))
    ports = [free_port() for _ in range(count)]
    workers = [
        start_worker(env, workdir / prefix, n, ports[n], profile if n == 0 else None)
        for n in range(count)
    ]
    result: dict = {
        "workers": count,
        "records": len(records),
        "reference_rate": reference,
        "reference_rate_per_cpu_s": reference_cpu,
    }
    try:
        result["drain"] = drain(ports, [w.pid for w in workers], len(records))
        result["ratio"] = result["drain"]["rate"] / reference
        result["cpu_ratio"] = result["drain"]["rate_per_cpu_s"] / reference_cpu
        if profile is not None:  # stop it cleanly so that cProfile writes; no recovery run
            os.killpg(workers[0].pid, signal.SIGTERM)
            workers[0].wait(timeout=60)
            result["profile"] = str(profile)
        elif count == 1:
            result["state"] = state_sizes(
                f"{settings.kafka.topic('refstream-worker')}-customers-changelog"
            )
            os.killpg(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            asyncio.run(produce(topic, records[:200]))
            restarted = time.monotonic()
            workers[0] = start_worker(env, workdir / prefix, 0, ports[0])
            while scrape_events(ports) == 0 and time.monotonic() - restarted < 300:
                time.sleep(0.2)
            result["recovery_s"] = round(time.monotonic() - restarted, 2)
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=250)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the first worker under cProfile, stats to this file (no recovery run)",
    )
    args = parser.parse_args()
    records, program = envelopes(args.customers, args.months, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(n) for n in args.workers.split(",")):
            result = run_workers(count, records, program, Path(tmp), args.profile)
            print(json.dumps(result, indent=None, default=str), flush=True)


if __name__ == "__main__":
    main()
