"""Loading one stream's batches into a tenant schema, in ONE warehouse transaction.

Steps, in this order (a crash between any two leaves the warehouse as before the
transaction, or with the batches recorded in the load log, which makes a re-run a no-op):

1. lock the tenant schema for loads (other loaders of the same schema wait);
2. drop batches already in ``_sdc_load_log`` (they were committed before);
3. read the catalog and plan names, new tables, new columns and widenings;
4. apply the DDL: create tables, add columns, widen VARCHARs (rebuilding dependent views in
   the same transaction, with their owners, grants and comments);
5. stage each table's rows (COPY into a temporary table);
6. merge: upsert by key and ``_sdc_sequence`` (a row replaces the stored one unless the
   stored sequence is higher; child rows of replaced records are replaced too), or append
   deduplicated on ``_sdc_record_id``;
7. retire rows of older table versions after an ACTIVATE_VERSION;
8. write cut values' records to ``_sdc_rejected`` and the batch ids to ``_sdc_load_log``;
9. commit.

The ledger is updated by the caller, after the commit.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.csv as pacsv

from spool.failpoints import failpoint
from spool.warehouse import CONTRACT_VERSION
from spool.warehouse.contract import (
    CATALOG,
    REJECTED_TABLE,
)
from spool.warehouse.dialects import TerminalError, qualified
from spool.warehouse.plan import ROOT, CatalogState, Plan, TablePlan, plan_load
from spool.warehouse.stage import STAGE_ORDINAL, StagedGroup, StagedTable

log = logging.getLogger(__name__)
CSV_OPTIONS = pacsv.WriteOptions(include_header=False)


@dataclass
class LoadResult:
    loaded: list[str]  # batch ids committed by this load
    skipped: list[str]  # batch ids that were already in the load log
    rows: int
    tables: list[str]


class CopyStdinStager:
    """Stage rows with ``COPY ... FROM STDIN`` (PostgreSQL; Redshift-on-PostgreSQL tests)."""

    def stage(self, cur, dialect, stage: str, columns: list[str], csv: bytes) -> None:
        cur.copy_expert(dialect.copy_stdin(stage, columns), io.BytesIO(csv))


class Loader:
    def __init__(self, dialect, stager=None, name: str = "spool-loader") -> None:
        self.dialect = dialect
        self.stager = stager or CopyStdinStager()
        self.name = name

    # -- the transaction ----------------------------------------------------------------

    def load(self, conn, schema: str, group: StagedGroup) -> LoadResult:
        d = self.dialect
        with conn, conn.cursor() as cur:
            if d.caps.advisory_locks:  # lock first: concurrent CREATE ... IF NOT EXISTS races
                cur.execute(*d.lock_schema(schema))
            cur.execute(d.create_schema(schema))
            self._ensure_catalog(cur, schema)
            if not d.caps.advisory_locks:
                cur.execute(*d.lock_schema(schema))
            self._check_contract(cur, schema)
            cur.execute(d.loaded_batches(schema), (tuple(group.batch_ids),))
            done = {r[0] for r in cur.fetchall()}
            if done:
                group = _without_batches(group, done)
            if not group.batch_ids:
                return LoadResult([], sorted(done), 0, [])
            state = self._catalog_state(cur, schema, group.stream)
            observed = {t: st.observed for t, st in group.tables.items()}
            plan = plan_load(d, group.stream, group.key_names, observed, state)
            self._apply_ddl(cur, schema, group, plan)
            rows = 0
            # the stream's tables that exist (a user may have dropped one; it is recreated
            # only when data for it arrives)
            stream_tables = sorted({n for (s, _p), n in state.tables.items()
                                    if s == group.stream and n in state.physical}
                                   | {t.name for t in plan.tables.values()})
            for tpath in sorted(plan.tables, key=lambda t: (len(json.loads(t)), t)):
                self._stage(cur, plan.tables[tpath], group.tables[tpath])
                failpoint("load.copy")
            self._merge(cur, schema, group, plan, stream_tables)
            if group.activate_version is not None:
                for table in stream_tables:
                    cur.execute(d.retire_versions(qualified(schema, table)),
                                (group.activate_version,))
            self._report_cuts(cur, schema, group)
            rows = sum(st.rows for st in group.tables.values())
            now = datetime.now(tz=UTC)
            cur.executemany(
                d.insert_load_log(schema),
                [(b, group.stream, n, now, self.name)
                 for b, n in zip(group.batch_ids, group.row_counts, strict=True)])
            self._drop_temps(cur, plan)
            failpoint("load.before_commit")
        return LoadResult(list(group.batch_ids), sorted(done), rows,
                          [t.name for t in plan.tables.values()])

    # -- catalog ------------------------------------------------------------------------

    def _ensure_catalog(self, cur, schema: str) -> None:
        d = self.dialect
        for table, columns in CATALOG.items():
            cols = [(c, d.column_type(t, n)) for c, t, n in columns]
            cur.execute(d.create_table(schema, table, cols))

    def _check_contract(self, cur, schema: str) -> None:
        cur.execute(self.dialect.contract_version(schema))
        version = cur.fetchone()[0]
        if version is None:
            cur.execute(self.dialect.insert_contract(schema),
                        (CONTRACT_VERSION, datetime.now(tz=UTC)))
        elif version > CONTRACT_VERSION:
            raise TerminalError(f"schema {schema} was loaded with warehouse contract v{version}; "
                                f"this loader knows v{CONTRACT_VERSION}: upgrade Spool")

    def _catalog_state(self, cur, schema: str, stream: str) -> CatalogState:
        d = self.dialect
        state = CatalogState()
        cur.execute(d.catalog_tables(schema), (stream,))
        for s, p, n in cur.fetchall():
            state.tables[(s, p)] = n
        cur.execute(d.relations(), (schema,))
        state.relations = {r[0] for r in cur.fetchall()}
        names = tuple(state.tables.values())
        if names:
            cur.execute(d.catalog_columns(schema), (names,))
            for t, source, json_type, col in cur.fetchall():
                state.columns.setdefault(t, {})[(source, json_type)] = col
            cur.execute(d.physical_columns(), (schema, names))
            for t, col, sql_type in cur.fetchall():
                state.physical.setdefault(t, {})[col] = sql_type
        return state

    # -- DDL ----------------------------------------------------------------------------

    def _apply_ddl(self, cur, schema: str, group: StagedGroup, plan: Plan) -> None:
        d = self.dialect
        now = datetime.now(tz=UTC)
        for tp in plan.tables.values():
            if tp.create:
                cur.execute(d.create_table(schema, tp.name, tp.new_columns))
                failpoint("load.ddl")
                self._indexes(cur, schema, group, tp)
            else:
                for col, sql_type in tp.new_columns:
                    cur.execute(d.add_column(schema, tp.name, col, sql_type))
                    failpoint("load.ddl")
                if tp.widen:
                    self._widen(cur, schema, tp)
        if plan.new_tables:
            cur.executemany(d.insert_catalog_table(schema),
                            [(*row, now) for row in plan.new_tables])
        if plan.new_columns:
            cur.executemany(d.insert_catalog_column(schema),
                            [(*row, now) for row in plan.new_columns])

    def _indexes(self, cur, schema: str, group: StagedGroup, tp: TablePlan) -> None:
        d = self.dialect
        sql = d.index_record_id(schema, tp.name)
        if sql:
            cur.execute(sql)
        if group.key_names and tp.key_columns:
            sql = d.index_keys(schema, tp.name, tp.key_columns)
            if sql:
                cur.execute(sql)

    def _widen(self, cur, schema: str, tp: TablePlan) -> None:
        """Widen VARCHARs; views that depend on the table are dropped and recreated around
        the change, in this transaction, with their definition, owner, grants, comment."""
        d = self.dialect
        cur.execute(d.dependent_views(), (schema, tp.name))
        views = cur.fetchall()
        for view_schema, view, _definition, *_rest in reversed(views):
            cur.execute(d.drop_view(view_schema, view))
        for col, sql_type in tp.widen:
            cur.execute(d.alter_type(schema, tp.name, col, sql_type))
        for view_schema, view, definition, acl, owner, comment, _depth in views:
            cur.execute(d.create_view(view_schema, view, definition.rstrip().rstrip(";")))
            if owner:
                cur.execute(d.view_owner(view_schema, view, owner))
            for grantee, privileges in _grants(acl):
                cur.execute(d.grant(view_schema, view, privileges, grantee))
            if comment:
                cur.execute(d.comment_view(view_schema, view), (comment,))

    # -- staging and merging --------------------------------------------------------------

    def _stage(self, cur, tp: TablePlan, st: StagedTable) -> None:
        d = self.dialect
        arrays, columns = self._stage_arrays(tp, st)
        stage = _stage_name(tp.name)
        types = [(c, tp.sql_types.get(c, "bigint")) for c in columns]
        drop = d.drop_temp(stage)
        if drop:
            cur.execute(drop)
        cur.execute(d.create_stage(stage, types))
        buf = io.BytesIO()
        pacsv.write_csv(pa.table(arrays), buf, CSV_OPTIONS)
        self.stager.stage(cur, d, stage, columns, buf.getvalue())

    def _stage_arrays(self, tp: TablePlan, st: StagedTable) -> tuple[dict, list[str]]:
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
        return arrays, list(arrays)

    def _merge(self, cur, schema: str, group: StagedGroup, plan: Plan,
               stream_tables: list[str]) -> None:
        d = self.dialect
        root = plan.tables.get(ROOT)
        upsert = bool(group.key_names) and root is not None and bool(root.key_columns) \
            and group.stream != REJECTED_TABLE
        if not upsert:
            for tp in plan.tables.values():
                cur.execute(d.merge_append(qualified(schema, tp.name), _stage_name(tp.name),
                                           self._loaded_columns(tp)))
            return
        winners = WINNERS
        drop = d.drop_temp(winners)
        if drop:
            cur.execute(drop)
        cur.execute(d.winners(winners, _stage_name(root.name), root.key_columns))
        cur.execute(d.drop_losers(winners, qualified(schema, root.name), root.key_columns))
        cur.execute(d.delete_replaced(qualified(schema, root.name), winners, root.key_columns,
                                      root.key_columns))
        cur.execute(d.insert_winners(qualified(schema, root.name), _stage_name(root.name),
                                     winners, self._loaded_columns(root)))
        staged_children = {tp.name: tp for p, tp in plan.tables.items() if p != ROOT}
        source_cols = [f"_sdc_source_key_{k}" for k in root.key_columns]
        for table in stream_tables:
            if table == root.name:
                continue
            # every child table of the stream: a replaced record's old child rows go, even
            # when its new version has none
            cur.execute(d.delete_replaced(qualified(schema, table), winners, source_cols,
                                          root.key_columns))
            tp = staged_children.get(table)
            if tp is not None:
                cur.execute(d.insert_winners(qualified(schema, table), _stage_name(table),
                                             winners, self._loaded_columns(tp)))

    @staticmethod
    def _loaded_columns(tp: TablePlan) -> list[str]:
        return [c for c in tp.staged_columns if c != STAGE_ORDINAL]

    def _report_cuts(self, cur, schema: str, group: StagedGroup) -> None:
        if not group.cuts:
            return
        now = datetime.now(tz=UTC)
        limit = self.dialect.caps.max_varchar_bytes or 1_000_000_000
        rows = []
        for cut in group.cuts:
            batch_id = group.batch_ids[cut.batch] if cut.batch < len(group.batch_ids) else "?"
            reason = (f"{cut.reason}: field {cut.path} of table {cut.table}, record "
                      f"{cut.record_id}; the whole value is in batch {batch_id}")
            record = json.dumps({"_sdc_record_id": cut.record_id, "batch_id": batch_id,
                                 "table": cut.table, "field": json.loads(cut.path),
                                 "value": cut.value}, ensure_ascii=False)
            if len(record.encode()) > limit:
                record = record.encode()[:limit].decode("utf-8", errors="ignore")
            rows.append((now, group.stream, "value_cut", reason, record, cut.record_id))
        cur.executemany(self.dialect.insert_rejected(schema), rows)

    def _drop_temps(self, cur, plan: Plan) -> None:
        for name in [*(_stage_name(tp.name) for tp in plan.tables.values()), WINNERS]:
            drop = self.dialect.drop_temp(name)
            if drop:
                cur.execute(drop)


WINNERS = "_sdc_winners"


def _stage_name(table: str) -> str:
    # temporary tables live in their own schema: the prefix only keeps names readable
    return f"_sdc_stage_{table}"[:63]


def _acl_items(acl) -> list[str]:
    """aclitems from ``relacl``: a list, or its text form ``{a=r/o,"group g=r/o"}``."""
    if not acl:
        return []
    if isinstance(acl, list | tuple):
        return [str(a) for a in acl]
    items, current, quoted = [], "", False
    for ch in str(acl).strip("{}"):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append(current)
            current = ""
        else:
            current += ch
    if current:
        items.append(current)
    return items


def _grants(acl) -> list[tuple[str, list[str]]]:
    """(grantee, privileges) from aclitems like ``alice=arwd/owner`` (``=r/o``: PUBLIC)."""
    letters = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "D": "TRUNCATE",
               "x": "REFERENCES", "t": "TRIGGER"}
    out: list[tuple[str, list[str]]] = []
    for item in _acl_items(acl):
        grantee, _, rest = item.partition("=")
        privs = rest.split("/")[0].replace("*", "")
        names = [letters[ch] for ch in privs if ch in letters]
        if names:
            out.append((grantee.strip('"') or "PUBLIC", names))
    return out


def _without_batches(group: StagedGroup, done: set[str]) -> StagedGroup:
    """The group minus batches already loaded (their rows dropped via the batch index)."""
    import pyarrow.compute as pc

    keep = [i for i, b in enumerate(group.batch_ids) if b not in done]
    if len(keep) == len(group.batch_ids):
        return group
    mask_values = pa.array(keep, pa.int32())
    tables = {}
    for tpath, st in group.tables.items():
        batch = st.system["_sdc_batch"]
        mask = pc.is_in(batch, value_set=mask_values)
        sub = StagedTable(path=tpath, observed=st.observed)
        sub.data = {k: pc.filter(v, mask) for k, v in st.data.items()}
        sub.system = {k: pc.filter(v, mask) for k, v in st.system.items()}
        sub.source_keys = {k: pc.filter(v, mask) for k, v in st.source_keys.items()}
        sub.rows = sum(1 for m in mask.to_pylist() if m)
        tables[tpath] = sub
    return StagedGroup(group.stream, group.key_names, tables,
                       [group.batch_ids[i] for i in keep], group.activate_version,
                       [c for c in group.cuts], group.records,
                       [group.row_counts[i] for i in keep])
