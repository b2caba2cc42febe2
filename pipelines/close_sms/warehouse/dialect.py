"""The SQL dialect of the views and report, and its translation to a destination's, by sqlglot.

The view files and the report's queries are written once, in DuckDB's dialect (DuckDB is the
default destination, so its SQL runs as written). For any other destination sqlglot translates
them, with two additions: `* EXCLUDE (...)` is expanded from the real columns of the tables
read, and DuckDB's `arg_max`, which sqlglot leaves as it is, is rewritten first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

SOURCE_DIALECT = "duckdb"

# {schema: {table: {column: type}}}: the relations a statement may read, columns in order.
Schema = Mapping[str, Mapping[str, Mapping[str, str]]]


def _arg_max_as_array_agg(node: exp.Expression) -> exp.Expression:
    """`arg_max(x, key)` as `(array_agg(x ORDER BY key DESC) FILTER (WHERE ...))[1]`.

    sqlglot leaves ARG_MAX as it is for PostgreSQL, which has no such aggregate. A struct key
    (`{'at': a, 'id': b}`, compared field by field) orders by each field in turn. Like
    DuckDB's arg_max, rows whose x or key is null are skipped (a struct is never null).
    """
    if not isinstance(node, exp.ArgMax):
        return node
    value, key = node.this, node.expression
    if isinstance(key, exp.Struct):
        keys = [f.expression if isinstance(f, exp.PropertyEQ) else f for f in key.expressions]
        present = value.is_(exp.null()).not_()
    else:
        keys = [key]
        present = exp.and_(value.is_(exp.null()).not_(), key.is_(exp.null()).not_())
    ordered = exp.ArrayAgg(
        this=exp.Order(
            this=value.copy(),
            expressions=[exp.Ordered(this=k.copy(), desc=True, nulls_first=False) for k in keys],
        )
    )
    filtered = exp.Filter(this=ordered, expression=exp.Where(this=present))
    return exp.Bracket(
        this=exp.paren(filtered, copy=False), expressions=[exp.Literal.number(1)], offset=1
    )


# What a destination's dialect needs rewritten before sqlglot generates it.
_REWRITES: dict[str, tuple[Callable[[exp.Expression], exp.Expression], ...]] = {
    "postgres": (_arg_max_as_array_agg,),
}


def translate(sql: str, dialect: str, schema: Schema | None = None) -> str:
    """`sql` (one DuckDB statement) in `dialect`.

    With `schema`, column references are qualified and stars expanded from it, so
    `s.* EXCLUDE (...)` becomes the list of the table's other columns at this moment.
    """
    if dialect == SOURCE_DIALECT:
        return sql
    expression = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    if schema is not None:
        # The database reports unknown columns itself, with its own message.
        expression = qualify(
            expression, schema=schema, dialect=SOURCE_DIALECT, validate_qualify_columns=False
        )
    for rewrite in _REWRITES.get(dialect, ()):
        expression = expression.transform(rewrite, copy=False)
    return expression.sql(dialect=dialect)
