-- sms_user_daily: one row per user_id x UTC message_date (user_id null: SMS with no user).
CREATE OR REPLACE VIEW close_sms.sms_user_daily AS
SELECT
    user_id,
    message_date,
    -- The user's name on their latest SMS that day (names can change).
    arg_max(user_name, message_at) AS user_name,
    count(*) FILTER (WHERE direction = 'outbound' AND status = 'sent') AS sent_count,
    count(*) FILTER (WHERE direction = 'inbound') AS received_count,
    count(*) FILTER (WHERE is_failed) AS failed_count,
    count(*) AS message_count,
    -- Close's cost is most likely in cents: its own export script divides it by 100.
    coalesce(sum(cost), 0) AS total_cost_cents
FROM close_sms.sms_messages
GROUP BY user_id, message_date;
