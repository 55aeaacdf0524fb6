-- All-or-nothing ledger writes (sinks/fanout.py). ClickHouse commits each view target of
-- one INSERT on its own, so a crash inside a ledger's one insert could leave a record
-- counted (a key-value target) whose amounts never reached the totals (a MergeTree
-- target). Each ledger now stages its window in `<table>_pending` (one MergeTree part:
-- all or nothing), applies it under a token the MergeTree targets remember, and clears it;
-- a window left staged is applied again, and the targets that took it drop it.
--
-- Every target a ledger's views write keeps a deduplication window for that: every write
-- to them carries a fresh token (sinks/fanout.py), so two windows whose blocks happen to
-- be equal are never mistaken for a retry.
-- ClickHouse server DDL: nothing is specific to the embedded engine.

CREATE TABLE IF NOT EXISTS ledger_lines_pending AS ledger_lines
ENGINE = MergeTree ORDER BY tuple();

ALTER TABLE ledger_lines_pending ADD COLUMN IF NOT EXISTS fanout_token String;

CREATE TABLE IF NOT EXISTS revenue_in_pending AS revenue_in
ENGINE = MergeTree ORDER BY tuple();

ALTER TABLE revenue_in_pending ADD COLUMN IF NOT EXISTS fanout_token String;

CREATE TABLE IF NOT EXISTS balance_lines_pending AS balance_lines
ENGINE = MergeTree ORDER BY tuple();

ALTER TABLE balance_lines_pending ADD COLUMN IF NOT EXISTS fanout_token String;

ALTER TABLE referrer_ledger_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE referrer_ledger_monthly MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE referrer_statement_lines MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE revenue_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE revenue_monthly MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE revenue_customer_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE balance_totals MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE program_totals_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE program_totals_monthly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- A window ClickHouse decoded (rewards, statuses) is now brought into the balances in SQL
-- (sinks/balance_ledger.py `_CHANGED_SQL`): the rewards it changes, their new state
-- beside the stored one, go here first. Scratch space like balance_scratch_rewards:
-- emptied before use.
CREATE TABLE IF NOT EXISTS balance_scratch_changed
(
    reward_id String,
    has Bool,
    code String,
    currency String,
    livemode Bool,
    account String,
    amount Int64,
    emission String,
    program_id String,
    version Int32,
    paid_at Int64,
    revision UInt32,
    had Bool,
    old_code String,
    old_currency String,
    old_livemode Bool,
    old_account String,
    old_amount Int64,
    old_emission String,
    old_program_id String,
    old_version Int32,
    old_paid_at Int64,
    status String,
    status_at Int64,
    status_rank UInt8,
    old_status String,
    clawback_ids Array(String),
    cancelled Int64,
    corrections Int64
)
ENGINE = Memory;

-- A window of rewards ClickHouse decoded is now counted from the balance ledger's scratch
-- copy through the same staging (sinks/ledger.py `count_scratch`), not by a view of its own.
DROP VIEW IF EXISTS ledger_rewards_in_to_lines;

DROP TABLE IF EXISTS ledger_rewards_in;
