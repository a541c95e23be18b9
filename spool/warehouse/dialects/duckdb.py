"""DuckDB, the embedded analytical database: PostgreSQL's SQL with DuckDB's types and limits.

A load runs on a DuckDB database file through spool.warehouse.duckdb_session (the loader
opens it for each load and closes it after), pinned by golden DDL and rows. Facts designed
for:

* one writing process per database file: loads into one file are serialised by the loader,
  not by advisory locks (DuckDB has none);
* ``ALTER TABLE`` fails on tables with indexes or key constraints (duckdb#6737, #14664): the
  dialect creates neither;
* ``VARCHAR`` has no length: nothing ever widens;
* identifiers are case-insensitive even when quoted (``Foo`` and ``foo`` are one table):
  Spool's names are lower case already, and a user's own relation names must be compared
  without case when a new name is made unique.
"""

from __future__ import annotations

import duckdb

from spool.warehouse.dialects.base import (
    Capabilities,
    Dialect,
    TerminalError,
    TransientError,
    quote,
)
from spool.warehouse.dialects.postgres import (
    PostgresBookkeeping,
    PostgresErrors,
    PostgresMerge,
    PostgresTypes,
    PostgresViews,
    UncountedCatalog,
    UnindexedDdl,
    UnindexedStaging,
)

# identifiers: DuckDB sets no practical limit; Spool keeps names readable at 255 bytes, the
# limit of Snowflake, so the two embedded and cloud ends of the contract name alike
IDENTIFIER_BYTES = 255


class DuckDBTypes(PostgresTypes):
    SQL_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE",
                 "boolean": "BOOLEAN", "date-time": "TIMESTAMPTZ"}

    def spelled(self, catalog_type: str) -> str:
        return {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}.get(catalog_type, catalog_type)


class DuckDBDdl(UnindexedDdl):  # an index would make every later ALTER TABLE fail
    def alter_type(self, schema: str, table: str, column: str, sql_type: str) -> str:
        raise AssertionError("DuckDB's VARCHAR has no length: no column is ever widened")


class DuckDBStaging(UnindexedStaging):
    CREATE_STAGE = "CREATE TABLE {table} ({columns})"

    def insert_arrow(self, target: str, columns: list[str], source: str) -> str:
        """Insert the rows of ``source`` (an Arrow table registered under that name) into
        ``target`` by column name; DuckDB casts each to the target column's type."""
        cols = ", ".join(quote(c) for c in columns)
        return f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {quote(source)}"


class DuckDBBookkeeping(PostgresBookkeeping):
    def lock_schema(self, schema: str) -> tuple[str, tuple]:
        return "SELECT 1", ()  # one writing process per database file: nothing to wait for

    def millionths(self, expr: str) -> str:
        return f"({expr} // 1000000)"  # DuckDB's / of integers is a float


class DuckDBCatalog(UncountedCatalog):
    def relations(self) -> str:
        return ("SELECT name FROM (SELECT database_name, schema_name, table_name AS name "
                "FROM duckdb_tables() UNION ALL SELECT database_name, schema_name, view_name "
                "FROM duckdb_views()) WHERE database_name = current_database() "
                "AND schema_name = %s")

    def physical_columns(self) -> str:
        return ("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = %s "
                "AND table_name IN %s")

    def dependent_views(self) -> str:
        raise AssertionError("DuckDB's VARCHAR has no length: no view is rebuilt")


class DuckDBErrors(PostgresErrors):
    # the file cannot be opened at all: waiting cannot fix a path or its permissions
    TERMINAL_MESSAGES = ("permission denied", "no such file", "read-only file system",
                         "is a directory", "not a directory")

    def refused(self, exc: BaseException) -> bool:
        # DuckDB's own errors only: a batch file missing on disk is one batch's failure
        return isinstance(exc, duckdb.Error) and \
            any(m in str(exc).lower() for m in self.TERMINAL_MESSAGES)

    def classify(self, exc: BaseException) -> type[Exception]:
        if isinstance(exc, (TransientError, TerminalError)):
            return type(exc)
        if isinstance(exc, duckdb.IOException) and not self.refused(exc):
            return TransientError  # another process holds the file's write lock
        return TerminalError


DUCKDB = Dialect(
    name="duckdb",
    caps=Capabilities(identifier_bytes=IDENTIFIER_BYTES, max_varchar_bytes=None,
                      staging="arrow", advisory_locks=False, indexes=False,
                      case_insensitive_names=True),
    types=DuckDBTypes(), ddl=DuckDBDdl(), staging=DuckDBStaging(), merge=PostgresMerge(),
    bookkeeping=DuckDBBookkeeping(), catalog=DuckDBCatalog(), views=PostgresViews(),
    errors=DuckDBErrors())
