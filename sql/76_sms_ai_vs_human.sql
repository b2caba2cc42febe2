-- sms_ai_vs_human: one row per UTC message_date x sender_kind, over outbound SMS that left
-- drafts (sent, outbox and failed). The sender kind: 'ai_agent' when Close's AI agent sent it
-- (source 'ai', or an agent field set), else 'sequence' when a sequence sent it, else 'rep'.
-- A sent SMS is replied when the next SMS on its lead among inbound and sent ones is
-- inbound: the reply goes to the last SMS the customer saw, and one sent at the same
-- instant as an inbound SMS comes after it (a reply must be strictly later).
-- failure_rate is failed / (sent + failed), as in sms_delivery; reply_rate is replied / sent.
CREATE OR REPLACE VIEW close_sms.sms_ai_vs_human AS
WITH turns AS (
    SELECT
        id,
        lead(direction) OVER per_lead AS next_direction,
        lead(message_at) OVER per_lead AS next_message_at
    FROM close_sms.sms_messages
    WHERE lead_id IS NOT NULL AND (direction = 'inbound' OR status = 'sent')
    WINDOW per_lead AS (PARTITION BY lead_id ORDER BY message_at, direction = 'outbound', id)
),
outbound AS (
    SELECT
        m.message_date,
        CASE
            WHEN
                m.source = 'ai'
                OR m.agent_config_id IS NOT NULL
                OR m.agent_action_reason IS NOT NULL
                THEN 'ai_agent'
            WHEN m.sequence_id IS NOT NULL THEN 'sequence'
            ELSE 'rep'
        END AS sender_kind,
        m.status,
        m.cost,
        CASE
            WHEN m.status = 'sent' AND t.next_direction = 'inbound'
                THEN epoch(t.next_message_at) - epoch(m.message_at)
        END AS reply_seconds
    FROM close_sms.sms_messages AS m
    LEFT JOIN turns AS t ON t.id = m.id
    WHERE m.direction = 'outbound' AND NOT m.is_unsent
),
counted AS (
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
    FROM outbound
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
