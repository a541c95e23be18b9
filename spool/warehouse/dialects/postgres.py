"""PostgreSQL: the reference dialect, one class per concern (see dialects.base).

Redshift (dialects.redshift) runs most of this SQL as it is and subclasses the parts that
differ. Table arguments named ``target``, ``stage``, ``winners`` or ``table`` in the merge
and staging parts are quoted already (qualified()); the other parts quote what they get.
"""

from __future__ import annotations

from spool import sdc
from spool.warehouse.contract import (
    CATALOG,
    COLUMNS_TABLE,
    CONTRACT_TABLE,
    LOAD_LOG_TABLE,
    LOADS_TABLE,
    REJECTED_TABLE,
    SCHEMA_CHANGES_TABLE,
    STAGE_SLOT,
    TABLES_TABLE,
)
from spool.warehouse.dialects.base import (
    Capabilities,
    Dialect,
    qualified,
    quote,
)
from spool.warehouse.dialects.pg_errors import PostgresErrors
from spool.warehouse.report import DECLARED_TYPE_APPLIED, MAP_CHANGED

RID, SEQ = quote(sdc.RECORD_ID), quote(sdc.SEQUENCE)
OLD_SCALE_FLOOR = 10**17  # a default sequence of the old scale is above (ms of 1973 on)


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

    def spelled(self, catalog_type: str) -> str:
        """A type as the catalog spells it, as Spool writes it (``character varying(32)``:
        ``varchar(32)``), so a change log's old and new types compare."""
        for long, short in (("character varying", "varchar"),
                            ("timestamp with time zone", "timestamptz")):
            if catalog_type.startswith(long):
                return short + catalog_type[len(long):]
        return catalog_type


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


class UnindexedDdl(PostgresDdl):
    """The DDL of a warehouse that creates no indexes (Redshift has none; DuckDB cannot
    alter an indexed table)."""

    def index_record_id(self, schema: str, table: str) -> str | None:
        return None

    def index_keys(self, schema: str, table: str, keys: list[str]) -> str | None:
        return None

    def index_load_log(self, schema: str) -> str | None:
        return None


class PostgresStaging:
    """The stage a load copies rows into, and COPY through the connection.

    One table per tenant schema, ``_sdc_stage``, empty between loads: a slot number naming
    the target table of the load, then that table's columns as text (``v1``, ``v2``, ...).
    It is created once and widened when a table has more columns than it, so a load creates
    no helper tables however many tables it merges into, and sends one COPY.
    """

    CREATE_STAGE = "CREATE UNLOGGED TABLE {table} ({columns})"

    def create_stage_table(self, table: str, columns: list[tuple[str, str]]) -> str:
        cols = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in columns)
        return self.CREATE_STAGE.format(table=table, columns=cols)

    def index_stage(self, table: str) -> str | None:
        """Every merge statement reads one slot of the stage."""
        return f"CREATE INDEX ON {table} ({quote(STAGE_SLOT)})"

    def clear(self, table: str) -> str:
        # under the schema's load lock; leaves no dead rows for the next load to skip
        return f"TRUNCATE {table}"

    def copy_stdin(self, target: str, columns: list[str]) -> str:
        cols = ", ".join(quote(c) for c in columns)
        return f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv)"


def _value(stage: str, column: str, sql_type: str) -> str:
    """A stage column (text) as the target column's type."""
    ref = f"{stage}.{quote(column)}"
    if sql_type.lower().startswith(("text", "varchar", "character varying")):
        return ref
    return f"CAST({ref} AS {sql_type})"


def _matches(table: str, stage: str, pairs: list[tuple[str, str, str]]) -> str:
    """``table``'s columns equal the stage's: pairs of (table column, stage column, type)."""
    return " AND ".join(f"{table}.{quote(c)} = {_value(stage, v, t)}" for c, v, t in pairs)


