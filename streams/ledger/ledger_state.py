"""Per-customer ledger state: what one customer's events established so far.

One `CustomerState` per (mode, customer key); the customer key is the Stripe customer id,
or the payment intent id of a guest checkout. It is plain data with `to_json` /
`from_json` so that a worker table (with its changelog) can hold it as a JSON value, and
it carries everything later corrections need: every emitted reward record, and the
invoice <-> charge <-> payment-intent links. The lookups at the bottom are the read API
for streams/corrections.

`extra` is a JSON object owned by other decision modules (e.g. corrections may keep refund
progress there under their own key); this module copies it and never reads it.

State format (the `format` field of the JSON; `from_json` reads every earlier one):
- 1: every event id in `seen_event_ids`, every invoice, charge and reward forever.
- 2: `recent_event_ids` {id: event created} only within the dedup window; settled payments
  past the window shrink to `settled` {payment id: [paid at, [payment keys], kind]} and their
  rewards to `used` {"program/currency": minor}; past the settled horizon a summary is
  dropped and `settled_before` remembers up to when (streams/ledger/compaction.py). A format-1
  state is upgraded on read: its ids are kept with the latest event time the state knows,
  so they age out of the window like any other.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.corrections.errors import invariant as state_invariant  # raises InvariantViolation
from streams.ledger.attribution import Touch

STATE_FORMAT = 2
READ_FORMATS = (1, 2)  # formats from_json reads (older ones are upgraded)


def mode_tag(livemode: bool, account: str | None = None) -> str:
    """ "live" / "test", and "@acct_..." for a Connect account: part of every state key and
    record id, so modes and accounts can never share state or replace each other's records."""
    mode = "live" if livemode else "test"
    return mode if account is None else f"{mode}@{account}"


def state_key(livemode: bool, customer_key: str, account: str | None = None) -> str:
    """Table key of a customer's state: mode and account are part of it."""
    return f"{mode_tag(livemode, account)}:{customer_key}"


@dataclass
class InvoiceFact:
    """A paid invoice with a positive amount, as its first paid event showed it."""

    invoice_id: str
    currency: str
    amount_paid: int
    total: int
    total_excluding_tax: int
    billing_reason: str | None
    paid_at: int
    service_at: int  # service start of its subscription lines, else paid_at (tenure clock)
    subscription_id: str | None
    payment_intent_ids: list[str]  # as the invoice payload itself names them
    charge_ids: list[str]
    event_id: str
    event_type: str
    event_created: int
    settled: bool = False  # rewards decided (possibly none); never decided twice
    # Worker time when the fact arrived: windows measure how long it has waited, so a
    # replay of old events waits as long as a live delivery does.
    received_at: int = 0


@dataclass
class ChargeFact:
    """A succeeded, captured charge; `kind` says whether it is an invoice's or a one-time."""

    charge_id: str
    payment_intent_id: str | None
    currency: str
    amount_captured: int
    created: int
    event_id: str
    event_type: str
    event_created: int
    kind: str | None = None  # None until known: "invoice" or "one_time"
    settled: bool = False
    received_at: int = 0  # worker time when the fact arrived (see InvoiceFact)
    # Before a charge is called one-time, the link agent confirms that it holds no invoice
    # payment for it (customer_ledger rule 4): when the probe went out, and its answer.
    link_probe_sent_at: int | None = None
    link_probe_answered: bool = False


@dataclass
class CheckoutPayment:
    """A payment-mode Checkout Session that created no invoice: its payment is one-time."""

    session_id: str
    amount_total: int | None
    amount_tax: int | None


