"""PostgreSQL: the reference dialect, one class per concern (see dialects.base).

Redshift (dialects.redshift) runs most of this SQL as it is and subclasses the parts that
differ. Table arguments named ``target``, ``stage``, ``winners`` or ``table`` in the merge
and staging parts are quoted already (qualified()); the other parts quote what they get.
"""

from __future__ import annotations

import psycopg2
import psycopg2.errorcodes as codes

from spool import sdc
from spool.warehouse.contract import (
    COLUMNS_TABLE,
    CONTRACT_TABLE,
    LOAD_LOG_TABLE,
    REJECTED_TABLE,
    STAGE_ORDINAL,
    TABLES_TABLE,
)
from spool.warehouse.dialects.base import (
    Capabilities,
    Dialect,
    TerminalError,
    TransientError,
    qualified,
    quote,
)

TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "40")  # connection, resources, operator, tx
# lock timeout, cancelled statement, a replica still read-only after a failover
TRANSIENT_SQLSTATES = {codes.LOCK_NOT_AVAILABLE, codes.QUERY_CANCELED,
                       codes.READ_ONLY_SQL_TRANSACTION}
RID, SEQ = quote(sdc.RECORD_ID), quote(sdc.SEQUENCE)


class PostgresTypes:
    SQL_TYPES = {"string": "text", "integer": "bigint", "number": "double precision",
                 "boolean": "boolean", "date-time": "timestamptz"}

    def column_type(self, json_type: str, max_bytes: int = 0) -> str:
        """The SQL type of a new column for values of ``json_type``, the longest string
        ``max_bytes`` long."""
        return self.SQL_TYPES[json_type]

    def wider_type(self, current_sql_type: str, json_type: str, max_bytes: int) -> str | None:
        """The type a column must be widened to for values of ``max_bytes``, or None."""
        return None


class PostgresErrors:
    def classify(self, exc: BaseException) -> type[Exception]:
        if isinstance(exc, (TransientError, TerminalError)):
            return type(exc)
        if isinstance(exc, psycopg2.OperationalError) and getattr(exc, "pgcode", None) is None:
            return TransientError  # could not connect, connection lost
        if isinstance(exc, psycopg2.InterfaceError):
            return TransientError
        code = getattr(exc, "pgcode", None) or ""
        if code in TRANSIENT_SQLSTATES or code[:2] in TRANSIENT_SQLSTATE_CLASSES:
            return TransientError
        return TerminalError


class PostgresDdl:
    def create_schema(self, schema: str) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}"

    def create_table(self, schema: str, table: str, columns: list[tuple[str, str]]) -> str:
        cols = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in columns)
        return f"CREATE TABLE IF NOT EXISTS {qualified(schema, table)} ({cols})"

    def add_column(self, schema: str, table: str, column: str, sql_type: str) -> str:
        return (f"ALTER TABLE {qualified(schema, table)} ADD COLUMN {quote(column)} "
                f"{sql_type}")

    def alter_type(self, schema: str, table: str, column: str, sql_type: str) -> str:
        return (f"ALTER TABLE {qualified(schema, table)} ALTER COLUMN {quote(column)} TYPE "
                f"{sql_type}")

    def index_record_id(self, schema: str, table: str) -> str | None:
        # unnamed: PostgreSQL picks a name that collides with nothing
        return f"CREATE INDEX ON {qualified(schema, table)} ({RID})"

    def index_keys(self, schema: str, table: str, keys: list[str]) -> str | None:
        cols = ", ".join(quote(k) for k in keys)
        return f"CREATE INDEX ON {qualified(schema, table)} ({cols})"

    def index_load_log(self, schema: str) -> str | None:
        """Every load looks its batch ids up in the load log, which only grows."""
        return (f"CREATE INDEX IF NOT EXISTS {quote(LOAD_LOG_TABLE + '_batch_id')} ON "
                f"{qualified(schema, LOAD_LOG_TABLE)} ({quote('batch_id')})")


class PostgresStaging:
    """The helper tables a load stages into, and COPY through the connection.

    Merging works through two tables per stream that live in the tenant schema and stay
    empty between loads: ``_sdc_stage_*`` (the batch rows, one per target table) and
    ``_sdc_winners_*`` (the latest record per key). Reusing them spares the catalog churn
    of creating temporary tables in every load.
    """

    def create_stage_table(self, table: str, columns: list[tuple[str, str]]) -> str:
        cols = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in columns)
        return f"CREATE UNLOGGED TABLE {table} ({cols})"

    def clear(self, table: str) -> str:
        return f"DELETE FROM {table}"

    def copy_stdin(self, target: str, columns: list[str]) -> str:
        cols = ", ".join(quote(c) for c in columns)
        return f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv)"


