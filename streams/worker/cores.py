"""The seam between the worker runtime (streams/worker/) and the pure decision cores.

Tables hold bytes; the cores work on plain state. These adapters convert between the
two, route an envelope to its state key, and name the topic and encoding of each output,
so the wiring never takes a decision and the cores never touch Kafka.

Customer side (`CustomerCore`, per customer key): the ledger (attribution, rewards) plus
the customer half of the corrections (refund and dispute amounts) and lifecycle records.
Refunds and disputes that name no customer arrive keyed by their payment intent; when no
state lives under that key they are forwarded to the payment-link agent, which sends them
back keyed by the customer that owns the payment intent (see streams/worker/links.py).

Referrer side (`ReferrerCore`, per referral code): holds, payouts, the mode of each
correction, balances.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from refstream import topics
from refstream.avro_codec import AvroCodec
from refstream.settings import Settings, StreamsSettings
from streams.corrections import (
    RewardRef,
    Step,
    advance_holds,
    apply_correction,
    apply_dispute,
    apply_payout,
    apply_refund,
    dispute_fact,
    lifecycle_records,
    link_payment,
    new_customer_state,
    new_referrer_state,
    next_hold_until,
    refund_fact,
    register_customer_reward,
    register_referrer_reward,
)
from streams.corrections.lifecycle import EVENT_TYPES as LIFECYCLE_TYPES
from streams.corrections.refs import PaymentLink
from streams.corrections.stripe_facts import (
    CHARGE_REFUND_EVENTS,
    DISPUTE_EVENTS,
    REFUND_EVENTS,
    link_facts,
)
from streams.ledger.attribution import MetadataKeys, Touch
from streams.ledger.config import DAY_S, LedgerConfig
from streams.ledger.customer_ledger import (
    HANDLED_TYPES,
    Decision,
    Outcome,
    attribute,
    decide,
    ledger_key,
    links_probed,
    new_state,
    next_deadline,
    tick,
    unattributed_revenue,
)
from streams.ledger.ledger_state import CustomerState, state_key
from streams.ledger.programs import ProgramVersion
from streams.ledger.stripe_payloads import StripeEvent, parse_envelope

CORRECTION_TYPES = CHARGE_REFUND_EVENTS | REFUND_EVENTS | DISPUTE_EVENTS
# invoice_payment.* names no customer: it reaches the owner's state through the link agent.
LINK_TYPES = frozenset({"invoice_payment.paid", "invoice_payment.canceled"})
# Internal topics of the worker (Avro values, schemas/*.avsc; not a contract with anyone else).
CORRECTIONS = "refstream.corrections"  # customer side -> referrer side, key: referral code
LINKS = topics.LINKS  # payment intent -> owner, events to re-key, probes; key: payment intent
REROUTED = "refstream.rerouted"  # events re-keyed by their owner, key: customer key
INTERNAL_SCHEMAS = topics.INTERNAL_TOPIC_SCHEMAS  # their Avro schemas (schemas/*.avsc)


# Kafka header that marks a rerouted record as a link probe's answer, not a Stripe event.
KIND_HEADER = "refstream-kind"
PROBE_ANSWER = b"link-probe-answer"


@dataclass(frozen=True)
class Output:
    topic: str  # unprefixed name
    key: str
    record: dict[str, Any]
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def schema(self) -> str:
        """The Avro schema of the value (internal topics have theirs too)."""
        if self.topic == REROUTED:
            return topics.LINK_PROBE_ANSWER_SCHEMA if self.headers else "stripe_event"
        return INTERNAL_SCHEMAS.get(self.topic) or topics.TOPIC_SCHEMAS[self.topic]


def decode_internal(schema: str, value: bytes) -> dict[str, Any]:
    """An internal record: Avro, or JSON when it was written before the internal topics got
    schemas (still in flight during an upgrade; an Avro value never starts with '{')."""
    if value[:1] == b"{":
        decoded: dict[str, Any] = json.loads(value)
        return decoded
    return AvroCodec.for_schema(schema).decode(value)


def link_message(value: bytes) -> dict[str, Any]:
    """A refstream.links record as the link core reads it: only the fields set, a parked
    event as hex (the form the link table stores)."""
    message = {k: v for k, v in decode_internal("payment_link", value).items() if v is not None}
    if isinstance(message.get("event"), bytes):
        message["event"] = message["event"].hex()
    return message


def probe_answer_output(probe: Mapping[str, Any]) -> Output:
    """The link agent's answer to a probe, to the customer that asked (same partition as
    the events it re-keyed to that customer)."""
    answer = {"state_key": probe["state_key"], "charge_id": probe["charge_id"]}
    return Output(REROUTED, probe["owner"], answer, ((KIND_HEADER, PROBE_ANSWER),))


def is_probe_answer(headers: Mapping[str, bytes] | None) -> bool:
    return bool(headers) and dict(headers or {}).get(KIND_HEADER) == PROBE_ANSWER


@dataclass(frozen=True)
class CoreResult:
    state: bytes | None  # None: nothing to store
    outputs: list[Output] = field(default_factory=list)
    due_s: int | None = None  # when the state next needs a tick
    outcome: str = "unchanged"


@dataclass(frozen=True)
class StateResult:
    """A decision on a decoded state (what the worker's batches use: a state is decoded
    once per batch and encoded once when the batch is flushed)."""

    state: CustomerState | None  # None: unchanged, nothing to store
    outputs: list[Output] = field(default_factory=list)
    due_s: int | None = None
    outcome: str = "unchanged"


@dataclass(frozen=True)
class Routed:
    event: StripeEvent
    state_key: bytes


def _dump(state: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a lone surrogate from a payload: json escapes it, orjson refuses
        return json.dumps(state, separators=(",", ":"), sort_keys=True).encode()


def _load(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # written by json (an escaped lone surrogate)
        return json.loads(raw)


def load_customer(raw: bytes | None) -> CustomerState | None:
    return None if raw is None else CustomerState.from_json(_load(raw), owned=True)


def dump_customer(state: CustomerState) -> bytes:
    return _dump(state.json_view())  # the same bytes as to_json()'s, without its copies


def ledger_config(settings: StreamsSettings) -> LedgerConfig:
    """The ledger's knobs from the worker's settings (REFSTREAM_* variables)."""
    return LedgerConfig(
        keys=MetadataKeys(
            code=settings.referral_code_key,
            new_user_id=settings.new_user_id_key,
            organization_id=settings.organization_id_key,
        ),
        attribution_window_s=settings.attribution_window_s,
        one_time_window_s=settings.one_time_window_s,
        tenure_window_s=settings.tenure_window_s,
        dedup_window_s=settings.dedup_window_s,
        settled_horizon_s=settings.settled_horizon_days * DAY_S,
    )


class CustomerCore:
    """The customer side's decisions, on decoded states (`*_state` methods, which never
    change the state they are given, unless `on_event_state(..., in_place=True)`) or on
    table bytes (the same decisions, for callers that keep bytes)."""

    def __init__(
        self,
        config: LedgerConfig,
        lookup_livemode: bool | None = None,
        lookup_after_s: int = 60,
    ) -> None:
        self.config = config
        # The mode of the Stripe API key, when customer lookups are on (None: off).
        self.lookup_livemode = lookup_livemode
        self.lookup_after_s = lookup_after_s

    @classmethod
    def from_settings(cls, settings: Settings) -> CustomerCore:
        conf = settings.streams
        key = conf.stripe_api_key
        return cls(
            ledger_config(conf),
            lookup_livemode=None if key is None else "_live_" in key.value,
            lookup_after_s=conf.lookup_after_s,
        )

    @staticmethod
    def route(envelope: Mapping[str, Any]) -> Routed | None:
        """Parse the envelope (ParseError on a bad payload); None for event types no core
        handles (counted and skipped, not an error)."""
        event = parse_envelope(envelope)
        key = ledger_key(event)
        if key is None and (
            (
                event.type in CORRECTION_TYPES | LIFECYCLE_TYPES
                and event.key_source in ("customer", "payment_intent", "charge")
            )
            or (event.type in LINK_TYPES and event.key_source in ("payment_intent", "charge"))
        ):
            key = state_key(event.livemode, event.partition_key, event.account)
        return None if key is None else Routed(event, key.encode())

    @staticmethod
    def needs_owner(routed: Routed, state: object | None) -> bool:
        """A refund or dispute keyed by a payment intent that no state lives under: the
        payment belongs to a customer keyed elsewhere (or is not seen yet)."""
        event = routed.event
        if state is not None:
            return False
        if event.type in LINK_TYPES:
            return event.key_source in ("payment_intent", "charge")  # names no customer
        return (
            event.key_source in ("payment_intent", "charge")
            and event.type in CORRECTION_TYPES
            and event.type not in HANDLED_TYPES  # the ledger itself handles guest payments
        )

    # --- decisions on decoded states ------------------------------------------------------

    def on_event_state(
        self,
        before: CustomerState | None,
        routed: Routed,
        programs: Mapping[str, ProgramVersion],
        now_s: int,
        raw_event: Mapping[str, Any],
        *,
        in_place: bool = False,
    ) -> StateResult:
        """`in_place`: decide on `before` itself, without a copy (the result's state is
        `before`, changed, or a new state when `before` is None). A decision that raises
        may then leave `before` half changed: the caller rebuilds it (the worker's batches
        do, streams/worker/tables.py DecodedView.rebuild)."""
        known = payment_intents(before)
        decision = decide(
            before, routed.event, programs.values(), self.config, now=now_s, in_place=in_place
        )
        if decision.outcome == Outcome.DUPLICATE:
            return StateResult(None, outcome=str(decision.outcome))
        if decision.state is None:
            state = new_state(routed.event)
        elif decision.state is before and not in_place:  # not the ledger's: copy, then change
            state = decision.state.copy()
        else:
            state = decision.state  # the ledger's own new copy, or `before` when in place
        outputs = [Output(o.topic, o.key, o.value) for o in decision.outputs]
        outputs += self._corrections(state, outputs, raw_event)
        outputs += self._lifecycle(state, raw_event)
        outputs += _new_links(known, state)
        return StateResult(state, outputs, self._due(state), str(decision.outcome))

    def on_tick_state(
        self, before: CustomerState | None, programs: Mapping[str, ProgramVersion], now_s: int
    ) -> StateResult:
        if before is None:
            return StateResult(None)
        decision = tick(before, programs.values(), self.config, now=now_s)
        return self._timed(before, decision)

    def on_probe_answer_state(
        self,
        before: CustomerState | None,
        charge_id: str,
        programs: Mapping[str, ProgramVersion],
        now_s: int,
    ) -> StateResult:
        """The link agent has nothing more in flight for this charge: classify it now."""
        if before is None:
            return StateResult(None)
        decision = links_probed(before, charge_id, programs.values(), self.config, now=now_s)
        return self._timed(before, decision)

    def on_lookup_state(
        self,
        before: CustomerState,
        touch: Touch | None,
        programs: Mapping[str, ProgramVersion],
        now_s: int,
    ) -> StateResult:
        """Apply what the Stripe API said (a touch, or nothing); never asks twice."""
        state = before.copy()
        outputs: list[Output] = []
        if touch is not None:
            decision = attribute(state, touch, programs.values(), self.config, now=now_s)
            state = (decision.state or state).copy()
            outputs = [Output(o.topic, o.key, o.value) for o in decision.outputs]
            outputs += self._corrections(state, outputs, None)
        state.extra["lookup_done"] = True
        return StateResult(state, outputs, self._due(state), "looked_up")

    def lookup_target_state(
        self, state: CustomerState | None, now_s: int
    ) -> tuple[str, str | None] | None:
        """(customer id, Connect account) to look up now, if its lookup is due."""
        if state is None:
            return None
        due = self.lookup_due(state)
        return (state.customer_key, state.account) if due is not None and due <= now_s else None

    def _timed(self, before: CustomerState, decision: Decision) -> StateResult:
        """The result of a decision taken without a Stripe event (a tick, a probe answer)."""
        if decision.outcome == Outcome.UNCHANGED or decision.state is None:
            return StateResult(None, due_s=self._due(before))
        state = decision.state.copy()
        outputs = [Output(o.topic, o.key, o.value) for o in decision.outputs]
        outputs += self._corrections(state, outputs, None)
        return StateResult(state, outputs, self._due(state), str(decision.outcome))

    # --- the same decisions on table bytes --------------------------------------------------

    def on_event(
        self,
        raw_state: bytes | None,
        routed: Routed,
        programs: Mapping[str, ProgramVersion],
        now_s: int,
        raw_event: Mapping[str, Any],
    ) -> CoreResult:
        before = load_customer(raw_state)
        return _encoded(raw_state, self.on_event_state(before, routed, programs, now_s, raw_event))

    def on_tick(
        self, raw_state: bytes | None, programs: Mapping[str, ProgramVersion], now_s: int
    ) -> CoreResult:
        return _encoded(raw_state, self.on_tick_state(load_customer(raw_state), programs, now_s))

    def on_probe_answer(
        self,
        raw_state: bytes | None,
        charge_id: str,
        programs: Mapping[str, ProgramVersion],
        now_s: int,
    ) -> CoreResult:
        before = load_customer(raw_state)
        return _encoded(raw_state, self.on_probe_answer_state(before, charge_id, programs, now_s))

    def on_lookup(
        self,
        raw_state: bytes,
        touch: Touch | None,
        programs: Mapping[str, ProgramVersion],
        now_s: int,
    ) -> CoreResult:
        before = CustomerState.from_json(_load(raw_state))
        return _encoded(raw_state, self.on_lookup_state(before, touch, programs, now_s))

    def lookup_target(self, raw_state: bytes | None, now_s: int) -> tuple[str, str | None] | None:
        return self.lookup_target_state(load_customer(raw_state), now_s)

    # --- shared -------------------------------------------------------------------------------

    def lookup_due(self, state: CustomerState) -> int | None:
        """When to ask the Stripe API for this customer's referral, or None: only once, for
        a real customer of the key's mode whose revenue waits for an attribution."""
        if (
            self.lookup_livemode is None
            or state.livemode != self.lookup_livemode
            or state.guest
            or state.attribution is not None
            or state.organic
            or state.extra.get("lookup_done")
        ):
            return None
        waiting = [f.received_at for f in unattributed_revenue(state)]
        return min(waiting) + self.lookup_after_s if waiting else None

    def _due(self, state: CustomerState) -> int | None:
        """When the state next needs a tick: a ledger window, or its Stripe lookup."""
        deadlines = (next_deadline(state, self.config), self.lookup_due(state))
        return min((d for d in deadlines if d is not None), default=None)

    def _corrections(
        self, state: CustomerState, outputs: list[Output], raw_event: Mapping[str, Any] | None
    ) -> list[Output]:
        """Register new rewards with the correction core and apply the event's refund or
        dispute; the corrections go to the referrer side. `state` is the decision's own (a
        copy, or the state decided in place), so its book is changed in place too."""
        book = state.extra.get("corrections") or new_customer_state()
        corrections: list[dict[str, Any]] = []
        for out in outputs:
            if out.topic == topics.REWARDS:
                ref = RewardRef.from_reward_record(out.record)
                book, found = register_customer_reward(book, ref, in_place=True)
                corrections += found
        cause = _cause(raw_event, state)
        for link in _ledger_links(state, book, cause):
            book, found = link_payment(book, link, in_place=True)
            corrections += found
        if raw_event is not None:
            for link in link_facts(raw_event):
                book, found = link_payment(book, link, in_place=True)
                corrections += found
            if (fact := refund_fact(raw_event)) is not None:
                book, found = apply_refund(book, fact, in_place=True)
                corrections += found
            if (dispute := dispute_fact(raw_event)) is not None:
                book, found = apply_dispute(book, dispute, in_place=True)
                corrections += found
        state.extra["corrections"] = book
        return [Output(CORRECTIONS, c["referral_code"], c) for c in corrections]

    @staticmethod
    def _lifecycle(state: CustomerState, raw_event: Mapping[str, Any]) -> list[Output]:
        code = state.attribution.code if state.attribution else None
        return [
            Output(topics.LIFECYCLE, record["customer_key"], record)
            for record in lifecycle_records(raw_event, referral_code=code)
        ]


