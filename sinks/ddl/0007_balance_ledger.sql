-- Balances and rewards per program that stay fast at any history length and exact under
-- duplicated windows, crash replays, re-emission and records of the rewards, status and
-- clawbacks topics arriving in any order relative to each other.
--
-- A reward's balance figures are not record-local: its status is its latest transition,
-- its standing amount is the reward plus its cancel-mode clawbacks. So the sink keeps, per
-- reward, what those figures need (`balance_reward_states`, a key-value table: a point
-- lookup per reward at any size). For every window of rewards, statuses or clawbacks, after
-- the window's base-table insert, it looks up the states of the rewards the window touches,
-- computes in Python (sinks/balance_core.py) the new states and the change of each total
-- (minus the old state's contribution, plus the new one's), and writes both in ONE insert
-- into `balance_lines` (Null), whose views upsert the states and add the changes to the
-- totals below. A window read again finds the states it would write already there: the
-- new states equal the old ones and nothing is added. sinks/balance_ledger.py has the
-- protocol; sinks/service.py counts what was stored before this version, at start.
--
-- Every engine here is a ClickHouse server one (Null, Memory, EmbeddedRocksDB,
-- SummingMergeTree, materialized views); nothing is specific to the embedded engine.

-- One row per reward id seen on any of the three topics (a status or a clawback may come
-- before its reward: the state then holds it, `has_reward` = false, until the reward comes).
CREATE TABLE IF NOT EXISTS balance_reward_states
(
    reward_id String,
    has_reward Bool,
    referral_code String,
    currency String,
    livemode Bool,
    account String,
    amount_minor Int64,
    emission_status String,
    program_id String,
    program_version Int32,
    paid_at DateTime('UTC'),
    revision UInt32,
    -- the latest transition by (effective_at, status order, status); '' when none yet
    status String,
    status_at Int64,
    status_rank UInt8,
    -- the clawbacks and reinstatements counted for this reward (each id once)
    clawback_ids Array(String),
    cancelled_minor Int64,
    corrections_minor Int64
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY reward_id;

-- The balance totals per referrer x currency x mode (livemode, account). `lines` counts
-- the records behind a row (a reward, a clawback), so a row whose money sums to zero still
-- exists, as it does in the reference view.
CREATE TABLE IF NOT EXISTS balance_totals
(
    referral_code String,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    lines Int64,
    rewards_minor Int64,
    pending_minor Int64,
    payable_minor Int64,
    paid_minor Int64,
    clawbacks_minor Int64
)
ENGINE = SummingMergeTree
ORDER BY (referral_code, currency, livemode, account);

-- Rewards and all their corrections per program version, by the reward's payment day
-- (the report filters on it) and month (whole months of a range read this one).
CREATE TABLE IF NOT EXISTS program_totals_daily
(
    program_id String,
    program_version Int32,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    referral_code String,
    day Date,
    rewards Int64,
    rewards_minor Int64,
    clawbacks_minor Int64
)
ENGINE = SummingMergeTree
ORDER BY (program_id, program_version, currency, livemode, account, referral_code, day);

CREATE TABLE IF NOT EXISTS program_totals_monthly
(
    program_id String,
    program_version Int32,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    referral_code String,
    month Date,
    rewards Int64,
    rewards_minor Int64,
    clawbacks_minor Int64
)
ENGINE = SummingMergeTree
ORDER BY (program_id, program_version, currency, livemode, account, referral_code, month);

-- What the sink writes per window: `line` 'state' (a reward's new state), 'balance' (a
-- change of one balance_totals row) or 'program' (a change of one program row).
CREATE TABLE IF NOT EXISTS balance_lines
(
    line LowCardinality(String),
    reward_id String,
    has_reward Bool,
    referral_code String,
    currency String,
    livemode Bool,
    account String,
    amount_minor Int64,
    emission_status String,
    program_id String,
    program_version Int32,
    paid_at DateTime('UTC'),
    revision UInt32,
    status String,
    status_at Int64,
    status_rank UInt8,
    clawback_ids Array(String),
    cancelled_minor Int64,
    corrections_minor Int64,
    lines Int64,
    rewards Int64,
    rewards_minor Int64,
    pending_minor Int64,
    payable_minor Int64,
    paid_minor Int64,
    clawbacks_minor Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS balance_lines_to_states TO balance_reward_states AS
SELECT reward_id, has_reward, referral_code, currency, livemode, account, amount_minor,
    emission_status, program_id, program_version, paid_at, revision, status, status_at,
    status_rank, clawback_ids, cancelled_minor, corrections_minor
FROM balance_lines
WHERE line = 'state';

CREATE MATERIALIZED VIEW IF NOT EXISTS balance_lines_to_totals TO balance_totals AS
SELECT referral_code, currency, livemode, account, lines, rewards_minor, pending_minor,
    payable_minor, paid_minor, clawbacks_minor
FROM balance_lines
WHERE line = 'balance';

CREATE MATERIALIZED VIEW IF NOT EXISTS balance_lines_to_program_daily TO program_totals_daily AS
SELECT program_id, program_version, currency, livemode, account, referral_code,
    toDate(paid_at) AS day, rewards, rewards_minor, clawbacks_minor
FROM balance_lines
WHERE line = 'program';

CREATE MATERIALIZED VIEW IF NOT EXISTS balance_lines_to_program_monthly
TO program_totals_monthly AS
SELECT program_id, program_version, currency, livemode, account, referral_code,
    toStartOfMonth(paid_at) AS month, rewards, rewards_minor, clawbacks_minor
FROM balance_lines
WHERE line = 'program';

-- A window ClickHouse decoded itself (sinks/native_avro.py) was never decoded in Python:
-- its container is inserted here too (the few columns the balances need) and read back.
-- Scratch space of the one sink process that writes a database (its writes are serial,
-- one window at a time): emptied before each use, so what a crash left here is harmless.
CREATE TABLE IF NOT EXISTS balance_scratch_rewards
(
    reward_id String,
    referral_code String,
    currency String,
    livemode Bool,
    account String,
    reward_amount_minor Int64,
    status String,
    program_id String,
    program_version Int32,
    paid_at Int64,
    revision UInt32
)
ENGINE = Memory;

CREATE TABLE IF NOT EXISTS balance_scratch_status
(
    reward_id String,
    status String,
    effective_at Int64
)
ENGINE = Memory;
