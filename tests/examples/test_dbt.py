"""examples/dbt: its sources are the data dictionary's, and `dbt` builds and tests them, and
checks their freshness, on a freshly synced warehouse, on DuckDB and on PostgreSQL."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from close_sms.warehouse.dictionary import load_dictionary
from tests.support import Target, change_account, cli_env, sync

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dbt"
GENERATOR = EXAMPLE / "generate_sources.py"
KEY_TESTS = {
    "source_unique_close_sms_sms_id",
    "source_not_null_close_sms_sms_id",
    "source_unique_close_sms_sms_events_id",
    "source_not_null_close_sms_sms_events_id",
    "source_relationships_close_sms_sms__attachments__dlt_parent_id___dlt_id__source_close_sms_sms_",
    "source_relationships_close_sms_sms__attachments__dlt_root_id___dlt_id__source_close_sms_sms_",
}


def load_generator() -> ModuleType:
    """Import examples/dbt/generate_sources.py by path (examples/ is no package)."""
    spec = importlib.util.spec_from_file_location("close_sms_dbt_sources", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_sources_are_rendered_from_the_dictionary() -> None:
    generator = load_generator()

    rendered = generator.render_sources(load_dictionary(generator.DICTIONARY))

    assert generator.SOURCES.read_text(encoding="utf-8") == rendered, (
        "examples/dbt/models/sources.yml is stale: run `python examples/dbt/generate_sources.py`"
    )


def test_every_described_table_view_and_column_is_a_source_with_its_description() -> None:
    generator = load_generator()
    dictionary = load_dictionary(generator.DICTIONARY)

    (source,) = yaml.safe_load(generator.SOURCES.read_text(encoding="utf-8"))["sources"]
    tables = {table["name"]: table for table in source["tables"]}

    assert source["schema"] == "close_sms"
    for name, relation in dictionary.items():
        assert tables[name]["description"] == relation.description
        columns = {column["name"]: column.get("description") for column in tables[name]["columns"]}
        assert columns == relation.columns
    # The context tables are declared even before the dictionary describes them; every test
    # on one or pointing at one is tagged, so `--exclude tag:context` leaves them all out.
    context = set(generator.CONTEXT_REFERENCES.values())
    assert context <= tables.keys()
    for name, table in tables.items():
        table_tags = table.get("config", {}).get("tags", [])
        for column in table.get("columns", []):
            for test in column.get("data_tests", []):
                # A built-in test is a name, or {name: {arguments, config}}.
                (options,) = test.values() if isinstance(test, dict) else [{}]
                if name in context or any(f"'{other}'" in json.dumps(test) for other in context):
                    tags = [*table_tags, *options.get("config", {}).get("tags", [])]
                    assert generator.CONTEXT_TAG in tags, (name, test)


def dbt_env(target: Target, work: Path) -> dict[str, str]:
    """What `dbt` needs to reach `target`, with its artifacts, logs and own files in `work`."""
    env = cli_env(
        None,
        DBT_PROFILES_DIR=str(EXAMPLE),
        DBT_TARGET_PATH=str(work / "target"),
        DBT_LOG_PATH=str(work / "logs"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
        CLOSE_SMS_DBT_TARGET=target.name,
    )
    if target.warehouse.database is not None:
        env["CLOSE_SMS_DATABASE"] = str(target.warehouse.database)
        env["CLOSE_SMS_DBT_DATABASE"] = str(work / "dbt.duckdb")
    else:
        dsn = urlsplit(target.env["DESTINATION__POSTGRES__CREDENTIALS"])
        env.update(
            PGHOST=dsn.hostname or "localhost",
            PGPORT=str(dsn.port or 5432),
            PGUSER=unquote(dsn.username or ""),
            PGPASSWORD=unquote(dsn.password or ""),
            PGDATABASE=dsn.path.lstrip("/"),
        )
    return env


def run_dbt(*args: str, env: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    """`dbt ARGS` in the example project: its exit status and the results it wrote."""
    process = subprocess.run(
        [sys.executable, "-m", "dbt.cli.main", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    artifact = "sources.json" if args[:2] == ("source", "freshness") else "run_results.json"
    results_file = Path(env["DBT_TARGET_PATH"]) / artifact
    assert results_file.exists(), process.stdout[-3000:] + process.stderr[-3000:]
    return process.returncode, json.loads(results_file.read_text(encoding="utf-8"))["results"]


def context_tables_present(target: Target, generator: ModuleType) -> bool:
    """Whether the sync loaded every context table the sources test."""
    names = ", ".join(f"'{name}'" for name in generator.CONTEXT_REFERENCES.values())
    (found,) = target.query(
        "SELECT count(*) FROM information_schema.tables"
        f" WHERE table_schema = 'close_sms' AND table_name IN ({names})"
    )[0]
    return found == len(generator.CONTEXT_REFERENCES)


@pytest.mark.slow
def test_dbt_builds_tests_and_checks_freshness_on_a_synced_warehouse(
    target: Target, emulator, tmp_path: Path
) -> None:
    running = emulator(sms=500, seed=29)
    sync(running, target)
    # A second, incremental run: deleted SMS, changed ones and their events.
    change_account(running.emu)
    sync(running, target)
    generator = load_generator()
    env = dbt_env(target, tmp_path)
    # The context tests run once the sync loads those tables; until then they are left out.
    with_context = context_tables_present(target, generator)
    selection = () if with_context else ("--exclude", f"tag:{generator.CONTEXT_TAG}")

    status, results = run_dbt("build", *selection, env=env)

    failed = [(r["unique_id"], r["status"], r["message"]) for r in results if r["status"] != "pass"]
    assert status == 0 and not failed, failed
    tests = {r["unique_id"].split(".")[2] for r in results if r["unique_id"].startswith("test.")}
    assert tests >= KEY_TESTS
    context_tests = {name for name in tests if "source_close_sms_users_" in name}
    assert bool(context_tests) == with_context, sorted(tests)

    status, freshness = run_dbt("source", "freshness", env=env)

    assert status == 0
    assert [(r["unique_id"], r["status"]) for r in freshness] == [
        ("source.close_sms_example.close_sms.sync_runs", "pass")
    ]

    # The successful runs hours ago, a failed one just now: only success counts as fresh.
    target.execute("UPDATE close_sms.sync_runs SET ended_at = ended_at - INTERVAL '3 hours'")
    target.execute(
        "INSERT INTO close_sms.sync_runs (run_id, started_at, ended_at, outcome, exit_status)"
        " VALUES ('failed-now', now(), now(), 'failed', 1)"
    )

    status, stale = run_dbt("source", "freshness", env=env)

    assert status == 1
    assert [r["status"] for r in stale] == ["error"]
    assert stale[0]["max_loaded_at_time_ago_in_s"] > 3 * 3600