def _encoded(raw_before: bytes | None, result: StateResult) -> CoreResult:
    """A state result as table bytes; equal bytes mean an unchanged state."""
    after = None if result.state is None else dump_customer(result.state)
    return CoreResult(
        state=None if after is None or after == raw_before else after,
        outputs=result.outputs,
        due_s=result.due_s,
        outcome=result.outcome,
    )


def _cause(raw_event: Mapping[str, Any] | None, state: CustomerState) -> tuple[str, int]:
    """(event id, time) to name as the cause of links the ledger found on its own."""
    if raw_event is not None:
        return str(raw_event.get("id")), int(raw_event.get("created") or 0)
    return f"tick:{state.customer_key}", 0


def _ledger_links(
    state: CustomerState, book: Mapping[str, Any], cause: tuple[str, int]
) -> list[PaymentLink]:
    """Links the ledger knows (pre-basil payloads, Checkout, the amount match) for invoices
    the correction core has no link for yet."""
    known = book.get("links", {})
    found: list[PaymentLink] = []
    for pi, invoice_id in sorted(state.invoice_of_payment_intent.items()):
        if not known.get(invoice_id) and invoice_id in state.invoices:
            found.append(PaymentLink(invoice_id, pi, None, None, *cause))
    for charge, invoice_id in sorted(state.invoice_of_charge.items()):
        linked = known.get(invoice_id) or any(f.invoice_id == invoice_id for f in found)
        if not linked and invoice_id in state.invoices:
            found.append(PaymentLink(invoice_id, None, charge, None, *cause))
    return found


