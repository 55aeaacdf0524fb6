"""Report latency against history length, on data loaded through the real sink path.

    .venv/bin/python bench/report_bench.py [--sizes 10000x12,10000x120] [--runs 5]

A size is CUSTOMERSxMONTHS: 10000x12 and 10000x120 compare one year with ten years of the
same account (history length); 10000x12 and 100000x12 a ten times larger account.
For each size: a synthetic account (bench/synthetic_account.py; 100,000 customers x 12
months is about 2.5 million Stripe events and 840,000 rewards) is encoded in the topics'
Avro schemas and produced to fresh topics on the local broker, then written into a fresh
embedded ClickHouse folder by the sink consumer (`refstream sink`'s code path, every
topic), and every named report is timed: p50 of `--runs` runs, after one warm-up run.

Prints, per report, the p50 at each size and its growth (p50 at the largest size / p50 at
the smallest) beside the growth of the history (events at the largest / the smallest):
flat reports grow about 1x whatever the history, linear ones grow like the history.
Also prints the sink's load rate (records/s) for each size. Needs the local broker
(`refstream kafka start`). Not a test: only the ratios mean much on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the repository's packages come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaProducer

from bench import synthetic_account as account
from refstream.avro_codec import AvroCodec
from refstream.settings import Secret, Settings, load_settings
from refstream.topics import (
    ATTRIBUTIONS,
    CLAWBACKS,
    PAYOUTS,
    REWARD_STATUS,
    REWARDS,
    STRIPE_EVENTS,
    ensure_topics,
)
from sinks.clickhouse import connect
from sinks.consumer import ALL_SPECS, SinkConsumer, group_lag
from sinks.migrations import apply_migrations
from sinks.reports import REPORTS, run_report
from tests.support.revenue_reference import REVENUE_REPORTS, reference

Records = Iterator[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Load:
    events: int
    records: int
    sink_s: float


def sources(customers: int, months: int) -> list[tuple[str, str, Callable[[], Records]]]:
    """(topic, schema, records) of every topic the synthetic account fills."""
    return [
        (STRIPE_EVENTS, "stripe_event", lambda: account.stripe_events(customers, months)),
        (ATTRIBUTIONS, "attribution", lambda: account.attributions(customers)),
        (REWARDS, "reward", lambda: account.rewards(customers, months)),
        (CLAWBACKS, "clawback", lambda: account.clawbacks(customers, months)),
        (REWARD_STATUS, "reward_status", lambda: account.statuses(customers, months)),
        (PAYOUTS, "payout", lambda: account.payouts(customers, months)),
    ]


async def produce(bootstrap: str, topic: str, schema: str, records: Records) -> int:
    codec = AvroCodec.for_schema(schema)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=50, max_batch_size=1024 * 1024
    )
    await producer.start()
    count = 0
    try:
        pending = []
        for key, record in records:
            pending.append(await producer.send(topic, value=codec.encode(record), key=key.encode()))
            count += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


async def load(settings: Settings, client: Any, customers: int, months: int) -> Load:
    """Produce the account to fresh topics, then run the sink until it committed them all."""
    counts = {}
    for topic, schema, records in sources(customers, months):
        counts[topic] = await produce(
            settings.kafka.bootstrap, settings.kafka.topic(topic), schema, records()
        )
    topics = [settings.kafka.topic(spec.topic) for spec in ALL_SPECS]
    stop = asyncio.Event()
    consumer = SinkConsumer(settings.kafka, settings.sink, client)
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run(stop))
    try:
        # Transaction markers are not records; the plain producer here writes none.
        while await group_lag(settings.kafka, settings.sink.group_id, topics) > 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.5)
        sink_s = time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 300)
    return Load(counts[STRIPE_EVENTS], sum(counts.values()), sink_s)


def settle_merges(client: Any, timeout_s: float = 180) -> None:
    """Wait (bounded) for the background merges of the load: a dashboard's steady state.
    Exactness before any merge is the tests' business (tests/integration)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.query("SELECT count() FROM system.merges").result_rows[0][0] == 0:
            return
        time.sleep(1)


def report_params(client: Any) -> dict[str, dict[str, str]]:
    """Parameters for each report: required ones filled with the busiest referrer."""
    busiest = client.query(
        "SELECT referral_code FROM rewards GROUP BY referral_code ORDER BY count() DESC, "
        "referral_code LIMIT 1"
    ).result_rows[0][0]
    return {
        name: {p.name: busiest for p in report.params if p.required}
        for name, report in REPORTS.items()
    }


def _p50(run: Callable[[], Any], runs: int) -> float:
    run()  # warm-up: caches, lazy loading
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def time_reports(client: Any, runs: int) -> dict[str, float]:
    """p50 seconds of each report (defaults; the required parameters filled), and of the
    revenue reports' reference (their SQL over the views before the revenue ledger, on the
    same data: `ref:NAME`), with a check that both give the same rows."""
    timings = {}
    for name, params in report_params(client).items():
        timings[name] = _p50(partial(run_report, client, name, params), runs)
        if name in REVENUE_REPORTS:
            timings[f"ref:{name}"] = _p50(partial(reference, client, name, params), runs)
            same = run_report(client, name, params).rows == reference(client, name, params)
            print(f"  {name}: {'same rows as' if same else 'DIFFERS FROM'} the reference")
    return timings


async def measure(base: Settings, customers: int, months: int, runs: int) -> tuple[Load, dict]:
    kafka = replace(base.kafka, topic_prefix=f"rbench{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka)
    with tempfile.TemporaryDirectory() as folder:
        sink = replace(
            base.sink,
            clickhouse_dsn=Secret(f"chdb://{folder}/ch"),
            group_id=f"rbench-{uuid.uuid4().hex[:8]}",
        )
        settings = replace(base, kafka=kafka, sink=sink)
        client = connect(sink)
        try:
            apply_migrations(client)
            loaded = await load(settings, client, customers, months)
            settle_merges(client)
            timings = time_reports(client, runs)
        finally:
            client.close()
    return loaded, timings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000x12,10000x120", help="CUSTOMERSxMONTHS,...")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",")]

    base = load_settings()
    results = []
    for customers, months in sizes:
        loaded, timings = await measure(base, customers, months, args.runs)
        results.append((f"{customers}x{months}", loaded, timings))
        print(
            f"{customers:>9,} customers x {months:>3} months: {loaded.events:>11,} stripe events, "
            f"{loaded.records:>11,} records, sink {loaded.records / loaded.sink_s:,.0f} "
            f"records/s ({loaded.sink_s:.1f} s)",
            flush=True,
        )

    first, last = results[0], results[-1]
    header = "".join(f"{f'p50 ms @{c}':>18}" for c, _, _ in results)
    print(f"\n{'report':28}{header}{'growth':>9}")
    for name in REPORTS:
        cells = "".join(f"{timings[name] * 1000:18.1f}" for _, _, timings in results)
        growth = last[2][name] / first[2][name]
        print(f"{name:28}{cells}{growth:8.2f}x")
    print(f"\n{'revenue report: the views (before) / the ledger (after)':60}")
    for name in REVENUE_REPORTS:
        cells = "".join(
            f"{timings[f'ref:{name}'] * 1000:9.1f} /{timings[name] * 1000:7.1f} ms"
            f" ({timings[f'ref:{name}'] / timings[name]:5.1f}x)"
            for _, _, timings in results
        )
        print(f"{name:28}{cells}")
    history = last[1].events / first[1].events
    worst = max(timings[name] for _, _, timings in results for name in REPORTS)  # ledger side
    print(f"\nhistory growth (stripe events): {history:.2f}x; slowest p50: {worst * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
