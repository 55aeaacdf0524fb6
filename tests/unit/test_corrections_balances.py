"""Balances: folded from records only, and the invariant holds over random histories of
rewards, refunds, disputes, hold expiries, payouts, duplicates and late deliveries."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streams.corrections import balances, holds
from streams.corrections.errors import InvariantViolation
from streams.corrections.payments import (
    apply_dispute,
    apply_refund,
    new_customer_state,
    register_reward,
    reward_left_minor,
)
from streams.corrections.payouts import plan_payout
from streams.corrections.referrer_book import ReferrerBook, check_consistency
from streams.corrections.refs import RewardRef
from streams.corrections.stripe_facts import dispute_fact, refund_fact
from tests.unit.test_corrections_support import (
    DAY,
    T0,
    charge_refunded,
    dispute_event,
    refund_event,
)

# (customer, referral code, currency, livemode): one referrer with three balances, one other.
CUSTOMERS = [
    ("cus_a", "ANNA", "usd", True),
    ("cus_b", "ANNA", "eur", True),
    ("cus_c", "ANNA", "usd", False),
    ("cus_d", "BOB", "usd", True),
]
DISPUTE_STATUSES = ["needs_response", "under_review", "won", "lost", "warning_closed"]


def test_fold_matches_the_documented_rules_on_a_small_history() -> None:
    b = balances.new_balance("ANNA", "usd", True)
    reward = {"reward_id": "r", "referral_code": "ANNA", "currency": "usd", "livemode": True}
    b = balances.fold(b, "reward", {**reward, "reward_amount_minor": 1000, "status": "pending"})
    status = {**reward, "status_id": "s1", "reason": None, "payout_id": None}
    b = balances.fold(
        b,
        "reward_status",
        {**status, "status": "payable", "previous_status": "pending", "amount_minor": 1000},
    )
    b = balances.fold(
        b,
        "reward_status",
        {**status, "status": "paid", "previous_status": "payable", "amount_minor": 1000,
         "carryover_absorbed_minor": 0},
    )  # fmt: skip
    clawback = {**reward, "clawback_id": "c", "amount_minor": 300, "kind": "clawback"}
    b = balances.fold(
        b, "clawback", {**clawback, "mode": "negative_balance", "applied_to_status": "paid"}
    )
    assert (b["paid_minor"], b["carry_over_minor"], balances.earned_minor(b)) == (1000, 300, 700)
    assert balances.net_payable_minor(b) == -300


def test_a_record_that_would_break_the_invariant_fails_loudly() -> None:
    b = balances.new_balance("ANNA", "usd", True)
    bad = {
        "status_id": "s", "reward_id": "r", "referral_code": "ANNA", "currency": "usd",
        "livemode": True, "status": "payable", "previous_status": "pending", "amount_minor": 5,
    }  # fmt: skip
    with pytest.raises(InvariantViolation, match="pending_minor"):
        balances.fold(b, "reward_status", bad)  # moves money that is not there
    with pytest.raises(InvariantViolation, match="balance of"):
        balances.fold(b, "reward_status", {**bad, "currency": "eur"})


class World:
    """Both sides of the correction core, fed like the pipeline feeds them: rewards reach
    the referrer side at random times; corrections in the order the customer side emitted
    them (one producer, one partition), with redeliveries."""

    def __init__(self) -> None:
        self.clock = T0
        self.customers: dict[str, dict] = defaultdict(new_customer_state)
        self.book = ReferrerBook()
        self.payments: list[dict[str, Any]] = []
        self.sent: list[tuple[str, dict[str, Any]]] = []  # (customer, stripe event)
        self.reward_queue: list[RewardRef] = []
        self.correction_queue: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.registered: dict[str, RewardRef] = {}
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.counter = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"

    # customer side
    def pay(self, who: int, payment: int, rewards: list[int], hold_days: int) -> None:
        customer, code, currency, livemode = CUSTOMERS[who]
        n = len(self.payments)
        self.payments.append(
            {"customer": customer, "currency": currency, "n": n, "amount": payment, "refunded": 0}
        )
        for i, amount in enumerate(rewards):
            ref = RewardRef(
                reward_id=f"rw_{n}_{i}", referral_code=code, customer_key=customer,
                amount_minor=min(amount, payment * 2), currency=currency, livemode=livemode,
                charge_id=f"ch_{n}", payment_intent_id=f"pi_{n}", payment_amount_minor=payment,
                paid_at=self.clock, hold_until=self.clock + hold_days * DAY,
            )  # fmt: skip
            state, out = register_reward(self.customers[customer], ref)
            self.customers[customer] = state
            self.correction_queue.extend(out)
            self.reward_queue.append(ref)

    def stripe(self, customer: str, event: dict[str, Any]) -> None:
        self.sent.append((customer, event))
        fact = refund_fact(event)
        if fact is not None:
            state, out = apply_refund(self.customers[customer], fact)
        else:
            dispute = dispute_fact(event)
            assert dispute is not None
            state, out = apply_dispute(self.customers[customer], dispute)
        self.customers[customer] = state
        self.correction_queue.extend(out)

    def refund(self, which: int, share: float, by_id: bool) -> None:
        p = self.payments[which % len(self.payments)]
        target = max(p["refunded"], min(p["amount"], round(p["amount"] * share)))
        delta, p["refunded"] = target - p["refunded"], target
        if delta == 0:
            return
        if by_id:
            event = refund_event(self.next_id("evt"), self.next_id("re"), delta,
                                 charge=f"ch_{p['n']}", payment_intent=f"pi_{p['n']}",
                                 currency=p["currency"])  # fmt: skip
        else:
            event = charge_refunded(
                self.next_id("evt"), target, charge=f"ch_{p['n']}",
                payment_intent=f"pi_{p['n']}", amount_minor=p["amount"], currency=p["currency"],
            )  # fmt: skip
        self.stripe(p["customer"], event)

    def dispute(self, which: int, number: int, status: str) -> None:
        p = self.payments[which % len(self.payments)]
        kind = "charge.dispute.closed" if status in ("won", "lost", "warning_closed") else (
            "charge.dispute.created")  # fmt: skip
        event = dispute_event(self.next_id("evt"), kind, status, dispute=f"dp_{p['n']}_{number}",
                              charge=f"ch_{p['n']}", payment_intent=None)  # fmt: skip
        self.stripe(p["customer"], event)

    def redeliver(self, pick: int) -> None:
        customer, event = self.sent[pick % len(self.sent)]
        self.stripe(customer, event)

    # referrer side
    def run(self, code: str, step: Any) -> None:
        self.records.extend(step.records)
        check_consistency(self.book.referrers[code], self.book.rewards)
        self.check_balances()

    def deliver_reward(self, pick: int) -> None:
        ref = self.reward_queue.pop(pick % len(self.reward_queue))
        step = self.book.on_reward(ref, now=self.clock)
        if ref.reward_id not in self.registered:
            self.registered[ref.reward_id] = ref
            self.records.append(("reward", {
                "reward_id": ref.reward_id, "referral_code": ref.referral_code,
                "reward_amount_minor": ref.amount_minor, "currency": ref.currency,
                "livemode": ref.livemode, "status": ref.status,
            }))  # fmt: skip
        self.run(ref.referral_code, step)

    def deliver_correction(self, duplicate: int | None) -> None:
        if duplicate is not None:
            correction = self.delivered[duplicate % len(self.delivered)]
        else:
            correction = self.correction_queue.pop(0)
            self.delivered.append(correction)
        self.run(correction["referral_code"], self.book.on_correction(correction, now=self.clock))

    def drain(self) -> None:
        while self.reward_queue:
            self.deliver_reward(0)
        while self.correction_queue:
            self.deliver_correction(None)

    def tick(self, days: int) -> None:
        self.clock += days * DAY
        for code in ("ANNA", "BOB"):
            self.run(code, self.book.on_tick(code, now=self.clock))

    def payout(self, who: int, valid: bool, picks: list[int], amount: int) -> None:
        _, code, currency, livemode = CUSTOMERS[who]
        state = self.book.state(code)
        if valid:
            record = plan_payout(
                state, self.book.rewards, payout_id=self.next_id("po"),
                currency=currency, livemode=livemode, paid_at=self.clock,
            )  # fmt: skip
            if not record["reward_ids"]:
                return
        else:
            known = sorted(self.book.rewards) or ["rw_none"]
            record = {
                "payout_id": self.next_id("po"), "referral_code": code,
                "reward_ids": [known[p % len(known)] for p in picks], "amount_minor": amount,
                "currency": currency, "livemode": livemode, "paid_at": self.clock,
            }  # fmt: skip
        before = {k: dict(v) for k, v in state["balances"].items()}
        step = self.book.on_payout(record, now=self.clock)
        if valid:
            assert step.outcome == "accepted", step.records
        if step.outcome == "rejected":
            assert self.book.state(code)["balances"] == before
            assert {r["status"] for _, r in step.records} == {"payout_rejected"}
        self.run(code, step)

    # checks
    def check_balances(self) -> None:
        folded = balances.fold_records(self.records)
        for code, state in self.book.referrers.items():
            for balance in state["balances"].values():
                key = (code, balance["currency"], balance["livemode"])
                assert folded.get(key, balances.new_balance(*key)) == balance
        # Independently of the fold: per balance, rewards - clawbacks + reinstatements from
        # the records equals pending + payable + paid - carry-over of the book.
        earned: dict[tuple, int] = defaultdict(int)
        per_reward: dict[str, int] = defaultdict(int)
        for kind, r in self.records:
            key = (r["referral_code"], r["currency"], r["livemode"])
            if kind == "reward":
                earned[key] += r["reward_amount_minor"]
            elif kind == "clawback":
                sign = -1 if r["kind"] == "clawback" else 1
                earned[key] += sign * r["amount_minor"]
                per_reward[r["reward_id"]] -= sign * r["amount_minor"]
        for key, total in earned.items():
            b = self.book.balance(*key)
            assert (
                total
                == b["pending_minor"] + b["payable_minor"] + b["paid_minor"] - b["carry_over_minor"]
            )
        for reward_id, clawed in per_reward.items():
            assert 0 <= clawed <= self.registered[reward_id].amount_minor


OPS = st.one_of(
    st.tuples(st.just("pay"), st.integers(0, 3), st.integers(1, 50_000),
              st.lists(st.integers(0, 20_000), min_size=1, max_size=2), st.integers(0, 40)),
    st.tuples(st.just("refund"), st.integers(0, 99), st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0]),
              st.booleans()),
    st.tuples(st.just("dispute"), st.integers(0, 99), st.integers(0, 1),
              st.sampled_from(DISPUTE_STATUSES)),
    st.tuples(st.just("redeliver"), st.integers(0, 999)),
    st.tuples(st.just("reward"), st.integers(0, 99)),
    st.tuples(st.just("correction")),
    st.tuples(st.just("duplicate"), st.integers(0, 99)),
    st.tuples(st.just("tick"), st.integers(1, 20)),
    st.tuples(st.just("drain_and_pay"), st.integers(0, 3), st.integers(0, 45)),
    st.tuples(st.just("payout"), st.integers(0, 3), st.booleans(),
              st.lists(st.integers(0, 99), max_size=3), st.integers(0, 30_000)),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=20, max_size=80))
def test_balance_invariant_holds_over_random_histories(ops: list[tuple]) -> None:
    world = World()
    for op in ops:
        name = op[0]
        if name == "pay":
            world.pay(*op[1:])
        elif name == "refund" and world.payments:
            world.refund(*op[1:])
        elif name == "dispute" and world.payments:
            world.dispute(*op[1:])
        elif name == "redeliver" and world.sent:
            world.redeliver(op[1])
        elif name == "reward" and world.reward_queue:
            world.deliver_reward(op[1])
        elif name == "correction" and world.correction_queue:
            world.deliver_correction(None)
        elif name == "duplicate" and world.delivered:
            world.deliver_correction(op[1])
        elif name == "tick":
            world.tick(op[1])
        elif name == "payout":
            world.payout(*op[1:])
        elif name == "drain_and_pay":
            world.drain()
            world.tick(op[2])
            world.payout(op[1], True, [], 0)
    # Every reward and correction arrives, every hold ends.
    world.drain()
    world.tick(365)
    for state in world.book.referrers.values():
        assert state["parked"] == {} and state["holds"] == {}
    # Labels, so `--hypothesis-show-statistics` shows the histories reach every path.
    for kind, r in world.records:
        if kind == "clawback":
            event(f"{r['kind']} {r['reason']} {r['mode']}")
        elif kind == "reward_status":
            event(f"status {r['previous_status']} -> {r['status']}")
            absorbed = r.get("carryover_absorbed_minor") or 0
            if absorbed:
                event("paid, absorbing a " + ("debt" if absorbed > 0 else "credit"))
    # The referrer side ends where the customer side says each reward stands.
    for customer in world.customers.values():
        for reward_id, entry in customer["rewards"].items():
            book_entry = world.book.rewards[reward_id]
            assert holds.standing_minor(book_entry) == reward_left_minor(entry)
