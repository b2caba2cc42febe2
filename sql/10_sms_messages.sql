-- sms_messages: one row per SMS currently in Close, the base of every other sms_* view.
-- Deleted SMS are physically removed from close_sms.sms by the sync, so they vanish here
-- and from every view built on this one.
-- The names come from the context tables (users, leads, lead_statuses, contacts, sms_templates,
-- phone_numbers), joined on their ids: null where the context is off or lacks the object.
CREATE OR REPLACE VIEW close_sms.sms_messages AS
WITH attachment_counts AS (
    -- Attachments hang off the parent row's dlt id, not the SMS id.
    SELECT _dlt_parent_id, count(*) AS attachment_count
    FROM close_sms.sms__attachments
    GROUP BY _dlt_parent_id
),
user_names AS (
    SELECT id, email, nullif(trim(concat_ws(' ', first_name, last_name)), '') AS full_name
    FROM close_sms.users
),
local_numbers AS (
    -- A number is on one phone_numbers row, unless Close re-issued it: the latest row wins,
    -- so each SMS stays one row.
    SELECT number, label, user_id
    FROM (
        SELECT
            number,
            label,
            user_id,
            row_number() OVER (PARTITION BY number ORDER BY date_updated DESC, id) AS n
        FROM close_sms.phone_numbers
    ) AS ranked
    WHERE n = 1
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
        AS message_date,
    u.email AS user_email,
    l.name AS lead_name,
    l.status_id AS lead_status_id,
    -- The status's label now (a renamed status shows its new name), else the lead's copy.
    coalesce(ls.label, l.status_label) AS lead_status_label,
    c.name AS contact_name,
    t.name AS template_name,
    n.label AS local_phone_label,
    n.user_id AS local_phone_owner_id,
    o.full_name AS local_phone_owner_name
FROM close_sms.sms AS s
LEFT JOIN attachment_counts AS a ON a._dlt_parent_id = s._dlt_id
LEFT JOIN user_names AS u ON u.id = s.user_id
LEFT JOIN close_sms.leads AS l ON l.id = s.lead_id
LEFT JOIN close_sms.lead_statuses AS ls ON ls.id = l.status_id
LEFT JOIN close_sms.contacts AS c ON c.id = s.contact_id
LEFT JOIN close_sms.sms_templates AS t ON t.id = s.template_id
LEFT JOIN local_numbers AS n ON n.number = s.local_phone
LEFT JOIN user_names AS o ON o.id = n.user_id;
