"""Views on a database without (some of) dlt's tables, and how the views are located."""

from __future__ import annotations

import duckdb
import pytest

from close_sms.warehouse import views
from close_sms.warehouse.views import apply_views, apply_views_on, sql_dir, view_files
from tests.views.dataset import Loader
from tests.views.fixture_data import DELETED, event_rows, sms_rows
from tests.views.test_views import VIEWS

BASE_TABLES = ("sms", "sms__attachments", "sms_events")
COLUMNS_SQL = """
SELECT table_name, ordinal_position, column_name, data_type, is_nullable
FROM information_schema.columns
WHERE table_schema = 'close_sms' AND table_name IN ('sms', 'sms__attachments', 'sms_events')
ORDER BY table_name, ordinal_position
"""


def counts(database) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return {
            view: connection.execute(f"SELECT count(*) FROM close_sms.{view}").fetchone()[0]
            for view in VIEWS
        }


def test_every_view_works_on_an_empty_database(tmp_path):
    database = tmp_path / "fresh.duckdb"
    assert apply_views(database) == VIEWS
    assert counts(database) == dict.fromkeys(VIEWS, 0)
    # Applying again is harmless.
    assert apply_views(database) == VIEWS


def test_empty_tables_match_what_dlt_creates(tmp_path):
    loaded = Loader(tmp_path / "loaded")
    loaded.load(sms=sms_rows(), events=event_rows())
    with loaded.connect() as connection:
        dlt_columns = connection.execute(COLUMNS_SQL).fetchall()
    assert {row[0] for row in dlt_columns} == set(BASE_TABLES)

    database = tmp_path / "fresh.duckdb"
    apply_views(database)
    with duckdb.connect(str(database), read_only=True) as connection:
        assert connection.execute(COLUMNS_SQL).fetchall() == dlt_columns


def test_dlt_loads_into_the_prepared_empty_database(tmp_path):
    loader = Loader(tmp_path)
    apply_views(loader.database)
    loader.load(sms=sms_rows(), events=event_rows())
    loader.delete(*DELETED)
    rows = [r for r in sms_rows() if r["id"] not in DELETED]
    # The views see the data without being applied again, and after it too.
    for _ in range(2):
        got = counts(loader.database)
        assert got["sms_messages"] == len(rows)
        assert got["sms_attachments_flat"] == sum(len(r["attachments"]) for r in rows)
        assert got["sms_status_changes"] == len(event_rows())
        apply_views(loader.database)


def test_missing_child_and_event_tables_are_created_then_adopted_by_dlt(tmp_path):
    # A sync that has not yet seen an attachment or an event: dlt made only `sms`.
    loader = Loader(tmp_path)
    plain = [r for r in sms_rows() if not r["attachments"]]
    loader.load(sms=plain)
    assert apply_views(loader.database) == VIEWS
    assert counts(loader.database)["sms_messages"] == len(plain)
    assert counts(loader.database)["sms_attachments_flat"] == 0

    loader.load(sms=sms_rows(), events=event_rows())
    got = counts(loader.database)
    assert got["sms_attachments_flat"] == sum(len(r["attachments"]) for r in sms_rows())
    assert got["sms_status_changes"] == len(event_rows())


def test_failed_view_rolls_back_and_names_the_file(tmp_path, monkeypatch):
    database = tmp_path / "fresh.duckdb"
    apply_views(database)
    broken = tmp_path / "sql"
    broken.mkdir()
    good = view_files()[0]
    (broken / good.name).write_text(
        "CREATE OR REPLACE VIEW close_sms.sms_messages AS SELECT 1 AS x"
    )
    (broken / "99_broken.sql").write_text("CREATE OR REPLACE VIEW close_sms.broken AS SELECT nope")
    monkeypatch.setattr(views, "sql_dir", lambda: broken)
    with pytest.raises(RuntimeError, match="99_broken.sql"):
        apply_views(database)
    with duckdb.connect(str(database), read_only=True) as connection:
        columns = connection.execute("DESCRIBE close_sms.sms_messages").fetchall()
    assert len(columns) > 1  # the replacement of sms_messages was rolled back


def test_apply_views_on_an_open_connection(tmp_path):
    with duckdb.connect(str(tmp_path / "open.duckdb")) as connection:
        assert apply_views_on(connection) == VIEWS
        assert connection.execute("SELECT count(*) FROM close_sms.sms_daily").fetchone() == (0,)


def test_database_named_like_the_schema_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must not be named"):
        apply_views(tmp_path / "close_sms.duckdb")


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


def test_apply_views_on_the_dlt_pipeline_connection(tmp_path):
    # The sync applies the views on dlt's own connection after a load.
    loader = Loader(tmp_path)
    loader.load(sms=sms_rows(), events=event_rows())
    with loader.pipeline.sql_client() as sql:
        assert apply_views_on(sql.native_connection) == VIEWS
        (n,) = sql.native_connection.execute(
            "SELECT count(*) FROM close_sms.sms_messages"
        ).fetchone()
    assert n == len(sms_rows())
