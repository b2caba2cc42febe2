"""A sync reaches Close's API and its destination, and no other host: dlt's telemetry is off
before dlt is first imported, whatever folder cron starts the command in."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

from tests.support import cli_env

# Runs `close-sms ARGS` with every name look-up and connection of the process recorded.
PROBE = """
import atexit, json, socket, sys

out, args = sys.argv[1], sys.argv[2:]
hosts = []
look_up, connect = socket.getaddrinfo, socket.socket.connect

def recorded_look_up(host, *rest, **named):
    hosts.append(str(host))
    return look_up(host, *rest, **named)

def recorded_connect(self, address):
    hosts.append(str(address[0]) if isinstance(address, tuple) else str(address))
    return connect(self, address)

socket.getaddrinfo, socket.socket.connect = recorded_look_up, recorded_connect
atexit.register(lambda: open(out, "w").write(json.dumps(hosts)))
from close_sms.app.cli import main
sys.exit(main(args))
"""


def _hosts_reached(tmp_path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, set]:
    record = tmp_path / "hosts.json"
    environment = cli_env(None, **env)
    # What the command does by itself: no telemetry setting inherited from the test run.
    environment.pop("RUNTIME__DLTHUB_TELEMETRY", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(record), *args],
        env=environment,
        cwd=tmp_path,  # no .dlt/ here, as in cron's $HOME
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, set(json.loads(record.read_text()))


def test_a_sync_reaches_only_the_api_and_the_destination(emulator, target, tmp_path):
    running = emulator(sms=200, seed=91)
    api_host = urlsplit(running.base_url).hostname
    args = ("sync", "--quiet", "--base-url", running.base_url, *target.cli_args)
    env = {"SOURCES__CLOSE_SMS__API_KEY": running.api_key, **target.env}

    first, first_hosts = _hosts_reached(tmp_path, *args, **env)
    again, again_hosts = _hosts_reached(tmp_path, *args, **env)

    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    destination = urlsplit(target.env.get("DESTINATION__POSTGRES__CREDENTIALS", "")).hostname
    allowed = {api_host, destination} - {None}
    assert first_hosts and first_hosts <= allowed, first_hosts
    assert again_hosts <= allowed, again_hosts
