"""The revenue reports, read from the revenue ledger, equal their reference over the views
of the base tables read with FINAL (tests/support/revenue_reference.py), on the real
embedded engine with merges stopped: Stripe events of both API families (pre-basil
`charge.invoice`, basil `invoice_payment.paid`), refunds with a failed one, partial and
lost disputes, won disputes, standalone charges, Connect accounts, both modes, two
currencies; attributions arriving late, and an earlier first touch after a later one;
records of every topic shuffled together, windows duplicated, crash-replayed with other
boundaries, and re-emitted in later windows; and data stored before the ledger existed."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream.avro_codec import AvroCodec
from simulator.stripe_factory import (
    BASIL,
    DAY,
    DEFAULT_START,
    PRE_BASIL,
    Json,
    StripeFactory,
    one_time_story,
    subscription_story,
)
from sinks import ledger, revenue_ledger
from sinks.attributions import SPEC as ATTRIBUTIONS
from sinks.base import ClickHouseSink, SourceRecord, Window
from sinks.clawbacks import SPEC as CLAWBACKS
from sinks.ledger_sink import table_sink
from sinks.reports import run_report
from sinks.rewards import SPEC as REWARDS
from sinks.rows import TableSpec
from sinks.stripe_events import SPEC as STRIPE_EVENTS
from tests.support import sink_checks as check
from tests.support import sink_scenario as scenario
from tests.support.revenue_reference import REVENUE_REPORTS, assert_exact, reference

Records = list[tuple[TableSpec, dict[str, Any]]]
DEFAULTS = [(name, {"limit": "10000"}) for name in REVENUE_REPORTS]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with check.migrated_client(check.sink_settings(tmp_path / "ch")) as client:
        client.command("SYSTEM STOP MERGES")  # every duplicate stays physically stored
        yield client


def _story(f: StripeFactory, *, start: int, months: int, currency: str, account: str | None,
           code: str | None) -> list[Json]:  # fmt: skip
    """A subscriber's invoices, each paid by a charge, with per invoice n: 1 half refunded,
    then the rest; 2 a refund that fails after it was counted; 3 a partial lost dispute;
    4 a won dispute; 5 a quarter refunded."""
    story = subscription_story(f, start=start, months=months, currency=currency, code=code,
                               invoice_payment_events=f.basil)  # fmt: skip
    events = list(story.events)
    for n, (inv, charge) in enumerate(zip(story.invoices, story.charges, strict=True)):
        paid_at = inv["status_transitions"]["paid_at"]
        amount = charge["amount_captured"]
        if n == 1:
            half = f.refund(charge, amount=amount // 2, created=paid_at + 5 * DAY)
            rest = f.refund(charge, amount=amount - amount // 2, created=paid_at + 20 * DAY)
            events += [
                f.event("charge.refunded", f.refunded_charge(charge, [half]),
                        created=paid_at + 5 * DAY),
                f.event("charge.refunded", f.refunded_charge(charge, [half, rest]),
                        created=paid_at + 20 * DAY),
            ]  # fmt: skip
        if n == 2:
            doomed = f.refund(charge, amount=amount // 4, created=paid_at + 3 * DAY)
            events.append(f.event("charge.refunded", f.refunded_charge(charge, [doomed]),
                                  created=paid_at + 3 * DAY))  # fmt: skip
            events += f.refund_failure_events(charge, [doomed], doomed, created=paid_at + 6 * DAY)
        if n in (3, 4):
            opened = f.dispute(charge, created=paid_at + 9 * DAY,
                               amount=amount // 3 if n == 3 else None)  # fmt: skip
            closed = {**copy.deepcopy(opened), "status": "lost" if n == 3 else "won"}
            events += [
                f.event("charge.dispute.created", opened, created=paid_at + 9 * DAY),
                f.event("charge.dispute.closed", closed, created=paid_at + 39 * DAY),
            ]
        if n == 5:
            quarter = f.refund(charge, amount=amount // 4, created=paid_at + 2 * DAY)
            events.append(f.event("charge.refunded", f.refunded_charge(charge, [quarter]),
                                  created=paid_at + 2 * DAY))  # fmt: skip
    if account is not None:
        events = [{**e, "account": account} for e in events]
    return events


def _attribution(customer_key: str, kind: str, code: str | None, at: int, live: bool,
                 account: str | None, n: int = 0) -> dict[str, Any]:  # fmt: skip
    return {
        "attribution_id": f"{kind}:{customer_key}:{n}", "kind": kind,
        "customer_key": customer_key, "customer_id": customer_key, "referral_code": code,
        "new_user_id": None, "new_user_organization_id": None, "source": "customer_metadata",
        "source_object_id": customer_key, "event_id": f"evt_attr_{customer_key}_{n}",
        "event_type": "customer.created", "attributed_at": at, "livemode": live,
        "account": account,
    }  # fmt: skip


def stream(seed: int, customers: int = 8, months: int = 6) -> Records:
    """Customers of both API families, modes, currencies and Connect accounts: referred
    (one by a first touch that arrives after a later one), organic, organic then referred,
    awaiting attribution; guest one-time buyers; a few rewards and clawbacks."""
    rng = random.Random(seed)
    out: Records = []
    for i in range(customers):
        family = (PRE_BASIL, BASIL)[i % 2]
        live = i % 3 != 0
        account = "acct_1" if i % 4 == 3 else None
        currency = "eur" if i % 5 == 2 else "usd"
        f = StripeFactory(api_version=family, livemode=live, seed=seed * 100 + i)
        start = DEFAULT_START + rng.randrange(0, 40) * DAY
        code = f"code_{i % 3}"
        events = _story(f, start=start, months=months, currency=currency, account=account,
                        code=None)  # fmt: skip
        customer = next(e["data"]["object"]["id"] for e in events
                        if e["type"] == "customer.created")  # fmt: skip
        # a one-time purchase: a guest (keyed by its payment intent) or the subscriber
        buyer = one_time_story(f, created=start + 50 * DAY, currency=currency,
                               customer_id=None if i % 2 else customer)  # fmt: skip
        guest_charge = buyer.charges[0]
        refund = f.refund(guest_charge, amount=guest_charge["amount"] // 5,
                          created=start + 60 * DAY)  # fmt: skip
        refunded = f.refunded_charge(guest_charge, [refund])
        events += [*buyer.events, f.event("charge.refunded", refunded, created=start + 60 * DAY)]
        out += [(STRIPE_EVENTS, f.envelope(e)) for e in events]
        kind = i % 5
        at = start - DAY
        if kind in (0, 1):  # referred; for 1 an earlier first touch by another code too
            out.append((ATTRIBUTIONS, _attribution(customer, "attribution", code, at, live,
                                                   account)))  # fmt: skip
            if kind == 1:
                earlier = _attribution(customer, "attribution", "code_9", at - 3 * DAY, live,
                                       account, 1)  # fmt: skip
                out.append((ATTRIBUTIONS, earlier))
        elif kind == 2:
            out.append((ATTRIBUTIONS, _attribution(customer, "organic", None, at, live, account)))
        elif kind == 3:  # organic, then referred: referred wins
            out.append((ATTRIBUTIONS, _attribution(customer, "organic", None, at, live, account)))
            out.append((ATTRIBUTIONS, _attribution(customer, "attribution", code, at + DAY,
                                                   live, account, 2)))  # fmt: skip
        if i % 2:  # the guest buyer is referred (keyed by its payment intent)
            pi = buyer.payment_intent_id
            assert pi is not None
            out.append((ATTRIBUTIONS, _attribution(pi, "attribution", code, at, live, account)))
        if kind in (0, 3):  # rewards and clawbacks: referrer_daily and rewards_by_month
            base = scenario.rewards()[0]
            claw = scenario.clawbacks()[0]
            for m in range(2):
                reward = dict(base, reward_id=f"rw_{seed}_{i}_{m}", referral_code=code,
                              customer_key=customer, currency=currency, livemode=live,
                              account=account, reward_amount_minor=500 + i,
                              paid_at=start + (m * 30 + 2) * DAY)  # fmt: skip
                out.append((REWARDS, reward))
                if m == 1:
                    out.append((CLAWBACKS, dict(
                        claw, clawback_id=f"cb_{seed}_{i}", kind="clawback", amount_minor=120,
                        reward_id=reward["reward_id"], referral_code=code, currency=currency,
                        livemode=live, account=account, occurred_at=reward["paid_at"] + DAY,
                    )))  # fmt: skip
    rng.shuffle(out)  # topics and objects in any order
    return out


@dataclass(frozen=True)
class _Record:  # a Kafka record as the sink reads it
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


def write(client: Client, records: Records, size: int, *, ledger_too: bool = True,
          avro: bool = False) -> None:  # fmt: skip
    """Write `records` in windows of `size` (offsets = list positions, one partition per
    topic), table by table like the sink; without the ledgers when a crash came between the
    tables' writes and the counts. `avro`: attributions windows as Avro containers."""
    sinks: dict[str, ClickHouseSink] = {}
    for start in range(0, len(records), size):
        by_table: dict[str, list[tuple[int, TableSpec, dict[str, Any]]]] = {}
        for offset, (spec, record) in enumerate(records[start : start + size], start):
            by_table.setdefault(spec.table, []).append((offset, spec, record))
        for table, items in by_table.items():
            spec = items[0][1]
            sink = sinks.setdefault(table, table_sink(spec, client))
            window = Window(spec.topic, 0, items[0][0], items[-1][0])
            if avro and sink.native:
                codec = AvroCodec.for_schema(spec.schema)
                raw = [_Record(o, None, codec.encode(scenario.complete(spec.schema, r)))
                       for o, _, r in items]  # fmt: skip
                written = (
                    sink.write_native(raw, window)
                    if ledger_too
                    else ClickHouseSink.write_native(sink, raw, window)
                )
                assert written
                continue
            for offset, _, record in items:
                row = spec.to_row(scenario.complete(spec.schema, record))
                sink.add(row, spec.topic, 0, SourceRecord(offset, None, b"", 0))
            if ledger_too:
                sink.flush(window)
            else:
                sink._write_table(sink._batches.pop((spec.topic, 0)), window)


