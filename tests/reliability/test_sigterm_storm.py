"""SIGTERM at random moments of backfills and incremental runs, many times over.

Every stopped run exits 143 within `STOP_SECONDS` of the signal and is in the ledger as
interrupted; the run after the last stop leaves the warehouse equal to Close.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from close_sms.warehouse.ledger import JOURNAL, SyncRun, latest_runs
from tests import cli_process
from tests.support import Target, change_account, cli_command, cli_env, mismatches

# What the command promises a job scheduler: gone this soon after SIGTERM.
STOP_SECONDS = 10.0
# Small chunks, so that a stop can fall in any step of any chunk.
CHUNKS = {"SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE": "150"}
BACKFILL, INCREMENTAL = "backfill", "incremental"
# When SIGTERM comes, in seconds after the run took the writer lock: backfills run longer than
# the incremental runs of a few changes.
BACKFILL_DELAYS = (0.0, 1.5)
INCREMENTAL_DELAYS = (0.0, 0.8)
POSTGRES_CREDENTIALS = "DESTINATION__POSTGRES__CREDENTIALS"


@dataclass
class Lane:
    """One account and one warehouse, stopped over and over by SIGTERM, then synced to the end."""

    running: Any
    target: Target
    logs: Path
    seed: int
    stops: dict[str, list[float]] = field(default_factory=lambda: {BACKFILL: [], INCREMENTAL: []})
    runs: int = 0
    # Forked from the CLI zygote (`tests/cli_process.py`) unless each run must start, and end,
    # as a fresh interpreter: through its imports and its whole shutdown.
    fresh_interpreters: bool = False

    def run(self, stops: int, backfill_stops: int) -> None:
        """Stop backfill runs until `backfill_stops` were stopped or a run completed the
        backfill, then incremental runs after changes in Close until `stops` were stopped; then
        sync to the end, and compare with Close."""
        chance = random.Random(self.seed)
        completed = False
        while not completed and len(self.stops[BACKFILL]) < backfill_stops:
            completed = not self.stop(BACKFILL, chance.uniform(*BACKFILL_DELAYS))
        if not completed:
            assert self.sync().returncode == 0
        while self.stopped < stops:
            change_account(self.running.emu)
            self.stop(INCREMENTAL, chance.uniform(*INCREMENTAL_DELAYS))
        final = self.sync()

        assert final.returncode == 0, final.stderr
        assert mismatches(self.target, self.running.emu.snapshot()) == []
        outcomes = self.target.query(
            "SELECT outcome, exit_status, count(*) FROM close_sms.sync_runs "
            "GROUP BY outcome, exit_status ORDER BY outcome"
        )
        assert [tuple(row) for row in outcomes] == [
            ("interrupted", 143, self.stopped),
            ("success", 0, self.runs - self.stopped),
        ]

    @property
    def stopped(self) -> int:
        return sum(len(times) for times in self.stops.values())

    def stop(self, phase: str, delay: float) -> bool:
        """One run, sent SIGTERM `delay` seconds after it took the writer lock; False if it had
        done its work by then."""
        self.runs += 1
        log = self.logs / f"run-{self.runs}.err"
        with log.open("w") as stderr:
            victim = self._popen(
                cli_command(*self._args()),
                env=self._env(),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            holds = self._lock_check(victim.pid)
            try:
                _wait_until(holds, victim)
                time.sleep(delay)
                sent_at = datetime.now(timezone.utc)
                status, took = _terminate(victim)
            finally:
                holds.close()
                if victim.poll() is None:
                    victim.kill()
        output = log.read_text()
        last = self._last_run()
        if last.outcome == "success" and last.ended_at <= sent_at:
            # Its work was done: it ends as it would have, or is stopped once it recorded itself.
            assert status in (0, 143, -signal.SIGTERM), output
            return False
        assert status == 143, f"exit {status} ({phase}, {delay:.2f} s in):\n{output}"
        assert took < STOP_SECONDS
        assert output.strip().splitlines()[-1] == "close-sms: interrupted by SIGTERM", output
        assert "Traceback" not in output, output
        assert (last.outcome, last.exit_status) == ("interrupted", 143), output
        self.stops[phase].append(took)
        return True

    def sync(self) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        run = subprocess.run if self.fresh_interpreters else cli_process.run
        return run(
            cli_command(*self._args()),
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def _popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen:
        return (subprocess.Popen if self.fresh_interpreters else cli_process.popen)(args, **kwargs)

    def _args(self) -> tuple[str, ...]:
        return ("sync", "--base-url", self.running.base_url, *self.target.cli_args)

    def _env(self) -> dict[str, str]:
        return cli_env(self.running.api_key, **CHUNKS, **self.target.env)

    def _last_run(self) -> SyncRun:
        warehouse = self.target.warehouse
        if warehouse.database is not None and not warehouse.database.exists():
            # Stopped before it made the file: its row waits in the journal.
            lines = (warehouse.working_dir / JOURNAL).read_text().splitlines()
            return SyncRun.from_row(json.loads(lines[-1]))
        with warehouse.sql_client(read_only=True) as sql:
            last, _ = latest_runs(warehouse, sql)
        assert last is not None
        return last

    def _lock_check(self, pid: int) -> _LockFileCheck | _AdvisoryLockCheck:
        if self.target.name == "postgres":
            return _AdvisoryLockCheck(self.target.env[POSTGRES_CREDENTIALS])
        return _LockFileCheck(pid, f"{self.target.warehouse.database}.lock")


def _wait_until(
    holds: _LockFileCheck | _AdvisoryLockCheck, process: subprocess.Popen[bytes]
) -> None:
    """Wait until `process` holds the warehouse's writer lock: its run is under way, and is in
    the ledger however it ends. Before that, it may still be starting Python."""
    deadline = time.monotonic() + 120
    while not holds():
        assert process.poll() is None, "the sync ended before it took the lock"
        assert time.monotonic() < deadline, "the sync never took the lock"
        time.sleep(0.01)


def _terminate(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM to `process` if it still runs: its exit status, and the seconds it took."""
    if process.poll() is not None:
        return process.returncode, 0.0
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        status = process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {STOP_SECONDS:g} s after SIGTERM") from None
    return status, time.monotonic() - sent


