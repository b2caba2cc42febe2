-- sms_opt_outs: one row per lead_id x remote_phone that has opted out of SMS and not back in.
-- An inbound SMS whose whole text, trimmed of surrounding white space and in any case, is
-- STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT opts out; START, YES or UNSTOP opts back
-- in. The latest keyword wins (by message_at, then SMS id); opted_out_at is the first opt-out
-- after the last opt-in, when texting the phone stopped being allowed.
-- With sms_text = hash or drop no text is a keyword (a hash is 64 hex digits, a dropped text
-- null), so the view is empty: nothing in the data tells an opt-out without the text. Matching
-- the text itself needs no marker of the mode, and a mode change needs a full refresh anyway.
CREATE OR REPLACE VIEW close_sms.sms_opt_outs AS
WITH keywords AS (
    SELECT id, lead_id, remote_phone, message_at, keyword,
        keyword IN ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT') AS opts_out
    FROM (
        SELECT
            id,
            lead_id,
            remote_phone,
            message_at,
            upper(trim(text, ' ' || chr(9) || chr(10) || chr(13))) AS keyword
        FROM close_sms.sms_messages
        WHERE direction = 'inbound'
    ) AS inbound
    WHERE keyword IN (
        'STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'START', 'YES', 'UNSTOP'
    )
),
since_last_opt_in AS (
    -- The opt-outs with no opt-in after them, numbered from the earliest.
    SELECT
        *,
        row_number() OVER (PARTITION BY lead_id, remote_phone ORDER BY message_at, id) AS n
    FROM (
        SELECT
            *,
            count(*) FILTER (WHERE NOT opts_out) OVER (
                PARTITION BY lead_id, remote_phone
                ORDER BY message_at DESC, id DESC
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) AS later_opt_ins
        FROM keywords
    ) AS counted
    WHERE later_opt_ins = 0
),
opt_outs AS (
    SELECT
        lead_id,
        remote_phone,
        message_at AS opted_out_at,
        id AS opt_out_sms_id,
        keyword AS opt_out_keyword
    FROM since_last_opt_in
    WHERE n = 1
),
sent AS (
    SELECT id, lead_id, remote_phone, user_id, user_name, message_at
    FROM close_sms.sms_messages
    WHERE direction = 'outbound' AND status = 'sent'
)
SELECT
    o.lead_id,
    o.remote_phone,
    o.opted_out_at,
    o.opt_out_sms_id,
    o.opt_out_keyword,
    -- arg_max skips nulls: the latest sent SMS that has a user (a name).
    arg_max(s.user_id, {'at': s.message_at, 'id': s.id}) AS last_user_id,
    arg_max(s.user_name, {'at': s.message_at, 'id': s.id}) AS last_user_name,
    count(s.id) FILTER (WHERE s.message_at > o.opted_out_at) AS sent_after_opt_out_count,
    max(s.message_at) FILTER (WHERE s.message_at > o.opted_out_at) AS last_sent_after_opt_out_at,
    arg_max(
        CASE WHEN s.message_at > o.opted_out_at THEN s.id END,
        {'at': s.message_at, 'id': s.id}
    ) AS last_sent_after_opt_out_id
FROM opt_outs AS o
LEFT JOIN sent AS s
    ON s.lead_id IS NOT DISTINCT FROM o.lead_id
    AND s.remote_phone IS NOT DISTINCT FROM o.remote_phone
GROUP BY o.lead_id, o.remote_phone, o.opted_out_at, o.opt_out_sms_id, o.opt_out_keyword;