class PostgresMerge:
    """Upserts and deduplicated appends, as DELETE and INSERT (PostgreSQL and Redshift both
    run them)."""

    def merge_append(self, target: str, stage: str, columns: list[str]) -> str:
        """Insert staged rows whose record id the target does not have yet."""
        cols = ", ".join(quote(c) for c in columns)
        src = ", ".join(f"s.{quote(c)}" for c in columns)
        return (f"INSERT INTO {target} ({cols}) SELECT {src} FROM {stage} AS s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t.{RID} = s.{RID})")

    def winners(self, winners: str, stage: str, keys: list[str]) -> str:
        """The latest staged record per key (highest sequence, then latest arrival)."""
        k = ", ".join(quote(c) for c in keys)
        row, rn = quote(STAGE_ORDINAL), quote("_sdc_rn")
        return (f"INSERT INTO {winners} ({k}, {RID}, {SEQ}) SELECT {k}, {RID}, {SEQ} FROM "
                f"(SELECT {k}, {RID}, {SEQ}, ROW_NUMBER() OVER (PARTITION BY {k} ORDER BY "
                f"{SEQ} DESC, {row} DESC) AS {rn} FROM {stage}) AS ranked WHERE {rn} = 1")

    def drop_losers(self, winners: str, target: str, keys: list[str]) -> str:
        """Winners whose key the target holds with a higher sequence lose."""
        cond = " AND ".join(f"{target}.{quote(c)} = {winners}.{quote(c)}" for c in keys)
        return (f"DELETE FROM {winners} USING {target} WHERE {cond} "
                f"AND {target}.{SEQ} > {winners}.{SEQ}")

    def delete_replaced(self, table: str, winners: str, table_cols: list[str],
                        winner_cols: list[str]) -> str:
        cond = " AND ".join(f"{table}.{quote(a)} = {winners}.{quote(b)}"
                            for a, b in zip(table_cols, winner_cols, strict=True))
        return f"DELETE FROM {table} USING {winners} WHERE {cond}"

    def insert_winners(self, target: str, stage: str, winners: str, columns: list[str]) -> str:
        cols = ", ".join(quote(c) for c in columns)
        src = ", ".join(f"s.{quote(c)}" for c in columns)
        return (f"INSERT INTO {target} ({cols}) SELECT {src} FROM {stage} AS s "
                f"JOIN {winners} AS w ON s.{RID} = w.{RID}")

    def retire_versions(self, table: str) -> str:
        """Rows of table versions older than the activated one (``%s``)."""
        return f"DELETE FROM {table} WHERE {quote(sdc.TABLE_VERSION)} < %s"


class PostgresBookkeeping:
    """Spool's own tables in a tenant schema (docs/warehouse-contract.md): the load log, the
    contract version, the table and column maps, ``_sdc_rejected``; values as parameters."""

    def lock_schema(self, schema: str) -> tuple[str, tuple]:
        """Serialise loads into one tenant schema across loaders (a transaction lock)."""
        return "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"spool:{schema}",)

    def loaded_batches(self, schema: str) -> str:
        return (f"SELECT batch_id FROM {qualified(schema, LOAD_LOG_TABLE)} "
                "WHERE batch_id IN %s")

    def insert_load_log_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, LOAD_LOG_TABLE)} (batch_id, stream, "
                "row_count, loaded_at, loader) VALUES %s")

    def contract_version(self, schema: str) -> str:
        return f"SELECT max(version) FROM {qualified(schema, CONTRACT_TABLE)}"

    def insert_contract(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, CONTRACT_TABLE)} (version, applied_at) "
                "VALUES (%s, %s)")

    def catalog_tables(self, schema: str) -> str:
        return (f"SELECT stream, table_path, table_name FROM {qualified(schema, TABLES_TABLE)} "
                "WHERE stream IN %s")

    def insert_catalog_table_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, TABLES_TABLE)} (stream, table_path, "
                "table_name, created_at) VALUES %s")

    def catalog_columns(self, schema: str) -> str:
        return (f"SELECT table_name, source, json_type, column_name FROM "
                f"{qualified(schema, COLUMNS_TABLE)} WHERE table_name IN %s")

    def insert_catalog_column_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, COLUMNS_TABLE)} (table_name, source, "
                "json_type, column_name, created_at) VALUES %s")

    def insert_rejected_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, REJECTED_TABLE)} ({quote(sdc.REJECTED_AT)}, "
                f"table_name, reason_code, reason, record, {RID}) VALUES %s")


