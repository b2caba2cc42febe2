-- sms_user_daily: one row per user_id x UTC message_date (user_id null: SMS with no user).
CREATE OR REPLACE VIEW close_sms.sms_user_daily AS
WITH ranked AS (
    SELECT
        user_id,
        message_date,
        user_name,
        direction,
        status,
        is_failed,
        cost,
        -- 1 on the user's latest SMS that day that carries a name (names can change);
        -- equal times go to the larger id, so the name is deterministic.
        row_number() OVER (
            PARTITION BY user_id, message_date
            ORDER BY user_name IS NULL, message_at DESC, id DESC
        ) AS name_rank
    FROM close_sms.sms_messages
)
SELECT
    user_id,
    message_date,
    max(user_name) FILTER (WHERE name_rank = 1) AS user_name,
    count(*) FILTER (WHERE direction = 'outbound' AND status = 'sent') AS sent_count,
    count(*) FILTER (WHERE direction = 'inbound') AS received_count,
    count(*) FILTER (WHERE is_failed) AS failed_count,
    count(*) AS message_count,
    coalesce(sum(cost), 0) AS total_cost
FROM ranked
GROUP BY user_id, message_date;
