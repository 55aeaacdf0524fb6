"""The fast referrer reports equal the reference over the deduplicated base tables, on the
real embedded engine, with merges stopped, whether Python or ClickHouse decoded a window
(sinks/native_avro.py): under duplicated windows, windows re-read with
other boundaries after a crash between the table write and the ledger count, records
re-emitted in later windows, and data stored before the ledger existed (backfill)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from refstream.avro_codec import AvroCodec
from sinks import ledger
from sinks.base import ClickHouseSink, SourceRecord, Window
from sinks.clawbacks import SPEC as CLAWBACKS
from sinks.ledger_sink import table_sink
from sinks.native_avro import AvroContainer
from sinks.payouts import SPEC as PAYOUTS
from sinks.reports import run_report
from sinks.rewards import SPEC as REWARDS
from sinks.rows import TableSpec
from tests.support import sink_checks as check
from tests.support import sink_scenario as scenario
from tests.support.report_reference import LIMITS, assert_exact


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with check.migrated_client(check.sink_settings(tmp_path / "ch")) as client:
        client.command("SYSTEM STOP MERGES")  # every duplicate stays physically stored
        yield client


def stream(seed: int) -> list[tuple[TableSpec, dict[str, Any]]]:
    """Rewards (some revised: same id, higher revision), their clawbacks and reinstatements,
    and payouts, over several referrers, currencies, modes, accounts and months."""
    rng = random.Random(seed)
    base = scenario.rewards()[0]
    claw = scenario.clawbacks()[0]
    pay = scenario.payouts()[0]
    out: list[tuple[TableSpec, dict[str, Any]]] = []
    for i in range(240):
        paid_at = scenario.D1 + rng.randrange(0, 120) * 86_400
        reward = dict(
            base,
            reward_id=f"rw_{i}",
            referral_code=f"code_{rng.randrange(6)}",
            reward_amount_minor=rng.randrange(1, 5000),
            currency=rng.choice(["usd", "eur"]),
            livemode=rng.random() < 0.5,
            account=rng.choice([None, None, "acct_1"]),
            program_version=rng.choice([1, 2]),
            paid_at=paid_at,
        )
        out.append((REWARDS, reward))
        if rng.random() < 0.2:
            out.append((REWARDS, dict(reward, revision=1)))
        if rng.random() < 0.3:
            kind = rng.choice(["clawback", "reinstatement"])
            correction = {
                key: reward[key] for key in ("reward_id", "referral_code", "currency", "livemode")
            }
            out.append((CLAWBACKS, dict(
                claw, clawback_id=f"cb_{i}", kind=kind, account=reward["account"],
                amount_minor=rng.randrange(0, reward["reward_amount_minor"] + 1),
                occurred_at=paid_at + rng.randrange(0, 40) * 86_400, **correction,
            )))  # fmt: skip
        if rng.random() < 0.1:
            payout = dict(pay, payout_id=f"po_{i}", referral_code=reward["referral_code"],
                          amount_minor=rng.randrange(1, 900), paid_at=paid_at)  # fmt: skip
            out.append((PAYOUTS, payout))
    return out


@dataclass(frozen=True)
class _Record:  # a Kafka record as the sink reads it
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


def write(client: Client, records: list[tuple[TableSpec, dict[str, Any]]], first: int,
          size: int, *, ledger_too: bool = True, avro: bool = False) -> None:  # fmt: skip
    """Write the records of offsets first.. in windows of `size` (offset = list index; one
    partition per table), like the sink does; without the ledger count when a crash came
    between the table write and the count. With `avro`, reward windows go to ClickHouse as
    Avro containers (sinks/native_avro.py), counted by the ledger's view."""
    sinks: dict[str, ClickHouseSink] = {}
    for start in range(first, len(records), size):
        chunk = list(enumerate(records))[start : start + size]
        by_table: dict[str, list[tuple[int, TableSpec, dict[str, Any]]]] = {}
        for offset, (spec, record) in chunk:
            by_table.setdefault(spec.table, []).append((offset, spec, record))
        for table, items in by_table.items():
            spec = items[0][1]
            sink = sinks.setdefault(table, table_sink(spec, client))
            window = Window(spec.topic, 0, items[0][0], items[-1][0])
            if avro and sink.native:
                codec = AvroCodec.for_schema(spec.schema)
                raw = [_Record(o, None, codec.encode(scenario.complete(spec.schema, r)))
                       for o, _, r in items]  # fmt: skip
                if ledger_too:
                    assert sink.write_native(raw, window)
                else:  # the table's insert, not the ledger's
                    block = AvroContainer(codec).container([r.value for r in raw])
                    assert block is not None
                    ClickHouseSink._insert_native(sink, block, window)
                continue
            for offset, _, record in items:
                sink.add(spec.to_row(record), spec.topic, 0, SourceRecord(offset, None, b"", 0))
            if ledger_too:
                sink.flush(window)
            else:
                batch = sink._batches.pop((spec.topic, 0))
                sink._write_table(batch, window)


