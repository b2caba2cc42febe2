-- sms_attachments_flat: one row per MMS attachment, with the parent SMS's context.
-- Joins the raw parent table because the link is dlt's row id, which sms_messages drops.
-- The inner join also drops any attachment whose SMS is gone (deleted SMS vanish).
CREATE OR REPLACE VIEW close_sms.sms_attachments_flat AS
SELECT
    s.id AS sms_id,
    a.media_id,
    a.content_type,
    a.filename,
    a.size,
    a.url,
    a.thumbnail_url,
    -- Position of the attachment within the SMS, from 0.
    a._dlt_list_idx AS attachment_index,
    s.lead_id,
    s.direction,
    -- Same definition as sms_messages.message_at / message_date.
    coalesce(s.date_sent, s.activity_at, s.date_created) AS message_at,
    CAST(coalesce(s.date_sent, s.activity_at, s.date_created) AT TIME ZONE 'UTC' AS DATE)
        AS message_date
FROM close_sms.sms__attachments AS a
JOIN close_sms.sms AS s ON s._dlt_id = a._dlt_parent_id;
