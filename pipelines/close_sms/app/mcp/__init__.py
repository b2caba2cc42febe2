"""`close-sms mcp`: a read-only Model Context Protocol server over stdio for the warehouse.

`server` answers the client, `query_check` checks each query, `pool` runs the worker
processes, `worker` is the program each of them runs, and `status` reads `sync_status` from
the database. Nothing is imported here: a worker imports its own module and duckdb only.
"""


class Unanswerable(Exception):
    """A question the server refuses or cannot answer; the message says why in one line."""
