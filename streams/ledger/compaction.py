"""Compaction of one customer's state: settled payments shrink, old ones are forgotten.

Pure, called by customer_ledger at the end of every decision and tick (on the run's
private copy), so the state an event reads and writes stays bounded however old the
customer is:

1. Settled (rewards decided, its payment known, no charge of it still waiting) and
   received more than `dedup_window_s` ago (past Stripe's 3-day retries, the 30 days of
   its Events API that replays read, and every ledger window): an
   invoice or one-time charge leaves `invoices` / `charges` / `rewards` and the link maps,
   and becomes `settled[payment id] = [paid at, payment keys, kind]`; its rewards' amounts
   go to `used` (the program caps read them). Its correction book entries go to cold
   storage (corrections/cold.py), exact, and are thawed by any later fact about them.
2. Paid more than `settled_horizon_s` ago: the summary is dropped and `settled_before`
   (and the book's `dropped_before`) remember up to when. An event that would create an
   invoice or charge paid before it raises BeyondHorizon (dead-lettered), because a
   replay and a first delivery can no longer be told apart.

Why a replayed old invoice.paid (or charge.succeeded, invoice_payment.paid) rewards
nothing: its payment is still live (rewards are keyed by payment, `_store_reward` keeps
the first), or in `settled` (customer_ledger skips it as settled), or older than
`settled_before` (refused loudly). None of these needs the event id, which is why dedup
can be windowed.
"""

from __future__ import annotations

from typing import Any

from streams.corrections import cold
from streams.corrections.payments import upgrade as upgrade_book
from streams.ledger.config import LedgerConfig
from streams.ledger.ledger_state import ChargeFact, CustomerState, InvoiceFact, invoice_for_charge

KIND_INVOICE = "invoice"
KIND_ONE_TIME = "one_time"
_EARNING_CHARGE_KINDS = ("one_time", "unmatched")  # customer_ledger's non-invoice kinds


def remember_event(state: CustomerState, event_id: str, created: int, window_s: int) -> None:
    """Add an event id to the dedup window and forget ids older than the window (by Stripe
    `created`, against the newest id kept)."""
    ids = state.recent_event_ids
    ids[event_id] = created
    newest = max(ids.values())
    for old in [i for i, at in ids.items() if at < newest - window_s]:
        del ids[old]


def used_key(program_id: str, currency: str) -> str:
    return f"{program_id}/{currency}"


def compact(state: CustomerState, config: LedgerConfig, now: int) -> None:
    """Shrink what is settled and forget what is past the horizon (mutates `state`)."""
    horizon = config.settled_horizon_s
    if horizon is None:
        return
    lag = config.dedup_window_s
    frozen: list[str] = []
    for inv in sorted(state.invoices.values(), key=lambda i: i.invoice_id):
        if _invoice_done(state, inv, now, lag):
            _freeze_invoice(state, inv)
            frozen.append(inv.invoice_id)
    for charge in sorted(state.charges.values(), key=lambda c: c.charge_id):
        if not charge.settled or charge.received_at + lag > now:
            continue
        if charge.kind in _EARNING_CHARGE_KINDS:
            _freeze_charge(state, charge)
            frozen.append(charge.charge_id)
        elif (invoice_id := invoice_for_charge(state, charge.charge_id)) in state.settled:
            _absorb_late_charge(state, invoice_id, charge)  # its invoice went first
    _prune_links(state)
    for payment_id, (paid_at, _, _) in sorted(state.settled.items()):
        if paid_at + horizon <= now:
            del state.settled[payment_id]
            state.settled_before = max(state.settled_before, paid_at)
    book = state.extra.get("corrections")
    if book is not None and (frozen or state.settled or state.settled_before):
        book = upgrade_book(book)
        # Every compacted payment: also those a late fact thawed since (cold.py).
        who = (state.customer_key, state.livemode, state.account)
        cold.freeze(book, state.settled, who)
        cold.drop(
            book, keep=set(state.settled), before=state.settled_before, now=now, horizon_s=horizon
        )
        state.extra["corrections"] = book


def _invoice_done(state: CustomerState, inv: InvoiceFact, now: int, lag: int) -> bool:
    if not inv.settled or inv.received_at + lag > now:
        return False
    if not _keys_of_invoice(state, inv.invoice_id):
        # No link names its payment yet: a charge still to come may be matched to it by
        # amount (customer_ledger rule 4), so it must stay whole. Only an invoice whose
        # charge never arrives stays live for good.
        return False
    return not any(
        not c.settled and invoice_for_charge(state, c.charge_id) == inv.invoice_id
        for c in state.charges.values()
    )


def _keys_of_invoice(state: CustomerState, invoice_id: str) -> set[str]:
    keys = {p for p, i in state.invoice_of_payment_intent.items() if i == invoice_id}
    keys |= {c for c, i in state.invoice_of_charge.items() if i == invoice_id}
    fact = state.invoices.get(invoice_id)
    if fact is not None:
        keys |= set(fact.payment_intent_ids) | set(fact.charge_ids)
    return keys


def _move_rewards(state: CustomerState, belongs: Any) -> None:
    for reward_id in sorted(state.rewards):
        record = state.rewards[reward_id]
        if belongs(record):
            key = used_key(record["program_id"], record["currency"])
            state.used[key] = state.used.get(key, 0) + int(record["reward_amount_minor"])
            del state.rewards[reward_id]


def _freeze_invoice(state: CustomerState, inv: InvoiceFact) -> None:
    invoice_id = inv.invoice_id
    keys = _keys_of_invoice(state, invoice_id)
    for charge in list(state.charges.values()):
        if invoice_for_charge(state, charge.charge_id) == invoice_id:
            keys.add(charge.payment_intent_id or charge.charge_id)
            if charge.payment_intent_id:
                keys.discard(charge.charge_id)  # a replay of it names its payment intent
            del state.charges[charge.charge_id]
    _move_rewards(state, lambda r: r.get("invoice_id") == invoice_id and r["line"] != KIND_ONE_TIME)
    state.settled[invoice_id] = [inv.paid_at, sorted(keys), KIND_INVOICE]
    del state.invoices[invoice_id]


def _freeze_charge(state: CustomerState, charge: ChargeFact) -> None:
    charge_id, pi = charge.charge_id, charge.payment_intent_id
    _move_rewards(state, lambda r: r["line"] == KIND_ONE_TIME and r.get("charge_id") == charge_id)
    if pi is not None:
        state.one_time_payment_intents.pop(pi, None)
    state.settled[charge_id] = [charge.created, [pi] if pi else [], KIND_ONE_TIME]
    del state.charges[charge_id]


def _absorb_late_charge(state: CustomerState, invoice_id: str, charge: ChargeFact) -> None:
    paid_at, keys, kind = state.settled[invoice_id]
    new = set(keys) | {charge.payment_intent_id or charge.charge_id}
    state.settled[invoice_id] = [paid_at, sorted(new), kind]
    del state.charges[charge.charge_id]


def _prune_links(state: CustomerState) -> None:
    """Links to compacted invoices live in their summary (replays may add them back)."""
    for links in (state.invoice_of_payment_intent, state.invoice_of_charge):
        for key in [k for k, invoice_id in links.items() if invoice_id in state.settled]:
            paid_at, keys, kind = state.settled[links[key]]
            if key not in keys:
                state.settled[links[key]] = [paid_at, sorted({*keys, key}), kind]
            del links[key]
