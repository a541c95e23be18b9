"""DuckDB, the embedded analytical database: PostgreSQL's SQL with DuckDB's types and limits.

Work in progress (issue 15): the types, DDL and limits are declared and pinned by the golden
test; the loader does not load into DuckDB yet, so the dialect is not among the destination
kinds (``DIALECTS``). Facts designed for:

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

from spool.warehouse.dialects.base import Capabilities, Dialect
from spool.warehouse.dialects.postgres import (
    PostgresBookkeeping,
    PostgresCatalog,
    PostgresDdl,
    PostgresErrors,
    PostgresMerge,
    PostgresStaging,
    PostgresTypes,
    PostgresViews,
)

# identifiers: DuckDB sets no practical limit; Spool keeps names readable at 255 bytes, the
# limit of Snowflake, so the two embedded and cloud ends of the contract name alike
IDENTIFIER_BYTES = 255


class DuckDBTypes(PostgresTypes):
    SQL_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE",
                 "boolean": "BOOLEAN", "date-time": "TIMESTAMPTZ"}

    def spelled(self, catalog_type: str) -> str:
        return {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}.get(catalog_type, catalog_type)


class DuckDBDdl(PostgresDdl):
    def alter_type(self, schema: str, table: str, column: str, sql_type: str) -> str:
        raise AssertionError("DuckDB's VARCHAR has no length: no column is ever widened")

    def index_record_id(self, schema: str, table: str) -> str | None:
        return None  # an index would make every later ALTER TABLE fail

    def index_keys(self, schema: str, table: str, keys: list[str]) -> str | None:
        return None

    def index_load_log(self, schema: str) -> str | None:
        return None


DUCKDB = Dialect(
    name="duckdb",
    caps=Capabilities(identifier_bytes=IDENTIFIER_BYTES, max_varchar_bytes=None,
                      staging="arrow", advisory_locks=False, indexes=False,
                      case_insensitive_names=True),
    types=DuckDBTypes(), ddl=DuckDBDdl(), staging=PostgresStaging(), merge=PostgresMerge(),
    bookkeeping=PostgresBookkeeping(), catalog=PostgresCatalog(), views=PostgresViews(),
    errors=PostgresErrors())
