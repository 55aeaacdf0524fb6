"""`balances` and `rewards_by_program` (the balance ledger, sinks/balance_ledger.py) equal
the reference over the deduplicated base tables (tests/support/balance_reference.py), on the
real embedded engine with merges stopped, whether Python or ClickHouse decoded a window:
with records of the rewards, status and clawbacks topics in any order relative to each
other, duplicated windows, a crash between the table write and the count, records
re-emitted in later windows, and data stored before the balance ledger existed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks import balance_ledger, ledger
from sinks.clawbacks import SPEC as CLAWBACKS
from sinks.payouts import SPEC as PAYOUTS
from sinks.reports import run_report
from sinks.reward_status import SPEC as STATUSES
from sinks.rewards import SPEC as REWARDS
from sinks.rows import TableSpec
from tests.integration.test_reports_exact import write
from tests.support import sink_checks as check
from tests.support import sink_scenario as scenario
from tests.support.balance_reference import LIMITS, assert_exact

Stream = list[tuple[TableSpec, dict[str, Any]]]
DAY = 86_400


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with check.migrated_client(check.sink_settings(tmp_path / "ch")) as client:
        client.command("SYSTEM STOP MERGES")  # every duplicate stays physically stored
        yield client


def _status(reward: dict[str, Any], status: str, at: int, n: int) -> dict[str, Any]:
    return {
        "status_id": f"{reward['reward_id']}:{status}:{n}", "reward_id": reward["reward_id"],
        "referral_code": reward["referral_code"], "status": status, "previous_status": None,
        "amount_minor": reward["reward_amount_minor"], "currency": reward["currency"],
        "livemode": reward["livemode"], "payout_id": None, "reason": None,
        "effective_at": at, "rejection_code": None, "carryover_absorbed_minor": 0,
        "account": reward["account"],
    }  # fmt: skip


def _transitions(rng: random.Random, reward: dict[str, Any]) -> list[dict[str, Any]]:
    """A walk pending -> payable -> paid (sometimes clawed_back, back to pending after a
    reinstatement, a rejected payout), with ties of effective_at now and then."""
    at = reward["paid_at"]
    out = []
    for n, status in enumerate(rng.choice([
        [], ["payable"], ["payable", "paid"], ["payout_rejected"], ["payable", "payout_rejected"],
        ["payable", "paid", "clawed_back"], ["clawed_back"], ["payable", "pending", "payable"],
        ["payable", "paid", "payout_rejected"],
    ])):  # fmt: skip
        at += rng.choice([0, 0, DAY, 7 * DAY])  # 0: the same effective_at as the last one
        out.append(_status(reward, status, at, n))
    return out


def stream(seed: int, rewards: int = 100) -> Stream:
    """Rewards (some revised), their transitions and corrections (cancel and
    negative_balance clawbacks, reinstatements), some for rewards that never arrive,
    payouts, over referrers, currencies, modes, accounts, programs and months, shuffled
    across the topics."""
    rng = random.Random(seed)
    base = scenario.rewards()[0]
    claw = scenario.clawbacks()[0]
    pay = scenario.payouts()[0]
    out: Stream = []
    for i in range(rewards):
        paid_at = scenario.D1 + rng.randrange(0, 100) * DAY + rng.randrange(DAY)
        reward = dict(
            base, reward_id=f"rw_{i}", referral_code=f"code_{rng.randrange(5)}",
            reward_amount_minor=rng.randrange(1, 5000), currency=rng.choice(["usd", "eur"]),
            livemode=rng.random() < 0.5, account=rng.choice([None, None, "acct_1"]),
            program_id=rng.choice(["default", "boost"]), program_version=rng.choice([1, 2]),
            status=rng.choice(["pending", "payable"]), paid_at=paid_at,
        )  # fmt: skip
        arrives = rng.random() < 0.93  # the others: statuses and clawbacks only
        if arrives:
            out.append((REWARDS, reward))
            if rng.random() < 0.2:
                out.append((REWARDS, dict(reward, revision=1, charge_id=f"ch_{i}")))
        out += [(STATUSES, status) for status in _transitions(rng, reward)]
        for n in range(rng.choice([0, 0, 1, 1, 2, 3])):
            keys = ("reward_id", "referral_code", "currency", "livemode", "account")
            correction = {key: reward[key] for key in keys}
            out.append((CLAWBACKS, dict(
                claw, clawback_id=f"cb_{i}_{n}", **correction,
                kind=rng.choice(["clawback", "clawback", "reinstatement"]),
                mode=rng.choice(["cancel", "negative_balance"]),
                amount_minor=rng.randrange(0, reward["reward_amount_minor"] + 1),
                occurred_at=paid_at + rng.randrange(0, 40) * DAY,
            )))  # fmt: skip
        if rng.random() < 0.1:
            out.append((PAYOUTS, dict(pay, payout_id=f"po_{i}", paid_at=paid_at,
                                      referral_code=reward["referral_code"])))  # fmt: skip
    rng.shuffle(out)
    return out


def _stored_totals(client: Client) -> list[int]:
    """Rows physically stored in the balance ledger's tables (merges are stopped)."""
    tables = ("balance_totals", "program_totals_daily", "program_totals_monthly")
    return [client.query(f"SELECT count() FROM {t}").result_rows[0][0] for t in tables]  # noqa: S608


