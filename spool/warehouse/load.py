"""Loading streams' batches into a tenant schema, in ONE warehouse transaction.

Steps, in this order (a crash between any two leaves the warehouse as before the
transaction, or with the batches recorded in the load log, which makes a re-run a no-op):

1. lock the tenant schema for loads (other loaders of the same schema wait);
2. drop batches already in ``_sdc_load_log`` (they were committed before);
3. read the catalog and plan names, new tables, new columns and widenings (spool.warehouse.
   plan), stream by stream;
4. apply the DDL: create tables, add columns, index tables that have grown past a few MB,
   widen VARCHARs (rebuilding dependent views in the same transaction, with their owners,
   grants and comments);
5. stage and merge each stream:
   * a stream whose tables were created in this transaction has nothing to merge with: its
     rows are deduplicated in memory (the latest record per key for upserts) and copied
     straight into the tables;
   * otherwise rows are copied into the table's stage (``_sdc_stage_*``, an unlogged table
     in the schema that is empty between loads), then merged: upsert by key and
     ``_sdc_sequence`` (a row replaces the stored one unless the stored sequence is higher;
     a replaced record's child rows are replaced in every child table of the stream), or
     append deduplicated on ``_sdc_record_id``;
6. retire rows of older table versions after an ACTIVATE_VERSION;
7. write cut values' reports to ``_sdc_rejected`` and the batch ids to ``_sdc_load_log``;
8. commit.

Statements that need no answer are sent together, one round trip per step. The ledger is
updated by the caller, after the commit.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg2.extras import execute_values

from spool.failpoints import failpoint
from spool.warehouse import CONTRACT_VERSION
from spool.warehouse.contract import CATALOG, REJECTED_TABLE
from spool.warehouse.dialects import TerminalError, qualified
from spool.warehouse.plan import (
    ROOT,
    CatalogState,
    Plan,
    TablePlan,
    plan_load,
    source_key_column,
)
from spool.warehouse.stage import STAGE_ORDINAL, StagedGroup, StagedTable

log = logging.getLogger(__name__)
CSV_OPTIONS = pacsv.WriteOptions(include_header=False)
# a table gets its merge indexes (record id, keys) once its heap passes this size: below it
# a scan is as fast, and creating two indexes with every new table would double DDL time
INDEX_AFTER_BYTES = 4 * 1024 * 1024
_READY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # conn → schemas set up


@dataclass
class LoadResult:
    loaded: list[str]  # batch ids committed by this load
    skipped: list[str]  # batch ids that were already in the load log
    rows: int
    tables: list[str]


class CopyStdinStager:
    """Stage rows with ``COPY ... FROM STDIN`` (PostgreSQL; Redshift-on-PostgreSQL tests)."""

    def stage(self, cur, dialect, table: str, columns: list[str], csv: bytes) -> None:
        cur.copy_expert(dialect.copy_stdin(table, columns), io.BytesIO(csv))


class Statements:
    """Statements sent together in one round trip (none of them returns rows)."""

    def __init__(self, cur) -> None:
        self.cur = cur
        self.parts: list[bytes] = []

    def add(self, sql: str, params=None) -> None:
        self.parts.append(self.cur.mogrify(sql, params) if params is not None
                          else sql.encode())

    def flush(self) -> None:
        if self.parts:
            self.cur.execute(b";\n".join(self.parts))
            self.parts = []


class Loader:
    def __init__(self, dialect, stager=None, name: str = "spool-loader") -> None:
        self.dialect = dialect
        self.stager = stager or CopyStdinStager()
        self.name = name

    # -- the transaction ----------------------------------------------------------------

    def load(self, conn, schema: str, groups: list[StagedGroup] | StagedGroup) -> LoadResult:
        """Load the staged groups (one per stream) into ``schema`` in one transaction."""
        if isinstance(groups, StagedGroup):
            groups = [groups]
        all_ids = [b for g in groups for b in g.batch_ids]
        try:
            return self._load(conn, schema, groups, all_ids)
        except BaseException:
            _READY.get(conn, set()).discard(schema)  # the transaction rolled back
            raise

    def _load(self, conn, schema: str, groups: list[StagedGroup], all_ids: list[str]):
        d = self.dialect
        with conn, conn.cursor() as cur:
            self._prepare(conn, cur, schema)
            cur.execute(d.loaded_batches(schema), (tuple(all_ids) or ("",),))
            done = {r[0] for r in cur.fetchall()}
            groups = [g for g in (_without_batches(g, done) for g in groups) if g.batch_ids]
            if not groups:
                return LoadResult([], sorted(done), 0, [])
            state = self._catalog_state(cur, schema, [g.stream for g in groups])
            plans = []
            for group in groups:
                observed = {t: st.observed for t, st in group.tables.items()}
                plan = plan_load(d, group.stream, group.key_names, observed, state)
                state.relations |= {name for _s, _p, name in plan.new_tables}
                plans.append(plan)
            self._apply_ddl(cur, schema, groups, plans)
            for group, plan in zip(groups, plans, strict=True):
                self._load_stream(cur, schema, group, plan, state)
            self._report_cuts(cur, schema, groups)
            now = datetime.now(tz=UTC)
            execute_values(cur, d.insert_load_log_values(schema),
                           [(b, g.stream, n, now, self.name) for g in groups
                            for b, n in zip(g.batch_ids, g.row_counts, strict=True)])
            failpoint("load.before_commit")
        return LoadResult([b for g in groups for b in g.batch_ids], sorted(done),
                          sum(st.rows for g in groups for st in g.tables.values()),
                          [t.name for p in plans for t in p.tables.values()])

    def _prepare(self, conn, cur, schema: str) -> None:
        """Lock the schema for loads; create it and its catalog tables the first time this
        connection meets it."""
        d = self.dialect
        ready = _READY.setdefault(conn, set())
        batch = Statements(cur)
        if d.caps.advisory_locks:  # before CREATE ... IF NOT EXISTS, which races otherwise
            batch.add(*d.lock_schema(schema))
        if schema not in ready:
            batch.add(d.create_schema(schema))
            for table, columns in CATALOG.items():
                batch.add(d.create_table(schema, table,
                                         [(c, d.column_type(t, n)) for c, t, n in columns]))
            if d.index_load_log(schema):
                batch.add(d.index_load_log(schema))
        if not d.caps.advisory_locks:
            batch.add(*d.lock_schema(schema))
        batch.flush()
        if schema not in ready:
            self._check_contract(cur, schema)
        # known good once this transaction commits; load() forgets it on any failure
        ready.add(schema)

    def _check_contract(self, cur, schema: str) -> None:
        cur.execute(self.dialect.contract_version(schema))
        version = cur.fetchone()[0]
        if version is None:
            cur.execute(self.dialect.insert_contract(schema),
                        (CONTRACT_VERSION, datetime.now(tz=UTC)))
        elif version > CONTRACT_VERSION:
            raise TerminalError(f"schema {schema} was loaded with warehouse contract v{version}; "
                                f"this loader knows v{CONTRACT_VERSION}: upgrade Spool")

    def _catalog_state(self, cur, schema: str, streams: list[str]) -> CatalogState:
        d = self.dialect
        state = CatalogState()
        cur.execute(d.catalog_tables(schema), (tuple(streams),))
        for s, p, n in cur.fetchall():
            state.tables[(s, p)] = n
        cur.execute(d.relations(), (schema,))
        state.relations = {r[0] for r in cur.fetchall()}
        names = tuple(state.tables.values())
        if names:
            cur.execute(d.catalog_columns(schema), (names,))
            for t, source, json_type, col in cur.fetchall():
                state.columns.setdefault(t, {})[(source, json_type)] = col
            helpers = tuple(f(n) for n in names for f in (stage_table, winners_table))
            cur.execute(d.physical_columns(), (schema, names + helpers))
            for t, col, sql_type in cur.fetchall():
                state.physical.setdefault(t, {})[col] = sql_type
            sizes = d.table_sizes()
            if sizes:
                cur.execute(sizes, (schema, names))
                state.unindexed_large = {t for t, size, indexed in cur.fetchall()
                                         if size >= INDEX_AFTER_BYTES and not indexed}
        return state

    # -- DDL ----------------------------------------------------------------------------

    def _apply_ddl(self, cur, schema: str, groups: list[StagedGroup], plans: list[Plan]) -> None:
        d = self.dialect
        now = datetime.now(tz=UTC)
        batch = Statements(cur)
        for group, plan in zip(groups, plans, strict=True):
            for tp in plan.tables.values():
                if tp.create:
                    batch.add(d.create_table(schema, tp.name, tp.new_columns))
                    continue
                for col, sql_type in tp.new_columns:
                    batch.add(d.add_column(schema, tp.name, col, sql_type))
                if tp.index:
                    # merges look rows up by record id and key: index once the table is big
                    for sql in (d.index_record_id(schema, tp.name),
                                d.index_keys(schema, tp.name, tp.key_columns)
                                if group.key_names and tp.key_columns else None):
                        if sql:
                            batch.add(sql)
        batch.flush()
        failpoint("load.ddl")
        for plan in plans:
            for tp in plan.tables.values():
                if tp.widen:
                    self._widen(cur, schema, tp)
        tables = [(*row, now) for p in plans for row in p.new_tables]
        columns = [(*row, now) for p in plans for row in p.new_columns]
        if tables:
            execute_values(cur, d.insert_catalog_table_values(schema), tables)
        if columns:
            execute_values(cur, d.insert_catalog_column_values(schema), columns)

    def _widen(self, cur, schema: str, tp: TablePlan) -> None:
        """Widen VARCHARs; views that depend on the table are dropped and recreated around
        the change, in this transaction, with their definition, owner, grants, comment."""
        d = self.dialect
        cur.execute(d.dependent_views(), (schema, tp.name))
        views = cur.fetchall()
        batch = Statements(cur)
        for view_schema, view, _definition, *_rest in reversed(views):
            batch.add(d.drop_view(view_schema, view))
        for col, sql_type in tp.widen:
            batch.add(d.alter_type(schema, tp.name, col, sql_type))
        for view_schema, view, definition, acl, owner, comment, _depth in views:
            batch.add(d.create_view(view_schema, view, definition.rstrip().rstrip(";")))
            if owner:
                batch.add(d.view_owner(view_schema, view, owner))
            for grantee, privileges in _grants(acl):
                batch.add(d.grant(view_schema, view, privileges, grantee))
            if comment:
                literal = cur.mogrify("%s", (comment,)).decode()
                batch.add(d.comment_view(view_schema, view, literal))
        batch.flush()

    # -- staging and merging --------------------------------------------------------------

    def _load_stream(self, cur, schema: str, group: StagedGroup, plan: Plan,
                     state: CatalogState) -> None:
        d = self.dialect
        root = plan.tables.get(ROOT)
        upsert = bool(group.key_names) and root is not None and bool(root.key_columns) \
            and group.stream != REJECTED_TABLE
        ordered = sorted(plan.tables, key=lambda t: (len(json.loads(t)), t))
        if root is not None and root.create:
            # fresh tables: nothing to merge with, rows go straight in
            winners = _latest_per_key(root, group.tables[ROOT]) if upsert else None
            for tpath in ordered:
                tp, st = plan.tables[tpath], group.tables[tpath]
                arrays = _arrays(tp, st)
                if winners is not None:
                    keep = pc.is_in(arrays["_sdc_record_id"], value_set=winners)
                    arrays = {k: pc.filter(v, keep) for k, v in arrays.items()}
                arrays.pop(STAGE_ORDINAL, None)
                self._copy(cur, qualified(schema, tp.name), arrays)
                failpoint("load.copy")
        else:
            batch = Statements(cur)
            staged = []
            for tpath in ordered:
                tp, st = plan.tables[tpath], group.tables[tpath]
                arrays = _arrays(tp, st)
                self._ensure_helper(batch, schema, stage_table(tp.name),
                                    [(c, self._stage_type(tp, c)) for c in arrays], state)
                staged.append((tp, arrays))
            if upsert:
                self._ensure_helper(batch, schema, winners_table(root.name),
                                    [(c, self._stage_type(root, c)) for c in
                                     [*root.key_columns, "_sdc_record_id", "_sdc_sequence"]],
                                    state)
            batch.flush()
            for tp, arrays in staged:
                self._copy(cur, qualified(schema, stage_table(tp.name)), arrays)
                failpoint("load.copy")
            if upsert:
                self._merge_upsert(batch, schema, group, plan, state, root)
            else:
                for tp in plan.tables.values():
                    batch.add(d.merge_append(qualified(schema, tp.name),
                                             qualified(schema, stage_table(tp.name)),
                                             _loaded_columns(tp)))
            # the helper tables are empty again when the transaction commits
            for tp in plan.tables.values():
                batch.add(d.clear(qualified(schema, stage_table(tp.name))))
            if upsert:
                batch.add(d.clear(qualified(schema, winners_table(root.name))))
            batch.flush()
        if group.activate_version is not None:
            batch = Statements(cur)
            for table in _stream_tables(group.stream, plan, state):
                batch.add(d.retire_versions(qualified(schema, table)), (group.activate_version,))
            batch.flush()

    def _copy(self, cur, target: str, arrays: dict[str, pa.Array]) -> None:
        if not arrays or not len(next(iter(arrays.values()))):
            return
        buf = io.BytesIO()
        pacsv.write_csv(pa.table(arrays), buf, CSV_OPTIONS)
        self.stager.stage(cur, self.dialect, target, list(arrays), buf.getvalue())

    def _ensure_helper(self, batch: Statements, schema: str, name: str,
                       columns: list[tuple[str, str]], state: CatalogState) -> None:
        """The stage or winners table ``name`` exists with at least ``columns``."""
        d = self.dialect
        have = state.physical.get(name)
        if have is None:
            batch.add(d.create_stage_table(qualified(schema, name), columns))
            state.physical[name] = dict(columns)
            return
        for col, sql_type in columns:
            if col not in have:
                batch.add(d.add_column(schema, name, col, sql_type))
                have[col] = sql_type

    def _stage_type(self, tp: TablePlan, col: str) -> str:
        sql_type = tp.sql_types.get(col, "bigint")
        if sql_type.lower().startswith(("varchar", "character varying")):
            # stage strings at the widest: the target may widen later, the stage need not
            return self.dialect.column_type("string", 65535)
        return sql_type

    def _merge_upsert(self, batch: Statements, schema: str, group: StagedGroup, plan: Plan,
                      state: CatalogState, root: TablePlan) -> None:
        d = self.dialect
        target = qualified(schema, root.name)
        winners = qualified(schema, winners_table(root.name))
        stage = qualified(schema, stage_table(root.name))
        batch.add(d.winners(winners, stage, root.key_columns))
        batch.add(d.drop_losers(winners, target, root.key_columns))
        batch.add(d.delete_replaced(target, winners, root.key_columns, root.key_columns))
        batch.add(d.insert_winners(target, stage, winners, _loaded_columns(root)))
        staged = {tp.name: tp for p, tp in plan.tables.items() if p != ROOT}
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
            batch.add(d.delete_replaced(qualified(schema, table), winners, source_cols,
                                        root.key_columns))
            tp = staged.get(table)
            if tp is not None:
                batch.add(d.insert_winners(qualified(schema, table),
                                           qualified(schema, stage_table(table)), winners,
                                           _loaded_columns(tp)))

    def _report_cuts(self, cur, schema: str, groups: list[StagedGroup]) -> None:
        now = datetime.now(tz=UTC)
        limit = self.dialect.caps.max_varchar_bytes or 1_000_000_000
        rows = []
        for group in groups:
            for cut in group.cuts:
                batch_id = group.batch_ids[cut.batch] if cut.batch < len(group.batch_ids) \
                    else "?"
                reason = (f"{cut.reason}: field {cut.path} of table {cut.table}, record "
                          f"{cut.record_id}; the whole value is in batch {batch_id}")
                record = json.dumps({"_sdc_record_id": cut.record_id, "batch_id": batch_id,
                                     "table": cut.table, "field": json.loads(cut.path),
                                     "value": cut.value}, ensure_ascii=False)
                if len(record.encode()) > limit:
                    record = record.encode()[:limit].decode("utf-8", errors="ignore")
                rows.append((now, group.stream, "value_cut", reason, record, cut.record_id))
        if rows:
            execute_values(cur, self.dialect.insert_rejected_values(schema), rows)

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
                      "_sdc_sequence": arrays["_sdc_sequence"],
                      STAGE_ORDINAL: arrays[STAGE_ORDINAL],
                      "_sdc_record_id": arrays["_sdc_record_id"]})
    table = table.sort_by([("_sdc_sequence", "ascending"), (STAGE_ORDINAL, "ascending")])
    latest = table.group_by(root.key_columns, use_threads=False).aggregate(
        [("_sdc_record_id", "last")])
    return latest.column("_sdc_record_id_last")


@functools.lru_cache(maxsize=65536)
def _helper_name(prefix: str, table: str) -> str:
    """A reserved ``_sdc`` name per target table: readable, and unique even when long
    table names share a beginning (a short digest of the whole name)."""
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    return f"{prefix}{table[:40]}_{digest}"


def stage_table(table: str) -> str:
    return _helper_name("_sdc_stage_", table)


def winners_table(table: str) -> str:
    return _helper_name("_sdc_winners_", table)


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
    keep = [i for i, b in enumerate(group.batch_ids) if b not in done]
    if len(keep) == len(group.batch_ids):
        return group
    renumber = {old: new for new, old in enumerate(keep)}
    mask_values = pa.array(keep, pa.int32())
    tables = {}
    for tpath, st in group.tables.items():
        mask = pc.is_in(st.system["_sdc_batch"], value_set=mask_values)
        sub = StagedTable(path=tpath, observed=st.observed)
        sub.data = {k: pc.filter(v, mask) for k, v in st.data.items()}
        sub.system = {k: pc.filter(v, mask) for k, v in st.system.items()}
        sub.source_keys = {k: pc.filter(v, mask) for k, v in st.source_keys.items()}
        sub.rows = pc.sum(mask).as_py() or 0
        tables[tpath] = sub
    return StagedGroup(group.stream, group.key_names, tables,
                       [group.batch_ids[i] for i in keep], group.activate_version,
                       [dataclasses.replace(c, batch=renumber[c.batch]) for c in group.cuts
                        if c.batch in renumber],
                       [group.row_counts[i] for i in keep])
