-- sms_outbound_outcomes: one row per outbound SMS that left drafts (sent, outbox and failed),
-- with every column of sms_messages, who sent it and whether the customer answered: the rows
-- of sms_reply_outcomes (which defines the sender kinds and a reply) without their numbers
-- failed and replied.
CREATE OR REPLACE VIEW close_sms.sms_outbound_outcomes AS
SELECT * EXCLUDE (failed, replied)
FROM close_sms.sms_reply_outcomes;
