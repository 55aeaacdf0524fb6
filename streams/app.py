"""Faust wiring of the worker: topics, tables, agents and the tick timer.

Decisions live in `streams.worker_core` and the pure cores behind it; this module only loads
state, calls a core, emits its outputs and stores the new state, in an order that makes a
crash harmless:

  1. decode the record (one that cannot be decoded or parsed goes to the dead-letter topic);
  2. load the state from the agent's table;
  3. call the core, which returns the new state and the output records;
  4. send every output and WAIT for the broker's acks;
  5. only then store the new state (and file its next due time).

A crash before step 5 replays the record from the old state and re-emits the same records
(deterministic ids: consumers deduplicate); a crash after it finds the work recorded in the
state and does nothing more. Faust commits offsets after step 5 (at-least-once), and every
agent that owns tables runs with concurrency 1 (faust-streaming #606).

Three agents, each on co-partitioned topics (same partition count, same key):
- customers: stripe.events + rerouted events + customer ticks, keyed by customer;
  table `customers`. Emits rewards, attributions, lifecycle, corrections, payment links.
- payment links: refstream.links, keyed by payment intent; table `payment_owners`. Learns
  which customer owns a payment intent, re-keys events that named only the payment
  (invoice_payment.*, guest refunds/disputes; parked until the owner is known) and answers
  a customer's probe before it calls a charge one-time (streams/payment_links.py).
- referrers: referral.rewards + corrections + referral.payouts + referrer ticks, keyed by
  referral code; tables `referrers` and `reward_entries`. Emits clawbacks and statuses.

Internal topics carry Avro (schemas/correction, payment_link, link_probe_answer, tick).
Metrics (refstream/metrics.py) are served on REFSTREAM_WORKER_METRICS_PORT; the group's
lag is read by `refstream status` (a lag timer inside the worker coincided with Faust
partition stalls, see docs/OPERATIONS.md).

Time-driven decisions (attribution windows, hold expiries) ride on tick records: the leader
sends one tick per partition every `tick_interval_s`; a tick for partition p is processed
where p's tables live, so it may change them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT

from refstream import topics
from refstream.avro_codec import AvroCodec
from refstream.metrics import WorkerMetrics, serve_worker
from refstream.settings import Settings
from refstream.topics import LINK_PROBE_ANSWER_SCHEMA, TopicSpec, ensure_topics
from streams.corrections import InvariantViolation, Step
from streams.errors import BAD_INPUT, DEAD_LETTER, OutputEncodeError, crash_loudly
from streams.payment_links import on_link_message
from streams.stripe_lookup import CustomerLookup, LookupConfig
from streams.worker_core import (
    CORRECTIONS,
    INTERNAL_SCHEMAS,
    LINKS,
    REROUTED,
    CustomerCore,
    Output,
    ReferrerCore,
    decode_internal,
    is_probe_answer,
    link_message,
    probe_answer_output,
)
from streams.worker_due import DueIndex
from streams.worker_programs import ProgramCache

log = logging.getLogger(__name__)

CUSTOMER_TICKS = topics.TICKS
REFERRER_TICKS = "refstream.referrer-ticks"
# Internal topics the worker creates beside refstream's public ones (same partitions).
INTERNAL_TOPICS = (CORRECTIONS, LINKS, REROUTED, REFERRER_TICKS)
# The worker's tables; each has a compacted changelog topic "<app id>-<table>-changelog".
TABLES = (
    "customers",
    "customer-due",
    "payment-owners",
    "referrers",
    "reward-entries",
    "referrer-due",
)
# (unprefixed topic, key, value, headers) of one record to produce
Encoded = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def worker_data_dir(settings: Settings) -> Path:
    """The worker's RocksDB folder, namespaced by app id and topic prefix: changing either
    starts from fresh local state (rebuilt from the changelogs) instead of crashing on
    tables of another app."""
    name = settings.kafka.topic(settings.streams.app_id)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return settings.streams.data_dir / safe


def changelog_specs(settings: Settings) -> list[TopicSpec]:
    """The tables' changelog topics, created before any agent runs: Faust would otherwise
    create them while agents start, and an agent that reads its table before the topic
    exists stops with PartitionsMismatch."""
    app_id, n = settings.kafka.topic(settings.streams.app_id), settings.kafka.events_partitions
    return [TopicSpec(f"{app_id}-{name}-changelog", n, compacted=True) for name in TABLES]


def internal_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the worker needs beyond refstream's public ones."""
    n = settings.kafka.events_partitions
    internal = [TopicSpec(settings.kafka.topic(name), n) for name in INTERNAL_TOPICS]
    return internal + changelog_specs(settings)


