"""Minimal input types of the correction core, independent of the reward engine's types.

`RewardRef` is what the core needs to know about one emitted reward; build it from a
`referral.rewards` record (schemas/reward.avsc) with `RewardRef.from_reward_record`.
`RefundFact` and `DisputeFact` are what the core needs from a Stripe refund or dispute
event; `stripe_facts` builds them from raw event dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from streams.corrections.errors import CorrectionInputError

INITIAL_STATUSES = ("pending", "payable")


def _str(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise CorrectionInputError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _opt_str(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise CorrectionInputError(f"{key} must be a string or null, got {value!r}")
    return value


def _int(record: Mapping[str, Any], key: str, *, minimum: int) -> int:
    value = record.get(key)
    # bool is an int subclass: a True amount is a bug upstream, not 1 cent.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CorrectionInputError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _bool(record: Mapping[str, Any], key: str) -> bool:
    value = record.get(key)
    if not isinstance(value, bool):
        raise CorrectionInputError(f"{key} must be a boolean, got {value!r}")
    return value


def _reward_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "reward_id": _str(data, "reward_id"),
        "referral_code": _str(data, "referral_code"),
        "customer_key": _str(data, "customer_key"),
        "amount_minor": _int(data, "amount_minor", minimum=0),
        "currency": _str(data, "currency").lower(),
        "livemode": _bool(data, "livemode"),
        "charge_id": _opt_str(data, "charge_id"),
        "payment_intent_id": _opt_str(data, "payment_intent_id"),
        # A reward on a zero payment cannot exist, and the refund share divides by it.
        "payment_amount_minor": _int(data, "payment_amount_minor", minimum=1),
        "paid_at": _int(data, "paid_at", minimum=0),
        "hold_until": _int(data, "hold_until", minimum=0),
        "status": data.get("status", "pending"),
        "invoice_id": _opt_str(data, "invoice_id"),
        "account": _opt_str(data, "account"),
    }
    if fields["status"] not in INITIAL_STATUSES:
        raise CorrectionInputError(
            f"status of a new reward must be one of {INITIAL_STATUSES}, got {fields['status']!r}"
        )
    return fields


@dataclass(frozen=True)
class RewardRef:
    """One reward as the correction core sees it. Amounts in minor units of `currency`."""

    reward_id: str
    referral_code: str
    customer_key: str
    amount_minor: int
    currency: str
    livemode: bool
    charge_id: str | None
    payment_intent_id: str | None
    payment_amount_minor: int
    paid_at: int
    hold_until: int
    status: str = "pending"
    invoice_id: str | None = None  # None for a one-time charge's reward
    account: str | None = None  # Connect: the connected account, None for the platform

    def __post_init__(self) -> None:
        # Direct construction is validated by the same reader as records and state.
        _reward_fields(asdict(self))
        object.__setattr__(self, "currency", self.currency.lower())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardRef:
        """Read a RewardRef back from `to_dict()` output (state), validating every field."""
        return cls(**_reward_fields(data))

    @classmethod
    def from_reward_record(cls, record: Mapping[str, Any]) -> RewardRef:
        """Adapt a `referral.rewards` record (schemas/reward.avsc) into a RewardRef."""
        data = dict(record)
        data["amount_minor"] = record.get("reward_amount_minor")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RefundFact:
    """Refund progress of one charge, from charge.refunded or refund.* events.

    `refunded_total_minor` is the charge's cumulative amount_refunded (charge events);
    `refund_id`/`refund_amount_minor` describe one refund (refund events). Either may be
    absent. `counts` is False for a refund whose status says no money went back.
    """

    charge_id: str
    payment_intent_id: str | None
    refunded_total_minor: int | None
    refund_id: str | None
    refund_amount_minor: int | None
    counts: bool
    currency: str | None
    event_id: str
    occurred_at: int
    amount_captured_minor: int | None = None  # charge snapshots
    release_minor: int = 0  # pre-basil partial capture: released remainder, not a refund
    decreased: bool = False  # previous_attributes shows amount_refunded went down
    refund_status: str | None = None
    refund_created: int | None = None
    charge_created: int | None = None  # charge snapshots: when the payment was made


@dataclass(frozen=True)
class DisputeFact:
    """One observation of a dispute (created, updated or closed) and its status then."""

    dispute_id: str
    charge_id: str
    payment_intent_id: str | None
    status: str
    event_id: str
    occurred_at: int
    amount_minor: int | None = None  # the disputed amount; None: the whole charge
    currency: str | None = None


@dataclass(frozen=True)
class PaymentLink:
    """An invoice paid (in part) by a payment: `share_minor` of the invoice's amount, or
    None when the link names no share (then the payment paid the invoice whole)."""

    invoice_id: str
    payment_intent_id: str | None
    charge_id: str | None
    share_minor: int | None
    event_id: str
    occurred_at: int
