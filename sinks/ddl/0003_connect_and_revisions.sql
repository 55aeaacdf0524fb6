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
    e.account AS account,
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
        any(account) AS account,
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
        account,
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
            any(account) AS account,
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

-- Connect: every referrer figure is per account too ('' = the platform), never summed
-- across accounts; the reports show it in `mode` ("test@acct_...", like the record ids).
CREATE OR REPLACE VIEW customer_referrers AS
SELECT
    customer_key,
    livemode,
    argMin(referral_code, (attributed_at, attribution_id)) AS referral_code,
    toString(argMin(source, (attributed_at, attribution_id))) AS source,
    min(attributed_at) AS first_attributed_at,
    argMin(account, (attributed_at, attribution_id)) AS account
FROM attributions FINAL
WHERE kind = 'attribution'
GROUP BY customer_key, livemode;

CREATE OR REPLACE VIEW referrer_daily AS
SELECT
    referral_code,
    day,
    currency,
    livemode,
    account,
    sum(revenue) AS referred_revenue_minor,
    sum(reward) AS rewards_minor,
    sum(clawback) AS clawbacks_minor,
    sum(reward) + sum(clawback) AS net_minor
FROM
(
    SELECT a.referral_code AS referral_code, r.day AS day, r.currency AS currency,
        r.livemode AS livemode, a.account AS account, r.amount_minor AS revenue, toInt64(0) AS reward,
        toInt64(0) AS clawback
    FROM revenue_entries AS r
    INNER JOIN customer_referrers AS a
        ON r.customer_key = a.customer_key AND r.livemode = a.livemode
    UNION ALL
    SELECT referral_code, toDate(paid_at), toString(currency), livemode, account, toInt64(0),
        reward_amount_minor, toInt64(0)
    FROM rewards FINAL
    UNION ALL
    SELECT referral_code, toDate(occurred_at), toString(currency), livemode, account,
        toInt64(0), toInt64(0), signed_amount_minor
    FROM clawbacks FINAL
)
GROUP BY referral_code, day, currency, livemode, account;

CREATE OR REPLACE VIEW reward_states AS
SELECT
    r.reward_id AS reward_id,
    r.referral_code AS referral_code,
    toString(r.currency) AS currency,
    r.livemode AS livemode,
    r.account AS account,
    r.reward_amount_minor AS reward_amount_minor,
    if(s.latest_status != '', s.latest_status, toString(r.status)) AS status,
    r.reward_amount_minor + c.cancelled_minor AS standing_minor,
    c.cancelled_minor AS cancelled_minor,
    c.netted_minor AS netted_minor
FROM rewards AS r FINAL
LEFT JOIN
(
    SELECT
        reward_id,
        toString(argMax(status, (effective_at, multiIf(status = 'pending', 0,
            status = 'payable', 1, status = 'paid', 2, status = 'clawed_back', 3, 4))))
            AS latest_status
    FROM reward_status FINAL
    WHERE status != 'payout_rejected'
    GROUP BY reward_id
) AS s ON r.reward_id = s.reward_id
LEFT JOIN
(
    SELECT
        reward_id,
        sumIf(signed_amount_minor, mode = 'cancel') AS cancelled_minor,
        sumIf(signed_amount_minor, mode != 'cancel') AS netted_minor
    FROM clawbacks FINAL
    GROUP BY reward_id
) AS c ON r.reward_id = c.reward_id;

CREATE OR REPLACE VIEW referrer_balances AS
SELECT
    referral_code,
    currency,
    livemode,
    account,
    sum(reward) AS rewards_minor,
    sum(pending) AS pending_minor,
    sum(payable) AS payable_minor,
    sum(paid) AS paid_minor,
    -sum(clawback) AS clawed_back_minor,
    sum(reward) + sum(clawback) AS earned_minor,
    sum(reward) + sum(clawback) - sum(paid) AS net_minor
FROM
(
    SELECT referral_code, currency, livemode, account, reward_amount_minor AS reward,
        if(status = 'pending', standing_minor, 0) AS pending,
        if(status = 'payable', standing_minor, 0) AS payable,
        if(status = 'paid', standing_minor, 0) AS paid,
        toInt64(0) AS clawback
    FROM reward_states
    UNION ALL
    SELECT referral_code, toString(currency), livemode, account, toInt64(0), toInt64(0),
        toInt64(0), toInt64(0), signed_amount_minor
    FROM clawbacks FINAL
)
GROUP BY referral_code, currency, livemode, account;
