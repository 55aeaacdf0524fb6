"""The rules of docs/STRIPE_FLOWS.md on the pure cores, one flow at a time, on payloads
shaped the way Stripe renders them. Expected amounts come from plain integer formulas."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.corrections.payments import (
    apply_dispute,
    apply_refund,
    link_payment,
    new_customer_state,
    register_reward,
)
from streams.corrections.refs import RewardRef
from streams.corrections.stripe_facts import dispute_fact, link_facts, refund_fact
from streams.ledger.ledger_state import state_key
from streams.ledger.rewards import reward_id
from streams.ledger.stripe_payloads import read_invoice

T0 = 1_767_225_600
DAY = 86_400
BASIL = "2025-03-31.basil"
PRE_BASIL = "2024-06-20"


def half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def event(
    type_: str, obj: dict[str, Any], *, at: int = T0, version: str = BASIL, **extra: Any
) -> dict:
    body = {
        "id": f"evt_{type_}_{at}_{obj.get('id')}_{obj.get('status')}",
        "object": "event",
        "type": type_,
        "created": at,
        "api_version": version,
        "livemode": False,
        "data": {"object": obj},
    }
    if "previous" in extra:
        body["data"]["previous_attributes"] = extra["previous"]
    return body


def reward(reward_id_: str = "rw_1", amount: int = 980, paid: int = 4_900, **ids: Any) -> RewardRef:
    return RewardRef(
        reward_id=reward_id_,
        referral_code="ACME",
        customer_key="cus_1",
        amount_minor=amount,
        currency="usd",
        livemode=False,
        charge_id=ids.get("charge"),
        payment_intent_id=ids.get("pi"),
        payment_amount_minor=paid,
        paid_at=T0,
        hold_until=T0 + 30 * DAY,
        invoice_id=ids.get("invoice", "in_1"),
    )


def charge(cid: str = "ch_1", pi: str | None = "pi_1", amount: int = 4_900, **fields: Any) -> dict:
    return {
        "id": cid,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "captured": True,
        "currency": "usd",
        "customer": "cus_1",
        "payment_intent": pi,
        "status": "succeeded",
        "refunded": False,
        **fields,
    }


def refund(
    rid: str,
    amount: int,
    status: str = "succeeded",
    *,
    cid: str = "ch_1",
    pi: str | None = "pi_1",
    created: int = T0,
) -> dict:
    return {
        "id": rid,
        "object": "refund",
        "amount": amount,
        "charge": cid,
        "created": created,
        "currency": "usd",
        "payment_intent": pi,
        "status": status,
    }


def dispute(
    did: str, status: str, amount: int = 4_900, *, cid: str = "ch_1", pi: Any = "pi_1"
) -> dict:
    return {
        "id": did,
        "object": "dispute",
        "amount": amount,
        "charge": cid,
        "currency": "usd",
        "payment_intent": pi,
        "status": status,
        "reason": "fraudulent",
    }


def invoice_payment(
    ipid: str, invoice: str, amount: int, *, pi: str | None = None, cid: str | None = None
) -> dict:
    payment = (
        {"type": "payment_intent", "payment_intent": pi}
        if pi
        else {"type": "charge", "charge": cid}
    )
    return {
        "id": ipid,
        "object": "invoice_payment",
        "invoice": invoice,
        "amount_paid": amount,
        "amount_requested": amount,
        "currency": "usd",
        "is_default": True,
        "livemode": False,
        "payment": payment,
        "status": "paid",
        "created": T0,
    }


def feed(state: dict, events: list[dict]) -> tuple[dict, list[dict]]:
    out: list[dict] = []
    for e in events:
        for link in link_facts(e):
            state, found = link_payment(state, link)
            out += found
        if (fact := refund_fact(e)) is not None:
            state, found = apply_refund(state, fact)
            out += found
        if (d := dispute_fact(e)) is not None:
            state, found = apply_dispute(state, d)
            out += found
    return state, out


def net(out: list[dict], reward_id_: str = "rw_1") -> int:
    return sum(
        (1 if c["kind"] == "clawback" else -1) * c["amount_minor"]
        for c in out
        if c["reward_id"] == reward_id_
    )


# --- links ------------------------------------------------------------------------------


def test_a_basil_invoice_is_corrected_once_invoice_payment_links_it_in_any_order() -> None:
    ip = event("invoice_payment.paid", invoice_payment("inpay_1", "in_1", 4_900, pi="pi_1"))
    refunded = event("charge.refunded", charge(amount_refunded=1_000))
    for order in ([ip, refunded], [refunded, ip]):
        state, _ = register_reward(new_customer_state(), reward())  # no charge, no pi
        state, out = feed(state, order)
        assert net(out) == half_up(980 * 1_000, 4_900)


def test_without_a_link_nothing_is_guessed() -> None:
    state, _ = register_reward(new_customer_state(), reward())
    state, out = feed(state, [event("charge.refunded", charge(amount_refunded=4_900))])
    assert out == []


def test_two_payments_of_one_invoice_each_claw_only_their_share() -> None:
    state, _ = register_reward(new_customer_state(), reward(amount=333))
    state, out = feed(
        state,
        [
            event("invoice_payment.paid", invoice_payment("inpay_a", "in_1", 2_000, pi="pi_a")),
            event("invoice_payment.paid", invoice_payment("inpay_b", "in_1", 2_900, pi="pi_b")),
            event("charge.refunded", charge("ch_b", "pi_b", 2_900, amount_refunded=2_900)),
        ],
    )
    assert net(out) == half_up(333 * 2_900, 4_900)  # 197.08 -> 197
    state, rest = feed(
        state, [event("charge.refunded", charge("ch_a", "pi_a", 2_000, amount_refunded=2_000))]
    )
    assert net(out + rest) == 333  # both refunded: exactly the reward, no rounding drift


def test_one_payment_for_two_invoices_splits_its_refund_by_share() -> None:
    state, _ = register_reward(new_customer_state(), reward("rw_1", 400, 2_000, invoice="in_1"))
    state, _ = register_reward(state, reward("rw_2", 600, 3_000, invoice="in_2"))
    links = [
        event("invoice_payment.paid", invoice_payment("inpay_1", "in_1", 2_000, pi="pi_1")),
        event("invoice_payment.paid", invoice_payment("inpay_2", "in_2", 3_000, pi="pi_1")),
    ]
    state, out = feed(
        state, [*links, event("charge.refunded", charge(amount=5_000, amount_refunded=2_500))]
    )
    assert (net(out, "rw_1"), net(out, "rw_2")) == (200, 300)  # half of the payment each


# --- disputes ---------------------------------------------------------------------------


def test_inquiries_never_claw_back_and_a_lost_partial_dispute_keeps_its_share() -> None:
    state, _ = register_reward(new_customer_state(), reward(pi="pi_1", charge="ch_1"))
    state, out = feed(state, [event("charge.succeeded", charge())])
    for status in ("warning_needs_response", "warning_under_review", "warning_closed"):
        state, more = feed(state, [event("charge.dispute.updated", dispute("dp_i", status))])
        out += more
    assert out == []
    state, out = feed(
        state, [event("charge.dispute.created", dispute("dp_1", "needs_response", 1_225))]
    )
    assert net(out) == half_up(980 * 1_225, 4_900)
    state, lost = feed(state, [event("charge.dispute.closed", dispute("dp_1", "lost", 1_225))])
    assert lost == []


def test_a_dispute_of_a_charge_without_payment_intent_is_found_by_its_charge() -> None:
    state, _ = register_reward(new_customer_state(), reward(charge="ch_9", pi=None))
    d = dispute("dp_9", "needs_response", cid="ch_9", pi=None)
    state, out = feed(state, [event("charge.dispute.created", d)])
    assert net(out) == 980


# --- refund lifecycle -------------------------------------------------------------------


def refund_then_fail() -> list[dict]:
    pending = refund("re_1", 4_900, "pending")
    return [
        event("refund.created", pending, at=T0),
        event("charge.refunded", charge(amount_refunded=4_900, refunded=True), at=T0),
        event("refund.failed", {**pending, "status": "failed"}, at=T0 + 60),
        event("charge.updated", charge(), at=T0 + 60, previous={"amount_refunded": 4_900}),
    ]


def test_a_refund_failing_after_it_was_counted_is_given_back_with_a_new_record() -> None:
    state, _ = register_reward(new_customer_state(), reward(pi="pi_1", charge="ch_1"))
    state, out = feed(state, refund_then_fail())
    assert [(c["kind"], c["reason"], c["amount_minor"]) for c in out] == [
        ("clawback", "refund", 980),
        ("reinstatement", "refund", 980),
    ]
    assert len({c["clawback_id"] for c in out}) == 2


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(4)), st.lists(st.integers(0, 3), max_size=3), st.booleans())
def test_failed_refunds_net_to_nothing_in_any_order_with_duplicates(
    order: list[int], dupes: list[int], canceled: bool
) -> None:
    events = refund_then_fail()
    if canceled:  # refund.updated with status canceled instead of refund.failed
        events[2] = event(
            "refund.updated", {**events[0]["data"]["object"], "status": "canceled"}, at=T0 + 60
        )
    delivered = [events[i] for i in order] + [events[i] for i in dupes]
    state, _ = register_reward(new_customer_state(), reward(pi="pi_1", charge="ch_1"))
    state, out = feed(state, delivered)
    assert net(out) == 0
    running = 0
    for c in out:
        running += c["amount_minor"] if c["kind"] == "clawback" else -c["amount_minor"]
        assert 0 <= running <= 980


def test_a_later_real_refund_still_counts_after_another_failed() -> None:
    state, _ = register_reward(new_customer_state(), reward(pi="pi_1", charge="ch_1"))
    state, out = feed(state, refund_then_fail())
    real = refund("re_2", 2_450, created=T0 + 120)
    state, more = feed(
        state,
        [
            event("refund.created", real, at=T0 + 120),
            event("charge.refunded", charge(amount_refunded=2_450), at=T0 + 120),
        ],
    )
    assert net(out + more) == 490


# --- partial capture (pre-basil) --------------------------------------------------------


def test_the_released_remainder_of_a_partial_capture_is_not_a_refund() -> None:
    one_time = reward(amount=1_200, paid=6_000, pi="pi_1", charge="ch_1", invoice=None)
    captured = charge(amount=10_000, amount_captured=6_000, amount_refunded=4_000)
    release = refund("re_release", 4_000, created=T0)
    real = refund("re_real", 2_000, created=T0 + DAY)
    events = [
        event("charge.captured", captured, version=PRE_BASIL),
        event("refund.created", release, version=PRE_BASIL),
        event("charge.refunded", captured, version=PRE_BASIL),
    ]
    for order in (events, events[::-1]):
        state, _ = register_reward(new_customer_state(), one_time)
        state, out = feed(state, order)
        assert net(out) == 0
        state, more = feed(
            state,
            [
                event("refund.created", real, at=T0 + DAY, version=PRE_BASIL),
                event(
                    "charge.refunded",
                    {**captured, "amount_refunded": 6_000},
                    at=T0 + DAY,
                    version=PRE_BASIL,
                ),
            ],
        )
        assert net(out + more) == half_up(1_200 * 2_000, 6_000)


# --- invoices: earning amount, tenure, old versions -------------------------------------


def basil_invoice(**fields: Any) -> dict:
    inv = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_1",
        "currency": "usd",
        "amount_due": 4_900,
        "amount_paid": 4_900,
        "amount_paid_off_stripe": 0,
        "amount_remaining": 0,
        "subtotal": 4_900,
        "total": 4_900,
        "created": T0,
        "billing_reason": "subscription_cycle",
        "status": "paid",
        "status_transitions": {"paid_at": T0 + 60},
        "period_start": T0 - 31 * DAY,
        "period_end": T0,
        "lines": {"object": "list", "data": [], "has_more": False},
    }
    inv.update(fields)
    return inv


def line(
    start: int, end: int, *, proration: bool = False, basil: bool = True, metered: bool = False
) -> dict:
    out: dict[str, Any] = {
        "id": f"il_{start}",
        "object": "line_item",
        "amount": 1_000,
        "period": {"start": start, "end": end},
    }
    if basil:
        out["parent"] = {
            "type": "subscription_item_details",
            "subscription_item_details": {"subscription": "sub_1", "proration": proration},
        }
    else:
        out.update(
            type="subscription",
            subscription="sub_1",
            proration=proration,
            price={"recurring": {"usage_type": "metered" if metered else "licensed"}},
        )
    return out


def test_out_of_band_money_earns_nothing_on_either_api_family() -> None:
    assert read_invoice(basil_invoice(amount_paid_off_stripe=1_900)).amount_earning == 3_000
    pre = basil_invoice(amount_paid=0, paid_out_of_band=True)
    del pre["amount_paid_off_stripe"]
    assert read_invoice(pre).amount_earning == 0


def test_tenure_follows_the_licensed_line_not_prorations_or_metered_usage() -> None:
    cycle = T0
    lines = [line(cycle - 20 * DAY, cycle, proration=True), line(cycle, cycle + 31 * DAY)]
    assert read_invoice(basil_invoice(lines={"data": lines})).service_start == cycle
    pre = [
        line(cycle - 31 * DAY, cycle, basil=False, metered=True),
        line(cycle, cycle + 31 * DAY, basil=False),
    ]
    assert read_invoice(basil_invoice(lines={"data": pre})).service_start == cycle
    # Truncated lines without the licensed one: the cycle invoice's own period ends there.
    truncated = {"data": [line(cycle - 20 * DAY, cycle, proration=True)], "has_more": True}
    assert read_invoice(basil_invoice(lines=truncated)).service_start == cycle


def test_invoices_of_old_api_versions_are_read() -> None:
    v2019 = basil_invoice()
    v2019["date"] = v2019.pop("created")
    assert read_invoice(v2019).created == T0
    v2017 = copy.deepcopy(v2019)
    del v2017["amount_paid"], v2017["status"], v2017["amount_paid_off_stripe"]
    v2017["paid"] = True
    inv = read_invoice(v2017)
    assert (inv.amount_paid, inv.status) == (4_900, "paid")


# --- Connect ----------------------------------------------------------------------------


def test_connect_accounts_have_their_own_state_keys_and_ids() -> None:
    assert state_key(False, "cus_1") == "test:cus_1"
    assert state_key(False, "cus_1", "acct_1") == "test@acct_1:cus_1"
    platform = reward_id(False, "p", "in_1", "invoice")
    assert platform != reward_id(False, "p", "in_1", "invoice", "acct_1")
    assert reward_id(False, "p", "in_1", "invoice", "acct_1").startswith("test@acct_1/")
