"""The per-customer ledger: pure decisions over one customer's state.

    key = ledger_key(event)                       # None: not a customer-ledger event
    d = decide(state_or_None, event, programs, config, now=...)   # per Stripe event
    d = tick(state, programs, config, now=...)                   # periodically
    d.state, d.outputs, d.outcome                                # store, emit, count

Nothing here knows Kafka; inputs are never mutated (a Decision carries a new
state). Rules, and why:

1. Deduplication: a Stripe event id seen within `dedup_window_s` (by event `created`) has
   no effect (outcome DUPLICATE). Older ids are forgotten, which is safe because every
   transition is idempotent on its own: a payment is recorded once (by invoice / charge
   id, then by its compact summary, see streams/ledger/compaction.py), every record id is
   derived from its cause and never emitted twice, the first touch wins and a conflict
   is recorded once per code. Stripe retries for 3 days and its Events API (replays,
   backfills) lists 30 days back; the window is 35 days by default.
2. Attribution: the first touch PROCESSED wins and never changes. "Earliest created" cannot
   be honoured in a stream: once a record is emitted it is immutable, and an older touch may
   arrive days later. A later touch with a different code yields one conflict record per
   code; the same code again is a no-op. Organic (below) is a first decision too: a code
   that arrives after it is recorded as a conflict.
3. Revenue facts: invoice.paid / invoice.payment_succeeded of a paid invoice with
   amount_paid > 0 (the first of the two wins; the reward id is the same anyway), and
   charge.succeeded / charge.captured of a succeeded charge with amount_captured > 0.
4. One payment, one reward. Invoices always earn; a charge earns a one-time reward only
   once it is known NOT to pay an invoice. A charge pays an invoice when any link says so:
   charge.invoice (pre-basil), the invoice's charge / payment_intent (pre-basil) or
   payments (basil, when included), invoice_payment.paid, or a Checkout Session naming both
   the payment intent and an invoice. A charge is one-time when a payment-mode Checkout
   Session without invoice created its payment intent, or when `one_time_window_s` passed
   (at a tick) with no link AND the payment-link agent answered a probe for the charge:
   basil's invoice_payment.paid reaches the customer through that agent, and its answer
   travels behind anything it re-keyed, so a link already on its way is never overtaken.
   Before giving up, an unclaimed paid invoice of the same currency and amount paid within
   that window is taken as its invoice (`match_charges_by_amount`), because basil webhooks
   rarely carry invoice.payments.
5. Tenure: month 1 starts at the anchor = the service start (earliest subscription line
   period start, else paid_at) of the customer's first paid invoice. The anchor is fixed as
   soon as an invoice with billing_reason=subscription_create is seen (then: the earliest
   paid invoice seen so far), or at a tick once invoices waited `tenure_window_s` (then: the
   earliest seen). Invoices wait for the anchor, so a year of invoices delivered in any
   order yields the same rewards. The first-invoice bonus goes to the anchor invoice.
6. Parking: revenue waits for attribution; when a touch arrives, everything waiting is
   settled at once, in (paid time, id) order, which is also the order caps are consumed in.
   Revenue still unattributed `attribution_window_s` after its event becomes organic (one
   organic record per customer, at a tick) and earns nothing.
7. Programs: the versions passed in when a payment settles are the ones used and recorded.
8. Status at emission: payable when `now` >= paid_at + hold_days, else pending.
9. Modes: the state key includes livemode; an event of the other mode, or one about another
   customer, raises InvariantError (a routing fault, never silently mixed).

Order independence holds for the reward set (ids, amounts, rates, tenure months, program
versions given the same programs) for any order of one customer's events processed before
the windows expire; `decided_at` and, when several events carry the same touch or payment,
the recorded `source_event_id` / attribution source depend on processing order by nature.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

from refstream.topic_names import LINKS, REWARDS
from streams.corrections.errors import BeyondHorizon
from streams.ledger.attribution import Touch, touches_in
from streams.ledger.compaction import compact, remember_event, used_key
from streams.ledger.config import LedgerConfig
from streams.ledger.invariants import invariant
from streams.ledger.ledger_state import (
    ChargeFact,
    CheckoutPayment,
    CustomerState,
    InvoiceFact,
    charge_ids_of_invoice,
    invoice_for_charge,
    settled_payment_of,
    state_key,
)
from streams.ledger.programs import ProgramVersion
from streams.ledger.records import (
    KIND_ATTRIBUTION,
    KIND_CONFLICT,
    Output,
    Payment,
    attribution_output,
    organic_output,
    reward_output,
)
from streams.ledger.rewards import invoice_lines, one_time_lines, used_by_program
from streams.ledger.stripe_payloads import (
    Charge,
    CheckoutSession,
    Customer,
    Invoice,
    InvoicePayment,
    ParseError,
    StripeEvent,
    Subscription,
    read_object,
)
from streams.ledger.tenure import tenure_month

REVENUE_INVOICE_TYPES = frozenset({"invoice.paid", "invoice.payment_succeeded"})
HANDLED_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "invoice.created",
        "invoice.finalized",
        "invoice.updated",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "charge.succeeded",
        "charge.captured",
    }
)
# Event type prefix -> the `object` its data.object must be (longest prefix first).
_OBJECT_OF_TYPE = (
    ("customer.subscription.", "subscription"),
    ("customer.", "customer"),
    ("checkout.session.", "checkout.session"),
    ("invoice_payment.", "invoice_payment"),
    ("invoice.", "invoice"),
    ("charge.", "charge"),
)
KIND_INVOICE = "invoice"
KIND_ONE_TIME = "one_time"
KIND_UNMATCHED = "unmatched"  # looked like an invoice's payment, no unique match: no reward


class Outcome(StrEnum):
    APPLIED = "applied"  # state may have changed; store it, emit the outputs
    DUPLICATE = "duplicate"  # event id seen before (within the dedup window): nothing to do
    SKIPPED = "skipped"  # event type the ledger does not handle
    UNCHANGED = "unchanged"  # tick with nothing due


class Decision(NamedTuple):
    state: CustomerState | None
    outputs: tuple[Output, ...]
    outcome: Outcome


def ledger_key(event: StripeEvent) -> str | None:
    """The state key an event belongs to, or None when the ledger does not handle it.

    The key is the Kafka record key (so state lives on the event's partition) plus the
    mode. invoice_payment.* carries no customer; it is handled only when something upstream
    re-keyed it by customer.
    """
    if event.type not in HANDLED_TYPES:
        return None
    if event.key_source == "customer" or (
        event.key_source == "payment_intent" and not event.type.startswith("invoice_payment.")
    ):
        return state_key(event.livemode, event.partition_key, event.account)
    return None


def new_state(event: StripeEvent) -> CustomerState:
    return CustomerState(
        customer_key=event.partition_key,
        livemode=event.livemode,
        guest=event.key_source == "payment_intent",
        account=event.account,
    )


def decide(
    state: CustomerState | None,
    event: StripeEvent,
    programs: Iterable[ProgramVersion],
    config: LedgerConfig,
    *,
    now: int,
    in_place: bool = False,
) -> Decision:
    """Apply one Stripe event. Raises ParseError (bad payload) or InvariantError (routing
    fault) before touching anything; `state` itself is never mutated, unless `in_place`:
    then the decision works on `state` itself (no copy) and, when it raises, may leave it
    half changed; the caller must then rebuild it (streams/worker/tables.py DecodedView)."""
    if event.type not in HANDLED_TYPES:
        return Decision(state, (), Outcome.SKIPPED)
    expected = next(kind for prefix, kind in _OBJECT_OF_TYPE if event.type.startswith(prefix))
    if event.data_object.get("object") != expected:
        raise ParseError(f"data.object.object: {event.type} must carry a {expected!r} object")
    obj = read_object(event.data_object)
    if state is None:
        state = new_state(event)
    invariant(
        state.livemode == event.livemode,
        f"event {event.event_id} (livemode={event.livemode}) routed to state {state.key}",
    )
    invariant(
        state.account == event.account,
        f"event {event.event_id} (account={event.account}) routed to state {state.key}",
    )
    about = _customer_key_of(obj)
    invariant(
        about is None or about == state.customer_key,
        f"event {event.event_id} is about {about} but was routed to state {state.key}",
    )
    if event.event_id in state.recent_event_ids:
        return Decision(state, (), Outcome.DUPLICATE)
    own = state if in_place else state.copy()
    run = _Run(own, programs, config, now=now, decided_at=event.created)
    remember_event(run.state, event.event_id, event.created, config.dedup_window_s)
    run.apply_touches(touches_in(event, obj, config.keys))
    run.record(event, obj)
    run.settle()
    run.complete_payment_ids()
    compact(run.state, config, now)
    # An id older than the window is not remembered (and not DUPLICATE): the worker still
    # reads it for corrections and lifecycle records, which are idempotent on their own.
    return Decision(run.state, tuple(run.outputs), Outcome.APPLIED)


def attribute(
    state: CustomerState,
    touch: Touch,
    programs: Iterable[ProgramVersion],
    config: LedgerConfig,
    *,
    now: int,
) -> Decision:
    """Apply a touch found outside the event stream (e.g. source stripe_lookup)."""
    run = _Run(state.copy(), programs, config, now=now, decided_at=touch.at)
    run.apply_touches([touch])
    run.settle()
    return Decision(run.state, tuple(run.outputs), Outcome.APPLIED)


def tick(
    state: CustomerState,
    programs: Iterable[ProgramVersion],
    config: LedgerConfig,
    *,
    now: int,
) -> Decision:
    """Close the windows that `now` has passed: one-time charges, tenure anchor, organic.

    `now` is compared with Stripe event times; pass the partition's event-time watermark
    (or the wall clock) consistently. UNCHANGED means there is nothing to store or emit."""
    run = _Run(state.copy(), programs, config, now=now, decided_at=now)
    run.expire_windows()
    run.settle()
    run.complete_payment_ids()
    compact(run.state, config, now)
    if not run.outputs and run.state.to_json() == state.to_json():
        return Decision(state, (), Outcome.UNCHANGED)
    return Decision(run.state, tuple(run.outputs), Outcome.APPLIED)


def links_probed(
    state: CustomerState,
    charge_id: str,
    programs: Iterable[ProgramVersion],
    config: LedgerConfig,
    *,
    now: int,
) -> Decision:
    """The link agent answered a charge's probe: every invoice payment it had for the charge
    was delivered before this answer, so the charge may now be classified (at this tick)."""
    charge = state.charges.get(charge_id)
    if charge is None or charge.link_probe_answered:
        return Decision(state, (), Outcome.UNCHANGED)
    run = _Run(state.copy(), programs, config, now=now, decided_at=now)
    run.state.charges[charge_id].link_probe_answered = True
    run.expire_windows()
    run.settle()
    run.complete_payment_ids()
    return Decision(run.state, tuple(run.outputs), Outcome.APPLIED)


def next_deadline(state: CustomerState, config: LedgerConfig) -> int | None:
    """The earliest `now` at which tick() would decide something, or None."""
    window = config.one_time_window_s
    deadlines: list[int] = [
        c.received_at + window
        if c.link_probe_sent_at is None or c.link_probe_answered
        else c.link_probe_sent_at + window  # ask again if the answer never came
        for c in state.charges.values()
        if not c.settled and c.kind is None
    ]
    if not state.organic:
        waiting = [i for i in state.invoices.values() if not i.settled]
        if state.anchor_at is None and waiting:
            deadlines.append(min(i.received_at for i in waiting) + config.tenure_window_s)
        revenue = unattributed_revenue(state)
        if state.attribution is None and revenue:
            deadlines.append(min(f.received_at for f in revenue) + config.attribution_window_s)
    return min(deadlines) if deadlines else None


def _customer_key_of(obj: object) -> str | None:
    if isinstance(obj, Customer):
        return obj.id
    if isinstance(obj, Subscription):
        return obj.customer
    if isinstance(obj, Invoice):
        return obj.customer
    if isinstance(obj, CheckoutSession):
        return obj.customer or obj.payment_intent_id
    if isinstance(obj, Charge):
        return obj.customer or obj.payment_intent
    return None  # invoice_payment names no customer


def unattributed_revenue(state: CustomerState) -> list[InvoiceFact | ChargeFact]:
    facts: list[InvoiceFact | ChargeFact] = [i for i in state.invoices.values() if not i.settled]
    facts += [c for c in state.charges.values() if not c.settled and c.kind != KIND_INVOICE]
    return sorted(facts, key=lambda f: (f.event_created, f.event_id))


def _check_horizon(state: CustomerState, event: StripeEvent, what: str, paid_at: int) -> None:
    """A payment not in the state, paid before its payments were dropped past the settled
    horizon: a replay and a first delivery look alike now, so refuse it loudly."""
    if paid_at <= state.settled_before:
        raise BeyondHorizon(
            f"{event.event_id}: {what} was paid at {paid_at}, before this customer's payments "
            f"dropped past the settled horizon (up to {state.settled_before}): a replay or a "
            "first delivery, refstream cannot tell; book it by hand if it is new"
        )


def _used(state: CustomerState, program_id: str, currency: str) -> int:
    """What a program already gave in a currency: live rewards plus compacted ones."""
    return used_by_program(state.rewards, program_id, currency) + state.used.get(
        used_key(program_id, currency), 0
    )


def _only(ids: list[str]) -> str | None:
    return ids[0] if len(ids) == 1 else None


class _Run:
    """One decision in progress: a private copy of the state plus the outputs so far."""

    def __init__(
        self,
        state: CustomerState,
        programs: Iterable[ProgramVersion],
        config: LedgerConfig,
        *,
        now: int,
        decided_at: int,
    ) -> None:
        self.state = state
        self.programs = sorted(programs, key=lambda pv: pv.program.id)
        self.config = config
        self.now = now
        self.decided_at = decided_at
        self.outputs: list[Output] = []

    # --- attribution ---

    def apply_touches(self, touches: list[Touch]) -> None:
        s = self.state
        for touch in touches:
            if s.attribution is None and not s.organic:
                s.attribution = touch
                self._store_attribution(attribution_output(s, KIND_ATTRIBUTION, touch))
            elif s.attribution is None or touch.code != s.attribution.code:
                out = attribution_output(s, KIND_CONFLICT, touch)
                if out.value["attribution_id"] not in s.attributions:
                    self._store_attribution(out)

    def _store_attribution(self, out: Output) -> None:
        self.state.attributions[out.value["attribution_id"]] = out.value
        self.outputs.append(out)

    # --- facts and links ---

    def record(self, event: StripeEvent, obj: object) -> None:
        if isinstance(obj, Invoice):
            self._record_invoice(event, obj)
        elif isinstance(obj, Charge):
            self._record_charge(event, obj)
        elif isinstance(obj, CheckoutSession):
            self._record_checkout(obj)
        elif isinstance(obj, InvoicePayment) and obj.status != "canceled":
            self._link(obj.invoice_id, payment_intent=obj.payment_intent, charge=obj.charge)

    def _link(
        self, invoice_id: str, *, payment_intent: str | None = None, charge: str | None = None
    ) -> None:
        # First link wins: one payment intent or charge pays at most one invoice.
        if payment_intent is not None:
            self.state.invoice_of_payment_intent.setdefault(payment_intent, invoice_id)
        if charge is not None:
            self.state.invoice_of_charge.setdefault(charge, invoice_id)

    def _record_invoice(self, event: StripeEvent, inv: Invoice) -> None:
        for pi in inv.payment_intent_ids:
            self._link(inv.id, payment_intent=pi)
        for charge in inv.charge_ids:
            self._link(inv.id, charge=charge)
        s = self.state
        if (
            event.type not in REVENUE_INVOICE_TYPES
            or inv.status not in (None, "paid")
            or inv.amount_earning <= 0
            or inv.id in s.invoices
            or inv.id in s.settled  # compacted: decided long ago
        ):
            return
        paid_at = inv.paid_at if inv.paid_at is not None else event.created
        _check_horizon(s, event, f"invoice {inv.id}", paid_at)
        s.invoices[inv.id] = InvoiceFact(
            invoice_id=inv.id,
            currency=inv.currency,
            amount_paid=inv.amount_earning,  # paid through Stripe (STRIPE_FLOWS.md §1)
            total=inv.total,
            total_excluding_tax=inv.total_excluding_tax,
            billing_reason=inv.billing_reason,
            paid_at=paid_at,
            service_at=inv.service_start if inv.service_start is not None else paid_at,
            subscription_id=inv.subscription_id,
            payment_intent_ids=list(inv.payment_intent_ids),
            charge_ids=list(inv.charge_ids),
            event_id=event.event_id,
            event_type=event.type,
            event_created=event.created,
            received_at=self.now,
        )

    def _record_charge(self, event: StripeEvent, ch: Charge) -> None:
        if ch.invoice is not None:
            self._link(ch.invoice, charge=ch.id, payment_intent=ch.payment_intent)
        s = self.state
        if ch.status != "succeeded" or ch.amount_captured <= 0 or ch.id in s.charges:
            return
        if s.settled and any(
            settled_payment_of(s, key) is not None for key in (ch.id, ch.payment_intent) if key
        ):
            return  # a payment (or a charge of a payment) compacted long ago
        _check_horizon(s, event, f"charge {ch.id}", ch.created)
        s.charges[ch.id] = ChargeFact(
            charge_id=ch.id,
            payment_intent_id=ch.payment_intent,
            currency=ch.currency,
            amount_captured=ch.amount_captured,
            created=ch.created,
            event_id=event.event_id,
            event_type=event.type,
            event_created=event.created,
            received_at=self.now,
        )

    def _record_checkout(self, ses: CheckoutSession) -> None:
        pi = ses.payment_intent_id
        if pi is None:
            return
        if ses.invoice_id is not None:
            self._link(ses.invoice_id, payment_intent=pi)
        elif ses.mode == "payment":
            self.state.one_time_payment_intents.setdefault(
                pi, CheckoutPayment(ses.id, ses.amount_total, ses.amount_tax)
            )

    # --- windows ---

    def expire_windows(self) -> None:
        s, cfg = self.state, self.config
        self._classify_charges()
        unclassified = [c for c in s.charges.values() if not c.settled and c.kind is None]
        for charge in sorted(unclassified, key=lambda c: (c.created, c.charge_id)):
            if charge.received_at + cfg.one_time_window_s > self.now:
                continue
            if not charge.link_probe_answered:
                self._probe_links(charge)
                continue
            invoice_id = self._invoice_by_amount(charge) if cfg.match_charges_by_amount else None
            if invoice_id is not None:
                self._link(invoice_id, charge=charge.charge_id)
                charge.kind = KIND_INVOICE
            elif cfg.match_charges_by_amount and self._looks_like_invoice_payment(charge):
                # An invoice of that amount exists but the match is not unique: guessing
                # could mis-assign, and earning it as one-time could count it twice.
                charge.kind = KIND_UNMATCHED
                charge.settled = True
            else:
                charge.kind = KIND_ONE_TIME
        waiting = [i for i in s.invoices.values() if not i.settled]
        if (
            s.anchor_at is None
            and waiting
            and min(i.received_at for i in waiting) + cfg.tenure_window_s <= self.now
        ):
            self._set_anchor()
        revenue = unattributed_revenue(s)
        if (
            s.attribution is None
            and not s.organic
            and revenue
            and min(f.received_at for f in revenue) + cfg.attribution_window_s <= self.now
        ):
            first = revenue[0]
            s.organic = True
            self._store_attribution(
                organic_output(s, first.event_id, first.event_type, first.event_created)
            )

    def _probe_links(self, charge: ChargeFact) -> None:
        """Ask the link agent whether it holds an invoice payment for this charge. Its answer
        comes back on the rerouted topic after every invoice payment it re-keyed to this
        customer, so once answered, no link still in flight can be missed."""
        sent = charge.link_probe_sent_at
        if sent is not None and sent + self.config.one_time_window_s > self.now:
            return  # asked already; ask again only if no answer came within a window
        charge.link_probe_sent_at = self.now
        s = self.state
        probe = {
            "owner": s.customer_key,
            "key_source": "payment_intent" if s.guest else "customer",
            "state_key": s.key,
            "charge_id": charge.charge_id,
        }
        self.outputs.append(
            Output(LINKS, charge.payment_intent_id or charge.charge_id, {"probe": probe})
        )

    def _invoice_by_amount(self, charge: ChargeFact) -> str | None:
        window = self.config.one_time_window_s
        candidates = [
            inv
            for inv in self.state.invoices.values()
            if inv.currency == charge.currency
            and inv.amount_paid == charge.amount_captured
            and abs(inv.paid_at - charge.created) <= window
            and not self._payment_known(inv)
        ]
        if len(candidates) != 1:
            return None  # none, or a guess between several: never mis-assign
        (only,) = candidates
        rivals = [
            c
            for c in self.state.charges.values()
            if c.charge_id != charge.charge_id
            and not c.settled
            and c.kind is None
            and invoice_for_charge(self.state, c.charge_id) is None
            and c.currency == only.currency
            and c.amount_captured == only.amount_paid
            and abs(only.paid_at - c.created) <= window
        ]
        return None if rivals else only.invoice_id

    def _looks_like_invoice_payment(self, charge: ChargeFact) -> bool:
        window = self.config.one_time_window_s
        return any(
            inv.currency == charge.currency
            and inv.amount_paid == charge.amount_captured
            and abs(inv.paid_at - charge.created) <= window
            and not self._payment_known(inv)
            for inv in self.state.invoices.values()
        )

    def _payment_known(self, inv: InvoiceFact) -> bool:
        """True when some link already names the payment of `inv` (then no guessing)."""
        s = self.state
        return bool(
            inv.payment_intent_ids
            or inv.charge_ids
            or inv.invoice_id in s.invoice_of_payment_intent.values()
            or inv.invoice_id in s.invoice_of_charge.values()
        )

    # --- settling ---

    def _classify_charges(self) -> None:
        s = self.state
        for charge in s.charges.values():
            if charge.settled:
                continue
            if invoice_for_charge(s, charge.charge_id) is not None:
                charge.kind = KIND_INVOICE  # a link beats a window-based guess not yet paid
            elif charge.kind is None and charge.payment_intent_id in s.one_time_payment_intents:
                charge.kind = KIND_ONE_TIME

    def _set_anchor(self) -> None:
        s = self.state
        first = min(s.invoices.values(), key=lambda i: (i.service_at, i.invoice_id))
        s.anchor_invoice_id, s.anchor_at = first.invoice_id, first.service_at

    def settle(self) -> None:
        s = self.state
        self._classify_charges()
        if s.anchor_at is None and any(
            i.billing_reason == "subscription_create" for i in s.invoices.values()
        ):
            self._set_anchor()
        for charge in s.charges.values():
            if not charge.settled and charge.kind == KIND_INVOICE:
                charge.settled = True  # its invoice carries the reward
        if s.attribution is None and not s.organic:
            return
        due: list[tuple[int, str, str]] = []
        if s.anchor_at is not None or s.organic:
            due += [(i.paid_at, i.invoice_id, KIND_INVOICE) for i in s.invoices.values()]
        due += [(c.created, c.charge_id, KIND_ONE_TIME) for c in s.charges.values()]
        for _, payment_id, kind in sorted(due):
            if kind == KIND_INVOICE and not s.invoices[payment_id].settled:
                self._settle_invoice(s.invoices[payment_id])
            elif kind == KIND_ONE_TIME:
                charge = s.charges[payment_id]
                if not charge.settled and charge.kind == KIND_ONE_TIME:
                    self._settle_charge(charge)

    def _programs_for(self, code: str) -> list[ProgramVersion]:
        return [
            pv for pv in self.programs if pv.program.active and pv.program.applies_to_code(code)
        ]

    def _settle_invoice(self, inv: InvoiceFact) -> None:
        s = self.state
        inv.settled = True
        touch = s.attribution
        if touch is None or s.organic or s.anchor_at is None:
            return
        month = tenure_month(s.anchor_at, inv.service_at)
        payment = Payment(
            payment_id=inv.invoice_id,
            currency=inv.currency,
            amount_minor=inv.amount_paid,
            paid_at=inv.paid_at,
            source_event_id=inv.event_id,
            invoice_id=inv.invoice_id,
            charge_id=_only(inv.charge_ids),
            payment_intent_id=_only(inv.payment_intent_ids),
            subscription_id=inv.subscription_id,
            tenure_month=month,
        )
        for pv in self._programs_for(touch.code):
            lines = invoice_lines(
                pv.program,
                currency=inv.currency,
                amount_paid=inv.amount_paid,
                total_excluding_tax=inv.total_excluding_tax,
                total=inv.total,
                tenure_month=month,
                first_invoice=inv.invoice_id == s.anchor_invoice_id,
                used_minor=_used(s, pv.program.id, inv.currency),
            )
            for line in lines:
                self._store_reward(
                    reward_output(
                        s, touch, pv, payment, line, decided_at=self.decided_at, now=self.now
                    )
                )

    def _settle_charge(self, charge: ChargeFact) -> None:
        s = self.state
        charge.settled = True
        touch = s.attribution
        if touch is None or s.organic:
            return
        total = tax_free = charge.amount_captured
        checkout = s.one_time_payment_intents.get(charge.payment_intent_id or "")
        if checkout is not None and checkout.amount_total and checkout.amount_tax:
            # Checkout knows the tax of a one-time payment; a bare charge does not.
            total, tax_free = checkout.amount_total, checkout.amount_total - checkout.amount_tax
        payment = Payment(
            payment_id=charge.charge_id,
            currency=charge.currency,
            amount_minor=charge.amount_captured,
            paid_at=charge.created,
            source_event_id=charge.event_id,
            charge_id=charge.charge_id,
            payment_intent_id=charge.payment_intent_id,
        )
        for pv in self._programs_for(touch.code):
            lines = one_time_lines(
                pv.program,
                currency=charge.currency,
                amount=charge.amount_captured,
                total_excluding_tax=tax_free,
                total=total,
                used_minor=_used(s, pv.program.id, charge.currency),
            )
            for line in lines:
                self._store_reward(
                    reward_output(
                        s, touch, pv, payment, line, decided_at=self.decided_at, now=self.now
                    )
                )

    def complete_payment_ids(self) -> None:
        """Re-emit a reward whose invoice's single payment became known after it was
        decided (basil: invoice_payment.paid, or the charge of a known payment intent),
        with `revision` + 1. Money fields never change between revisions."""
        s = self.state
        for reward_id in sorted(s.rewards):
            record = s.rewards[reward_id]
            invoice_id = record.get("invoice_id")
            if invoice_id is None or record["line"] == KIND_ONE_TIME:
                continue
            if record.get("charge_id") and record.get("payment_intent_id"):
                continue
            pis = sorted(p for p, inv in s.invoice_of_payment_intent.items() if inv == invoice_id)
            fact = s.invoices.get(invoice_id)
            if fact is not None:
                pis = sorted(set(pis) | set(fact.payment_intent_ids))
            charges = charge_ids_of_invoice(s, invoice_id)
            pi = pis[0] if len(pis) == 1 else None
            charge = charges[0] if len(charges) == 1 else None
            if len(pis) > 1 or len(charges) > 1:
                continue  # several payments: the correction core keeps their shares
            new_pi = record.get("payment_intent_id") or pi
            new_charge = record.get("charge_id") or charge
            if (new_pi, new_charge) == (record.get("payment_intent_id"), record.get("charge_id")):
                continue
            revised = {
                **record,
                "payment_intent_id": new_pi,
                "charge_id": new_charge,
                "revision": int(record.get("revision", 0)) + 1,
            }
            s.rewards[reward_id] = revised
            self.outputs.append(Output(REWARDS, revised["referral_code"], revised))

    def _store_reward(self, out: Output) -> None:
        rewards = self.state.rewards
        reward_id = out.value["reward_id"]
        if reward_id in rewards:
            return  # decided before (e.g. the same payment seen through another event)
        invariant(out.value["reward_amount_minor"] > 0, f"reward {reward_id} is not positive")
        invariant(out.value["livemode"] == self.state.livemode, f"reward {reward_id} mixes modes")
        rewards[reward_id] = out.value
        self.outputs.append(out)
