"""Times every analytics view on 1M synthetic SMS (a script, not a test).

    python tests/benchmarks/bench_views.py [--rows 1000000] [--threads 2] [--repeats 3]
                                           [--database PATH]

The views are applied through a dlt sql client as the sync applies them, which also creates
the empty base tables with dlt's types; the data is then generated inside DuckDB: ~20k leads, 50 users, both directions, every status, ~10%
of SMS with 1-3 attachments and ~2 events per SMS. Each view is timed by materialising it
fully (CREATE TEMP TABLE AS SELECT *), so no projection pushdown hides work.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dlt
import duckdb

from close_sms.source.settings import DATASET_NAME
from close_sms.warehouse.views import apply_views


def generate(connection: duckdb.DuckDBPyConnection, rows: int) -> None:
    """Fill the (empty) base tables with `rows` SMS, their attachments and events."""
    # hash() is UBIGINT; a BIGINT bucket keeps list indexing and arithmetic simple.
    connection.execute("CREATE OR REPLACE TEMP MACRO hm(x, n) AS CAST(hash(x) % n AS BIGINT)")
    leads = max(rows // 50, 1)
    connection.execute(
        f"""
        INSERT INTO close_sms.sms BY NAME
        SELECT
            printf('acti_%010d', i) AS id,
            'SMS' AS _type,
            'orga_1' AS organization_id,
            printf('lead_%07d', hm(i, {leads})) AS lead_id,
            printf('user_%03d', hm(i * 7, 50)) AS user_id,
            printf('User %03d', hm(i * 7, 50)) AS user_name,
            TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i * 30) AS date_created,
            TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i * 30 + 5) AS date_updated,
            TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i * 30) AS activity_at,
            CASE WHEN hm(i * 3, 10) < 6
                THEN TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i * 30 + 2) END
                AS date_sent,
            CASE WHEN hm(i * 11, 2) = 0 THEN 'inbound' ELSE 'outbound' END AS direction,
            CASE WHEN hm(i * 11, 2) = 0 THEN 'inbox'
                ELSE ['sent', 'sent', 'sent', 'sent', 'error', 'draft', 'scheduled', 'outbox']
                    [1 + hm(i * 13, 8)] END AS status,
            'Close.io' AS source,
            'hello ' || i AS text,
            '+1555' || lpad(CAST(hm(i, {leads}) AS VARCHAR), 7, '0') AS remote_phone,
            '+15550000000' AS local_phone,
            CAST((hm(i, 100)) / 1000 AS DECIMAL(18, 6)) AS cost,
            CASE WHEN hm(i * 13, 8) = 4
                THEN ['Carrier violation', 'Unreachable', 'Blocked'][1 + hm(i, 3)] END
                AS error_message,
            uuid()::VARCHAR AS _dlt_load_id,
            printf('dlt_%010d', i) AS _dlt_id
        FROM range({rows}) AS t(i)
        """
    )
    connection.execute(
        f"""
        INSERT INTO close_sms.sms__attachments BY NAME
        SELECT
            printf('media_%010d_%d', i, k) AS media_id,
            'image/jpeg' AS content_type,
            'photo.jpg' AS filename,
            CAST(1000 + hm(i + k, 100000) AS BIGINT) AS size,
            'https://example.invalid/' || i || '/' || k AS url,
            printf('dlt_%010d', i) AS _dlt_root_id,
            printf('dlt_%010d', i) AS _dlt_parent_id,
            k AS _dlt_list_idx,
            printf('att_%010d_%d', i, k) AS _dlt_id
        FROM range({rows}) AS t(i), range(3) AS n(k)
        WHERE hm(i * 17, 10) = 0 AND k <= hm(i * 19, 3)
        """
    )
    connection.execute(
        f"""
        INSERT INTO close_sms.sms_events BY NAME
        SELECT
            printf('ev_%010d_%d', i, k) AS id,
            'activity.sms' AS object_type,
            printf('acti_%010d', i) AS object_id,
            ['created', 'sent', 'updated'][k + 1] AS action,
            TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i * 30 + k * 2) AS date_created,
            TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i * 30 + k * 2) AS date_updated,
            printf('lead_%07d', hm(i, {leads})) AS lead_id,
            uuid()::VARCHAR AS _dlt_load_id,
            printf('evdlt_%010d_%d', i, k) AS _dlt_id
        FROM range({rows}) AS t(i), range(2) AS n(k)
        """
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per view")
    parser.add_argument("--database", type=Path, default=None, help="default: a temp file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        database = args.database or Path(tmp) / "bench.duckdb"
        pipeline = dlt.pipeline(
            pipeline_name="bench_views",
            pipelines_dir=str(Path(tmp) / "pipelines"),
            destination=dlt.destinations.duckdb(str(database)),
            dataset_name=DATASET_NAME,
        )
        with pipeline.sql_client() as sql:
            views = apply_views(sql)
            connection = sql.native_connection
            connection.execute(f"SET threads = {args.threads}")
            started = time.perf_counter()
            generate(connection, args.rows)
            counts = {
                table: connection.execute(f"SELECT count(*) FROM close_sms.{table}").fetchone()[0]
                for table in ("sms", "sms__attachments", "sms_events")
            }
            print(f"generated {counts} in {time.perf_counter() - started:.1f} s")
            connection.execute("CHECKPOINT")
            print(
                f"threads={args.threads}; seconds to materialise, "
                f"first run and best of {args.repeats}"
            )
            print(f"{'view':<28}{'rows':>10}{'first':>8}{'best':>8}")
            # Copying the raw table is the floor any view over all SMS pays.
            for label, source in [("(copy of raw sms table)", "close_sms.sms")] + [
                (view, f"close_sms.{view}") for view in views
            ]:
                timings = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    connection.execute(
                        f"CREATE OR REPLACE TEMP TABLE bench_result AS SELECT * FROM {source}"
                    )
                    timings.append(time.perf_counter() - started)
                (n,) = connection.execute("SELECT count(*) FROM bench_result").fetchone()
                print(f"{label:<28}{n:>10}{timings[0]:>8.3f}{min(timings):>8.3f}")


if __name__ == "__main__":
    main()
