"""The data dictionary `sql/dictionary.yml`: a description of every table, view and column.

It is written into the database as `COMMENT ON TABLE/VIEW/COLUMN` when the views are applied
(DuckDB and PostgreSQL; other destinations get none), and the "Data dictionary" section of
`docs/tables-and-views.md` is rendered from it. Regenerate that section with
`python -m close_sms.warehouse.dictionary sql/dictionary.yml docs/tables-and-views.md`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dlt.destinations.sql_client import SqlClientBase

DICTIONARY_FILE = "dictionary.yml"
# The YAML's sections, and the SQL keyword of each kind of relation.
KINDS = {"tables": "TABLE", "views": "VIEW"}
GENERATED_BEGIN = (
    "<!-- BEGIN data dictionary: generated from sql/dictionary.yml by "
    "`python -m close_sms.warehouse.dictionary sql/dictionary.yml docs/tables-and-views.md`"
    " -->"
)
GENERATED_END = "<!-- END data dictionary -->"
# How dlt names the column that keeps a column's values of another type: `cost__v_text`.
VARIANT_INFIX = "__v_"


@dataclass(frozen=True)
class Relation:
    """A table or view as the dictionary describes it, or as the database's catalog holds it.

    In the catalog, `description` and the column values are the comments (None: no comment).
    `close_object` names the Close objects the rows come from, for columns the dictionary does
    not describe (`describe_column`).
    """

    name: str
    kind: str  # TABLE or VIEW
    description: str | None
    columns: dict[str, str | None] = field(default_factory=dict)
    close_object: str | None = None

    def describe_column(self, column: str) -> str | None:
        """The description of `column`: the dictionary's; for a column it does not describe, a
        generic one, when the column is a variant of a described one or the relation's rows
        come from Close (a field Close added); else None."""
        described = self.columns.get(column)
        if described is not None:
            return described
        base, variant, data_type = column.partition(VARIANT_INFIX)
        if variant and base in self.columns:
            return (
                f"The values of {base} that do not fit its type, kept as {data_type} "
                "(a dlt variant column)."
            )
        if self.close_object is None:
            return None
        return (
            f"A field of Close's {self.close_object} that this data dictionary does not "
            "describe (one Close added after it was written); stored as Close sends it."
        )


def load_dictionary(path: Path) -> dict[str, Relation]:
    """The dictionary's tables and views by name, in the file's order."""
    with path.open(encoding="utf-8") as file:
        document = yaml.safe_load(file)
    relations: dict[str, Relation] = {}
    for section, kind in KINDS.items():
        for name, entry in _mapping(document, section, path).items():
            columns = _mapping(entry, "columns", path, name)
            texts = {"description": entry.get("description"), **columns}
            blank = [key for key, text in texts.items() if not (isinstance(text, str) and text)]
            if blank:
                raise ValueError(f"{path.name}: {name} has no description for {', '.join(blank)}")
            relations[name] = Relation(
                name, kind, entry["description"], dict(columns), entry.get("close_object")
            )
    return relations


def _mapping(parent: Any, key: str, path: Path, owner: str = "") -> Mapping[str, Any]:
    value = parent.get(key) if isinstance(parent, Mapping) else None
    if not isinstance(value, Mapping):
        raise ValueError(f"{path.name}: {owner + '.' if owner else ''}{key} is not a mapping")
    return value


def _schema_name(sql: SqlClientBase[Any]) -> str:
    # The dataset as the destination stores it (casefolded), for the catalog.
    return sql.make_qualified_table_name_path(None, quote=False)[-1]


# Per dialect: the dataset's relations (name, kind, comment) and columns (relation, name,
# comment), columns in order. information_schema has no comments.
_CATALOG_QUERIES = {
    "duckdb": (
        "SELECT name, kind, comment FROM ("
        " SELECT database_name, schema_name, table_name AS name, 'TABLE' AS kind, comment"
        " FROM duckdb_tables()"
        " UNION ALL SELECT database_name, schema_name, view_name, 'VIEW', comment"
        " FROM duckdb_views()"
        ") WHERE database_name = current_database() AND schema_name = %s",
        "SELECT table_name, column_name, comment FROM duckdb_columns()"
        " WHERE database_name = current_database() AND schema_name = %s"
        " ORDER BY table_name, column_index",
    ),
    "postgres": (
        "SELECT c.relname, CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,"
        " obj_description(c.oid, 'pg_class')"
        " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v')",
        "SELECT c.relname, a.attname, col_description(c.oid, a.attnum)"
        " FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v')"
        " AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY c.relname, a.attnum",
    ),
}


def supports_comments(sql: SqlClientBase[Any]) -> bool:
    """Whether the dictionary is written into this destination (DuckDB and PostgreSQL)."""
    return sql.capabilities.sqlglot_dialect in _CATALOG_QUERIES


def read_catalog(sql: SqlClientBase[Any]) -> dict[str, Relation]:
    """The dataset's tables and views with their columns and comments, from the catalog."""
    relations_sql, columns_sql = _CATALOG_QUERIES[sql.capabilities.sqlglot_dialect]
    schema = _schema_name(sql)
    catalog = {
        name: Relation(name, kind, comment)
        for name, kind, comment in sql.execute_sql(relations_sql, schema) or ()
    }
    for relation, column, comment in sql.execute_sql(columns_sql, schema) or ():
        catalog[relation].columns[column] = comment
    return catalog


