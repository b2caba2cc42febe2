"""Views on a dataset without (some of) dlt's tables, and how the views are located."""

from __future__ import annotations

import pytest

from close_sms.errors import DatabaseError
from close_sms.source.context.schema import CONTEXT_TABLES
from close_sms.warehouse import views
from close_sms.warehouse.views import (
    apply_views,
    dictionary_path,
    missing_views,
    sql_dir,
    view_files,
)
from tests.warehouse.views import expected
from tests.warehouse.views.dataset import DESTINATIONS, Loader, column_names
from tests.warehouse.views.dataset import rows_as_dicts as query
from tests.warehouse.views.fixture_data import DELETED, context_rows, event_rows, sms_rows
from tests.warehouse.views.test_views import VIEWS

BASE_TABLES = ("sms", "sms__attachments", "sms_events", *CONTEXT_TABLES)
COLUMNS_SQL = f"""
SELECT table_name, ordinal_position, column_name, data_type, is_nullable,
       numeric_precision, numeric_scale
FROM information_schema.columns
WHERE table_schema = 'close_sms' AND table_name IN ({", ".join(f"'{t}'" for t in BASE_TABLES)})
ORDER BY table_name, ordinal_position
"""


def counts(loader: Loader) -> dict[str, int]:
    with loader.sql_client(read_only=True) as sql:
        return {
            view: sql.execute_sql(f"SELECT count(*) FROM close_sms.{view}")[0][0] for view in VIEWS
        }


def apply(loader: Loader) -> list[str]:
    with loader.sql_client() as sql:
        return apply_views(sql)


def test_every_view_works_on_an_empty_database(loader):
    assert apply(loader) == VIEWS
    assert counts(loader) == dict.fromkeys(VIEWS, 0)
    with loader.sql_client(read_only=True) as sql:
        assert set(next(iter(expected.names(sms_rows(), {}).values()))) <= set(
            column_names(sql, "sms_messages")
        )
    # Applying again is harmless.
    assert apply(loader) == VIEWS


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_empty_tables_match_what_dlt_creates(new_loader, kind):
    loaded = new_loader(kind)
    loaded.load(sms=sms_rows(), events=event_rows(), context=context_rows())
    with loaded.sql_client() as sql:
        dlt_columns = sql.execute_sql(COLUMNS_SQL)
    assert {row[0] for row in dlt_columns} == set(BASE_TABLES)

    fresh = new_loader(kind)
    apply(fresh)
    with fresh.sql_client() as sql:
        assert sql.execute_sql(COLUMNS_SQL) == dlt_columns


def test_dlt_loads_into_the_prepared_empty_database(loader):
    apply(loader)
    loader.load(sms=sms_rows(), events=event_rows())
    loader.delete(*DELETED)
    rows = [r for r in sms_rows() if r["id"] not in DELETED]
    # The views see the data without being applied again, and after it too.
    for _ in range(2):
        got = counts(loader)
        assert got["sms_messages"] == len(rows)
        assert got["sms_attachments_flat"] == sum(len(r["attachments"]) for r in rows)
        assert got["sms_status_changes"] == len(event_rows())
        apply(loader)


def test_views_with_the_context_turned_off_have_its_columns_null(loader):
    # A sync with context = false: no context table, so the names are null, not missing.
    loader.load(sms=sms_rows(), events=event_rows())
    assert apply(loader) == VIEWS
    rows = sms_rows()
    name_columns = list(next(iter(expected.names(rows, {}).values())))
    with loader.sql_client(read_only=True) as sql:
        got = query(sql, f"SELECT id, {', '.join(name_columns)} FROM close_sms.sms_messages")
        templates = query(sql, "SELECT * FROM close_sms.sms_template_performance")
        statuses = query(sql, "SELECT * FROM close_sms.sms_by_lead_status")
        numbers = query(sql, "SELECT * FROM close_sms.sms_numbers")
    assert {r.pop("id"): r for r in got} == expected.names(rows, {})
    assert all(value is None for row in got for value in row.values())
    # The views still count by the ids the SMS carry; only the names are missing.
    assert {r["template_id"]: r["template_name"] for r in templates} == dict.fromkeys(
        ("tmpl_hello", "tmpl_remind", "tmpl_gone")
    )
    assert [(r["lead_status_id"], r["message_count"]) for r in statuses] == [(None, len(rows))]
    assert all(r["owner_name"] is None and r["message_count"] for r in numbers)

    # Turned on later: dlt loads into the empty context tables and the views name the SMS.
    loader.load(context=context_rows())
    with loader.sql_client(read_only=True) as sql:
        ((label,),) = sql.execute_sql(
            "SELECT local_phone_owner_name FROM close_sms.sms_messages WHERE id = 'sms_14'"
        )
    assert label == "Bo Chen"


