"""The forked CLI runs of `tests/cli_process.py` behave as fresh processes would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests import cli_process
from tests.support import cli_command, cli_env


def test_each_run_has_its_own_environment_folder_and_streams(tmp_path):
    config = tmp_path / ".dlt" / "config.toml"
    config.parent.mkdir()
    config.write_text("[sources.close_sms]\nbase_url = 'http://127.0.0.1:9/api/v1'\n")

    # The key in the environment of one run only; the project folder of one run only.
    first = cli_process.run(
        cli_command("sync", "--database", str(tmp_path / "a.duckdb")),
        env=cli_env("api_one", SOURCES__CLOSE_SMS__MAX_RETRIES="1"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    second = cli_process.run(
        cli_command("sync", "--database", str(tmp_path / "b.duckdb")),
        env=cli_env(None),
        capture_output=True,
        text=True,
        timeout=120,
    )

    # The first read its folder's config.toml (port 9 refuses); the second had neither.
    assert first.returncode == 4, first.stderr
    assert "127.0.0.1:9" in first.stderr
    assert second.returncode == 2, second.stderr
    assert "api_key" in second.stderr
    assert first.stdout == second.stdout == ""


def test_a_run_can_be_killed_and_its_status_is_the_signal(emulator, tmp_path):
    running = emulator(sms=500, latency_ms=500)
    process = cli_process.popen(
        cli_command("sync", "--base-url", running.base_url, "--database", str(tmp_path / "w.db")),
        env=cli_env(running.api_key),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert isinstance(process, cli_process.CliPopen)
    assert process.pid != os.getpid()
    time.sleep(0.5)
    assert process.poll() is None
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


def test_other_commands_start_real_interpreters():
    process = cli_process.popen(
        [sys.executable, "-c", "print('plain')"], stdout=subprocess.PIPE, text=True
    )
    assert not isinstance(process, cli_process.CliPopen)
    assert process.communicate(timeout=60)[0] == "plain\n"
