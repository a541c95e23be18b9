"""The schema changes a load applies, as rows of the tenant's ``_sdc_schema_changes``.

Derived from the load's plans (spool.warehouse.plan) and what the DDL step rebuilt, in the
order the DDL ran: per stream, tables by depth and path; a table's creation, then its new
data columns (of a new table too; system columns are the contract's and not logged), then
its widenings and the views rebuilt around them; a stream's table version activation last.
Each change names the batch that caused it: the first batch of the load holding the table
or the field's type, and for a widening the batch of the longest value. A stream map's newer
version comes first (``map_changed``, at the first batch it made), so the columns it adds
follow what explains them; a column added by a batch a map made says which map.
"""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow.compute as pc

from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse import CONTRACT_VERSION
from spool.warehouse import report as r
from spool.warehouse.contract import BATCH_INDEX
from spool.warehouse.plan import CatalogState, Plan, TablePlan, table_order
from spool.warehouse.stage import StagedGroup, StagedTable


def schema_changes(d, load_id: str, groups: list[StagedGroup], plans: list[Plan],
                   state: CatalogState, rebuilt: dict[str, list[str]],
                   now: datetime) -> list[r.SchemaChange]:
    out: list[r.SchemaChange] = []
    for group, plan in zip(groups, plans, strict=True):
        change = _Recorder(out, load_id, group.stream, now)
        fields = {(t, col): (path, jt) for t, path, jt, col in plan.new_columns}
        mapped_before = {n for (s, _p), n in state.tables.items() if s == group.stream}
        root = plan.tables.get(ROOT_TABLE_KEY)
        root_name = root.name if root else state.tables.get((group.stream, ROOT_TABLE_KEY), "")
        if root_name:  # (a load of filtered records only, before the table: logged later)
            _map_changes(out, load_id, group, root_name, state, now)
        for tpath in sorted(plan.tables, key=table_order):
            tp = plan.tables[tpath]
            st = group.tables.get(tpath)
            if tp.create:
                kind = r.TABLE_CREATED if tpath == ROOT_TABLE_KEY else r.CHILD_TABLE_CREATED
                detail = f"{len(tp.new_columns)} columns"
                if tp.name in mapped_before:
                    detail += "; created again (it had been dropped)"
                change(kind, tp, _batch_at(group, st, 0), source_path=tpath, detail=detail)
            for col, sql_type in tp.new_columns:
                split = (tp.name, col) in plan.split
                if (tp.name, col) not in fields:
                    continue  # a system column: every table has them (the contract)
                # also the columns of a new table: which columns a table has, and since
                # when, reads the same however batches were grouped into loads
                path, json_type = fields[(tp.name, col)]
                first = st.observed.first.get((path, json_type), 0) if st else 0
                batch = _batch_at(group, st, first)
                base = tp.columns.get((path, st.observed.declared.get(path))) if st else None
                owner = "declared" if base and (tp.name, base) not in plan.split else "first"
                detail = f"values of type {json_type} of a field whose {owner} type has " \
                    "the base name" if split else None
                made_by = _made_by(group, batch)
                if made_by:
                    detail = f"{detail}; {made_by}" if detail else made_by
                change(r.SPLIT_COLUMN_ADDED if split else r.COLUMN_ADDED, tp, batch,
                       column=col, source_path=path, json_type=json_type, new_type=sql_type,
                       detail=detail)
            if st is not None and st.observed.moved:
                _declared_applied(d, change, tp, group, st, state)
            sources = {c: k for k, c in tp.columns.items()}
            for col, wider in tp.widen:
                path, json_type = sources.get(col, (None, None))
                old = state.physical.get(tp.name, {}).get(col)
                change(r.COLUMN_WIDENED, tp, _batch_of_longest(group, st, (path, json_type)),
                       column=col, source_path=path, json_type=json_type,
                       old_type=d.types.spelled(old) if old else None, new_type=wider)
            for view in rebuilt.get(tp.name, []):
                change(r.VIEW_REBUILT, tp, None, detail=f"view {view} dropped and created "
                       "again around the widening, with its owner, grants and comment")
        if group.activate_version is not None:
            out.append(r.SchemaChange(
                load_id, r.VERSION_ACTIVATED, group.stream, root_name,
                batch_id=group.batch_ids[-1], changed_at=now,
                contract_version=CONTRACT_VERSION,
                detail=f"table version {group.activate_version} active: rows of older "
                       "versions retired from the stream's tables"))
    return out


