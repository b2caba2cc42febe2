-- sms_ai_vs_human: one row per UTC message_date x sender_kind, over outbound SMS that left
-- drafts (sent, outbox and failed), from sms_reply_outcomes (which defines the sender kinds
-- and a reply, and with sms_delivery_outcomes the rates).
-- failure_rate is failed / (sent + failed), as in sms_delivery; reply_rate is replied / sent.
CREATE OR REPLACE VIEW close_sms.sms_ai_vs_human AS
SELECT
    message_date,
    sender_kind,
    count(*) AS outbound_count,
    count(*) FILTER (WHERE status = 'sent') AS sent_count,
    count(*) FILTER (WHERE status = 'error') AS failed_count,
    avg(failed) AS failure_rate,
    count(reply_seconds) AS replied_count,
    avg(replied) AS reply_rate,
    median(reply_seconds) AS median_reply_seconds,
    -- Close's cost is most likely in cents: its own export script divides it by 100.
    coalesce(sum(cost), 0) AS total_cost_cents
FROM close_sms.sms_reply_outcomes
GROUP BY message_date, sender_kind;
