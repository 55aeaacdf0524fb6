-- Analyst views. They are computed at query time from the base tables read with FINAL,
-- so every total is exact before background merges, after a sink crash-retry, and after
-- an upstream re-emission of a record in a later batch. Materialized views were measured
-- and rejected for these totals: a re-emitted record (same id, new insert) reaches an MV's
-- Summing/AggregatingMergeTree target a second time whatever its deduplication settings,
-- and the doubled sum never merges away (docs/ANALYTICS.md, "Why views").

-- One row per money fact taken from the raw Stripe events, signed: + a paid invoice or a
-- standalone charge (one that belongs to no invoice), - each refund step of a charge
-- (charge.refunded carries a running total; each distinct total is one step), - a lost
-- dispute. Refunds and disputes belong to the customer of their charge.
CREATE VIEW IF NOT EXISTS revenue_entries AS
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
        concat(money_key, ':', toString(total)) AS entry_key,
        'refund' AS kind,
        customer_key,
        charge_ref,
        livemode,
        currency,
        day,
        -(total - lagInFrame(total, 1, toInt64(0)) OVER (
            PARTITION BY money_key ORDER BY total ASC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS amount_minor
    FROM
    (
        SELECT
            money_key,
            money_minor AS total,
            any(customer_key) AS customer_key,
            any(charge_id) AS charge_ref,
            any(livemode) AS livemode,
            toString(any(currency)) AS currency,
            toDate(min(created)) AS day
        FROM stripe_events FINAL
        WHERE money_kind = 'refund' AND money_minor > 0
        GROUP BY money_key, money_minor
    )
) AS e
LEFT JOIN
(
    SELECT charge_id, any(customer_key) AS owner
    FROM stripe_events FINAL
    WHERE charge_id != '' AND customer_id != ''
    GROUP BY charge_id
) AS o ON e.charge_ref = o.charge_id;

-- The referrer of each attributed customer (first touch; conflicts and organic excluded).
CREATE VIEW IF NOT EXISTS customer_referrers AS
SELECT
    customer_key,
    livemode,
    argMin(referral_code, (attributed_at, attribution_id)) AS referral_code,
    toString(argMin(source, (attributed_at, attribution_id))) AS source,
    min(attributed_at) AS first_attributed_at
FROM attributions FINAL
WHERE kind = 'attribution'
GROUP BY customer_key, livemode;

-- Per customer, currency and mode: how the customer is attributed, first paid date and
-- lifetime revenue (referred_revenue_minor equals it for referred customers, else 0).
-- attribution: referred, organic (the worker decided no code came within the window) or
-- unattributed (revenue seen, no attribution record yet: "awaiting attribution").
CREATE VIEW IF NOT EXISTS customer_revenue AS
SELECT
    r.customer_key AS customer_key,
    r.livemode AS livemode,
    r.currency AS currency,
    a.referral_code AS referral_code,
    multiIf(a.referral_code != '', 'referred', o.customer_key != '', 'organic', 'unattributed')
        AS attribution,
    minIfOrNull(r.day, r.kind IN ('invoice', 'charge') AND r.amount_minor > 0) AS first_paid_date,
    sum(r.amount_minor) AS revenue_minor,
    if(a.referral_code != '', sum(r.amount_minor), toInt64(0)) AS referred_revenue_minor
FROM revenue_entries AS r
LEFT JOIN customer_referrers AS a
    ON r.customer_key = a.customer_key AND r.livemode = a.livemode
LEFT JOIN
(
    SELECT DISTINCT customer_key, livemode FROM attributions FINAL WHERE kind = 'organic'
) AS o ON r.customer_key = o.customer_key AND r.livemode = o.livemode
GROUP BY customer_key, livemode, currency, referral_code, attribution;

-- Per referrer, day, currency and mode: referred revenue (by payment/refund day), rewards
-- (by payment day), clawbacks signed (by clawback day: negative, reinstatements positive)
-- and net reward = rewards + clawbacks.
CREATE VIEW IF NOT EXISTS referrer_daily AS
SELECT
    referral_code,
    day,
    currency,
    livemode,
    sum(revenue) AS referred_revenue_minor,
    sum(reward) AS rewards_minor,
    sum(clawback) AS clawbacks_minor,
    sum(reward) + sum(clawback) AS net_minor
FROM
(
    SELECT a.referral_code AS referral_code, r.day AS day, r.currency AS currency,
        r.livemode AS livemode, r.amount_minor AS revenue, toInt64(0) AS reward,
        toInt64(0) AS clawback
    FROM revenue_entries AS r
    INNER JOIN customer_referrers AS a
        ON r.customer_key = a.customer_key AND r.livemode = a.livemode
    UNION ALL
    SELECT referral_code, toDate(paid_at), toString(currency), livemode, toInt64(0),
        reward_amount_minor, toInt64(0)
    FROM rewards FINAL
    UNION ALL
    SELECT referral_code, toDate(occurred_at), toString(currency), livemode, toInt64(0),
        toInt64(0), signed_amount_minor
    FROM clawbacks FINAL
)
GROUP BY referral_code, day, currency, livemode;

-- One row per reward: its current status (latest status record; the emission status when
-- there is none; ties at one instant resolved in lifecycle order; payout_rejected records
-- leave the status as it was) and its standing amount (reward + cancel-mode clawbacks).
-- Clawbacks in negative_balance mode hit a reward that was already paid: they go to the
-- referrer's carry-over, netted against later payouts (netted_minor).
CREATE VIEW IF NOT EXISTS reward_states AS
SELECT
    r.reward_id AS reward_id,
    r.referral_code AS referral_code,
    toString(r.currency) AS currency,
    r.livemode AS livemode,
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

-- Balance per referrer, currency and mode. pending / payable / paid: standing amounts of
-- the rewards in that status; clawed_back: clawbacks
-- minus reinstatements; earned = rewards - clawed_back; net = earned - paid, what is owed
-- to the referrer including pending rewards; negative when paid rewards were clawed back.
CREATE VIEW IF NOT EXISTS referrer_balances AS
SELECT
    referral_code,
    currency,
    livemode,
    sum(reward) AS rewards_minor,
    sum(pending) AS pending_minor,
    sum(payable) AS payable_minor,
    sum(paid) AS paid_minor,
    -sum(clawback) AS clawed_back_minor,
    sum(reward) + sum(clawback) AS earned_minor,
    sum(reward) + sum(clawback) - sum(paid) AS net_minor
FROM
(
    SELECT referral_code, currency, livemode, reward_amount_minor AS reward,
        if(status = 'pending', standing_minor, 0) AS pending,
        if(status = 'payable', standing_minor, 0) AS payable,
        if(status = 'paid', standing_minor, 0) AS paid,
        toInt64(0) AS clawback
    FROM reward_states
    UNION ALL
    SELECT referral_code, toString(currency), livemode, toInt64(0), toInt64(0), toInt64(0),
        toInt64(0), signed_amount_minor
    FROM clawbacks FINAL
)
GROUP BY referral_code, currency, livemode;
