"""`close-sms follow`: cycles in one process that holds the lock, stops on a signal, resumes after
kill -9, and starts a cycle at once for a verified Close webhook (the doorbell)."""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

import close_sms.app.follow as follow_module
from close_sms.app.doorbell import Doorbell, signature
from close_sms.app.follow import QuietCycles, QuietProbe, retried
from close_sms.errors import (
    ConfigError,
    DatabaseError,
    LockLost,
    MassDeleteRefused,
    UnreachableError,
)
from close_sms.source.api.client import CloseClient
from close_sms.source.sms.feed import any_event_since
from close_sms.warehouse.destination import Warehouse
from close_sms.warehouse.ledger import LEDGER_TABLE, Outcome, SyncRun
from tests import cli_process
from tests.postgres import terminate_lock_holders
from tests.support import (
    Target,
    change_account,
    cli_command,
    cli_env,
    mismatches,
    run_cli,
    sync,
    until,
)

KEY_HEX = "5f3c0a9e" * 8
KEY = bytes.fromhex(KEY_HEX)


def _follower(running: Any, target: Target, tmp_path: Path, **settings: str) -> subprocess.Popen:
    env = {f"SOURCES__CLOSE_SMS__{name.upper()}": value for name, value in settings.items()}
    return cli_process.popen(
        cli_command("follow", "--base-url", running.base_url, *target.cli_args),
        env=cli_env(running.api_key, **target.env, **env),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen, text: str, seconds: float = 120) -> list[str]:
    """The follower's stderr lines up to the first that holds `text`; fails after `seconds`
    (a follower that never says it would otherwise hang the test)."""
    if not hasattr(process, "lines"):
        # Read by a thread, so that a wait can end: a pipe's readline cannot time out.
        process.lines = queue.Queue()

        def pump() -> None:
            for line in process.stderr:
                process.lines.put(line)
            process.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while True:
        try:
            line = process.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no {text!r} within {seconds} s: {''.join(lines)}")
        if line is None:
            pytest.fail(f"the follower ended before {text!r}: {''.join(lines)}")
        lines.append(line)
        if text in line:
            return lines


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, float, str]:
    began = time.monotonic()
    process.send_signal(sig)
    if not hasattr(process, "lines"):
        _, err = process.communicate(timeout=30)
    else:  # the pump thread reads stderr: what it has not handed over yet is the rest
        process.wait(timeout=30)
        rest = iter(lambda: process.lines.get(timeout=10), None)
        err = "".join(rest)
    return process.returncode, time.monotonic() - began, err


