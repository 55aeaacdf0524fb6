"""The knobs of the customer ledger, as one small frozen object (the worker builds it from
its settings: streams.worker.cores.ledger_config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.ledger.attribution import MetadataKeys

DAY_S = 86_400


@dataclass(frozen=True)
class LedgerConfig:
    # Metadata key names of the referral (REFSTREAM_REFERRAL_CODE_KEY, ...).
    keys: MetadataKeys = field(default_factory=MetadataKeys)
    # Revenue still without attribution this long after its event is recorded as organic.
    attribution_window_s: int = 3 * DAY_S
    # A charge that no invoice claimed this long after its event is a one-time payment.
    # Stripe sends a charge and its invoice within seconds; the margin covers retries.
    one_time_window_s: int = DAY_S
    # Invoices wait this long (after the earliest waiting one's event) for the customer's
    # first paid invoice to show up before the earliest one seen becomes the tenure anchor.
    tenure_window_s: int = 3 * DAY_S
    # When nothing links a charge to an invoice (basil webhooks usually lack
    # invoice.payments), treat it as the payment of an unclaimed paid invoice of the same
    # customer, currency and amount paid within one_time_window_s (see customer_ledger).
    match_charges_by_amount: bool = True
    # Event ids are remembered this long (by Stripe `created`); settled payments keep their
    # full detail this long after they were received, then shrink (streams/ledger/compaction.py).
    dedup_window_s: int = 35 * DAY_S
    # Past this, a settled payment's summary is dropped (refunds/disputes of it dead-letter).
    # None: never compact (the reference the compaction tests compare with).
    settled_horizon_s: int | None = 730 * DAY_S
