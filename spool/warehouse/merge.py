"""Putting one stream's staged rows into its tables, inside the load's transaction.

* A stream whose root table was created in this transaction has nothing to merge with: its
  rows are deduplicated in memory (the latest record per key for upserts) and copied
  straight into the tables.
* Otherwise rows are copied into each table's stage (``_sdc_stage_*``, a table in the schema
  that is empty between loads), then merged: upsert by key and ``_sdc_sequence`` (a row
  replaces the stored one unless the stored sequence is higher; a replaced record's child
  rows are replaced in every child table of the stream), or append deduplicated on
  ``_sdc_record_id``.
* After an ACTIVATE_VERSION, rows of older table versions are retired.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from spool import sdc
from spool.failpoints import failpoint
from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse.contract import REJECTED_TABLE, STAGE_ORDINAL
from spool.warehouse.dialects import qualified
from spool.warehouse.naming import stage_table, winners_table
from spool.warehouse.plan import CatalogState, Plan, TablePlan, source_key_column, table_order
from spool.warehouse.stage import StagedGroup, StagedTable
from spool.warehouse.statements import Statements

CSV_OPTIONS = pacsv.WriteOptions(include_header=False)


def load_stream(d, stager, cur, schema: str, group: StagedGroup, plan: Plan,
                state: CatalogState) -> None:
    root = plan.tables.get(ROOT_TABLE_KEY)
    upsert = bool(group.key_names) and root is not None and bool(root.key_columns) \
        and group.stream != REJECTED_TABLE
    ordered = sorted(plan.tables, key=table_order)
    if root is not None and root.create:
        # fresh tables: nothing to merge with, rows go straight in
        winners = _latest_per_key(root, group.tables[ROOT_TABLE_KEY]) if upsert else None
        for tpath in ordered:
            tp, st = plan.tables[tpath], group.tables[tpath]
            arrays = _arrays(tp, st)
            if winners is not None:
                keep = pc.is_in(arrays[sdc.RECORD_ID], value_set=winners)
                arrays = {k: pc.filter(v, keep) for k, v in arrays.items()}
            arrays.pop(STAGE_ORDINAL, None)
            _copy(d, stager, cur, qualified(schema, tp.name), arrays)
            failpoint("load.copy")
    else:
        _stage_and_merge(d, stager, cur, schema, group, plan, state, ordered,
                         root if upsert else None)
    if group.activate_version is not None:
        batch = Statements(cur)
        for table in _stream_tables(group.stream, plan, state):
            batch.add(d.merge.retire_versions(qualified(schema, table)),
                      (group.activate_version,))
        batch.flush()


def _stage_and_merge(d, stager, cur, schema: str, group: StagedGroup, plan: Plan,
                     state: CatalogState, ordered: list[str], upsert_root: TablePlan | None):
    batch = Statements(cur)
    staged = []
    for tpath in ordered:
        tp, st = plan.tables[tpath], group.tables[tpath]
        arrays = _arrays(tp, st)
        _ensure_helper(d, batch, schema, stage_table(tp.name),
                       [(c, _stage_type(d, tp, c)) for c in arrays], state)
        staged.append((tp, arrays))
    root = upsert_root
    if root is not None:
        _ensure_helper(d, batch, schema, winners_table(root.name),
                       [(c, _stage_type(d, root, c)) for c in
                        [*root.key_columns, sdc.RECORD_ID, sdc.SEQUENCE]], state)
    batch.flush()
    for tp, arrays in staged:
        _copy(d, stager, cur, qualified(schema, stage_table(tp.name)), arrays)
        failpoint("load.copy")
    if root is not None:
        _merge_upsert(d, batch, schema, group, plan, state, root)
    else:
        for tp in plan.tables.values():
            batch.add(d.merge.merge_append(qualified(schema, tp.name),
                                           qualified(schema, stage_table(tp.name)),
                                           _loaded_columns(tp)))
    # the helper tables are empty again when the transaction commits
    for tp in plan.tables.values():
        batch.add(d.staging.clear(qualified(schema, stage_table(tp.name))))
    if root is not None:
        batch.add(d.staging.clear(qualified(schema, winners_table(root.name))))
    batch.flush()


def _merge_upsert(d, batch: Statements, schema: str, group: StagedGroup, plan: Plan,
                  state: CatalogState, root: TablePlan) -> None:
    target = qualified(schema, root.name)
    winners = qualified(schema, winners_table(root.name))
    stage = qualified(schema, stage_table(root.name))
    batch.add(d.merge.winners(winners, stage, root.key_columns))
    batch.add(d.merge.drop_losers(winners, target, root.key_columns))
    batch.add(d.merge.delete_replaced(target, winners, root.key_columns, root.key_columns))
    batch.add(d.merge.insert_winners(target, stage, winners, _loaded_columns(root)))
    staged = {tp.name: tp for p, tp in plan.tables.items() if p != ROOT_TABLE_KEY}
    source_cols = [source_key_column(k, d.caps.identifier_bytes) for k in root.key_columns]
    for table in _stream_tables(group.stream, plan, state):
        if table == root.name:
            continue
        if table not in staged and not all(c in state.physical.get(table, {})
                                           for c in source_cols):
            # a child table from before the stream had keys: its rows were appended,
            # nothing ties them to a key, and nothing replaces them
            continue
        # every child table of the stream: a replaced record's old child rows go, even
        # when its new version has none
        batch.add(d.merge.delete_replaced(qualified(schema, table), winners, source_cols,
                                          root.key_columns))
        tp = staged.get(table)
        if tp is not None:
            batch.add(d.merge.insert_winners(qualified(schema, table),
                                             qualified(schema, stage_table(table)), winners,
                                             _loaded_columns(tp)))


def _copy(d, stager, cur, target: str, arrays: dict[str, pa.Array]) -> None:
    if not arrays or not len(next(iter(arrays.values()))):
        return
    buf = io.BytesIO()
    pacsv.write_csv(pa.table(arrays), buf, CSV_OPTIONS)
    stager.stage(cur, d, target, list(arrays), buf.getvalue())


def _ensure_helper(d, batch: Statements, schema: str, name: str,
                   columns: list[tuple[str, str]], state: CatalogState) -> None:
    """The stage or winners table ``name`` exists with at least ``columns``."""
    have = state.physical.get(name)
    if have is None:
        batch.add(d.staging.create_stage_table(qualified(schema, name), columns))
        state.physical[name] = dict(columns)
        return
    for col, sql_type in columns:
        if col not in have:
            batch.add(d.ddl.add_column(schema, name, col, sql_type))
            have[col] = sql_type


def _stage_type(d, tp: TablePlan, col: str) -> str:
    sql_type = tp.sql_types.get(col, "bigint")
    if sql_type.lower().startswith(("varchar", "character varying")):
        # stage strings at the widest: the target may widen later, the stage need not
        return d.types.column_type("string", 65535)
    return sql_type


def _stream_tables(stream: str, plan: Plan, state: CatalogState) -> list[str]:
    """The stream's tables that exist (a user may have dropped one; it is recreated only
    when data for it arrives)."""
    return sorted({n for (s, _p), n in state.tables.items() if s == stream and n in
                   state.physical} | {t.name for t in plan.tables.values()})


def _arrays(tp: TablePlan, st: StagedTable) -> dict[str, pa.Array]:
    """The staged rows as warehouse columns (the stage-only ordinal included)."""
    arrays: dict[str, pa.Array] = {}
    for (path, json_type), values in st.data.items():
        arrays[tp.columns[(path, json_type)]] = values
    for name, values in st.system.items():
        if name in tp.sql_types or name == STAGE_ORDINAL:
            arrays[name] = values
    for key, values in st.source_keys.items():
        col = tp.source_key_columns.get(key)
        if col is not None:
            arrays[col] = values
    tp.sql_types.setdefault(STAGE_ORDINAL, "bigint")
    tp.staged_columns = list(arrays)
    return arrays


def _loaded_columns(tp: TablePlan) -> list[str]:
    return [c for c in tp.staged_columns if c != STAGE_ORDINAL]


def _latest_per_key(root: TablePlan, st: StagedTable) -> pa.Array:
    """Record ids of the latest record per key (highest sequence, then latest arrival)."""
    arrays = _arrays(root, st)
    table = pa.table({**{k: arrays[k] for k in root.key_columns},
                      sdc.SEQUENCE: arrays[sdc.SEQUENCE],
                      STAGE_ORDINAL: arrays[STAGE_ORDINAL],
                      sdc.RECORD_ID: arrays[sdc.RECORD_ID]})
    table = table.sort_by([(sdc.SEQUENCE, "ascending"), (STAGE_ORDINAL, "ascending")])
    latest = table.group_by(root.key_columns, use_threads=False).aggregate(
        [(sdc.RECORD_ID, "last")])
    return latest.column(sdc.RECORD_ID + "_last")
