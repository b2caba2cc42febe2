-- sms_delivery: one row per UTC message_date, over outbound SMS.
-- failure_rate is failed / (sent + failed), from sms_delivery_outcomes: drafts, scheduled and
-- queued (outbox) SMS have no outcome yet and would dilute it. Null when nothing was sent or
-- failed that day.
CREATE OR REPLACE VIEW close_sms.sms_delivery AS
WITH outbound AS (
    SELECT message_date, status, error_message, failed
    FROM close_sms.sms_delivery_outcomes
    WHERE direction = 'outbound'
),
daily AS (
    SELECT
        message_date,
        count(*) AS outbound_count,
        count(*) FILTER (WHERE status = 'sent') AS sent_count,
        count(*) FILTER (WHERE status = 'error') AS failed_count,
        avg(failed) AS failure_rate
    FROM outbound
    GROUP BY message_date
),
errors AS (
    SELECT message_date, error_message, count(*) AS error_count
    FROM outbound
    WHERE error_message IS NOT NULL
    GROUP BY message_date, error_message
),
ranked_errors AS (
    -- Most frequent message first; a tie goes to the alphabetically first, so it is deterministic.
    SELECT
        message_date,
        error_message,
        error_count,
        row_number() OVER (
            PARTITION BY message_date ORDER BY error_count DESC, error_message
        ) AS error_rank
    FROM errors
),
top_errors AS (
    SELECT message_date, error_message AS top_error_message, error_count AS top_error_count
    FROM ranked_errors
    WHERE error_rank = 1
)
SELECT
    d.message_date,
    d.outbound_count,
    d.sent_count,
    d.failed_count,
    d.outbound_count - d.sent_count - d.failed_count AS pending_count,
    d.failure_rate,
    t.top_error_message,
    t.top_error_count
FROM daily AS d
LEFT JOIN top_errors AS t USING (message_date);
