"""A ledger an older version created gains the columns a newer one declares."""

from __future__ import annotations

from datetime import datetime, timezone

from close_sms.warehouse.ledger import SyncRun, ledger_columns, write_runs
from tests.support import Target


def test_a_ledger_without_the_newer_columns_gains_them_and_keeps_its_rows(target: Target):
    older = [
        name for name in ledger_columns() if name not in ("skipped_positions", "sms_unreadable")
    ]
    target.execute("CREATE SCHEMA IF NOT EXISTS close_sms")
    target.execute(
        "CREATE TABLE close_sms.sync_runs (run_id TEXT, started_at TIMESTAMPTZ,"
        " ended_at TIMESTAMPTZ, mode TEXT, outcome TEXT, exit_status BIGINT, error TEXT,"
        " sms_upserted BIGINT, sms_deleted BIGINT, events_read BIGINT, requests BIGINT,"
        " responses_429 BIGINT, rate_limit_wait_seconds DOUBLE PRECISION,"
        " feed_checked_at TIMESTAMPTZ, lag_seconds DOUBLE PRECISION,"
        " backfill_windows_left BIGINT, version TEXT)"
    )
    target.execute(
        "INSERT INTO close_sms.sync_runs (run_id, started_at, ended_at, outcome, exit_status)"
        " VALUES ('old', '2026-01-01 00:00:00+00', '2026-01-01 00:01:00+00', 'success', 0)"
    )
    assert [row[0] for row in target.query(_columns())] == older
    now = datetime.now(timezone.utc)
    run = SyncRun("new", now, now, "incremental", "success", 0, skipped_positions=2)

    with target.warehouse.sql_client() as sql:
        write_runs(sql, [run])

    assert [row[0] for row in target.query(_columns())] == list(ledger_columns())
    rows = target.query(
        "SELECT run_id, skipped_positions, sms_unreadable FROM close_sms.sync_runs ORDER BY run_id"
    )
    assert rows == [("new", 2, 0), ("old", None, None)]


def _columns() -> str:
    return (
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'close_sms' AND table_name = 'sync_runs' ORDER BY ordinal_position"
    )
