"""End to end: from a Stripe webhook's 2xx to its reward visible in ClickHouse, at a fixed
offered event rate, and the highest rate the pipeline sustains.

    .venv/bin/python bench/pipeline_bench.py [--rate 1000] [--seconds 60] [--no-search]

Needs the broker on REFSTREAM_KAFKA_BOOTSTRAP (`refstream kafka start`; a shared one is
fine). Everything runs under a fresh topic prefix with its own consumer groups and
embedded ClickHouse folder, through the `refstream` commands only: `refstream topics`,
`refstream programs apply`, then `refstream ingress`, `refstream worker` and
`refstream sink` as subprocesses (settings from the environment, e.g.
REFSTREAM_SINK_BATCH_MAX_WAIT_MS, pass through to them).

Load (bench/pipeline_load.py): new referred subscribers from the simulator, both API
families, each one's webhooks signed as Stripe signs them and posted in order; each earns
one reward. Latency (bench/pipeline_latency.py): from the 2xx of a subscriber's last
webhook to the first poll of the sink's report API (`referrer_rewards`, every --poll-ms)
that shows its reward: the sink's own read path, so the bench reads the embedded engine
the sink owns without opening it. Lag: refstream.status.group_lag of the worker group on
stripe.events and of the sink group on the topics it stores, sampled every second.

Phases, in one run:
1. reference: a Kafka round trip (acks=all produce to a consumer of this process), then
   `refstream ingress` alone (own prefix, no worker or sink) offered the same rate, and
   its ceiling (64 subscribers in flight, closed loop);
2. search (--no-search skips it): --search-seconds steps from --search-start, doubling
   while a step passes, then bisecting; a step passes when every reward shows, p99 <=
   --p99-limit-ms (unless --search-criterion lag), neither group's lag grows and both
   are back to zero within --drain-limit s of the step's end; each step starts once both
   lags are back to zero;
3. target: the pipeline offered --rate events/s for --seconds, judged the same way.
Each step also prints 2xx -> the reward record on referral.rewards (ingress + worker), so
the sink's share of the latency shows, and each process's CPU use during the load.
The exit status is 0 when the target passes, 1 when not.
Ratios against the reference are what to compare between runs: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the repository's packages come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.pipeline_latency import (
    Visibility,
    counts_from_rows,
    lag_grows,
    lag_slope,
    next_rate,
    percentile,
)
from bench.pipeline_load import Offered, Unit, build_units, offer
from refstream import topics
from refstream.avro_codec import AvroCodec
from refstream.kafka_io import delete_prefixed_topics
from refstream.kafka_local import broker_answers
from refstream.settings import REPO_ROOT, Settings, load_settings
from refstream.status import group_lag
from refstream.topics import TopicSpec, ensure_topics
from tests.support.processes import RefstreamProcess, kafka_env
from tests.support.sink_checks import free_port

SECRET = "whsec_pipeline_bench_0123456789"
PROGRAM = '[[program]]\nid = "bench"\nrate = "20%"\nhold_days = 30\n'
REWARD_MINOR = 980  # 20% of every unit's $49.00 invoice
SINK_TOPICS = (
    topics.STRIPE_EVENTS,
    *topics.OUTPUT_TOPICS,
    topics.PAYOUTS,
)  # the sink stores events too


# --- the pipeline's processes ------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cli(args: list[str], env: dict[str, str]) -> None:
    """A one-shot `refstream` command; its output only when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "refstream.cli", *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"refstream {' '.join(args)} failed: {done.stderr[-2000:]}")


