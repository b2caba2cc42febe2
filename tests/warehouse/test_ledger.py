"""The run ledger, `status --max-lag` and alerts, through real syncs of the emulator.

Runs go into real DuckDB files and PostgreSQL databases; alerts go to a real HTTP receiver on
127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from importlib.metadata import version

import duckdb
import pytest

from close_sms.app.alerts import INCIDENT_FILE, Alerts, parse_duration
from close_sms.errors import LockHeld, UnreachableError
from close_sms.warehouse.ledger import JOURNAL, ledger_columns
from tests import cli_process
from tests.support import (
    Receiver,
    Target,
    change_account,
    cli_command,
    cli_env,
    count,
    run_cli,
    sync,
)

RUNS = (
    "SELECT outcome, exit_status, mode, error, sms_upserted, sms_deleted, events_read, requests,"
    " responses_429, feed_checked_at, lag_seconds, backfill_windows_left, version"
    " FROM close_sms.sync_runs ORDER BY started_at"
)
FIELDS = RUNS.split("SELECT ")[1].split(" FROM")[0].replace(" ", "").split(",")


def ledger(target: Target) -> list[dict]:
    return [dict(zip(FIELDS, row, strict=True)) for row in target.query(RUNS)]


def test_every_run_is_in_the_ledger_failed_ones_too(emulator, target):
    running = emulator(sms=300, seed=81)
    backfill = sync(running, target)
    assert backfill.backfill_sms >= count(target, "SELECT count(*) FROM close_sms.sms") > 0
    change_account(running.emu)
    sync(running, target)
    with pytest.raises(UnreachableError):
        # Close down: the run writes nothing, so its row waits in the local journal ...
        sync(running, target, base_url="http://127.0.0.1:9/api/v1", max_retries=1)
    assert count(target, "SELECT count(*) FROM close_sms.sync_runs") == 2
    assert (target.warehouse.working_dir / JOURNAL).exists()

    sync(running, target)  # ... and the next run writes it with its own.

    first, second, failed, last = ledger(target)
    assert not (target.warehouse.working_dir / JOURNAL).exists()
    assert [r["outcome"] for r in (first, second, failed, last)] == [
        "success",
        "success",
        "failed",
        "success",
    ]
    assert (first["mode"], first["sms_upserted"], first["backfill_windows_left"]) == (
        "backfill",
        backfill.backfill_sms,
        0,
    )
    assert first["requests"] > 3 and first["feed_checked_at"] is not None
    # change_account: a new SMS, a draft created, edited and queued, one SMS deleted.
    assert (second["mode"], second["sms_upserted"], second["sms_deleted"]) == ("incremental", 2, 1)
    assert second["events_read"] >= 4
    assert (failed["exit_status"], failed["mode"]) == (4, None)
    assert "127.0.0.1:9" in failed["error"]
    # A failed run's freshness is the last successful read, growing older.
    assert failed["feed_checked_at"] == second["feed_checked_at"]
    assert failed["lag_seconds"] >= second["lag_seconds"]
    assert {r["version"] for r in (first, second, failed, last)} == {version("close-sms")}
    assert (last["exit_status"], last["error"]) == (0, None)


def test_the_ledger_has_explicit_types(emulator, target):
    running = emulator(sms=20, seed=82)
    sync(running, target)
    types = dict(
        target.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'close_sms' AND table_name = 'sync_runs'"
            " ORDER BY ordinal_position"
        )
    )
    assert list(types) == list(ledger_columns())
    assert "time zone" in types["started_at"].lower()
    assert types["exit_status"].lower() == "bigint"
    assert types["lag_seconds"].lower() in ("double", "double precision")


def test_a_run_failing_part_way_records_what_it_did(emulator, target):
    running = emulator(sms=600, seed=83)
    running.emu.faults.add("429", times=2, reset=0.05)
    # The backfill loads its chunks, then the change feed keeps failing.
    running.emu.faults.add("503", times=50, path_prefix="/api/v1/event/")
    with pytest.raises(UnreachableError):
        sync(running, target, chunk_size=250, max_retries=1)

    (failed,) = ledger(target)
    assert (failed["outcome"], failed["exit_status"], failed["mode"]) == ("failed", 4, "backfill")
    # Every SMS loaded was upserted (a few more: pages re-read the end of a partly read second).
    assert failed["sms_upserted"] >= count(target, "SELECT count(*) FROM close_sms.sms") > 0
    assert failed["responses_429"] == 2
    assert failed["feed_checked_at"] is None and failed["lag_seconds"] is None


def test_exit_6_is_recorded_by_the_next_run(emulator, tmp_path):
    running = emulator(sms=100, seed=84)
    database = tmp_path / "w.duckdb"
    args = ("sync", "--base-url", running.base_url, "--database", str(database))
    assert run_cli(*args, api_key=running.api_key).returncode == 0

    notebook = duckdb.connect(str(database), read_only=True)
    try:
        # A one-second wait proves the same as the default two minutes.
        blocked = run_cli(*args, api_key=running.api_key, SOURCES__CLOSE_SMS__LOCK_WAIT="1")
    finally:
        notebook.close()
    assert blocked.returncode == 6, blocked.stderr
    after = run_cli(*args, api_key=running.api_key)
    assert after.returncode == 0, after.stderr

    rows = ledger(Target.duckdb(database))
    assert [(r["outcome"], r["exit_status"]) for r in rows] == [
        ("success", 0),
        ("failed", 6),
        ("success", 0),
    ]
    assert "open in another process" in rows[1]["error"]


def test_status_shows_the_last_runs_in_both_outputs(emulator, target):
    running = emulator(sms=50, seed=85)
    sync(running, target)
    with pytest.raises(UnreachableError):
        sync(running, target, base_url="http://127.0.0.1:9/api/v1", max_retries=1)

    text = run_cli("status", *target.cli_args, api_key=None, **target.env)
    facts = json.loads(
        run_cli("status", "--json", *target.cli_args, api_key=None, **target.env).stdout
    )

    # The failed run is still in the local journal: status reads it there.
    assert facts["last_run"]["outcome"] == "failed" and facts["last_run"]["exit_status"] == 4
    assert facts["last_successful_run"]["outcome"] == "success"
    assert facts["feed_read_at"] == facts["last_successful_run"]["feed_checked_at"]
    assert f"last run:             {facts['last_run']['ended_at']} failed (exit 4" in text.stdout
    assert (
        f"last success:         {facts['last_successful_run']['ended_at']} success" in text.stdout
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("PT30M", 1800), ("45", 45)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0m", "-5m", "30x", "2024-01-01", ""])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def behind(emulator, hours: float):
    """An account whose Close clock is `hours` behind the local one: every read looks old."""
    now = datetime.now(timezone.utc)
    running = emulator(sms=40, seed=86, end=now - timedelta(hours=hours + 1))
    running.emu.clock.advance(-hours * 3600)
    return running


def test_status_max_lag_exits_8_when_stale_or_failed(emulator, target):
    running = behind(emulator, hours=2)
    sync(running, target)

    def check(*flags: str):
        return run_cli("status", *target.cli_args, *flags, api_key=None, **target.env)

    stale, fresh, bad = (
        check("--max-lag", "30m"),
        check("--max-lag", "PT3H"),
        check("--max-lag", "x"),
    )
    assert (stale.returncode, fresh.returncode, bad.returncode) == (8, 0, 2), stale.stderr
    assert (
        stale.stdout.strip().splitlines()[-1].startswith("STALE: the change feed was last read 02:")
    )
    assert fresh.stdout.strip().splitlines()[-1].startswith("OK: the change feed was read 02:")
    assert "--max-lag" in bad.stderr and "Traceback" not in bad.stderr

    running.emu.clock.advance(2 * 3600)
    with pytest.raises(UnreachableError):
        sync(running, target, base_url="http://127.0.0.1:9/api/v1", max_retries=1)
    failed = check("--max-lag", "1d", "--json")
    assert failed.returncode == 8
    assert json.loads(failed.stdout)["check"]["reason"].startswith("STALE: the last sync failed")
    sync(running, target)
    assert check("--max-lag", "30m").returncode == 0


def test_a_run_refused_the_lock_does_not_hide_the_failure_of_the_run_holding_it(emulator, tmp_path):
    running = emulator(sms=50, seed=88)
    database = tmp_path / "w.duckdb"
    sync(running, database)
    # The holder's two tries at /me/ each time out after 2 s: it holds the lock for 4 s or more,
    # time enough for a run in this process (no start-up) to be refused.
    running.emu.faults.add("hang", times=2, path_prefix="/me/", seconds=3.0)
    args = ("sync", "--base-url", running.base_url, "--database", str(database))
    env = cli_env(
        running.api_key, SOURCES__CLOSE_SMS__READ_TIMEOUT="2", SOURCES__CLOSE_SMS__MAX_RETRIES="1"
    )
    holder = cli_process.popen(cli_command(*args), env=env, stderr=subprocess.PIPE, text=True)
    try:
        # /me/ is asked once the lock is held.
        while holder.poll() is None and not running.emu.faults.injected["hang"]:
            time.sleep(0.05)
        with pytest.raises(LockHeld):
            sync(running, database)
    finally:
        holder.communicate(timeout=120)
    assert holder.returncode == 4

    check = run_cli("status", "--database", str(database), "--max-lag", "1d", api_key=None)

    assert check.returncode == 8, check.stdout
    assert check.stdout.strip().splitlines()[-1].startswith("STALE: the last sync failed (exit 4")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def test_one_alert_per_incident_and_one_when_recovered(emulator, tmp_path, receiver):
    running = emulator(sms=50, seed=87)
    database = tmp_path / "w.duckdb"
    incident = Target.duckdb(database).warehouse.working_dir / INCIDENT_FILE

    def cron_run(api_key: str):
        return run_cli(
            "sync",
            "--quiet",
            "--base-url",
            running.base_url,
            "--database",
            str(database),
            api_key=api_key,
            SOURCES__CLOSE_SMS__NOTIFY_URL=receiver.url,
            SOURCES__CLOSE_SMS__MAX_LAG="30m",
        )

    assert cron_run(running.api_key).returncode == 0
    assert receiver.messages == [] and not incident.exists()

    assert cron_run("api_revoked_key_0000").returncode == 3
    assert cron_run("api_revoked_key_0000").returncode == 3  # the same incident: no new message
    assert len(receiver.messages) == 1
    assert "the last sync failed (exit 3" in receiver.texts()[0]
    assert str(database) in receiver.texts()[0]
    assert "api_revoked_key_0000" not in receiver.texts()[0]

    recovered = cron_run(running.api_key)
    assert recovered.returncode == 0 and recovered.stderr == ""
    assert len(receiver.messages) == 2 and "recovered" in receiver.texts()[1]
    assert not incident.exists()

    receiver.stop()
    unsent = cron_run("api_revoked_key_0000")
    assert unsent.returncode == 3
    warnings = [line for line in unsent.stderr.splitlines() if "warning" in line]
    assert warnings == ["close-sms: warning: alert not sent to notify_url (ConnectionError)"]
    assert "T0KEN" not in unsent.stderr and "s3cr3t" not in unsent.stderr
    # Still open and not sent: the next run of the incident tries again.
    assert json.loads(incident.read_text())["sent"] is False
    # The webhook's token is kept out of dlt's trace and every other file beside the database.
    files = [p for p in incident.parent.rglob("*") if p.is_file()]
    assert any(p.name == "trace.pickle" for p in files)
    assert [p for p in files if b"s3cr3t" in p.read_bytes()] == []


def test_a_lag_past_max_lag_alerts_once(emulator, target, receiver):
    running = behind(emulator, hours=2)
    alerts = Alerts(receiver.url, max_lag_seconds=parse_duration("30m"))

    sync(running, target, alerts=alerts)
    sync(running, target, alerts=alerts)
    assert len(receiver.messages) == 1
    assert "the change feed was last read 02:" in receiver.texts()[0]

    running.emu.clock.advance(2 * 3600)
    sync(running, target, alerts=alerts)
    assert len(receiver.messages) == 2 and "recovered" in receiver.texts()[1]


def test_a_bad_notify_url_is_a_config_error_that_hides_it(tmp_path):
    result = run_cli(
        "sync",
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key="some_key_1",
        SOURCES__CLOSE_SMS__NOTIFY_URL="hooks.example/T0KEN",
    )
    assert result.returncode == 2
    assert "notify_url" in result.stderr and "T0KEN" not in result.stderr


def test_a_run_whose_context_fails_exits_9_names_the_table_and_alerts_once(
    emulator, tmp_path, receiver
):
    running = emulator(
        sms=80, seed=89, failing_context={"sms_template"}, failing_context_status=403
    )
    database = tmp_path / "w.duckdb"

    def cron_run(*flags: str):
        return run_cli(
            "sync",
            *flags,
            "--base-url",
            running.base_url,
            "--database",
            str(database),
            api_key=running.api_key,
            SOURCES__CLOSE_SMS__NOTIFY_URL=receiver.url,
        )

    first = cron_run()
    assert first.returncode == 9, first.stderr
    (error,) = [line for line in first.stderr.splitlines() if line.startswith("close-sms: error:")]
    assert (
        "context tables failed" in error
        and "sms_templates: " in error
        and "(HTTP 403 on GET /sms_template/)" in error
    )
    (summary,) = [line for line in first.stderr.splitlines() if line.startswith("Sync done")]
    assert summary.endswith(error.removeprefix("close-sms: error:"))
    # The SMS are loaded, and so are the other context tables.
    assert count(database, "SELECT count(*) FROM close_sms.sms") == len(running.emu.snapshot())
    assert count(database, "SELECT count(*) FROM close_sms.users") > 0

    quiet = cron_run("--quiet")
    assert quiet.returncode == 9 and quiet.stderr.splitlines() == [error]

    runs = ledger(Target.duckdb(database))
    assert [(run["outcome"], run["exit_status"]) for run in runs] == [("success", 9)] * 2
    assert runs[1]["error"] == error.removeprefix("close-sms: error: ")
    assert runs[1]["lag_seconds"] < 60
    assert len(receiver.messages) == 1
    assert "left context tables behind (exit 9" in receiver.texts()[0]
    assert "sms_templates" in receiver.texts()[0]

    check = run_cli("status", "--database", str(database), "--max-lag", "1d", api_key=None)
    assert check.returncode == 8
    assert (
        check.stdout.strip()
        .splitlines()[-1]
        .startswith("STALE: the last sync left context tables behind (exit 9")
    )
    shown = [line.split()[0] for line in check.stdout.splitlines() if " read:" in line]
    assert shown == ["users", "lead_statuses", "phone_numbers", "leads", "contacts"]


def test_status_shows_each_context_tables_age_and_max_lag_applies_to_it(emulator, target):
    running = behind(emulator, hours=2)
    sync(running, target)
    running.emu.clock.advance(2 * 3600)
    # The SMS are read now; the context tables were last read two hours ago.
    sync(running, target, context=False)

    def check(*flags: str):
        return run_cli("status", *target.cli_args, *flags, api_key=None, **target.env)

    facts = json.loads(check("--json").stdout)["context_tables"]
    assert set(facts) == {
        "users",
        "lead_statuses",
        "sms_templates",
        "phone_numbers",
        "leads",
        "contacts",
    }
    assert all(2 * 3600 <= age["age_seconds"] < 3 * 3600 for age in facts.values())
    assert (facts["users"]["allowed_seconds"], facts["leads"]["allowed_seconds"]) == (3600, 900)
    stale, fresh = check("--max-lag", "30m"), check("--max-lag", "PT2H")
    assert (stale.returncode, fresh.returncode) == (8, 0), stale.stdout
    reason = stale.stdout.strip().splitlines()[-1]
    assert reason.startswith(
        "STALE: context tables were last read longer ago than allowed: users 02:"
    )
    assert "leads 02:" in reason
    assert f"{'users read:':<22}02:" in stale.stdout
