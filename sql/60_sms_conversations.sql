-- sms_conversations: one row per lead_id x remote_phone.
-- Only messages that reached a phone count: drafts and scheduled SMS are left out, so a
-- pending draft neither ends a conversation nor clears awaiting_reply.
-- The names are sms_messages': the lead's, the latest contact named, and the user of the
-- latest outbound SMS.
CREATE OR REPLACE VIEW close_sms.sms_conversations AS
SELECT
    lead_id,
    remote_phone,
    -- One lead per group: its name is the same on every row.
    max(lead_name) AS lead_name,
    arg_max(contact_name, {'at': message_at, 'inbound': direction = 'inbound', 'id': id})
        AS contact_name,
    arg_max(
        CASE WHEN direction = 'outbound' THEN user_name END,
        {'at': message_at, 'inbound': direction = 'inbound', 'id': id}
    ) AS last_user_name,
    min(message_at) AS first_message_at,
    max(message_at) AS last_message_at,
    count(*) FILTER (WHERE direction = 'inbound') AS inbound_count,
    count(*) FILTER (WHERE direction = 'outbound') AS outbound_count,
    count(*) AS message_count,
    -- The last message: latest message_at; at the same instant an inbound one counts as
    -- later (as in sms_response_times, a reply must be strictly later), then the larger id.
    arg_max(direction, {'at': message_at, 'inbound': direction = 'inbound', 'id': id})
        AS last_direction,
    arg_max(id, {'at': message_at, 'inbound': direction = 'inbound', 'id': id})
        AS last_message_id,
    arg_max(direction, {'at': message_at, 'inbound': direction = 'inbound', 'id': id})
        = 'inbound' AS awaiting_reply
FROM close_sms.sms_messages
WHERE NOT is_unsent
GROUP BY lead_id, remote_phone;
