"""Bounded customer state: compaction, windowed dedup and the state format change nothing
that is emitted. Every test drives the worker's real CustomerCore (tests/support/
core_driver.py) and compares with a reference that keeps everything (no compaction, every
event id forever), as the state was before format 2."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream import topics
from refstream.topics import REWARDS
from simulator.stripe_factory import (
    API_VERSIONS,
    BASIL,
    DAY,
    PRE_BASIL,
    StripeFactory,
    subscription_story,
)
from streams.corrections import cold
from streams.corrections.errors import BeyondHorizon
from streams.corrections.payments import new_customer_state, register_reward
from streams.corrections.refs import RewardRef
from streams.ledger.config import DAY_S, LedgerConfig
from streams.ledger.programs import ProgramVersion, parse_program
from tests.support.core_driver import CoreDriver
from tests.support.long_story import long_story

PROGRAMS = {"std": ProgramVersion(parse_program({"id": "std", "rate": "20%", "hold_days": 30}), 1)}
CAPPED = {
    "std": ProgramVersion(
        parse_program({"id": "std", "rate": "20%", "hold_days": 30, "cap": {"usd": 15_000}}), 1
    )
}
# Everything kept: what the state held before format 2 (every id, every payment).
REFERENCE = LedgerConfig(dedup_window_s=10**9, settled_horizon_s=None)
# Short windows, so that compaction and forgotten ids happen within a test's story.
COMPACTING = LedgerConfig(dedup_window_s=3 * DAY_S, settled_horizon_s=3_650 * DAY_S)

Json = dict[str, Any]


def deliver(driver: CoreDriver, plan: list[tuple[int, Json]], *, close: bool = True) -> CoreDriver:
    """Deliver (time, event) in order on a clock that never goes back, then (`close`) let
    every window close."""
    clock = driver.clock
    for at, event in plan:
        clock = max(clock, at)
        driver.deliver(event, now=clock)
    if close:
        driver.tick_until(clock + 400 * DAY_S)
    return driver


def in_order(events: list[Json]) -> list[tuple[int, Json]]:
    return [(e["created"] + 5, e) for e in events]


def money(driver: CoreDriver) -> tuple[dict[str, tuple], list[Json]]:
    """Rewards by id (money fields of their latest revision) and every correction."""
    rewards: dict[str, tuple] = {}
    for r in driver.records(REWARDS):
        rewards[r["reward_id"]] = (
            r["reward_amount_minor"],
            r["payment_amount_minor"],
            r["currency"],
            r["program_id"],
            r["tenure_month"],
            r["line"],
            r["hold_until"],
        )
    corrections = sorted(driver.records("refstream.corrections"), key=lambda c: c["clawback_id"])
    return rewards, corrections


def run(plan: list[tuple[int, Json]], config: LedgerConfig, programs: Any = PROGRAMS) -> CoreDriver:
    return deliver(CoreDriver(programs, config), plan)


def story(months: int = 30, seed: int = 5) -> list[Json]:
    events: list[Json] = []
    for n, family in enumerate(API_VERSIONS):
        events += long_story(family, seed=seed + n, months=months, code="ACME")
    return sorted(events, key=lambda e: e["created"])


@pytest.mark.parametrize("programs", [PROGRAMS, CAPPED], ids=["uncapped", "capped"])
def test_compaction_emits_exactly_what_keeping_everything_emits(programs: Any) -> None:
    events = story()
    reference = money(run(in_order(events), REFERENCE, programs))
    compacted = run(in_order(events), COMPACTING, programs)
    assert money(compacted) == reference
    rewards, corrections = reference
    assert len(corrections) > 10  # the story has money to compare
    if programs is CAPPED:  # the cap was reached across compacted payments, exactly
        assert sum(r[0] for r in rewards.values()) == 2 * 15_000
    else:
        assert len(rewards) == 60
    # ...and the state really was compacted, refunds of compacted payments included.
    states = [json.loads(raw) for raw in compacted.states.values()]
    assert all(len(s["settled"]) > 20 and len(s["invoices"]) <= 2 for s in states)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_late_redeliveries_and_replays_change_nothing(data: st.DataObject) -> None:
    events = story(months=14, seed=data.draw(st.integers(0, 50)))
    plan = in_order(events)
    # Stripe retries within hours, a replay (Events API, backfill) days or months later,
    # and neighbours swapped (Stripe does not order events).
    for index in data.draw(st.lists(st.integers(0, len(events) - 1), max_size=20)):
        delay = data.draw(st.sampled_from([3_600, 2 * DAY, 10 * DAY, 40 * DAY, 200 * DAY]))
        plan.append((events[index]["created"] + delay, events[index]))
    plan.sort(key=lambda p: p[0])
    for index in data.draw(st.lists(st.integers(0, len(plan) - 2), max_size=10)):
        plan[index], plan[index + 1] = plan[index + 1], plan[index]
    # The same deliveries to a state that keeps everything (another order may give other
    # intermediate refund points, by design: compare like with like).
    assert money(run(plan, COMPACTING)) == money(run(plan, REFERENCE))


def test_a_replayed_old_invoice_after_compaction_rewards_nothing() -> None:
    events = story(months=6)
    driver = run(in_order(events), COMPACTING)
    before = money(driver)
    first_invoices = [e for e in events if e["type"] == "invoice.paid"][:4]
    for event in first_invoices:  # months later, with new ids (a re-sent copy)
        replay = {**copy.deepcopy(event), "id": event["id"] + "x"}
        driver.deliver(replay, now=driver.clock + DAY_S)
        driver.deliver(event, now=driver.clock + DAY_S)
    assert money(driver) == before
    for raw in driver.states.values():
        state = json.loads(raw)
        assert all(e["data"]["object"]["id"] not in state["invoices"] for e in first_invoices)


def test_event_ids_are_kept_only_within_the_window() -> None:
    driver = run(in_order(story(months=24)), COMPACTING)
    for raw in driver.states.values():
        ids = json.loads(raw)["recent_event_ids"]
        assert 0 < len(ids) <= 12 and max(ids.values()) - min(ids.values()) <= 3 * DAY_S


def test_ten_years_of_state_stay_under_16_kb() -> None:
    """Behaviour, not speed: the bytes one event reads and writes stop growing (the default
    windows; bench/state_bench.py prints the figures and the cost per event)."""
    events = long_story(BASIL, seed=9, months=120) + long_story(PRE_BASIL, seed=8, months=120)
    driver = run(in_order(sorted(events, key=lambda e: e["created"])), LedgerConfig())
    sizes = [s.state_bytes for s in driver.steps]
    assert max(sizes) <= 16_384
    late = [
        s.state_bytes
        for s in driver.steps
        if s.event_created and s.event_created > events[0]["created"] + 8 * 365 * DAY_S
    ]
    early = [
        s.state_bytes
        for s in driver.steps
        if s.event_created and s.event_created < events[0]["created"] + 3 * 365 * DAY_S
    ]
    assert max(late) <= max(early) * 1.2  # flat after the horizon fills


# --- past the horizon ---------------------------------------------------------------


SHORT_HORIZON = LedgerConfig(dedup_window_s=3 * DAY_S, settled_horizon_s=200 * DAY_S)


def test_a_replay_past_the_horizon_is_refused_with_a_reason() -> None:
    events = story(months=14)
    driver = run(in_order(events), SHORT_HORIZON)
    old = next(e for e in events if e["type"] == "invoice.paid")
    with pytest.raises(BeyondHorizon, match="settled horizon"):
        driver.deliver(old, now=driver.clock + DAY_S)


def test_a_refund_past_the_horizon_is_refused_not_missed() -> None:
    f = StripeFactory(api_version=PRE_BASIL, livemode=True, seed=3)
    events = long_story(PRE_BASIL, seed=3, months=14, retries=False)
    driver = run(in_order(events), SHORT_HORIZON)
    first = next(e for e in events if e["type"] == "charge.succeeded")["data"]["object"]
    refund = f.refund(first, amount=100, created=driver.clock)
    event = f.event("charge.refunded", f.refunded_charge(first, [refund]), created=driver.clock)
    with pytest.raises(BeyondHorizon, match="by hand"):
        driver.deliver(event, now=driver.clock + 10)


# --- format 1 states ----------------------------------------------------------------


def as_format_1(raw: bytes) -> bytes:
    """A state as the code before format 2 wrote it (every id in seen_event_ids; book of
    format 2 without cold storage)."""
    state = json.loads(raw)
    ids = state.pop("recent_event_ids")
    for key in ("settled", "used", "settled_before"):
        assert not state.pop(key)
    state.update(format=1, seen_event_ids=sorted(ids))
    book = state["extra"].get("corrections")
    if book is not None:
        assert not book.pop("cold") and book.pop("who") is None and not book.pop("dropped_before")
        book["format"] = 2
    return json.dumps(state, separators=(",", ":"), sort_keys=True).encode()


def test_a_format_1_state_is_read_upgraded_and_compacted() -> None:
    events = story(months=20)
    cut = len(events) // 2
    # Written without any compaction, as the code before format 2 did.
    old = deliver(CoreDriver(PROGRAMS, REFERENCE), in_order(events[:cut]), close=False)
    upgraded = CoreDriver(PROGRAMS, COMPACTING)
    upgraded.states = {key: as_format_1(raw) for key, raw in old.states.items()}
    upgraded.owners = dict(old.owners)
    upgraded.due = dict(old.due)
    upgraded.clock = old.clock
    upgraded.outputs = list(old.outputs)
    deliver(upgraded, in_order(events[cut:]))
    assert money(upgraded) == money(run(in_order(events), REFERENCE))
    for raw in upgraded.states.values():
        state = json.loads(raw)
        assert state["format"] == 2 and state["settled"]
        assert state["extra"]["corrections"]["format"] == 3


# --- the cold book --------------------------------------------------------------------


def reward(n: int, **fields: Any) -> RewardRef:
    base = dict(
        reward_id=f"live/std/in_{n}/invoice",
        referral_code="ACME",
        customer_key="cus_1",
        amount_minor=980 + n,
        currency="usd",
        livemode=True,
        charge_id=f"ch_{n}",
        payment_intent_id=f"pi_{n}",
        payment_amount_minor=4_900,
        paid_at=1_000 + n,
        hold_until=2_000 + n,
        invoice_id=f"in_{n}",
    )
    return RewardRef(**{**base, **fields})


@given(st.lists(st.integers(0, 40), min_size=1, max_size=12, unique=True), st.data())
def test_freezing_then_thawing_restores_the_book_exactly(
    ns: list[int], data: st.DataObject
) -> None:
    book = new_customer_state()
    for n in ns:
        one_time = data.draw(st.booleans())
        ref = reward(n, invoice_id=None) if one_time else reward(n)
        book, _ = register_reward(book, ref)
    before = copy.deepcopy(book)
    groups = {
        (
            f"in_{n}"
            if book["rewards"][f"live/std/in_{n}/invoice"]["ref"]["invoice_id"]
            else f"ch_{n}"
        )
        for n in ns
    }
    frozen = data.draw(st.sets(st.sampled_from(sorted(groups))))
    cold.freeze(book, frozen, ("cus_1", True, None))
    assert len(book["rewards"]) == len(ns) - len(frozen)
    for group in frozen:
        assert all(cold.is_cold_reward(book, r) for r in before["rewards"] if f"_{group[3:]}/" in r)
        cold.thaw_touched(book, [group])
    assert {k: v for k, v in book.items() if k not in ("cold", "who")} == {
        k: v for k, v in before.items() if k not in ("cold", "who")
    }
    assert book["cold"] == {}


def test_a_first_delivery_older_than_the_window_is_still_decided() -> None:
    """A forgotten id is not a duplicate: an old event delivered for the first time (a
    backfill, a replay of a missed event) still yields its lifecycle record."""
    f = StripeFactory(api_version=BASIL, livemode=True, seed=12)
    events = subscription_story(f, months=5, code="ACME", upgrade=(2, 9_900)).events
    upgrade = next(e for e in events if e["type"] == "customer.subscription.updated")
    rest = [e for e in events if e is not upgrade]
    driver = deliver(
        CoreDriver(PROGRAMS, COMPACTING), [*in_order(rest), (rest[-1]["created"] + 10, upgrade)]
    )
    changes = [r for r in driver.records(topics.LIFECYCLE) if r["change"] == "plan_changed"]
    assert [(r["previous_amount_minor"], r["amount_minor"]) for r in changes] == [(4_900, 9_900)]


@pytest.mark.parametrize(
    ("reward_id", "group"),
    [
        ("live/std/in_1/invoice", "in_1"),
        ("live/std/in_*/invoice", "in_*"),  # hostile ids survive the short form
        ("live/std/in_1/in_1", "in_1"),
        ("~odd*/x", "x"),
        ("=x", "y"),
    ],
)
def test_reward_ids_survive_their_short_form(reward_id: str, group: str) -> None:
    assert cold._long_id(cold._short_id(reward_id, group), group) == reward_id
