-- sms_by_lead_status: one row per lead status, the leads' current one (null: SMS without a
-- lead, or a lead the context does not hold). All SMS count in the volume; failure_rate is
-- failed / (sent + failed) and reply_rate replied / sent over outbound SMS, as in
-- sms_outbound_outcomes.
CREATE OR REPLACE VIEW close_sms.sms_by_lead_status AS
WITH counted AS (
    SELECT
        m.lead_status_id,
        -- The same on every SMS of the status (joined on its id); max picks that one.
        max(m.lead_status_label) AS lead_status_label,
        count(*) AS message_count,
        count(*) FILTER (WHERE m.direction = 'inbound') AS inbound_count,
        count(*) FILTER (WHERE m.direction = 'outbound') AS outbound_count,
        count(*) FILTER (WHERE m.direction = 'outbound' AND m.status = 'sent') AS sent_count,
        count(*) FILTER (WHERE m.direction = 'outbound' AND m.status = 'error') AS failed_count,
        count(o.reply_seconds) AS replied_count,
        median(o.reply_seconds) AS median_reply_seconds,
        count(DISTINCT m.lead_id) AS lead_count
    FROM close_sms.sms_messages AS m
    LEFT JOIN close_sms.sms_outbound_outcomes AS o ON o.id = m.id
    GROUP BY m.lead_status_id
)
SELECT
    lead_status_id,
    lead_status_label,
    message_count,
    inbound_count,
    outbound_count,
    sent_count,
    failed_count,
    failed_count / nullif(sent_count + failed_count, 0) AS failure_rate,
    replied_count,
    replied_count / nullif(sent_count, 0) AS reply_rate,
    median_reply_seconds,
    lead_count
FROM counted;
