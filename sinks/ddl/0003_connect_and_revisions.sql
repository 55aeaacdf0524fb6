-- Connect: the connected account (acct_...) of each record, '' for the platform's own, so
-- analysts can keep accounts apart (record ids already carry it: "test@acct_.../...").
-- Rewards: the revision that completed the payment ids; ReplacingMergeTree keeps the last
-- inserted row of a reward_id, and revisions of one reward are produced in order on one
-- partition, so the highest revision is what FINAL reads. Money never changes between them.
ALTER TABLE rewards ADD COLUMN IF NOT EXISTS revision UInt32 DEFAULT 0;
ALTER TABLE rewards ADD COLUMN IF NOT EXISTS account String DEFAULT '';
ALTER TABLE clawbacks ADD COLUMN IF NOT EXISTS account String DEFAULT '';
ALTER TABLE attributions ADD COLUMN IF NOT EXISTS account String DEFAULT '';
ALTER TABLE reward_status ADD COLUMN IF NOT EXISTS account String DEFAULT '';
