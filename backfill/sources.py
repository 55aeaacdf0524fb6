"""What the backfill reads from Stripe: one list endpoint per source, in publishing order.

`events` is the Events API (the last 30 days, replayed as Stripe kept them, same ids); the
others are objects, turned into events by backfill/synthesize.py for the time before it.
Every list is filtered by `created` (one time slice at a time) and read newest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.ledger.required_events import REQUIRED_EVENTS

EVENTS = "events"
# Stripe keeps events for 30 days; the backfill stops asking the Events API this much
# earlier, so an event cannot age out between planning and reading.
EVENTS_RETENTION_S = 30 * 86_400
EVENTS_MARGIN_S = 3_600


@dataclass(frozen=True)
class Source:
    name: str  # the --types name
    path: str
    params: Mapping[str, Any] = field(default_factory=dict)


OBJECT_SOURCES: tuple[Source, ...] = (
    Source("customers", "/v1/customers"),
    # Without status=all the list leaves out canceled subscriptions.
    Source("subscriptions", "/v1/subscriptions", {"status": "all"}),
    Source("checkout_sessions", "/v1/checkout/sessions"),
    # payments is includable: only an expanded invoice names the payments that paid it.
    Source("invoices", "/v1/invoices", {"expand": ["data.payments"]}),
    Source("charges", "/v1/charges"),
    Source("invoice_payments", "/v1/invoice_payments"),
    Source("refunds", "/v1/refunds"),
    Source("disputes", "/v1/disputes"),
)
# The Events API filter: the types the ledger uses (<= 20, Stripe's limit for `types`).
EVENT_TYPES = tuple(sorted({e.type for e in REQUIRED_EVENTS} | {"invoice.payment_succeeded"}))
EVENTS_SOURCE = Source(EVENTS, "/v1/events", {"types": list(EVENT_TYPES)})
ALL_SOURCES: tuple[Source, ...] = (*OBJECT_SOURCES, EVENTS_SOURCE)
SOURCE_NAMES = tuple(s.name for s in ALL_SOURCES)

# Order of events of one time slice that share a `created` second: what attributes a
# customer first, then revenue, then its links, then corrections.
TYPE_RANK = {
    "customer.created": 0,
    "customer.subscription.created": 1,
    "checkout.session.completed": 2,
    "invoice.paid": 3,
    "charge.succeeded": 4,
    "invoice_payment.paid": 5,
    "charge.refunded": 6,
    "refund.created": 7,
    "refund.failed": 8,
    "refund.updated": 8,
    "charge.dispute.created": 9,
    "charge.dispute.closed": 10,
    "customer.subscription.deleted": 11,
}


def sources_named(names: list[str] | None) -> tuple[Source, ...]:
    """The sources of a --types list (all when None), in publishing order."""
    if not names:
        return ALL_SOURCES
    unknown = sorted(set(names) - set(SOURCE_NAMES))
    if unknown:
        raise ValueError(f"unknown --types {', '.join(unknown)}; known: {', '.join(SOURCE_NAMES)}")
    return tuple(s for s in ALL_SOURCES if s.name in names)