def test_a_postgres_follower_whose_lock_session_ends_stops_with_exit_6(
    emulator, postgres, monkeypatch, tmp_path
):
    assert retried(LockLost("lost")) is False
    env = {"DESTINATION__POSTGRES__CREDENTIALS": postgres, "XDG_STATE_HOME": str(tmp_path / "s")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    target = Target("postgres", Warehouse.configure("postgres"), ("--destination", "postgres"), env)
    running = emulator(sms=100, seed=62)
    follower = _follower(running, target, tmp_path, follow_interval="0.5")
    try:
        _read_until(follower, "Cycle (backfill")
        assert terminate_lock_holders(postgres) == 1
        # Skipped cycles write nothing and check nothing; the next that would write checks.
        change_account(running.emu)
        follower.wait(timeout=60)
    finally:
        status, _, err = _stop(follower)
    assert status == 6, err
    assert "writer lock" in err and "was lost" in err
    assert "Traceback" not in err


def test_follow_keeps_the_warehouse_current_holds_the_lock_and_stops_on_sigterm(
    emulator, target, tmp_path
):
    running = emulator(sms=300, seed=61)
    listed = len(running.emu.snapshot())
    follower = _follower(running, target, tmp_path, follow_interval="0.5")
    try:
        _read_until(follower, "Cycle (backfill")
        cycles, probes = _cycles(running), _probes(running)
        time.sleep(3)  # a quiet spell: a probe every half second, no cycle
        assert _cycles(running) == cycles and _probes(running) - probes >= 4
        # A cron sync beside it is an overlap, exit 5, while the follower goes on.
        beside = run_cli(
            "sync",
            "--base-url",
            running.base_url,
            *target.cli_args,
            api_key=running.api_key,
            cwd=tmp_path,
            **target.env,
        )
        assert beside.returncode == 5, beside.stderr
        # The probe sees the change and a cycle brings it in, though no webhook rang: well
        # before the full cycle a minute after the last one.
        change_account(running.emu)
        snapshot = running.emu.snapshot()
        until(lambda: _matches(target, snapshot), 30)
        # The cycle that wrote the change writes its row, and the refused sync's from the journal.
        until(lambda: "locked" in _outcomes(target), 30)
    finally:
        status, seconds, err = _stop(follower)
    assert status == 143, err
    assert seconds < 10 and "interrupted by SIGTERM" in err
    # The backfill, the refused sync and the cycles that wrote have rows of their own; the
    # skipped cycles none (quiet cycles that ran are summed: see the ledger test below).
    rows = target.query(
        f"SELECT outcome, sms_upserted FROM close_sms.{LEDGER_TABLE} ORDER BY started_at"
    )
    assert [row[0] for row in rows].count("locked") == 1
    assert rows[0][1] == listed and sum(row[1] for row in rows[1:]) > 0, rows


def _outcomes(target: Target) -> list[str]:
    try:
        return [row[0] for row in target.query(f"SELECT outcome FROM close_sms.{LEDGER_TABLE}")]
    except Exception:  # the follower holds the file
        return []


def _matches(target: Target, snapshot: dict[str, Any]) -> bool:
    """Whether the warehouse holds `snapshot`; a cycle's tables commit one by one, so a read
    amid a load may see an attachment before its SMS."""
    try:
        return mismatches(target, snapshot) == []
    except KeyError:
        return False


def _cycles(running: Any) -> int:
    """The follower's cycles so far: each asks the event log for created SMS once (one page)."""
    return sum(
        1
        for record in running.emu.request_log
        if record.path.endswith("/event/")
        and record.params.get("object_type") == "activity.sms"
        and record.params.get("action") == "created"
    )


def _probes(running: Any) -> int:
    """The follower's quiet probes so far: the event log asked without a filter."""
    return sum(
        1
        for record in running.emu.request_log
        if record.path.endswith("/event/") and "object_type" not in record.params
    )


def test_a_follower_killed_mid_cycle_resumes_exactly_on_restart(emulator, target, tmp_path):
    running = emulator(sms=800, seed=62, latency_ms=10)
    settings = {"follow_interval": "0.5", "backfill_chunk_size": "100"}
    victim = _follower(running, target, tmp_path, **settings)
    _read_until(victim, "chunk 2 loaded")
    victim.kill()
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    change_account(running.emu)
    again = _follower(running, target, tmp_path, **settings)
    try:
        until(lambda: _matches(target, running.emu.snapshot()), 90)
    finally:
        status, _, err = _stop(again, signal.SIGINT)
    assert status == 130, err


def test_a_follower_whose_cycles_fail_goes_on_and_still_stops_on_sigterm(emulator, tmp_path):
    running = emulator(sms=100, seed=64)
    target = Target.duckdb(tmp_path / "warehouse.duckdb")
    follower = _follower(running, target, tmp_path, follow_interval="0.2", max_retries="1")
    try:
        _read_until(follower, "Cycle (backfill")
        # A change, which the probe sees, and the SMS list fails: two cycles fail (a try and a
        # retry each), and the follower goes on.
        running.emu.faults.add("503", times=4, path_prefix="/api/v1/activity/sms/")
        change_account(running.emu)
        said = "".join(_read_until(follower, "Cycle failed"))
        assert "503" in said and "next in" in said
        _read_until(follower, "Cycle failed")
        snapshot = running.emu.snapshot()
        until(lambda: _matches(target, snapshot), 30)
    finally:
        status, seconds, err = _stop(follower)
    # A failed cycle stops listening for SIGTERM while it is recorded; the follower listens again.
    assert status == 143 and seconds < 10, err


# ---- the doorbell ---------------------------------------------------------------------------


def _deliver(
    url: str,
    body: bytes = b'{"event": {"object_type": "activity.sms"}}',
    timestamp: int | None = None,
    key: bytes = KEY,
    session: requests.Session | None = None,
) -> int:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"close-sig-hash": signature(key, stamp, body), "close-sig-timestamp": stamp}
    return (session or requests).post(url, data=body, headers=headers, timeout=10).status_code