def comment_statements(
    sql: SqlClientBase[Any], dictionary: Mapping[str, Relation], catalog: Mapping[str, Relation]
) -> list[str]:
    """The COMMENT statements that bring the catalog's comments to the dictionary's.

    Only objects that exist are commented (a column dlt has not created yet is skipped), and
    only where the comment differs, so applying again writes nothing to the tables. A column
    the dictionary does not describe gets a generic description (`Relation.describe_column`).
    """
    literal = sql.capabilities.escape_literal
    statements = []
    for name, present in catalog.items():
        described = dictionary.get(name)
        if described is None:
            continue
        qualified = sql.make_qualified_table_name(name)
        if present.description != described.description:
            statements.append(
                f"COMMENT ON {present.kind} {qualified} IS {literal(described.description)}"
            )
        for column, comment in present.columns.items():
            text = described.describe_column(column)
            if text is not None and text != comment:
                statements.append(
                    f"COMMENT ON COLUMN {qualified}.{sql.escape_column_name(column)}"
                    f" IS {literal(text)}"
                )
    return statements


def apply_comments(sql: SqlClientBase[Any], dictionary: Mapping[str, Relation]) -> int:
    """Write `dictionary` into the dataset's catalog; returns how many comments changed."""
    if not supports_comments(sql):
        return 0
    statements = comment_statements(sql, dictionary, read_catalog(sql))
    for statement in statements:
        sql.execute_sql(statement)
    return len(statements)


def render_markdown(dictionary: Mapping[str, Relation]) -> str:
    """The docs' data dictionary section: a heading and a column table per table and view."""
    parts = []
    for relation in dictionary.values():
        rows = "\n".join(
            f"| `{column}` | {_cell(text or '')} |" for column, text in relation.columns.items()
        )
        parts.append(
            f"### {relation.kind.lower()} `{relation.name}`\n\n{relation.description}\n\n"
            f"| column | description |\n|---|---|\n{rows}\n"
        )
    return "\n".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def with_generated_section(page: str, dictionary: Mapping[str, Relation]) -> str:
    """`page` with the text between its data dictionary markers rendered anew."""
    begin, end = page.find(GENERATED_BEGIN), page.find(GENERATED_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the page has no {GENERATED_BEGIN!r} ... {GENERATED_END!r} markers")
    head = page[: begin + len(GENERATED_BEGIN)]
    return f"{head}\n\n{render_markdown(dictionary)}\n{page[end:]}"


def main(argv: list[str]) -> int:
    """Regenerate the data dictionary section of a docs page from a dictionary file."""
    if len(argv) != 2:
        print(
            "usage: python -m close_sms.warehouse.dictionary DICTIONARY.yml DOCS_PAGE.md",
            file=sys.stderr,
        )
        return 2
    try:
        dictionary, page = load_dictionary(Path(argv[0])), Path(argv[1])
        page.write_text(
            with_generated_section(page.read_text(encoding="utf-8"), dictionary),
            encoding="utf-8",
        )
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
