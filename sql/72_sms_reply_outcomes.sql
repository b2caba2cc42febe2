-- sms_reply_outcomes: one row per outbound SMS that left drafts (sent, outbox and failed),
-- with every column of sms_delivery_outcomes, who sent it and whether the customer answered;
-- the base of sms_outbound_outcomes and of the per-sender, per-template and per-lead-status
-- views.
-- The sender kind: 'ai_agent' when Close's AI agent sent it (source 'ai', or an agent field
-- set), else 'sequence' when a sequence sent it, else 'rep'.
-- A sent SMS is replied when the next SMS on its lead among inbound and sent ones is
-- inbound: the reply goes to the last SMS the customer saw, and one sent at the same
-- instant as an inbound SMS comes after it (a reply must be strictly later).
-- replied is that as a number: 1 when a sent SMS was answered, 0 when not, null when it was
-- not sent. Every reply_rate is its mean over a group's SMS: replied / sent, null when none
-- was sent (a DOUBLE, as failed in sms_delivery_outcomes).
CREATE OR REPLACE VIEW close_sms.sms_reply_outcomes AS
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
        m.*,
        CASE
            WHEN
                m.source = 'ai'
                OR m.agent_config_id IS NOT NULL
                OR m.agent_action_reason IS NOT NULL
                THEN 'ai_agent'
            WHEN m.sequence_id IS NOT NULL THEN 'sequence'
            ELSE 'rep'
        END AS sender_kind,
        CASE
            WHEN m.status = 'sent' AND t.next_direction = 'inbound'
                THEN epoch(t.next_message_at) - epoch(m.message_at)
        END AS reply_seconds
    FROM close_sms.sms_delivery_outcomes AS m
    LEFT JOIN turns AS t ON t.id = m.id
    WHERE m.direction = 'outbound' AND NOT m.is_unsent
)
SELECT
    *,
    CAST(
        CASE
            WHEN status = 'sent' AND reply_seconds IS NOT NULL THEN 1
            WHEN status = 'sent' THEN 0
        END AS DOUBLE
    ) AS replied
FROM outbound;
