-- sms_response_times: one row per inbound SMS, with the first reply on the same lead.
-- A reply is an outbound SMS on the same lead whose message_at is strictly later than the
-- inbound's; drafts and scheduled SMS are not replies (nothing reached the customer). Equal
-- reply times are broken by the smaller SMS id. Inbound SMS without a lead get no reply.
-- The names are sms_messages': the inbound SMS's lead and contact, the reply's user.
CREATE OR REPLACE VIEW close_sms.sms_response_times AS
WITH turns AS (
    -- Per lead, inbound SMS and possible replies in one sequence: by time, a reply before an
    -- inbound SMS of the same instant (a reply must be strictly later), then by id. Numbering
    -- the replies of that sequence makes the first reply after an inbound SMS the one numbered
    -- one more than the replies before it: one sort and an equi-join, where a join on
    -- "nearest later reply" would need an ASOF join (DuckDB only) or a correlated subquery.
    SELECT
        id,
        lead_id,
        user_id,
        user_name,
        lead_name,
        contact_name,
        message_at,
        message_date,
        direction = 'inbound' AS is_inbound,
        count(*) FILTER (WHERE direction = 'outbound') OVER (
            PARTITION BY lead_id
            ORDER BY message_at, direction = 'inbound', id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS replies_so_far
    FROM close_sms.sms_messages
    WHERE
        direction = 'inbound'
        OR (direction = 'outbound' AND NOT is_unsent AND lead_id IS NOT NULL)
)
SELECT
    i.id AS inbound_id,
    i.lead_id,
    i.lead_name,
    i.contact_name,
    i.message_at AS inbound_at,
    i.message_date AS inbound_date,
    r.id AS reply_id,
    r.message_at AS replied_at,
    r.user_id AS replied_by_user_id,
    r.user_name AS replied_by_user_name,
    epoch(r.message_at) - epoch(i.message_at) AS response_seconds
FROM turns AS i
LEFT JOIN turns AS r
    ON r.lead_id = i.lead_id AND NOT r.is_inbound AND r.replies_so_far = i.replies_so_far + 1
WHERE i.is_inbound;