def payment_intents(state: CustomerState | None) -> set[str]:
    """Payment intents this customer's state knows (their refunds and disputes may arrive
    keyed by the payment intent alone)."""
    if state is None:
        return set()
    found = {c.payment_intent_id for c in state.charges.values() if c.payment_intent_id}
    # A charge made without a payment intent is its own payment (its disputes name it).
    found |= {c.charge_id for c in state.charges.values() if not c.payment_intent_id}
    found |= set(state.invoice_of_payment_intent)
    for invoice in state.invoices.values():
        found |= set(invoice.payment_intent_ids)
    return found


def _new_links(known: set[str], state: CustomerState) -> list[Output]:
    """A link record for each payment intent the state knows now and did not (`known`)."""
    source = "payment_intent" if state.guest else "customer"
    return [
        Output(LINKS, pi, {"owner": state.customer_key, "key_source": source})
        for pi in sorted(payment_intents(state) - known)
    ]


class ReferrerCore:
    """Referrer-side steps over JSON table values; each returns the Step to emit and store."""

    @staticmethod
    def load_state(raw: bytes | None, referral_code: str) -> dict[str, Any]:
        return new_referrer_state(referral_code) if raw is None else json.loads(raw)

    @staticmethod
    def on_reward(state: dict, entries: Mapping[str, Any], record: dict, now_s: int) -> Step:
        return register_referrer_reward(state, entries, RewardRef.from_reward_record(record), now_s)

    @staticmethod
    def on_correction(state: dict, entries: Mapping[str, Any], record: dict, now_s: int) -> Step:
        return apply_correction(state, entries, record, now_s)

    @staticmethod
    def on_payout(state: dict, entries: Mapping[str, Any], record: dict, now_s: int) -> Step:
        return apply_payout(state, entries, record, now_s)

    @staticmethod
    def on_tick(state: dict, entries: Mapping[str, Any], now_s: int) -> Step:
        return advance_holds(state, entries, now_s)

    @staticmethod
    def outputs(step: Step) -> list[Output]:
        topic_of = {"clawback": topics.CLAWBACKS, "reward_status": topics.REWARD_STATUS}
        return [
            Output(topic_of[kind], record["referral_code"], record) for kind, record in step.records
        ]

    @staticmethod
    def next_due(step: Step) -> int | None:
        return next_hold_until(step.state)

    @staticmethod
    def dump(value: dict[str, Any]) -> bytes:
        return _dump(value)
