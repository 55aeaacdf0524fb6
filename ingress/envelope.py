"""A verified body -> the `stripe.events` record (schemas/stripe_event.avsc) and its key.

The ingress reads only the few fields it needs for routing; the body itself travels byte
for byte, so the streams parse what they need and nothing is lost by a re-serialisation.

What counts as a Stripe event (else 400): a JSON object that ingress/body_limits.py
accepts (UTF-8, no lone surrogates, 64-bit integers, finite numbers, bounded depth), with
`id` (non-empty string, at most 255 characters), `type` (non-empty string), `created`
(integer),
`livemode` (boolean) and `data.object` (an object with a string `object`). A top-level
`object`, when present, must be "event"; thin events (`"v2.core.event"`, API v2 event
destinations) are refused with their own reason because they carry no snapshot and the
pipeline needs one. Optional fields of the wrong type (`api_version`, `account`) are
recorded as null rather than refused: the raw body keeps them anyway.

Partition key rule (the streams rely on it: everything about one customer shares a
partition and is read in order). The first that applies, with `key_source`:
  1. a customer.* event whose data.object is a customer -> that customer's id, "customer";
  2. data.object.customer (an id string, or an expanded object with an id) -> "customer";
  3. data.object.payment_intent (string or expanded) -> "payment_intent" (a guest payment:
     its charge, refund and dispute events carry the same payment intent);
  4. data.object is itself a payment_intent -> its own id, "payment_intent";
  5. an invoice_payment (names no customer) -> payment.payment_intent, "payment_intent",
     else payment.charge, "charge";
  6. a dispute or refund of a charge made without a payment intent -> data.object.charge,
     "charge"; a charge without customer or payment intent -> its own id, "charge";
  7. data.object.id -> "object";
  8. the event id -> "event".
The Kafka key is that string in UTF-8; Kafka's default partitioner (murmur2 of the key)
then maps it to a partition.

Two kinds of body can become an envelope: a `VerifiedBody` (a webhook whose signature
matched) and a `FetchedBody` (an event `refstream backfill` read from the Stripe API with
the operator's key over TLS, or built from objects read that way; its `source` is recorded
in the record's `backfill` field). Both go through the same checks and key rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ingress.body_limits import DEFAULT_MAX_DEPTH, load_json
from ingress.rejection import Reason, Rejected
from ingress.signature import VerifiedBody
from refstream.avro_codec import AvroCodec

MAX_EVENT_ID_CHARS = 255
THIN_EVENT_OBJECT = "v2.core.event"
_AVRO_LONG_MAX = 2**63 - 1

_CODEC = AvroCodec.for_schema("stripe_event")
BACKFILL_SOURCES = frozenset({"events_api", "objects"})


@dataclass(frozen=True, slots=True)
class FetchedBody:
    """An event body read from the Stripe API (authenticated by our key, not a signature).

    `source` is "events_api" (the event as Stripe kept it) or "objects" (built by the
    backfill from an object older than the Events API's retention)."""

    body: bytes = field(repr=False)  # may hold personal data: keep it out of reprs and logs
    source: str

    def __post_init__(self) -> None:
        if self.source not in BACKFILL_SOURCES:
            raise ValueError(f"unknown backfill source {self.source!r}")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One accepted event, ready to publish: the Avro record's fields around the body."""

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
    verified: VerifiedBody | FetchedBody = field(repr=False)

    @property
    def key(self) -> bytes:
        return self.partition_key.encode("utf-8")

    def record(self) -> dict[str, Any]:
        """The stripe_event Avro record."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "created": self.created,
            "api_version": self.api_version,
            "livemode": self.livemode,
            "account": self.account,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "partition_key": self.partition_key,
            "key_source": self.key_source,
            "received_at_ms": self.received_at_ms,
            "body": self.verified.body,
            "backfill": self.backfill,
        }

    @property
    def backfill(self) -> str | None:
        """None for a webhook, else where the backfill got the event (FetchedBody)."""
        return self.verified.source if isinstance(self.verified, FetchedBody) else None

    def encode(self) -> bytes:
        """The Kafka record value: the Avro record in single-object encoding."""
        return _CODEC.encode(self.record())


def parse_envelope(
    verified: VerifiedBody | FetchedBody, received_at_ms: int, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> Envelope | Rejected:
    event = load_json(verified.body, max_depth)
    if isinstance(event, Rejected):
        return event
    if not isinstance(event, dict):
        return Rejected(Reason.NOT_A_STRIPE_EVENT, "body is not a JSON object")

    kind = event.get("object")
    if kind == THIN_EVENT_OBJECT:
        return Rejected(
            Reason.THIN_EVENT,
            "thin events (v2.core.event) carry no object snapshot; "
            "send snapshot events to this endpoint",
        )
    if kind is not None and kind != "event":
        return Rejected(Reason.NOT_A_STRIPE_EVENT, "object is not 'event'")

    event_id, type_ = event.get("id"), event.get("type")
    created, livemode = event.get("created"), event.get("livemode")
    if not _non_empty_str(event_id) or len(event_id) > MAX_EVENT_ID_CHARS:
        return Rejected(Reason.NOT_A_STRIPE_EVENT, "id must be a string of 1-255 characters")
    if not _non_empty_str(type_):
        return Rejected(Reason.NOT_A_STRIPE_EVENT, "type must be a non-empty string")
    # bool is an int in Python: refuse it explicitly.
    if not isinstance(created, int) or isinstance(created, bool):
        return Rejected(Reason.NOT_A_STRIPE_EVENT, "created must be an integer")
    if not 0 <= created <= _AVRO_LONG_MAX:
        return Rejected(Reason.NOT_A_STRIPE_EVENT, "created is out of range")
    if not isinstance(livemode, bool):
        return Rejected(Reason.NOT_A_STRIPE_EVENT, "livemode must be a boolean")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not _non_empty_str(obj.get("object")):
        return Rejected(
            Reason.NOT_A_STRIPE_EVENT, "data.object must be an object with a string 'object'"
        )

    partition_key, key_source = partition_key_of(event_id, type_, obj)
    return Envelope(
        event_id=event_id,
        type=type_,
        created=created,
        api_version=_opt_str(event.get("api_version")),
        livemode=livemode,
        account=_opt_str(event.get("account")),
        object_type=obj["object"],
        object_id=_ref_id(obj.get("id")),
        partition_key=partition_key,
        key_source=key_source,
        received_at_ms=received_at_ms,
        verified=verified,
    )


def partition_key_of(event_id: str, type_: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(partition key, key source) by the rule in the module docstring."""
    object_id = _ref_id(obj.get("id"))
    object_type = obj.get("object")
    if type_.startswith("customer.") and object_type == "customer" and object_id:
        return object_id, "customer"
    customer = _ref_id(obj.get("customer"))
    if customer:
        return customer, "customer"
    payment_intent = _ref_id(obj.get("payment_intent"))
    if payment_intent:
        return payment_intent, "payment_intent"
    if object_type == "payment_intent" and object_id:
        return object_id, "payment_intent"
    payment = obj.get("payment")
    if object_type == "invoice_payment" and isinstance(payment, dict):
        # Names no customer: keyed by the payment whose owner the worker knows.
        if pi := _ref_id(payment.get("payment_intent")):
            return pi, "payment_intent"
        if charge := _ref_id(payment.get("charge")):
            return charge, "charge"
    charge = _ref_id(obj.get("charge"))
    if charge and object_type in ("dispute", "refund"):
        return charge, "charge"  # a charge made without a payment intent
    if object_type == "charge" and object_id:
        return object_id, "charge"  # a guest charge without a payment intent
    if object_id:
        return object_id, "object"
    return event_id, "event"


def _ref_id(value: object) -> str | None:
    """The id of a Stripe reference: an id string, or an expanded object's `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if _non_empty_str(value) else None


def _non_empty_str(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value != "" and _utf8(value)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and _utf8(value) else None


def _utf8(value: str) -> bool:
    # JSON escapes can produce lone surrogates ("\ud800"), which UTF-8 (and so Avro and the
    # Kafka key) cannot carry; such a string is treated as absent or invalid, never a 500.
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
