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

-- Refund revenue follows each charge's snapshots in Stripe order (money_seq: created, and
-- in the same second a snapshot showing amount_refunded going down is the later), so a
-- refund that failed after it was counted gives the revenue back; the first version only
-- ever added the highest total it had seen (docs/STRIPE_FLOWS.md §3).
ALTER TABLE stripe_events ADD COLUMN IF NOT EXISTS money_seq Int64 DEFAULT 0;

CREATE OR REPLACE VIEW revenue_entries AS
SELECT
    e.entry_key AS entry_key,
    e.kind AS kind,
    if(o.owner != '', o.owner, e.customer_key) AS customer_key,
    e.livemode AS livemode,
    e.currency AS currency,
    e.day AS day,
    e.amount_minor AS amount_minor
FROM
(
    SELECT
        money_key AS entry_key,
        toString(any(money_kind)) AS kind,
        any(customer_key) AS customer_key,
        any(charge_id) AS charge_ref,
        any(livemode) AS livemode,
        toString(any(currency)) AS currency,
        toDate(min(created)) AS day,
        if(kind = 'dispute_lost', -max(money_minor), max(money_minor)) AS amount_minor
    FROM stripe_events FINAL
    WHERE money_kind IN ('invoice', 'charge', 'dispute_lost')
        -- a charge an invoice lists among its payments is that invoice's revenue already
        AND NOT (money_kind = 'charge' AND (
            charge_id IN (SELECT arrayJoin(payment_refs) FROM stripe_events FINAL)
            OR (payment_intent_id != ''
                AND payment_intent_id IN (SELECT arrayJoin(payment_refs) FROM stripe_events FINAL))))
    GROUP BY money_key
    UNION ALL
    SELECT
        concat(money_key, ':', toString(seq)) AS entry_key,
        'refund' AS kind,
        customer_key,
        charge_ref,
        livemode,
        currency,
        day,
        -(total - lagInFrame(total, 1, toInt64(0)) OVER (
            PARTITION BY money_key ORDER BY seq ASC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS amount_minor
    FROM
    (
        SELECT
            money_key,
            money_seq AS seq,
            max(money_minor) AS total,
            any(customer_key) AS customer_key,
            any(charge_id) AS charge_ref,
            any(livemode) AS livemode,
            toString(any(currency)) AS currency,
            toDate(min(created)) AS day
        FROM stripe_events FINAL
        WHERE money_kind = 'refund'
        GROUP BY money_key, money_seq
    )
) AS e
LEFT JOIN
(
    SELECT charge_id, any(customer_key) AS owner
    FROM stripe_events FINAL
    WHERE charge_id != '' AND customer_id != ''
    GROUP BY charge_id
) AS o ON e.charge_ref = o.charge_id;
