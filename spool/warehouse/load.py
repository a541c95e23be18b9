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
7. write cut values' reports to ``_sdc_rejected`` and the batch ids to ``_sdc_load_log``;
8. commit.

Statements that need no answer are sent together, one round trip per step. The ledger is
updated by the caller, after the commit.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg2.extras import execute_values

from spool import sdc
from spool.failpoints import failpoint
from spool.warehouse import schema as tenant_schema
from spool.warehouse.evolve import apply_ddl
from spool.warehouse.merge import load_streams
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
        with conn, conn.cursor() as cur:
            tenant_schema.prepare(d, cur, schema, known)
            done = tenant_schema.loaded_batches(d, cur, schema,
                                                [b for g in groups for b in g.batch_ids])
            groups = [g for g in (without_batches(g, done) for g in groups) if g.batch_ids]
            if not groups:
                return LoadResult([], sorted(done), 0, [])
            state = tenant_schema.read_state(d, cur, schema, [g.stream for g in groups])
            plans = []
            for group in groups:
                observed = {t: st.observed for t, st in group.tables.items()}
                plan = plan_load(d, group.stream, group.key_names, observed, state)
                state.relations |= {name for _s, _p, name in plan.new_tables}
                plans.append(plan)
            apply_ddl(d, cur, schema, groups, plans)
            load_streams(d, self.stager, cur, schema, groups, plans, state)
            self._report_cuts(cur, schema, groups)
            now = datetime.now(tz=UTC)
            execute_values(cur, d.bookkeeping.insert_load_log_values(schema),
                           [(b, g.stream, n, now, self.name) for g in groups
                            for b, n in zip(g.batch_ids, g.row_counts, strict=True)])
            failpoint("load.before_commit")
        return LoadResult([b for g in groups for b in g.batch_ids], sorted(done),
                          sum(st.rows for g in groups for st in g.tables.values()),
                          [t.name for p in plans for t in p.tables.values()])

    def _report_cuts(self, cur, schema: str, groups: list[StagedGroup]) -> None:
        """A row in ``_sdc_rejected`` for every value changed to fit the warehouse."""
        now = datetime.now(tz=UTC)
        limit = self.dialect.caps.max_varchar_bytes or 1_000_000_000
        rows = []
        for group in groups:
            for cut in group.cuts:
                batch_id = group.batch_ids[cut.batch] if cut.batch < len(group.batch_ids) \
                    else "?"
                reason = (f"{cut.reason}: field {cut.path} of table {cut.table}, record "
                          f"{cut.record_id}; the whole value is in batch {batch_id}")
                record = json.dumps({sdc.RECORD_ID: cut.record_id, "batch_id": batch_id,
                                     "table": cut.table, "field": json.loads(cut.path),
                                     "value": cut.value}, ensure_ascii=False)
                if len(record.encode()) > limit:
                    record = record.encode()[:limit].decode("utf-8", errors="ignore")
                rows.append((now, group.stream, "value_cut", reason, record, cut.record_id))
        if rows:
            execute_values(cur, self.dialect.bookkeeping.insert_rejected_values(schema), rows)
