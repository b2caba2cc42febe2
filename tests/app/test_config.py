"""The command's own settings, the bare install without the [cli] extra, and reprs without secrets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from close_sms.app.alerts import Alerts
from close_sms.app.config import CommandSettings, unreadable_config_file
from close_sms.app.runner import SyncOptions
from close_sms.errors import ConfigError, exception_chain
from close_sms.warehouse.destination import Warehouse
from tests.support import cli_env

TOKEN = "T0KENsecretHOOK7d1e"
KEY = "api_ZZreprSECRETkey4b2a"


def _python(code: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, as a cron job or a bare install would start."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=cli_env(None, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_source_warehouse_and_sync_import_nothing_of_the_cli_extra():
    result = _python(
        """
        import sys
        import close_sms
        from close_sms import close_sms_source
        import close_sms.warehouse.destination, close_sms.warehouse.ledger
        import close_sms.warehouse.lock, close_sms.warehouse.reader_copy
        import close_sms.app.report, close_sms.warehouse.status, close_sms.warehouse.views
        import close_sms.app.cli, close_sms.app.runner
        print(sorted({"waitress", "werkzeug", "plotly", "rich"} & set(sys.modules)))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("command", "missing"), [("demo", "werkzeug"), ("demo", "close_api_emulator")]
)
def test_a_command_without_the_cli_extra_says_how_to_install_it(tmp_path, command, missing):
    # None in sys.modules makes the import fail as if the package were not installed.
    result = _python(
        f"""
        import sys
        sys.modules[{missing!r}] = None
        from close_sms.app.cli import main
        sys.exit(main([{command!r}]))
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"close-sms: error: close-sms {command} needs {missing}, which is not installed: "
        "pip install 'close-sms[cli]'"
    )


def test_the_report_without_plotly_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    warehouse = Warehouse.configure(database=tmp_path / "w.duckdb")
    with (
        warehouse.sql_client() as sql,
        pytest.raises(ConfigError, match=r"pip install 'close-sms\[cli\]'"),
    ):
        from close_sms.app.report import write_report

        write_report(sql, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_a_dlt_command_leaves_the_environment_alone(tmp_path):
    result = _python(
        f"""
        import os, sys
        before = dict(os.environ)
        from close_sms.app.cli import main
        status = main(["views", "--database", {str(tmp_path / "w.duckdb")!r}])
        changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
        print(status, changed)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 []"


def test_defaults_and_settings_from_the_environment(monkeypatch):
    assert CommandSettings.read().alerts() is None
    monkeypatch.setenv("SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE", "400")
    monkeypatch.setenv("SOURCES__CLOSE_SMS__LOCK_WAIT", "0")
    monkeypatch.setenv("SOURCES__CLOSE_SMS__NOTIFY_URL", f"https://hooks.example/{TOKEN}")
    monkeypatch.setenv("SOURCES__CLOSE_SMS__MAX_LAG", "30m")

    settings = CommandSettings.read()

    assert (settings.backfill_chunk_size, settings.lock_wait) == (400, 0.0)
    assert settings.alerts() == Alerts(f"https://hooks.example/{TOKEN}", 1800.0)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("lock_wait", "-1", "setting lock_wait = -1.0 is not a number >= 0"),
        (
            "progress_interval",
            "soon",
            "setting progress_interval = 'soon' is not a positive number",
        ),
        ("backfill_chunk_size", "1e3", "setting backfill_chunk_size = '1e3' is not a valid int"),
        ("max_lag", "soon", "setting max_lag: 'soon' is not a duration"),
        ("notify_url", f"hooks.example/{TOKEN}", "setting notify_url is not an http(s) URL"),
    ],
)
def test_a_bad_setting_is_one_line_naming_where_to_set_it(monkeypatch, name, value, says):
    monkeypatch.setenv(f"SOURCES__CLOSE_SMS__{name.upper()}", value)
    with pytest.raises(ConfigError) as raised:
        CommandSettings.read()
    message = str(raised.value)
    assert message.startswith(says) and f"SOURCES__CLOSE_SMS__{name.upper()}" in message
    assert "\n" not in message and TOKEN not in message


def test_a_notify_url_in_config_toml_is_still_honoured(tmp_path):
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        f'[sources.close_sms]\nnotify_url = "https://hooks.example/{TOKEN}"\nmax_lag = "2h"\n'
    )
    result = _python(
        """
        from close_sms.app.config import CommandSettings
        alerts = CommandSettings.read().alerts()
        print(alerts.notify_url.endswith("/T0KENsecretHOOK7d1e"), alerts.max_lag_seconds)
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True 7200.0"


def test_objects_holding_a_key_or_a_webhook_do_not_show_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCES__CLOSE_SMS__NOTIFY_URL", f"https://hooks.example/{TOKEN}")
    settings = CommandSettings.read()
    alerts = settings.alerts()
    options = SyncOptions(
        warehouse=Warehouse.configure(database=tmp_path / "w.duckdb"),
        source_args={"api_key": KEY, "hash_key": KEY},
        alerts=alerts,
    )
    shown = " ".join(repr(thing) + str(thing) for thing in (settings, alerts, options))
    assert TOKEN not in shown and KEY not in shown
    assert "max_lag_seconds=None" in repr(alerts) and "full_refresh=False" in repr(options)


def test_a_cause_chain_that_loops_is_walked_once():
    # An exception raised again in its own handler makes a loop; walking it hung every run
    # whose failure was not a config file's.
    first, second = ValueError("first"), RuntimeError("second")
    first.__context__, second.__context__ = second, first

    assert list(exception_chain(first)) == [first, second]
    assert unreadable_config_file(first) is None
