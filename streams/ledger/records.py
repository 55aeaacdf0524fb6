"""Output records of the customer ledger, as dicts of schemas/reward.avsc and
schemas/attribution.avsc, wrapped in an `Output` that names the topic and the key.

Ids are deterministic (derived from the cause), so a re-emission after a crash carries the
same id and downstream stores keep one copy:
- reward:      "{mode}/{program_id}/{invoice or charge id}/{line}"  (streams.ledger.rewards)
- attribution: "{mode}/attribution/{customer_key}", "{mode}/organic/{customer_key}",
               "{mode}/conflict/{customer_key}/{code}"
where mode is "live" or "test", so the two modes can never replace each other downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from refstream.topic_names import ATTRIBUTIONS, REWARDS
from streams.ledger.attribution import Touch
from streams.ledger.ledger_state import CustomerState, mode_tag
from streams.ledger.programs import ProgramVersion
from streams.ledger.rewards import RewardLine, reward_id

KIND_ATTRIBUTION = "attribution"
KIND_CONFLICT = "conflict"
KIND_ORGANIC = "organic"
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Output:
    """One record to produce: `topic` is the unprefixed name from refstream.topics."""

    topic: str
    key: str
    value: dict[str, Any]


def attribution_id(
    livemode: bool,
    kind: str,
    customer_key: str,
    code: str | None = None,
    account: str | None = None,
) -> str:
    base = f"{mode_tag(livemode, account)}/{kind}/{customer_key}"
    return base if code is None else f"{base}/{code}"


def attribution_output(state: CustomerState, kind: str, touch: Touch) -> Output:
    """An attribution or conflict record for `touch`."""
    value = {
        "attribution_id": attribution_id(
            state.livemode,
            kind,
            state.customer_key,
            touch.code if kind == KIND_CONFLICT else None,
            state.account,
        ),
        "kind": kind,
        "customer_key": state.customer_key,
        "customer_id": state.customer_id,
        "referral_code": touch.code,
        "new_user_id": touch.new_user_id,
        "new_user_organization_id": touch.organization_id,
        "source": touch.source,
        "source_object_id": touch.source_object_id,
        "event_id": touch.event_id,
        "event_type": touch.event_type,
        "attributed_at": touch.at,
        "livemode": state.livemode,
        "account": state.account,
    }
    return Output(ATTRIBUTIONS, state.customer_key, value)


def organic_output(state: CustomerState, event_id: str, event_type: str, at: int) -> Output:
    value = {
        "attribution_id": attribution_id(
            state.livemode, KIND_ORGANIC, state.customer_key, account=state.account
        ),
        "kind": KIND_ORGANIC,
        "customer_key": state.customer_key,
        "customer_id": state.customer_id,
        "referral_code": None,
        "new_user_id": None,
        "new_user_organization_id": None,
        "source": "none",
        "source_object_id": None,
        "event_id": event_id,
        "event_type": event_type,
        "attributed_at": at,
        "livemode": state.livemode,
        "account": state.account,
    }
    return Output(ATTRIBUTIONS, state.customer_key, value)


@dataclass(frozen=True)
class Payment:
    """The payment a reward is for, with the ids its own payload carries."""

    payment_id: str  # the invoice id, or the charge id of a one-time payment
    currency: str
    amount_minor: int
    paid_at: int
    source_event_id: str
    invoice_id: str | None = None
    charge_id: str | None = None
    payment_intent_id: str | None = None
    subscription_id: str | None = None
    tenure_month: int | None = None


def _rate_text(rate: Decimal | None) -> str | None:
    return None if rate is None else f"{rate.normalize():f}"


def reward_output(
    state: CustomerState,
    touch: Touch,
    program: ProgramVersion,
    payment: Payment,
    line: RewardLine,
    *,
    decided_at: int,
    now: int,
) -> Output:
    """A reward record; status is payable at once when the hold is already over at `now`."""
    hold_until = payment.paid_at + program.program.hold_days * SECONDS_PER_DAY
    value = {
        "reward_id": reward_id(
            state.livemode, program.program.id, payment.payment_id, line.line, state.account
        ),
        "line": line.line,
        "referral_code": touch.code,
        "customer_key": state.customer_key,
        "customer_id": state.customer_id,
        "new_user_id": touch.new_user_id,
        "new_user_organization_id": touch.organization_id,
        "invoice_id": payment.invoice_id,
        "charge_id": payment.charge_id,
        "payment_intent_id": payment.payment_intent_id,
        "subscription_id": payment.subscription_id,
        "payment_amount_minor": payment.amount_minor,
        "base_amount_minor": line.base_minor,
        "reward_amount_minor": line.amount_minor,
        "currency": payment.currency,
        "rate": _rate_text(line.rate),
        "basis": program.program.basis,
        "tenure_month": payment.tenure_month,
        "program_id": program.program.id,
        "program_version": program.version,
        "livemode": state.livemode,
        "status": "payable" if now >= hold_until else "pending",
        "hold_until": hold_until,
        "paid_at": payment.paid_at,
        "source_event_id": payment.source_event_id,
        "decided_at": decided_at,
        "revision": 0,
        "account": state.account,
    }
    return Output(REWARDS, touch.code, value)
