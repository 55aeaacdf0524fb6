"""The customer agent decides a batch's events in place (no copy of the state per event);
an event that fails half way is dead-lettered and its customer's state is made again from
the batch's start (the table) by replaying the batch's earlier changes of that customer.

What must hold: whatever the batch, the outputs sent and the states stored are exactly
those of the per-event path (the pure, copying core; a failed event leaves nothing), with
the failing events dead-lettered."""

from __future__ import annotations

import asyncio
import copy
import random
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream import topics
from refstream.avro_codec import AvroCodec
from refstream.metrics import WorkerMetrics
from streams.errors import DEAD_LETTER
from streams.ledger.config import LedgerConfig
from streams.ledger.programs import ProgramVersion, parse_program
from streams.worker import customers as customers_module
from streams.worker.cores import CustomerCore, Output, _dump, dump_customer, load_customer
from streams.worker.due import DueIndex
from streams.worker.emitter import Emitter, encode
from streams.worker.tables import PartitionTable
from streams.worker.topology import CUSTOMER_TICKS, LINKS
from tests.support.factories import API_VERSIONS, StripeFactory, subscription_story

STRIPE_EVENTS = topics.STRIPE_EVENTS

PROGRAMS = {"std": ProgramVersion(parse_program({"id": "std", "rate": "20%", "hold_days": 0}), 1)}
NOW = 1_900_000_000  # the worker's clock, the same for both paths
CODEC = AvroCodec.for_schema("stripe_event")
Json = dict[str, Any]


def customer_events(seed: int, version: str, code: str) -> list[Json]:
    """A subscriber's months, a partial refund, a failing refund, and a dispute."""
    f = StripeFactory(api_version=version, seed=seed)
    story = subscription_story(f, months=3, code=code, invoice_payment_events=True)
    events = list(story.events)
    charge = story.charges[1]
    at = charge["created"] + 86_400
    refund = f.refund(charge, amount=1_000, created=at)
    events.append(f.event("charge.refunded", f.refunded_charge(charge, [refund]), created=at))
    events.append(f.event("refund.created", refund, created=at))
    dispute = f.dispute(story.charges[2], created=at + 10)
    events.append(f.event("charge.dispute.created", dispute, created=at + 10))
    return events


def failing(events: list[Json], rng: random.Random) -> list[Json]:
    """Events that pass the ledger's first checks and fail later, after the decision has
    already changed the state (remembered the id, recorded a fact, moved the book)."""
    bad: list[Json] = []
    charged = [e for e in events if e["type"] == "charge.refunded"]
    for event in charged:  # a refund in another currency than its charge's
        other = copy.deepcopy(event)
        other["id"] = f"evt_badcur{rng.randrange(10**9)}"
        other["data"]["object"]["currency"] = "eur"
        other["data"]["object"]["amount_refunded"] += 7
        bad.append(other)
    for event in events:
        if event["type"] == "invoice.paid":  # a reward record no topic can carry
            other = copy.deepcopy(event)
            other["id"] = f"evt_badenc{rng.randrange(10**9)}"
            invoice = other["data"]["object"]
            invoice["id"] += "x\udc00"
            bad.append(other)
            break
    return bad


