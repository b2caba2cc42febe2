-- sms_messages: one row per SMS currently in Close, the base of every other sms_* view.
-- Deleted SMS are physically removed from close_sms.sms by the sync, so they vanish here
-- and from every view built on this one.
CREATE OR REPLACE VIEW close_sms.sms_messages AS
WITH attachment_counts AS (
    -- Attachments hang off the parent row's dlt id, not the SMS id.
    SELECT _dlt_parent_id, count(*) AS attachment_count
    FROM close_sms.sms__attachments
    GROUP BY _dlt_parent_id
)
SELECT
    -- EXCLUDE rather than a column list: fields Close adds later show up without an edit
    -- (on destinations without EXCLUDE the star is expanded from the table when applied).
    s.* EXCLUDE (_dlt_load_id, _dlt_id, _deleted),
    coalesce(a.attachment_count, 0) AS attachment_count,
    coalesce(a.attachment_count, 0) > 0 AS has_attachments,
    coalesce(s.status = 'error', false) AS is_failed,
    -- Not sent yet (a rep's draft, or scheduled for later): never a reply, nor a conversation turn.
    coalesce(s.status IN ('draft', 'scheduled'), false) AS is_unsent,
    -- date_sent is null for inbound, drafts and failures; activity_at, then date_created, stand in.
    coalesce(s.date_sent, s.activity_at, s.date_created) AS message_at,
    -- AT TIME ZONE 'UTC' makes the date independent of the session's TimeZone setting
    -- (a plain ::DATE cast of a TIMESTAMPTZ uses the local zone).
    CAST(coalesce(s.date_sent, s.activity_at, s.date_created) AT TIME ZONE 'UTC' AS DATE)
        AS message_date
FROM close_sms.sms AS s
LEFT JOIN attachment_counts AS a ON a._dlt_parent_id = s._dlt_id;
