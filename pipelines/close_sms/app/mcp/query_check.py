"""The check every `query` passes: one SELECT over the dataset, with allowed functions only.

Whoever writes the SQL may be steered by the SMS texts the tools return, so the check assumes an
attacker: it allows what it knows to be harmless (the dataset's tables and views, and listed
functions) rather than refusing what it knows to be harmful. The server runs the SQL sqlglot
writes back from the tree it checked, never the text it was sent, so DuckDB runs exactly what
was checked.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.optimizer.scope import traverse_scope

from ...errors import one_line
from ...source import settings
from . import Unanswerable

# Bounds checked before sqlglot parses: it recurses once per level of nesting, and a long text
# costs it time the other tools would wait for.
MAX_SQL_CHARS = 20_000
MAX_NESTING = 64
OPENING, CLOSING = "([{", ")]}"
# Statements that write, reach outside the database or change the session.
REFUSED_STATEMENTS = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Copy,
    exp.Attach,
    exp.Detach,
    exp.Pragma,
    exp.Set,
    exp.Install,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Command,
)
# Functions sqlglot knows by meaning (its classes), each written back as DuckDB's equivalent:
# operators and literals that are functions to sqlglot, then text, numbers, dates, aggregates,
# windows, lists, structs and maps, and readers of JSON values.
ALLOWED_FUNCTIONS: frozenset[type[exp.Func]] = frozenset(
    getattr(exp, name)
    for name in """
    And Or Xor Case If Cast TryCast Coalesce Nullif Greatest Least Extract Exists Columns
    Collate Typeof Array Struct Map ToMap VarMap Explode Unnest
    Lower Upper Length BitLength Substring Left Right Trim Pad Concat ConcatWs Replace Reverse
    Repeat StrPosition StartsWith EndsWith Contains Split SplitPart Initcap Levenshtein
    JarowinklerSimilarity Translate Ascii Chr Unicode Format RegexpLike RegexpILike
    RegexpFullMatch RegexpExtract RegexpExtractAll RegexpReplace RegexpSplit MD5 SHA SHA2 Hex
    Unhex ToBase64 FromBase64 Encode Decode ArrayToString
    Abs Ceil Floor Round Trunc Sign Sqrt Cbrt Pow Exp Ln Log Pi Degrees Radians Sin Cos Tan Cot
    Asin Acos Atan Atan2 Sinh Cosh Tanh Asinh Acosh Atanh Factorial IsNan IsInf Rand
    CurrentDate CurrentTime CurrentTimestamp Localtimestamp TimestampTrunc DateTrunc DateDiff
    DateAdd DateSub Year Quarter Month Week WeekOfYear Day DayOfMonth DayOfWeek DayOfWeekIso
    DayOfYear Hour Minute Second Dayname Monthname LastDay TimeToStr StrToTime StrToDate
    UnixToTime TimeToUnix DateFromParts TimeFromParts DateBin ToDays GenerateSeries
    Count CountIf Sum Avg Min Max Median Mode Quantile PercentileCont PercentileDisc
    ApproxDistinct ApproxQuantile ArrayAgg GroupConcat ArgMax ArgMin AnyValue First Last Stddev
    StddevPop StddevSamp Variance VariancePop Corr CovarPop CovarSamp LogicalAnd LogicalOr
    BitwiseAndAgg BitwiseOrAgg BitwiseXorAgg Kurtosis Skewness RegrAvgx RegrAvgy RegrCount
    RegrIntercept RegrR2 RegrSlope RegrSxx RegrSxy RegrSyy Grouping
    RowNumber Rank DenseRank PercentRank CumeDist Ntile Lag Lead FirstValue LastValue NthValue
    ArraySize ArrayContains ArrayContainsAll ArrayOverlaps ArrayDistinct ArrayFilter
    ArrayIntersect ArrayPosition ArraySlice ArrayConcat SortArray Transform Reduce Flatten
    StructExtract MapKeys MapFromEntries Uuid
    JSONExtract JSONExtractScalar JSONType JSONKeys JSONArray JSONObject FromJson
    """.split()  # noqa: SIM905 - a list of words, read as one
)
# DuckDB's functions that sqlglot leaves untyped, by name: the same families.
ALLOWED_NAMES = frozenset(
    """
    arbitrary entropy favg fsum histogram kahan_sum kurtosis_pop mad mean product
    reservoir_quantile sem geomean geometric_mean wavg weighted_avg
    age ago date_add date_part datepart date_sub datesub century decade era epoch_us epoch_ns
    isoyear julian microsecond millisecond nanosecond millennium weekday yearweek now
    get_current_timestamp transaction_timestamp current_localtime try_strptime
    make_timestamptz make_timestamp_ms timezone timezone_hour timezone_minute days_in_month
    to_centuries to_decades to_hours to_microseconds to_millennia to_milliseconds to_minutes
    to_months to_quarters to_seconds to_weeks to_years
    strip_accents nfc_normalize octet_length strlen ord printf prefix suffix regexp_escape
    regexp_split_to_array regexp_split_to_table left_grapheme right_grapheme length_grapheme
    substring_grapheme damerau_levenshtein hamming mismatches jaccard jaro_similarity
    url_decode url_encode base64 md5_number hash bit_count bar format_bytes like_escape
    ilike_escape
    even gamma lgamma gcd lcm isfinite nextafter round_even fdiv fmod signbit
    cardinality element_at array_extract list_extract list_element array_has_any list_has_all
    array_unique list_unique array_transform list_apply array_apply list_aggregate list_aggr
    array_aggregate list_reduce array_reduce list_intersect list_position list_indexof
    array_indexof list_slice list_cat list_concat array_cat list_select array_select
    list_where array_where list_zip array_zip list_grade_up array_grade_up array_value
    list_pack array_append array_prepend list_append list_prepend array_reverse list_reverse
    list_sum list_avg list_min list_max list_count list_first list_last list_median list_mode
    list_string_agg generate_subscripts
    map_concat map_contains map_entries map_extract map_extract_value map_values
    struct_extract_at struct_keys struct_values struct_insert union_extract union_tag
    json json_array_length json_contains json_exists json_value json_valid json_structure
    json_merge_patch json_pretty json_quote to_json array_to_json row_to_json
    json_group_array json_group_object json_transform
    """.split()  # noqa: SIM905 - a list of words, read as one
)
# The name a function is called by in the SQL sqlglot writes: `RANGE(0, 3)`.
CALLED_NAME = re.compile(r"(\w+)\(")
# A table name with these reads a file through DuckDB's replacement scans ("data.csv").
FILE_NAME_CHARACTERS = frozenset("./\\:*")


def check_query(sql: str) -> str:
    """The SQL to run for `sql` if it is one read-only SELECT over the dataset (DuckDB's
    dialect) calling allowed functions only; else raise `Unanswerable`."""
    _check_size(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
        if len(statements) != 1:
            raise Unanswerable(f"send exactly one SELECT statement, not {len(statements)}")
        (statement,) = statements
        _check_tree(statement)
        return statement.sql(dialect="duckdb", comments=False, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise Unanswerable(f"not valid SQL: {one_line(exc)}") from None
    except RecursionError:
        raise Unanswerable(f"the SQL nests too deeply; at most {MAX_NESTING} levels") from None


def _check_size(sql: str) -> None:
    """Refuse SQL longer than `MAX_SQL_CHARS`, or with brackets nested more than
    `MAX_NESTING` deep (counted outside quotes)."""
    if len(sql) > MAX_SQL_CHARS:
        raise Unanswerable(f"the SQL is {len(sql):,} characters long; at most {MAX_SQL_CHARS:,}")
    depth, quote = 0, ""
    for character in sql:
        if quote:
            # A doubled quote closes and opens again: the same as staying inside.
            quote = "" if character == quote else quote
        elif character in "'\"":
            quote = character
        elif character in OPENING:
            depth += 1
            if depth > MAX_NESTING:
                raise Unanswerable(f"the SQL nests too deeply; at most {MAX_NESTING} levels")
        elif character in CLOSING:
            depth = max(depth - 1, 0)


def _check_tree(statement: exp.Expression) -> None:
    for node in statement.walk():
        if isinstance(node, REFUSED_STATEMENTS):
            raise Unanswerable(
                f"only SELECT is allowed, not {_keyword(node)}: the server is read-only"
            )
    if not isinstance(statement, (exp.Select, exp.SetOperation, exp.Subquery)):
        raise Unanswerable(f"only SELECT is allowed, not {_keyword(statement)}")
    ctes = _cte_references(statement)
    for node in statement.walk():
        if isinstance(node, exp.Table):
            _check_table(node, ctes)
        elif isinstance(node, exp.Func) and not _allowed(node):
            raise Unanswerable(
                f"{_function_name(node)}() is not an allowed function: the server allows the "
                "usual text, number, date, list, JSON-value, aggregate and window functions"
            )


def _cte_references(statement: exp.Expression) -> set[int]:
    """The tables (by id) that name a CTE in their own scope: a CTE's name used outside its
    scope would reach whatever else DuckDB finds by that name."""
    return {
        id(table)
        for scope in traverse_scope(statement)
        for table in scope.tables
        if not table.db and not table.catalog and table.name in scope.cte_sources
    }


def _check_table(table: exp.Table, ctes: set[int]) -> None:
    """Refuse a table function or a table outside the dataset.

    Table functions read files, settings and catalogs, or run SQL strings; UNNEST, which
    spreads a value of the query into rows, is no table to sqlglot and passes as a function.
    """
    if isinstance(table.this, exp.Func):
        raise Unanswerable(
            f"{_function_name(table.this)}() is a table function: only the warehouse's tables "
            "and views can be read"
        )
    if id(table) in ctes:
        return
    if FILE_NAME_CHARACTERS.intersection(table.name):
        raise Unanswerable(
            f"table {table.name!r} looks like a file: only the warehouse's tables and views"
        )
    if table.catalog or table.db.lower() != settings.DATASET_NAME:
        raise Unanswerable(
            f"{table.sql(dialect='duckdb')} is not in the dataset: name its tables and views "
            f"{settings.DATASET_NAME}.<name> (list_tables names them)"
        )


def _allowed(function: exp.Func) -> bool:
    if isinstance(function, (exp.Anonymous, exp.AnonymousAggFunc)):
        return function.name.lower() in ALLOWED_NAMES
    return type(function) in ALLOWED_FUNCTIONS


def _function_name(function: exp.Func) -> str:
    """The function's name as DuckDB would be asked to run it, e.g. range for sqlglot's
    GenerateSeries."""
    if isinstance(function, (exp.Anonymous, exp.AnonymousAggFunc)):
        return function.name.lower()
    written = CALLED_NAME.match(function.sql(dialect="duckdb"))
    return (written.group(1) if written else function.sql_name()).lower()


def _keyword(node: exp.Expression) -> str:
    """The statement's leading keyword as written, e.g. INSERT, ATTACH, PRAGMA."""
    words = node.sql(dialect="duckdb").split()
    return words[0].upper() if words else type(node).__name__.upper()
