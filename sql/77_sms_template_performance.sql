-- sms_template_performance: one row per SMS template used by an outbound SMS that left
-- drafts (sent, outbox and failed), from sms_reply_outcomes (which defines a reply, and with
-- sms_delivery_outcomes the rates).
-- failure_rate is failed / (sent + failed), as in sms_delivery; reply_rate is replied / sent.
-- template_name is null for a template the context does not hold (or with the context off).
CREATE OR REPLACE VIEW close_sms.sms_template_performance AS
SELECT
    template_id,
    -- The same on every SMS of the template (joined on its id); max picks that one.
    max(template_name) AS template_name,
    count(*) AS outbound_count,
    count(*) FILTER (WHERE status = 'sent') AS sent_count,
    count(*) FILTER (WHERE status = 'error') AS failed_count,
    avg(failed) AS failure_rate,
    count(reply_seconds) AS replied_count,
    avg(replied) AS reply_rate,
    median(reply_seconds) AS median_reply_seconds,
    count(DISTINCT lead_id) AS lead_count,
    min(message_at) AS first_sent_at,
    max(message_at) AS last_sent_at
FROM close_sms.sms_reply_outcomes
WHERE template_id IS NOT NULL
GROUP BY template_id;