@dataclass
class Stage:
    """A set of `refstream` processes under one topic prefix, stopped on any exit."""

    prefix: str
    workdir: Path
    processes: dict[str, RefstreamProcess] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    query_port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        kafka = load_settings({**os.environ, "REFSTREAM_TOPIC_PREFIX": self.prefix}).kafka
        return {
            **kafka_env(kafka),
            "REFSTREAM_WEBHOOK_SECRETS": SECRET,
            "REFSTREAM_INGRESS_PORT": str(self.port),
            "REFSTREAM_QUERY_API_PORT": str(self.query_port),
            "REFSTREAM_CLICKHOUSE_DSN": f"chdb://{self.workdir / 'clickhouse'}",
        }

    @property
    def settings(self) -> Settings:
        return load_settings({**os.environ, **self.env})

    def start(self, *commands: str) -> None:
        env = self.env
        run_cli(["topics"], env)
        for command in commands:
            log = self.workdir / f"{command}.log"
            self.processes[command] = RefstreamProcess([command], env, log).start()

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if not process.alive():
                raise RuntimeError(f"refstream {name} exited:\n{process.log_tail(2000)}")

    def cpu(self) -> dict[str, float]:
        return {
            name: cpu_seconds(p.proc.pid) if p.proc else 0.0 for name, p in self.processes.items()
        }


async def wait_http(url: str, stage: Stage, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            stage.check_alive()
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f}s")


# --- what the pipeline shows: rewards in ClickHouse, consumer lag ------------------------


@dataclass
class Observer:
    """Polls the sink's report API and the groups' lag in the background."""

    stage: Stage
    poll_s: float
    visible: Visibility = field(default_factory=Visibility)  # in ClickHouse
    on_topic: Visibility = field(default_factory=Visibility)  # on referral.rewards
    poll_ms: list[float] = field(default_factory=list)
    poll_failures: int = 0
    anomalies: list[str] = field(default_factory=list)
    lag: list[tuple[float, int, int]] = field(default_factory=list)  # (t, worker, sink)
    lag_failures: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.poll_rewards()),
            asyncio.create_task(self.watch_rewards_topic()),
            asyncio.create_task(self.sample_lag()),
        ]

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()

    def check(self) -> None:
        """Raises when a process died or an observation stopped (e.g. the report API
        refused the bench's query): waiting on would only time out."""
        self.stage.check_alive()
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("an observation of the pipeline failed") from task.exception()

    async def poll_rewards(self) -> None:
        url = (
            f"http://127.0.0.1:{self.stage.query_port}/reports/referrer_rewards"
            "?limit=10000&mode=test&currency=usd"
        )
        async with aiohttp.ClientSession() as session:
            while True:
                started = time.perf_counter()
                try:
                    async with session.get(url) as response:
                        body = await response.json()
                        if response.status != 200:
                            raise RuntimeError(f"the report API answered {body}")
                except (aiohttp.ClientError, ValueError):
                    self.poll_failures += 1  # the sink is busy or restarting: poll again
                else:
                    rows = [dict(zip(body["columns"], r, strict=True)) for r in body["rows"]]
                    counts, odd = counts_from_rows(rows, REWARD_MINOR)
                    seen = time.perf_counter()
                    self.anomalies += odd + self.visible.observe(counts, seen)
                    self.poll_ms.append((seen - started) * 1000)
                await asyncio.sleep(max(0.0, self.poll_s - (time.perf_counter() - started)))

    async def watch_rewards_topic(self) -> None:
        """When each reward record first shows on referral.rewards: splits the latency into
        ingress + worker and sink."""
        kafka = self.stage.settings.kafka
        codec = AvroCodec.for_schema("reward")
        consumer = AIOKafkaConsumer(
            kafka.topic(topics.REWARDS),
            bootstrap_servers=kafka.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        counts: dict[str, int] = {}
        rewards: set[str] = set()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                seen = time.perf_counter()
                changed = {}
                for record in (r for records in batch.values() for r in records):
                    reward = codec.decode(record.value) if record.value else None
                    if reward is None or reward["reward_id"] in rewards:
                        continue  # a revision or a re-emission of a reward seen already
                    rewards.add(reward["reward_id"])
                    code = reward["referral_code"]
                    counts[code] = changed[code] = counts.get(code, 0) + 1
                self.on_topic.observe(changed, seen)
        finally:
            await consumer.stop()

    async def sample_lag(self) -> None:
        settings = self.stage.settings
        kafka = settings.kafka
        worker_group = kafka.topic(settings.streams.app_id)
        events = [kafka.topic(topics.STRIPE_EVENTS)]
        outputs = [kafka.topic(t) for t in SINK_TOPICS]
        while True:
            started = time.perf_counter()
            try:
                worker = sum((await group_lag(kafka.bootstrap, worker_group, events)).values())
                sink = sum(
                    (await group_lag(kafka.bootstrap, settings.sink.group_id, outputs)).values()
                )
            except Exception:  # noqa: BLE001 - a sample missed is no result; counted
                self.lag_failures += 1
            else:
                self.lag.append((time.perf_counter(), worker, sink))
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))

    def lag_between(
        self, start: float, end: float
    ) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
        window = [s for s in self.lag if start <= s[0] <= end]
        return [(t, w) for t, w, _ in window], [(t, s) for t, _, s in window]

    async def drained(self, after: float, timeout_s: float) -> float | None:
        """Seconds from `after` until a lag sample shows both groups at zero; None when
        they were not within timeout_s."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            self.check()
            for t, worker, sink in self.lag:
                if t >= after and worker == 0 and sink == 0:
                    return t - after
            await asyncio.sleep(0.5)
        return None

    async def all_seen(self, offered: Offered, timeout_s: float) -> bool:
        """Whether every acknowledged unit's reward showed within timeout_s."""
        acked = offered.acked_by_code()
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            self.check()
            if all(len(self.visible.seen_at.get(c, ())) >= len(a) for c, a in acked.items()):
                return True
            await asyncio.sleep(0.25)
        return False


