"""Loading streams' batches into a tenant schema, in ONE warehouse transaction.

Steps, in this order (a crash between any two leaves the warehouse as before the
transaction, or with the batches recorded in the load log, which makes a re-run a no-op):

1. lock the tenant schema for loads (other loaders of the same schema wait), creating it and
   Spool's tables the first time (spool.warehouse.schema);
2. drop batches already in ``_sdc_load_log`` (they were committed before);
3. read the catalog and plan names, new tables, new columns and widenings (spool.warehouse.
   plan), stream by stream;
4. apply the DDL: create tables, add columns, index tables that have grown past a few MB,
   widen VARCHARs around dependent views (spool.warehouse.evolve);
5. put each stream's rows in: straight into tables created by this load; otherwise into the
   tenant's one stage (one COPY), then merged, upsert by key and sequence or append
   deduplicated by record id (spool.warehouse.merge);
6. retire rows of older table versions after an ACTIVATE_VERSION (also merge);
7. write cut values' reports to ``_sdc_rejected``, the schema changes of steps 3-4 to
   ``_sdc_schema_changes``, what the load did per table to ``_sdc_loads`` (spool.warehouse.
   report) and the batch ids to ``_sdc_load_log``;
8. commit.

Statements that need no answer are sent together, one round trip per step. The ledger is
updated by the caller, after the commit.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg2.extras import execute_values

from spool import sdc
from spool.failpoints import failpoint
from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse import schema as tenant_schema
from spool.warehouse.changes import change_rows, load_rows, schema_changes
from spool.warehouse.contract import REJECTED_TABLE, STAGE_TABLE
from spool.warehouse.dialects import TransientError
from spool.warehouse.evolve import apply_ddl
from spool.warehouse.merge import Stage, load_streams
from spool.warehouse.plan import plan_load
from spool.warehouse.report import SchemaChange, TableReport
from spool.warehouse.stage import StagedGroup, without_batches
from spool.warehouse.stagers import CopyStdinStager


@dataclass
class LoadResult:
    loaded: list[str]  # batch ids committed by this load
    skipped: list[str]  # batch ids that were already in the load log
    rows: int
    tables: list[str]
    reports: list[TableReport] = field(default_factory=list)  # per table of the load
    changes: list[SchemaChange] = field(default_factory=list)  # DDL it applied


class Loader:
    """Loads into tenant schemas of one warehouse (``dialect``), staging with ``stager``."""

    def __init__(self, dialect, stager=None, name: str = "spool-loader") -> None:
        self.dialect = dialect
        self.stager = stager or CopyStdinStager()
        self.name = name
        # schemas known ready on each connection of this loader (made ready by a committed
        # load): the next load locks them but skips creating them again
        self._ready: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def load(self, conn, schema: str, groups: list[StagedGroup] | StagedGroup) -> LoadResult:
        """Load the staged groups (one per stream) into ``schema`` in one transaction."""
        if isinstance(groups, StagedGroup):
            groups = [groups]
        ready = self._ready.setdefault(conn, set())
        try:
            result = self._load(conn, schema, groups, known=schema in ready)
        except BaseException:
            ready.discard(schema)  # the transaction rolled back
            raise
        ready.add(schema)
        return result

    def _load(self, conn, schema: str, groups: list[StagedGroup], known: bool) -> LoadResult:
        d = self.dialect
        started = datetime.now(tz=UTC)
        with conn, conn.cursor() as cur:
            tenant_schema.prepare(d, cur, schema, known)
            done = tenant_schema.loaded_batches(d, cur, schema,
                                                [b for g in groups for b in g.batch_ids])
            groups = [g for g in (without_batches(g, done) for g in groups) if g.batch_ids]
            # batches an earlier load committed (its loader died before the ledger heard):
            # their reports and changes are handed on again, so the ledger and the webhooks
            # get them at least once
            before = earlier_loads(d, cur, schema, {x for x in done.values() if x})
            if not groups:
                return LoadResult([], sorted(done), 0, [], reports=before[0],
                                  changes=before[1])
            state = tenant_schema.read_state(
                d, cur, schema, [g.stream for g in groups],
                [g.stream for g in groups if any(g.map_versions)],
                moved=any(st.observed.moved for g in groups for st in g.tables.values()))
            plans = []
            for group in groups:
                observed = {t: st.observed for t, st in group.tables.items()}
                plan = plan_load(d, group.stream, group.key_names, observed, state)
                state.relations |= {name for _s, _p, name in plan.new_tables}
                plans.append(plan)
            load_id = load_id_of([b for g in groups for b in g.batch_ids])
            if d.caps.transactional_ddl:
                rebuilt, logged = apply_ddl(d, cur, schema, groups, plans), None
            else:
                rebuilt, logged = {}, self._ddl_committed_first(cur, schema, groups, plans,
                                                                state, load_id)
            reports = {tp.name: TableReport(load_id, g.stream, tp.name,
                                            batch_ids=list(g.batch_ids))
                       for g, p in zip(groups, plans, strict=True) for tp in p.tables.values()}
            load_streams(d, self.stager, cur, schema, groups, plans, state, reports)
            self._report_cuts(cur, schema, groups, plans, reports)
            _count_rejections(groups, plans, state, reports)
            now = datetime.now(tz=UTC)
            changes = logged if logged is not None else \
                schema_changes(d, load_id, groups, plans, state, rebuilt, now)
            for report in reports.values():
                report.load_id, report.started_at, report.finished_at = load_id, started, now
            if changes and logged is None:
                execute_values(cur, d.bookkeeping.insert_schema_changes_values(schema),
                               change_rows(changes))
            execute_values(cur, d.bookkeeping.insert_loads_values(schema),
                           load_rows(list(reports.values()), self.name))
            execute_values(cur, d.bookkeeping.insert_load_log_values(schema),
                           [(b, g.stream, n, now, self.name, load_id) for g in groups
                            for b, n in zip(g.batch_ids, g.row_counts, strict=True)])
            failpoint("load.before_commit")
        return LoadResult([b for g in groups for b in g.batch_ids], sorted(done),
                          sum(st.rows for g in groups for st in g.tables.values()),
                          [t.name for p in plans for t in p.tables.values()],
                          reports=before[0] + list(reports.values()),
                          changes=before[1] + changes)

    def _ddl_committed_first(self, cur, schema: str, groups: list[StagedGroup],
                             plans: list, state, load_id: str) -> list[SchemaChange]:
        """The DDL of a warehouse that commits before and after every DDL statement
        (Snowflake); returns the schema changes, logged already.

        The names the plans decided and the schema changes are written first: the first
        DDL statement commits them. The DDL is idempotent and a plan compares names with
        the physical tables, so a load that died after the names were committed adds the
        tables and columns still missing when it is retried (logged again, as created
        again), and a table it created is never taken for a user's and renamed. The stage
        is made wide enough here too, before the schema's lock is taken again, and the
        load log read again: batches another loader committed meanwhile make this load
        retry (and skip them)."""
        d = self.dialect
        # an attempt that died after its DDL logged its changes already: they are this
        # load's too (the same batches, the same load id)
        before = logged_changes(d, cur, schema, {load_id})
        changes = schema_changes(d, load_id, groups, plans, state, {}, datetime.now(tz=UTC))
        tenant_schema.record_names(d, cur, schema, plans)
        if changes:  # numbered after the ones logged before
            execute_values(cur, d.bookkeeping.insert_schema_changes_values(schema),
                           change_rows(before + changes)[len(before):])
        ddl = any(tp.create or tp.new_columns for p in plans for tp in p.tables.values())
        if ddl:
            apply_ddl(d, cur, schema, groups, plans, record=False)
        merged = [tp for p in plans for tp in p.tables.values() if not tp.create]
        if merged:
            stage_before = dict(state.physical.get(STAGE_TABLE) or {})
            Stage(d, schema, state).ensure(cur, max(len(tp.sql_types) for tp in merged))
            ddl = ddl or state.physical[STAGE_TABLE] != stage_before
        if not ddl:  # nothing was committed: the lock taken at the start still holds
            return before + changes
        cur.execute(*d.bookkeeping.lock_schema(schema))
        meanwhile = tenant_schema.loaded_batches(d, cur, schema,
                                                 [b for g in groups for b in g.batch_ids])
        if meanwhile:
            raise TransientError(f"{len(meanwhile)} batches of this load were loaded into "
                                 f"{schema} by another loader meanwhile; retrying without "
                                 "them")
        return before + changes

    def _report_cuts(self, cur, schema: str, groups: list[StagedGroup], plans: list,
                     reports: dict[str, TableReport]) -> None:
        """A row in ``_sdc_rejected`` for every value changed to fit the warehouse, naming
        the table and column a user can query."""
        now = datetime.now(tz=UTC)
        limit = self.dialect.caps.max_varchar_bytes or 1_000_000_000
        rows = []
        for group, plan in zip(groups, plans, strict=True):
            for cut in group.cuts:
                batch_id = group.batch_ids[cut.batch] if cut.batch < len(group.batch_ids) \
                    else "?"
                table, column = _where(plan, cut.table, cut.path)
                if table in reports:
                    reports[table].values_cut += 1
                reason = (f"{cut.reason}: column {column} of table {table}, record "
                          f"{cut.record_id}; the whole value is in batch {batch_id}")
                record = json.dumps({sdc.RECORD_ID: cut.record_id, "batch_id": batch_id,
                                     "table": table, "column": column,
                                     "field": json.loads(cut.path), "value": cut.value},
                                    ensure_ascii=False)
                if len(record.encode()) > limit:
                    record = record.encode()[:limit].decode("utf-8", errors="ignore")
                rows.append((now, group.stream, "value_cut", reason, record, cut.record_id))
        if rows:
            execute_values(cur, self.dialect.bookkeeping.insert_rejected_values(schema), rows)


def earlier_loads(d, cur, schema: str,
                  load_ids: set[str]) -> tuple[list[TableReport], list[SchemaChange]]:
    """The reports and schema changes of loads committed before, from the schema."""
    if not load_ids:
        return [], []
    cur.execute(d.bookkeeping.loads_of(schema), (tuple(sorted(load_ids)),))
    # (rows_superseded is NULL in rows written before contract v3)
    reports = [TableReport(load_id, stream, table, ins, upd, sup or 0, ret, rej, cut, r0, r1,
                           e0, e1, batch_ids=json.loads(batch_ids or "[]"),
                           started_at=started, finished_at=finished)
               for (load_id, stream, table, ins, upd, sup, ret, rej, cut, r0, r1, e0, e1,
                    batch_ids, started, finished, _loader) in cur.fetchall()]
    return reports, logged_changes(d, cur, schema, load_ids)


def logged_changes(d, cur, schema: str, load_ids: set[str]) -> list[SchemaChange]:
    """The schema changes the schema's log holds for ``load_ids``, in their order."""
    cur.execute(d.bookkeeping.changes_of(schema), (tuple(sorted(load_ids)),))
    return [SchemaChange(load_id, kind, stream, table, column, source, json_type, old, new,
                         batch, detail, at, version)
            for (at, load_id, _pos, kind, stream, table, column, source, json_type, old, new,
                 batch, detail, version) in cur.fetchall()]