class _LockFileCheck:
    """Whether process `pid` holds the DuckDB writer lock: has the lock file open."""

    def __init__(self, pid: int, lock: str) -> None:
        self.fds = Path(f"/proc/{pid}/fd")
        self.lock = lock

    def __call__(self) -> bool:
        with suppress(FileNotFoundError):
            return any(os.readlink(fd) == self.lock for fd in self.fds.iterdir())
        return False

    def close(self) -> None:
        """Nothing to close."""


class _AdvisoryLockCheck:
    """Whether a session holds an advisory lock in the database (the sync's writer lock)."""

    def __init__(self, credentials: str) -> None:
        self.connection = psycopg2.connect(credentials)
        self.connection.autocommit = True

    def __call__(self) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return bool(cursor.fetchone()[0])

    def close(self) -> None:
        self.connection.close()


# Rounds of DuckDB statements through the warehouse's sql client, each until a SIGTERM comes at
# a random moment; what each round ended with, a line each. In a process of its own, so the
# test's process keeps its own signal handling.
SIGTERM_AMID_STATEMENTS = """
import _thread, random, signal, sys, threading
from close_sms.app.runner import dlt_errors
from close_sms.app.stopping import sigterm_interrupts
from close_sms.errors import Terminated
from close_sms.warehouse.destination import Warehouse

warehouse = Warehouse.configure(database=sys.argv[1])
chance = random.Random(int(sys.argv[2]))
for _ in range(int(sys.argv[3])):
    with sigterm_interrupts():
        try:
            signal_at = chance.uniform(0, 0.3)
            threading.Timer(signal_at, _thread.interrupt_main, (signal.SIGTERM,)).start()
            # Through dlt_errors, as every command's database work runs: a signal that lands
            # inside dlt's context injection comes out as dlt's ContainerInjectableContextMangled
            # chained from the Terminated, which a command reports as the interrupt. A signal
            # that DuckDB turns into "Query interrupted" has no Terminated behind it.
            with dlt_errors(warehouse):
                while True:
                    with warehouse.sql_client() as sql:
                        sql.execute_sql("SELECT count(DISTINCT range % 100003) FROM range(3000000)")
        except Terminated:
            print("Terminated", flush=True)
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", flush=True)
"""


def test_a_sigterm_amid_duckdb_statements_is_raised_as_terminated_once_they_end(tmp_path):
    # Raised inside a statement, it became DuckDB's "Query interrupted" in about one round of
    # four, and the run ended as a database failure (exit 6).
    rounds = 20
    result = _python(SIGTERM_AMID_STATEMENTS, str(tmp_path / "w.duckdb"), "7", str(rounds))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Terminated"] * rounds


# A SIGTERM that comes while the ledger is written, which ends just before the command does.
HELD_TO_THE_END = """
import _thread, signal, time
from close_sms.app.stopping import sigterm_held, sigterm_interrupts
from close_sms.errors import Terminated

try:
    with sigterm_interrupts():
        with sigterm_held():
            _thread.interrupt_main(signal.SIGTERM)
            time.sleep(0.2)
        print("held", flush=True)
except Terminated:
    print("Terminated", flush=True)
"""


def test_a_sigterm_that_waited_is_raised_even_when_the_command_ends_first():
    result = _python(HELD_TO_THE_END)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Terminated"


def _summary(lanes: list[Lane]) -> dict[str, tuple[int, float]]:
    """Stops per phase, with the longest time from SIGTERM to exit."""
    return {
        phase: (len(times), max(times, default=0.0))
        for phase in (BACKFILL, INCREMENTAL)
        for times in [[t for lane in lanes for t in lane.stops[phase]]]
    }


@pytest.mark.slow
def test_thirty_sigterms_at_random_moments_each_exit_143_and_the_warehouse_ends_equal(
    emulator, tmp_path
):
    lanes = []
    for number in range(4):
        running = emulator(sms=1200, seed=200 + number, latency_ms=15)
        logs = tmp_path / f"lane{number}"
        logs.mkdir()
        target = Target.duckdb(logs / "warehouse.duckdb")
        lanes.append(Lane(running, target, logs, seed=number))

    with ThreadPoolExecutor(len(lanes)) as pool:
        # 30 stops over the lanes, up to 4 of each in its backfill.
        runs = [pool.submit(lane.run, 8 - number // 2, 4) for number, lane in enumerate(lanes)]
        for done in runs:
            done.result()

    summary = _summary(lanes)
    assert summary[BACKFILL][0] + summary[INCREMENTAL][0] == 30, summary
    assert summary[BACKFILL][0] >= 6, summary


@pytest.mark.slow
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
def test_sigterms_at_random_moments_on_postgres_each_exit_143(emulator, target, tmp_path):
    lane = Lane(
        emulator(sms=1200, seed=210, latency_ms=15),
        target,
        tmp_path,
        seed=10,
        fresh_interpreters=True,
    )

    lane.run(6, 3)

    assert _summary([lane])[BACKFILL][0] >= 2, _summary([lane])


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter, so that the test's process keeps its own signals."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=cli_env(None),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