@pytest.fixture
def doorbell():
    bell = Doorbell("127.0.0.1:0", KEY).start()
    yield bell
    bell.stop()


def test_a_delivery_rings_only_when_it_verifies(doorbell):
    url = doorbell.url
    now = int(time.time())
    assert _deliver(url, key=b"another key") == 401
    assert requests.post(url, data=b"{}", timeout=10).status_code == 401  # no signature
    assert _deliver(url, timestamp=now - 400) == 400
    assert _deliver(url, timestamp=now + 400) == 400
    assert _deliver(url, body=b"not json") == 400
    assert _deliver(url, body=b"{" + b" " * 1_000_000 + b"}") == 400
    assert _deliver(url.replace("/webhooks/close", "/other")) == 404
    assert doorbell.wait(0.2) is False  # none of those rang
    assert _deliver(url, timestamp=now - 240) == 200
    assert doorbell.wait(1) is True
    assert doorbell.wait(0.1) is False  # one ring, then quiet
    assert (doorbell.accepted, doorbell.refused) == (1, 7)


def test_a_thousand_deliveries_ring_as_one(doorbell):
    url = doorbell.url
    with ThreadPoolExecutor(16) as pool, requests.Session() as session:
        statuses = list(pool.map(lambda _: _deliver(url, session=session), range(1000)))
    assert statuses == [200] * 1000
    assert doorbell.wait(1) is True and doorbell.wait(0.1) is False


def test_the_doorbell_starts_a_cycle_at_once_and_a_burst_starts_at_most_one_a_second(
    emulator, tmp_path
):
    running = emulator(sms=200, seed=63)
    target = Target.duckdb(tmp_path / "warehouse.duckdb")
    # A minute between cycles: only the doorbell can make one come sooner.
    follower = _follower(
        running,
        target,
        tmp_path,
        follow_interval="60",
        webhook_listen="127.0.0.1:0",
        webhook_signature_key=KEY_HEX,
    )
    try:
        (url,) = [
            line.split("webhooks at ")[1].strip()
            for line in _read_until(follower, "Cycle (")
            if "webhooks at " in line
        ]
        change_account(running.emu)
        snapshot = running.emu.snapshot()
        assert _deliver(url) == 200
        assert until(lambda: _matches(target, snapshot), 10) < 10
        time.sleep(1.5)
        before, began = _cycles(running), time.monotonic()
        with ThreadPoolExecutor(16) as pool, requests.Session() as session:
            statuses = list(pool.map(lambda _: _deliver(url, session=session), range(1000)))
        time.sleep(2)
        elapsed = time.monotonic() - began
        assert statuses == [200] * 1000
        assert 1 <= _cycles(running) - before <= elapsed + 1
    finally:
        status, _, err = _stop(follower)
    assert status == 143, err


def _to_another_thread(pid: int, sig: int) -> None:
    """Send `sig` to a thread of `pid` other than its main one, as the kernel may deliver a
    signal sent to the process (tgkill(2), through the C library)."""
    tids = sorted(int(task) for task in os.listdir(f"/proc/{pid}/task") if int(task) != pid)
    assert tids, "the follower has no other thread"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(pid, tids[0], sig) == 0, os.strerror(ctypes.get_errno())


