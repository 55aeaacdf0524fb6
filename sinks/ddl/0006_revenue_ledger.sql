-- The revenue ledger: revenue totals that stay fast at any history length and exact under
-- retries, re-emission and records of any topic arriving in any order.
--
-- Revenue is not record-local (a standalone charge stops counting when an invoice lists it,
-- refunds are differences between a charge's snapshots, a customer's revenue is referred or
-- organic by an attribution that may arrive later), so the sink keeps, per money key and per
-- charge / payment intent / customer, the sufficient statistics of what it has stored
-- (`revenue_keys`, `revenue_customers`, `revenue_attributions`: EmbeddedRocksDB, point
-- lookups). For each stripe_events or attributions window it looks the touched states up,
-- computes in Python (sinks/revenue/) the new states and the change of every contribution
-- (minus what was counted, plus what counts now), and writes both in ONE insert into
-- `revenue_in` (Null), whose views upsert the states and add the deltas to the totals below.
-- A window read again recomputes the same states, so its deltas are zero: idempotent by
-- content. sinks/revenue_ledger.py has the protocol; the sink backfills what an existing
-- deployment stored, at start. The views of 0002/0003 stay the reference.
--
-- Every engine and setting here is a ClickHouse server one (Null, EmbeddedRocksDB,
-- SummingMergeTree, materialized views).

-- Money keys ("invoice:in_...", "charge:ch_...", "refund:ch_...", "dispute:du_...") and
-- charge / payment intent ids ("node:ch_...", "node:pi_..."), each with its state as JSON.
CREATE TABLE IF NOT EXISTS revenue_keys
(
    key String,
    state String
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY key;

-- One row per customer x mode x currency with revenue: what `customers` and
-- `awaiting_attribution` read (entries = revenue entries counted; 0 = none any more).
CREATE TABLE IF NOT EXISTS revenue_customers
(
    key String,
    customer_key String,
    livemode Bool,
    currency String,
    revenue_minor Int64,
    entries Int64,
    first_paid_date Nullable(Date),
    state String
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY key;

-- One row per customer x mode with an attribution record: the first touch (argMin by
-- attributed_at, attribution_id) and whether an organic record exists.
CREATE TABLE IF NOT EXISTS revenue_attributions
(
    key String,
    customer_key String,
    livemode Bool,
    referral_code String,
    account String,
    organic Bool,
    state String
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY key;

-- Revenue per bucket (referred + referral_code + the attribution's account, organic,
-- unattributed) x currency x mode x the revenue's Connect account x day. `entries` counts
-- the revenue entries summed in (a day whose entries net to zero still has a row).
CREATE TABLE IF NOT EXISTS revenue_daily
(
    bucket LowCardinality(String),
    referral_code String,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    attr_account String,
    day Date,
    amount_minor Int64,
    entries Int64
)
ENGINE = SummingMergeTree
ORDER BY (bucket, referral_code, currency, livemode, account, attr_account, day);

-- The same per month: whole months of a range read one row per bucket and month.
CREATE TABLE IF NOT EXISTS revenue_monthly
(
    bucket LowCardinality(String),
    referral_code String,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    attr_account String,
    month Date,
    amount_minor Int64,
    entries Int64
)
ENGINE = SummingMergeTree
ORDER BY (bucket, referral_code, currency, livemode, account, attr_account, month);

-- Per customer and day: what an attribution that changes a customer's bucket moves.
CREATE TABLE IF NOT EXISTS revenue_customer_daily
(
    customer_key String,
    livemode Bool,
    currency LowCardinality(String),
    account String,
    day Date,
    amount_minor Int64,
    entries Int64
)
ENGINE = SummingMergeTree
ORDER BY (customer_key, livemode, currency, account, day);

-- One insert per window: states (target keys / customers / attributions) and delta lines
-- (target line; rebucket = 1 for a move between buckets, which leaves a customer's days
-- as they are).
CREATE TABLE IF NOT EXISTS revenue_in
(
    target LowCardinality(String),
    key String,
    state String,
    customer_key String,
    livemode Bool,
    currency LowCardinality(String),
    account String,
    day Date,
    bucket LowCardinality(String),
    referral_code String,
    attr_account String,
    amount_minor Int64,
    entries Int64,
    rebucket UInt8,
    first_paid_date Nullable(Date),
    organic Bool
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_in_to_keys TO revenue_keys AS
SELECT key, state FROM revenue_in WHERE target = 'key';

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_in_to_customers TO revenue_customers AS
SELECT key, customer_key, livemode, toString(currency) AS currency,
    amount_minor AS revenue_minor, entries, first_paid_date, state
FROM revenue_in WHERE target = 'customer';

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_in_to_attributions TO revenue_attributions AS
SELECT key, customer_key, livemode, referral_code, attr_account AS account, organic, state
FROM revenue_in WHERE target = 'attribution';

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_in_to_daily TO revenue_daily AS
SELECT bucket, referral_code, currency, livemode, account, attr_account, day, amount_minor,
    entries
FROM revenue_in WHERE target = 'line';

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_in_to_monthly TO revenue_monthly AS
SELECT bucket, referral_code, currency, livemode, account, attr_account,
    toStartOfMonth(day) AS month, amount_minor, entries
FROM revenue_in WHERE target = 'line';

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_in_to_customer_daily TO revenue_customer_daily AS
SELECT customer_key, livemode, currency, account, day, amount_minor, entries
FROM revenue_in WHERE target = 'line' AND rebucket = 0;
