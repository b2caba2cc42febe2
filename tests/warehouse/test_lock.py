"""The writer lock: PostgreSQL ends an advisory lock with its session, and a holder that goes on
(a follower's cycles) finds out before it writes again."""

from __future__ import annotations

import subprocess

import psycopg2
import pytest

from close_sms.app.follow import retried
from close_sms.errors import LockLost
from close_sms.warehouse.destination import Warehouse
from close_sms.warehouse.lock import writer_lock
from tests import cli_process
from tests.support import change_account, cli_command, cli_env

TERMINATE_LOCK_HOLDERS = (
    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _terminate_lock_holders(dsn: str) -> int:
    con = psycopg2.connect(dsn)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(TERMINATE_LOCK_HOLDERS)
            return len(cur.fetchall())
    finally:
        con.close()


@pytest.fixture
def on_postgres(postgres, monkeypatch, tmp_path) -> str:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return postgres


def test_a_lock_lost_with_its_session_stops_its_holder_and_frees_the_dataset(on_postgres):
    warehouse = Warehouse.configure("postgres")
    with writer_lock(warehouse):
        with writer_lock(warehouse):
            pass  # the session answers: still held
        assert _terminate_lock_holders(on_postgres) == 1
        with pytest.raises(LockLost, match="writer lock .* was lost"), writer_lock(warehouse):
            pytest.fail("the block ran without the lock")
    # Left without an error, and the lock is free for the next sync.
    with writer_lock(warehouse):
        pass


def test_a_follower_whose_lock_session_ends_stops_with_exit_6(emulator, on_postgres, tmp_path):
    assert retried(LockLost("lost")) is False
    running = emulator(sms=100, seed=62)
    env = cli_env(
        running.api_key,
        DESTINATION__POSTGRES__CREDENTIALS=on_postgres,
        XDG_STATE_HOME=str(tmp_path / "state"),
        SOURCES__CLOSE_SMS__FOLLOW_INTERVAL="0.5",
    )
    follower = cli_process.popen(
        cli_command("follow", "--base-url", running.base_url, "--destination", "postgres"),
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in follower.stderr:
            if "Cycle (backfill" in line:
                break
        assert _terminate_lock_holders(on_postgres) == 1
        # Skipped cycles write nothing and check nothing; the next that would write checks.
        change_account(running.emu)
        _, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 6, err
    assert "writer lock" in err and "was lost" in err
    assert "Traceback" not in err