@dataclass
class CustomerState:
    customer_key: str
    livemode: bool
    guest: bool  # keyed by payment intent (no Stripe customer)
    # Event id -> Stripe `created`, for the ids within the dedup window (customer_ledger).
    recent_event_ids: dict[str, int] = field(default_factory=dict)
    attribution: Touch | None = None
    organic: bool = False
    invoices: dict[str, InvoiceFact] = field(default_factory=dict)
    charges: dict[str, ChargeFact] = field(default_factory=dict)
    invoice_of_payment_intent: dict[str, str] = field(default_factory=dict)
    invoice_of_charge: dict[str, str] = field(default_factory=dict)
    one_time_payment_intents: dict[str, CheckoutPayment] = field(default_factory=dict)
    anchor_invoice_id: str | None = None
    anchor_at: int | None = None
    rewards: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> reward record
    attributions: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record
    extra: dict[str, Any] = field(default_factory=dict)
    account: str | None = None  # Connect: the connected account, None for the platform
    # Compacted payments (streams/ledger/compaction.py): invoice or one-time charge id ->
    # [paid at, sorted payment keys (payment intents and charges that paid it), kind]
    # with kind "invoice" or "one_time".
    settled: dict[str, list[Any]] = field(default_factory=dict)
    # "program_id/currency" -> minor units of the compacted payments' rewards (caps).
    used: dict[str, int] = field(default_factory=dict)
    # Every payment paid at or before this was dropped past the settled horizon (0: none).
    settled_before: int = 0

    @property
    def key(self) -> str:
        return state_key(self.livemode, self.customer_key, self.account)

    @property
    def customer_id(self) -> str | None:
        return None if self.guest else self.customer_key

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "customer_key": self.customer_key,
            "livemode": self.livemode,
            "guest": self.guest,
            "recent_event_ids": dict(self.recent_event_ids),
            "attribution": None if self.attribution is None else self.attribution.to_json(),
            "organic": self.organic,
            "invoices": {k: asdict(v) for k, v in self.invoices.items()},
            "charges": {k: asdict(v) for k, v in self.charges.items()},
            "invoice_of_payment_intent": dict(self.invoice_of_payment_intent),
            "invoice_of_charge": dict(self.invoice_of_charge),
            "one_time_payment_intents": {
                k: asdict(v) for k, v in self.one_time_payment_intents.items()
            },
            "anchor_invoice_id": self.anchor_invoice_id,
            "anchor_at": self.anchor_at,
            "rewards": _clone(self.rewards),
            "attributions": _clone(self.attributions),
            "extra": _clone(self.extra),
            "account": self.account,
            "settled": {k: [v[0], list(v[1]), v[2]] for k, v in self.settled.items()},
            "used": dict(self.used),
            "settled_before": self.settled_before,
        }

    def json_view(self) -> dict[str, Any]:
        """`to_json()`'s value without its copies: it shares this state's dicts and lists,
        so it is only for serialising at once (what a table write does), never to keep."""
        return {
            "format": STATE_FORMAT,
            "customer_key": self.customer_key,
            "livemode": self.livemode,
            "guest": self.guest,
            "recent_event_ids": self.recent_event_ids,
            "attribution": None if self.attribution is None else vars(self.attribution),
            "organic": self.organic,
            "invoices": {k: vars(v) for k, v in self.invoices.items()},
            "charges": {k: vars(v) for k, v in self.charges.items()},
            "invoice_of_payment_intent": self.invoice_of_payment_intent,
            "invoice_of_charge": self.invoice_of_charge,
            "one_time_payment_intents": {
                k: vars(v) for k, v in self.one_time_payment_intents.items()
            },
            "anchor_invoice_id": self.anchor_invoice_id,
            "anchor_at": self.anchor_at,
            "rewards": self.rewards,
            "attributions": self.attributions,
            "extra": self.extra,
            "account": self.account,
            "settled": self.settled,
            "used": self.used,
            "settled_before": self.settled_before,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, owned: bool = False) -> CustomerState:
        """`owned`: `data` is the caller's to give away (just parsed), so the state keeps
        its plain parts (rewards, attributions, extra) instead of copies."""
        clone = _same if owned else _clone
        # State that cannot be read is a bug or a deployment fault, not bad input: stop.
        # A format this code does not know was written by newer code: stop, never guess.
        state_invariant(
            data.get("format") in READ_FORMATS,
            f"customer state format {data.get('format')!r}, expected one of {READ_FORMATS}",
        )
        if data["format"] == 1:
            data = _upgrade_from_1(data)
        touch = data["attribution"]
        return cls(
            customer_key=data["customer_key"],
            livemode=data["livemode"],
            guest=data["guest"],
            recent_event_ids=dict(data["recent_event_ids"]),
            attribution=None if touch is None else Touch.from_json(touch),
            organic=data["organic"],
            invoices={k: InvoiceFact(**v) for k, v in data["invoices"].items()},
            charges={k: ChargeFact(**v) for k, v in data["charges"].items()},
            invoice_of_payment_intent=dict(data["invoice_of_payment_intent"]),
            invoice_of_charge=dict(data["invoice_of_charge"]),
            one_time_payment_intents={
                k: CheckoutPayment(**v) for k, v in data["one_time_payment_intents"].items()
            },
            anchor_invoice_id=data["anchor_invoice_id"],
            anchor_at=data["anchor_at"],
            rewards=clone(data["rewards"]),
            attributions=clone(data["attributions"]),
            extra=clone(data["extra"]),
            account=data.get("account"),
            settled={k: [v[0], list(v[1]), v[2]] for k, v in data["settled"].items()},
            used=dict(data["used"]),
            settled_before=data["settled_before"],
        )

    def copy(self) -> CustomerState:
        """A deep copy (pickle: a third of the time of a to_json/from_json round trip on a
        year-old state, and every decision starts with one)."""
        frozen = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        copied: CustomerState = pickle.loads(frozen)  # noqa: S301 -- our own bytes, not input
        return copied