def test_missing_child_and_event_tables_are_created_then_adopted_by_dlt(loader):
    # A sync that has not yet seen an attachment or an event: dlt made only `sms`.
    plain = [r for r in sms_rows() if not r["attachments"]]
    loader.load(sms=plain)
    assert apply(loader) == VIEWS
    assert counts(loader)["sms_messages"] == len(plain)
    assert counts(loader)["sms_attachments_flat"] == 0

    loader.load(sms=sms_rows(), events=event_rows())
    got = counts(loader)
    assert got["sms_attachments_flat"] == sum(len(r["attachments"]) for r in sms_rows())
    assert got["sms_status_changes"] == len(event_rows())


def test_views_bind_on_a_dataset_loaded_before_the_sequence_and_agent_fields(loader):
    loader.load(sms=sms_rows())
    newer = ("sequence_id", "sequence_name", "sequence_subscription_id", "agent_action_reason")
    with loader.sql_client() as sql:
        # An old dataset: its sms table was created before these fields were declared.
        for column in (*newer, "agent_config_id"):
            sql.execute_sql(f"ALTER TABLE close_sms.sms DROP COLUMN {column}")
        assert apply_views(sql) == VIEWS
        assert set(newer) <= set(column_names(sql, "sms_messages"))
    # Only `source` tells the AI agent apart until dlt loads the fields again.
    assert sender_kinds(loader) == {"ai_agent", "rep"}
    loader.load(sms=sms_rows())
    assert sender_kinds(loader) == {"ai_agent", "sequence", "rep"}


def sender_kinds(loader: Loader) -> set[str]:
    with loader.sql_client(read_only=True) as sql:
        rows = sql.execute_sql("SELECT DISTINCT sender_kind FROM close_sms.sms_ai_vs_human")
    return {kind for (kind,) in rows}


def test_missing_views(loader):
    with loader.sql_client() as sql:
        assert missing_views(sql) == VIEWS
        apply_views(sql)
        assert missing_views(sql) == []
        sql.execute_sql("DROP VIEW close_sms.sms_status_changes")
        assert missing_views(sql) == ["sms_status_changes"]


def test_failed_view_rolls_back_and_names_the_file(loader, tmp_path, monkeypatch):
    apply(loader)
    broken = tmp_path / "sql"
    broken.mkdir()
    for path in [*view_files(), dictionary_path()]:
        (broken / path.name).write_text(path.read_text())
    # A change that applies, then a file that fails: the change must not survive.
    first = broken / view_files()[0].name
    first.write_text(
        first.read_text().replace("AS message_date\n", "AS message_date, 1 AS marker\n")
    )
    (broken / "99_broken.sql").write_text("CREATE OR REPLACE VIEW close_sms.broken AS SELECT nope")
    monkeypatch.setattr(views, "sql_dir", lambda: broken)
    with pytest.raises(DatabaseError, match=r"^applying 99_broken\.sql failed: .*nope") as failure:
        apply(loader)
    assert "\n" not in str(failure.value)
    with loader.sql_client(read_only=True) as sql:
        assert "marker" not in column_names(sql, "sms_messages")
        assert "message_date" in column_names(sql, "sms_messages")
        assert missing_views(sql) == ["broken"]


def test_sql_folder_prefers_the_packaged_copy(tmp_path):
    # Editable install: <repo>/pipelines/close_sms has no sql/, so <repo>/sql is used.
    package = tmp_path / "repo" / "pipelines" / "close_sms"
    package.mkdir(parents=True)
    assert sql_dir(package) == tmp_path / "repo" / "sql"
    # Wheel: sql/ is force-included as pipelines/close_sms/sql.
    (package / "sql").mkdir()
    assert sql_dir(package) == package / "sql"
    # And in this checkout the repository's folder holds one file per view.
    assert [f.stem.split("_", 1)[1] for f in view_files()] == VIEWS