@pytest.mark.parametrize(("seed", "avro"), [(1, False), (2, False), (1, True), (2, True)])
def test_fast_reports_stay_exact_under_retries_crashes_and_re_emission(
    client: Client, seed: int, avro: bool
) -> None:
    """`avro`: reward windows as ClickHouse-decoded containers, and once the other way
    round (a window first written one way is read again and written the other way)."""
    records = stream(seed)
    rng = random.Random(seed)
    cut = len(records) // 2

    # The first half: written and counted; then the same windows again (a retried batch).
    write(client, records[:cut], 0, 25, avro=avro)
    assert_exact(client)
    write(client, records[:cut], 0, 25, avro=avro)
    assert_exact(client)

    # A crash between the table write and the ledger count of the second half: the tables
    # have it, the ledger does not; the restarted sink reads it in other windows.
    write(client, records, cut, 40, ledger_too=False, avro=avro)
    write(client, records, cut, 17, avro=not avro)
    assert_exact(client)

    # A worker re-emits a random tenth of everything in later windows (new tokens).
    again = rng.sample(records, len(records) // 10)
    write(client, again, 0, 9, avro=avro)
    assert_exact(client)

    # Nothing was merged away: the duplicates are physically there, the totals exact.
    stored = check.counts(client, final=False)["rewards"]
    assert stored > check.counts(client)["rewards"]
    total = client.query("SELECT sum(rewards) FROM referrer_ledger_daily").result_rows[0][0]
    assert total == check.counts(client)["rewards"]


def test_an_existing_deployment_is_counted_once_at_start(client: Client) -> None:
    records = stream(3)
    write(client, records, 0, 30, ledger_too=False)  # stored before the ledger existed
    assert run_report(client, "referrer_rewards", LIMITS).rows == []
    assert ledger.backfill(client)
    assert_exact(client)
    assert not ledger.backfill(client)  # a second start counts nothing again
    client.command(
        "DELETE FROM ledger_counted WHERE record_key = {key:String}",
        parameters={"key": ledger.BACKFILLED_KEY},
    )
    assert ledger.backfill(client)  # nor does a backfill cut short before its marker
    assert_exact(client)
    write(client, records, 0, 30)  # nor does the stream read once more
    assert_exact(client)


def test_any_day_range_sums_whole_months_and_the_days_at_its_ends(client: Client) -> None:
    write(client, stream(4), 0, 50)
    rng = random.Random(4)
    first = dt.datetime.fromtimestamp(scenario.D1, dt.UTC).date()
    ranges = [(first, first + dt.timedelta(days=160))]  # everything: whole months only
    for month in (3, 4, 5):  # a day short of a whole month, at either end
        start, end = dt.date(2026, month, 1), dt.date(2026, month + 1, 1) - dt.timedelta(days=1)
        ranges += [(start, end - dt.timedelta(days=1)), (start + dt.timedelta(days=1), end)]
    for _ in range(6):
        since = first + dt.timedelta(days=rng.randrange(0, 120))
        ranges.append((since, since + dt.timedelta(days=rng.randrange(0, 90))))
    for since, until in ranges:
        params = {**LIMITS, "since": since.isoformat(), "until": until.isoformat()}
        expected = client.query(
            "SELECT referral_code, currency, if(account = '', if(livemode, 'live', 'test'), "
            "concat(if(livemode, 'live', 'test'), '@', account)) AS mode, "
            "sum(rewards_minor) AS r, sum(clawbacks_minor) AS c, sum(net_minor) "
            "FROM referrer_daily WHERE day BETWEEN {since:Date} AND {until:Date} "
            "GROUP BY referral_code, currency, livemode, account HAVING r != 0 OR c != 0 "
            "ORDER BY referral_code, currency, mode",
            parameters={"since": since, "until": until},
        ).result_rows
        assert run_report(client, "referrer_rewards", params).rows == [list(r) for r in expected]
