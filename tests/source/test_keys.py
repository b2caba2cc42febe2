"""Several Close API keys: how they are configured, how requests are spread, a rejected one."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from close_api_emulator.auth import DEMO_API_KEY, PRINCIPALS
from close_sms.errors import ConfigError
from close_sms.source.api.keys import parse_api_keys
from tests.reliability.helpers import one_line_error, sync_cli
from tests.support import cli_env, mismatches, run_cli

EXTRA_KEYS = ("api_2ndKEYforTHEpoolQx81mZt", "api_3rdKEYforTHEpoolVb27nLw")
SMS_LIST = "/api/v1/activity/sms/"


@pytest.fixture
def three_keys(emulator):
    """An emulator that accepts three keys of one user, each with its own rate limit."""

    def start(**config):
        running = emulator(**config)
        for key in EXTRA_KEYS:
            running.emu.add_api_key(key)
        return running

    yield start
    for key in EXTRA_KEYS:
        PRINCIPALS.pop(key, None)


def _key_ids(*keys: str) -> list[str]:
    return [PRINCIPALS[key].key_id for key in keys]


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ("api_a", ("api_a",)),
        (" api_a , api_b,api_c ", ("api_a", "api_b", "api_c")),
        ('["api_a", " api_b"]', ("api_a", "api_b")),  # a TOML list, as dlt hands it to a str
        (["api_a", "api_b"], ("api_a", "api_b")),
        ("  ", ()),
        ("[]", ()),
        (None, ()),
    ],
)
def test_api_key_is_one_key_keys_separated_by_commas_or_a_list(value, keys):
    assert parse_api_keys(value) == keys


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("api_XQJZa,,api_XQJZb", "key 2 of 3 is empty"),
        ("api_XQJZa, api_XQJZb, api_XQJZa", "key 3 of 3 repeats key 1"),
        ('["api_XQJZa", 7]', "key 2 of 2 is not text"),
        ('["api_XQJZa", ', "not a valid list"),
    ],
)
def test_an_empty_repeated_or_broken_key_entry_is_refused_without_showing_a_key(value, message):
    with pytest.raises(ConfigError) as raised:
        parse_api_keys(value)
    assert message in str(raised.value)
    assert "XQJZ" not in str(raised.value)


def test_the_cli_refuses_a_repeated_key_with_exit_2(tmp_path):
    result = run_cli(
        "sync",
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key=None,
        CLOSE_API_KEY=f"{EXTRA_KEYS[0]},{EXTRA_KEYS[1]},{EXTRA_KEYS[0]}",
    )
    assert result.returncode == 2
    assert "key 3 of 3 repeats key 1" in one_line_error(result.stderr)
    assert all(key not in result.stderr + result.stdout for key in EXTRA_KEYS)
    assert not (tmp_path / "w.duckdb").exists()


def test_three_keys_share_a_rate_limited_backfill_and_it_is_exact(three_keys, tmp_path):
    running = three_keys(sms=2500, seed=61, rps=4, latency_ms=20)
    emu = running.emu
    database = tmp_path / "w.duckdb"

    result = sync_cli(
        running, database, api_key=f" {DEMO_API_KEY}, {EXTRA_KEYS[0]},{EXTRA_KEYS[1]} "
    )

    assert result.returncode == 0, result.stderr
    assert mismatches(database, emu.snapshot()) == []
    log = emu.request_log
    pages = [r for r in log if r.path == SMS_LIST and "date_created__gte" in r.params]
    by_key = Counter(r.api_key_id for r in pages)
    assert set(by_key) == set(_key_ids(DEMO_API_KEY, *EXTRA_KEYS))
    # Each key carried about a third of the backfill (4 requests/s each).
    assert min(by_key.values()) >= len(pages) / 5, by_key
    assert sum(r.status == 429 for r in log) <= len(log) / 100
    checked = {r.api_key_id for r in log if r.path == "/api/v1/me/" and r.status == 200}
    assert checked == set(_key_ids(DEMO_API_KEY, *EXTRA_KEYS))


def test_a_rejected_key_among_three_stops_the_run_before_reading_with_exit_3(three_keys, tmp_path):
    running = three_keys(sms=50, seed=62)
    rejected = "api_REVOKEDkeyOFtheTHREE5c2e"
    database = tmp_path / "w.duckdb"

    result = sync_cli(running, database, api_key=f"{DEMO_API_KEY},{rejected},{EXTRA_KEYS[0]}")

    assert result.returncode == 3
    line = one_line_error(result.stderr)
    assert "key 2 of 3" in line
    for key in (DEMO_API_KEY, rejected, EXTRA_KEYS[0]):
        assert key not in result.stderr + result.stdout
    assert [r.path for r in running.emu.request_log if r.path != "/api/v1/me/"] == []


def test_a_toml_list_of_keys_works_for_the_cli_and_the_bare_source(three_keys, tmp_path):
    running = three_keys(sms=300, seed=63)
    project = tmp_path / "project"
    (project / ".dlt").mkdir(parents=True)
    (project / ".dlt" / "secrets.toml").write_text(
        f'[sources.close_sms]\napi_key = ["{EXTRA_KEYS[0]}", "{EXTRA_KEYS[1]}"]\n'
    )
    env = {"SOURCES__CLOSE_SMS__BASE_URL": running.base_url}
    cli = run_cli(
        "sync", "--database", str(tmp_path / "cli.duckdb"), api_key=None, cwd=project, **env
    )
    assert cli.returncode == 0, cli.stderr
    assert mismatches(tmp_path / "cli.duckdb", running.emu.snapshot()) == []
    assert {r.api_key_id for r in running.emu.request_log} == set(_key_ids(*EXTRA_KEYS))

    running.emu.clear_request_log()
    bare = _run_bare_source(project, tmp_path / "bare.duckdb", env)
    assert bare.returncode == 0, bare.stderr
    assert mismatches(tmp_path / "bare.duckdb", running.emu.snapshot()) == []
    assert {r.api_key_id for r in running.emu.request_log} == set(_key_ids(*EXTRA_KEYS))


def test_keys_separated_by_commas_work_for_the_bare_source(three_keys, tmp_path):
    running = three_keys(sms=300, seed=64)
    env = {
        "SOURCES__CLOSE_SMS__BASE_URL": running.base_url,
        "SOURCES__CLOSE_SMS__API_KEY": f"{DEMO_API_KEY}, {EXTRA_KEYS[1]}",
    }
    bare = _run_bare_source(tmp_path, tmp_path / "bare.duckdb", env)
    assert bare.returncode == 0, bare.stderr
    assert mismatches(tmp_path / "bare.duckdb", running.emu.snapshot()) == []
    assert {r.api_key_id for r in running.emu.request_log} == set(
        _key_ids(DEMO_API_KEY, EXTRA_KEYS[1])
    )


def _run_bare_source(cwd: Path, database: Path, env: dict[str, str]):
    """`dlt.pipeline(...).run(close_sms_source())` in a fresh process started in `cwd`, so dlt
    reads that folder's `.dlt/` (its providers are fixed once per process)."""
    script = (
        "import dlt, sys\n"
        "from close_sms import close_sms_source\n"
        "pipeline = dlt.pipeline(pipeline_name='bare', pipelines_dir=sys.argv[2],"
        " destination=dlt.destinations.duckdb(sys.argv[1]), dataset_name='close_sms')\n"
        "pipeline.run(close_sms_source()).raise_on_failed_jobs()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(database), str(database.parent / "pipelines")],
        env=cli_env(None, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