def _same(value: Any) -> Any:
    return value


def _clone(value: Any) -> Any:
    """A deep copy of plain data (pickle: several times faster than copy.deepcopy)."""
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 -- our own bytes


def _upgrade_from_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: the seen ids get the latest event time the state knows (so they age
    out of the dedup window once newer events pass it); nothing is compacted yet (the next
    decision compacts what is due)."""
    facts = [*data["invoices"].values(), *data["charges"].values()]
    latest = max((int(f["event_created"]) for f in facts), default=0)
    new = {k: v for k, v in data.items() if k != "seen_event_ids"}
    new.update(
        format=2,
        recent_event_ids={event_id: latest for event_id in data["seen_event_ids"]},
        settled={},
        used={},
        settled_before=0,
    )
    return new


def settled_payment_of(state: CustomerState, key: str, kind: str | None = None) -> str | None:
    """The compacted invoice or one-time charge (of `kind`, if given) that `key` (its id, a
    payment intent or a charge id) paid, or None."""
    for payment_id, (_, keys, its_kind) in state.settled.items():
        if (key == payment_id or key in keys) and kind in (None, its_kind):
            return payment_id
    return None


# --- lookups (the read API for corrections) -------------------------------------------------


def invoice_for_charge(state: CustomerState, charge_id: str) -> str | None:
    """The invoice a charge paid, by any link seen (charge.invoice, invoice payload,
    invoice_payment.paid, Checkout, amount match); None for one-time or unknown charges."""
    invoice_id = state.invoice_of_charge.get(charge_id)
    if invoice_id is not None:
        return invoice_id
    fact = state.charges.get(charge_id)
    if fact is not None and fact.payment_intent_id is not None:
        invoice_id = state.invoice_of_payment_intent.get(fact.payment_intent_id)
        if invoice_id is not None:
            return invoice_id
    if state.settled:  # a late charge of a compacted invoice still belongs to it
        for key in (charge_id, fact.payment_intent_id if fact is not None else None):
            settled = None if key is None else settled_payment_of(state, key, "invoice")
            if settled is not None:
                return settled
    return None


def rewards_for_invoice(state: CustomerState, invoice_id: str) -> list[dict[str, Any]]:
    return sorted(
        (r for r in state.rewards.values() if r["invoice_id"] == invoice_id),
        key=lambda r: r["reward_id"],
    )


def rewards_for_charge(
    state: CustomerState, charge_id: str, payment_intent_id: str | None = None
) -> list[dict[str, Any]]:
    """Every reward the payment behind `charge_id` earned: the one-time reward of that
    charge, or the rewards of the invoice it paid. Pass the charge's payment intent when
    the caller knows it (a refund may arrive before the charge event): it is a link too."""
    invoice_id = invoice_for_charge(state, charge_id)
    if invoice_id is None and payment_intent_id is not None:
        invoice_id = state.invoice_of_payment_intent.get(payment_intent_id)
    if invoice_id is not None:
        return rewards_for_invoice(state, invoice_id)
    return _one_time_rewards(state, "charge_id", charge_id)


def rewards_for_payment_intent(
    state: CustomerState, payment_intent_id: str
) -> list[dict[str, Any]]:
    invoice_id = state.invoice_of_payment_intent.get(payment_intent_id)
    if invoice_id is not None:
        return rewards_for_invoice(state, invoice_id)
    return _one_time_rewards(state, "payment_intent_id", payment_intent_id)


def _one_time_rewards(state: CustomerState, field_name: str, value: str) -> list[dict[str, Any]]:
    """The one-time rewards whose record names `value` in `field_name`, by reward id."""
    found = (
        r for r in state.rewards.values() if r["line"] == "one_time" and r[field_name] == value
    )
    return sorted(found, key=lambda r: r["reward_id"])


def charge_ids_of_invoice(state: CustomerState, invoice_id: str) -> list[str]:
    """Charges known to have paid the invoice (empty when no link was seen yet)."""
    ids = {c for c, inv in state.invoice_of_charge.items() if inv == invoice_id}
    pis = {p for p, inv in state.invoice_of_payment_intent.items() if inv == invoice_id}
    ids |= {c.charge_id for c in state.charges.values() if c.payment_intent_id in pis}
    fact = state.invoices.get(invoice_id)
    if fact is not None:
        ids |= set(fact.charge_ids)
    return sorted(ids)