def load_id_of(batch_ids: list[str]) -> str:
    """A load's id: derived from its batches, so the same load retried has the same id."""
    return hashlib.sha256("\n".join(batch_ids).encode()).hexdigest()[:24]


def _where(plan, tpath: str, path: str) -> tuple[str, str]:
    """The warehouse table and column of a staged (table path, field path)."""
    tp = plan.tables.get(tpath)
    if tp is None:
        return tpath, path
    column = tp.columns.get((path, "string"))
    if column is None:  # a system column (the text of a rejected message)
        field = json.loads(path)
        column = field[0] if len(field) == 1 and field[0] in tp.sql_types else path
    return tp.name, column


def _count_rejections(groups: list[StagedGroup], plans: list, state,
                      reports: dict[str, TableReport]) -> None:
    """Rejected records of the load, by reason code on the ``_sdc_rejected`` report and
    by stream on the stream's root table report (when the stream is in the load)."""
    roots = {g.stream: p.tables[ROOT_TABLE_KEY].name for g, p in zip(groups, plans, strict=True)
             if ROOT_TABLE_KEY in p.tables}
    for group in groups:
        if group.stream != REJECTED_TABLE or ROOT_TABLE_KEY not in group.tables:
            continue
        st = group.tables[ROOT_TABLE_KEY]
        report = reports.get(REJECTED_TABLE)
        codes = st.system["reason_code"].to_pylist() if "reason_code" in st.system \
            else ["unknown"] * st.rows
        # a column only ever null (no rejected message named a stream) is not staged
        streams = st.system["table_name"].to_pylist() if "table_name" in st.system \
            else [None] * len(codes)
        for code, stream in zip(codes, streams, strict=True):
            if report is not None:
                report.rejected_by_reason[code] = report.rejected_by_reason.get(code, 0) + 1
            root = roots.get(stream) or state.tables.get((stream, ROOT_TABLE_KEY))
            if root in reports:
                reports[root].rows_rejected += 1
