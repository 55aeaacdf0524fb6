"""Realistic Stripe webhook payloads, for both API-version families.

The simulator builds its traffic with these, and every test that needs Stripe events
(streams, ingress, worker, sinks) uses them through tests/support/factories.py.
Dependency-free: json, hmac and a seeded `random.Random`, so a seed reproduces every id.

    f = StripeFactory(api_version=BASIL, seed=7)          # or PRE_BASIL ("2024-06-20")
    cus = f.customer(created=t0, metadata={"cello_ucc": "ACME"})
    ev = f.event("customer.created", cus, created=t0)    # a full v1 snapshot event (dict)
    body = event_bytes(ev)                               # bytes as Stripe sends them
    header = signature_header(body, "whsec_test", timestamp=t0)   # Stripe-Signature
    record = f.envelope(ev)                              # the stripe.events Avro record

    story = subscription_story(f, start=t0, code="ACME", code_on="subscription")
    story.events       # the customer's year: customer, subscription, invoices, charges...

Shapes follow /work/shared/STRIPE.md: before basil an invoice carries `subscription`,
`subscription_details`, `charge`, `payment_intent`, `paid`, `tax` and a charge carries
`invoice`; from basil on the invoice has `parent.subscription_details`, `total_taxes`,
optional `payments` (Stripe treats it as includable, so webhooks usually lack it:
`include_payments=False` is the default) and the charge has no `invoice`. Amounts are
integers in minor units; times are unix seconds.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import string
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from streams.tenure import add_months

PRE_BASIL = "2024-06-20"
BASIL = "2025-03-31.basil"
API_VERSIONS = (PRE_BASIL, BASIL)
DAY = 86_400
# 2025-05-01T00:00:00Z: a start date valid for both families.
DEFAULT_START = 1_746_057_600
_ALNUM = string.ascii_letters + string.digits

Json = dict[str, Any]

__all__ = [
    "API_VERSIONS",
    "BASIL",
    "CODE_PLACES",
    "DAY",
    "DEFAULT_START",
    "PRE_BASIL",
    "CustomerStory",
    "Json",
    "Line",
    "ScenarioClock",
    "StripeFactory",
    "event_bytes",
    "one_time_story",
    "referral_metadata",
    "routing_key",
    "signature_header",
    "subscription_story",
]


def event_bytes(event: Json) -> bytes:
    """The body as Stripe sends it (pretty-printed JSON, UTF-8)."""
    return json.dumps(event, indent=2).encode()


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """A Stripe-Signature header for `body`, signed like Stripe signs it."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def routing_key(event: Json) -> tuple[str, str]:
    """(partition_key, key_source) by the ingress rule: the customer (customer.* events and
    any object with `customer`), else the payment intent (or the payment intent object's
    own id), else the object id, else the event id. Mirrors ingress.envelope's rule; a test
    keeps the two in step."""
    obj = event["data"]["object"]

    def ref(value: Any) -> str | None:
        if isinstance(value, dict):
            value = value.get("id")
        return value if isinstance(value, str) and value else None

    if event["type"].startswith("customer.") and obj.get("object") == "customer":
        return obj["id"], "customer"
    customer = ref(obj.get("customer"))
    if customer:
        return customer, "customer"
    payment_intent = ref(obj.get("payment_intent"))
    if payment_intent:
        return payment_intent, "payment_intent"
    if obj.get("object") == "payment_intent" and ref(obj.get("id")):
        return obj["id"], "payment_intent"
    payment = obj.get("payment")
    if obj.get("object") == "invoice_payment" and isinstance(payment, dict):
        if ref(payment.get("payment_intent")):
            return ref(payment.get("payment_intent")) or "", "payment_intent"
        if ref(payment.get("charge")):
            return ref(payment.get("charge")) or "", "charge"
    if ref(obj.get("charge")) and obj.get("object") in ("dispute", "refund"):
        return ref(obj.get("charge")) or "", "charge"
    if obj.get("object") == "charge" and ref(obj.get("id")):
        return obj["id"], "charge"
    if ref(obj.get("id")):
        return obj["id"], "object"
    return event["id"], "event"


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Line:
    """An invoice line to render: a subscription period, a proration, or a one-off item."""

    amount: int
    period_start: int
    period_end: int
    kind: str = "subscription"  # subscription | proration | item
    description: str = "1 x Pro (at $49.00 / month)"
    metadata: dict[str, str] | None = None
    quantity: int = 1


