-- sms_by_lead_status: one row per lead status, the leads' current one (null: SMS without a
-- lead, or a lead the context does not hold). All SMS count in the volume; failure_rate is
-- failed / (sent + failed) and reply_rate replied / sent over outbound SMS, as in
-- sms_delivery_outcomes and sms_reply_outcomes.
CREATE OR REPLACE VIEW close_sms.sms_by_lead_status AS
SELECT
    m.lead_status_id,
    -- The same on every SMS of the status (joined on its id); max picks that one.
    max(m.lead_status_label) AS lead_status_label,
    count(*) AS message_count,
    count(*) FILTER (WHERE m.direction = 'inbound') AS inbound_count,
    count(*) FILTER (WHERE m.direction = 'outbound') AS outbound_count,
    count(*) FILTER (WHERE m.direction = 'outbound' AND m.status = 'sent') AS sent_count,
    count(*) FILTER (WHERE m.direction = 'outbound' AND m.status = 'error') AS failed_count,
    avg(m.failed) AS failure_rate,
    count(o.reply_seconds) AS replied_count,
    avg(o.replied) AS reply_rate,
    median(o.reply_seconds) AS median_reply_seconds,
    count(DISTINCT m.lead_id) AS lead_count
FROM close_sms.sms_delivery_outcomes AS m
LEFT JOIN close_sms.sms_reply_outcomes AS o ON o.id = m.id
GROUP BY m.lead_status_id;
