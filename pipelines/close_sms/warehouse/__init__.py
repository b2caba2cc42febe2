"""Where the sync loads: the destination, its lock, views, ledger, status and report."""

# The DuckDB file of `close-sms` commands given no --database; here so the CLI's help names it
# without loading dlt.
DEFAULT_DATABASE = "warehouse.duckdb"
