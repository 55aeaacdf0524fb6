-- Referrer totals that stay fast at any history length and exact under re-emission.
--
-- A Summing/AggregatingMergeTree fed by a materialized view over the base tables double
-- counts a record re-emitted in a later insert (docs/ANALYTICS.md, "Why views"). Here the
-- sink counts each record once: before counting a window's rewards, clawbacks and payouts
-- it looks their ids up in `ledger_counted` (a key-value table: point lookups stay fast at
-- any size) and inserts only the ones not counted yet into `ledger_lines`. That one INSERT
-- reaches every view below: the ids into `ledger_counted`, the amounts into the daily and
-- monthly totals, the lines into the statement table. A window retried after a crash,
-- with the same or with other boundaries, and a record re-emitted in any later window find their ids counted and add
-- nothing. sinks/ledger.py has the protocol; sinks/service.py counts what an existing
-- deployment stored before this version, at start.
--
-- Every engine and setting here is a ClickHouse server one (Null, EmbeddedRocksDB,
-- SummingMergeTree, materialized views); nothing is specific to the embedded engine.

CREATE TABLE IF NOT EXISTS ledger_counted
(
    record_key String,
    counted_at DateTime('UTC') DEFAULT now()
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY record_key;

-- One row per money line of a referrer: a reward (+), a clawback (-) or reinstatement
-- (+, signed_amount_minor), a payout (+ payouts_minor). program_* is the reward's program
-- ('' / 0 on corrections and payouts, which do not carry it).
CREATE TABLE IF NOT EXISTS referrer_ledger_daily
(
    referral_code String,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    day Date,
    program_id String,
    program_version Int32,
    rewards UInt64,
    rewards_minor Int64,
    clawbacks_minor Int64,
    payouts_minor Int64
)
ENGINE = SummingMergeTree
ORDER BY (referral_code, currency, livemode, account, day, program_id, program_version);

-- The same per month: a report over whole months reads one row per referrer and month,
-- so its cost grows with months of history, not with records (the days of the partial
-- months at the ends of a range come from the daily table).
CREATE TABLE IF NOT EXISTS referrer_ledger_monthly
(
    referral_code String,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    month Date,
    program_id String,
    program_version Int32,
    rewards UInt64,
    rewards_minor Int64,
    clawbacks_minor Int64,
    payouts_minor Int64
)
ENGINE = SummingMergeTree
ORDER BY (referral_code, currency, livemode, account, month, program_id, program_version);

-- Every counted line of a referrer, in statement order: the `referrer_statement` report
-- reads one referrer's lines by primary key. Each record id reaches it once (the sink
-- counts ids once), so it needs neither a Replacing engine nor FINAL.
CREATE TABLE IF NOT EXISTS referrer_statement_lines
(
    referral_code String,
    at DateTime('UTC'),
    kind_order UInt8,
    kind LowCardinality(String),
    record_id String,
    reward_id String,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    amount_minor Int64
)
ENGINE = MergeTree
ORDER BY (referral_code, at, kind_order, record_id);

CREATE TABLE IF NOT EXISTS ledger_lines
(
    record_key String,
    at DateTime('UTC'),
    kind LowCardinality(String),
    reward_id String,
    referral_code String,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    program_id String,
    program_version Int32,
    rewards UInt64,
    rewards_minor Int64,
    clawbacks_minor Int64,
    payouts_minor Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS ledger_lines_to_daily TO referrer_ledger_daily AS
SELECT referral_code, currency, livemode, account, toDate(at) AS day, program_id,
    program_version, rewards, rewards_minor, clawbacks_minor, payouts_minor
FROM ledger_lines;

CREATE MATERIALIZED VIEW IF NOT EXISTS ledger_lines_to_monthly TO referrer_ledger_monthly AS
SELECT referral_code, currency, livemode, account, toStartOfMonth(at) AS month, program_id,
    program_version, rewards, rewards_minor, clawbacks_minor, payouts_minor
FROM ledger_lines;

CREATE MATERIALIZED VIEW IF NOT EXISTS ledger_lines_to_statement TO referrer_statement_lines AS
SELECT referral_code, at,
    toUInt8(multiIf(kind = 'reward', 0, kind = 'reinstatement', 1, kind = 'clawback', 2, 3))
        AS kind_order,
    kind, substring(record_key, position(record_key, ':') + 1) AS record_id, reward_id,
    currency, livemode, account, rewards_minor + clawbacks_minor - payouts_minor AS amount_minor
FROM ledger_lines;

CREATE MATERIALIZED VIEW IF NOT EXISTS ledger_lines_to_counted TO ledger_counted AS
SELECT record_key, now() AS counted_at
FROM ledger_lines;