def test_the_stream_has_every_case_the_ledger_must_get_right() -> None:
    records = stream(1)
    types = {r["type"] for spec, r in records if spec is STRIPE_EVENTS}
    assert {"invoice.paid", "invoice_payment.paid", "charge.succeeded", "charge.refunded",
            "charge.updated", "charge.dispute.closed"} <= types  # fmt: skip
    kinds = {r["kind"] for spec, r in records if spec is ATTRIBUTIONS}
    assert kinds == {"attribution", "organic"}
    assert {spec.table for spec, _ in records} == {"stripe_events", "attributions", "rewards",
                                                   "clawbacks"}  # fmt: skip


@pytest.mark.parametrize(("seed", "avro"), [(1, False), (2, True)])
def test_revenue_reports_stay_exact_under_retries_crashes_and_re_emission(
    client: Client, seed: int, avro: bool
) -> None:
    records = stream(seed)
    rng = random.Random(seed)
    cut = len(records) // 2

    # The first half: written and counted; then the same windows again (a retried batch).
    write(client, records[:cut], 21, avro=avro)
    assert_exact(client, DEFAULTS)
    write(client, records[:cut], 21, avro=avro)
    assert_exact(client, DEFAULTS)

    # A crash between the tables' writes and the ledger of the second half: the tables
    # have it, the ledger does not; the restarted sink reads it in other windows.
    write(client, records[cut:], 40, ledger_too=False, avro=avro)
    write(client, records[cut:], 13, avro=not avro)
    assert_exact(client, DEFAULTS)

    # A worker re-emits a random tenth of everything in later windows (new tokens).
    write(client, rng.sample(records, len(records) // 10), 9, avro=avro)
    assert_exact(client)

    # Nothing was merged away, and the reports have something to show.
    assert (
        check.counts(client, final=False)["stripe_events"] > check.counts(client)["stripe_events"]
    )
    split = run_report(client, "revenue_split", {}).rows
    assert all(any(row[i] for row in split) for i in (2, 3, 4))  # referred, organic, awaiting
    assert {row[3] for row in run_report(client, "customers", {"limit": "10000"}).rows} == {
        "referred", "organic", "unattributed"}  # fmt: skip


def test_an_existing_deployment_is_counted_once_at_start(client: Client) -> None:
    records = stream(3, customers=6)
    write(client, records, 25, ledger_too=False)  # stored before the revenue ledger existed
    assert run_report(client, "revenue_split", {}).rows == []
    assert reference(client, "revenue_split", {}) != []
    assert revenue_ledger.backfill(client)
    ledger.backfill(client)  # the sink's start counts the referrer ledger's records too
    assert_exact(client, DEFAULTS)
    assert not revenue_ledger.backfill(client)  # a second start does nothing
    client.command(f"ALTER TABLE revenue_keys DELETE WHERE key = '{revenue_ledger.BACKFILLED_KEY}'")
    assert revenue_ledger.backfill(client)  # nor does one cut short before its marker
    assert_exact(client, DEFAULTS)
    write(client, records, 11)  # nor does the stream read once more
    assert_exact(client)


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(seed=st.integers(0, 10_000), size=st.integers(1, 12), data=st.data())
def test_any_arrival_order_gives_the_reference(
    tmp_path_factory: pytest.TempPathFactory, seed: int, size: int, data: st.DataObject
) -> None:
    records = data.draw(st.permutations(stream(seed, customers=3, months=5)))
    folder = tmp_path_factory.mktemp("ch")
    with check.migrated_client(check.sink_settings(folder)) as client:
        client.command("SYSTEM STOP MERGES")
        write(client, records, size)
        assert_exact(client, DEFAULTS)
