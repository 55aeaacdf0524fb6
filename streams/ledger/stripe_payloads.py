"""Version-tolerant readers of Stripe webhook payloads into small frozen dataclasses.

Both API families are read by shape, not by trusting `api_version`: a replayed event keeps
the version it was rendered with, and a field is where the payload puts it.

- Before 2025-03-31.basil an invoice names its subscription in `subscription`, the
  subscription metadata snapshot in `subscription_details.metadata`, and its payment in
  `payment_intent` / `charge`; a charge names its invoice in `invoice`.
- From basil on the subscription is `parent.subscription_details.subscription` (metadata
  beside it), payments are `payments.data[].payment.{payment_intent,charge}` (an includable
  field, so webhook snapshots often lack it) and `charge.invoice` is gone; the
  `invoice_payment.paid` event carries the invoice <-> payment link instead.

Anything missing or of the wrong type raises `ParseError` naming the field path (e.g.
`invoice.lines.data[2].period.start`), so a bad payload is dead-lettered with a clear reason
instead of crashing code further down. Amounts are integers in the currency's minor unit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

BASIL_DATE = "2025-03-31"


class ParseError(ValueError):
    """A payload that cannot be read; the message names the field path at fault."""


def is_basil(api_version: str | None) -> bool:
    """True for 2025-03-31.basil and later (versions are `YYYY-MM-DD[.name]`)."""
    return api_version is not None and api_version[:10] >= BASIL_DATE


# --- a small typed reader over one JSON object -------------------------------------------


class _Obj:
    """Typed access to one JSON object; every error names the full field path."""

    def __init__(self, data: Any, path: str) -> None:
        # type() first: a JSON object is a dict, and an ABC isinstance check costs more.
        if type(data) is not dict and not isinstance(data, Mapping):
            raise ParseError(f"{path}: expected an object, got {type(data).__name__}")
        self.data = data
        self.path = path

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def req_str(self, key: str) -> str:
        value = self.opt_str(key)
        if value is None:
            raise ParseError(f"{self._at(key)}: required, missing or null")
        return value

    def opt_str(self, key: str) -> str | None:
        """A string, or the `id` of an expanded object (expandable fields)."""
        value = self.data.get(key)
        if value is None:
            return None
        if type(value) is str:  # the usual case, before the costlier ABC check
            return value
        if isinstance(value, Mapping):
            inner = value.get("id")
            if isinstance(inner, str) and inner:
                return inner
            raise ParseError(f"{self._at(key)}: expanded object without an id")
        if not isinstance(value, str):
            raise ParseError(f"{self._at(key)}: expected a string, got {type(value).__name__}")
        return value

    def req_int(self, key: str) -> int:
        value = self.opt_int(key)
        if value is None:
            raise ParseError(f"{self._at(key)}: required, missing or null")
        return value

    def opt_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        # bool is an int in Python; a boolean amount is a malformed payload, not 0 or 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParseError(f"{self._at(key)}: expected an integer, got {value!r}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ParseError(f"{self._at(key)}: expected a boolean, got {value!r}")
        return value

    def obj(self, key: str) -> _Obj | None:
        value = self.data.get(key)
        return None if value is None else _Obj(value, self._at(key))

    def expanded(self, key: str) -> _Obj | None:
        """The object behind an expandable field, when it was expanded (else None)."""
        value = self.data.get(key)
        return _Obj(value, self._at(key)) if isinstance(value, Mapping) else None

    def metadata(self, key: str = "metadata") -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ParseError(f"{self._at(key)}: expected an object, got {type(value).__name__}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str):
                # Stripe stores metadata values as strings; anything else is not Stripe's.
                raise ParseError(f"{self._at(key)}.{k}: expected a string, got {v!r}")
            out[str(k)] = v
        return out

    def items(self, key: str) -> list[_Obj]:
        """Elements of a list object (`{"data": [...]}`) or of a plain list."""
        value = self.data.get(key)
        if value is None:
            return []
        path = self._at(key)
        if isinstance(value, Mapping):
            value = value.get("data", [])
            path += ".data"
        if not isinstance(value, list):
            raise ParseError(f"{path}: expected a list, got {type(value).__name__}")
        return [_Obj(item, f"{path}[{i}]") for i, item in enumerate(value)]

    def currency(self, key: str = "currency") -> str:
        value = self.req_str(key).lower()
        if len(value) != 3 or not value.isalpha():
            raise ParseError(f"{self._at(key)}: expected an ISO 4217 code, got {value!r}")
        return value


# --- the envelope --------------------------------------------------------------------------


@dataclass(frozen=True)
class StripeEvent:
    """One record of `stripe.events` (schemas/stripe_event.avsc) with its body parsed."""

    event_id: str
    type: str
    created: int
    api_version: str | None
    livemode: bool
    account: str | None
    object_type: str
    object_id: str | None
    partition_key: str
    key_source: str
    received_at_ms: int
    data_object: Mapping[str, Any]
    previous_attributes: Mapping[str, Any] | None = None
    body: Mapping[str, Any] | None = None  # the whole event as Stripe sent it, parsed once

    @property
    def basil(self) -> bool:
        return is_basil(self.api_version)


# Digits to "0", every other byte to " ": a run of 19 digits (maybe an integer beyond 64
# bits, which orjson reads as a float) is then a run of 19 zeros (several times faster to
# find this way than with a regular expression).
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19


def _json_body(raw: bytes | bytearray) -> Any:
    """The body as `json.loads` reads it. orjson first (several times faster), unless the
    body may have an integer orjson would read otherwise (beyond 64 bits: a float); what orjson
    refuses (NaN, 1e400, an escaped lone surrogate, not UTF-8) is read by json. So the
    result, and what is an error, are json's."""
    if _LONG_DIGITS not in raw.translate(_DIGITS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def parse_envelope(record: Mapping[str, Any]) -> StripeEvent:
    """Read a decoded `stripe_event` Avro record; the body must be a snapshot (v1) event."""
    env = _Obj(record, "stripe_event")
    body_raw = record.get("body")
    if not isinstance(body_raw, bytes | bytearray):
        raise ParseError("stripe_event.body: expected bytes")
    try:
        body_json = _json_body(body_raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"stripe_event.body: not JSON ({exc})") from exc
    body = _Obj(body_json, "event")
    event_id = env.req_str("event_id")
    if body.opt_str("id") != event_id:
        raise ParseError("event.id: differs from the envelope's event_id")
    data = body.obj("data")
    if data is None:
        raise ParseError("event.data: required, missing or null")
    data_object = data.obj("object")
    if data_object is None:
        raise ParseError("event.data.object: required (thin events carry no snapshot)")
    previous = data.obj("previous_attributes")
    livemode = record.get("livemode")
    if not isinstance(livemode, bool):
        raise ParseError("stripe_event.livemode: expected a boolean")
    return StripeEvent(
        event_id=event_id,
        type=env.req_str("type"),
        created=env.req_int("created"),
        api_version=env.opt_str("api_version"),
        livemode=livemode,
        account=env.opt_str("account"),
        object_type=env.req_str("object_type"),
        object_id=env.opt_str("object_id"),
        partition_key=env.req_str("partition_key"),
        key_source=env.req_str("key_source"),
        received_at_ms=env.req_int("received_at_ms"),
        data_object=data_object.data,
        previous_attributes=None if previous is None else previous.data,
        body=body_json,
    )


# --- objects --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceLine:
    id: str | None
    amount: int
    subscription_id: str | None  # set on subscription lines and on subscription prorations
    is_subscription_line: bool  # pre-basil type=subscription / basil subscription_item_details
    proration: bool
    metered: bool  # usage billed in arrears (pre-basil price.recurring.usage_type)
    period_start: int | None
    period_end: int | None
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class Invoice:
    id: str
    customer: str | None
    currency: str
    amount_paid: int
    total: int
    total_excluding_tax: int  # derived from tax / total_taxes when the field is absent
    subtotal: int
    billing_reason: str | None
    status: str | None
    paid_at: int | None
    created: int
    period_start: int | None
    period_end: int | None
    subscription_id: str | None
    subscription_metadata: Mapping[str, str]  # the snapshot taken when it was finalised
    lines: tuple[InvoiceLine, ...]
    payment_intent_ids: tuple[str, ...]
    charge_ids: tuple[str, ...]
    amount_paid_off_stripe: int = 0
    paid_out_of_band: bool = False

    @property
    def amount_earning(self) -> int:
        """Money paid through Stripe (docs/STRIPE_FLOWS.md §1): the same invoice earns the
        same on every API version, nothing for what was marked paid outside Stripe."""
        if self.paid_out_of_band:
            return 0
        return max(0, self.amount_paid - self.amount_paid_off_stripe)

    @property
    def service_start(self) -> int | None:
        """Start of the subscription's own service period (docs/STRIPE_FLOWS.md §5).

        Renewals start exactly on the subscription's monthly anniversaries, so this is the
        stable clock for tenure months; `paid_at` drifts with retries and dunning. Proration
        lines and metered usage billed in arrears carry the previous cycle's periods, so
        they are ignored, and among the licensed lines the latest start wins. Without such
        a line (truncated `lines`), a cycle invoice's own period ends where the new cycle
        starts; a creation invoice's starts there.
        """
        starts = [
            line.period_start
            for line in self.lines
            if line.is_subscription_line
            and not line.proration
            and not line.metered
            and line.period_start is not None
        ]
        if starts:
            return max(starts)
        if self.billing_reason == "subscription_cycle" and self.period_end is not None:
            return self.period_end
        if self.billing_reason == "subscription_create" and self.period_start is not None:
            return self.period_start
        return None


@dataclass(frozen=True)
class Charge:
    id: str
    customer: str | None
    payment_intent: str | None
    invoice: str | None  # pre-basil only; always None from basil on
    amount: int
    amount_captured: int
    amount_refunded: int  # cumulative
    currency: str
    metadata: Mapping[str, str]
    created: int
    status: str
    captured: bool
    refunded: bool
    disputed: bool


@dataclass(frozen=True)
class Customer:
    id: str
    metadata: Mapping[str, str]
    created: int | None
    deleted: bool


@dataclass(frozen=True)
class Subscription:
    id: str
    customer: str
    status: str | None
    metadata: Mapping[str, str]
    created: int | None
    latest_invoice: str | None
    cancel_at_period_end: bool
    canceled_at: int | None


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    mode: str
    customer: str | None
    subscription_id: str | None
    subscription_metadata: Mapping[str, str] | None  # only when `subscription` was expanded
    payment_intent_id: str | None
    payment_intent_metadata: Mapping[str, str] | None  # only when expanded
    invoice_id: str | None
    metadata: Mapping[str, str]
    client_reference_id: str | None
    amount_total: int | None
    amount_tax: int | None
    currency: str | None
    created: int | None
    status: str | None
    payment_status: str | None


@dataclass(frozen=True)
class InvoicePayment:
    id: str
    invoice_id: str
    payment_intent: str | None
    charge: str | None
    amount_paid: int | None
    currency: str
    status: str
    paid_at: int | None
    created: int


def _root(data: Mapping[str, Any], name: str) -> _Obj:
    obj = _Obj(data, name)
    kind = obj.opt_str("object")
    if kind is not None and kind != name:
        raise ParseError(f"{name}.object: expected {name!r}, got {kind!r}")
    return obj


def _line(obj: _Obj) -> InvoiceLine:
    parent = obj.obj("parent")  # basil
    subscription_id = obj.opt_str("subscription")  # pre-basil
    is_sub_line = obj.opt_str("type") == "subscription"
    proration = obj.flag("proration")
    price = obj.obj("price") or obj.obj("plan")
    recurring = None if price is None else price.obj("recurring")
    metered = (recurring is not None and recurring.opt_str("usage_type") == "metered") or (
        price is not None and price.opt_str("usage_type") == "metered"  # plan objects
    )
    if parent is not None:
        sub_item = parent.obj("subscription_item_details")
        item = parent.obj("invoice_item_details")
        if sub_item is not None:
            is_sub_line = True
            subscription_id = sub_item.opt_str("subscription")
            proration = sub_item.flag("proration")
        elif item is not None:
            subscription_id = item.opt_str("subscription")
            proration = proration or item.flag("proration")
    period = obj.obj("period")
    return InvoiceLine(
        id=obj.opt_str("id"),
        amount=obj.req_int("amount"),
        subscription_id=subscription_id,
        is_subscription_line=is_sub_line,
        proration=proration,
        metered=metered,
        period_start=None if period is None else period.opt_int("start"),
        period_end=None if period is None else period.opt_int("end"),
        metadata=obj.metadata(),
    )


def _total_excluding_tax(inv: _Obj, total: int) -> int:
    value = inv.opt_int("total_excluding_tax")
    if value is not None:
        return value
    tax = inv.opt_int("tax")  # pre-basil
    if tax is not None:
        return total - tax
    taxes = inv.items("total_taxes")  # basil
    if taxes:
        return total - sum(t.req_int("amount") for t in taxes)
    return total  # no tax information at all: nothing to take out


def read_invoice(data: Mapping[str, Any]) -> Invoice:
    inv = _root(data, "invoice")
    parent = inv.obj("parent")
    sub_details = None if parent is None else parent.obj("subscription_details")
    subscription_id = inv.opt_str("subscription")
    snapshot = inv.obj("subscription_details")
    if sub_details is not None:
        subscription_id = subscription_id or sub_details.opt_str("subscription")
        snapshot = snapshot or sub_details
    pis: list[str] = []
    charges: list[str] = []
    for key, bucket in (("payment_intent", pis), ("charge", charges)):
        value = inv.opt_str(key)
        if value is not None:
            bucket.append(value)
    for payment_obj in inv.items("payments"):
        if payment_obj.opt_str("status") == "canceled":
            continue
        payment = payment_obj.obj("payment")
        if payment is None:
            continue
        for key, bucket in (("payment_intent", pis), ("charge", charges)):
            value = payment.opt_str(key)
            if value is not None and value not in bucket:
                bucket.append(value)
    transitions = inv.obj("status_transitions")
    total = inv.req_int("total")
    amount_paid = inv.opt_int("amount_paid")
    if amount_paid is None:  # before 2018-02-28: no amount_paid, only `paid`
        amount_paid = inv.req_int("amount_due") if inv.flag("paid") else 0
    created = inv.opt_int("created")
    if created is None:  # before 2019-03-14 the creation time was `date`
        created = inv.req_int("date")
    status = inv.opt_str("status")
    if status is None and inv.flag("paid"):
        status = "paid"
    return Invoice(
        id=inv.req_str("id"),
        customer=inv.opt_str("customer"),
        currency=inv.currency(),
        amount_paid=amount_paid,
        total=total,
        total_excluding_tax=_total_excluding_tax(inv, total),
        subtotal=subtotal if (subtotal := inv.opt_int("subtotal")) is not None else total,
        billing_reason=inv.opt_str("billing_reason"),
        status=status,
        paid_at=None if transitions is None else transitions.opt_int("paid_at"),
        created=created,
        period_start=inv.opt_int("period_start"),
        period_end=inv.opt_int("period_end"),
        subscription_id=subscription_id,
        subscription_metadata={} if snapshot is None else snapshot.metadata(),
        lines=tuple(_line(line) for line in inv.items("lines")),
        payment_intent_ids=tuple(pis),
        charge_ids=tuple(charges),
        amount_paid_off_stripe=inv.opt_int("amount_paid_off_stripe") or 0,
        paid_out_of_band=inv.flag("paid_out_of_band"),
    )


def read_charge(data: Mapping[str, Any]) -> Charge:
    ch = _root(data, "charge")
    amount = ch.req_int("amount")
    captured = ch.flag("captured", default=True)
    amount_captured = ch.opt_int("amount_captured")
    if amount_captured is None:  # very old versions: captured charges captured everything
        amount_captured = amount if captured else 0
    return Charge(
        id=ch.req_str("id"),
        customer=ch.opt_str("customer"),
        payment_intent=ch.opt_str("payment_intent"),
        invoice=ch.opt_str("invoice"),
        amount=amount,
        amount_captured=amount_captured,
        amount_refunded=ch.opt_int("amount_refunded") or 0,
        currency=ch.currency(),
        metadata=ch.metadata(),
        created=ch.req_int("created"),
        status=ch.req_str("status"),
        captured=captured,
        refunded=ch.flag("refunded"),
        disputed=ch.flag("disputed"),
    )


def read_customer(data: Mapping[str, Any]) -> Customer:
    cus = _root(data, "customer")
    return Customer(
        id=cus.req_str("id"),
        metadata=cus.metadata(),
        created=cus.opt_int("created"),
        deleted=cus.flag("deleted"),
    )


def read_subscription(data: Mapping[str, Any]) -> Subscription:
    sub = _root(data, "subscription")
    return Subscription(
        id=sub.req_str("id"),
        customer=sub.req_str("customer"),
        status=sub.opt_str("status"),
        metadata=sub.metadata(),
        created=sub.opt_int("created"),
        latest_invoice=sub.opt_str("latest_invoice"),
        cancel_at_period_end=sub.flag("cancel_at_period_end"),
        canceled_at=sub.opt_int("canceled_at"),
    )


def read_checkout_session(data: Mapping[str, Any]) -> CheckoutSession:
    ses = _root(data, "checkout.session")
    sub = ses.expanded("subscription")
    pi = ses.expanded("payment_intent")
    details = ses.obj("total_details")
    currency = ses.opt_str("currency")
    return CheckoutSession(
        id=ses.req_str("id"),
        mode=ses.req_str("mode"),
        customer=ses.opt_str("customer"),
        subscription_id=ses.opt_str("subscription"),
        subscription_metadata=None if sub is None else sub.metadata(),
        payment_intent_id=ses.opt_str("payment_intent"),
        payment_intent_metadata=None if pi is None else pi.metadata(),
        invoice_id=ses.opt_str("invoice"),
        metadata=ses.metadata(),
        client_reference_id=ses.opt_str("client_reference_id"),
        amount_total=ses.opt_int("amount_total"),
        amount_tax=None if details is None else details.opt_int("amount_tax"),
        currency=None if currency is None else ses.currency(),
        created=ses.opt_int("created"),
        status=ses.opt_str("status"),
        payment_status=ses.opt_str("payment_status"),
    )


def read_invoice_payment(data: Mapping[str, Any]) -> InvoicePayment:
    ip = _root(data, "invoice_payment")
    payment = ip.obj("payment")
    if payment is None:
        raise ParseError("invoice_payment.payment: required, missing or null")
    transitions = ip.obj("status_transitions")
    return InvoicePayment(
        id=ip.req_str("id"),
        invoice_id=ip.req_str("invoice"),
        payment_intent=payment.opt_str("payment_intent"),
        charge=payment.opt_str("charge"),
        amount_paid=ip.opt_int("amount_paid"),
        currency=ip.currency(),
        status=ip.req_str("status"),
        paid_at=None if transitions is None else transitions.opt_int("paid_at"),
        created=ip.req_int("created"),
    )


StripeObject = Invoice | Charge | Customer | Subscription | CheckoutSession | InvoicePayment
_OBJECT_READERS = {
    "invoice": read_invoice,
    "charge": read_charge,
    "customer": read_customer,
    "subscription": read_subscription,
    "checkout.session": read_checkout_session,
    "invoice_payment": read_invoice_payment,
}


def read_object(data: Mapping[str, Any]) -> StripeObject:
    """Read a data.object by its `object` field; ParseError for kinds not read here."""
    kind = data.get("object")
    reader = _OBJECT_READERS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        raise ParseError(f"data.object.object: no reader for {kind!r}")
    read: Any = reader  # the table maps each kind to its own reader's type
    return read(data)  # type: ignore[no-any-return]