def record(event: Json, offset: int) -> ConsumerRecord:
    envelope = StripeFactory(seed=1).envelope(event)
    # The ingress refuses a surrogate in the fields it routes by; the body keeps it.
    envelope["object_id"] = envelope["object_id"].replace("\udc00", "")
    return ConsumerRecord(
        topic=STRIPE_EVENTS,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=envelope["partition_key"].encode(),
        value=CODEC.encode(envelope),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    async def send(
        self, topic: str, *, value: bytes, key: bytes | None, headers: Any = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _Programs:
    def current(self) -> dict[str, ProgramVersion]:
        return PROGRAMS


def per_event(records: list[ConsumerRecord]) -> tuple[list[tuple[str, bytes, bytes]], dict]:
    """The reference: the pure core on table bytes, one event at a time, each decision on a
    copy; an event that raises leaves nothing behind."""
    core = CustomerCore(LedgerConfig())
    states: dict[bytes, bytes] = {}
    sent: list[tuple[str, bytes, bytes]] = []
    for rec in records:
        try:
            routed = core.route(CODEC.decode(rec.value))
        except DEAD_LETTER:
            continue
        if routed is None:
            continue
        raw = states.get(routed.state_key)
        if core.needs_owner(routed, load_customer(raw)):
            link = {"event": rec.value}
            outputs = [Output(LINKS, routed.event.partition_key, link)]
        else:
            try:
                result = core.on_event(raw, routed, PROGRAMS, NOW, routed.event.body or {})
                encode(result.outputs)
            except DEAD_LETTER:
                continue
            outputs = result.outputs
            if result.state is not None:
                states[routed.state_key] = result.state
        sent += [(name, key, value) for name, key, value, _ in encode(outputs)]
    return sent, states


def batched(records: list[ConsumerRecord], batch_size: int) -> tuple[list, dict, int]:
    """The worker's customer agent over batches of `batch_size` records."""
    producer = _Producer()
    emitter = Emitter(producer, lambda name: name, WorkerMetrics())  # type: ignore[arg-type]
    agent = customers_module.CustomerAgent(
        CustomerCore(LedgerConfig()),
        _Programs(),
        emitter,
        WorkerMetrics(),
        None,
        Counter(),  # type: ignore[arg-type]
    )
    table, due = PartitionTable(), DueIndex(PartitionTable())

    async def run() -> None:
        for start in range(0, len(records), batch_size):
            for rec in records[start : start + batch_size]:
                await agent.handle(rec, rec.topic, table, due)  # topic: the unprefixed name
            agent.end_batch()
            await emitter.flush()

    asyncio.run(run())
    letters = [s for s in producer.sent if s[0] == topics.STRIPE_EVENTS_DLQ]
    sent = [s for s in producer.sent if s[0] != topics.STRIPE_EVENTS_DLQ]
    return sent, dict(table.data), len(letters)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(customers_module, "now_s", lambda: NOW)


STORIES = [
    customer_events(500 + n, version, code)
    for n, (version, code) in enumerate(
        [(API_VERSIONS[0], "ACME"), (API_VERSIONS[-1], "BETA"), (API_VERSIONS[0], None)]
    )
]


def mixed(data: st.DataObject) -> list[Json]:
    """Several customers' events interleaved, some delivered twice, with failing events at
    drawn places (after their customer's earlier events, so they hit a changed state)."""
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    stream: list[Json] = []
    for events in STORIES:
        own = list(events)
        for bad in failing(events, rng):
            own.insert(data.draw(st.integers(1, len(own))), bad)
        own += rng.sample(own, k=len(own) // 4)  # Stripe retries
        stream = [*stream, *own] if not stream else _interleave(stream, own, rng)
    return stream


def _interleave(a: list[Json], b: list[Json], rng: random.Random) -> list[Json]:
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if j >= len(b) or (i < len(a) and rng.random() < 0.5):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_batch_with_failing_events_gives_exactly_what_the_per_event_path_gives(
    data: st.DataObject,
) -> None:
    events = mixed(data)
    records = [record(e, n) for n, e in enumerate(events)]
    expected_sent, expected_states = per_event(records)
    batch_size = data.draw(st.sampled_from([1, 7, len(records)]))
    sent, states, letters = batched(records, batch_size)
    assert letters >= len(STORIES)  # the failing events were dead-lettered
    assert sent == expected_sent  # the same records, in the same order
    assert states == expected_states


def test_a_failing_event_changed_the_state_before_it_failed() -> None:
    """What the rebuild is for: an in-place decision that raises has already changed the
    state it was given (so the view's value must be made again, not kept)."""
    core = CustomerCore(LedgerConfig())
    events = STORIES[0]
    state = None
    for event in events:
        routed = core.route(StripeFactory(seed=1).envelope(event))
        assert routed is not None
        result = core.on_event_state(state, routed, PROGRAMS, NOW, event, in_place=True)
        state = result.state or state
    assert state is not None
    frozen = orjson.dumps(state.json_view(), option=orjson.OPT_SORT_KEYS)
    bad = failing(events, random.Random(1))[0]
    routed = core.route(StripeFactory(seed=1).envelope(bad))
    assert routed is not None
    with pytest.raises(DEAD_LETTER):
        core.on_event_state(state, routed, PROGRAMS, NOW, bad, in_place=True)
    assert orjson.dumps(state.json_view(), option=orjson.OPT_SORT_KEYS) != frozen


def test_the_table_bytes_of_a_state_are_those_of_its_json() -> None:
    """dump_customer serialises a view that shares the state's values: the same bytes as
    the state's to_json() copy."""
    core = CustomerCore(LedgerConfig())
    for events in STORIES:
        raw = None
        for event in events:
            routed = core.route(StripeFactory(seed=1).envelope(event))
            if routed is None:
                continue
            result = core.on_event(raw, routed, PROGRAMS, NOW, event)
            raw = result.state or raw
            state = load_customer(raw)
            assert state is not None
            assert dump_customer(state) == _dump(state.to_json())


def tick_record(offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic=CUSTOMER_TICKS,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"tick",
        value=AvroCodec.for_schema("tick").encode({"now_s": NOW}),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_failure_after_a_tick_in_the_batch_replays_the_tick_too(data: st.DataObject) -> None:
    """Ticks change states in the batch too (windows closed: organic, one-time charges):
    a failing event after a tick gives what the same batch without that event gives."""
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    events = STORIES[2] + STORIES[0]  # one without a code (organic at the tick)
    cut = data.draw(st.integers(1, len(events)))
    # The refunds in another currency (an organic customer's odd invoice is no failure).
    bad = [e for e in failing(events, rng) if e["id"].startswith("evt_badcur")]
    good = [record(e, n) for n, e in enumerate(events[:cut])]
    good.append(tick_record(len(good)))
    good += [record(e, len(good) + n) for n, e in enumerate(events[cut:])]
    delivered = len(good)  # a bad event before its charge is seen is no failure: after
    retries = rng.sample(events, k=8)  # Stripe retries after the failures
    good += [record(e, len(good) + n) for n, e in enumerate(retries)]
    with_bad = list(good)
    for n, event in enumerate(bad):
        at = data.draw(st.integers(delivered, len(with_bad)))
        with_bad.insert(at, record(event, 10_000 + n))
    expected_sent, expected_states, expected_letters = batched(good, len(good))
    sent, states, letters = batched(with_bad, len(with_bad))
    assert letters == expected_letters + len(bad)
    assert sent == expected_sent
    assert states == expected_states
    assert any(s[0] == topics.ATTRIBUTIONS for s in sent)  # the tick decided something
