-- The sink hands a window of reward, status, attribution or lifecycle records to
-- ClickHouse as one Avro object container (sinks/native_avro.py): ClickHouse decodes it,
-- not Python. Null tables serve it.
--
-- rewards_avro_check: the window goes here first. The Python mapping refuses a time
-- outside DateTime's range (unix seconds 0 .. 2^32-1, sinks/rows.py `seconds`) while
-- ClickHouse's Avro input would store it wrapped around; these constraints refuse the
-- window instead, and the sink then decodes it in Python record by record, so the record
-- becomes a dead letter exactly as before.
CREATE TABLE IF NOT EXISTS rewards_avro_check
(
    hold_until Int64,
    paid_at Int64,
    decided_at Int64,
    CONSTRAINT unix_seconds CHECK hold_until BETWEEN 0 AND 4294967295
        AND paid_at BETWEEN 0 AND 4294967295 AND decided_at BETWEEN 0 AND 4294967295
)
ENGINE = Null;

-- The same check for the other topics ClickHouse decodes (their times, and lifecycle's
-- optional cancel_at).
CREATE TABLE IF NOT EXISTS reward_status_avro_check
(
    effective_at Int64,
    CONSTRAINT unix_seconds CHECK effective_at BETWEEN 0 AND 4294967295
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS attributions_avro_check
(
    attributed_at Int64,
    CONSTRAINT unix_seconds CHECK attributed_at BETWEEN 0 AND 4294967295
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS lifecycle_avro_check
(
    occurred_at Int64,
    cancel_at Nullable(Int64),
    CONSTRAINT unix_seconds CHECK occurred_at BETWEEN 0 AND 4294967295
        AND (cancel_at IS NULL OR cancel_at BETWEEN 0 AND 4294967295)
)
ENGINE = Null;

-- ledger_rewards_in: after the window is in `rewards`, the same container is inserted
-- here to count it in the referrer ledger (0004): the lines `sinks/ledger.py` makes in
-- Python for a decoded window (`_reward_line`), the first of a repeated id, and only ids
-- `ledger_counted` lacks. The lookup is a direct join (a key lookup per id in the
-- EmbeddedRocksDB table; the sink also passes join_algorithm = 'direct' with the insert).
-- ClickHouse server DDL (Null, materialized view, direct join on EmbeddedRocksDB, Avro
-- input format): nothing is specific to the embedded engine.
CREATE TABLE IF NOT EXISTS ledger_rewards_in
(
    reward_id String,
    paid_at DateTime('UTC'),
    referral_code String,
    currency LowCardinality(String),
    livemode Bool,
    account String,
    program_id String,
    program_version Int32,
    reward_amount_minor Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS ledger_rewards_in_to_lines TO ledger_lines AS
SELECT
    n.record_key AS record_key,
    n.paid_at AS at,
    'reward' AS kind,
    n.reward_id AS reward_id,
    n.referral_code AS referral_code,
    n.currency AS currency,
    n.livemode AS livemode,
    n.account AS account,
    n.program_id AS program_id,
    n.program_version AS program_version,
    toUInt64(1) AS rewards,
    n.reward_amount_minor AS rewards_minor,
    toInt64(0) AS clawbacks_minor,
    toInt64(0) AS payouts_minor
FROM
(
    SELECT concat('reward:', reward_id) AS record_key, *
    FROM ledger_rewards_in
    LIMIT 1 BY record_key
) AS n
LEFT JOIN ledger_counted AS c ON n.record_key = c.record_key
WHERE c.record_key = ''
SETTINGS join_algorithm = 'direct', join_use_nulls = 0;
