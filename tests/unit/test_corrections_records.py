"""Output contracts: every record the correction core emits fits its Avro schema, ids are
unique, and replaying the same inputs gives the same records (or none, once applied)."""

from __future__ import annotations

from typing import Any

from refstream.avro_codec import AvroCodec
from streams.corrections import (
    ReferrerBook,
    apply_dispute,
    apply_refund,
    dispute_fact,
    new_customer_state,
    plan_payout,
    refund_fact,
    register_customer_reward,
)
from tests.unit.test_corrections_support import (
    DAY,
    T0,
    charge_refunded,
    dispute_event,
    refund_event,
    reward,
)

SCHEMA = {"clawback": "clawback", "reward_status": "reward_status"}
ID = {"clawback": "clawback_id", "reward_status": "status_id"}


def a_referred_customers_year() -> list[tuple[str, Any]]:
    """Inputs of both sides, in pipeline order: a year of rewards with a partial refund,
    a second partial refund, a full refund, a refund before its payment, a dispute won and
    one lost, a refund after payout, holds expiring and payouts (one rejected)."""
    months = [
        reward(f"rw_{m}", amount_minor=2000, charge=f"ch_{m}", payment_intent=f"pi_{m}",
               paid_at=T0 + m * 30 * DAY)
        for m in range(6)
    ]  # fmt: skip
    bonus = reward("rw_bonus", amount_minor=5000, charge="ch_0", payment_intent="pi_0")
    ev = [
        ("reward", months[0]),
        ("reward", bonus),
        ("stripe", charge_refunded("e1", 2500, charge="ch_0", payment_intent="pi_0")),
        ("stripe", refund_event("e2", "re_2", 2500, charge="ch_0", payment_intent="pi_0")),
        ("stripe", charge_refunded("e3", 5000, charge="ch_0", payment_intent="pi_0")),
        ("stripe", charge_refunded("e4", 10_000, charge="ch_2", payment_intent="pi_2")),
        ("reward", months[1]),
        ("reward", months[2]),  # its refund came first
        ("stripe", dispute_event("e5", "charge.dispute.created", "needs_response",
                                 dispute="dp_3", charge="ch_3", payment_intent="pi_3")),
        ("reward", months[3]),
        ("stripe", dispute_event("e6", "charge.dispute.closed", "won",
                                 dispute="dp_3", charge="ch_3", payment_intent="pi_3")),
        ("reward", months[4]),
        ("stripe", dispute_event("e7", "charge.dispute.created", "needs_response",
                                 dispute="dp_4", charge="ch_4", payment_intent="pi_4")),
        ("stripe", dispute_event("e8", "charge.dispute.closed", "lost",
                                 dispute="dp_4", charge="ch_4", payment_intent="pi_4")),
        ("tick", T0 + 200 * DAY),
        ("payout", "po_1"),
        ("payout_bad", "po_2"),
        ("reward", months[5]),
        ("stripe", charge_refunded("e9", 4000, charge="ch_1", payment_intent="pi_1")),
        ("tick", T0 + 400 * DAY),
        ("payout", "po_3"),
    ]  # fmt: skip
    return ev


def run(inputs: list[tuple[str, Any]], book: ReferrerBook | None = None) -> list[tuple[str, dict]]:
    customer, book = new_customer_state(), book or ReferrerBook()
    out: list[tuple[str, dict]] = []
    now = T0

    def forward(corrections: list[dict]) -> None:
        for c in corrections:
            out.extend(book.on_correction(c, now=now).records)

    for kind, item in inputs:
        if kind == "reward":
            customer, corrections = register_customer_reward(customer, item)
            out.extend(book.on_reward(item, now=now).records)
            forward(corrections)
        elif kind == "stripe":
            fact = refund_fact(item)
            if fact is not None:
                customer, corrections = apply_refund(customer, fact)
            else:
                customer, corrections = apply_dispute(customer, dispute_fact(item))
            forward(corrections)
        elif kind == "tick":
            now = item
            out.extend(book.on_tick("ANNA", now=now).records)
        elif kind in ("payout", "payout_bad"):
            record = plan_payout(book.state("ANNA"), book.rewards, payout_id=item,
                                 currency="usd", livemode=True, paid_at=now)  # fmt: skip
            if kind == "payout_bad":
                record["amount_minor"] += 1
            AvroCodec.for_schema("payout").encode(record)  # the planned payout fits its topic
            out.extend(book.on_payout(record, now=now).records)
    return out


def test_every_record_fits_its_schema_and_ids_are_unique() -> None:
    records = run(a_referred_customers_year())
    kinds = {kind for kind, _ in records}
    assert kinds == {"clawback", "reward_status"}
    for kind, record in records:
        codec = AvroCodec.for_schema(SCHEMA[kind])
        assert codec.decode(codec.encode(record)) == record
    ids = [(kind, record[ID[kind]]) for kind, record in records]
    assert len(ids) == len(set(ids))
    modes = {(r["reason"], r["kind"], r["mode"]) for k, r in records if k == "clawback"}
    assert ("refund", "clawback", "negative_balance") in modes  # the refund after payout
    assert ("dispute", "reinstatement", "cancel") in modes


def test_the_year_ends_with_the_exact_balance() -> None:
    book = ReferrerBook()
    run(a_referred_customers_year(), book)
    b = book.balance("ANNA", "usd", True)
    # Rewards 6 x 2000 + 5000 bonus = 17000. Clawed: ch_0 refunded 5000 of 10000 (half of
    # 2000 and of 5000 = 3500), ch_2 fully (2000), dispute lost on ch_4 (2000), ch_1
    # refunded 40% after payout (800). The won dispute nets to 0.
    assert b["rewards_minor"] == 17_000
    assert b["clawbacks_minor"] - b["reinstatements_minor"] == 3500 + 2000 + 2000 + 800
    earned = 17_000 - 8300
    # po_1 paid rw_0, rw_bonus, rw_1, rw_3 (standing 1000 + 2500 + 2000 + 2000); po_2 was
    # rejected; after the 800 clawback of paid rw_1, po_3 paid rw_5 (2000) minus 800.
    assert b["paid_minor"] == 7500 + 1200 == earned
    assert (b["pending_minor"], b["payable_minor"], b["carry_over_minor"]) == (0, 0, 0)


def test_replaying_the_same_inputs_gives_the_same_records_and_none_once_applied() -> None:
    inputs = a_referred_customers_year()
    first, second = run(inputs), run(inputs)
    assert first == second
    book = ReferrerBook()
    run(inputs, book)
    balance = dict(book.balance("ANNA", "usd", True))
    # The same inputs again into the same referrer state (a consumer restarted before it
    # committed): rewards and corrections have no second effect. The payouts, planned
    # afresh, now name other rewards under the same ids: rejected, the first ones stand.
    again = run(inputs, book)
    assert again, "the re-planned payouts must be reported"
    assert {(r["status"], r["rejection_code"]) for _, r in again} == {
        ("payout_rejected", "payout_id_reused")
    }
    assert book.balance("ANNA", "usd", True) == balance
