-- sync_health: one row per UTC day with runs of close-sms sync, from the run ledger sync_runs.
-- Freshness: the lag is how long before a run's end the change feed was last read
-- successfully; a failing day shows it growing. Runs refused by another sync's lock (exit 5)
-- are overlaps of cron runs, counted apart from failures.
CREATE OR REPLACE VIEW close_sms.sync_health AS
SELECT
    CAST(started_at AT TIME ZONE 'UTC' AS DATE) AS run_date,
    count(*) AS runs,
    count(*) FILTER (WHERE outcome = 'success') AS successful_runs,
    count(*) FILTER (WHERE outcome = 'failed') AS failed_runs,
    count(*) FILTER (WHERE outcome = 'interrupted') AS interrupted_runs,
    count(*) FILTER (WHERE outcome = 'locked') AS locked_runs,
    max(ended_at) FILTER (WHERE outcome = 'success') AS last_success_at,
    max(ended_at) FILTER (WHERE outcome = 'failed') AS last_failure_at,
    -- arg_max skips nulls: only failed runs take part.
    arg_max(
        CASE WHEN outcome = 'failed' THEN error END,
        CASE WHEN outcome = 'failed' THEN started_at END
    ) AS last_error,
    max(lag_seconds) AS max_lag_seconds,
    CAST(coalesce(sum(sms_upserted), 0) AS BIGINT) AS sms_upserted,
    CAST(coalesce(sum(sms_deleted), 0) AS BIGINT) AS sms_deleted,
    CAST(coalesce(sum(requests), 0) AS BIGINT) AS requests,
    CAST(coalesce(sum(responses_429), 0) AS BIGINT) AS responses_429,
    coalesce(sum(rate_limit_wait_seconds), 0) AS rate_limit_wait_seconds
FROM close_sms.sync_runs
GROUP BY run_date;
