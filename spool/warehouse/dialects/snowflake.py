"""Snowflake: PostgreSQL's SQL with Snowflake's types and limits (issue 15, begun).

Declared and pinned so far: types, names and DDL (golden test), and every statement a load
of the golden input sends parses as Snowflake SQL (sqlglot). Not yet: staging (``COPY INTO``
a stage table from the S3 spool's Parquet, ``MATCH_BY_COLUMN_NAME``), the catalog, the
connection; so the dialect is not among the destination kinds (``DIALECTS``).

* identifiers are quoted, and Spool's are lower case: a user queries ``"orders"`` (quoted),
  or sets ``QUOTED_IDENTIFIERS_IGNORE_CASE`` for the session; at most 255 characters;
* ``VARCHAR`` without a length is Snowflake's largest (16 MB): nothing ever widens;
* integers are ``NUMBER(38,0)``, numbers ``FLOAT``, date-times ``TIMESTAMP_TZ``.
"""

from __future__ import annotations

from spool.warehouse.dialects.base import Capabilities, Dialect
from spool.warehouse.dialects.duckdb import DuckDBDdl
from spool.warehouse.dialects.postgres import (
    PostgresBookkeeping,
    PostgresCatalog,
    PostgresErrors,
    PostgresMerge,
    PostgresStaging,
    PostgresTypes,
    PostgresViews,
)


class SnowflakeTypes(PostgresTypes):
    SQL_TYPES = {"string": "VARCHAR", "integer": "NUMBER(38,0)", "number": "FLOAT",
                 "boolean": "BOOLEAN", "date-time": "TIMESTAMP_TZ"}


class SnowflakeDdl(DuckDBDdl):
    """No widening and no indexes (Snowflake has none), as for DuckDB."""


SNOWFLAKE = Dialect(
    name="snowflake",
    caps=Capabilities(identifier_bytes=255, max_varchar_bytes=16 * 1024 * 1024,
                      staging="s3_copy_into", advisory_locks=False, indexes=False),
    types=SnowflakeTypes(), ddl=SnowflakeDdl(), staging=PostgresStaging(),
    merge=PostgresMerge(), bookkeeping=PostgresBookkeeping(), catalog=PostgresCatalog(),
    views=PostgresViews(), errors=PostgresErrors())
