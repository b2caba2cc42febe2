"""`close-sms mcp`, driven by the MCP SDK's own client over stdio, against a synced warehouse."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import anyio
import duckdb
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from close_api_emulator import DEMO_API_KEY, Emulator, EmulatorConfig, EmulatorServer
from close_sms.app import cli
from close_sms.app.mcp import Unanswerable, check_query
from close_sms.warehouse.destination import Warehouse
from close_sms.warehouse.lock import writer_lock
from tests.reliability.helpers import file_digest
from tests.support import Target, cli_command, cli_env, run_cli, sync

T = TypeVar("T")
TOOLS = {"list_tables", "describe_table", "query", "sync_status"}
VIEW_COMMENT = "One row per UTC message_date x direction x status."
COLUMN_COMMENT = "inbound or outbound"
REFUSALS = {
    "INSERT INTO close_sms.sms (id) VALUES ('x')": "not INSERT",
    "UPDATE close_sms.sms SET text = 'x'": "not UPDATE",
    "DELETE FROM close_sms.sms": "not DELETE",
    "DROP VIEW close_sms.sms_daily": "not DROP",
    "CREATE TABLE close_sms.t AS SELECT 1": "not CREATE",
    "ATTACH 'other.duckdb' AS other": "not ATTACH",
    "COPY close_sms.sms TO 'out.csv'": "not COPY",
    "PRAGMA database_list": "not PRAGMA",
    "SET enable_external_access = true": "not SET",
    "INSTALL httpfs": "not INSTALL",
    "LOAD httpfs": "not LOAD",
    "DESCRIBE close_sms.sms": "not DESCRIBE",
    "SELECT 1; SELECT 2": "exactly one SELECT statement, not 2",
    "SELECT 1; DROP TABLE close_sms.sms": "exactly one SELECT statement, not 2",
    "SELECT * FROM read_csv('/etc/passwd')": "read_csv() reads outside the warehouse",
    "SELECT * FROM read_parquet('x.parquet')": "read_parquet() reads outside the warehouse",
    "SELECT * FROM glob('*')": "glob() reads outside the warehouse",
    "SELECT * FROM query('SELECT 1')": "query() reads outside the warehouse",
    "SELECT * FROM '/etc/passwd.csv'": "looks like a file",
    "WITH x AS (SELECT * FROM read_json('a.json')) SELECT * FROM x": "read_json()",
    "SELEC 1": "not valid SQL",
}


def in_session(database: Path, body: Callable[[ClientSession], Awaitable[T]], *options: str) -> T:
    """Start `close-sms mcp --database DATABASE OPTIONS` and run `body` with a client session."""

    async def run() -> T:
        server = StdioServerParameters(
            command=sys.executable,
            args=[*cli_command("mcp", "--database", str(database), *options)[1:]],
            env=cli_env(None),
        )
        with tempfile.TemporaryFile("w+") as errlog:
            try:
                async with (
                    stdio_client(server, errlog=errlog) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    return await body(session)
            except BaseException:
                errlog.seek(0)
                print(errlog.read(), file=sys.stderr)
                raise

    return anyio.run(run)


def ask(database: Path, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
    """One tool call on a fresh server."""

    async def call(session: ClientSession) -> CallToolResult:
        return await session.call_tool(tool, arguments or {})

    return in_session(database, call)


def answer(result: CallToolResult) -> Any:
    """A tool's structured answer; fails on an error result."""
    assert not result.is_error, result.content
    content = result.structured_content
    return content["result"] if set(content) == {"result"} else content