def test_a_sigterm_another_thread_receives_stops_a_follower_waiting_a_minute(emulator, tmp_path):
    """Python handles signals in the main thread; one the kernel gave another thread was heard
    only when the main thread's wait ended (a follow_interval of a minute)."""
    running = emulator(sms=50, seed=67)
    follower = _follower(
        running,
        Target.duckdb(tmp_path / "w.duckdb"),
        tmp_path,
        follow_interval="60",
        webhook_listen="127.0.0.1:0",
        webhook_signature_key=KEY_HEX,
    )
    try:
        _read_until(follower, "Cycle (backfill")
        time.sleep(1)  # into the wait for the next cycle or a ring
        _to_another_thread(follower.pid, signal.SIGTERM)
        follower.wait(timeout=20)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 143


def test_a_listener_without_its_key_or_on_a_bad_address_is_a_setting_error(emulator, tmp_path):
    running = emulator(sms=0)
    database = ("--database", str(tmp_path / "w.duckdb"))
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    for settings, said in (
        (
            {
                "SOURCES__CLOSE_SMS__WEBHOOK_LISTEN": f"127.0.0.1:{port}",
                "SOURCES__CLOSE_SMS__WEBHOOK_SIGNATURE_KEY": KEY_HEX,
            },
            f"cannot listen on webhook_listen = '127.0.0.1:{port}'",
        ),
        ({"SOURCES__CLOSE_SMS__WEBHOOK_LISTEN": "8787"}, "needs webhook_signature_key"),
        (
            {
                "SOURCES__CLOSE_SMS__WEBHOOK_LISTEN": "127.0.0.1:http",
                "SOURCES__CLOSE_SMS__WEBHOOK_SIGNATURE_KEY": KEY_HEX,
            },
            "is not host:port",
        ),
        (
            {
                "SOURCES__CLOSE_SMS__WEBHOOK_LISTEN": "8787",
                "SOURCES__CLOSE_SMS__WEBHOOK_SIGNATURE_KEY": "not hex",
            },
            "is not the hex key",
        ),
    ):
        done = run_cli(
            "follow",
            "--base-url",
            running.base_url,
            *database,
            api_key=running.api_key,
            cwd=tmp_path,
            timeout=60,
            **settings,
        )
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and KEY_HEX not in done.stderr
    taken.close()


# ---- the follower's ledger and its failures ------------------------------------------------


def _run(started: datetime, seconds: float, outcome: Outcome = Outcome.SUCCESS) -> SyncRun:
    return SyncRun(
        run_id=f"run-{started.timestamp()}",
        started_at=started,
        ended_at=started + timedelta(seconds=seconds),
        mode=None,
        outcome=outcome,
        exit_status=0 if outcome is Outcome.SUCCESS else 4,
        requests=3,
        events_read=1,
        feed_checked_at=started,
    )


def test_quiet_cycles_are_one_ledger_row_an_hour_and_a_change_is_its_own(tmp_path, monkeypatch):
    warehouse = Warehouse.configure(database=tmp_path / "w.duckdb")
    written: list[tuple[SyncRun, bool]] = []
    # What reaches the ledger (recording it is tests/warehouse/test_ledger.py's).
    monkeypatch.setattr(
        follow_module, "record_each_run", lambda _, run, wrote: written.append((run, wrote))
    )
    quiet = QuietCycles()
    start = datetime(2026, 12, 7, tzinfo=timezone.utc)
    for n in range(400):  # every 10 s for 4,000 s
        quiet.record(warehouse, _run(start + timedelta(seconds=10 * n), 1), wrote=False)
    quiet.record(warehouse, _run(start + timedelta(seconds=4000), 1), wrote=True)
    hour, rest, change = (run for run, _ in written)
    assert hour.ended_at - hour.started_at >= timedelta(hours=1) and hour.requests == 3 * 361
    assert rest.started_at == start + timedelta(seconds=3610) and rest.requests == 3 * 39
    assert change.started_at == start + timedelta(seconds=4000) and written[-1][1] is True
    # Each quiet cycle was noted as the last success, so `status` shows a cycle's lag.
    noted = json.loads((warehouse.working_dir / f"{LEDGER_TABLE}.last_success.json").read_text())
    assert noted["started_at"].startswith("2026-12-07T01:06:30")


