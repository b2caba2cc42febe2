-- sms_ai_vs_human: one row per UTC message_date x sender_kind, over outbound SMS that left
-- drafts (sent, outbox and failed), from sms_outbound_outcomes (which defines the sender
-- kinds and a reply).
-- failure_rate is failed / (sent + failed), as in sms_delivery; reply_rate is replied / sent.
CREATE OR REPLACE VIEW close_sms.sms_ai_vs_human AS
WITH counted AS (
    SELECT
        message_date,
        sender_kind,
        count(*) AS outbound_count,
        count(*) FILTER (WHERE status = 'sent') AS sent_count,
        count(*) FILTER (WHERE status = 'error') AS failed_count,
        count(reply_seconds) AS replied_count,
        median(reply_seconds) AS median_reply_seconds,
        -- Close's cost is most likely in cents: its own export script divides it by 100.
        coalesce(sum(cost), 0) AS total_cost_cents
    FROM close_sms.sms_outbound_outcomes
    GROUP BY message_date, sender_kind
)
SELECT
    message_date,
    sender_kind,
    outbound_count,
    sent_count,
    failed_count,
    failed_count / nullif(sent_count + failed_count, 0) AS failure_rate,
    replied_count,
    replied_count / nullif(sent_count, 0) AS reply_rate,
    median_reply_seconds,
    total_cost_cents
FROM counted;
