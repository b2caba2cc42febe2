-- sms_opt_outs: one row per opt-out of a lead_id x remote_phone, active or revoked since.
-- An inbound SMS whose whole text is a keyword opts out or back in. The text is compared in
-- capitals, with every run of characters other than letters and digits read as one space and
-- those around it dropped ("Stop.", " opt-out ", "OPT OUT!"). STOP, STOPALL, UNSUBSCRIBE,
-- CANCEL, END, QUIT, REVOKE, OPT OUT and OPTOUT opt out (the FCC's 2025 rule names REVOKE and
-- OPT OUT); START, YES and UNSTOP opt back in. Keywords are ordered by message_at, then SMS
-- id. An opt-out is the first opt-out keyword after an opt-in (or ever); the next opt-in
-- revokes it; until then it is active. The sends after it, until it was revoked, are split
-- into those the carrier refused (status error) and those it delivered (sent).
-- With sms_text = hash or drop no text is a keyword (a hash is 64 hex digits, a dropped text
-- null), so the view is empty: nothing in the data tells an opt-out without the text. Matching
-- the text itself needs no marker of the mode, and a mode change needs a full refresh anyway.
CREATE OR REPLACE VIEW close_sms.sms_opt_outs AS
WITH keywords AS (
    SELECT
        id,
        lead_id,
        remote_phone,
        message_at,
        keyword,
        keyword IN (
            'STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'REVOKE', 'OPT OUT', 'OPTOUT'
        ) AS opts_out
    FROM (
        SELECT
            id,
            lead_id,
            remote_phone,
            message_at,
            trim(regexp_replace(upper(text), '[^A-Z0-9]+', ' ', 'g')) AS keyword
        FROM close_sms.sms_messages
        WHERE direction = 'inbound'
    ) AS inbound
    WHERE keyword IN (
        'STOP',
        'STOPALL',
        'UNSUBSCRIBE',
        'CANCEL',
        'END',
        'QUIT',
        'REVOKE',
        'OPT OUT',
        'OPTOUT',
        'START',
        'YES',
        'UNSTOP'
    )
),
turns AS (
    -- The keywords that turn the phone's consent: an opt-out after an opt-in (or first), and
    -- an opt-in after an opt-out. A keyword that repeats the one before changes nothing.
    SELECT *
    FROM (
        SELECT
            *,
            lag(opts_out) OVER (
                PARTITION BY lead_id, remote_phone ORDER BY message_at, id
            ) AS previous_opts_out
        FROM keywords
    ) AS ordered
    WHERE previous_opts_out IS DISTINCT FROM opts_out
),
opt_outs AS (
    -- Each opt-out with the opt-in that revoked it: the next turn, when there is one.
    SELECT
        lead_id,
        remote_phone,
        message_at AS opted_out_at,
        id AS opt_out_sms_id,
        keyword AS opt_out_keyword,
        revoked_at,
        revoked_by_sms_id,
        revoked_by_keyword
    FROM (
        SELECT
            *,
            lead(message_at) OVER (
                PARTITION BY lead_id, remote_phone ORDER BY message_at, id
            ) AS revoked_at,
            lead(id) OVER (
                PARTITION BY lead_id, remote_phone ORDER BY message_at, id
            ) AS revoked_by_sms_id,
            lead(keyword) OVER (
                PARTITION BY lead_id, remote_phone ORDER BY message_at, id
            ) AS revoked_by_keyword
        FROM turns
    ) AS paired
    WHERE opts_out
),
sends AS (
    -- Outbound SMS with an outcome: sent (the carrier took it) or error (it refused it).
    SELECT id, lead_id, remote_phone, user_id, user_name, message_at, status
    FROM close_sms.sms_messages
    WHERE direction = 'outbound' AND status IN ('sent', 'error')
)
SELECT
    o.lead_id,
    o.remote_phone,
    o.opted_out_at,
    o.opt_out_sms_id,
    o.opt_out_keyword,
    o.revoked_at IS NULL AS is_active,
    o.revoked_at,
    o.revoked_by_sms_id,
    o.revoked_by_keyword,
    -- arg_max skips nulls: the latest sent SMS that has a user (a name), before the revocation.
    arg_max(
        CASE WHEN s.status = 'sent' THEN s.user_id END, {'at': s.message_at, 'id': s.id}
    ) AS last_user_id,
    arg_max(
        CASE WHEN s.status = 'sent' THEN s.user_name END, {'at': s.message_at, 'id': s.id}
    ) AS last_user_name,
    count(s.id) FILTER (
        WHERE s.status = 'sent' AND s.message_at > o.opted_out_at
    ) AS sent_after_opt_out_count,
    count(s.id) FILTER (
        WHERE s.status = 'error' AND s.message_at > o.opted_out_at
    ) AS refused_after_opt_out_count,
    max(s.message_at) FILTER (
        WHERE s.status = 'sent' AND s.message_at > o.opted_out_at
    ) AS last_sent_after_opt_out_at,
    arg_max(
        CASE WHEN s.status = 'sent' AND s.message_at > o.opted_out_at THEN s.id END,
        {'at': s.message_at, 'id': s.id}
    ) AS last_sent_after_opt_out_id
FROM opt_outs AS o
LEFT JOIN sends AS s
    ON s.lead_id IS NOT DISTINCT FROM o.lead_id
    AND s.remote_phone IS NOT DISTINCT FROM o.remote_phone
    AND (o.revoked_at IS NULL OR s.message_at < o.revoked_at)
GROUP BY
    o.lead_id,
    o.remote_phone,
    o.opted_out_at,
    o.opt_out_sms_id,
    o.opt_out_keyword,
    o.revoked_at,
    o.revoked_by_sms_id,
    o.revoked_by_keyword;