@pytest.mark.parametrize(("seed", "avro"), [(1, False), (2, True)])
def test_balances_and_programs_stay_exact(client: Client, seed: int, avro: bool) -> None:
    records = stream(seed)
    rng = random.Random(seed)
    cut = len(records) // 2

    # The first half, then the same windows again (a retried batch).
    write(client, records[:cut], 0, 41, avro=avro)
    assert_exact(client)
    stored = _stored_totals(client)
    write(client, records[:cut], 0, 41, avro=avro)
    assert_exact(client)
    assert _stored_totals(client) == stored  # the retry wrote no line at all

    # A crash between the table write and the count of the second half; the restarted
    # sink reads it in other windows, decoded the other way.
    write(client, records, cut, 70, ledger_too=False, avro=avro)
    write(client, records, cut, 29, avro=not avro)
    assert_exact(client)

    # A worker re-emits a random tenth of everything, in later windows and another order.
    again = rng.sample(records, len(records) // 10)
    write(client, again, 0, 13, avro=avro)
    assert_exact(client)

    # Nothing was merged away, and the report rows are not all zero.
    assert check.counts(client, final=False)["rewards"] > check.counts(client)["rewards"]
    rows = run_report(client, "balances", LIMITS).rows
    assert rows and all(any(row[3:]) for row in rows[:3])
    assert any(row[4] for row in rows) and any(row[6] for row in rows)  # pending, paid


@pytest.mark.parametrize("avro", [False, True])
def test_every_status_and_clawback_before_its_reward(client: Client, avro: bool) -> None:
    """The other topics are written first, the rewards last: they wait in the states (the
    reward windows decoded by ClickHouse are computed in SQL, the others in Python)."""
    records = stream(5)
    first = [item for item in records if item[0] is not REWARDS]
    rewards = [item for item in records if item[0] is REWARDS]
    write(client, first + rewards, 0, 60, avro=avro)
    assert_exact(client)
    write(client, rewards, 0, 35, avro=not avro)  # read again, decoded the other way
    assert_exact(client)


def test_a_window_written_one_record_at_a_time_equals_one_window(client: Client) -> None:
    records = stream(6, rewards=8)
    write(client, records, 0, 1)
    assert_exact(client)
    write(client, records, 0, len(records), avro=True)  # everything again, in one window
    assert_exact(client)


def test_an_existing_deployment_is_counted_once_at_start(client: Client) -> None:
    records = stream(7)
    write(client, records, 0, 60, ledger_too=False)  # stored before the ledgers existed
    assert run_report(client, "balances", LIMITS).rows == []
    assert ledger.backfill(client)
    assert balance_ledger.backfill(client)
    assert_exact(client)
    assert not balance_ledger.backfill(client)  # a second start counts nothing again
    client.command("DELETE FROM ledger_counted WHERE record_key = 'backfill:0007'")
    assert balance_ledger.backfill(client)  # nor does a backfill cut short before its marker
    assert_exact(client)
    write(client, records, 0, 60)  # nor does the stream read once more
    assert_exact(client)
