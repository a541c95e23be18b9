"""A tenant schema as a load meets it: made ready, read, and its name maps extended.

* :func:`prepare`: the schema locked for this load (other loaders of it wait), and, the first
  time a loader meets it, created with Spool's tables (docs/warehouse-contract.md) and its
  contract version checked;
* :func:`read_state`: what the schema holds for the streams of a load (table and column
  maps, every relation's name, physical columns, which big tables lack merge indexes), the
  input of spool.warehouse.plan;
* :func:`record_names`: the names a load decided, added to the table and column maps.
"""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg2.extras import execute_values

from spool import sdc
from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse import CONTRACT_VERSION
from spool.warehouse.contract import CATALOG, STAGE_TABLE, TABLE_SINCE, UPGRADES
from spool.warehouse.dialects import TerminalError, qualified
from spool.warehouse.plan import CatalogState, Plan
from spool.warehouse.statements import Statements

# a table gets its merge indexes (record id, keys) once its heap passes this size: below it
# a scan is as fast, and creating two indexes with every new table would double DDL time
INDEX_AFTER_BYTES = 4 * 1024 * 1024


def prepare(d, cur, schema: str, known: bool) -> None:
    """Lock ``schema`` for this load; unless it is ``known`` (made ready on this connection
    before), create it and Spool's tables in it and check its contract version."""
    batch = Statements(cur)
    if d.caps.advisory_locks:  # before CREATE ... IF NOT EXISTS, which races otherwise
        batch.add(*d.bookkeeping.lock_schema(schema))
    if not known:
        batch.add(d.ddl.create_schema(schema))
        for table, columns in CATALOG.items():
            batch.add(d.ddl.create_table(
                schema, table, [(c, d.types.column_type(t, n)) for c, t, n in columns]))
        if d.ddl.index_load_log(schema):
            batch.add(d.ddl.index_load_log(schema))
    if not d.caps.advisory_locks:  # the lock is on a table: after it exists
        batch.add(*d.bookkeeping.lock_schema(schema))
    batch.flush()
    if not known:
        _check_contract(d, cur, schema)


def _check_contract(d, cur, schema: str) -> None:
    cur.execute(d.bookkeeping.contract_version(schema))
    version = cur.fetchone()[0]
    if version is None or version < CONTRACT_VERSION:
        # new, or loaded by an older Spool: the tables of this version exist now (created
        # above if missing), columns added since its version are added to the tables it
        # had, and the schema says which version it has from here on
        batch = Statements(cur)
        for old in range(version or CONTRACT_VERSION, CONTRACT_VERSION):
            for table, column in UPGRADES.get(old, []):
                if TABLE_SINCE.get(table, 1) > version:
                    continue  # created above, with the column
                logical, size = next((t, n) for c, t, n in CATALOG[table] if c == column)
                batch.add(d.ddl.add_column(schema, table, column,
                                           d.types.column_type(logical, size)))
        batch.flush()
        if version is not None and version < 3:
            _rescale_sequences(d, cur, schema)
        cur.execute(d.bookkeeping.insert_contract(schema),
                    (CONTRACT_VERSION, datetime.now(tz=UTC)))
    elif version > CONTRACT_VERSION:
        raise TerminalError(f"schema {schema} was loaded with warehouse contract v{version}; "
                            f"this loader knows v{CONTRACT_VERSION}: upgrade Spool")


def _rescale_sequences(d, cur, schema: str) -> None:
    """Upgrading a schema loaded before contract v3: its rows' default sequences of the old
    scale become Kafka ms (docs/warehouse-contract.md), every stream's root table first."""
    cur.execute(d.bookkeeping.every_catalog_table(schema))
    streams: dict[str, tuple[str | None, list[str]]] = {}
    names = []
    for stream, path, name in cur.fetchall():
        root, children = streams.get(stream, (None, []))
        if path == ROOT_TABLE_KEY:
            root = name
        else:
            children.append(name)
        streams[stream] = (root, children)
        names.append(name)
    if not names:
        return
    cur.execute(d.catalog.physical_columns(), (schema, tuple(names)))
    physical: dict[str, set[str]] = {}
    for table, column, _type in cur.fetchall():
        physical.setdefault(table, set()).add(column)
    batch = Statements(cur)
    for root, children in streams.values():
        if root is None or not {sdc.SEQUENCE, sdc.RECEIVED_AT} <= physical.get(root, set()):
            continue  # a table a user dropped, or a stream with no sequences
        children = [qualified(schema, c) for c in sorted(children)
                    if {sdc.SEQUENCE, sdc.RECORD_ID} <= physical.get(c, set())]
        for sql in d.bookkeeping.rescale_sequences(qualified(schema, root), children):
            batch.add(sql)
    batch.flush()


def loaded_batches(d, cur, schema: str, batch_ids: list[str]) -> dict[str, str | None]:
    """Those of ``batch_ids`` that the schema's load log holds (committed before), with
    the load that committed each (None: loaded under contract version 1)."""
    cur.execute(d.bookkeeping.loaded_batches(schema), (tuple(batch_ids) or ("",),))
    return dict(cur.fetchall())


def read_state(d, cur, schema: str, streams: list[str],
               mapped: list[str] = (), moved: bool = False) -> CatalogState:
    """What the schema has for ``streams``; for the ``mapped`` ones (stream maps made some of
    their records) also the newest map versions their tables were loaded under; when values
    were ``moved`` to their declared type, which such moves were logged before."""
    state = CatalogState()
    if mapped:
        cur.execute(d.bookkeeping.map_changes(schema), (tuple(mapped),))
        for stream, map_stream, version in cur.fetchall():
            key = (stream, map_stream)
            state.map_versions[key] = max(state.map_versions.get(key, 0), int(version[1:]))
    cur.execute(d.bookkeeping.catalog_tables(schema), (tuple(streams),))
    for s, p, n in cur.fetchall():
        state.tables[(s, p)] = n
    cur.execute(d.catalog.relations(), (schema,))
    state.relations = {r[0] for r in cur.fetchall()}
    names = tuple(state.tables.values())
    if names:
        cur.execute(d.bookkeeping.catalog_columns(schema), (names,))
        for t, source, json_type, col in cur.fetchall():
            state.columns.setdefault(t, {})[(source, json_type)] = col
        if moved:
            cur.execute(d.bookkeeping.declared_types_applied(schema), (names,))
            state.declared_applied = {tuple(row) for row in cur.fetchall()}
        cur.execute(d.catalog.physical_columns(), (schema, (*names, STAGE_TABLE)))
        for t, col, sql_type in cur.fetchall():
            state.physical.setdefault(t, {})[col] = sql_type
        sizes = d.catalog.table_sizes()
        if sizes:
            cur.execute(sizes, (schema, names))
            state.unindexed_large = {t for t, size, indexed in cur.fetchall()
                                     if size >= INDEX_AFTER_BYTES and not indexed}
    return state


def record_names(d, cur, schema: str, plans: list[Plan]) -> None:
    """New tables and columns into the schema's table and column maps (``_sdc_tables``,
    ``_sdc_columns``): once there, a name never changes."""
    now = datetime.now(tz=UTC)
    tables = [(*row, now) for p in plans for row in p.new_tables]
    columns = [(*row, now) for p in plans for row in p.new_columns]
    if tables:
        execute_values(cur, d.bookkeeping.insert_catalog_table_values(schema), tables)
    if columns:
        execute_values(cur, d.bookkeeping.insert_catalog_column_values(schema), columns)
