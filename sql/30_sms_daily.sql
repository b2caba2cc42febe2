-- sms_daily: one row per UTC message_date x direction x status.
CREATE OR REPLACE VIEW close_sms.sms_daily AS
SELECT
    message_date,
    direction,
    status,
    count(*) AS message_count,
    CAST(sum(attachment_count) AS BIGINT) AS attachment_count,
    -- Close's cost is most likely in cents: its own export script divides it by 100.
    -- Unknown cost counts as 0 so that daily totals add up across groups.
    coalesce(sum(cost), 0) AS total_cost_cents,
    count(DISTINCT lead_id) AS lead_count
FROM close_sms.sms_messages
GROUP BY message_date, direction, status;