class PostgresCatalog:
    """What the warehouse's own catalog says about a tenant schema."""

    def relations(self) -> str:
        """Names of every relation of a schema: tables, views, indexes, sequences
        (``%s``: schema); a new table's name must collide with none."""
        return ("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                "c.relnamespace WHERE n.nspname = %s")

    def physical_columns(self) -> str:
        """(table, column, SQL type) of tables of a schema (``%s``: schema, names)."""
        return ("SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname IN %s AND a.attnum > 0 "
                "AND NOT a.attisdropped")

    def table_sizes(self) -> str | None:
        """(table, heap bytes, has an index on _sdc_record_id) of tables of a schema
        (``%s``: schema, names); None where the warehouse has no indexes."""
        return ("SELECT c.relname, pg_relation_size(c.oid), EXISTS (SELECT 1 FROM pg_index i "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                f"WHERE i.indrelid = c.oid AND a.attname = '{sdc.RECORD_ID}') "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname IN %s AND c.relkind = 'r'")

    def dependent_views(self) -> str:
        """Views that depend on a table (``%s``: schema, table), deepest last: (schema,
        view, definition, acl, owner, comment, depth)."""
        return """
            WITH RECURSIVE deps(oid, depth) AS (
                SELECT DISTINCT r.ev_class, 1
                FROM pg_depend d
                JOIN pg_rewrite r ON r.oid = d.objid
                JOIN pg_class t ON t.oid = d.refobjid
                JOIN pg_namespace n ON n.oid = t.relnamespace
                WHERE n.nspname = %s AND t.relname = %s AND r.ev_class <> t.oid
              UNION
                SELECT DISTINCT r.ev_class, deps.depth + 1
                FROM deps
                JOIN pg_depend d ON d.refobjid = deps.oid
                JOIN pg_rewrite r ON r.oid = d.objid
                WHERE r.ev_class <> deps.oid AND deps.depth < 20
            )
            SELECT n.nspname, c.relname, pg_get_viewdef(c.oid, true),
                   c.relacl, pg_get_userbyid(c.relowner),
                   obj_description(c.oid, 'pg_class'), max(deps.depth)
            FROM deps JOIN pg_class c ON c.oid = deps.oid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'v'
            GROUP BY 1, 2, 3, 4, 5, 6
            ORDER BY max(deps.depth)"""


class PostgresViews:
    """Dropping and recreating a user's views around a column change, as they were."""

    PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}

    def drop_view(self, schema: str, view: str) -> str:
        return f"DROP VIEW {qualified(schema, view)}"

    def create_view(self, schema: str, view: str, definition: str) -> str:
        # the definition is the warehouse's own text for the view, read back a moment ago
        return f"CREATE VIEW {qualified(schema, view)} AS {definition}"

    def view_owner(self, schema: str, view: str, owner: str) -> str:
        return f"ALTER TABLE {qualified(schema, view)} OWNER TO {quote(owner)}"

    def grant(self, schema: str, view: str, privileges: list[str], grantee: str) -> str:
        if not set(privileges) <= self.PRIVILEGES:
            raise ValueError(f"unknown privileges {privileges}")
        if grantee == "PUBLIC":
            target = "PUBLIC"
        elif grantee.startswith("group "):  # Redshift user groups
            target = "GROUP " + quote(grantee[len("group "):])
        else:
            target = quote(grantee)
        return f"GRANT {', '.join(privileges)} ON {qualified(schema, view)} TO {target}"

    def comment_view(self, schema: str, view: str, literal: str) -> str:
        """``literal``: the comment already quoted (``cursor.mogrify``), because a user's
        view name may hold a ``%``, which a parameterised statement would misread."""
        return f"COMMENT ON VIEW {qualified(schema, view)} IS {literal}"


POSTGRES = Dialect(
    name="postgres",
    caps=Capabilities(identifier_bytes=63, max_varchar_bytes=None, staging="copy_stdin",
                      advisory_locks=True, indexes=True),
    types=PostgresTypes(), ddl=PostgresDdl(), staging=PostgresStaging(),
    merge=PostgresMerge(), bookkeeping=PostgresBookkeeping(), catalog=PostgresCatalog(),
    views=PostgresViews(), errors=PostgresErrors())