# --- one measured step -------------------------------------------------------------------


@dataclass
class Step:
    rate: int
    seconds: float
    offered: Offered
    latencies_ms: list[float]
    topic_ms: list[float]  # 2xx -> the reward record on referral.rewards
    missing: int
    worker_slope: float
    sink_slope: float
    worker_grows: bool
    sink_grows: bool
    drain_s: float | None
    cpu_cores: dict[str, float]
    p99_limit_ms: float
    drain_limit_s: float
    judge_p99: bool = True  # False: a step passes on throughput alone (--search-criterion lag)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 0.99) if not self.missing else math.inf

    @property
    def passed(self) -> bool:
        return (
            not self.offered.errors
            and self.missing == 0
            and (self.p99_ms <= self.p99_limit_ms or not self.judge_p99)
            and not self.worker_grows
            and not self.sink_grows
            and self.drain_s is not None
            and self.drain_s <= self.drain_limit_s
            and self.offered.achieved_per_s >= 0.95 * self.rate
        )

    def verdict(self) -> str:
        why = []
        if self.offered.errors:
            why.append(f"errors {self.offered.errors}")
        if self.offered.achieved_per_s < 0.95 * self.rate:
            why.append("offered rate not reached")
        if self.missing:
            why.append(f"{self.missing} rewards not visible")
        elif self.p99_ms > self.p99_limit_ms:
            why.append(
                f"p99 > {self.p99_limit_ms:.0f} ms" + ("" if self.judge_p99 else " (ignored)")
            )
        if self.worker_grows:
            why.append("worker lag grows")
        if self.sink_grows:
            why.append("sink lag grows")
        if self.drain_s is None or self.drain_s > self.drain_limit_s:
            why.append(f"lags not back to 0 within {self.drain_limit_s:.0f}s of the load's end")
        return ("PASS" if self.passed else "FAIL") + (f" ({', '.join(why)})" if why else "")


