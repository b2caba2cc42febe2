-- sms_numbers: one row per local phone number (the organization's) that sent or received SMS,
-- with its label and owner from phone_numbers (null with the context off, or for a number
-- Close no longer lists). failure_rate is failed / (sent + failed) over outbound SMS, from
-- sms_delivery_outcomes; the top error is the most frequent message, a tie to the
-- alphabetically first.
CREATE OR REPLACE VIEW close_sms.sms_numbers AS
WITH counted AS (
    SELECT
        local_phone,
        -- The same on every SMS of the number (joined on it); max picks that one.
        max(local_phone_label) AS local_phone_label,
        max(local_phone_owner_id) AS owner_user_id,
        max(local_phone_owner_name) AS owner_name,
        count(*) AS message_count,
        count(*) FILTER (WHERE direction = 'inbound') AS inbound_count,
        count(*) FILTER (WHERE direction = 'outbound') AS outbound_count,
        count(*) FILTER (WHERE direction = 'outbound' AND status = 'sent') AS sent_count,
        count(*) FILTER (WHERE direction = 'outbound' AND status = 'error') AS failed_count,
        avg(failed) AS failure_rate,
        count(DISTINCT remote_phone) AS remote_phone_count,
        max(message_at) AS last_message_at
    FROM close_sms.sms_delivery_outcomes
    GROUP BY local_phone
),
ranked_errors AS (
    SELECT
        local_phone,
        error_message,
        count(*) AS error_count,
        row_number() OVER (
            PARTITION BY local_phone ORDER BY count(*) DESC, error_message
        ) AS error_rank
    -- The SMS themselves, not the view again: DuckDB 1.5 shares a view read twice as one
    -- materialized subplan, which overran the sync's 128 MB memory limit on 600 SMS.
    FROM close_sms.sms
    WHERE direction = 'outbound' AND error_message IS NOT NULL
    GROUP BY local_phone, error_message
)
SELECT
    c.local_phone,
    c.local_phone_label,
    c.owner_user_id,
    c.owner_name,
    c.message_count,
    c.inbound_count,
    c.outbound_count,
    c.sent_count,
    c.failed_count,
    c.failure_rate,
    e.error_message AS top_error_message,
    e.error_count AS top_error_count,
    c.remote_phone_count,
    c.last_message_at
FROM counted AS c
LEFT JOIN ranked_errors AS e
    ON e.local_phone IS NOT DISTINCT FROM c.local_phone AND e.error_rank = 1;
