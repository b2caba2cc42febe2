"""Databases on the test PostgreSQL server that `.ci/run` starts (`.ci/postgres`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg2


@contextmanager
def postgres_database(server: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards; its credentials URL.

    The `postgres` fixture gives one per test; module-scoped fixtures use this directly.
    """
    name = f"close_sms_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(server)
        # dlt asks for a password; the test server's trust authentication ignores it.
        user = f"{parts.username}:{parts.password or 'test'}"
        netloc = f"{user}@{parts.hostname}:{parts.port or 5432}"
        yield urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


TERMINATE_LOCK_HOLDERS = (
    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def terminate_lock_holders(dsn: str) -> int:
    """End the sessions that hold an advisory lock on the database of `dsn`; how many."""
    con = psycopg2.connect(dsn)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(TERMINATE_LOCK_HOLDERS)
            return len(cur.fetchall())
    finally:
        con.close()