def _map_changes(out: list, load_id: str, group: StagedGroup, table: str,
                 state: CatalogState, now: datetime) -> None:
    """A ``map_changed`` row for each stream map whose version is newer than any the
    stream's tables were loaded under, at the first batch it made. Only newer: a late batch
    of an older window (made by the older version) changes nothing."""
    newest = {}
    for batch_id, versions in zip(group.batch_ids, group.map_versions or [], strict=False):
        for map_stream, version in sorted((versions or {}).items()):
            key = (group.stream, map_stream)
            before = newest.get(key, state.map_versions.get(key, 0))
            if version <= before:
                continue
            newest[key] = version
            into = "" if map_stream == group.stream else \
                f" (its map aliases them into {group.stream})"
            out.append(r.SchemaChange(
                load_id, r.MAP_CHANGED, group.stream, table, source_path=map_stream,
                old_type=f"v{before}" if before else None, new_type=f"v{version}",
                batch_id=batch_id, changed_at=now, contract_version=CONTRACT_VERSION,
                detail=f"the stream map of {map_stream} is at version {version} from this "
                       f"batch on{into} (before: {f'version {before}' if before else 'no map'}"
                       "). "
                       "'spool maps history' shows what each version does (a removal is a "
                       "version too: its records load unmapped)"))


def _declared_applied(d, change, tp: TablePlan, group: StagedGroup, st: StagedTable,
                      state: CatalogState) -> None:
    """A ``declared_type_applied`` row for each field whose values of one type now go to
    the column of the type the stream's Singer schema declares (contract v3), where an
    earlier load gave that type a column of its own: once per table, field and type."""
    before = state.columns.get(tp.name, {})
    for (path, own), (declared, first) in sorted(st.observed.moved.items()):
        old_col = before.get((path, own))
        if old_col is None or (tp.name, path, own) in state.declared_applied:
            continue
        state.declared_applied.add((tp.name, path, own))
        col = tp.columns[(path, declared)]
        physical = state.physical.get(tp.name, {})
        old_sql = d.types.spelled(physical[old_col]) if old_col in physical else None
        new_sql = d.types.spelled(physical[col]) if col in physical else tp.sql_types[col]
        change(r.DECLARED_TYPE_APPLIED, tp, _batch_at(group, st, first), column=col,
               source_path=path, json_type=own, old_type=old_sql, new_type=new_sql,
               detail=f"{own} values of this field go to {col} ({declared}, as the "
                      f"stream's Singer schema declares) from this batch on; {old_col} "
                      "keeps those loaded before (warehouse contract v3)")


def _made_by(group: StagedGroup, batch_id: str | None) -> str | None:
    """Under which stream map versions a batch's records came, in words (None: no map)."""
    if batch_id not in group.batch_ids:
        return None
    index = group.batch_ids.index(batch_id)
    versions = group.map_versions[index] if index < len(group.map_versions) else None
    if not versions:
        return None
    return "in a batch under " + ", ".join(
        f"stream map v{v} of {s}" for s, v in sorted(versions.items()))


class _Recorder:
    """Appends one stream's changes to ``out``."""

    def __init__(self, out: list, load_id: str, stream: str, now: datetime) -> None:
        self.out, self.load_id, self.stream, self.now = out, load_id, stream, now

    def __call__(self, kind: str, tp: TablePlan, batch: str | None, **kw) -> None:
        self.out.append(r.SchemaChange(self.load_id, kind, self.stream, tp.name,
                                       batch_id=batch, changed_at=self.now,
                                       contract_version=CONTRACT_VERSION, **kw))


def _batch_at(group: StagedGroup, st: StagedTable | None, row: int) -> str | None:
    """The batch the ``row``-th staged row of a table came from."""
    if st is None or not st.rows or BATCH_INDEX not in st.system:
        return group.batch_ids[0] if group.batch_ids else None
    index = st.system[BATCH_INDEX][min(max(row, 0), st.rows - 1)].as_py()
    return group.batch_ids[index] if 0 <= index < len(group.batch_ids) else None


def _batch_of_longest(group: StagedGroup, st: StagedTable | None, key) -> str | None:
    values = st.data.get(key) if st else None
    if values is None or values.null_count == len(values):
        return _batch_at(group, st, 0)
    lengths = pc.fill_null(pc.binary_length(values), 0)
    return _batch_at(group, st, pc.index(lengths, pc.max(lengths)).as_py())


def change_rows(changes: list[r.SchemaChange]) -> list[tuple]:
    """``_sdc_schema_changes`` rows, in the contract's column order."""
    return [(c.changed_at, c.load_id, i, c.kind, c.stream, c.table, c.column, c.source_path,
             c.json_type, c.old_type, c.new_type, c.batch_id, c.detail, c.contract_version)
            for i, c in enumerate(changes, start=1)]


def load_rows(reports: list[r.TableReport], loader: str) -> list[tuple]:
    """``_sdc_loads`` rows, in the contract's column order."""
    return [(x.load_id, x.stream, x.table, x.rows_inserted, x.rows_updated,
             x.rows_superseded, x.rows_retired, x.rows_rejected, x.values_cut,
             x.min_received_at, x.max_received_at, x.min_extracted_at, x.max_extracted_at,
             json.dumps(x.batch_ids)[:65535], x.started_at, x.finished_at, loader)
            for x in reports]
