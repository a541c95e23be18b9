"""Snowflake: PostgreSQL's SQL with Snowflake's types, limits, staging and transactions.

A load runs through spool.warehouse.snowflake_session (the Snowflake connector, values
rendered on the client as psycopg2 does) and stages with ``COPY INTO`` from Parquet
(spool.warehouse.stagers.SnowflakeStager). Facts designed for:

* every DDL statement commits the transaction before it and itself
  (``transactional_ddl=False``): a load records the names it decides, and the schema
  changes, before its DDL, which is idempotent (``IF NOT EXISTS``), then takes the schema's
  lock again, checks the load log again and merges in a transaction of its own
  (spool.warehouse.load);
* no advisory locks and no ``LOCK``: an ``UPDATE`` of the contract table holds the table's
  lock until the transaction ends, which serialises loads of one schema;
* identifiers are quoted, and Spool's are lower case: a user queries ``"acme"."orders"``
  (quoted: unquoted, Snowflake would look for ACME.ORDERS); at most 255 characters;
* ``VARCHAR`` without a length is Snowflake's largest (16 MB): nothing ever widens;
* integers are ``NUMBER(38,0)``, numbers ``FLOAT``, date-times ``TIMESTAMP_TZ``;
* no indexes (micro-partitions are pruned without them);
* an upsert is one ``MERGE`` (spool.warehouse.dialects.snowflake.SnowflakeMerge).
"""

from __future__ import annotations

import re

from spool.warehouse.contract import CONTRACT_TABLE
from spool.warehouse.dialects.base import (
    Capabilities,
    Dialect,
    TerminalError,
    TransientError,
    qualified,
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
    _value,
)

IDENTIFIER_BYTES = 255
MAX_VARCHAR_BYTES = 16 * 1024 * 1024


class SnowflakeTypes(PostgresTypes):
    SQL_TYPES = {"string": "VARCHAR", "integer": "NUMBER(38,0)", "number": "FLOAT",
                 "boolean": "BOOLEAN", "date-time": "TIMESTAMP_TZ"}

    def spelled(self, catalog_type: str) -> str:
        # information_schema says TEXT for VARCHAR; NUMBER's precision is read with it
        return {"TEXT": "VARCHAR"}.get(catalog_type, catalog_type)


class SnowflakeDdl(UnindexedDdl):
    """No widening and no indexes. Columns are added ``IF NOT EXISTS``: the DDL of a load
    that failed after it committed runs again with the retry."""

    def add_column(self, schema: str, table: str, column: str, sql_type: str) -> str:
        return (f"ALTER TABLE {qualified(schema, table)} ADD COLUMN IF NOT EXISTS "
                f"{quote(column)} {sql_type}")

    def alter_type(self, schema: str, table: str, column: str, sql_type: str) -> str:
        raise AssertionError("Snowflake's VARCHAR is created at its largest: no column is "
                             "ever widened")


class SnowflakeStaging(UnindexedStaging):
    # transient: no fail-safe copies of rows that live for one transaction
    CREATE_STAGE = "CREATE TRANSIENT TABLE IF NOT EXISTS {table} ({columns})"

    def clear(self, table: str) -> str:
        return f"DELETE FROM {table}"  # TRUNCATE is DDL: it would commit the load

    def put(self, local_path: str, table_stage: str) -> str:
        """Upload a local file to a table's own stage (``@schema."%table"``)."""
        path = local_path.replace("\\", "/").replace("'", "\\'")
        return f"PUT 'file://{path}' {table_stage} AUTO_COMPRESS=FALSE OVERWRITE=TRUE"

    def table_stage(self, schema: str, table: str) -> str:
        return f"@{quote(schema)}.{quote('%' + table)}"

    def copy_into(self, target: str, source: str, integration: str | None = None) -> str:
        """Rows of a Parquet file into ``target`` (quoted), its columns matched by name.
        ``source``: ``@stage/path`` or a quoted ``'s3://...'`` URL read with the storage
        ``integration``. FORCE: a retried load copies its file again (Snowflake would
        otherwise skip a file it loaded within 64 days)."""
        # an integration is an account-level name, written as the user gave it (checked
        # to be a plain identifier when the destination was registered)
        via = f" STORAGE_INTEGRATION = {integration}" if integration else ""
        return (f"COPY INTO {target} FROM {source}{via} FILE_FORMAT = (TYPE = PARQUET) "
                "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE")