async def measure_step(
    stage: Stage,
    observer: Observer,
    args: argparse.Namespace,
    rate: int,
    seconds: float,
    step: int,
    tag: str,
    judge_p99: bool = True,
) -> Step:
    # Codes sort the newest step first: the report returns at most 10,000 referrers.
    units = build_units(
        rate=rate,
        seconds=seconds,
        code_prefix=f"{tag}{99 - step:02d}-",
        bucket_s=args.bucket_ms / 1000,
        port=stage.port,
        secret=SECRET,
        seed=step * 1_000 + 1,
    )
    cpu_before, started = stage.cpu(), time.perf_counter()
    offered = await offer(units, stage.port)
    load_end = time.perf_counter()
    cpu = {
        name: (used - cpu_before.get(name, 0.0)) / (load_end - started)
        for name, used in stage.cpu().items()
    }
    all_seen = await observer.all_seen(offered, args.drain_timeout)
    # Rewards still missing after the timeout: the backlog is far from drained either.
    drain_s = await observer.drained(load_end, args.drain_timeout if all_seen else 1.0)
    latencies_s, missing, odd = observer.visible.latencies(offered.acked_by_code())
    topic_s, _, _ = observer.on_topic.latencies(offered.acked_by_code())
    observer.anomalies += odd
    worker_lag, sink_lag = observer.lag_between(started, load_end)
    return Step(
        rate=rate,
        seconds=seconds,
        offered=offered,
        latencies_ms=[s * 1000 for s in latencies_s],
        topic_ms=[s * 1000 for s in topic_s],
        missing=missing + sum(1 for u in units if u.acked_at is None),
        worker_slope=lag_slope(worker_lag),
        sink_slope=lag_slope(sink_lag),
        worker_grows=lag_grows(worker_lag, rate),
        sink_grows=lag_grows(sink_lag, rate),
        drain_s=drain_s,
        cpu_cores=cpu,
        p99_limit_ms=args.p99_limit_ms,
        drain_limit_s=args.drain_limit,
        judge_p99=judge_p99,
    )


def fmt_ms(value: float) -> str:
    return "  -" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.0f}")


def print_step(label: str, s: Step) -> None:
    lat = s.latencies_ms
    print(
        f"{label}: offered {s.rate}/s for {s.seconds:.0f}s,"
        f" achieved {s.offered.achieved_per_s:.0f}/s"
        f" ({s.offered.events_acked} webhooks 2xx, late start p99"
        f" {fmt_ms(percentile(s.offered.late_ms, 0.99))} ms)\n"
        f"  2xx -> ClickHouse ms: p50 {fmt_ms(percentile(lat, 0.5))}"
        f"  p95 {fmt_ms(percentile(lat, 0.95))}  p99 {fmt_ms(percentile(lat, 0.99))}"
        f"  max {fmt_ms(max(lat, default=math.nan))}"
        f"  ({len(lat)} rewards seen, {s.missing} not)\n"
        f"  2xx -> referral.rewards ms: p50 {fmt_ms(percentile(s.topic_ms, 0.5))}"
        f"  p99 {fmt_ms(percentile(s.topic_ms, 0.99))} (ingress + worker)\n"
        f"  webhook answer ms: p50 {fmt_ms(percentile(s.offered.answer_ms, 0.5))}"
        f"  p99 {fmt_ms(percentile(s.offered.answer_ms, 0.99))}\n"
        f"  lag slope /s: worker {s.worker_slope:+.0f} ({'grows' if s.worker_grows else 'flat'})"
        f", sink {s.sink_slope:+.0f} ({'grows' if s.sink_grows else 'flat'});"
        f" drained {'no' if s.drain_s is None else f'{s.drain_s:.1f}s'} after the load\n"
        f"  cpu (cores): "
        + ", ".join(f"{name} {cores:.2f}" for name, cores in s.cpu_cores.items())
        + f"\n  -> {s.verdict()}",
        flush=True,
    )


# --- the reference: Kafka round trip, the ingress alone ----------------------------------


async def kafka_round_trip_ms(bootstrap: str, topic: str, samples: int = 200) -> list[float]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        await consumer.seek_to_end()
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


@dataclass
class Reference:
    round_trip_ms: list[float]
    offered: Offered
    ceiling: Offered


async def measure_reference(prefix: str, workdir: Path, args: argparse.Namespace) -> Reference:
    stage = Stage(prefix, workdir)
    kafka = stage.settings.kafka
    await ensure_topics(kafka, [TopicSpec(kafka.topic("bench.roundtrip"), 1)])
    round_trip = await kafka_round_trip_ms(kafka.bootstrap, kafka.topic("bench.roundtrip"))
    stage.start("ingress")
    try:
        await wait_http(f"http://127.0.0.1:{stage.port}/readyz", stage)

        def units(rate: float, seconds: float, seed: int) -> list[Unit]:
            return build_units(
                rate=rate, seconds=seconds, code_prefix="ref-", bucket_s=1.0,
                port=stage.port, secret=SECRET, seed=seed,
            )  # fmt: skip

        await offer(units(100, 2, 1), stage.port)  # warm-up
        offered = await offer(units(args.rate, args.reference_seconds, 2), stage.port)
        ceiling_units = units(args.rate, args.reference_seconds, 3)
        for unit in ceiling_units:
            unit.due_s = 0.0
        ceiling = await offer(ceiling_units, stage.port, max_in_flight=64)
    finally:
        stage.stop()
        if not args.keep:  # a broker holds every partition open: give ours back early
            with contextlib.suppress(Exception):
                await delete_prefixed_topics(kafka.bootstrap, prefix)
    return Reference(round_trip, offered, ceiling)


