"""Which Stripe event types an endpoint must send, per API family, and what each one is for.

Pure data and one comparison; `refstream doctor` (refstream/doctor.py) checks it against the
events the pipeline has seen and, with an API key, against the account's webhook endpoints.
The README's "Stripe events to enable" lists the same table (a test keeps them in step).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PRE_BASIL = "pre-basil"
BASIL = "basil+"
FAMILIES = (PRE_BASIL, BASIL)


@dataclass(frozen=True)
class RequiredEvent:
    type: str
    families: tuple[str, ...]
    lost_without: str  # what the ledger cannot do without it


REQUIRED_EVENTS: tuple[RequiredEvent, ...] = (
    RequiredEvent("customer.created", FAMILIES, "referral codes in customer metadata"),
    RequiredEvent("customer.updated", FAMILIES, "codes added to a customer after creation"),
    RequiredEvent(
        "customer.subscription.created", FAMILIES, "codes in subscription metadata; lifecycle"
    ),
    RequiredEvent("customer.subscription.updated", FAMILIES, "upgrades, downgrades, cancellations"),
    RequiredEvent("customer.subscription.deleted", FAMILIES, "churn in the lifecycle topic"),
    RequiredEvent(
        "checkout.session.completed",
        FAMILIES,
        "codes on Checkout Sessions, guest purchases, one-time vs invoice payments",
    ),
    RequiredEvent("invoice.paid", FAMILIES, "every subscription reward (the revenue fact)"),
    RequiredEvent(
        "invoice_payment.paid",
        (BASIL,),
        "the only invoice <-> charge link in basil+ webhooks: without it refunds and "
        "disputes of invoices claw back nothing",
    ),
    RequiredEvent(
        "charge.succeeded",
        FAMILIES,
        "one-time rewards, and the customer behind each payment intent (routing of "
        "invoice_payment, refunds and disputes)",
    ),
    RequiredEvent("charge.captured", FAMILIES, "one-time rewards of manually captured charges"),
    RequiredEvent("charge.refunded", FAMILIES, "refund clawbacks (cumulative amount)"),
    RequiredEvent(
        "charge.updated", FAMILIES, "refunds that fail later (amount_refunded going down)"
    ),
    RequiredEvent("refund.created", FAMILIES, "refund clawbacks per refund, in any order"),
    RequiredEvent("refund.updated", FAMILIES, "refunds canceled after they were counted"),
    RequiredEvent("refund.failed", FAMILIES, "refunds that fail after they were counted"),
    RequiredEvent("charge.dispute.created", FAMILIES, "chargeback clawbacks"),
    RequiredEvent("charge.dispute.updated", FAMILIES, "inquiries escalating to chargebacks"),
    RequiredEvent(
        "charge.dispute.closed", FAMILIES, "reinstatement of won disputes; lost ones final"
    ),
)


def required_types(family: str) -> list[str]:
    """Event types an endpoint of that API family must send."""
    if family not in FAMILIES:
        raise ValueError(f"unknown API family {family!r}: one of {', '.join(FAMILIES)}")
    return [e.type for e in REQUIRED_EVENTS if family in e.families]


def family_of(api_version: str | None) -> str:
    return BASIL if api_version is not None and api_version[:10] >= "2025-03-31" else PRE_BASIL


def enabled_covers(enabled: Iterable[str], event_type: str) -> bool:
    """Whether a webhook endpoint's `enabled_events` (which may hold "*" or "charge.*"
    style wildcards) sends `event_type`."""
    for pattern in enabled:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def missing(family: str, present: Iterable[str]) -> list[RequiredEvent]:
    """Required events of `family` that `present` (seen or enabled types) lacks."""
    have = list(present)
    return [e for e in REQUIRED_EVENTS if family in e.families and not enabled_covers(have, e.type)]
