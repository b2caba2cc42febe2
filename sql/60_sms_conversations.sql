-- sms_conversations: one row per lead_id x remote_phone.
-- Only messages that reached a phone count: drafts and scheduled SMS are left out, so a
-- pending draft neither ends a conversation nor clears awaiting_reply.
CREATE OR REPLACE VIEW close_sms.sms_conversations AS
WITH turns AS (
    SELECT
        lead_id,
        remote_phone,
        message_at,
        direction,
        id,
        -- 1 on the last message: latest message_at; at the same instant an inbound one counts
        -- as later (as in sms_response_times, a reply must be strictly later), then the larger id.
        row_number() OVER (
            PARTITION BY lead_id, remote_phone
            ORDER BY message_at DESC, direction = 'inbound' DESC, id DESC
        ) AS recency
    FROM close_sms.sms_messages
    WHERE NOT is_unsent
)
SELECT
    lead_id,
    remote_phone,
    min(message_at) AS first_message_at,
    max(message_at) AS last_message_at,
    count(*) FILTER (WHERE direction = 'inbound') AS inbound_count,
    count(*) FILTER (WHERE direction = 'outbound') AS outbound_count,
    count(*) AS message_count,
    max(direction) FILTER (WHERE recency = 1) AS last_direction,
    max(id) FILTER (WHERE recency = 1) AS last_message_id,
    max(direction) FILTER (WHERE recency = 1) = 'inbound' AS awaiting_reply
FROM turns
GROUP BY lead_id, remote_phone;
