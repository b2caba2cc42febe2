-- sms_delivery_outcomes: one row per SMS, with every column of sms_messages and its delivery
-- outcome as a number, failed: 1 when an outbound SMS failed (status error), 0 when it was
-- sent, null when it has none (inbound, or not sent yet: draft, scheduled, outbox).
-- Every failure_rate is the mean of failed over a group's SMS: failed / (sent + failed), null
-- when none of them has an outcome. A DOUBLE, as the rate: PostgreSQL's avg of an integer is
-- a numeric.
CREATE OR REPLACE VIEW close_sms.sms_delivery_outcomes AS
SELECT
    *,
    CAST(
        CASE
            WHEN direction = 'outbound' AND status = 'error' THEN 1
            WHEN direction = 'outbound' AND status = 'sent' THEN 0
        END AS DOUBLE
    ) AS failed
FROM close_sms.sms_messages;
