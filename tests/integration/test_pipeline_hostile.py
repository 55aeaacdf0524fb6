"""Hostile but signed events interleaved with a normal simulated stream, through the whole
pipeline (ingress, two workers, the sink on embedded ClickHouse, the real broker).

What must hold: the normal stream's ledger is exact in ClickHouse and on the topics; every
poison the ingress accepts is in the worker's dead-letter topic with its reason (or is
harmless: it moves no money); every poison it cannot carry is refused with a JSON 4xx;
nothing stalls (the sink's lag returns to zero) and no process dies or restarts."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from refstream import topics
from refstream.settings import KafkaSettings, Secret, load_settings
from simulator.deliver import DeliveryLimits, deliver
from simulator.plan import DeliveryOptions, delivery_plan
from simulator.scenario import ScenarioConfig, generate
from sinks.consumer import ALL_SPECS, group_lag
from streams.ledger.programs import parse_programs_toml
from streams.worker_programs import apply_programs
from tests.integration.test_pipeline_e2e import (
    by_referrer,
    expected_referrers,
    kafka_totals,
    report,
)
from tests.support.factories import (
    BASIL,
    PRE_BASIL,
    Line,
    StripeFactory,
    event_bytes,
    signature_header,
)
from tests.support.pipeline import SECRET, Pipeline, free_port
from tests.support.processes import RefstreamProcess, read_topic, wait_until

pytestmark = pytest.mark.e2e
T0 = 1_746_057_600


def accepted_poison() -> tuple[list[dict[str, Any]], set[str]]:
    """Signed, valid UTF-8 and in range, so the ingress takes them; odd for the worker.
    Their customers carry no referral code and pay in SEK, so the normal ledger is apart.
    Returns the events and the ids the worker must dead-letter."""
    f = StripeFactory(BASIL, seed=900)
    old = StripeFactory(PRE_BASIL, seed=901)
    cus = f.customer(created=T0)
    inv = f.invoice(cus["id"], lines=[Line(4_900, T0, T0 + 30 * 86_400)], created=T0,
                    paid_at=T0 + 60, currency="sek", billing_reason="subscription_create",
                    subscription=f.new_id("sub"))  # fmt: skip
    ch = f.charge(amount=4_900, created=T0, customer=cus["id"], currency="sek",
                  payment_intent=f.new_id("pi"))  # fmt: skip
    poison: list[dict[str, Any]] = []
    dead: set[str] = set()

    def variant(base: dict, kind: str, *, dead_letter: bool = True, **fields: Any) -> None:
        obj = copy.deepcopy(base)
        obj.update(fields)
        poison.append(f.event(kind, obj, created=T0 + len(poison)))
        if dead_letter:
            dead.add(poison[-1]["id"])

    variant(inv, "invoice.paid", amount_paid="4900")  # a string amount
    variant(inv, "invoice.paid", currency="US Dollars")  # not an ISO code
    variant(inv, "invoice.paid", total=None, id=f.new_id("in"))  # a required field null
    variant(inv, "invoice.paid", lines={"data": "nope"}, id=f.new_id("in"))
    # A number where a code should be is no code: the customer stays unattributed.
    variant(inv, "invoice.paid", dead_letter=False, metadata={"cello_ucc": 7}, id=f.new_id("in"))
    variant(ch, "charge.succeeded", amount_captured=[1, 2], id=f.new_id("ch"))
    # A dispute of a payment never seen waits (parked) for its owner, like a dispute that
    # arrives before its charge; it is not an error.
    variant(f.dispute(ch, created=T0), "charge.dispute.created", dead_letter=False, amount=-5)
    variant(f.refund(ch, amount=100, created=T0), "refund.created", amount="100")
    variant(f.refund(ch, amount=100, created=T0), "refund.created", charge=None)
    # Odd but harmless: a deep (ingress-acceptable) metadata tree, an Infinity decimal price,
    # an unknown API version, an invoice with a 10,000-element list.
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["k"] = {}
        node = node["k"]
    variant(cus, "customer.updated", dead_letter=False, metadata={"note": json.dumps(deep)[:400]})
    sub = old.subscription(cus["id"], created=T0, unit_amount=4_900, currency="sek",
                           metadata={}, period_start=T0)  # fmt: skip
    sub["items"]["data"][0]["price"]["unit_amount"] = None
    sub["items"]["data"][0]["price"]["unit_amount_decimal"] = "Infinity"
    poison.append(old.event("customer.subscription.updated", sub, created=T0 + 100))
    odd_version = f.event("invoice.paid", {**inv, "id": f.new_id("in")}, created=T0 + 101)
    odd_version["api_version"] = "2099-01-01.zebra"
    poison.append(odd_version)
    many = copy.deepcopy(inv)
    many.update(id=f.new_id("in"), discounts=["di_" + "x" * 8] * 10_000)  # a 10k-element list
    poison.append(f.event("invoice.paid", many, created=T0 + 102))
    return poison, dead


def refused_bodies() -> list[tuple[bytes, str]]:
    """Signed bodies the ingress must refuse (no stage could carry them), with the word
    its JSON reason must contain."""
    f = StripeFactory(BASIL, seed=902)
    cus = f.customer(created=T0)
    base = event_bytes(f.event("customer.created", cus, created=T0))
    surrogate = base.replace(cus["id"].encode(), b"cus_\\udc00", 1)
    huge = json.dumps({**json.loads(base), "created": 10**20}).encode()
    nan = base.replace(b'"created": %d' % T0, b'"created": NaN', 1)
    nested = base[:-1] + b', "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    lines = [{"id": f"il_{n}", "object": "line_item", "amount": 1} for n in range(10_000)]
    too_big = json.dumps({**json.loads(base), "lines": lines}).encode()  # over the body limit
    return [(surrogate, "surrogate"), (huge, "range"), (nan, ""), (nested, ""), (too_big, "large")]


async def test_poison_is_isolated_and_the_normal_ledger_stays_exact(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kafka = kafka_settings
    scenario = generate(ScenarioConfig(customers=12, months=4, seed=17))
    expected = scenario.expected_document()
    want = expected_referrers(expected)
    await apply_programs(kafka, parse_programs_toml(scenario.program.toml()))
    query_port = free_port()
    pipeline = Pipeline(kafka, tmp_path, {
        "REFSTREAM_ATTRIBUTION_WINDOW_S": "30", "REFSTREAM_ONE_TIME_WINDOW_S": "20",
        "REFSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'clickhouse'}",
        "REFSTREAM_QUERY_API_PORT": str(query_port),
        "REFSTREAM_SINK_BATCH_MAX_WAIT_MS": "300",
    })  # fmt: skip
    sink = RefstreamProcess(["sink"], pipeline.env, tmp_path / "sink.log")
    poison, must_dead_letter = accepted_poison()
    plan = delivery_plan(
        [*scenario.events, *poison], DeliveryOptions(seed=4, duplicates=0.5, shuffle_window=40)
    )
    url = f"http://127.0.0.1:{pipeline.port}/webhooks/stripe"
    try:
        await pipeline.start()
        sink.start()
        done = await deliver(
            plan, url=url, secret=Secret(SECRET), limits=DeliveryLimits(concurrency=8)
        )
        assert done.ok, done.to_json()
        async with aiohttp.ClientSession() as session:
            for body, word in refused_bodies():
                headers = {"Stripe-Signature": signature_header(body, SECRET, int(time.time())),
                           "Content-Type": "application/json"}  # fmt: skip
                async with session.post(url, data=body, headers=headers) as response:
                    assert 400 <= response.status < 500, (response.status, body[:80])
                    reason = await response.json()
                    assert word in json.dumps(reason).lower()

        async def exact() -> bool:
            rows = await report(query_port, "referrer_rewards")
            return rows is not None and by_referrer(rows) == want

        try:
            await wait_until(exact, 240, 3, "the normal stream's ledger in ClickHouse")
        except TimeoutError:
            pytest.fail(pipeline.logs() + sink.log_tail(3000))
        assert await kafka_totals(kafka) == {k: v[:2] for k, v in want.items()}
        dead: list[Any] = []

        async def all_dead_lettered() -> bool:
            dead[:] = await read_topic(
                kafka.bootstrap, kafka.topic(topics.STRIPE_EVENTS_DLQ), "dead_letter"
            )
            return {r["event_id"] for _, r in dead} >= must_dead_letter

        await wait_until(all_dead_lettered, 120, 2, "the poison in the dead-letter topic")
        dead_ids = {r["event_id"] for _, r in dead}
        # Exactly the poison, nothing of the normal stream.
        assert dead_ids == must_dead_letter, [(r["event_id"], r["error"]) for _, r in dead]
        assert all(r["error"] and r["error_type"] for _, r in dead)
        settings = load_settings(pipeline.env)
        sink_topics = [kafka.topic(spec.topic) for spec in ALL_SPECS]

        async def drained() -> bool:
            return await group_lag(kafka, settings.sink.group_id, sink_topics) == 0

        await wait_until(drained, 120, 2, "the sink's lag to return to zero")
        # No process died on the way (a crash loop would show as a dead child here).
        assert all(p.alive() for p in pipeline.processes), pipeline.logs()
        assert sink.alive(), sink.log_tail(3000)
    finally:
        sink.stop()
        pipeline.stop()
