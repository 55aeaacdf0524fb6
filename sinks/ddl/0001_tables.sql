-- Base tables: one per topic, one row per record, keyed by the record's deterministic id.
--
-- ReplacingMergeTree ORDER BY <id>: a record delivered twice (a re-emission upstream, or a
-- sink retry with a new batch window) collapses to one row at merge time, and every
-- documented query reads these tables with FINAL, so it is exact before merges too.
-- non_replicated_deduplication_window: ClickHouse remembers the insert_deduplication_token
-- of the last N inserts, so a batch retried after a sink crash is dropped whole.
-- Amounts are Int64 minor units beside their currency; '' stands for an absent string.

CREATE TABLE IF NOT EXISTS stripe_events
(
    event_id String,
    type LowCardinality(String),
    created DateTime('UTC'),
    api_version String,
    livemode Bool,
    account String,
    object_type LowCardinality(String),
    object_id String,
    partition_key String,
    key_source LowCardinality(String),
    received_at DateTime64(3, 'UTC'),
    customer_id String,
    customer_key String,
    currency LowCardinality(String),
    amount_minor Int64,
    amount_refunded_minor Int64,
    invoice_id String,
    charge_id String,
    payment_intent_id String,
    subscription_id String,
    status LowCardinality(String),
    payment_refs Array(String),
    money_kind LowCardinality(String),
    money_key String,
    money_minor Int64,
    body String,
    body_error String
)
ENGINE = ReplacingMergeTree
ORDER BY event_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS attributions
(
    attribution_id String,
    kind LowCardinality(String),
    customer_key String,
    customer_id String,
    referral_code String,
    new_user_id String,
    new_user_organization_id String,
    source LowCardinality(String),
    source_object_id String,
    event_id String,
    event_type LowCardinality(String),
    attributed_at DateTime('UTC'),
    livemode Bool
)
ENGINE = ReplacingMergeTree
ORDER BY attribution_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS rewards
(
    reward_id String,
    line LowCardinality(String),
    referral_code String,
    customer_key String,
    customer_id String,
    new_user_id String,
    new_user_organization_id String,
    invoice_id String,
    charge_id String,
    payment_intent_id String,
    subscription_id String,
    payment_amount_minor Int64,
    base_amount_minor Int64,
    reward_amount_minor Int64,
    currency LowCardinality(String),
    rate String,
    basis LowCardinality(String),
    tenure_month Nullable(Int32),
    program_id String,
    program_version Int32,
    livemode Bool,
    status LowCardinality(String),
    hold_until DateTime('UTC'),
    paid_at DateTime('UTC'),
    source_event_id String,
    decided_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY reward_id
SETTINGS non_replicated_deduplication_window = 10000;

-- signed_amount_minor is the effect on the referrer's earnings: -amount_minor for a
-- clawback, +amount_minor for a reinstatement, so sums need no CASE and keep the sign.
CREATE TABLE IF NOT EXISTS clawbacks
(
    clawback_id String,
    reward_id String,
    kind LowCardinality(String),
    reason LowCardinality(String),
    mode LowCardinality(String),
    referral_code String,
    customer_key String,
    amount_minor Int64,
    signed_amount_minor Int64,
    currency LowCardinality(String),
    livemode Bool,
    charge_id String,
    refund_id String,
    dispute_id String,
    refunded_total_minor Nullable(Int64),
    source_event_id String,
    occurred_at DateTime('UTC'),
    applied_to_status LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY clawback_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS reward_status
(
    status_id String,
    reward_id String,
    referral_code String,
    status LowCardinality(String),
    previous_status LowCardinality(String),
    amount_minor Int64,
    currency LowCardinality(String),
    livemode Bool,
    payout_id String,
    reason String,
    effective_at DateTime('UTC'),
    rejection_code LowCardinality(String),
    carryover_absorbed_minor Int64
)
ENGINE = ReplacingMergeTree
ORDER BY status_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS payouts
(
    payout_id String,
    referral_code String,
    reward_ids Array(String),
    amount_minor Int64,
    currency LowCardinality(String),
    livemode Bool,
    paid_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY payout_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS lifecycle
(
    lifecycle_id String,
    customer_key String,
    referral_code String,
    subscription_id String,
    change LowCardinality(String),
    status LowCardinality(String),
    previous_amount_minor Nullable(Int64),
    amount_minor Nullable(Int64),
    currency LowCardinality(String),
    interval LowCardinality(String),
    livemode Bool,
    source_event_id String,
    occurred_at DateTime('UTC'),
    interval_count Nullable(Int32),
    price_ids Array(String),
    previous_price_ids Array(String),
    cancel_at Nullable(DateTime('UTC'))
)
ENGINE = ReplacingMergeTree
ORDER BY lifecycle_id
SETTINGS non_replicated_deduplication_window = 10000;

-- Records that could not be processed: from the *.dlq topics (stage ingress/worker) and
-- records the sink itself could not decode (stage sink). `value` keeps the original bytes.
CREATE TABLE IF NOT EXISTS dead_letters
(
    dead_letter_id String,
    stage LowCardinality(String),
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    key Nullable(String),
    value String,
    event_id String,
    error_type LowCardinality(String),
    error String,
    failed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY dead_letter_id
SETTINGS non_replicated_deduplication_window = 10000;