@pytest.mark.parametrize(
    ("failure", "again"),
    [
        (UnreachableError("Close is down"), True),
        (DatabaseError("the server went away"), True),
        (ConfigError("bad setting"), False),
        (MassDeleteRefused("too many"), False),
        (RuntimeError("a bug"), False),
    ],
)
def test_only_close_or_the_destination_away_is_tried_again(failure, again):
    assert retried(failure) is again


def test_the_doorbell_thread_is_gone_when_it_stops():
    bell = Doorbell("127.0.0.1:0", KEY).start()
    bell.stop()
    assert not [t for t in threading.enumerate() if t.name == "close-sms-doorbell"]


def test_hostile_deliveries_are_refused_without_a_trace(doorbell, capfd):
    url, stamp = doorbell.url, str(int(time.time()))
    nested = b"[" * 100_000 + b"]" * 100_000
    hostile = [
        ({"close-sig-hash": "é" * 64, "close-sig-timestamp": stamp}, b"{}", 401),
        (
            {"close-sig-hash": signature(KEY, stamp, nested), "close-sig-timestamp": stamp},
            nested,
            400,
        ),
        (
            {
                "close-sig-hash": signature(KEY, "9" * 5000, b"{}"),
                "close-sig-timestamp": "9" * 5000,
            },
            b"{}",
            400,
        ),
    ]
    for headers, body, status in hostile:
        encoded = {name: value.encode("latin-1", "replace") for name, value in headers.items()}
        assert requests.post(url, data=body, headers=encoded, timeout=10).status_code == status
    # A client that hangs up before the length it announced: what came is not signed.
    host, port = doorbell.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(b"POST /webhooks/close HTTP/1.1\r\nContent-Length: 100\r\n\r\n{}")
        client.shutdown(socket.SHUT_WR)
        assert client.recv(100).startswith(b"HTTP/1.0 401")
    assert doorbell.wait(0.1) is False
    assert "Traceback" not in capfd.readouterr().err


def test_the_probe_skips_only_while_the_event_log_is_quiet_and_a_full_cycle_is_recent(
    emulator, tmp_path
):
    running = emulator(sms=60, seed=64)
    database = tmp_path / "w.duckdb"
    report = sync(running, database)
    said: list[str] = []
    probe = QuietProbe(CloseClient(running.base_url, running.api_key), said.append, 1.0)
    assert not probe.quiet()  # no cycle yet: nothing to compare with
    probe.cycle_ran(report)
    assert probe.quiet() and probe.quiet()
    change_account(running.emu)
    assert not probe.quiet()  # something was logged since the cycle's read
    probe.cycle_ran(sync(running, database))
    assert probe.quiet()
    probe.cycle_failed()
    assert not probe.quiet()  # after a failure, the next cycle is full
    probe.cycle_ran(sync(running, database))
    time.sleep(1.05)
    assert not probe.quiet()  # a full cycle at least every full_every seconds
    assert said == []


def test_a_probe_close_does_not_filter_or_refuses_never_skips_a_cycle(emulator, tmp_path):
    """An older event in the answer means the date filter was not applied: not proof of quiet."""
    ignoring = emulator(sms=60, seed=65, ignored_event_filters=("date_updated__gte",))
    change_account(ignoring.emu)  # an event, older than the probe asks for
    report = sync(ignoring, tmp_path / "a.duckdb")
    client = CloseClient(ignoring.base_url, ignoring.api_key)
    probe = QuietProbe(client, lambda message: None)
    probe.cycle_ran(report)
    assert any_event_since(client, datetime.now(timezone.utc) + timedelta(days=1))
    assert not probe.quiet()

    running = emulator(sms=60, seed=66)
    report = sync(running, tmp_path / "b.duckdb")
    said: list[str] = []
    probe = QuietProbe(CloseClient(running.base_url, running.api_key), said.append)
    probe.cycle_ran(report)
    running.emu.faults.add("400", times=1, path_prefix="/event/")
    assert not probe.quiet()
    assert not probe.quiet() and not probe.quiet()  # refused once: never asked again
    assert len(said) == 1 and "quiet probe refused" in said[0]
    assert _probes(running) == 1
