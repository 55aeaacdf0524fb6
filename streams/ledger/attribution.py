"""Where a referral code can legitimately be, and the touches found there.

A *touch* is one sighting of a referral code on a Stripe object. The ledger applies the
first one it processes for a customer and never changes it afterwards (see
streams/ledger/customer_ledger.py for why "first processed" and not "earliest created").

Places read, by source name (the `source` field of schemas/attribution.avsc):

- customer_metadata: customer.created / .updated -> customer.metadata
- subscription_metadata: customer.subscription.* -> subscription.metadata
- checkout_session: checkout.session.completed (and .async_payment_succeeded) ->
  session.metadata
- checkout_subscription_data / checkout_payment_intent_data: the same events, when the
  session's `subscription` / `payment_intent` is an expanded object -> its metadata
- invoice_subscription_snapshot: invoice.* -> `parent.subscription_details.metadata`
  (basil) or `subscription_details.metadata` (before)
- invoice_line: invoice.* -> metadata of subscription-type lines
- charge_metadata: charge.succeeded / .captured -> charge.metadata (Stripe copies
  `payment_intent_data.metadata` there at confirmation)

Subscription metadata set through Checkout's `subscription_data.metadata` is seen on the
`customer.subscription.*` events (source subscription_metadata) and on every invoice's
snapshot; `payment_intent_data.metadata` is seen on the charge (source charge_metadata).
Within one event, touches are listed in the order above, so the choice among
several places of one event is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from streams.ledger.stripe_payloads import (
    Charge,
    CheckoutSession,
    Customer,
    Invoice,
    StripeEvent,
    Subscription,
)

SOURCES = (
    "customer_metadata",
    "subscription_metadata",
    "checkout_session",
    "checkout_subscription_data",
    "checkout_payment_intent_data",
    "invoice_subscription_snapshot",
    "invoice_line",
    "charge_metadata",
    "stripe_lookup",  # read from the Stripe API by the worker (streams/worker/stripe_lookup.py)
)


@dataclass(frozen=True)
class MetadataKeys:
    """The metadata key names of the referral integration (configurable per deployment)."""

    code: str = "cello_ucc"
    new_user_id: str = "new_user_id"
    organization_id: str = "new_user_organization_id"


@dataclass(frozen=True)
class Touch:
    """One sighting of a referral code: what, where, and in which event."""

    code: str
    new_user_id: str | None
    organization_id: str | None
    source: str
    source_object_id: str | None
    event_id: str
    event_type: str
    at: int  # the event's Stripe `created`, unix seconds

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Touch:
        return cls(**data)


def touch_from_metadata(
    metadata: Mapping[str, str],
    keys: MetadataKeys,
    *,
    source: str,
    source_object_id: str | None,
    event: StripeEvent,
) -> Touch | None:
    """The touch carried by one metadata map, or None when it holds no (non-blank) code."""
    code = metadata.get(keys.code, "").strip()
    if not code:
        return None
    return Touch(
        code=code,
        new_user_id=metadata.get(keys.new_user_id) or None,
        organization_id=metadata.get(keys.organization_id) or None,
        source=source,
        source_object_id=source_object_id,
        event_id=event.event_id,
        event_type=event.type,
        at=event.created,
    )


def touches_in(event: StripeEvent, obj: object, keys: MetadataKeys) -> list[Touch]:
    """Every touch the parsed object of `event` carries, in the documented source order."""
    found: list[Touch | None] = []

    def add(metadata: Mapping[str, str] | None, source: str, object_id: str | None) -> None:
        if metadata:
            found.append(
                touch_from_metadata(
                    metadata, keys, source=source, source_object_id=object_id, event=event
                )
            )

    if isinstance(obj, Customer):
        add(obj.metadata, "customer_metadata", obj.id)
    elif isinstance(obj, Subscription):
        add(obj.metadata, "subscription_metadata", obj.id)
    elif isinstance(obj, CheckoutSession):
        add(obj.metadata, "checkout_session", obj.id)
        add(obj.subscription_metadata, "checkout_subscription_data", obj.subscription_id)
        add(obj.payment_intent_metadata, "checkout_payment_intent_data", obj.payment_intent_id)
    elif isinstance(obj, Invoice):
        add(obj.subscription_metadata, "invoice_subscription_snapshot", obj.id)
        for line in obj.lines:
            if line.is_subscription_line:
                add(line.metadata, "invoice_line", obj.id)
    elif isinstance(obj, Charge):
        add(obj.metadata, "charge_metadata", obj.id)
    return [touch for touch in found if touch is not None]