class PostgresMerge:
    """Upserts and deduplicated appends from one slot of the stage, as DELETE and INSERT
    (PostgreSQL and Redshift both run them). The stage holds each key's latest record of the
    load only (ranked before staging). Column arguments are (target column, stage column,
    SQL type) triples; ``slot`` is an int."""

    def _slot(self, stage: str, slot: int) -> str:
        return f"{stage}.{quote(STAGE_SLOT)} = {int(slot)}"

    def merge_append(self, target: str, stage: str, slot: int,
                     columns: list[tuple[str, str, str]], rid: tuple[str, str, str]) -> str:
        """Insert staged rows whose record id the target does not have yet."""
        cols = ", ".join(quote(c) for c, _v, _t in columns)
        values = ", ".join(_value(stage, v, t) for _c, v, t in columns)
        return (f"INSERT INTO {target} ({cols}) SELECT {values} FROM {stage} "
                f"WHERE {self._slot(stage, slot)} AND NOT EXISTS (SELECT 1 FROM {target} AS t "
                f"WHERE {_matches('t', stage, [rid])})")

    def upsert(self, target: str, stage: str, slot: int, columns: list[tuple[str, str, str]],
               keys: list[tuple[str, str, str]], seq: tuple[str, str, str],
               unstaged: list[str]) -> list[str]:
        """Staged rows into ``target`` by key, a stored row replaced unless its sequence is
        higher: delete_replaced, then insert_winners. ``unstaged``: the target's columns the
        stage has no values for (a replaced row loses its values there)."""
        return [self.delete_replaced(target, stage, slot, keys, seq),
                self.insert_winners(target, stage, slot, columns, keys)]

    def delete_replaced(self, target: str, stage: str, slot: int,
                        keys: list[tuple[str, str, str]], seq: tuple[str, str, str]) -> str:
        """Stored rows of a staged key, unless stored with a higher sequence (a stored row
        without a sequence is replaced)."""
        higher = f"{target}.{SEQ} > {_value(stage, seq[1], seq[2])}"
        return (f"DELETE FROM {target} USING {stage} WHERE {self._slot(stage, slot)} AND "
                f"{_matches(target, stage, keys)} AND COALESCE({higher}, FALSE) = FALSE")

    def insert_winners(self, target: str, stage: str, slot: int,
                       columns: list[tuple[str, str, str]],
                       keys: list[tuple[str, str, str]]) -> str:
        """Staged rows, but for keys the target still holds: after delete_replaced, those
        are stored with a higher sequence."""
        cols = ", ".join(quote(c) for c, _v, _t in columns)
        values = ", ".join(_value(stage, v, t) for _c, v, t in columns)
        return (f"INSERT INTO {target} ({cols}) SELECT {values} FROM {stage} "
                f"WHERE {self._slot(stage, slot)} AND NOT EXISTS (SELECT 1 FROM {target} AS t "
                f"WHERE {_matches('t', stage, keys)})")

    def delete_replaced_children(self, child: str, root: str, stage: str, root_slot: int,
                                 source_keys: list[tuple[str, str]],
                                 rid: tuple[str, str, str]) -> str:
        """Child rows of the records an upsert replaced (the staged root records now in the
        root table): ``source_keys`` pairs (child column, root key column)."""
        cond = " AND ".join(f"{child}.{quote(c)} = {root}.{quote(k)}" for c, k in source_keys)
        return (f"DELETE FROM {child} USING {stage}, {root} WHERE "
                f"{self._slot(stage, root_slot)} AND {_matches(root, stage, [rid])} AND {cond}")

    def insert_children(self, child: str, root: str, stage: str, slot: int,
                        columns: list[tuple[str, str, str]],
                        rid: tuple[str, str, str]) -> str:
        """Staged child rows of records that are now in the root table."""
        cols = ", ".join(quote(c) for c, _v, _t in columns)
        values = ", ".join(_value(stage, v, t) for _c, v, t in columns)
        return (f"INSERT INTO {child} ({cols}) SELECT {values} FROM {stage} "
                f"WHERE {self._slot(stage, slot)} AND EXISTS (SELECT 1 FROM {root} AS r "
                f"WHERE {_matches('r', stage, [rid])})")

    # counts for the load report: each a SELECT of two numbers (a, b), run together

    def count_replaced(self, target: str, stage: str, slot: int,
                       keys: list[tuple[str, str, str]], seq: tuple[str, str, str]) -> str:
        """Before an upsert: staged rows whose key the target holds with a higher sequence
        (a: they lose, nothing changes) or not (b: the stored rows they replace)."""
        higher = f"COALESCE(t.{SEQ} > {_value(stage, seq[1], seq[2])}, FALSE)"
        return (f"SELECT SUM(CASE WHEN {higher} THEN 1 ELSE 0 END) AS a, "
                f"SUM(CASE WHEN {higher} THEN 0 ELSE 1 END) AS b FROM {stage} "
                f"JOIN {target} AS t ON {_matches('t', stage, keys)} "
                f"WHERE {self._slot(stage, slot)}")

    def count_present(self, target: str, stage: str, slot: int,
                      rid: tuple[str, str, str]) -> str:
        """Staged rows whose record id the target holds (a): before an append, those it
        skips; after an upsert's inserts into a child table, its parents that won."""
        return (f"SELECT COUNT(*) AS a, 0 AS b FROM {stage} WHERE {self._slot(stage, slot)} "
                f"AND EXISTS (SELECT 1 FROM {target} AS t WHERE {_matches('t', stage, [rid])})")

    def counts(self, selects: list[str]) -> str:
        """Counts of several SELECTs in one: rows (n, a, b), n the SELECT's position."""
        return " UNION ALL ".join(f"SELECT {i} AS n, a, b FROM ({sql}) AS q{i}"
                                  for i, sql in enumerate(selects))

    def count_retired(self, table: str, version: int) -> str:
        """Rows an activation of ``version`` retires (a)."""
        return (f"SELECT COUNT(*) AS a, 0 AS b FROM {table} "
                f"WHERE {quote(sdc.TABLE_VERSION)} < {int(version)}")

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
        return (f"SELECT batch_id, load_id FROM {qualified(schema, LOAD_LOG_TABLE)} "
                "WHERE batch_id IN %s")

    def insert_load_log_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, LOAD_LOG_TABLE)} (batch_id, stream, "
                "row_count, loaded_at, loader, load_id) VALUES %s")

    def loads_of(self, schema: str) -> str:
        """``_sdc_loads`` rows of load ids (``%s``, a tuple), in the contract's order."""
        cols = ", ".join(quote(c) for c, _t, _n in CATALOG[LOADS_TABLE])
        return f"SELECT {cols} FROM {qualified(schema, LOADS_TABLE)} WHERE load_id IN %s"

    def changes_of(self, schema: str) -> str:
        """``_sdc_schema_changes`` rows of load ids (``%s``), in the contract's order."""
        cols = ", ".join(quote(c) for c, _t, _n in CATALOG[SCHEMA_CHANGES_TABLE])
        return (f"SELECT {cols} FROM {qualified(schema, SCHEMA_CHANGES_TABLE)} "
                "WHERE load_id IN %s ORDER BY load_id, position")

    def map_changes(self, schema: str) -> str:
        """(stream, the map's stream, ``v<version>``) of every ``map_changed`` row of the
        streams (``%s``)."""
        return (f"SELECT stream, source, new_type FROM "
                f"{qualified(schema, SCHEMA_CHANGES_TABLE)} "
                f"WHERE kind = '{MAP_CHANGED}' AND stream IN %s")

    def declared_types_applied(self, schema: str) -> str:
        """(table, field path, the values' own type) of every ``declared_type_applied`` row
        of the tables (``%s``)."""
        return (f"SELECT table_name, source, json_type FROM "
                f"{qualified(schema, SCHEMA_CHANGES_TABLE)} "
                f"WHERE kind = '{DECLARED_TYPE_APPLIED}' AND table_name IN %s")

    def contract_version(self, schema: str) -> str:
        return f"SELECT max(version) FROM {qualified(schema, CONTRACT_TABLE)}"

    def insert_contract(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, CONTRACT_TABLE)} (version, applied_at) "
                "VALUES (%s, %s)")

    def catalog_tables(self, schema: str) -> str:
        return (f"SELECT stream, table_path, table_name FROM {qualified(schema, TABLES_TABLE)} "
                "WHERE stream IN %s")

    def every_catalog_table(self, schema: str) -> str:
        return f"SELECT stream, table_path, table_name FROM {qualified(schema, TABLES_TABLE)}"

    def rescale_sequences(self, root: str, children: list[str]) -> list[str]:
        """Once, upgrading to contract v3: default sequences stored on the old scale (Kafka
        ms * 1,000,000 + offset mod 1,000,000) become the Kafka ms, today's default. A root
        row holds one when its sequence's ms are its ``_sdc_received_at``; its child rows
        (same record id) follow. ``root``, ``children``: qualified table names."""
        ms = self.millionths(SEQ)
        received = self.epoch_ms(quote(sdc.RECEIVED_AT))
        out = [f"UPDATE {root} SET {SEQ} = {ms} WHERE {SEQ} >= {OLD_SCALE_FLOOR} "
               f"AND {ms} = {received}"]
        for child in children:
            out.append(f"UPDATE {child} SET {SEQ} = {ms} WHERE {SEQ} >= {OLD_SCALE_FLOOR} "
                       f"AND EXISTS (SELECT 1 FROM {root} AS r WHERE r.{RID} = {child}.{RID} "
                       f"AND r.{SEQ} = {self.millionths(f'{child}.{SEQ}')})")
        return out

    def millionths(self, expr: str) -> str:
        """An integer divided by 1,000,000, exactly (rounded towards zero)."""
        return f"({expr} / 1000000)"

    def epoch_ms(self, expr: str) -> str:
        """A timestamp (with time zone) as ms since 1970."""
        return f"CAST(round(extract(epoch FROM {expr}) * 1000) AS bigint)"

    def insert_catalog_table_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, TABLES_TABLE)} (stream, table_path, "
                "table_name, created_at) VALUES %s")

    def catalog_columns(self, schema: str) -> str:
        return (f"SELECT table_name, source, json_type, column_name FROM "
                f"{qualified(schema, COLUMNS_TABLE)} WHERE table_name IN %s")

    def insert_catalog_column_values(self, schema: str) -> str:
        return (f"INSERT INTO {qualified(schema, COLUMNS_TABLE)} (table_name, source, "
                "json_type, column_name, created_at) VALUES %s")

    def insert_loads_values(self, schema: str) -> str:
        cols = ", ".join(quote(c) for c, _t, _n in CATALOG[LOADS_TABLE])
        return f"INSERT INTO {qualified(schema, LOADS_TABLE)} ({cols}) VALUES %s"

    def insert_schema_changes_values(self, schema: str) -> str:
        cols = ", ".join(quote(c) for c, _t, _n in CATALOG[SCHEMA_CHANGES_TABLE])
        return f"INSERT INTO {qualified(schema, SCHEMA_CHANGES_TABLE)} ({cols}) VALUES %s"

    def select_schema_changes(self, schema: str) -> str:
        """The change log, newest first; ``%(table)s``, ``%(since)s`` (None: all) and
        ``%(limit)s`` as parameters."""
        return (f"SELECT changed_at, table_name, kind, column_name, old_type, new_type, "
                f"batch_id, detail FROM {qualified(schema, SCHEMA_CHANGES_TABLE)} "
                "WHERE (CAST(%(table)s AS varchar) IS NULL OR table_name = %(table)s) "
                "AND (CAST(%(since)s AS timestamptz) IS NULL OR changed_at >= %(since)s) "
                "ORDER BY changed_at DESC, load_id, position DESC LIMIT %(limit)s")

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

    def transaction_counts(self) -> str | None:
        """Rows inserted and deleted so far in this transaction, per table of a schema
        (``%s``) among names (``%s``, a list), from the statistics counters: the load report
        without counting rows. None where the warehouse has no such counters."""
        return ("SELECT relname, n_tup_ins, n_tup_del FROM pg_stat_xact_user_tables "
                "WHERE schemaname = %s AND relname = ANY(%s)")

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


class UncountedCatalog(PostgresCatalog):
    """The catalog of a warehouse without per-transaction row counters or indexes for Spool
    to decide on (Redshift, DuckDB, Snowflake): a load counts its rows with queries."""

    def table_sizes(self) -> str | None:
        return None

    def transaction_counts(self) -> str | None:
        return None


class UnindexedStaging(PostgresStaging):
    def index_stage(self, table: str) -> str | None:
        return None


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
