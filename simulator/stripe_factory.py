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

from streams.ledger.tenure import add_months

PRE_BASIL = "2024-06-20"
BASIL = "2025-03-31.basil"
API_VERSIONS = (PRE_BASIL, BASIL)
# Older and newer versions with shapes of their own (see docs/STRIPE_FLOWS.md section 1):
OLD_2018 = "2018-02-06"  # before 2018-02-28: invoice has no amount_paid (paid + amount_due)
OLD_2019 = "2019-02-19"  # before 2019-03-14: invoice creation time is `date`, not `created`
DAHLIA = "2026-08-26.dahlia"  # the version of the OpenAPI spec the shape tests use
ALL_API_VERSIONS = (OLD_2018, OLD_2019, PRE_BASIL, BASIL, DAHLIA)
DAY = 86_400
# 2025-05-01T00:00:00Z: a start date valid for both families.
DEFAULT_START = 1_746_057_600
_ALNUM = string.ascii_letters + string.digits

Json = dict[str, Any]

__all__ = [
    "ALL_API_VERSIONS",
    "API_VERSIONS",
    "BASIL",
    "CODE_PLACES",
    "DAHLIA",
    "DAY",
    "DEFAULT_START",
    "OLD_2018",
    "OLD_2019",
    "PRE_BASIL",
    "CustomerStory",
    "Json",
    "Line",
    "ScenarioClock",
    "StripeFactory",
    "event_bytes",
    "one_time_story",
    "plan_of",
    "price_object",
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
    """An invoice line to render.

    kind: subscription (the licensed subscription item's period), proration (a credit or
    charge for a mid-period change; rendered as an invoice item, unless
    `on_subscription_item`: then as a subscription-item line with proration true),
    metered (usage of a metered subscription item, billed in arrears: give it the previous
    cycle's period) or item (a one-off invoice item)."""

    amount: int
    period_start: int
    period_end: int
    kind: str = "subscription"  # subscription | proration | metered | item
    description: str = "1 x Pro (at $49.00 / month)"
    metadata: dict[str, str] | None = None
    quantity: int = 1
    price_id: str | None = None  # default: price_pro_monthly (price_usage_monthly if metered)
    on_subscription_item: bool = False  # prorations only, see above


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
        account: str | None = None,
    ) -> Json:
        """A v1 snapshot event around a deep copy of `obj`. `account` (Connect): the
        connected account the event belongs to, rendered as the top-level `account`."""
        data: Json = {"object": copy.deepcopy(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = copy.deepcopy(previous_attributes)
        event: Json = {
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
        if account is not None:
            event = {"id": event["id"], "object": "event", "account": account, **event}
        return event

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
            "backfill": None,
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
            "discounts": [],
            "metadata": {},
            "price": price_object(price_id, unit_amount, currency, livemode=self.livemode),
            "quantity": quantity,
            "subscription": subscription_id or "",
        }
        sid = subscription_id or self.new_id("sub")
        sub: Json = {
            "id": sid,
            "object": "subscription",
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": start,
            "billing_mode": {"type": "classic"},
            "billing_schedules": [],
            "cancel_at": None,
            "cancel_at_period_end": cancel_at_period_end,
            "canceled_at": canceled_at,
            "collection_method": "charge_automatically",
            "created": created,
            "currency": currency,
            "customer": customer,
            "discounts": [],
            "ended_at": canceled_at if status == "canceled" else None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": [item],
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={sid}",
            },
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
            if self.api_version[:10] < "2020-08-27":
                # The legacy single-plan field; 2020-08-27 removed it (use items).
                sub["plan"] = plan_of(dict(item["price"]))  # type: ignore[call-overload]
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
            "automatic_tax": {
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "client_reference_id": client_reference_id,
            "created": created,
            "currency": currency,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": customer,
            "customer_creation": None if customer else "if_required",
            "customer_details": {"email": "buyer@example.com", "tax_exempt": "none"},
            "expires_at": created + DAY,
            "invoice": invoice,
            "livemode": self.livemode,
            "metadata": dict(metadata or {}),
            "mode": mode,
            "payment_intent": payment_intent,
            "payment_method_types": ["card"],
            "payment_status": "paid",
            "shipping_options": [],
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

    @property
    def dated(self) -> bool:
        """Before 2019-03-14 an invoice's creation time is `date`, not `created`."""
        return self.api_version[:10] < "2019-03-14"

    @property
    def before_amount_paid(self) -> bool:
        """Before 2018-02-28 an invoice has no `amount_paid` (`paid` with `amount_due`)."""
        return self.api_version[:10] < "2018-02-28"

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
        amount_paid: int | None = None,
        out_of_band: bool = False,
        lines_shown: int | None = None,
    ) -> Json:
        """An invoice; paid when `paid_at` is given. Money is computed like Stripe does:
        subtotal = sum(lines); discounts come off it; tax is `tax_rate` (a decimal string,
        e.g. "0.20") of the discounted amount, added (exclusive) or contained (inclusive);
        customer credit (`credit_minor`) reduces amount_due, not total.

        amount_paid: a partial payment (< amount_due): the invoice stays `open` with
        `amount_remaining`, no `paid_at` (and `paid: false` before basil); `paid_at` is then
        only the time of that payment. out_of_band: marked paid outside Stripe (basil+:
        `amount_paid_off_stripe` = amount_due, `amount_paid` = amount_due; before basil:
        `paid_out_of_band: true`, `amount_paid: 0`). lines_shown: only the first N lines
        in `lines.data`, with `lines.has_more: true` (a truncated webhook snapshot).
        Versions before 2019-03-14 render `date` instead of `created`; before 2018-02-28
        there is no `amount_paid` (`paid: true` says it was paid)."""
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
        attempted = paid_at is not None
        paid_now = amount_due if amount_paid is None else amount_paid
        paid = attempted and paid_now >= amount_due
        if not attempted:
            paid_now = 0
        if out_of_band and attempted:
            paid_now, paid = amount_due, True
        off_stripe = amount_due if out_of_band and attempted else 0
        # The invoice period: a cycle invoice's ends where the new cycle (its licensed
        # subscription line, not prorations or usage billed in arrears) starts.
        licensed = [li.period_start for li in lines if li.kind == "subscription"]
        anchor = max(licensed) if licensed else min(li.period_start for li in lines)
        shown = lines if lines_shown is None else lines[:lines_shown]
        rendered = [self._line(iid, line, currency, subscription) for line in shown]
        inv: Json = {
            "id": iid,
            "object": "invoice",
            "account_country": "US",
            "amount_due": amount_due,
            "amount_overpaid": 0,
            "amount_paid": paid_now,
            "amount_remaining": max(amount_due - paid_now, 0),
            "amount_shipping": 0,
            "attempt_count": 1 if attempted and not out_of_band else 0,
            "attempted": attempted and not out_of_band,
            "auto_advance": False,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": created,
            "currency": currency,
            "customer": customer,
            "customer_email": "buyer@example.com",
            "default_tax_rates": [],
            "discounts": ["di_" + iid[3:17]] if discount_minor else [],
            "ending_balance": 0 if credit_minor else None,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/{iid}",
            "issuer": {"type": "self"},
            "lines": {
                "object": "list",
                "data": rendered,
                "has_more": len(shown) < len(lines),
                "url": f"/v1/invoices/{iid}/lines",
            },
            "livemode": self.livemode,
            "metadata": {},
            "number": f"{iid[3:11].upper()}-0001",
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": created if billing_reason != "subscription_cycle" else anchor,
            "period_start": (
                created if billing_reason != "subscription_cycle" else add_months(anchor, -1)
            ),
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "starting_balance": -credit_minor,
            "status": "paid" if paid else "open",
            "status_transitions": {
                "finalized_at": created + 3600
                if billing_reason == "subscription_cycle"
                else created,
                "marked_uncollectible_at": None,
                "paid_at": paid_at if paid else None,
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
            inv["amount_paid_off_stripe"] = off_stripe
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
            if include_payments and attempted and paid_now > off_stripe:
                payment = {"type": "payment_intent", "payment_intent": payment_intent}
                if charge is not None:
                    payment = {"type": "charge", "charge": charge}
                inv["payments"] = {
                    "object": "list",
                    "data": [
                        {
                            "id": self.new_id("inpay"),
                            "object": "invoice_payment",
                            "amount_paid": paid_now - off_stripe,
                            "amount_requested": paid_now - off_stripe,
                            "created": created,
                            "currency": currency,
                            "invoice": iid,
                            "is_default": paid_now - off_stripe == amount_due,
                            "livemode": self.livemode,
                            "payment": payment,
                            "status": "paid",
                            "status_transitions": {"canceled_at": None, "paid_at": paid_at},
                        }
                    ],
                    "has_more": False,
                    "url": f"/v1/invoice_payments?invoice={iid}",
                }
        else:
            inv["subscription"] = subscription
            inv["subscription_details"] = snapshot
            inv["charge"] = None if out_of_band else charge
            inv["payment_intent"] = None if out_of_band else payment_intent
            inv["paid"] = paid
            inv["paid_out_of_band"] = out_of_band and attempted
            inv["tax"] = tax if tax_rate is not None else None
            if out_of_band and attempted:
                inv["amount_paid"], inv["amount_remaining"] = 0, 0
            if self.before_amount_paid:
                del inv["amount_paid"]
            if self.dated:
                inv["date"] = inv.pop("created")
        return inv

    def _line(self, invoice_id: str, line: Line, currency: str, subscription: str | None) -> Json:
        metered = line.kind == "metered"
        price_id = line.price_id or ("price_usage_monthly" if metered else "price_pro_monthly")
        out: Json = {
            "id": self.new_id("il"),
            "object": "line_item",
            "amount": line.amount,
            "currency": currency,
            "description": line.description,
            "discount_amounts": [],
            "discountable": line.kind != "proration",
            "discounts": [],
            "invoice": invoice_id,
            "livemode": self.livemode,
            "metadata": dict(line.metadata or {}),
            "period": {"start": line.period_start, "end": line.period_end},
            "quantity": line.quantity,
            "subtotal": line.amount,
        }
        # A subscription-item line: the licensed item, metered usage, or a proration
        # rendered on the item. Otherwise an invoice item (one-off or proration).
        on_item = line.kind in ("subscription", "metered") or (
            line.kind == "proration" and line.on_subscription_item
        )
        item_id = self.new_id("ii") if line.kind != "subscription" else None
        sub = subscription if line.kind != "item" else None
        sub_item = None
        if sub:
            sub_item = ("si_m" + sub[4:17]) if metered else ("si_" + sub[4:18])
        proration = line.kind == "proration"
        if self.basil:
            if on_item:
                out["parent"] = {
                    "type": "subscription_item_details",
                    "invoice_item_details": None,
                    "subscription_item_details": {
                        "invoice_item": item_id if proration else None,
                        "proration": proration,
                        "proration_details": {"credited_items": None},
                        "subscription": sub,
                        "subscription_item": sub_item or "",
                    },
                }
            else:
                out["parent"] = {
                    "type": "invoice_item_details",
                    "invoice_item_details": {
                        "invoice_item": item_id,
                        "proration": proration,
                        "proration_details": {"credited_items": None},
                        "subscription": sub,
                    },
                    "subscription_item_details": None,
                }
            out["pricing"] = {
                "type": "price_details",
                "price_details": {"price": price_id, "product": "prod_pro"},
                "unit_amount_decimal": str(line.amount),
            }
        else:
            out["type"] = "subscription" if on_item else "invoiceitem"
            out["subscription"] = sub
            out["subscription_item"] = sub_item
            out["invoice_item"] = None if on_item else item_id
            out["proration"] = proration
            out["price"] = price_object(
                price_id,
                line.amount,
                currency,
                usage_type="metered" if metered else "licensed",
                livemode=self.livemode,
            )
        return out

    def invoice_payment(
        self,
        invoice: Json,
        *,
        payment_intent: str | None = None,
        charge: str | None = None,
        created: int,
        amount_paid: int | None = None,
        status: str = "paid",
        amount_requested: int | None = None,
        is_default: bool | None = None,
    ) -> Json:
        """The InvoicePayment of event invoice_payment.paid (basil, 2025-05-28 on).

        payment.type is `charge` when only `charge` is given (a charge without payment
        intent), else `payment_intent` (given both, charge wins, like before).
        amount_paid: this payment's share of the invoice (partial payments), default the
        invoice's amount_paid less its off-Stripe part. status: paid | open | canceled
        (open and canceled: amount_paid 0, a canceled one has status_transitions.canceled_at).
        """
        if payment_intent is None and charge is None:
            raise ValueError("an invoice payment needs a payment_intent or a charge")
        payment: Json = {"type": "payment_intent", "payment_intent": payment_intent}
        if charge is not None:
            payment = {"type": "charge", "charge": charge}
        off_stripe = invoice.get("amount_paid_off_stripe") or 0
        share = (invoice.get("amount_paid", 0) - off_stripe) if amount_paid is None else amount_paid
        requested = share if amount_requested is None else amount_requested
        if amount_paid is None and amount_requested is None and off_stripe == 0:
            requested = invoice["amount_due"]
        paid_at = invoice["status_transitions"]["paid_at"] if amount_paid is None else created
        return {
            "id": self.new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": share if status == "paid" else 0,
            "amount_requested": requested,
            "created": created,
            "currency": invoice["currency"],
            "invoice": invoice["id"],
            "is_default": (requested == invoice["amount_due"])
            if is_default is None
            else is_default,
            "livemode": self.livemode,
            "payment": payment,
            "status": status,
            "status_transitions": {
                "canceled_at": created if status == "canceled" else None,
                "paid_at": (paid_at or created) if status == "paid" else None,
            },
        }

    def credit_note(
        self,
        invoice: Json,
        *,
        created: int,
        amount: int | None = None,
        refunds: list[Json] | None = None,
        out_of_band_amount: int | None = None,
        reason: str | None = None,
        memo: str | None = None,
        credit_note_id: str | None = None,
    ) -> Json:
        """The CreditNote of event credit_note.created, against `invoice`.

        amount: the credited total (default the invoice total). On a paid invoice it is a
        post_payment note: the part not credited to the customer balance or marked
        `out_of_band_amount` is refunded by `refunds` (Refund objects); on an unpaid one a
        pre_payment note (lowers amount_due); a paid invoice with amount_remaining credits
        both (`mixed`). basil+ renders `refunds: [{amount_refunded, refund, type}]`; before
        basil a single `refund` id (the basil changelog replaced it with the list)."""
        cid = credit_note_id or self.new_id("cn")
        total = invoice["total"] if amount is None else amount
        paid: int = (
            invoice["amount_paid"]
            if "amount_paid" in invoice
            else (invoice["amount_due"] if invoice.get("paid") else 0)
        )
        remaining = invoice.get("amount_remaining", 0)
        pre = min(total, remaining) if invoice.get("status") != "paid" or paid < total else 0
        if invoice.get("status") != "paid" and not paid:
            pre = total
        post = total - pre
        kind = "mixed" if pre and post else ("pre_payment" if pre else "post_payment")
        first_line = (invoice["lines"]["data"] or [{"id": None}])[0]["id"]
        line: Json = {
            "id": self.new_id("cnli"),
            "object": "credit_note_line_item",
            "amount": total,
            "description": "Credit",
            "discount_amount": 0,
            "discount_amounts": [],
            "invoice_line_item": first_line,
            "livemode": self.livemode,
            "metadata": {},
            "pretax_credit_amounts": [],
            "quantity": 1,
            "tax_rates": [],
            "type": "invoice_line_item" if first_line else "custom_line_item",
            "unit_amount": total,
        }
        if not first_line:
            del line["invoice_line_item"]
        note: Json = {
            "id": cid,
            "object": "credit_note",
            "amount": total,
            "amount_shipping": 0,
            "created": created,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "customer_balance_transaction": None,
            "discount_amount": 0,
            "discount_amounts": [],
            "effective_at": created,
            "invoice": invoice["id"],
            "lines": {
                "object": "list",
                "data": [line],
                "has_more": False,
                "url": f"/v1/credit_notes/{cid}/lines",
            },
            "livemode": self.livemode,
            "memo": memo,
            "metadata": {},
            "number": f"{invoice.get('number') or 'CN'}-CN-01",
            "out_of_band_amount": out_of_band_amount,
            "pdf": f"https://pay.stripe.com/credit_notes/{cid}/pdf",
            "post_payment_amount": post,
            "pre_payment_amount": pre,
            "pretax_credit_amounts": [],
            "reason": reason,
            "status": "issued",
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "total": total,
            "total_excluding_tax": total,
            "type": kind,
            "voided_at": None,
        }
        rendered = list(refunds or [])
        if self.basil:
            note["refunds"] = [
                {
                    "amount_refunded": r["amount"],
                    "payment_record_refund": None,
                    "refund": r["id"],
                    "type": "refund",
                }
                for r in rendered
            ]
            note["total_taxes"] = []
        else:
            note["refund"] = rendered[0]["id"] if rendered else None
        return note

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
        amount_captured: int | None = None,
    ) -> Json:
        """A charge; `invoice` is rendered only before basil (the field is gone since).
        payment_intent=None: a charge made without a payment intent (Charges API).
        amount_captured < amount: a partial capture. Before basil Stripe released the
        remainder with a Refund: `amount_refunded` = amount - amount_captured and that
        refund is in `refunds` (see `release_refund`); from basil on nothing is refunded."""
        cid = charge_id or self.new_id("ch")
        captured_amount = (
            (amount if captured else 0) if amount_captured is None else amount_captured
        )
        ch: Json = {
            "id": cid,
            "object": "charge",
            "amount": amount,
            "amount_captured": captured_amount,
            "amount_refunded": 0,
            "balance_transaction": self.new_id("txn"),
            "billing_details": {"address": None, "email": "buyer@example.com", "name": None},
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
            "refunds": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/charges/{cid}/refunds",
            },
            "status": status,
        }
        if not self.basil:
            ch["invoice"] = invoice
            release = amount - captured_amount if captured else 0
            if release > 0:
                refund = self.refund(ch, amount=release, created=created, reason=None)
                ch["amount_refunded"] = release
                ch["refunds"]["data"] = [refund]
        return ch

    def canceled_charge(self, charge: Json, *, created: int) -> Json:
        """An uncaptured charge after its payment was canceled (the authorization released).
        Before basil Stripe refunded the whole amount (charge.refunded fires: refunded
        true, a Refund of `amount` in `refunds`, see `release_refund`); from basil on no
        refund is made: the charge stays uncaptured with amount_refunded 0."""
        out = copy.deepcopy(charge)
        out["captured"], out["amount_captured"] = False, 0
        if not self.basil:
            refund = self.refund(out, amount=out["amount"], created=created, reason=None)
            out["amount_refunded"], out["refunded"] = out["amount"], True
            out["refunds"]["data"] = [*out["refunds"]["data"], refund]
        return out

    def release_refund(self, charge: Json) -> Json | None:
        """The Refund Stripe made (before basil) for the released remainder of a partial
        capture or a cancellation, if `charge` shows one; None from basil on."""
        release = charge["amount"] - charge["amount_captured"]
        if self.basil or release <= 0:
            return None
        refunds = sorted(charge["refunds"]["data"], key=lambda r: (r["created"], r["id"]))
        return next((r for r in refunds if r["amount"] == release), None)

    def refund(
        self,
        charge: Json,
        *,
        amount: int,
        created: int,
        reason: str | None = "requested_by_customer",
        status: str = "succeeded",
        failure_reason: str | None = None,
        refund_id: str | None = None,
    ) -> Json:
        """A Refund. status: pending | requires_action | succeeded | failed | canceled;
        a failed one carries `failure_reason` (default expired_or_canceled_card) and a
        `failure_balance_transaction`."""
        out: Json = {
            "id": refund_id or self.new_id("re"),
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
        if status == "failed" or failure_reason is not None:
            out["failure_reason"] = failure_reason or "expired_or_canceled_card"
            out["failure_balance_transaction"] = self.new_id("txn")
        return out

    def failed_refund(
        self, refund: Json, *, status: str = "failed", failure_reason: str | None = None
    ) -> Json:
        """`refund` after it failed (or was canceled): the object of refund.failed /
        refund.updated."""
        out = copy.deepcopy(refund)
        out["status"] = status
        if status == "failed":
            out["failure_reason"] = failure_reason or "expired_or_canceled_card"
            out["failure_balance_transaction"] = self.new_id("txn")
        return out

    def refunded_charge(self, charge: Json, refunds: list[Json]) -> Json:
        """The charge as charge.refunded shows it after `refunds` (cumulative). Refunds
        already on the charge (a pre-basil capture release) stay; a given refund replaces
        the one of the same id; failed and canceled refunds don't count."""
        out = copy.deepcopy(charge)
        given = {r["id"] for r in refunds}
        kept = [r for r in out["refunds"]["data"] if r["id"] not in given]
        all_refunds = [*kept, *copy.deepcopy(refunds)]
        out["amount_refunded"] = sum(
            r["amount"] for r in all_refunds if r.get("status") not in ("failed", "canceled")
        )
        release = out["amount"] - out["amount_captured"]
        full = out["amount"] if release > 0 and not self.basil else out["amount_captured"]
        out["refunded"] = out["amount_refunded"] >= full
        out["refunds"]["data"] = all_refunds
        return out

    def charge_after_refund_failure(
        self, charge: Json, refunds: list[Json], failed: Json
    ) -> tuple[Json, Json]:
        """(charge, previous_attributes) of the `charge.updated` Stripe sends when refund
        `failed` (one of `refunds`, the refunds counted so far) fails or is canceled:
        amount_refunded goes back down by its amount."""
        before = self.refunded_charge(charge, refunds)
        voided = failed if failed.get("status") in ("failed", "canceled") else None
        after = self.refunded_charge(before, [voided or self.failed_refund(failed)])
        previous: Json = {"amount_refunded": before["amount_refunded"]}
        if before["refunded"] != after["refunded"]:
            previous["refunded"] = before["refunded"]
        return after, previous

    def refund_failure_events(
        self, charge: Json, refunds: list[Json], failed: Json, *, created: int
    ) -> list[Json]:
        """refund.failed (the refund, status failed) and the charge.updated with
        `previous_attributes.amount_refunded` that follow a refund's failure."""
        voided = failed if failed.get("status") == "failed" else self.failed_refund(failed)
        snapshot, previous = self.charge_after_refund_failure(charge, refunds, voided)
        return [
            self.event("refund.failed", voided, created=created),
            self.event("charge.updated", snapshot, created=created, previous_attributes=previous),
        ]

    def dispute(
        self,
        charge: Json,
        *,
        created: int,
        status: str = "needs_response",
        amount: int | None = None,
        reason: str = "fraudulent",
        dispute_id: str | None = None,
        currency: str | None = None,
        is_charge_refundable: bool | None = None,
    ) -> Json:
        """A dispute of `charge` (its payment_intent, null for a charge-only payment).
        amount: the disputed amount (default the whole charge; less for a partial one).
        status: warning_needs_response | warning_under_review | warning_closed (inquiries:
        no funds withdrawn, the charge stays refundable), needs_response | under_review
        (chargebacks), won | lost | prevented."""
        inquiry = status.startswith("warning_")
        return {
            "id": dispute_id or self.new_id("du"),
            "object": "dispute",
            "amount": charge["amount"] if amount is None else amount,
            "balance_transactions": [],
            "charge": charge["id"],
            "created": created,
            "currency": currency or charge["currency"],
            "enhanced_eligibility_types": [],
            "evidence": {**_EMPTY_EVIDENCE, "enhanced_evidence": {}},
            "evidence_details": {
                "due_by": created + 7 * DAY,
                "enhanced_eligibility": {},
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": inquiry
            if is_charge_refundable is None
            else is_charge_refundable,
            "livemode": self.livemode,
            "metadata": {},
            "payment_intent": charge.get("payment_intent"),
            "reason": reason,
            "status": status,
        }


_EMPTY_EVIDENCE: Json = {
    key: None
    for key in (
        "access_activity_log",
        "billing_address",
        "cancellation_policy",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_communication",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "customer_signature",
        "duplicate_charge_documentation",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "product_description",
        "receipt",
        "refund_policy",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "service_documentation",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_documentation",
        "shipping_tracking_number",
        "uncategorized_file",
        "uncategorized_text",
    )
}

# Prices are dated before any scenario (a constant: a price's `created` is not scenario data).
_PRICE_CREATED = DEFAULT_START - 365 * DAY


def price_object(
    price_id: str,
    unit_amount: int,
    currency: str,
    *,
    usage_type: str = "licensed",
    livemode: bool = False,
) -> Json:
    """A monthly recurring Price object (usage_type licensed or metered)."""
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": _PRICE_CREATED,
        "currency": currency,
        "livemode": livemode,
        "lookup_key": None,
        "metadata": {},
        "product": "prod_pro",
        "recurring": {"interval": "month", "interval_count": 1, "usage_type": usage_type},
        "type": "recurring",
        "unit_amount": unit_amount,
    }


def _price(price_id: str, unit_amount: int, currency: str) -> Json:
    return price_object(price_id, unit_amount, currency)


def plan_of(price: Json) -> Json:
    """The legacy Plan object of a recurring `price` (pre-basil `subscription.plan`)."""
    recurring = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price.get("active", True),
        "amount": price.get("unit_amount"),
        "billing_scheme": price.get("billing_scheme", "per_unit"),
        "created": price.get("created", _PRICE_CREATED),
        "currency": price["currency"],
        "interval": recurring.get("interval", "month"),
        "interval_count": recurring.get("interval_count", 1),
        "livemode": price.get("livemode", False),
        "metadata": dict(price.get("metadata") or {}),
        "product": price.get("product"),
        "usage_type": recurring.get("usage_type", "licensed"),
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
                # No amount_paid before 2018-02-28.
                amount=inv["amount_paid"] if "amount_paid" in inv else inv["amount_due"],
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
