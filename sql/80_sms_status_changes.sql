-- sms_status_changes: one row per SMS event, numbered and timed per SMS.
-- The order per SMS is event_number; the view itself has no ORDER BY (a sort of every event,
-- ~0.4 s per 2M, that most queries redo or don't need): ORDER BY object_id, event_number.
-- Reads sms_events, not sms, so events of deleted SMS (including the 'deleted' event) stay.
-- Events are ordered by date_updated as Close's event log orders them (consolidated events
-- move their date_updated, not their date_created), then date_created, then event id.
CREATE OR REPLACE VIEW close_sms.sms_status_changes AS
-- The gap is computed outside the window query: written inline, DuckDB evaluates the lag a
-- second time (1M SMS / 2M events: ~20% slower).
-- The names are sms_messages': the user's from users, the lead's from leads (null where the
-- context is off or lacks them).
SELECT
    numbered.*,
    nullif(trim(concat_ws(' ', u.first_name, u.last_name)), '') AS user_name,
    l.name AS lead_name,
    epoch(numbered.date_updated) - epoch(numbered.previous_event_at) AS seconds_since_previous
FROM (
    SELECT
        id AS event_id,
        object_id,
        action,
        date_created,
        date_updated,
        user_id,
        lead_id,
        changed_fields,
        row_number() OVER per_sms AS event_number,
        lag(action) OVER per_sms AS previous_action,
        lag(date_updated) OVER per_sms AS previous_event_at
    FROM close_sms.sms_events
    WINDOW per_sms AS (PARTITION BY object_id ORDER BY date_updated, date_created, id)
) AS numbered
LEFT JOIN close_sms.users AS u ON u.id = numbered.user_id
LEFT JOIN close_sms.leads AS l ON l.id = numbered.lead_id;
