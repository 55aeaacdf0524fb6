"""Corrections to the referral ledger: refunds, disputes, holds, payouts, balances, lifecycle.

Pure functions over plain JSON-serialisable state; nothing here knows Kafka, and
time is always passed in. Two sides, because refunds arrive per customer and payouts per
referrer:

customer side (state per customer key, payments.py)
    register_reward(state, RewardRef)      -> (state, [correction])
    apply_refund(state, RefundFact)        -> (state, [correction])
    apply_dispute(state, DisputeFact)      -> (state, [correction])
    refund_fact(event) / dispute_fact(event) read the raw Stripe events (stripe_facts.py).
    A correction is a clawback record without `mode`/`applied_to_status`: forward it to
    the referrer side, keyed by its referral_code.

referrer side (state per referral code + entries per reward id, referrer_book.py)
    register_reward / apply_correction / advance_holds / apply_payout -> Step
    Step: state to store, changed reward entries to store, records to produce in order
    (("clawback", record) -> referral.clawbacks, ("reward_status", record) -> status topic).
    ReferrerBook wraps these over two mutable mappings (dicts or table partitions).

balances.py folds reward, clawback and reward_status records into balances per
(referral code, currency, livemode) and checks the invariant; lifecycle.py turns
customer.subscription.* events into lifecycle records.
"""

from streams.corrections.balances import (
    balance_key,
    earned_minor,
    fold,
    fold_records,
    net_payable_minor,
)
from streams.corrections.errors import CorrectionInputError, InvariantViolation, invariant
from streams.corrections.lifecycle import lifecycle_records
from streams.corrections.payments import (
    apply_dispute,
    apply_refund,
    link_payment,
    new_customer_state,
)
from streams.corrections.payments import register_reward as register_customer_reward
from streams.corrections.payouts import Rejection, apply_payout, plan_payout, read_payout
from streams.corrections.referrer_book import (
    ReferrerBook,
    advance_holds,
    apply_correction,
    check_consistency,
    next_hold_until,
)
from streams.corrections.referrer_book import register_reward as register_referrer_reward
from streams.corrections.referrer_state import Step, new_referrer_state
from streams.corrections.refs import DisputeFact, RefundFact, RewardRef
from streams.corrections.stripe_facts import dispute_fact, refund_fact

__all__ = [
    "CorrectionInputError",
    "DisputeFact",
    "InvariantViolation",
    "ReferrerBook",
    "RefundFact",
    "Rejection",
    "RewardRef",
    "Step",
    "advance_holds",
    "apply_correction",
    "apply_dispute",
    "apply_payout",
    "apply_refund",
    "balance_key",
    "check_consistency",
    "dispute_fact",
    "earned_minor",
    "fold",
    "fold_records",
    "invariant",
    "lifecycle_records",
    "link_payment",
    "net_payable_minor",
    "new_customer_state",
    "new_referrer_state",
    "next_hold_until",
    "plan_payout",
    "read_payout",
    "refund_fact",
    "register_customer_reward",
    "register_referrer_reward",
]