class SnowflakeMerge(PostgresMerge):
    def upsert(self, target: str, stage: str, slot: int, columns: list[tuple[str, str, str]],
               keys: list[tuple[str, str, str]], seq: tuple[str, str, str],
               unstaged: list[str]) -> list[str]:
        """One ``MERGE``: a stored row of a staged key is replaced, unless stored with a
        higher sequence, as a whole (columns the stage has no values for become NULL, as
        where the row is deleted and inserted); a new key is inserted."""
        values = ", ".join(f"{_value(stage, v, t)} AS {quote(c)}" for c, v, t in columns)
        on = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c, _v, _t in keys)
        s_seq, t_seq = f"s.{quote(seq[0])}", f"t.{quote(seq[0])}"
        sets = ", ".join([*(f"{quote(c)} = s.{quote(c)}" for c, _v, _t in columns),
                          *(f"{quote(c)} = NULL" for c in unstaged)])
        cols = ", ".join(quote(c) for c, _v, _t in columns)
        inserted = ", ".join(f"s.{quote(c)}" for c, _v, _t in columns)
        return [f"MERGE INTO {target} AS t USING (SELECT {values} FROM {stage} "
                f"WHERE {self._slot(stage, slot)}) AS s ON {on} "
                f"WHEN MATCHED AND COALESCE({t_seq} > {s_seq}, FALSE) = FALSE THEN UPDATE SET "
                f"{sets} WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({inserted})"]


class SnowflakeBookkeeping(PostgresBookkeeping):
    def lock_schema(self, schema: str) -> tuple[str, tuple]:
        """An UPDATE holds the contract table's lock until the transaction ends: loads of
        the schema take turns (Snowflake has no advisory locks and no LOCK)."""
        table = qualified(schema, CONTRACT_TABLE)
        return f"UPDATE {table} SET {quote('version')} = {quote('version')}", ()

    def millionths(self, expr: str) -> str:
        return f"TRUNC({expr} / 1000000)"  # NUMBER division is exact, with decimals

    def epoch_ms(self, expr: str) -> str:
        return f"DATE_PART(EPOCH_MILLISECOND, {expr})"


class SnowflakeCatalog(UncountedCatalog):
    def relations(self) -> str:
        return ("SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s")

    def physical_columns(self) -> str:
        return ("SELECT table_name, column_name, CASE WHEN data_type = 'NUMBER' THEN "
                "'NUMBER(' || numeric_precision || ',' || numeric_scale || ')' "
                "ELSE data_type END FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name IN %s")

    def dependent_views(self) -> str:
        raise AssertionError("Snowflake's VARCHAR never widens: no view is rebuilt")


class SnowflakeErrors(PostgresErrors):
    # a statement that waited too long for a lock, a warehouse resuming or overloaded
    TRANSIENT_MESSAGES = ("lock", "timeout", "try again", "resuming", "queued",
                          "temporarily unavailable")
    # the account refuses the user, role, database or schema: no batch can load until a
    # person fixes it (390100-390199: the login's error codes, but for an expired session or
    # token, which a new connection mends; 28xxx: SQL's own). A table's own "does not exist
    # or not authorized" or missing privilege is that table's, not the destination's.
    LOGIN_EXPIRED = (390112, 390114)
    TERMINAL_MESSAGES = re.compile(
        r"incorrect username or password|user is locked|user is disabled"
        r"|(database|schema) '[^']*' does not exist or not authorized"
        r"|insufficient privileges to operate on (database|schema)")

    def refused(self, exc: BaseException) -> bool:
        import snowflake.connector.errors as sf_errors

        if not isinstance(exc, sf_errors.Error):
            return False  # a batch file's or the object store's failure is not the account's
        errno = getattr(exc, "errno", None)
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        text = str(exc).lower()
        return (isinstance(errno, int) and 390100 <= errno < 390200
                and errno not in self.LOGIN_EXPIRED) or \
            sqlstate.startswith("28") or bool(self.TERMINAL_MESSAGES.search(text))

    def classify(self, exc: BaseException) -> type[Exception]:
        if isinstance(exc, (TransientError, TerminalError)):
            return type(exc)
        # imported here: the connector takes 0.3 s to import, which every process that
        # only names dialects (the CLI) would pay
        import snowflake.connector.errors as sf_errors

        if self.refused(exc):
            return TerminalError
        if isinstance(exc, (sf_errors.OperationalError, sf_errors.InterfaceError)):
            return TransientError  # could not connect, connection lost
        text = str(exc).lower()
        if any(m in text for m in self.TRANSIENT_MESSAGES):
            return TransientError
        return TerminalError


SNOWFLAKE = Dialect(
    name="snowflake",
    caps=Capabilities(identifier_bytes=IDENTIFIER_BYTES, max_varchar_bytes=MAX_VARCHAR_BYTES,
                      staging="parquet_copy_into", advisory_locks=False, indexes=False,
                      transactional_ddl=False),
    types=SnowflakeTypes(), ddl=SnowflakeDdl(), staging=SnowflakeStaging(),
    merge=SnowflakeMerge(), bookkeeping=SnowflakeBookkeeping(), catalog=SnowflakeCatalog(),
    views=PostgresViews(), errors=SnowflakeErrors())
