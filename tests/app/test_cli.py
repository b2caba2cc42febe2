"""The `close-sms` command as cron runs it: separate processes, exit statuses, messages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from importlib import metadata
from pathlib import Path

import filelock
import pytest

from tests import cli_process
from tests.reliability.helpers import sync_cli
from tests.support import cli_command, cli_env, count, mismatches, run_cli


def test_sync_from_home_directory_and_status(emulator, tmp_path):
    running = emulator(sms=300, seed=31)
    home = tmp_path / "home"
    (home / ".dlt").mkdir(parents=True)
    (home / ".dlt" / "config.toml").write_text("[runtime]\nlog_level = 'WARNING'\n")

    result = run_cli(
        "sync",
        "--base-url",
        running.base_url,
        "--database",
        "warehouse.duckdb",
        api_key=running.api_key,
        cwd=home,
        HOME=str(home),
    )

    assert result.returncode == 0, result.stderr
    assert mismatches(home / "warehouse.duckdb", running.emu.snapshot()) == []
    status = run_cli(
        "status", "--database", "warehouse.duckdb", api_key=None, cwd=home, HOME=str(home)
    )
    assert status.returncode == 0, status.stderr
    assert "rows in sms:" in status.stdout
    assert "backfill:             complete" in status.stdout


def test_quiet_sync_prints_nothing_on_success(emulator, tmp_path):
    # A backfill long enough for progress lines, were the run not quiet.
    running = emulator(sms=2000, seed=32, latency_ms=10)
    result = run_cli(
        "sync",
        "--quiet",
        "--base-url",
        running.base_url,
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key=running.api_key,
        SOURCES__CLOSE_SMS__PROGRESS_INTERVAL="0.01",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_base_url_and_key_from_dlt_environment_variables(emulator, tmp_path):
    running = emulator(sms=50, seed=33)
    result = run_cli(
        "sync",
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key=None,
        SOURCES__CLOSE_SMS__BASE_URL=running.base_url,
        CLOSE_API_KEY=running.api_key,
    )
    assert result.returncode == 0, result.stderr
    assert count(tmp_path / "w.duckdb", "SELECT count(*) FROM close_sms.sms") == 50


def test_missing_key_exits_2_naming_the_setting(tmp_path):
    result = run_cli("sync", "--database", str(tmp_path / "w.duckdb"), api_key=None)
    assert result.returncode == 2
    assert "SOURCES__CLOSE_SMS__API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "api_key", "says"),
    [
        (
            ("--base-url", "not a url"),
            "some_key",
            "is not an http(s) URL, e.g. https://api.close.com/api/v1 (--base-url, or "
            "SOURCES__CLOSE_SMS__BASE_URL or base_url under [sources.close_sms] in .dlt/config.toml)",
        ),
        (
            ("--start-date", "yesterday-ish"),
            "some_key",
            "is not a date (use YYYY-MM-DD; --start-date, or SOURCES__CLOSE_SMS__START_DATE or "
            "start_date under [sources.close_sms] in .dlt/config.toml)",
        ),
        (
            (),
            "",
            "no Close API key: set CLOSE_API_KEY, or SOURCES__CLOSE_SMS__API_KEY or api_key under "
            "[sources.close_sms] in .dlt/secrets.toml",
        ),
    ],
)
def test_the_command_names_its_own_way_where_the_source_names_a_setting(
    tmp_path, arguments, api_key, says
):
    result = run_cli("sync", "--database", str(tmp_path / "w.duckdb"), *arguments, api_key=api_key)

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("close-sms: error: ")
    assert result.stderr.strip().endswith(says)


def test_bad_key_exits_3_without_showing_the_key(emulator, tmp_path):
    running = emulator(sms=10, seed=34)
    secret = "bad_key_7f3e9d1c5b"
    result = run_cli(
        "sync",
        "--base-url",
        running.base_url,
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key=secret,
    )
    assert result.returncode == 3
    assert "API key" in result.stderr
    assert secret not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_unreachable_host_exits_4(tmp_path):
    result = run_cli(
        "sync",
        "--base-url",
        "http://127.0.0.1:9/api/v1",
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key="whatever_key_123",
    )
    assert result.returncode == 4
    assert "--base-url" in result.stderr
    assert "whatever_key_123" not in result.stderr


def test_database_named_like_the_dataset_is_refused(emulator, tmp_path):
    running = emulator(sms=10, seed=35)
    result = run_cli(
        "sync",
        "--base-url",
        running.base_url,
        "--database",
        str(tmp_path / "close_sms.duckdb"),
        api_key=running.api_key,
    )
    assert result.returncode == 2
    assert "ambiguous" in result.stderr
    assert not (tmp_path / "close_sms.duckdb").exists()


def test_corrupt_database_exits_6_and_is_left_alone(emulator, tmp_path):
    running = emulator(sms=10, seed=36)
    database = tmp_path / "w.duckdb"
    database.write_bytes(b"this is not a duckdb file" * 100)
    result = run_cli(
        "sync", "--base-url", running.base_url, "--database", str(database), api_key=running.api_key
    )
    assert result.returncode == 6, result.stderr
    assert database.read_bytes() == b"this is not a duckdb file" * 100


def test_lock_held_exits_5(emulator, tmp_path):
    running = emulator(sms=10, seed=37)
    database = tmp_path / "w.duckdb"
    with filelock.FileLock(str(database) + ".lock"):
        result = run_cli(
            "sync",
            "--base-url",
            running.base_url,
            "--database",
            str(database),
            api_key=running.api_key,
        )
    assert result.returncode == 5
    assert "another close-sms sync" in result.stderr


def test_a_lock_file_that_cannot_be_created_is_exit_6_not_an_overlap(emulator):
    # filelock reports a lock file it cannot create (here: in /proc, where nobody can) as one
    # another process holds; the run said "another close-sms sync is running" and exited 5.
    result = sync_cli(emulator(sms=10, seed=37), Path("/proc/w.duckdb"))
    if os.geteuid() != 0:
        # Checked before the lock: a folder the user cannot write.
        assert result.returncode == 2, result.stderr
        return
    assert result.returncode == 6, result.stderr
    assert "another close-sms sync" not in result.stderr
    assert "cannot create the lock file /proc/w.duckdb.lock" in result.stderr


def test_two_syncs_at_once_one_refuses_and_data_is_intact(emulator, target):
    running = emulator(sms=2000, seed=38, latency_ms=30)
    database = target
    args = ("sync", "--base-url", running.base_url, *target.cli_args)
    first = cli_process.popen(
        cli_command(*args),
        env=cli_env(running.api_key, SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE="400", **target.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once the first sync has loaded a chunk, it holds the lock for several chunks more.
        for line in first.stderr:
            if "chunk 1 loaded" in line:
                break
        second = run_cli(*args, api_key=running.api_key, **target.env)
    finally:
        out, err = first.communicate(timeout=300)
    assert second.returncode == 5
    assert first.returncode == 0, err
    assert mismatches(database, running.emu.snapshot()) == []


def test_killed_backfill_resumes_exactly(emulator, target):
    # Ten chunks, killed after the third (the fourth is read ahead meanwhile).
    running = emulator(sms=2000, seed=39, latency_ms=20)
    database = target
    args = ("sync", "--base-url", running.base_url, *target.cli_args)
    env = cli_env(running.api_key, SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE="200", **target.env)
    victim = cli_process.popen(cli_command(*args), env=env, stderr=subprocess.PIPE, text=True)
    loaded_chunks = 0
    for line in victim.stderr:
        if "chunk" in line and "loaded" in line:
            loaded_chunks += 1
            if loaded_chunks == 3:
                victim.send_signal(signal.SIGKILL)
                break
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    partial = count(database, "SELECT count(*) FROM close_sms.sms")
    assert 0 < partial < 2000

    resumed = cli_process.run(
        cli_command(*args), env=env, capture_output=True, text=True, timeout=300
    )

    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming backfill" in resumed.stderr
    assert mismatches(database, running.emu.snapshot()) == []
    duplicates = count(
        database,
        "SELECT count(*) FROM (SELECT id FROM close_sms.sms GROUP BY id HAVING count(*) > 1) AS d",
    )
    assert duplicates == 0


def test_settings_from_dlt_toml_files_in_the_working_directory(emulator, tmp_path):
    running = emulator(sms=40, seed=40)
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        f'[sources.close_sms]\nbase_url = "{running.base_url}"\n'
    )
    (tmp_path / ".dlt" / "secrets.toml").write_text(
        f'[sources.close_sms]\napi_key = "{running.api_key}"\n'
    )

    result = run_cli("sync", "--database", "w.duckdb", api_key=None, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert count(tmp_path / "w.duckdb", "SELECT count(*) FROM close_sms.sms") == len(
        running.emu.snapshot()
    )


def test_a_bad_numeric_setting_names_the_setting(tmp_path):
    result = run_cli(
        "sync",
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key="some_key_1",
        SOURCES__CLOSE_SMS__MAX_SKIP="lots",
    )
    assert result.returncode == 2
    assert "SOURCES__CLOSE_SMS__MAX_SKIP" in result.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_database_with_another_destination_is_a_config_error(tmp_path):
    result = run_cli(
        "sync",
        "--destination",
        "postgres",
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key="some_key_1",
        DESTINATION__POSTGRES__CREDENTIALS="postgresql://u:p@127.0.0.1:9/db",
    )
    assert result.returncode == 2, result.stderr
    assert "--database is for the duckdb destination only" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_unknown_or_unconfigured_destination_exits_2(tmp_path):
    unknown = run_cli("sync", "--destination", "nosuchdb", api_key="some_key_1", cwd=tmp_path)
    unconfigured = run_cli(
        "status", "--destination", "postgres", api_key=None, cwd=tmp_path, HOME=str(tmp_path)
    )
    assert unknown.returncode == 2, unknown.stderr
    assert "--destination nosuchdb" in unknown.stderr
    assert unconfigured.returncode == 2, unconfigured.stderr
    assert "DESTINATION__POSTGRES__CREDENTIALS" in unconfigured.stderr
    assert "Traceback" not in unknown.stderr + unconfigured.stderr


def test_report_on_a_missing_database_exits_2_like_status(tmp_path):
    missing = str(tmp_path / "missing.duckdb")
    report = run_cli(
        "report", "--database", missing, "--out", str(tmp_path / "r.html"), api_key=None
    )
    status = run_cli("status", "--database", missing, api_key=None)
    assert report.returncode == status.returncode == 2, report.stderr + status.stderr
    assert "does not exist" in report.stderr
    assert not (tmp_path / "missing.duckdb").exists()


def test_status_and_report_read_through_the_destination(emulator, target, tmp_path):
    running = emulator(sms=250, seed=46)
    synced = run_cli(
        "sync",
        "--base-url",
        running.base_url,
        *target.cli_args,
        api_key=running.api_key,
        **target.env,
    )
    assert synced.returncode == 0, synced.stderr

    status = run_cli("status", "--json", *target.cli_args, api_key=None, **target.env)
    out = tmp_path / "report.html"
    report = run_cli("report", *target.cli_args, "--out", str(out), api_key=None, **target.env)

    assert status.returncode == 0, status.stderr
    facts = json.loads(status.stdout)
    assert facts["tables"]["sms"] == len(running.emu.snapshot())
    assert facts["backfill_in_progress"] is False
    assert facts["feed_checked_at"] is not None
    assert report.returncode == 0, report.stderr
    assert "plotly" in out.read_text(encoding="utf-8")

    unwritable = run_cli(
        "report", *target.cli_args, "--out", str(tmp_path), api_key=None, **target.env
    )
    assert unwritable.returncode == 2, unwritable.stderr
    assert f"--out: cannot write {tmp_path}" in unwritable.stderr


def test_debug_shows_the_traceback_and_keeps_the_exit_status(tmp_path):
    result = run_cli("--debug", "status", "--database", str(tmp_path / "none.duckdb"), api_key=None)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().endswith(f"sync --database {tmp_path / 'none.duckdb'}` first")


def test_status_of_a_dataset_close_sms_never_loaded(tmp_path):
    database = str(tmp_path / "w.duckdb")
    assert run_cli("views", "--database", database, api_key=None).returncode == 0

    result = run_cli("status", "--database", database, "--max-lag", "1h", api_key=None)

    assert result.returncode == 8, result.stderr
    assert "backfill:             not started" in result.stdout
    assert (
        result.stdout.strip().splitlines()[-1].startswith("STALE: the change feed was never read")
    )


def test_demo_refuses_an_account_without_sms(tmp_path):
    result = run_cli("demo", "--sms", "0", api_key=None, cwd=tmp_path)
    assert result.returncode == 2
    assert "'0' is not a positive whole number" in result.stderr


def test_version_names_close_sms_dlt_and_duckdb_as_installed():
    result = run_cli("--version", api_key=None)

    assert result.returncode == 0, result.stderr
    expected = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("close-sms", "dlt", "duckdb")
    )
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("file_name", ["config.toml", "secrets.toml"])
def test_a_toml_syntax_error_is_exit_2_naming_the_file_and_the_line(tmp_path, file_name):
    project = tmp_path / ".dlt"
    project.mkdir()
    (project / file_name).write_text('[sources.close_sms]\nbase_url = "http://unclosed\n')

    result = run_cli("sync", "--database", str(tmp_path / "w.duckdb"), api_key=None, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"close-sms: error: .dlt/{file_name}: not valid TOML: Illegal character '\\n' "
        "(at line 2, column 28)"
    ]
    assert not (tmp_path / "w.duckdb").exists()


def test_every_command_the_demo_and_a_hint_suggest_works_as_printed(emulator, tmp_path):
    # From a folder where close-sms is not on PATH, as after the README's demo command; a key
    # and Close's address set the way a user sets them, for the hinted sync.
    running = emulator(sms=50, seed=38)
    env = {"PATH": "/usr/bin:/bin", "SOURCES__CLOSE_SMS__BASE_URL": running.base_url}
    demo = run_cli("demo", "--sms", "300", "--quiet", api_key=None, cwd=tmp_path, **env)
    assert demo.returncode == 0, demo.stderr
    # Every count explained: the 300 generated, those deleted in the account's history, what
    # the demo's changes left, and the warehouse's, which agrees.
    counts = re.search(
        r"The account: 300 SMS generated, of which (\d+) were deleted in its history .* so "
        r"(\d+) at the first sync; the changes above left (\d+)\.\nclose_sms\.sms holds (\d+) "
        r"SMS, as Close does\.",
        demo.stdout,
    )
    assert counts, demo.stdout
    deleted, listed, left, loaded = map(int, counts.groups())
    assert deleted + listed == 300 and left == loaded
    # Close's AI agent sends SMS in the demo account too, marked as Close marks them.
    ai_sent = count(
        tmp_path / "close_sms_demo.duckdb",
        "SELECT sum(outbound_count) FROM close_sms.sms_ai_vs_human WHERE sender_kind = 'ai_agent'",
    )
    assert ai_sent > 0
    suggested = [
        line.split(": ", 1)[1]
        for line in demo.stdout.splitlines()
        if line.startswith(("Inspect it with: ", "Draw its report: "))
    ]
    assert len(suggested) == 2, demo.stdout
    missing = run_cli("status", "--database", "nowhere.duckdb", api_key=None, cwd=tmp_path, **env)
    (hinted,) = re.findall(r"`([^`]+)`", missing.stderr)
    suggested.append(hinted)

    for command in suggested:
        ran = subprocess.run(
            command,
            shell=True,
            cwd=tmp_path,
            env=cli_env(running.api_key, **env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, (command, ran.stderr)
    assert (tmp_path / "close_sms_demo.html").stat().st_size > 0
    sms = count(tmp_path / "nowhere.duckdb", "SELECT count(*) FROM close_sms.sms")
    assert sms == len(running.emu.snapshot())


def test_an_unknown_setting_is_named_with_the_closest_known_one(tmp_path):
    project = tmp_path / ".dlt"
    project.mkdir()
    (project / "config.toml").write_text(
        "[sources.close_sms]\nbackfill_worker = 4\nmax_retries = 3\n\n"
        # A resource's own section is dlt's, not a misspelt setting.
        "[sources.close_sms.sms_backfill]\nanything = 1\n"
    )

    result = run_cli(
        "status",
        "--database",
        "w.duckdb",
        api_key=None,
        cwd=tmp_path,
        SOURCES__CLOSE_SMS__API_KEYS="api_x",
        SOURCES__CLOSE_SMS__LOCK_WAIT="5",
    )

    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "close-sms: warning: api_keys (SOURCES__CLOSE_SMS__API_KEYS) is no close-sms setting "
        "and is ignored; did you mean api_key?",
        "close-sms: warning: backfill_worker (.dlt/config.toml [sources.close_sms]) is no "
        "close-sms setting and is ignored; did you mean backfill_workers?",
    ]