@dataclass
class StripeFactory:
    """Builds Stripe objects and events of one API version and mode, with seeded ids."""

    api_version: str = PRE_BASIL
    livemode: bool = False
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def basil(self) -> bool:
        return self.api_version[:10] >= "2025-03-31"

    def new_id(self, prefix: str, length: int = 24) -> str:
        return f"{prefix}_{''.join(self.rng.choice(_ALNUM) for _ in range(length))}"

    # --- events --------------------------------------------------------------------------

    def event(
        self,
        type_: str,
        obj: Json,
        *,
        created: int,
        previous_attributes: Json | None = None,
        event_id: str | None = None,
    ) -> Json:
        """A v1 snapshot event around a deep copy of `obj`."""
        data: Json = {"object": copy.deepcopy(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        return {
            "id": event_id or self.new_id("evt"),
            "object": "event",
            "api_version": self.api_version,
            "created": created,
            "data": data,
            "livemode": self.livemode,
            "pending_webhooks": 1,
            "request": {"id": self.new_id("req", 14), "idempotency_key": None},
            "type": type_,
        }

    def envelope(self, event: Json, *, received_at_ms: int | None = None) -> Json:
        """The `stripe.events` Avro record (schemas/stripe_event.avsc) the ingress writes."""
        key, source = routing_key(event)
        obj = event["data"]["object"]
        return {
            "event_id": event["id"],
            "type": event["type"],
            "created": event["created"],
            "api_version": event.get("api_version"),
            "livemode": event["livemode"],
            "account": event.get("account"),
            "object_type": obj.get("object", ""),
            "object_id": obj.get("id"),
            "partition_key": key,
            "key_source": source,
            "received_at_ms": (
                received_at_ms if received_at_ms is not None else (event["created"] + 1) * 1000
            ),
            "body": event_bytes(event),
        }

    # --- customers, subscriptions, checkout ----------------------------------------------

    def customer(
        self,
        *,
        created: int,
        metadata: dict[str, str] | None = None,
        email: str | None = None,
        customer_id: str | None = None,
    ) -> Json:
        cid = customer_id or self.new_id("cus", 14)
        return {
            "id": cid,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": created,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "email": email or f"{cid[4:12].lower()}@example.com",
            "invoice_prefix": cid[4:12].upper(),
            "invoice_settings": {"default_payment_method": None, "footer": None},
            "livemode": self.livemode,
            "metadata": dict(metadata or {}),
            "name": None,
            "preferred_locales": [],
            "tax_exempt": "none",
        }

    def subscription(
        self,
        customer: str,
        *,
        created: int,
        unit_amount: int,
        currency: str = "usd",
        quantity: int = 1,
        metadata: dict[str, str] | None = None,
        status: str = "active",
        period_start: int | None = None,
        subscription_id: str | None = None,
        price_id: str = "price_pro_monthly",
        latest_invoice: str | None = None,
        cancel_at_period_end: bool = False,
        canceled_at: int | None = None,
    ) -> Json:
        start = period_start if period_start is not None else created
        end = add_months(start, 1)
        item = {
            "id": self.new_id("si", 14),
            "object": "subscription_item",
            "created": created,
            "metadata": {},
            "price": _price(price_id, unit_amount, currency),
            "quantity": quantity,
            "subscription": subscription_id or "",
        }
        sub: Json = {
            "id": subscription_id or self.new_id("sub"),
            "object": "subscription",
            "billing_cycle_anchor": start,
            "cancel_at": None,
            "cancel_at_period_end": cancel_at_period_end,
            "canceled_at": canceled_at,
            "collection_method": "charge_automatically",
            "created": created,
            "currency": currency,
            "customer": customer,
            "discounts": [],
            "ended_at": canceled_at if status == "canceled" else None,
            "items": {"object": "list", "data": [item], "has_more": False},
            "latest_invoice": latest_invoice,
            "livemode": self.livemode,
            "metadata": dict(metadata or {}),
            "start_date": created,
            "status": status,
        }
        item["subscription"] = sub["id"]
        if self.basil:
            item["current_period_start"], item["current_period_end"] = start, end
        else:
            sub["current_period_start"], sub["current_period_end"] = start, end
            sub["plan"] = item["price"]
        return sub

    def checkout_session(
        self,
        *,
        mode: str,
        created: int,
        amount_total: int,
        currency: str = "usd",
        customer: str | None = None,
        subscription: str | None = None,
        payment_intent: str | None = None,
        invoice: str | None = None,
        metadata: dict[str, str] | None = None,
        amount_tax: int = 0,
        amount_discount: int = 0,
        client_reference_id: str | None = None,
    ) -> Json:
        """A completed session. Guest checkouts: mode=payment and customer=None."""
        return {
            "id": self.new_id("cs_test" if not self.livemode else "cs_live", 58),
            "object": "checkout.session",
            "amount_subtotal": amount_total - amount_tax + amount_discount,
            "amount_total": amount_total,
            "client_reference_id": client_reference_id,
            "created": created,
            "currency": currency,
            "customer": customer,
            "customer_creation": None if customer else "if_required",
            "customer_details": {"email": "buyer@example.com", "tax_exempt": "none"},
            "expires_at": created + DAY,
            "invoice": invoice,
            "livemode": self.livemode,
            "metadata": dict(metadata or {}),
            "mode": mode,
            "payment_intent": payment_intent,
            "payment_status": "paid",
            "status": "complete",
            "subscription": subscription,
            "total_details": {
                "amount_discount": amount_discount,
                "amount_shipping": 0,
                "amount_tax": amount_tax,
            },
            "url": None,
        }

    # --- invoices ------------------------------------------------------------------------

    def invoice(
        self,
        customer: str,
        *,
        lines: list[Line],
        created: int,
        paid_at: int | None,
        billing_reason: str = "subscription_cycle",
        currency: str = "usd",
        subscription: str | None = None,
        subscription_metadata: dict[str, str] | None = None,
        discount_minor: int = 0,
        tax_rate: str | None = None,
        tax_inclusive: bool = False,
        credit_minor: int = 0,
        payment_intent: str | None = None,
        charge: str | None = None,
        include_payments: bool = False,
        invoice_id: str | None = None,
    ) -> Json:
        """An invoice; paid when `paid_at` is given. Money is computed like Stripe does:
        subtotal = sum(lines); discounts come off it; tax is `tax_rate` (a decimal string,
        e.g. "0.20") of the discounted amount, added (exclusive) or contained (inclusive);
        customer credit (`credit_minor`) reduces amount_due, not total."""
        iid = invoice_id or self.new_id("in")
        subtotal = sum(line.amount for line in lines)
        discounted = subtotal - discount_minor
        tax = 0
        if tax_rate is not None:
            rate = Decimal(tax_rate)
            tax = _half_up(discounted * rate / (1 + rate) if tax_inclusive else discounted * rate)
        total = discounted if tax_inclusive else discounted + tax
        total_excluding_tax = total - tax
        amount_due = max(total - credit_minor, 0)
        paid = paid_at is not None
        period = (min(li.period_start for li in lines), max(li.period_start for li in lines))
        inv: Json = {
            "id": iid,
            "object": "invoice",
            "account_country": "US",
            "amount_due": amount_due,
            "amount_paid": amount_due if paid else 0,
            "amount_remaining": 0 if paid else amount_due,
            "attempt_count": 1 if paid else 0,
            "attempted": paid,
            "auto_advance": False,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": created,
            "currency": currency,
            "customer": customer,
            "customer_email": "buyer@example.com",
            "discounts": ["di_" + iid[3:17]] if discount_minor else [],
            "ending_balance": 0 if credit_minor else None,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/{iid}",
            "lines": {
                "object": "list",
                "data": [self._line(iid, line, currency, subscription) for line in lines],
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{iid}/lines",
            },
            "livemode": self.livemode,
            "metadata": {},
            "number": f"{iid[3:11].upper()}-0001",
            "period_end": created if billing_reason != "subscription_cycle" else period[0],
            "period_start": (
                created if billing_reason != "subscription_cycle" else add_months(period[0], -1)
            ),
            "starting_balance": -credit_minor,
            "status": "paid" if paid else "open",
            "status_transitions": {
                "finalized_at": created + 3600
                if billing_reason == "subscription_cycle"
                else created,
                "marked_uncollectible_at": None,
                "paid_at": paid_at,
                "voided_at": None,
            },
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal - (tax if tax_inclusive else 0),
            "total": total,
            "total_discount_amounts": (
                [{"amount": discount_minor, "discount": "di_" + iid[3:17]}]
                if discount_minor
                else []
            ),
            "total_excluding_tax": total_excluding_tax,
        }
        snapshot = {"metadata": dict(subscription_metadata or {})} if subscription else None
        if self.basil:
            inv["parent"] = (
                {
                    "type": "subscription_details",
                    "quote_details": None,
                    "subscription_details": {
                        "metadata": dict(subscription_metadata or {}),
                        "subscription": subscription,
                    },
                }
                if subscription
                else None
            )
            inv["total_taxes"] = (
                [
                    {
                        "amount": tax,
                        "tax_behavior": "inclusive" if tax_inclusive else "exclusive",
                        "tax_rate_details": {"tax_rate": "txr_" + iid[3:17]},
                        "taxability_reason": "standard_rated",
                        "taxable_amount": total_excluding_tax,
                        "type": "tax_rate_details",
                    }
                ]
                if tax
                else []
            )
            if include_payments and paid:
                payment = {"type": "payment_intent", "payment_intent": payment_intent}
                if charge is not None:
                    payment = {"type": "charge", "charge": charge}
                inv["payments"] = {
                    "object": "list",
                    "data": [
                        {
                            "id": self.new_id("inpay"),
                            "object": "invoice_payment",
                            "amount_paid": amount_due,
                            "amount_requested": amount_due,
                            "created": created,
                            "currency": currency,
                            "invoice": iid,
                            "is_default": True,
                            "livemode": self.livemode,
                            "payment": payment,
                            "status": "paid",
                            "status_transitions": {"canceled_at": None, "paid_at": paid_at},
                        }
                    ],
                    "has_more": False,
                }
        else:
            inv["subscription"] = subscription
            inv["subscription_details"] = snapshot
            inv["charge"] = charge
            inv["payment_intent"] = payment_intent
            inv["paid"] = paid
            inv["paid_out_of_band"] = False
            inv["tax"] = tax if tax_rate is not None else None
        return inv

    def _line(self, invoice_id: str, line: Line, currency: str, subscription: str | None) -> Json:
        out: Json = {
            "id": self.new_id("il"),
            "object": "line_item",
            "amount": line.amount,
            "currency": currency,
            "description": line.description,
            "discount_amounts": [],
            "discountable": line.kind != "proration",
            "invoice": invoice_id,
            "livemode": self.livemode,
            "metadata": dict(line.metadata or {}),
            "period": {"start": line.period_start, "end": line.period_end},
            "quantity": line.quantity,
        }
        item_id = self.new_id("ii") if line.kind != "subscription" else None
        sub = subscription if line.kind != "item" else None
        if self.basil:
            if line.kind == "subscription":
                out["parent"] = {
                    "type": "subscription_item_details",
                    "invoice_item_details": None,
                    "subscription_item_details": {
                        "invoice_item": None,
                        "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": sub,
                        "subscription_item": "si_" + (sub or "")[4:18],
                    },
                }
            else:
                out["parent"] = {
                    "type": "invoice_item_details",
                    "invoice_item_details": {
                        "invoice_item": item_id,
                        "proration": line.kind == "proration",
                        "proration_details": {"credited_items": None},
                        "subscription": sub,
                    },
                    "subscription_item_details": None,
                }
            out["pricing"] = {
                "type": "price_details",
                "price_details": {"price": "price_pro_monthly", "product": "prod_pro"},
                "unit_amount_decimal": str(line.amount),
            }
        else:
            out["type"] = "subscription" if line.kind == "subscription" else "invoiceitem"
            out["subscription"] = sub
            out["subscription_item"] = "si_" + (sub or "")[4:18] if sub else None
            out["invoice_item"] = item_id
            out["proration"] = line.kind == "proration"
            out["price"] = _price("price_pro_monthly", line.amount, currency)
        return out

    def invoice_payment(
        self, invoice: Json, *, payment_intent: str, created: int, charge: str | None = None
    ) -> Json:
        """The InvoicePayment of event invoice_payment.paid (basil, 2025-05-28 on)."""
        payment: Json = {"type": "payment_intent", "payment_intent": payment_intent}
        if charge is not None:
            payment = {"type": "charge", "charge": charge}
        return {
            "id": self.new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": invoice["amount_paid"],
            "amount_requested": invoice["amount_due"],
            "created": created,
            "currency": invoice["currency"],
            "invoice": invoice["id"],
            "is_default": True,
            "livemode": self.livemode,
            "payment": payment,
            "status": "paid",
            "status_transitions": {
                "canceled_at": None,
                "paid_at": invoice["status_transitions"]["paid_at"],
            },
        }

    # --- charges, refunds, disputes ------------------------------------------------------

    def charge(
        self,
        *,
        amount: int,
        created: int,
        currency: str = "usd",
        customer: str | None = None,
        payment_intent: str | None = None,
        invoice: str | None = None,
        metadata: dict[str, str] | None = None,
        captured: bool = True,
        status: str = "succeeded",
        charge_id: str | None = None,
    ) -> Json:
        """A charge; `invoice` is rendered only before basil (the field is gone since)."""
        ch: Json = {
            "id": charge_id or self.new_id("ch"),
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if captured else 0,
            "amount_refunded": 0,
            "balance_transaction": self.new_id("txn"),
            "billing_details": {"email": "buyer@example.com", "name": None},
            "calculated_statement_descriptor": "REFSTREAM",
            "captured": captured,
            "created": created,
            "currency": currency,
            "customer": customer,
            "description": "Subscription update" if invoice else None,
            "disputed": False,
            "failure_code": None,
            "livemode": self.livemode,
            "metadata": dict(metadata or {}),
            "outcome": {"network_status": "approved_by_network", "type": "authorized"},
            "paid": status == "succeeded",
            "payment_intent": payment_intent,
            "payment_method": self.new_id("pm"),
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False},
            "status": status,
        }
        if not self.basil:
            ch["invoice"] = invoice
        return ch

    def refund(
        self,
        charge: Json,
        *,
        amount: int,
        created: int,
        reason: str | None = "requested_by_customer",
        status: str = "succeeded",
    ) -> Json:
        return {
            "id": self.new_id("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": self.new_id("txn"),
            "charge": charge["id"],
            "created": created,
            "currency": charge["currency"],
            "customer": charge.get("customer"),
            "metadata": {},
            "payment_intent": charge.get("payment_intent"),
            "reason": reason,
            "status": status,
        }

    def refunded_charge(self, charge: Json, refunds: list[Json]) -> Json:
        """The charge as charge.refunded shows it after `refunds` (cumulative)."""
        out = copy.deepcopy(charge)
        out["amount_refunded"] = sum(r["amount"] for r in refunds)
        out["refunded"] = out["amount_refunded"] >= out["amount_captured"]
        out["refunds"] = {"object": "list", "data": copy.deepcopy(refunds), "has_more": False}
        return out

    def dispute(
        self,
        charge: Json,
        *,
        created: int,
        status: str = "needs_response",
        amount: int | None = None,
        reason: str = "fraudulent",
        dispute_id: str | None = None,
    ) -> Json:
        return {
            "id": dispute_id or self.new_id("du"),
            "object": "dispute",
            "amount": charge["amount"] if amount is None else amount,
            "balance_transactions": [],
            "charge": charge["id"],
            "created": created,
            "currency": charge["currency"],
            "is_charge_refundable": False,
            "livemode": self.livemode,
            "metadata": {},
            "payment_intent": charge.get("payment_intent"),
            "reason": reason,
            "status": status,
        }


def _price(price_id: str, unit_amount: int, currency: str) -> Json:
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "currency": currency,
        "product": "prod_pro",
        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
        "type": "recurring",
        "unit_amount": unit_amount,
    }


# --- scenarios ------------------------------------------------------------------------------


@dataclass
class ScenarioClock:
    """Stripe time for a scenario: a start, monthly anniversaries, and a moving `now`."""

    start: int = DEFAULT_START
    now: int = field(init=False)

    def __post_init__(self) -> None:
        self.now = self.start

    def advance(self, seconds: int) -> int:
        self.now += seconds
        return self.now

    def month(self, n: int) -> int:
        """Start of tenure month n+1 (n = 0 is the start), like Stripe's billing cycle."""
        return add_months(self.start, n)


@dataclass
class CustomerStory:
    """One customer's events in Stripe time order, plus the objects for assertions."""

    customer_id: str | None
    subscription_id: str | None = None
    payment_intent_id: str | None = None  # the guest key of a guest checkout
    events: list[Json] = field(default_factory=list)
    invoices: list[Json] = field(default_factory=list)
    charges: list[Json] = field(default_factory=list)

    def envelopes(self, factory: StripeFactory) -> list[Json]:
        return [factory.envelope(event) for event in self.events]

    @property
    def key(self) -> str:
        key = self.customer_id or self.payment_intent_id
        if key is None:
            raise ValueError("a story needs a customer id or a payment intent id")
        return key


CODE_PLACES = ("customer", "subscription", "checkout_session", "invoice_only", "none")


def referral_metadata(code: str | None, new_user_id: str | None = None) -> dict[str, str]:
    if code is None:
        return {}
    out = {"cello_ucc": code}
    if new_user_id is not None:
        out["new_user_id"] = new_user_id
    return out


def subscription_story(
    f: StripeFactory,
    *,
    start: int = DEFAULT_START,
    months: int = 12,
    unit_amount: int = 4_900,
    currency: str = "usd",
    code: str | None = None,
    new_user_id: str | None = None,
    code_on: str = "customer",
    via_checkout: bool = False,
    upgrade: tuple[int, int] | None = None,
    tax_rate: str | None = None,
    with_charges: bool = True,
    payment_succeeded_too: bool = False,
    invoice_payment_events: bool = False,
    include_payments: bool = False,
) -> CustomerStory:
    """A subscriber's first `months` monthly invoices, each paid by a charge.

    code_on: where the referral code sits: customer (customer metadata), subscription
    (subscription metadata: subscription events, invoice snapshots and subscription lines),
    checkout_session (session metadata only; implies via_checkout), invoice_only (the
    subscription carries it but no customer.subscription.* event is in the story), none.
    upgrade=(m, new_unit_amount): mid-way through tenure month m the plan changes; a
    subscription_update invoice bills the prorated difference and later months the new price.
    """
    if code_on not in CODE_PLACES:
        raise ValueError(f"code_on must be one of {CODE_PLACES}")
    via_checkout = via_checkout or code_on == "checkout_session"
    meta = referral_metadata(code, new_user_id)
    clock = ScenarioClock(start + 2)  # the subscription's billing cycle anchor
    cus = f.customer(created=start, metadata=meta if code_on == "customer" else None)
    sub_meta = meta if code_on in ("subscription", "invoice_only") else {}
    sub = f.subscription(
        cus["id"],
        created=start + 2,
        unit_amount=unit_amount,
        currency=currency,
        metadata=sub_meta,
        period_start=start + 2,
    )
    story = CustomerStory(customer_id=cus["id"], subscription_id=sub["id"])
    story.events.append(f.event("customer.created", cus, created=start))

    def pay(inv_lines: list[Line], created: int, reason: str) -> None:
        pi = f.new_id("pi")
        ch_id = f.new_id("ch")
        paid_at = created + (60 if reason == "subscription_create" else 3_700)
        inv = f.invoice(
            cus["id"],
            lines=inv_lines,
            created=created,
            paid_at=paid_at,
            billing_reason=reason,
            currency=currency,
            subscription=sub["id"],
            subscription_metadata=sub_meta,
            tax_rate=tax_rate,
            payment_intent=pi,
            charge=ch_id if with_charges else None,
            include_payments=include_payments,
        )
        story.invoices.append(inv)
        if with_charges:
            ch = f.charge(
                amount=inv["amount_paid"],
                created=paid_at - 2,
                currency=currency,
                customer=cus["id"],
                payment_intent=pi,
                invoice=inv["id"],
                charge_id=ch_id,
            )
            story.charges.append(ch)
            story.events.append(f.event("charge.succeeded", ch, created=paid_at - 1))
        story.events.append(f.event("invoice.paid", inv, created=paid_at))
        if payment_succeeded_too:
            story.events.append(f.event("invoice.payment_succeeded", inv, created=paid_at))
        if invoice_payment_events and f.basil:
            ip = f.invoice_payment(inv, payment_intent=pi, created=paid_at)
            story.events.append(f.event("invoice_payment.paid", ip, created=paid_at))

    price = unit_amount
    sub_line_meta = sub_meta or None
    for m in range(months):
        period_start = clock.month(m)
        period_end = clock.month(m + 1)
        if m == 0:
            if via_checkout:
                session = f.checkout_session(
                    mode="subscription",
                    created=start + 3,
                    amount_total=price,
                    currency=currency,
                    customer=cus["id"],
                    subscription=sub["id"],
                    metadata=meta if code_on == "checkout_session" else None,
                )
                story.events.append(
                    f.event("checkout.session.completed", session, created=start + 5)
                )
            if code_on != "invoice_only":
                story.events.append(
                    f.event("customer.subscription.created", sub, created=start + 2)
                )
        lines = [Line(price, period_start, period_end, metadata=sub_line_meta)]
        pay(lines, period_start, "subscription_create" if m == 0 else "subscription_cycle")
        if upgrade is not None and m + 1 == upgrade[0]:
            new_price = upgrade[1]
            mid = period_start + (period_end - period_start) // 2
            remaining = Decimal(period_end - mid) / Decimal(period_end - period_start)
            lines = [
                Line(
                    -_half_up(price * remaining),
                    mid,
                    period_end,
                    kind="proration",
                    description="Unused time on Pro",
                ),
                Line(
                    _half_up(new_price * remaining),
                    mid,
                    period_end,
                    kind="proration",
                    description="Remaining time on Business",
                ),
            ]
            updated = copy.deepcopy(sub)
            item = updated["items"]["data"][0]
            item["price"] = _price("price_business_monthly", new_price, currency)
            story.events.append(
                f.event(
                    "customer.subscription.updated",
                    updated,
                    created=mid,
                    previous_attributes={"items": sub["items"]},
                )
            )
            pay(lines, mid, "subscription_update")
            price = new_price
    story.events.sort(key=lambda e: e["created"])  # stable: same-second order is kept
    return story


def one_time_story(
    f: StripeFactory,
    *,
    created: int = DEFAULT_START,
    amount: int = 19_900,
    currency: str = "usd",
    customer_id: str | None = None,
    code: str | None = None,
    new_user_id: str | None = None,
    code_on: str = "charge",
    via_checkout: bool = True,
    amount_tax: int = 0,
) -> CustomerStory:
    """A one-time purchase (no invoice). customer_id=None makes it a guest checkout, keyed
    by its payment intent. code_on: charge (payment_intent_data.metadata, copied to the
    charge), checkout_session (session metadata) or none."""
    meta = referral_metadata(code, new_user_id)
    pi = f.new_id("pi")
    story = CustomerStory(customer_id=customer_id, payment_intent_id=pi)
    ch = f.charge(
        amount=amount,
        created=created + 10,
        currency=currency,
        customer=customer_id,
        payment_intent=pi,
        metadata=meta if code_on == "charge" else None,
    )
    story.charges.append(ch)
    story.events.append(f.event("charge.succeeded", ch, created=created + 11))
    if via_checkout:
        session = f.checkout_session(
            mode="payment",
            created=created,
            amount_total=amount,
            currency=currency,
            customer=customer_id,
            payment_intent=pi,
            amount_tax=amount_tax,
            metadata=meta if code_on == "checkout_session" else None,
        )
        story.events.append(f.event("checkout.session.completed", session, created=created + 12))
    return story