def now() -> int:
    """Worker time, unix seconds: the only clock the worker reads (cores are given it)."""
    return int(time.time())


class JsonTableView(Mapping[str, Any]):
    """Read-only, JSON-decoding view of a bytes-keyed table (what the cores read)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        raw = self.table.get(key.encode())
        if raw is None:
            raise KeyError(key)
        return json.loads(raw)

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.table.get(key.encode())
        return default if raw is None else json.loads(raw)

    def __iter__(self) -> Any:
        raise NotImplementedError("a table view is not iterated")

    def __len__(self) -> int:
        raise NotImplementedError("a table view is not counted")


def create_app(settings: Settings, worker_metrics: WorkerMetrics | None = None) -> faust.App:
    kafka, conf = settings.kafka, settings.streams
    n = kafka.events_partitions
    app = faust.App(
        kafka.topic(conf.app_id),  # its internal topics follow the topic prefix
        broker=[f"kafka://{host.strip()}" for host in kafka.bootstrap.split(",")],
        store="rocksdb://",
        datadir=str(worker_data_dir(settings)),
        topic_partitions=n,
        topic_replication_factor=kafka.replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=conf.session_timeout_s,
        broker_heartbeat_interval=max(1, conf.session_timeout_s // 4),
        broker_commit_interval=1.0,
        producer_acks=-1,
        web_enabled=False,
        table_standby_replicas=0,
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }

    def topic(*names: str) -> Any:
        return app.topic(*(kafka.topic(name) for name in names), partitions=n, **raw)

    def table(name: str) -> Any:
        if name not in TABLES:  # its changelog must be created up front (changelog_specs)
            raise ValueError(f"table {name!r} is missing from TABLES")
        return app.Table(name, default=None, partitions=n, key_type=bytes, value_type=bytes)

    out_topics = {
        name: topic(name)
        for name in (*topics.OUTPUT_TOPICS, CORRECTIONS, LINKS, REROUTED, topics.STRIPE_EVENTS_DLQ)
    }
    customer_ticks, referrer_ticks = topic(CUSTOMER_TICKS), topic(REFERRER_TICKS)
    customers, customer_due = table("customers"), DueIndex(table("customer-due"))
    payment_owners = table("payment-owners")
    referrers, reward_entries = table("referrers"), table("reward-entries")
    referrer_due = DueIndex(table("referrer-due"))
    program_cache = ProgramCache(kafka)
    customer_core = CustomerCore.from_settings(settings)
    lookup = None
    if conf.stripe_api_key is not None:
        lookup = CustomerLookup(
            LookupConfig(conf.stripe_api_key, conf.stripe_api_base, customer_core.config.keys)
        )
    envelope_codec = AvroCodec.for_schema("stripe_event")
    tick_codec = AvroCodec.for_schema("tick")
    dead_letter_codec = AvroCodec.for_schema("dead_letter")
    stats: Counter[str] = Counter()
    metrics = worker_metrics if worker_metrics is not None else WorkerMetrics()
    prefixed = kafka.topic

    def encode(records: list[Output]) -> list[Encoded]:
        """Every output as bytes, before anything is sent: a record its schema cannot carry
        (a lone surrogate, an integer beyond a long) fails the event, not the worker."""
        encoded = []
        for out in records:
            try:
                value = AvroCodec.for_schema(out.schema).encode(out.record)
                encoded.append((out.topic, out.key.encode(), value, list(out.headers)))
            except (ValueError, TypeError, OverflowError) as exc:  # UnicodeEncodeError too
                raise OutputEncodeError(f"{out.topic} record: {exc}"[:500]) from exc
        return encoded

    async def send(encoded: list[Encoded]) -> None:
        pending = []
        for name, key, value, headers in encoded:
            # force=True: produce now. Faust would otherwise "attach" the record to the
            # source offset and produce it at commit time; a rebalance in between loses it.
            target = out_topics[name]
            sent = await target.send(key=key, value=value, headers=headers or None, force=True)
            pending.append(sent)
        await asyncio.gather(*pending)  # Step 4: every ack before the state is stored

    def count(records: list[Output]) -> None:
        """Rewards and clawbacks emitted, by currency and mode (after their acks)."""
        for out in records:
            r = out.record
            if out.topic == topics.REWARDS and r["revision"] == 0:  # a revision repeats it
                metrics.reward(r["currency"], r["livemode"], r["reward_amount_minor"])
            elif out.topic == topics.CLAWBACKS:
                metrics.clawback(r["kind"], r["currency"], r["livemode"], r["amount_minor"])

    async def emit(records: list[Output]) -> None:
        await send(encode(records))
        count(records)

    async def dead_letter(
        event: EventT, error: Exception, event_id: str | None, due_key: bytes | None = None
    ) -> None:
        """The event's original bytes and the reason, to the dead-letter topic. For a due
        key that failed at a tick, the key names which state (the tick itself is fine)."""
        message = event.message
        dead_letter_id = f"worker:{message.topic}:{message.partition}:{message.offset}"
        if due_key is not None:
            dead_letter_id += f":{due_key.decode(errors='replace')}"
        record = {
            "dead_letter_id": dead_letter_id,
            "stage": "worker",
            "source_topic": message.topic,
            "source_partition": message.partition,
            "source_offset": message.offset,
            "key": event.key if due_key is None else due_key,
            "value": event.value,
            "event_id": event_id,
            "error_type": type(error).__name__,
            "error": str(error)[:2000],
            "failed_at_ms": int(time.time() * 1000),
        }
        value = dead_letter_codec.encode(record)
        dlq = out_topics[topics.STRIPE_EVENTS_DLQ]
        await (await dlq.send(key=event.key, value=value, force=True))
        stats["dead_lettered"] += 1
        metrics.dead_letters.labels("worker", type(error).__name__).inc()
        log.warning(
            "dead_lettered",
            extra={k: record[k] for k in ("source_topic", "source_offset", "event_id", "error")},
        )

    # --- customers ----------------------------------------------------------------------

    async def on_probe_answer(event: EventT) -> None:
        answer = decode_internal(LINK_PROBE_ANSWER_SCHEMA, event.value)
        key = answer["state_key"].encode()
        result = customer_core.on_probe_answer(
            customers.get(key), answer["charge_id"], program_cache.current(), now()
        )
        await emit(result.outputs)
        if result.state is not None:
            customers[key] = result.state
        customer_due.add(event.message.partition, key, result.due_s)

    async def on_stripe_event(event: EventT) -> None:
        with metrics.decision_seconds.time():
            outcome, event_type = await decide_stripe_event(event)
        metrics.event(event_type or "unreadable", outcome)

    async def decide_stripe_event(event: EventT) -> tuple[str, str | None]:
        """Decide one stripe.events (or rerouted) record: (metric outcome, event type)."""
        try:
            envelope = envelope_codec.decode(event.value)
            routed = customer_core.route(envelope)
            raw_event = json.loads(envelope["body"])
        except BAD_INPUT as exc:
            await dead_letter(event, exc, None)
            return "dead_lettered", None
        if routed is None:
            stats["skipped"] += 1
            return "ignored", str(envelope.get("type"))
        event_type = routed.event.type
        raw_state = customers.get(routed.state_key)
        rerouted = event.message.topic == prefixed(REROUTED)
        if not rerouted and customer_core.needs_owner(routed, raw_state):
            # Only the payment intent is named: let the link agent find its customer.
            link = {"event": envelope_codec.encode(envelope)}
            await emit([Output(LINKS, routed.event.partition_key, link)])
            stats["sent_for_owner"] += 1
            return "decided", event_type  # decided where its owner's state lives
        try:
            result = customer_core.on_event(
                raw_state, routed, program_cache.current(), now(), raw_event
            )
            encoded = encode(result.outputs)
        except InvariantViolation:
            raise  # the ledger itself would break: stop loudly, never skip
        except DEAD_LETTER as exc:  # an odd event or a routing fault
            await dead_letter(event, exc, routed.event.event_id)
            return "dead_lettered", event_type
        stats[result.outcome] += 1
        await send(encoded)
        count(result.outputs)
        if result.state is not None:
            customers[routed.state_key] = result.state  # Step 5
        customer_due.add(event.message.partition, routed.state_key, result.due_s)
        return ("duplicate" if result.outcome == "duplicate" else "decided"), event_type

    async def customer_due_handler(key: bytes, now_s: int) -> int | None:
        if lookup is not None and (
            target := customer_core.lookup_target(customers.get(key), now_s)
        ):
            # Revenue waited long enough for its attribution event: ask Stripe once.
            customer_id, account = target
            touch = await lookup.touch(customer_id, now_s, account)
            stats["looked_up_found" if touch else "looked_up_nothing"] += 1
            looked = customer_core.on_lookup(customers[key], touch, program_cache.current(), now_s)
            await emit(looked.outputs)
            if looked.state is not None:
                customers[key] = looked.state
        result = customer_core.on_tick(customers.get(key), program_cache.current(), now_s)
        await emit(result.outputs)
        if result.state is not None:
            customers[key] = result.state
        return result.due_s

    def isolated(handler: Any, tick: EventT) -> Any:
        """A due handler whose bad-input failure dead-letters that key alone; the other
        keys of the bucket keep draining."""

        async def run(key: bytes, now_s: int) -> int | None:
            try:
                return await handler(key, now_s)
            except InvariantViolation:
                raise
            except DEAD_LETTER as exc:
                await dead_letter(tick, exc, None, due_key=key)
                return None  # filed again by the key's next event

        return run

    @app.agent(topic(topics.STRIPE_EVENTS, REROUTED, CUSTOMER_TICKS), concurrency=1)
    async def customer_agent(stream: Any) -> None:
        await program_cache.loaded.wait()  # never decide against half-read programs
        async for event in stream.events():
            try:
                if event.message.topic == prefixed(CUSTOMER_TICKS):
                    now_s = decode_internal("tick", event.value)["now_s"]
                    handler = isolated(customer_due_handler, event)
                    await customer_due.drain(event.message.partition, now_s, handler)
                elif is_probe_answer(event.headers):
                    await on_probe_answer(event)
                else:
                    await on_stripe_event(event)
            except Exception as exc:  # noqa: BLE001 -- a bug, not input: stop before more is lost
                crash_loudly("customer_agent", exc)

    # --- payment links ------------------------------------------------------------------

    @app.agent(topic(LINKS), concurrency=1)
    async def link_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                await on_link(event)
            except Exception as exc:  # noqa: BLE001 -- a bug: stop loudly
                crash_loudly("link_agent", exc)

    async def on_link(event: EventT) -> None:
        """Learn a payment's owner, park/re-key an event that names only the payment, answer
        a probe after everything re-keyed before it."""
        raw = payment_owners.get(event.key)
        step = on_link_message(None if raw is None else json.loads(raw), link_message(event.value))
        outputs = [_reroute(envelope_codec, hex_value, step.state) for hex_value in step.reroute]
        outputs += [probe_answer_output(probe) for probe in step.answers]
        await emit(outputs)
        payment_owners[event.key] = json.dumps(step.state).encode()

    # --- referrers ----------------------------------------------------------------------

    entries_view = JsonTableView(reward_entries)
    payouts_codec, reward_codec = AvroCodec.for_schema("payout"), AvroCodec.for_schema("reward")

    async def apply_step(step: Step) -> bytes:
        """Emit a referrer step's records, then store what it changed; returns the key."""
        for note in step.notes:
            log.info("referrer_note", extra={"note": note})
        await emit(ReferrerCore.outputs(step))
        key = step.state["referral_code"].encode()
        referrers[key] = ReferrerCore.dump(step.state)  # Step 5
        for reward_id, entry in step.rewards.items():
            reward_entries[reward_id.encode()] = ReferrerCore.dump(entry)
        return key

    async def on_referrer_record(event: EventT) -> None:
        source = event.message.topic
        try:
            if source == prefixed(topics.REWARDS):
                record, handler = reward_codec.decode(event.value), ReferrerCore.on_reward
            elif source == prefixed(topics.PAYOUTS):
                record, handler = payouts_codec.decode(event.value), ReferrerCore.on_payout
            else:
                record = decode_internal(INTERNAL_SCHEMAS[CORRECTIONS], event.value)
                handler = ReferrerCore.on_correction
            code = str(record["referral_code"])
            state = ReferrerCore.load_state(referrers.get(code.encode()), code)
            step = handler(state, entries_view, record, now())
        except BAD_INPUT as exc:
            await dead_letter(event, exc, None)
            return
        # InvariantViolation is not caught: a broken ledger invariant stops the agent loudly.
        try:
            key = await apply_step(step)  # encodes every record before it sends any
        except OutputEncodeError as exc:
            await dead_letter(event, exc, None)
            return
        referrer_due.add(event.message.partition, key, ReferrerCore.next_due(step))

    async def referrer_due_handler(key: bytes, now_s: int) -> int | None:
        raw_state = referrers.get(key)
        if raw_state is None:
            return None
        step = ReferrerCore.on_tick(json.loads(raw_state), entries_view, now_s)
        await apply_step(step)
        return ReferrerCore.next_due(step)

    referrer_sources = topic(topics.REWARDS, CORRECTIONS, topics.PAYOUTS, REFERRER_TICKS)

    @app.agent(referrer_sources, concurrency=1)
    async def referrer_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                if event.message.topic == prefixed(REFERRER_TICKS):
                    now_s = decode_internal("tick", event.value)["now_s"]
                    handler = isolated(referrer_due_handler, event)
                    await referrer_due.drain(event.message.partition, now_s, handler)
                else:
                    await on_referrer_record(event)
            except Exception as exc:  # noqa: BLE001 -- a bug: stop loudly
                crash_loudly("referrer_agent", exc)

    # --- time and housekeeping ----------------------------------------------------------

    @app.timer(interval=float(conf.tick_interval_s), on_leader=True)
    async def send_ticks() -> None:
        value = tick_codec.encode({"now_s": now()})
        for partition in range(n):
            for ticks in (customer_ticks, referrer_ticks):
                await ticks.send(key=b"tick", value=value, partition=partition, force=True)

    @app.task
    async def follow_programs() -> None:
        await program_cache.run()

    @app.timer(interval=60.0)
    async def log_stats() -> None:
        log.info("worker_stats", extra=dict(stats))

    return app


def _reroute(codec: AvroCodec, hex_value: str, owner: Mapping[str, str]) -> Output:
    """The parked envelope, keyed by the customer that owns its payment intent."""
    envelope = codec.decode(bytes.fromhex(hex_value))
    envelope.update(partition_key=owner["owner"], key_source=owner["key_source"])
    return Output(REROUTED, owner["owner"], envelope)


def main(settings: Settings, args: Any) -> int:
    """`refstream worker`: run one worker process until SIGTERM/SIGINT."""
    from faust.worker import Worker as FaustWorker

    worker_data_dir(settings).mkdir(parents=True, exist_ok=True)
    asyncio.run(ensure_topics(settings.kafka))
    asyncio.run(ensure_topics(settings.kafka, internal_specs(settings)))
    metrics = WorkerMetrics()
    serve_worker(metrics, settings)  # not served when REFSTREAM_WORKER_METRICS_PORT is unset
    app = create_app(settings, metrics)
    FaustWorker(
        app,
        loglevel=settings.log_level.lower(),
        redirect_stdouts=False,
        override_logging=False,  # keep refstream's JSON log lines
    ).execute_from_commandline()
    return 0
