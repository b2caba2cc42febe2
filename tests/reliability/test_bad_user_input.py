"""Bad input from the user: a clear one-line message, a non-zero exit, the database unchanged.

Covered elsewhere and not repeated: a corrupt DuckDB file (tests/app/test_cli.py
`test_corrupt_database_exits_6_and_is_left_alone`, bytes unchanged) and a file named like the
dataset.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from close_sms.app.config import CommandSettings
from close_sms.errors import ConfigError
from close_sms.source.api.client import ClientConfig, CloseClient
from close_sms.warehouse.destination import Warehouse
from tests import cli_process
from tests.reliability.helpers import file_digest, fingerprint, one_line_error, sync_cli
from tests.support import cli_command, cli_env, mismatches, sync


@pytest.fixture(scope="module")
def synced_once(module_emulator, tmp_path_factory):
    """An emulator and a folder with a database synced from it, once for the module (in this
    process: the CLI's own runs are the tests'). No test changes the emulator."""
    running = module_emulator(sms=200, seed=61)
    folder = tmp_path_factory.mktemp("synced")
    sync(running, folder / "w.duckdb")
    return running, folder


@pytest.fixture
def synced(synced_once, tmp_path):
    """The emulator, and a copy of the synced folder (the database, its reader copy and dlt's
    working folder) that the test may break."""
    running, folder = synced_once
    copy = tmp_path / "synced"
    shutil.copytree(folder, copy)
    return running, copy / "w.duckdb"


def _unchanged(database: Path, before: tuple[str, dict]) -> None:
    digest, tables = before
    assert fingerprint(database) == tables
    assert file_digest(database) == digest


@pytest.mark.parametrize(
    ("key", "code", "says"),
    [
        (None, 2, "SOURCES__CLOSE_SMS__API_KEY"),
        ("", 2, "SOURCES__CLOSE_SMS__API_KEY"),
        ("api_not_a_real_key_0000000000000", 3, "rejected the API key"),
    ],
)
def test_missing_or_invalid_key(synced, key, code, says):
    running, database = synced
    before = (file_digest(database), fingerprint(database))
    result = cli_process.run(
        cli_command("sync", "--base-url", running.base_url, "--database", str(database)),
        env=cli_env(None, **({} if key is None else {"SOURCES__CLOSE_SMS__API_KEY": key})),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == code
    assert says in one_line_error(result.stderr)
    if key:
        assert key not in result.stderr + result.stdout
    _unchanged(database, before)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:9/api/v1", "--base-url"),
        ("EMULATOR/api/v2", "--base-url"),
        ("EMULATOR", "--base-url"),
        ("not a url", "--base-url"),
        ("http://host with spaces/api/v1", "--base-url"),
        ("ftp://127.0.0.1/api/v1", "--base-url"),
    ],
)
def test_wrong_base_url(synced, url, says):
    running, database = synced
    before = (file_digest(database), fingerprint(database))
    base = running.base_url.removesuffix("/api/v1")
    result = sync_cli(
        running,
        database,
        "--base-url",
        url.replace("EMULATOR", base),
        SOURCES__CLOSE_SMS__MAX_RETRIES="1",
    )
    # An unreachable host may be a network outage (4, retried by cron); the rest is config (2).
    assert result.returncode == (4 if ":9/" in url else 2), result.stderr
    assert says in one_line_error(result.stderr)
    _unchanged(database, before)


def test_an_https_url_for_a_plain_http_server_fails_within_10_s_saying_http(synced):
    running, database = synced
    before = (file_digest(database), fingerprint(database))
    url = running.base_url.replace("http://", "https://")
    began = time.monotonic()
    # Every retry the settings allow: the scheme is told on the first failure, not the last.
    result = sync_cli(running, database, "--base-url", url)
    assert time.monotonic() - began < 10, result.stderr
    assert result.returncode == 2, result.stderr
    error = one_line_error(result.stderr)
    assert "speaks plain HTTP" in error and running.base_url in error and "--base-url" in error
    _unchanged(database, before)


def test_an_http_url_for_a_tls_server_is_told_to_use_https(tmp_path):
    # A TLS server with a certificate made here: no certificate is checked by the probe.
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-keyout", str(tmp_path / "key.pem")]
        + ["-out", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/v1"
        client = CloseClient(url, "api_key", ClientConfig(backoff_max=0.01))
        began = time.monotonic()
        with pytest.raises(ConfigError) as raised:
            client.check_keys()
        assert time.monotonic() - began < 10
    finally:
        server.shutdown()
        server.server_close()
    message = str(raised.value)
    assert "speaks HTTPS (TLS)" in message
    assert f"https://127.0.0.1:{server.server_port}/api/v1" in message
    assert "api_key" not in message.replace("SOURCES__CLOSE_SMS__BASE_URL", "")


def test_database_in_a_missing_folder(emulator, tmp_path):
    running = emulator(sms=20, seed=62)
    database = tmp_path / "nowhere" / "w.duckdb"
    result = sync_cli(running, database)
    assert result.returncode == 2
    assert "does not exist" in one_line_error(result.stderr)
    assert not (tmp_path / "nowhere").exists()


def _as_unprivileged(command: list[str]) -> list[str]:
    # We run as root, which writes anywhere: drop every capability (CAP_DAC_OVERRIDE among
    # them), so a folder's mode bits apply to the CLI as they would to a cron user.
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only for root")
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *command]


@pytest.mark.parametrize("existing", [False, True])
def test_database_in_a_read_only_folder(synced, tmp_path, existing):
    running, synced_database = synced
    folder = tmp_path / "readonly"
    folder.mkdir()
    database = folder / "w.duckdb"
    if existing:
        shutil.copy(synced_database, database)
        before = (file_digest(database), fingerprint(database))
    folder.chmod(0o555)
    try:
        result = subprocess.run(
            _as_unprivileged(
                cli_command("sync", "--base-url", running.base_url, "--database", str(database))
            ),
            env=cli_env(running.api_key),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        folder.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert "not writable" in one_line_error(result.stderr)
    assert sorted(p.name for p in folder.iterdir()) == (["w.duckdb"] if existing else [])
    assert not Warehouse.configure(database=database).working_dir.exists()
    if existing:
        _unchanged(database, before)


def test_start_date_in_the_future(synced):
    running, database = synced
    before = (file_digest(database), fingerprint(database))
    future = (running.emu.clock.now() + timedelta(days=3)).date().isoformat()
    result = sync_cli(running, database, "--start-date", future, "--full-refresh")
    assert result.returncode == 2
    assert "in the future" in one_line_error(result.stderr)
    _unchanged(database, before)
    assert mismatches(database, running.emu.snapshot()) == []


def test_start_date_not_a_date(synced):
    running, database = synced
    before = (file_digest(database), fingerprint(database))
    result = sync_cli(running, database, "--start-date", "yesterday-ish")
    assert result.returncode == 2
    assert "not a date" in result.stderr
    assert "Traceback" not in result.stderr
    _unchanged(database, before)


def test_a_count_that_is_not_a_whole_number_stops_the_cli_with_exit_2(synced):
    running, database = synced
    before = (file_digest(database), fingerprint(database))
    result = sync_cli(running, database, SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE="1.9")
    assert result.returncode == 2, result.stderr
    assert "setting backfill_chunk_size = " in one_line_error(result.stderr)
    assert "is not a positive whole number" in one_line_error(result.stderr)
    _unchanged(database, before)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("backfill_chunk_size", "is not a positive whole number"),
        # The source's own settings are typed: dlt refuses them first.
        ("backfill_workers", "is not a valid int"),
        ("max_retries", "is not a valid int"),
    ],
)
@pytest.mark.parametrize("value", ["1.9", "0.5", "inf"])
def test_a_count_that_is_not_a_whole_number(synced, monkeypatch, name, says, value):
    # The command's path in-process; its exit status and output are the test above.
    running, database = synced
    before = (file_digest(database), fingerprint(database))
    monkeypatch.setenv(f"SOURCES__CLOSE_SMS__{name.upper()}", value)
    with pytest.raises(ConfigError) as raised:
        CommandSettings.read()
        sync(running, database)
    message = str(raised.value)
    assert message.startswith(f"setting {name} = ") and says in message
    assert "\n" not in message
    _unchanged(database, before)


@pytest.mark.parametrize("name", ["max_sms", "max_skip", "backfill_workers", "prefetch_sms"])
def test_the_source_called_from_python_refuses_a_count_that_is_not_whole(name):
    from close_sms import close_sms_source
    from close_sms.errors import ConfigError

    with pytest.raises(ConfigError, match=f"{name} = 1.5 is not a positive whole number"):
        close_sms_source(api_key="api_some_key", **{name: 1.5})