def error(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    (content,) = result.content
    return content.text


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A synced DuckDB file with comments on a view, and its reader copy."""
    folder = tmp_path_factory.mktemp("mcp")
    database, copy = folder / "warehouse.duckdb", folder / "warehouse_readers.duckdb"
    emulator = Emulator(EmulatorConfig())
    emulator.generate(n=300, seed=41)
    server = EmulatorServer(emulator).start()
    try:
        running = SimpleNamespace(base_url=server.base_url, api_key=DEMO_API_KEY)
        warehouse = Warehouse.configure(database=database, reader_copy=copy)
        sync(running, Target("duckdb", warehouse, ()))
    finally:
        server.stop()
    with duckdb.connect(str(database)) as connection:
        connection.execute(f"COMMENT ON VIEW close_sms.sms_daily IS '{VIEW_COMMENT}'")
        connection.execute(f"COMMENT ON COLUMN close_sms.sms_daily.direction IS '{COLUMN_COMMENT}'")
    yield database, copy


def direct(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_the_tools_and_their_schemas(synced: tuple[Path, Path]) -> None:
    async def tools(session: ClientSession) -> Any:
        return (await session.list_tools()).tools

    listed = {tool.name: tool for tool in in_session(synced[0], tools)}

    assert set(listed) == TOOLS
    for tool in listed.values():
        assert tool.description
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
        assert tool.output_schema is not None
    assert listed["query"].input_schema["required"] == ["sql"]
    assert listed["query"].input_schema["properties"]["sql"]["type"] == "string"
    assert listed["describe_table"].input_schema["required"] == ["name"]
    assert listed["list_tables"].input_schema["properties"] == {}
    assert set(listed["query"].output_schema["properties"]) == {
        "columns",
        "rows",
        "row_count",
        "truncated",
    }


def test_tables_and_columns_come_with_the_databases_comments(synced: tuple[Path, Path]) -> None:
    database, _ = synced

    async def both(session: ClientSession) -> tuple[Any, Any]:
        tables = answer(await session.call_tool("list_tables", {}))
        daily = answer(await session.call_tool("describe_table", {"name": "close_sms.sms_daily"}))
        return tables, daily

    tables, daily = in_session(database, both)

    by_name = {table["name"]: table for table in tables}
    assert {"sms", "sms_events", "sms_messages", "sms_daily", "sms_conversations"} <= set(by_name)
    assert not [name for name in by_name if name.startswith("_dlt_")]
    assert by_name["sms"]["kind"] == "table" and by_name["sms_daily"]["kind"] == "view"
    assert by_name["sms_daily"]["description"] == VIEW_COMMENT
    assert daily["description"] == VIEW_COMMENT
    expected = direct(
        database,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'close_sms' AND table_name = 'sms_daily' ORDER BY ordinal_position",
    )
    assert [(c["name"], c["type"]) for c in daily["columns"]] == expected
    described = {c["name"]: c["description"] for c in daily["columns"]}
    assert described["direction"] == COLUMN_COMMENT
    # The others carry what the data dictionary wrote when the views were applied.
    ((status_comment,),) = direct(
        database,
        "SELECT comment FROM duckdb_columns() WHERE schema_name = 'close_sms' "
        "AND table_name = 'sms_daily' AND column_name = 'status'",
    )
    assert status_comment and described["status"] == status_comment


def test_describing_what_is_not_there_says_so(synced: tuple[Path, Path]) -> None:
    result = ask(synced[0], "describe_table", {"name": "no_such_view"})

    assert "no table or view no_such_view (list_tables names them)" in error(result)


def test_a_query_answers_what_direct_sql_does(synced: tuple[Path, Path]) -> None:
    database, copy = synced
    sql = (
        "SELECT direction, status, count(*) AS n, min(message_date) AS first_day "
        "FROM close_sms.sms_messages GROUP BY ALL ORDER BY ALL"
    )

    result = answer(ask(copy, "query", {"sql": sql}))

    expected = [[d, s, n, str(day)] for d, s, n, day in direct(database, sql)]
    assert result == {
        "columns": ["direction", "status", "n", "first_day"],
        "rows": expected,
        "row_count": len(expected),
        "truncated": False,
    }
    assert (
        sum(row[2] for row in result["rows"])
        == direct(database, "SELECT count(*) FROM close_sms.sms")[0][0]
        > 0
    )


def test_rows_stop_at_the_cap_and_slow_queries_at_the_timeout(synced: tuple[Path, Path]) -> None:
    async def both(session: ClientSession) -> tuple[CallToolResult, CallToolResult]:
        capped = await session.call_tool(
            "query", {"sql": "SELECT id FROM close_sms.sms ORDER BY id"}
        )
        slow = await session.call_tool(
            "query", {"sql": "SELECT sum(i * i) FROM range(1000000000000) AS t(i)"}
        )
        return capped, slow

    capped, slow = in_session(synced[0], both, "--max-rows", "7", "--timeout", "1")

    ids = [row[0] for row in direct(synced[0], "SELECT id FROM close_sms.sms ORDER BY id LIMIT 7")]
    assert answer(capped) == {
        "columns": ["id"],
        "rows": [[i] for i in ids],
        "row_count": 7,
        "truncated": True,
    }
    assert "the query ran longer than 1 s and was stopped (--timeout)" in error(slow)


def test_everything_but_one_select_is_refused(synced: tuple[Path, Path]) -> None:
    database, _ = synced
    before = file_digest(database)

    async def every(session: ClientSession) -> dict[str, CallToolResult]:
        return {sql: await session.call_tool("query", {"sql": sql}) for sql in REFUSALS}

    results = in_session(database, every)

    for sql, reason in REFUSALS.items():
        assert reason in error(results[sql]), sql
    assert file_digest(database) == before
    assert not (database.parent / "out.csv").exists()


@pytest.mark.parametrize("sql", sorted(REFUSALS))
def test_the_check_refuses_what_the_server_refuses(sql: str) -> None:
    with pytest.raises(Unanswerable, match=REFUSALS[sql].replace("(", r"\(").replace(")", r"\)")):
        check_query(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM close_sms.sms_daily",
        "FROM close_sms.sms_daily",
        "WITH d AS (SELECT * FROM close_sms.sms_daily) SELECT count(*) FROM d",
        "SELECT 1 UNION ALL SELECT 2",
        "(SELECT 1)",
        "SELECT * FROM range(3)",
        "SELECT 1;",
    ],
)
def test_the_check_lets_selects_through(sql: str) -> None:
    check_query(sql)


def test_sync_status_is_what_close_sms_status_reports(synced: tuple[Path, Path]) -> None:
    database, _ = synced

    status = answer(ask(database, "sync_status"))

    reported = run_cli("status", "--json", "--database", str(database), api_key=None)
    assert reported.returncode == 0, reported.stderr
    expected = json.loads(reported.stdout)
    assert set(status) == set(expected)
    # Read a moment apart.
    status.pop("behind_seconds"), expected.pop("behind_seconds")
    assert status == expected
    assert status["tables"]["sms"] > 0


def test_answers_from_the_reader_copy_while_a_sync_holds_the_writer_lock(
    synced: tuple[Path, Path],
) -> None:
    database, copy = synced
    sql = "SELECT count(*) FROM close_sms.sms_messages"

    async def both(session: ClientSession) -> tuple[Any, Any]:
        counted = answer(await session.call_tool("query", {"sql": sql}))
        status = answer(await session.call_tool("sync_status", {}))
        return counted, status

    # A sync mid-write: its lock taken and the file open for writing.
    with writer_lock(Warehouse.configure(database=database)), duckdb.connect(str(database)):
        counted, status = in_session(copy, both)
        on_the_database = ask(database, "query", {"sql": sql})

    assert counted["rows"] == [[direct(database, sql)[0][0]]]
    assert status["warehouse"] == str(copy) and status["tables"]["sms"] == counted["rows"][0][0]
    assert "a sync is writing" in error(on_the_database)
    assert "serve the reader copy" in error(on_the_database)


def test_the_file_is_never_held_between_calls(synced: tuple[Path, Path]) -> None:
    database, _ = synced
    sql = "SELECT count(*) FROM close_sms.sms"

    async def around_a_writer(session: ClientSession) -> tuple[Any, Any]:
        before = answer(await session.call_tool("query", {"sql": sql}))
        # A writer (the sync) opens the file between two calls: nothing holds it.
        with duckdb.connect(str(database)) as writer:
            writer.execute("CHECKPOINT")
        after = answer(await session.call_tool("query", {"sql": sql}))
        return before, after

    before, after = in_session(database, around_a_writer)

    assert before == after and before["rows"][0][0] > 0


def test_a_missing_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["mcp", "--database", str(tmp_path / "nowhere.duckdb")])

    assert status == 2
    assert capsys.readouterr().err.strip() == (
        f"close-sms: error: --database: {tmp_path / 'nowhere.duckdb'} does not exist; "
        "run `close-sms sync` first"
    )


def test_without_the_mcp_extra_it_says_what_to_install(
    synced: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)

    status = cli.main(["mcp", "--database", str(synced[0])])

    assert status == 2
    assert capsys.readouterr().err.strip() == (
        "close-sms: error: close-sms mcp needs mcp, which is not installed: "
        "pip install 'close-sms[mcp]'"
    )
