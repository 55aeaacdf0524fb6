"""The per-customer ledger: duplicates, any order, one reward per payment, parking,
organic, program versions, tenure, holds, modes, lookups."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream.avro_codec import AvroCodec
from refstream.topics import ATTRIBUTIONS, REWARDS
from refstream.topics import LINKS as LINKS_TOPIC
from streams.ledger.config import DAY_S, LedgerConfig
from streams.ledger.customer_ledger import (
    HANDLED_TYPES,
    Decision,
    Outcome,
    decide,
    ledger_key,
    links_probed,
    next_deadline,
    tick,
)
from streams.ledger.invariants import InvariantError
from streams.ledger.ledger_state import (
    CustomerState,
    charge_ids_of_invoice,
    invoice_for_charge,
    rewards_for_charge,
    rewards_for_invoice,
    rewards_for_payment_intent,
)
from streams.ledger.programs import ProgramVersion, parse_program
from streams.ledger.stripe_payloads import ParseError, parse_envelope
from streams.ledger.tenure import add_months
from tests.support.factories import (
    API_VERSIONS,
    BASIL,
    DEFAULT_START,
    PRE_BASIL,
    Line,
    StripeFactory,
    one_time_story,
    subscription_story,
)
from tests.support.link_probes import answer_probes

CFG = LedgerConfig()
CODECS = {
    REWARDS: AvroCodec.for_schema("reward"),
    ATTRIBUTIONS: AvroCodec.for_schema("attribution"),
}
T0 = DEFAULT_START
MONTH = 30 * DAY_S


def program(version: int = 1, **fields: Any) -> ProgramVersion:
    table = {"id": "std", "rate": "20%", "hold_days": 365, **fields}
    return ProgramVersion(parse_program(table), version)


TIERED = program(
    tiers=[{"from_month": 1, "to_month": 3, "rate": "30%"}],
    first_invoice_bonus={"usd": 1_000},
)


class Ledger:
    """A stand-in for the worker's table: states stored as JSON text, outputs collected and
    checked against the Avro schemas."""

    def __init__(self, programs: Iterable[ProgramVersion], config: LedgerConfig = CFG) -> None:
        self.programs = list(programs)
        self.config = config
        self.states: dict[str, str] = {}
        self.outputs: list[Any] = []

    def state(self, key: str) -> CustomerState | None:
        raw = self.states.get(key)
        return None if raw is None else CustomerState.from_json(json.loads(raw))

    def _keep(self, key: str, decision: Decision) -> Decision:
        if decision.state is not None:
            self.states[key] = json.dumps(decision.state.to_json())
        for out in decision.outputs:
            CODECS[out.topic].encode(out.value)  # raises if it does not match the schema
        self.outputs += decision.outputs
        return decision

    def feed(self, envelope: dict, now: int | None = None) -> Decision | None:
        event = parse_envelope(envelope)
        key = ledger_key(event)
        if key is None:
            return None
        decision = decide(
            self.state(key),
            event,
            self.programs,
            self.config,
            now=event.created if now is None else now,
        )
        return self._keep(key, decision)

    def feed_all(self, envelopes: Iterable[dict], now: int | None = None) -> None:
        for envelope in envelopes:
            self.feed(envelope, now)

    def tick(self, now: int) -> None:
        for key in list(self.states):
            state = self.state(key)
            assert state is not None
            decision = tick(state, self.programs, self.config, now=now)
            self._keep(key, answer_probes(decision, self.programs, self.config, now))

    def rewards(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for o in self.outputs:
            if o.topic == REWARDS:
                before = out.get(o.value["reward_id"])
                if before is not None:
                    # Only a later revision naming the payment ids; money never changes.
                    assert o.value["revision"] == before["revision"] + 1, "emitted twice"
                    money = ("reward_amount_minor", "payment_amount_minor", "currency")
                    assert all(o.value[k] == before[k] for k in money)
                out[o.value["reward_id"]] = o.value
        return out

    def attributions(self) -> list[dict]:
        return [o.value for o in self.outputs if o.topic == ATTRIBUTIONS]


def lines_of(ledger: Ledger) -> list[tuple[str, int]]:
    return sorted((r["line"], r["reward_amount_minor"]) for r in ledger.rewards().values())


def end_of(story_events: list[dict]) -> int:
    return max(e["created"] for e in story_events)


# --- duplicates, routing, modes, purity ---------------------------------------------------------


def test_a_repeated_event_has_no_effect() -> None:
    f = StripeFactory(seed=1)
    story = subscription_story(f, months=2, code="ACME")
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    before, emitted = dict(ledger.states), len(ledger.outputs)
    for envelope in story.envelopes(f):
        decision = ledger.feed(envelope)
        assert decision is not None and decision.outcome is Outcome.DUPLICATE
        assert decision.outputs == ()
    assert ledger.states == before and len(ledger.outputs) == emitted


def test_decide_never_mutates_its_input_state() -> None:
    f = StripeFactory(seed=2)
    story = subscription_story(f, months=2, code="ACME")
    envs = story.envelopes(f)
    ledger = Ledger([program()])
    ledger.feed_all(envs[:-1])
    key = next(iter(ledger.states))
    state = ledger.state(key)
    assert state is not None
    snapshot = json.dumps(state.to_json())
    decision = decide(state, parse_envelope(envs[-1]), [program()], CFG, now=T0)
    assert decision.outcome is Outcome.APPLIED and decision.outputs
    assert json.dumps(state.to_json()) == snapshot


def test_unhandled_types_are_skipped() -> None:
    f = StripeFactory(seed=3)
    event = f.event("product.created", {"id": "prod_1", "object": "product"}, created=T0)
    parsed = parse_envelope(f.envelope(event))
    assert ledger_key(parsed) is None
    assert decide(None, parsed, [], CFG, now=T0) == Decision(None, (), Outcome.SKIPPED)
    charge = f.charge(amount=5, created=T0, customer="cus_1")
    refunded = parse_envelope(f.envelope(f.event("charge.refunded", charge, created=T0)))
    assert "charge.refunded" not in HANDLED_TYPES and ledger_key(refunded) is None


def test_a_bad_payload_raises_before_any_change() -> None:
    f = StripeFactory(seed=4)
    story = subscription_story(f, months=1, code="ACME")
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    key = next(iter(ledger.states))
    before = ledger.states[key]
    bad = f.event("invoice.paid", {**story.invoices[0], "amount_paid": "lots"}, created=T0 + 9)
    with pytest.raises(ParseError, match=r"invoice\.amount_paid"):
        ledger.feed(f.envelope(bad))
    wrong_kind = f.event("invoice.paid", story.charges[0], created=T0 + 9)
    with pytest.raises(ParseError, match=r"invoice\.paid must carry a 'invoice' object"):
        ledger.feed(f.envelope(wrong_kind))
    assert ledger.states[key] == before


def test_live_and_test_mode_never_share_state() -> None:
    live, test = StripeFactory(livemode=True, seed=5), StripeFactory(livemode=False, seed=5)
    story_live = subscription_story(live, months=2, code="ACME")
    story_test = subscription_story(test, months=2, code="ACME")
    assert story_live.customer_id == story_test.customer_id  # same ids, different modes
    ledger = Ledger([program()])
    ledger.feed_all(story_live.envelopes(live) + story_test.envelopes(test))
    cid = story_live.customer_id
    assert set(ledger.states) == {f"live:{cid}", f"test:{cid}"}
    rewards = ledger.rewards()
    assert sorted(r["livemode"] for r in rewards.values()) == [False, False, True, True]
    assert {r["reward_id"].split("/")[0] for r in rewards.values()} == {"live", "test"}
    for key in ledger.states:
        state = ledger.state(key)
        assert state is not None and len(state.rewards) == 2
        assert {r["livemode"] for r in state.rewards.values()} == {key.startswith("live")}
    test_state = ledger.state(f"test:{cid}")
    with pytest.raises(InvariantError, match="livemode=True"):
        decide(test_state, parse_envelope(story_live.envelopes(live)[-1]), [program()], CFG, now=T0)


def test_an_event_about_another_customer_is_a_routing_fault() -> None:
    f = StripeFactory(seed=6)
    story = subscription_story(f, months=1, code="ACME")
    envelope = story.envelopes(f)[-1]
    envelope["partition_key"] = "cus_someoneelse"
    with pytest.raises(InvariantError, match="routed to state test:cus_someoneelse"):
        Ledger([program()]).feed(envelope)


# --- any order, duplicates ---------------------------------------------------------------------

_STORIES: dict[tuple[str, str], tuple[StripeFactory, list[dict]]] = {}


def story_envelopes(api_version: str, code_on: str) -> list[dict]:
    if (api_version, code_on) not in _STORIES:
        f = StripeFactory(api_version=api_version, seed=11)
        story = subscription_story(
            f,
            months=5,
            code="ACME",
            new_user_id="u_1",
            code_on=code_on,
            upgrade=(3, 9_900),
            tax_rate="0.2",
        )
        _STORIES[(api_version, code_on)] = (f, story.envelopes(f))
    return _STORIES[(api_version, code_on)][1]


def settled_rewards(envelopes: list[dict], programs: list[ProgramVersion]) -> Ledger:
    ledger = Ledger(programs)
    now = max(e["created"] for e in envelopes)
    ledger.feed_all(envelopes, now=now)
    ledger.tick(now + 10 * DAY_S)
    return ledger


def comparable(rewards: dict[str, dict]) -> dict[str, dict]:
    # decided_at records when the decision became possible, and revision how many records it
    # took to name the payment ids: both order-dependent by nature (the final ids are not).
    order_dependent = ("decided_at", "revision")
    return {k: {f: v for f, v in r.items() if f not in order_dependent} for k, r in rewards.items()}


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("code_on", ["customer", "subscription"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_order_with_duplicates_yields_the_same_rewards(
    api_version: str, code_on: str, data: st.DataObject
) -> None:
    envs = story_envelopes(api_version, code_on)
    baseline = settled_rewards(envs, [TIERED])
    expected = comparable(baseline.rewards())
    # 5 monthly invoices + the upgrade's proration invoice + the first-invoice bonus
    assert len(expected) == 7
    assert {r["line"] for r in expected.values()} == {"invoice", "first_invoice_bonus"}
    shuffled = list(data.draw(st.permutations(envs)))
    for envelope in data.draw(st.lists(st.sampled_from(envs), max_size=6)):
        shuffled.insert(data.draw(st.integers(0, len(shuffled))), envelope)
    ledger = settled_rewards(shuffled, [TIERED])
    assert comparable(ledger.rewards()) == expected
    attributions = ledger.attributions()
    assert [(a["kind"], a["referral_code"]) for a in attributions] == [("attribution", "ACME")]


@pytest.mark.parametrize("api_version", API_VERSIONS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_with_a_cap_any_order_pays_exactly_the_cap(api_version: str, data: st.DataObject) -> None:
    envs = story_envelopes(api_version, "customer")
    uncapped = settled_rewards(envs, [program()]).rewards()
    cap = sum(r["reward_amount_minor"] for r in uncapped.values()) * 2 // 3
    ledger = settled_rewards(list(data.draw(st.permutations(envs))), [program(cap={"usd": cap})])
    capped = ledger.rewards()
    assert sum(r["reward_amount_minor"] for r in capped.values()) == cap
    for reward_id, reward in capped.items():  # which line gets cut depends on arrival order
        assert 0 < reward["reward_amount_minor"] <= uncapped[reward_id]["reward_amount_minor"]


# --- one payment, one reward --------------------------------------------------------------------


LINKS = [
    (PRE_BASIL, "payload"),  # charge.invoice and invoice.charge / payment_intent
    (BASIL, "payments"),  # invoice.payments included in the snapshot
    (BASIL, "invoice_payment"),  # invoice_payment.paid, re-keyed to the customer upstream
    (BASIL, "amount"),  # nothing links them: matched by amount when the window closes
]


def invoice_and_charge(api_version: str, link: str) -> tuple[StripeFactory, Any, list[dict]]:
    f = StripeFactory(api_version=api_version, seed=21)
    story = subscription_story(
        f,
        months=1,
        code="ACME",
        include_payments=link == "payments",
        invoice_payment_events=link == "invoice_payment",
    )
    envs = story.envelopes(f)
    for envelope in envs:
        if envelope["type"] == "invoice_payment.paid":  # as if re-keyed by the customer
            envelope["partition_key"], envelope["key_source"] = story.customer_id, "customer"
    return f, story, envs


@pytest.mark.parametrize(("api_version", "link"), LINKS)
@pytest.mark.parametrize("charge_first", [True, False])
def test_a_payment_seen_as_invoice_and_charge_earns_once(
    api_version: str, link: str, charge_first: bool
) -> None:
    _, story, envs = invoice_and_charge(api_version, link)
    payments = [e for e in envs if e["type"] in ("invoice.paid", "charge.succeeded")]
    others = [e for e in envs if e not in payments]
    payments.sort(key=lambda e: e["type"] == "invoice.paid", reverse=not charge_first)
    ledger = Ledger([program()])
    ledger.feed_all(others + payments)
    ledger.tick(end_of(story.events) + 2 * DAY_S)
    assert lines_of(ledger) == [("invoice", 980)]  # 20% of 4900, no one-time reward
    state = ledger.state(f"test:{story.customer_id}")
    assert state is not None
    charge_id, invoice_id = story.charges[0]["id"], story.invoices[0]["id"]
    assert invoice_for_charge(state, charge_id) == invoice_id
    assert [r["invoice_id"] for r in rewards_for_charge(state, charge_id)] == [invoice_id]
    assert charge_ids_of_invoice(state, invoice_id) == [charge_id]
    assert rewards_for_invoice(state, invoice_id) == list(ledger.rewards().values())


def test_without_the_amount_match_an_unlinked_basil_charge_is_paid_twice() -> None:
    # Documents why match_charges_by_amount defaults to on.
    _, story, envs = invoice_and_charge(BASIL, "amount")
    ledger = Ledger([program()], LedgerConfig(match_charges_by_amount=False))
    ledger.feed_all(envs)
    ledger.tick(end_of(story.events) + 2 * DAY_S)
    assert lines_of(ledger) == [("invoice", 980), ("one_time", 980)]


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_invoice_paid_and_payment_succeeded_earn_once(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=22)
    story = subscription_story(f, months=2, code="ACME", payment_succeeded_too=True)
    ledger = Ledger([program()])
    ledger.feed_all(reversed(story.envelopes(f)))
    ledger.tick(end_of(story.events) + 2 * DAY_S)
    assert lines_of(ledger) == [("invoice", 980), ("invoice", 980)]


# --- one-time payments -------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("session_first", [True, False])
def test_a_checkout_one_time_payment_earns_at_once(api_version: str, session_first: bool) -> None:
    f = StripeFactory(api_version=api_version, seed=31)
    story = one_time_story(
        f, customer_id="cus_buyer1", code="ACME", amount=11_900, amount_tax=1_900
    )
    envs = story.envelopes(f)
    ledger = Ledger([program()])
    ledger.feed_all(reversed(envs) if session_first else envs)  # no tick needed
    [reward] = ledger.rewards().values()
    assert (reward["line"], reward["payment_amount_minor"], reward["base_amount_minor"]) == (
        "one_time",
        11_900,
        10_000,
    )  # Checkout's tax comes out of the net base
    assert (reward["reward_amount_minor"], reward["rate"]) == (2_000, "0.2")
    assert (reward["charge_id"], reward["payment_intent_id"]) == (
        story.charges[0]["id"],
        story.payment_intent_id,
    )
    assert reward["invoice_id"] is None and reward["tenure_month"] is None
    state = ledger.state("test:cus_buyer1")
    assert state is not None
    assert rewards_for_charge(state, story.charges[0]["id"]) == [reward]
    assert rewards_for_payment_intent(state, story.payment_intent_id or "") == [reward]


@pytest.mark.parametrize("code_on", ["charge", "checkout_session"])
def test_a_guest_checkout_is_keyed_by_its_payment_intent(code_on: str) -> None:
    f = StripeFactory(api_version=BASIL, seed=32)
    story = one_time_story(f, customer_id=None, code="ACME", code_on=code_on)
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    assert list(ledger.states) == [f"test:{story.payment_intent_id}"]
    [reward] = ledger.rewards().values()
    assert (reward["customer_key"], reward["customer_id"]) == (story.payment_intent_id, None)
    assert reward["reward_amount_minor"] == 3_980
    [attribution] = ledger.attributions()
    assert (
        attribution["source"]
        == {"charge": "charge_metadata", "checkout_session": "checkout_session"}[code_on]
    )
    assert attribution["customer_id"] is None


def test_a_bare_charge_waits_for_the_window_then_earns_one_time() -> None:
    f = StripeFactory(api_version=BASIL, seed=33)
    story = one_time_story(f, customer_id="cus_b", code="ACME", via_checkout=False)
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    assert ledger.rewards() == {}
    state = ledger.state("test:cus_b")
    assert state is not None
    charge_event = story.events[0]["created"]
    assert next_deadline(state, CFG) == charge_event + CFG.one_time_window_s
    ledger.tick(charge_event + CFG.one_time_window_s - 1)
    assert ledger.rewards() == {}
    ledger.tick(charge_event + CFG.one_time_window_s)
    assert lines_of(ledger) == [("one_time", 3_980)]
    state = ledger.state("test:cus_b")
    assert state is not None and next_deadline(state, CFG) is None


def test_an_expired_charge_asks_the_link_agent_before_it_is_called_one_time() -> None:
    f = StripeFactory(api_version=BASIL, seed=35)
    story = one_time_story(f, customer_id="cus_p", code="ACME", via_checkout=False)
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    state = ledger.state("test:cus_p")
    assert state is not None
    expired = story.events[0]["created"] + CFG.one_time_window_s
    asked = tick(state, [program()], CFG, now=expired)
    probes = [o for o in asked.outputs if o.topic == LINKS_TOPIC]
    assert [(o.key, o.value["probe"]["charge_id"]) for o in probes] == [
        (story.payment_intent_id, story.charges[0]["id"])
    ]
    assert probes[0].value["probe"]["state_key"] == "test:cus_p"
    assert not [o for o in asked.outputs if o.topic == REWARDS]  # not before the answer
    assert asked.state is not None
    again = tick(asked.state, [program()], CFG, now=expired + 60)
    assert not again.outputs  # one probe per window, not one per tick
    answered = links_probed(asked.state, story.charges[0]["id"], [program()], CFG, now=expired + 60)
    assert [
        (o.value["line"], o.value["reward_amount_minor"])
        for o in answered.outputs
        if o.topic == REWARDS
    ] == [("one_time", 3_980)]


def test_an_invoice_payment_rekeyed_before_the_answer_makes_the_charge_the_invoices() -> None:
    # basil: neither the charge nor the invoice names the other, and the amounts differ (a
    # credit paid part), so only invoice_payment.paid links them; it reaches the customer
    # through the link agent, late. Called one-time at the window, the invoice's payment
    # would earn twice.
    f = StripeFactory(api_version=BASIL, seed=36)
    cus = f.customer(created=T0, metadata={"cello_ucc": "ACME"})
    ch = f.charge(amount=4_000, created=T0 + 10, customer=cus["id"], payment_intent="pi_late")
    inv = f.invoice(
        cus["id"],
        lines=[Line(5_000, T0, T0 + MONTH)],
        created=T0,
        paid_at=T0 + 12,
        billing_reason="subscription_create",
        credit_minor=1_000,
    )
    pay = f.invoice_payment(inv, payment_intent="pi_late", created=T0 + 13)
    ledger = Ledger([program()])
    for e in (
        f.event("customer.created", cus, created=T0),
        f.event("charge.succeeded", ch, created=T0 + 11),
        f.event("invoice.paid", inv, created=T0 + 12),
    ):
        ledger.feed(f.envelope(e))
    state = ledger.state(f"test:{cus['id']}")
    assert state is not None
    asked = tick(state, [program()], CFG, now=T0 + 11 + CFG.one_time_window_s)
    assert asked.state is not None and [o.topic for o in asked.outputs].count(LINKS_TOPIC) == 1
    ledger.states[asked.state.key] = json.dumps(asked.state.to_json())
    rekeyed = f.envelope(f.event("invoice_payment.paid", pay, created=T0 + 13))
    rekeyed.update(partition_key=cus["id"], key_source="customer")  # as the link agent does
    ledger.feed(rekeyed, now=T0 + 2 * CFG.one_time_window_s)
    state = ledger.state(f"test:{cus['id']}")
    assert state is not None
    answered = links_probed(state, ch["id"], [program()], CFG, now=T0 + 2 * CFG.one_time_window_s)
    ledger._keep(state.key, answered)
    assert lines_of(ledger) == [("invoice", 800)]


def test_a_checkout_that_created_an_invoice_pays_that_invoice() -> None:
    # Payment-mode Checkout with invoice_creation: the charge belongs to the invoice.
    f = StripeFactory(api_version=PRE_BASIL, seed=34)
    cus = f.customer(created=T0, metadata={"cello_ucc": "ACME"})
    inv = f.invoice(
        cus["id"],
        lines=[Line(5_000, T0, T0, kind="item")],
        created=T0 + 20,
        paid_at=T0 + 20,
        billing_reason="manual",
    )
    ch = f.charge(amount=5_000, created=T0 + 10, customer=cus["id"], payment_intent="pi_co")
    ses = f.checkout_session(
        mode="payment",
        created=T0,
        amount_total=5_000,
        customer=cus["id"],
        payment_intent="pi_co",
        invoice=inv["id"],
    )
    events = [
        f.event("customer.created", cus, created=T0),
        f.event("charge.succeeded", ch, created=T0 + 11),
        f.event("invoice.paid", inv, created=T0 + 21),
        f.event("checkout.session.completed", ses, created=T0 + 22),
    ]
    ledger = Ledger([program()])
    ledger.feed_all(f.envelope(e) for e in events)
    ledger.tick(T0 + 10 * DAY_S)
    assert lines_of(ledger) == [("invoice", 1_000)]


# --- parking, organic, conflicts ---------------------------------------------------------------


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_revenue_before_attribution_is_parked_then_settled(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=41)
    story = subscription_story(f, months=3, code=None)
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    assert ledger.rewards() == {}
    late = f.customer(created=T0, customer_id=story.customer_id, metadata={"cello_ucc": "LATE"})
    at = end_of(story.events) + 3_600
    decision = ledger.feed(f.envelope(f.event("customer.updated", late, created=at)))
    assert decision is not None
    rewards = [o.value for o in decision.outputs if o.topic == REWARDS]
    assert [r["tenure_month"] for r in rewards] == [1, 2, 3]
    assert {(r["referral_code"], r["decided_at"]) for r in rewards} == {("LATE", at)}
    assert {r["source_event_id"] for r in rewards} == {
        e["id"] for e in story.events if e["type"] == "invoice.paid"
    }


def test_unattributed_revenue_becomes_organic_after_the_window() -> None:
    f = StripeFactory(seed=42)
    story = subscription_story(f, months=2, code=None)
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    state = ledger.state(f"test:{story.customer_id}")
    assert state is not None
    first_revenue = min(e["created"] for e in story.events if e["type"] == "invoice.paid")
    deadline = first_revenue + CFG.attribution_window_s
    assert next_deadline(state, CFG) == deadline
    ledger.tick(deadline - 1)
    assert ledger.attributions() == []
    ledger.tick(deadline)
    [organic] = ledger.attributions()
    assert (organic["kind"], organic["source"], organic["referral_code"]) == (
        "organic",
        "none",
        None,
    )
    assert organic["attribution_id"] == f"test/organic/{story.customer_id}"
    # A code after the organic decision is a conflict, and earns nothing.
    late = f.customer(created=T0, customer_id=story.customer_id, metadata={"cello_ucc": "LATE"})
    ledger.feed(f.envelope(f.event("customer.updated", late, created=deadline + 5)))
    more = subscription_story(f, months=1, code=None)  # noise for another customer
    ledger.feed_all(more.envelopes(f))
    assert ledger.rewards() == {}
    assert [a["kind"] for a in ledger.attributions()] == ["organic", "conflict"]
    ledger.tick(deadline + 1)  # nothing new for the organic customer
    assert [a["kind"] for a in ledger.attributions()][:2] == ["organic", "conflict"]


def test_a_different_later_code_is_one_conflict_per_code() -> None:
    f = StripeFactory(seed=43)
    story = subscription_story(f, months=1, code="FIRST")
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    cid = story.customer_id
    for i, code in enumerate(["SECOND", "SECOND", "FIRST", "THIRD"]):
        cus = f.customer(created=T0, customer_id=cid, metadata={"cello_ucc": code})
        ledger.feed(f.envelope(f.event("customer.updated", cus, created=T0 + 100 + i)))
    kinds = [(a["kind"], a["referral_code"], a["attribution_id"]) for a in ledger.attributions()]
    assert kinds == [
        ("attribution", "FIRST", f"test/attribution/{cid}"),
        ("conflict", "SECOND", f"test/conflict/{cid}/SECOND"),
        ("conflict", "THIRD", f"test/conflict/{cid}/THIRD"),
    ]
    assert {r["referral_code"] for r in ledger.rewards().values()} == {"FIRST"}


# --- programs ---------------------------------------------------------------------------------


def test_each_reward_records_the_program_version_in_force() -> None:
    f = StripeFactory(seed=51)
    story = subscription_story(f, months=6, code="ACME")
    envs = story.envelopes(f)
    third = story.invoices[2]["id"]
    cut = 1 + next(
        i
        for i, e in enumerate(story.events)
        if e["type"] == "invoice.paid" and e["data"]["object"]["id"] == third
    )
    ledger = Ledger([program(1)])
    ledger.feed_all(envs[:cut])
    ledger.programs = [program(2, rate="25%")]
    ledger.feed_all(envs[cut:])
    got = sorted(
        (r["tenure_month"], r["program_version"], r["rate"], r["reward_amount_minor"])
        for r in ledger.rewards().values()
    )
    assert got == [
        (1, 1, "0.2", 980),
        (2, 1, "0.2", 980),
        (3, 1, "0.2", 980),
        (4, 2, "0.25", 1_225),
        (5, 2, "0.25", 1_225),
        (6, 2, "0.25", 1_225),
    ]
    ledger.programs = [program(3, active=False)]
    ledger.feed_all(subscription_story(f, months=1, code="ACME").envelopes(f))
    assert len(ledger.rewards()) == 6


def test_programs_apply_by_code_prefix_and_stack() -> None:
    f = StripeFactory(seed=52)
    flat = ProgramVersion(
        parse_program({"id": "amb", "flat": {"usd": 500}, "applies_to": ["AMB-"]}), 4
    )
    ledger = Ledger([program(), flat])
    ledger.feed_all(subscription_story(f, months=1, code="AMB-9").envelopes(f))
    ledger.feed_all(subscription_story(f, months=1, code="OTHER").envelopes(f))
    got = sorted(
        (r["referral_code"], r["program_id"], r["reward_amount_minor"], r["rate"])
        for r in ledger.rewards().values()
    )
    assert got == [
        ("AMB-9", "amb", 500, None),
        ("AMB-9", "std", 980, "0.2"),
        ("OTHER", "std", 980, "0.2"),
    ]


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_tiers_bonus_and_duration_switch_on_the_right_invoice(api_version: str) -> None:
    f = StripeFactory(api_version=api_version, seed=53)
    story = subscription_story(f, months=8, code="ACME", upgrade=(4, 9_900))
    prog = program(
        duration_months=6,
        first_invoice_bonus={"usd": 1_000},
        tiers=[{"from_month": 1, "to_month": 3, "rate": "30%"}],
    )
    ledger = Ledger([prog])
    ledger.feed_all(story.envelopes(f))
    got = sorted(
        (r["tenure_month"], r["line"], r["payment_amount_minor"], r["reward_amount_minor"])
        for r in ledger.rewards().values()
    )
    assert got == [
        (1, "first_invoice_bonus", 4_900, 1_000),
        (1, "invoice", 4_900, 1_470),
        (2, "invoice", 4_900, 1_470),
        (3, "invoice", 4_900, 1_470),
        (4, "invoice", 2_500, 500),  # the mid-month upgrade's proration invoice
        (4, "invoice", 4_900, 980),
        (5, "invoice", 9_900, 1_980),
        (6, "invoice", 9_900, 1_980),
    ]  # months 7 and 8 are past the duration: nothing


def test_zero_and_below_minimum_invoices_earn_nothing() -> None:
    f = StripeFactory(seed=54)
    cus = f.customer(created=T0, metadata={"cello_ucc": "ACME"})
    zero = f.invoice(
        cus["id"],
        lines=[Line(0, T0, T0 + MONTH)],
        created=T0,
        paid_at=T0,
        billing_reason="subscription_create",
        subscription="sub_z",
    )
    small = f.invoice(
        cus["id"],
        lines=[Line(400, T0, T0 + MONTH, kind="item")],
        created=T0,
        paid_at=T0 + 5,
        billing_reason="manual",
    )
    ledger = Ledger([program(minimum_invoice={"usd": 500})])
    ledger.feed_all(
        f.envelope(f.event(t, o, created=T0 + i))
        for i, (t, o) in enumerate(
            [("customer.created", cus), ("invoice.paid", zero), ("invoice.paid", small)]
        )
    )
    ledger.tick(T0 + 10 * DAY_S)
    assert ledger.rewards() == {}
    state = ledger.state(f"test:{cus['id']}")
    assert state is not None and zero["id"] not in state.invoices  # no anchor from $0


# --- tenure anchor ------------------------------------------------------------------------------


def test_without_a_subscription_create_invoice_the_anchor_waits_for_the_window() -> None:
    # A trial: the first paying invoice is a subscription_cycle one; delivered newest first.
    f = StripeFactory(api_version=BASIL, seed=61)
    cus = f.customer(created=T0, metadata={"cello_ucc": "ACME"})
    invoices = [
        f.invoice(
            cus["id"],
            lines=[Line(4_900, add_months(T0, m), add_months(T0, m + 1))],
            created=add_months(T0, m),
            paid_at=add_months(T0, m) + 3_600,
            subscription="sub_t",
        )
        for m in range(3)
    ]
    last = add_months(T0, 2) + 3_700
    events = [f.event("customer.created", cus, created=T0)] + [
        f.event("invoice.paid", inv, created=last) for inv in reversed(invoices)
    ]
    ledger = Ledger([TIERED])
    ledger.feed_all(f.envelope(e) for e in events)
    assert ledger.rewards() == {}
    ledger.tick(last + CFG.tenure_window_s - 1)
    assert ledger.rewards() == {}
    ledger.tick(last + CFG.tenure_window_s)
    got = sorted((r["invoice_id"], r["tenure_month"], r["line"]) for r in ledger.rewards().values())
    expected = [
        (invoices[0]["id"], 1, "first_invoice_bonus"),
        (invoices[0]["id"], 1, "invoice"),
        (invoices[1]["id"], 2, "invoice"),
        (invoices[2]["id"], 3, "invoice"),
    ]
    assert got == sorted(expected)


# --- holds and status ---------------------------------------------------------------------------


def test_status_is_pending_until_the_hold_ends() -> None:
    f = StripeFactory(seed=71)
    story = subscription_story(f, months=1, code="ACME")
    paid_at = story.invoices[0]["status_transitions"]["paid_at"]
    hold_until = paid_at + 30 * DAY_S
    for now, status in ((hold_until - 1, "pending"), (hold_until, "payable")):
        ledger = Ledger([program(hold_days=30)])
        ledger.feed_all(story.envelopes(f), now=now)
        [reward] = ledger.rewards().values()
        assert (reward["status"], reward["hold_until"], reward["paid_at"]) == (
            status,
            hold_until,
            paid_at,
        )


def test_state_round_trips_through_json_with_the_extra_slot_kept() -> None:
    f = StripeFactory(api_version=BASIL, seed=72)
    story = subscription_story(f, months=2, code="ACME")
    ledger = Ledger([program()])
    ledger.feed_all(story.envelopes(f))
    state = ledger.state(f"test:{story.customer_id}")
    assert state is not None
    state.extra["corrections"] = {"refunded": {"ch_1": 100}}
    again = CustomerState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state and again.key == f"test:{story.customer_id}"


def test_the_amount_match_never_takes_an_invoice_paid_by_another_payment() -> None:
    # Basil: the invoice names pi_other in payments; our same-amount charge is one-time.
    f = StripeFactory(api_version=BASIL, seed=81)
    cus = f.customer(created=T0, metadata={"cello_ucc": "ACME"})
    inv = f.invoice(
        cus["id"],
        lines=[Line(5_000, T0, add_months(T0, 1))],
        created=T0,
        paid_at=T0 + 60,
        billing_reason="subscription_create",
        subscription="sub_1",
        payment_intent="pi_other",
        include_payments=True,
    )
    ch = f.charge(amount=5_000, created=T0 + 30, customer=cus["id"], payment_intent="pi_mine")
    events = [
        f.event("customer.created", cus, created=T0),
        f.event("invoice.paid", inv, created=T0 + 61),
        f.event("charge.succeeded", ch, created=T0 + 31),
    ]
    ledger = Ledger([program()])
    ledger.feed_all(f.envelope(e) for e in events)
    ledger.tick(T0 + 2 * DAY_S)
    assert lines_of(ledger) == [("invoice", 1_000), ("one_time", 1_000)]


def test_config_comes_from_the_streams_settings() -> None:
    from refstream.settings import load_settings
    from streams.worker.cores import ledger_config

    env = {"REFSTREAM_REFERRAL_CODE_KEY": "ref", "REFSTREAM_ATTRIBUTION_WINDOW_S": "60"}
    config = ledger_config(load_settings(env).streams)
    assert (config.keys.code, config.keys.new_user_id, config.attribution_window_s) == (
        "ref",
        "new_user_id",
        60,
    )