# --- the run -----------------------------------------------------------------------------


async def search(
    stage: Stage, observer: Observer, args: argparse.Namespace, tag: str, first_step: int
) -> tuple[int | None, list[Step]]:
    passed: list[int] = []
    failed: list[int] = []
    steps: list[Step] = []
    rate: int | None = args.search_start
    step_no = first_step
    while rate is not None and args.search_min <= rate <= args.search_max:
        if await observer.drained(time.perf_counter(), args.drain_timeout) is None:
            print("search: the lags did not drain before the next step; stopping", flush=True)
            break
        s = await measure_step(
            stage, observer, args, rate, args.search_seconds, step_no, tag,
            judge_p99=args.search_criterion == "full",
        )  # fmt: skip
        print_step(f"search step {step_no - first_step + 1}", s)
        steps.append(s)
        (passed if s.passed else failed).append(rate)
        rate = next_rate(passed, failed, 2.0, args.search_resolution)  # halves below a fail
        step_no += 1
    return max(passed, default=None), steps


async def bench(args: argparse.Namespace) -> int:
    run = f"pbench{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="refstream-pipeline-bench-"))
    bootstrap = load_settings().kafka.bootstrap
    if not await broker_answers(bootstrap, timeout_s=10):
        print(f"no Kafka broker at {bootstrap} (REFSTREAM_KAFKA_BOOTSTRAP)", file=sys.stderr)
        return 2
    print(f"run {run}: topic prefixes {run}r. (reference) and {run}p., logs in {workdir}")
    sink, kafka = load_settings().sink, load_settings().kafka
    print(
        f"settings: sink batch max wait {sink.batch_max_wait_ms} ms / {sink.batch_max_rows} rows,"
        f" {kafka.events_partitions} stripe.events partitions (REFSTREAM_* pass through)"
    )
    stage = Stage(f"{run}p.", workdir / "pipeline")
    stage.workdir.mkdir()
    (workdir / "reference").mkdir()
    observers: list[Observer] = []
    try:
        ref = await measure_reference(f"{run}r.", workdir / "reference", args)
        rt50, rt99 = percentile(ref.round_trip_ms, 0.5), percentile(ref.round_trip_ms, 0.99)
        print(
            f"reference: kafka round trip p50 {rt50:.1f} ms, p99 {rt99:.1f} ms; ingress alone"
            f" offered {args.rate}/s achieved {ref.offered.achieved_per_s:.0f}/s, answer p99"
            f" {percentile(ref.offered.answer_ms, 0.99):.1f} ms, errors {ref.offered.errors or 0};"
            f" ingress ceiling (64 in flight) {ref.ceiling.achieved_per_s:.0f}/s",
            flush=True,
        )
        program = workdir / "programs.toml"
        program.write_text(PROGRAM)
        stage.start("ingress", "worker", "sink")
        run_cli(["programs", "apply", str(program)], stage.env)
        await wait_http(f"http://127.0.0.1:{stage.port}/readyz", stage)
        await wait_http(f"http://127.0.0.1:{stage.query_port}/health", stage)
        observer = Observer(stage, args.poll_ms / 1000)
        observers.append(observer)
        observer.start()
        warm = await offer(
            build_units(rate=20, seconds=2, code_prefix=f"{run}w-", bucket_s=10.0,
                        port=stage.port, secret=SECRET, seed=7),
            stage.port,
        )  # fmt: skip
        if warm.errors or not await observer.all_seen(warm, 300):
            raise RuntimeError(f"warm-up rewards never showed in ClickHouse; logs in {workdir}")
        print("pipeline up (warm-up rewards visible)", flush=True)

        best: int | None = None
        steps: list[Step] = []
        if args.search:
            best, steps = await search(stage, observer, args, run, 1)
            if await observer.drained(time.perf_counter(), args.drain_timeout) is None:
                print("the lags did not drain after the search: the target starts behind")
        target = await measure_step(stage, observer, args, args.rate, args.seconds, 0, run)
        print_step("target", target)
        if observer.anomalies:
            print(f"ANOMALIES (exactness): {observer.anomalies[:10]}")
        seen_p99 = percentile(target.latencies_ms, 0.99)
        answer_p99 = percentile(target.offered.answer_ms, 0.99)
        print(
            f"summary, target {args.rate}/s for {args.seconds:.0f}s: {target.verdict()}\n"
            f"  p99 2xx -> ClickHouse {fmt_ms(target.p99_ms)} ms (limit"
            f" {args.p99_limit_ms:.0f}); over the {len(target.latencies_ms)} rewards seen"
            f" {fmt_ms(seen_p99)} ms = {seen_p99 / rt99:.0f}x the Kafka round trip p99\n"
            f"  webhook answer p99 {answer_p99:.0f} ms ="
            f" {answer_p99 / percentile(ref.offered.answer_ms, 0.99):.1f}x the ingress alone's;"
            f" achieved rate {target.offered.achieved_per_s / ref.offered.achieved_per_s:.2f}x"
            f" the ingress alone's\n"
            f"  report API poll p50 {percentile(observer.poll_ms, 0.5):.0f} ms;"
            f" {observer.poll_failures} polls and {observer.lag_failures} lag samples failed"
        )
        if args.search:
            ceiling = ref.ceiling.achieved_per_s
            tried = ", ".join(f"{s.rate}/s {'pass' if s.passed else 'fail'}" for s in steps)
            found = (
                f"{best} events/s ({best / ceiling:.2f} of the ingress alone's ceiling"
                f" {ceiling:.0f}/s)"
                if best
                else "none of the rates tried"
            )
            print(f"highest sustained rate ({args.search_criterion}): {found}; tried {tried}")
        return 0 if target.passed else 1
    finally:
        for observer in observers:
            observer.stop()
        stage.stop()
        if not args.keep:
            with contextlib.suppress(Exception):
                await delete_prefixed_topics(bootstrap, run)
            shutil.rmtree(stage.workdir / "clickhouse", ignore_errors=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run like Ctrl-C: the finally blocks stop the children."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--rate", type=int, default=1_000, help="offered webhooks per second (default 1000)")
    add("--seconds", type=float, default=60, help="duration of the target run (default 60)")
    add("--p99-limit-ms", type=float, default=2_000, help="target p99 2xx->ClickHouse")
    add("--search", action=argparse.BooleanOptionalAction, default=True,
        help="search the highest sustained rate after the target run (default on)")  # fmt: skip
    add("--search-start", type=int, default=125, help="first rate of the search (events/s)")
    add("--search-seconds", type=float, default=20, help="duration of each search step")
    add("--search-resolution", type=float, default=0.15, help="stop bisecting within this share")
    add("--search-criterion", choices=["full", "lag"], default="full",
        help="full: p99 <= limit and no growing lag (default); lag: lag alone")  # fmt: skip
    add("--search-min", type=int, default=10)
    add("--search-max", type=int, default=8_000)
    add("--reference-seconds", type=float, default=10, help="duration of the ingress-alone run")
    add("--bucket-ms", type=float, default=100, help="subscribers sharing a referral code")
    add("--poll-ms", type=float, default=250, help="report API poll interval (resolution)")
    add("--drain-limit", type=float, default=10,
        help="a step passes only if both lags are 0 within this many s of its end")  # fmt: skip
    add("--drain-timeout", type=float, default=240, help="wait for rewards/lag after a step (s)")
    add("--keep", action="store_true", help="keep the topics and the ClickHouse folder")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    with sigterm_as_interrupt():
        try:
            return asyncio.run(bench(args))
        except KeyboardInterrupt:
            print("interrupted: the pipeline's processes were stopped", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
