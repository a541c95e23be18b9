"""Warehouse dialects: PostgreSQL, and Redshift as its subclass with declared limits.

Every identifier goes through :func:`quote` and every value through driver parameters or
COPY; SQL text is built only here. A dialect states its capabilities as data
(identifier bytes, longest VARCHAR, staging format) and maps driver errors to transient
(retry later) or terminal (the batch fails with the reason) once, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2
import psycopg2.errorcodes as codes

TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "40")  # connection, resources, operator, tx
# lock timeout, cancelled statement, a replica still read-only after a failover
TRANSIENT_SQLSTATES = {codes.LOCK_NOT_AVAILABLE, codes.QUERY_CANCELED,
                       codes.READ_ONLY_SQL_TRANSACTION}
VARCHAR_LADDER = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65535)


def quote(identifier: str) -> str:
    """The one way an identifier enters SQL: double-quoted, inner quotes doubled."""
    if "\x00" in identifier:
        raise ValueError("an identifier cannot contain NUL")
    return '"' + identifier.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote(schema)}.{quote(name)}"


class TransientError(Exception):
    """Retry later: the warehouse is unreachable, busy or restarting."""


class TerminalError(Exception):
    """Retrying the same batch will fail the same way; it needs a person."""


@dataclass(frozen=True)
class Capabilities:
    identifier_bytes: int
    max_varchar_bytes: int | None  # None: unbounded text
    staging: str  # "copy_stdin" or "s3_manifest_csv_gzip"
    advisory_locks: bool
    indexes: bool


class PostgresDialect:
    name = "postgres"
    caps = Capabilities(identifier_bytes=63, max_varchar_bytes=None, staging="copy_stdin",
                        advisory_locks=True, indexes=True)
    SQL_TYPES = {"string": "text", "integer": "bigint", "number": "double precision",
                 "boolean": "boolean", "date-time": "timestamptz"}

    # -- types --------------------------------------------------------------------------

    def column_type(self, json_type: str, max_bytes: int = 0) -> str:
        return self.SQL_TYPES[json_type]

    def wider_type(self, current_sql_type: str, json_type: str, max_bytes: int) -> str | None:
        """The type a column must be widened to for values of ``max_bytes``, or None."""
        return None

    # -- errors -------------------------------------------------------------------------

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

    # -- statements ---------------------------------------------------------------------

    def create_schema(self, schema: str) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}"

    def lock_schema(self, schema: str) -> tuple[str, tuple]:
        """Serialise loads into one tenant schema across loaders (a transaction lock)."""
        return "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"spool:{schema}",)

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
        return f"CREATE INDEX ON {qualified(schema, table)} ({quote('_sdc_record_id')})"

    def index_keys(self, schema: str, table: str, keys: list[str]) -> str | None:
        cols = ", ".join(quote(k) for k in keys)
        return f"CREATE INDEX ON {qualified(schema, table)} ({cols})"

    def index_load_log(self, schema: str) -> str | None:
        """Every load looks its batch ids up in the load log, which only grows."""
        return (f"CREATE INDEX IF NOT EXISTS {quote('_sdc_load_log_batch_id')} ON "
                f"{qualified(schema, '_sdc_load_log')} ({quote('batch_id')})")

    def copy_stdin(self, target: str, columns: list[str]) -> str:
        """``target``: a table already quoted (qualified() or quote())."""
        cols = ", ".join(quote(c) for c in columns)
        return f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv)"

    # -- catalog and load log (values always as parameters) --------------------------------

    def loaded_batches(self, schema: str) -> str:
        return (f"SELECT batch_id FROM {qualified(schema, '_sdc_load_log')} "
                "WHERE batch_id IN %s")

    def insert_load_log_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, '_sdc_load_log')} (batch_id, stream, "
                "row_count, loaded_at, loader) VALUES %s")

    def contract_version(self, schema: str) -> str:
        return f"SELECT max(version) FROM {qualified(schema, '_sdc_contract')}"

    def insert_contract(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, '_sdc_contract')} (version, applied_at) "
                "VALUES (%s, %s)")

    def catalog_tables(self, schema: str) -> str:
        return (f"SELECT stream, table_path, table_name FROM {qualified(schema, '_sdc_tables')} "
                "WHERE stream IN %s")

    def insert_catalog_table_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, '_sdc_tables')} (stream, table_path, "
                "table_name, created_at) VALUES %s")

    def catalog_columns(self, schema: str) -> str:
        return (f"SELECT table_name, source, json_type, column_name FROM "
                f"{qualified(schema, '_sdc_columns')} WHERE table_name IN %s")

    def insert_catalog_column_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, '_sdc_columns')} (table_name, source, "
                "json_type, column_name, created_at) VALUES %s")

    def table_sizes(self) -> str | None:
        """(table, heap bytes, has an index on _sdc_record_id) of tables of a schema
        (``%s``: schema, names); None where the warehouse has no indexes."""
        return ("SELECT c.relname, pg_relation_size(c.oid), EXISTS (SELECT 1 FROM pg_index i "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                "WHERE i.indrelid = c.oid AND a.attname = '_sdc_record_id') "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname IN %s AND c.relkind = 'r'")

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

    def insert_rejected_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, '_sdc_rejected')} (_sdc_rejected_at, "
                "table_name, reason_code, reason, record, _sdc_record_id) VALUES %s")

    def view_owner(self, schema: str, view: str, owner: str) -> str:
        return f"ALTER TABLE {qualified(schema, view)} OWNER TO {quote(owner)}"

    def grant(self, schema: str, view: str, privileges: list[str], grantee: str) -> str:
        allowed = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}
        if not set(privileges) <= allowed:
            raise ValueError(f"unknown privileges {privileges}")
        if grantee == "PUBLIC":
            target = "PUBLIC"
        elif grantee.startswith("group "):  # Redshift user groups
            target = "GROUP " + quote(grantee[len("group "):])
        else:
            target = quote(grantee)
        return f"GRANT {', '.join(privileges)} ON {qualified(schema, view)} TO {target}"

    # -- merging (DELETE/INSERT that PostgreSQL and Redshift both run) -------------------

    # Merging works through two tables per stream that live in the tenant schema and stay
    # empty between loads: ``_sdc_stage_*`` (the batch rows, one per target table) and
    # ``_sdc_winners_*`` (the latest record per key). Reusing them spares the catalog churn
    # of creating temporary tables in every load. All table arguments are quoted already.

    def create_stage_table(self, table: str, columns: list[tuple[str, str]]) -> str:
        cols = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in columns)
        return f"CREATE UNLOGGED TABLE {table} ({cols})"

    def clear(self, table: str) -> str:
        return f"DELETE FROM {table}"

    def merge_append(self, target: str, stage: str, columns: list[str]) -> str:
        """Insert staged rows whose record id the target does not have yet."""
        cols = ", ".join(quote(c) for c in columns)
        src = ", ".join(f"s.{quote(c)}" for c in columns)
        rid = quote("_sdc_record_id")
        return (f"INSERT INTO {target} ({cols}) SELECT {src} FROM {stage} AS s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t.{rid} = s.{rid})")

    def winners(self, winners: str, stage: str, keys: list[str]) -> str:
        """The latest staged record per key (highest sequence, then latest arrival)."""
        k = ", ".join(quote(c) for c in keys)
        rid, seq, row = quote("_sdc_record_id"), quote("_sdc_sequence"), quote("_sdc_row")
        return (f"INSERT INTO {winners} ({k}, {rid}, {seq}) SELECT {k}, {rid}, {seq} FROM "
                f"(SELECT {k}, {rid}, {seq}, ROW_NUMBER() OVER (PARTITION BY {k} ORDER BY "
                f"{seq} DESC, {row} DESC) AS {quote('_sdc_rn')} FROM {stage}) AS ranked "
                f"WHERE {quote('_sdc_rn')} = 1")

    def drop_losers(self, winners: str, target: str, keys: list[str]) -> str:
        """Winners whose key the target holds with a higher sequence lose."""
        cond = " AND ".join(f"{target}.{quote(c)} = {winners}.{quote(c)}" for c in keys)
        seq = quote("_sdc_sequence")
        return (f"DELETE FROM {winners} USING {target} WHERE {cond} "
                f"AND {target}.{seq} > {winners}.{seq}")

    def delete_replaced(self, table: str, winners: str, table_cols: list[str],
                        winner_cols: list[str]) -> str:
        cond = " AND ".join(f"{table}.{quote(a)} = {winners}.{quote(b)}"
                            for a, b in zip(table_cols, winner_cols, strict=True))
        return f"DELETE FROM {table} USING {winners} WHERE {cond}"

    def insert_winners(self, target: str, stage: str, winners: str, columns: list[str]) -> str:
        cols = ", ".join(quote(c) for c in columns)
        src = ", ".join(f"s.{quote(c)}" for c in columns)
        rid = quote("_sdc_record_id")
        return (f"INSERT INTO {target} ({cols}) SELECT {src} FROM {stage} AS s "
                f"JOIN {winners} AS w ON s.{rid} = w.{rid}")

    def retire_versions(self, table: str) -> str:
        return f"DELETE FROM {table} WHERE {quote('_sdc_table_version')} < %s"

    def dependent_views(self) -> str:
        """Views that depend on a table (``%s``: schema, table), deepest last."""
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

    def drop_view(self, schema: str, view: str) -> str:
        return f"DROP VIEW {qualified(schema, view)}"

    def create_view(self, schema: str, view: str, definition: str) -> str:
        # the definition is the warehouse's own text for the view, read back a moment ago
        return f"CREATE VIEW {qualified(schema, view)} AS {definition}"

    def comment_view(self, schema: str, view: str, literal: str) -> str:
        """``literal``: the comment already quoted (``cursor.mogrify``), because a user's
        view name may hold a ``%``, which a parameterised statement would misread."""
        return f"COMMENT ON VIEW {qualified(schema, view)} IS {literal}"


class RedshiftDialect(PostgresDialect):
    """Redshift: PostgreSQL's SQL with VARCHAR limits, no indexes and S3 staging."""

    name = "redshift"
    # Redshift reports these as internal errors (XX000); they pass on their own
    TRANSIENT_MESSAGES = ("serializable isolation violation", "s3serviceexception",
                          "slow down", "please try again", "concurrent transaction")
    caps = Capabilities(identifier_bytes=127, max_varchar_bytes=65535,
                        staging="s3_manifest_csv_gzip", advisory_locks=False, indexes=False)
    SQL_TYPES = {**PostgresDialect.SQL_TYPES, "string": "varchar",
                 "number": "double precision"}

    def column_type(self, json_type: str, max_bytes: int = 0) -> str:
        if json_type == "string":
            return f"varchar({varchar_width(max_bytes)})"
        return self.SQL_TYPES[json_type]

    def wider_type(self, current_sql_type: str, json_type: str, max_bytes: int) -> str | None:
        if json_type != "string" or not current_sql_type.lower().startswith(
                ("varchar", "character varying")):
            return None
        current = int(current_sql_type[current_sql_type.index("(") + 1:-1])
        wanted = varchar_width(max_bytes)
        return f"varchar({wanted})" if wanted > current else None

    def lock_schema(self, schema: str) -> tuple[str, tuple]:
        return f"LOCK {qualified(schema, '_sdc_load_log')}", ()

    def index_record_id(self, schema: str, table: str) -> str | None:
        return None

    def index_keys(self, schema: str, table: str, keys: list[str]) -> str | None:
        return None

    def index_load_log(self, schema: str) -> str | None:
        return None

    def table_sizes(self) -> str | None:
        return None

    def create_stage_table(self, table: str, columns: list[tuple[str, str]]) -> str:
        cols = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in columns)
        return f"CREATE TABLE {table} ({cols}) BACKUP NO"

    def classify(self, exc: BaseException) -> type[Exception]:
        text = str(exc).lower()
        if any(m in text for m in self.TRANSIENT_MESSAGES):
            return TransientError
        return super().classify(exc)

    def copy_s3(self, target: str, columns: list[str]) -> str:
        """``target``: a table already quoted; parameters: manifest URI, IAM role."""
        cols = ", ".join(quote(c) for c in columns)
        # EMPTYASNULL: Arrow writes a null as an empty field; without it Redshift would load
        # '' into every VARCHAR a record lacks (an empty string then loads as NULL too)
        return (f"COPY {target} ({cols}) FROM %s IAM_ROLE %s MANIFEST "
                "CSV GZIP TIMEFORMAT 'auto' EMPTYASNULL ACCEPTINVCHARS")


def varchar_width(max_bytes: int) -> int:
    """The smallest width of the ladder 32, 64, ... 65535 that holds ``max_bytes``."""
    for width in VARCHAR_LADDER:
        if max_bytes <= width:
            return width
    return VARCHAR_LADDER[-1]


DIALECTS = {"postgres": PostgresDialect(), "redshift": RedshiftDialect()}
