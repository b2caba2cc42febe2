"""The data dictionary: it describes exactly what a synced dataset holds, the comments reach
the catalog of DuckDB and PostgreSQL, and the docs page shows its rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from close_sms.warehouse.dictionary import (
    GENERATED_BEGIN,
    GENERATED_END,
    apply_comments,
    load_dictionary,
    render_markdown,
    with_generated_section,
)
from close_sms.warehouse.views import apply_views, dictionary_path
from tests.support import sync
from tests.warehouse.views.dataset import Loader, column_names
from tests.warehouse.views.fixture_data import context_rows, sms_rows

DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "tables-and-views.md"
# What the catalog says of the dataset close_sms, read without the code under test:
# (relation, column or None for the relation itself) -> comment.
CATALOG_COMMENTS = {
    "duckdb": """
        SELECT table_name, NULL, comment FROM duckdb_tables() WHERE schema_name = 'close_sms'
        UNION ALL
        SELECT view_name, NULL, comment FROM duckdb_views() WHERE schema_name = 'close_sms'
        UNION ALL
        SELECT table_name, column_name, comment FROM duckdb_columns()
        WHERE schema_name = 'close_sms'
    """,
    "postgres": """
        SELECT c.relname, a.attname, d.description
        FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_description AS d
            ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
        WHERE n.nspname = 'close_sms' AND c.relkind IN ('r', 'v')
        UNION ALL
        SELECT c.relname, NULL, d.description
        FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        LEFT JOIN pg_description AS d
            ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
        WHERE n.nspname = 'close_sms' AND c.relkind IN ('r', 'v')
    """,
}


def described(dictionary) -> dict[tuple[str, str | None], str]:
    """The dictionary as (relation, column or None) -> description."""
    return {
        key: text
        for relation in dictionary.values()
        for key, text in [
            ((relation.name, None), relation.description),
            *(((relation.name, c), t) for c, t in relation.columns.items()),
        ]
    }


@pytest.fixture
def synced(emulator, target):
    """A dataset synced from an account with every field Close sends today."""
    running = emulator(sms=400, seed=5, recorded_sms_fields=True, recorded_sources=True)
    sync(running, target)
    return target


def test_the_dictionary_describes_exactly_a_synced_dataset_and_is_in_its_catalog(synced):
    comments = {
        (relation, column): comment
        for relation, column, comment in synced.query(CATALOG_COMMENTS[synced.name])
    }
    want = described(load_dictionary(dictionary_path()))
    undescribed = sorted(set(comments) - set(want), key=str)
    unknown = sorted(set(want) - set(comments), key=str)
    assert (undescribed, unknown) == ([], [])
    assert comments == want
    # The recent fields others describe already are really there.
    assert comments[("sms", "caller_id_mode")] and comments[("sms_messages", "agent_config_id")]
    # The context tables the sync loads are described, and so are the names the views take.
    assert comments[("users", None)] and comments[("phone_numbers", "label")]
    assert comments[("sms_messages", "lead_name")] and comments[("sms_numbers", "owner_name")]


def test_a_column_for_a_field_close_adds_is_described_as_such_naming_its_object(emulator, target):
    running = emulator(sms=300, seed=5, recorded_context_fields=True, undeclared_fields=2)
    sync(running, target)

    comments = {
        (relation, column): comment
        for relation, column, comment in target.query(CATALOG_COMMENTS[target.name])
    }

    assert sorted((key for key, comment in comments.items() if not comment), key=str) == []
    added = {
        ("phone_numbers", "press_1_to_accept"): "phone numbers",
        ("phone_numbers", "was_ported"): "phone numbers",
        ("sms_templates", "owned_by"): "SMS templates",
        ("sms", "import_id"): "SMS activities",
        ("sms", "x_extra_1"): "SMS activities",
        ("sms_messages", "x_extra_1"): "SMS activities",
    }
    for key, named in added.items():
        assert comments[key] == (
            f"A field of Close's {named} that this data dictionary does not describe (one "
            "Close added after it was written); stored as Close sends it."
        ), key
    dictionary = load_dictionary(dictionary_path())
    assert dictionary["sms"].describe_column("cost__v_text") == (
        "The values of cost that do not fit its type, kept as text (a dlt variant column)."
    )
    assert dictionary["sync_runs"].describe_column("not_there") is None


def test_comments_skip_what_is_missing_and_are_written_once(loader):
    loader.load(sms=sms_rows(), context=context_rows())
    with loader.sql_client() as sql:
        apply_views(sql)
        # A field the source does not declare, and no number of this account has: dlt made
        # no such column.
        assert "is_premium" not in column_names(sql, "phone_numbers")
        assert apply_comments(sql, load_dictionary(dictionary_path())) == 0
        ((comment,),) = sql.execute_sql(
            "SELECT comment FROM duckdb_columns() WHERE schema_name = 'close_sms'"
            " AND table_name = 'sms_opt_outs' AND column_name = 'opted_out_at'"
            if loader.kind == "duckdb"
            else "SELECT col_description('close_sms.sms_opt_outs'::regclass, 3)"
        )
    assert comment == "The opt-out, the first opt-out keyword after the phone's last opt-in."


def test_a_blank_description_is_refused(tmp_path):
    path = tmp_path / "dictionary.yml"
    path.write_text("tables:\n  sms:\n    description: SMS\n    columns:\n      id:\n")
    with pytest.raises(ValueError, match=r"^dictionary\.yml: sms has no description for id$"):
        load_dictionary(path)


def test_the_docs_page_shows_the_dictionary():
    page = DOCS_PAGE.read_text(encoding="utf-8")
    dictionary = load_dictionary(dictionary_path())
    assert page == with_generated_section(page, dictionary), (
        "docs/tables-and-views.md is stale: run "
        "python -m close_sms.warehouse.dictionary sql/dictionary.yml docs/tables-and-views.md"
    )
    generated = page[page.index(GENERATED_BEGIN) : page.index(GENERATED_END)]
    assert render_markdown(dictionary) in generated
    assert "### view `sms_opt_outs`" in generated


@pytest.fixture(params=["duckdb", "postgres"])
def loader(request, tmp_path, postgres_server) -> Loader:
    if request.param == "duckdb":
        return Loader.duckdb(tmp_path)
    return Loader.postgres(tmp_path, request.getfixturevalue("postgres"))
