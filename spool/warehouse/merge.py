"""Putting a load's staged rows into their tables, inside the load's transaction.

* Upserts keep each key's latest record of the load (highest sequence, then latest arrival),
  ranked in memory before anything is sent; a replaced record's rows go with it in every
  table of the stream.
* A stream whose root table was created in this transaction has nothing to merge with: its
  rows are copied straight into the tables.
* Every other table's rows go into the tenant's one stage (``_sdc_stage``, one COPY for the
  whole load, a slot per table), then set-based statements, sent in one round trip, merge
  them: upsert by key and ``_sdc_sequence`` (a stored row is replaced unless its sequence is
  higher), or append deduplicated on ``_sdc_record_id``.
* After an ACTIVATE_VERSION, rows of older table versions are retired.
* What each table gained and lost is counted for the load report (and the records of an
  upsert that lost to a stored higher sequence: superseded): in memory where the
  load knows it (fresh tables); otherwise, where the warehouse counts rows per table and
  transaction (PostgreSQL's ``pg_stat_xact_user_tables``), from those counters after the
  merge and after retiring, one query each for the whole load; elsewhere (Redshift) by
  count queries before and after the merge, a few dozen tables per round trip.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spool import sdc
from spool.failpoints import failpoint
from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse.contract import (
    REJECTED_TABLE,
    STAGE_ORDINAL,
    STAGE_SLOT,
    STAGE_TABLE,
    stage_column,
)
from spool.warehouse.dialects import qualified
from spool.warehouse.plan import CatalogState, Plan, TablePlan, source_key_column, table_order
from spool.warehouse.report import TableReport
from spool.warehouse.stage import StagedGroup, StagedTable
from spool.warehouse.statements import Statements

Column = tuple[str, str, str]  # (target column, stage column, SQL type)


class Stage:
    """The rows of one load bound for the tenant's stage, a slot per target table."""

    def __init__(self, d, schema: str, state: CatalogState) -> None:
        self.d = d
        self.schema = schema
        self.state = state
        self.name = qualified(schema, STAGE_TABLE)
        self.parts: list[pa.Table] = []
        self.width = 0

    def add(self, tp: TablePlan, arrays: dict[str, pa.Array]) -> tuple[int, list[Column]]:
        """Stage a table's rows; returns their slot and columns."""
        slot = len(self.parts) + 1
        n = len(next(iter(arrays.values())))
        columns = [(col, stage_column(i), tp.sql_types[col])
                   for i, col in enumerate(arrays, start=1)]
        self.parts.append(pa.table({STAGE_SLOT: pa.array(np.full(n, slot, np.int32)),
                                    **{v: arrays[c] for c, v, _t in columns}}))
        self.width = max(self.width, len(columns))
        return slot, columns

    def send(self, stager, cur) -> None:
        """Create or widen the stage, then COPY every slot's rows into it at once."""
        if not self.parts:
            return
        columns = self.ensure(cur, self.width)
        stager.stage_parts(cur, self.d, self.name, [STAGE_SLOT, *columns], self.parts)

    def ensure(self, cur, width: int) -> list[str]:
        """The stage exists with at least ``width`` value columns (created or widened);
        returns the names of the first ``width``."""
        columns = [stage_column(i) for i in range(1, width + 1)]
        text = self.d.types.column_type("string", 65535)
        have = self.state.physical.get(STAGE_TABLE)
        batch = Statements(cur)
        if have is None:
            batch.add(self.d.staging.create_stage_table(
                self.name, [(STAGE_SLOT, "integer"), *((c, text) for c in columns)]))
            index = self.d.staging.index_stage(self.name)
            if index:
                batch.add(index)
            self.state.physical[STAGE_TABLE] = {STAGE_SLOT: "integer",
                                               **dict.fromkeys(columns, text)}
        else:
            for col in columns:
                if col not in have:
                    batch.add(self.d.ddl.add_column(self.schema, STAGE_TABLE, col, text))
                    have[col] = text
        batch.flush()
        return columns


class Tally:
    """How a load counts rows for its report. Where the warehouse keeps per-transaction
    row counters (``d.catalog.transaction_counts``), the tables merged through the stage
    are named here by role and read from the counters; elsewhere each count is a SELECT of
    two numbers (a, b) and what to do with them, run together before and after the merge.
    """

    CHUNK = 40  # SELECTs per UNION ALL: planning one of thousands grows faster than linearly

    def __init__(self, d) -> None:
        self.counters = d.catalog.transaction_counts()  # SQL, or None
        # root tables merged by key (deleted = updated), with the rows staged for each
        self.upserted: dict[str, int] = {}
        self.merged: set[str] = set()  # appended, child tables: inserted rows
        self.retiring: set[str] = set()
        self.before: list[tuple[str, Callable[[int, int], None]]] = []
        self.after: list[tuple[str, Callable[[int, int], None]]] = []

    @property
    def by_query(self) -> bool:
        return self.counters is None

    def run(self, d, cur, counts: list[tuple[str, Callable[[int, int], None]]]) -> None:
        for start in range(0, len(counts), self.CHUNK):
            chunk = counts[start:start + self.CHUNK]
            cur.execute(d.merge.counts([sql for sql, _f in chunk]))
            for n, a, b in cur.fetchall():
                chunk[n][1](int(a or 0), int(b or 0))
        counts.clear()

    def read(self, cur, schema: str, tables: set[str]) -> dict[str, tuple[int, int]]:
        """(rows inserted, rows deleted) so far in this transaction, per table."""
        if not tables:
            return {}
        cur.execute(self.counters, (schema, sorted(tables)))
        return {name: (int(ins), int(dels)) for name, ins, dels in cur.fetchall()}


def load_streams(d, stager, cur, schema: str, groups: list[StagedGroup], plans: list[Plan],
                 state: CatalogState, reports: dict[str, TableReport]) -> None:
    """Put every group's rows into its tables (the DDL is applied already), counting what
    each table gained and lost into ``reports`` (by table name)."""
    stage = Stage(d, schema, state)
    merges, finish = Statements(cur), Statements(cur)
    tally = Tally(d)
    for group, plan in zip(groups, plans, strict=True):
        _load_stream(d, stager, cur, schema, group, plan, state, stage, merges, finish, tally,
                     reports)
    # the counters hold what the session did since they were last flushed, which may
    # include earlier transactions: the load counts the difference
    baseline = tally.read(cur, schema, set(tally.upserted) | tally.merged)
    if stage.parts:
        stage.send(stager, cur)
        failpoint("load.copy")
        finish.add(d.staging.clear(stage.name))  # empty again when the transaction commits
    tally.run(d, cur, tally.before)
    merges.flush()
    tally.run(d, cur, tally.after)
    merged = tally.read(cur, schema, set(tally.upserted) | tally.merged | tally.retiring)
    for table, (ins, dels) in merged.items():
        ins0, dels0 = baseline.get(table, (0, 0))
        if table in tally.upserted:
            reports[table].rows_updated += dels - dels0
            reports[table].rows_inserted += (ins - ins0) - (dels - dels0)
            # a staged record the insert left out lost to a stored higher sequence
            reports[table].rows_superseded += tally.upserted[table] - (ins - ins0)
        elif table in tally.merged:
            reports[table].rows_inserted += ins - ins0
    finish.flush()
    for table, (_ins, dels) in tally.read(cur, schema, tally.retiring).items():
        reports[table].rows_retired += dels - merged.get(table, (0, 0))[1]


def _load_stream(d, stager, cur, schema: str, group: StagedGroup, plan: Plan,
                 state: CatalogState, stage: Stage, merges: Statements, finish: Statements,
                 tally: Tally, reports: dict[str, TableReport]) -> None:
    root = plan.tables.get(ROOT_TABLE_KEY)
    upsert = bool(group.key_names) and root is not None and bool(root.key_columns) \
        and group.stream != REJECTED_TABLE
    ordered = sorted(plan.tables, key=table_order)
    arrays = {tpath: _arrays(plan.tables[tpath], group.tables[tpath]) for tpath in ordered}
    if upsert and _rows(arrays[ROOT_TABLE_KEY]):
        winners = _latest_per_key(root, arrays[ROOT_TABLE_KEY])
        if len(winners) < _rows(arrays[ROOT_TABLE_KEY]):
            for tpath, cols in arrays.items():
                keep = pc.is_in(cols[sdc.RECORD_ID], value_set=winners)
                kept = pa.table(cols).filter(keep)  # one call per table, not per column
                arrays[tpath] = dict(zip(kept.column_names, kept.columns, strict=True))
    for cols in arrays.values():
        cols.pop(STAGE_ORDINAL, None)
    for tpath in ordered:
        _observe(reports[plan.tables[tpath].name], arrays[tpath])
    if root is not None and root.create:
        # fresh tables: nothing to merge with, rows go straight in
        for tpath in ordered:
            tp = plan.tables[tpath]
            _copy(d, stager, cur, qualified(schema, tp.name), arrays[tpath])
            reports[tp.name].rows_inserted += _rows(arrays[tpath])
            failpoint("load.copy")
    elif upsert:
        _merge_upsert(d, schema, group, plan, state, root, arrays, stage, merges, tally,
                      reports)
    else:
        for tpath in ordered:
            n = _rows(arrays[tpath])
            if n:
                tp = plan.tables[tpath]
                slot, columns = stage.add(tp, arrays[tpath])
                rid = _column(columns, sdc.RECORD_ID)
                merges.add(d.merge.merge_append(qualified(schema, tp.name), stage.name, slot,
                                                columns, rid))
                if tally.by_query:
                    tally.before.append((d.merge.count_present(qualified(schema, tp.name),
                                                               stage.name, slot, rid),
                                         _inserted_but(reports[tp.name], n)))
                else:
                    tally.merged.add(tp.name)
    if group.activate_version is not None:
        for table in _stream_tables(group.stream, plan, state):
            report = reports.setdefault(table, TableReport(
                "", group.stream, table, batch_ids=list(group.batch_ids)))
            if tally.by_query:
                tally.after.append((d.merge.count_retired(qualified(schema, table),
                                                          group.activate_version),
                                    _retired(report)))
            else:
                tally.retiring.add(table)
            finish.add(d.merge.retire_versions(qualified(schema, table)),
                       (group.activate_version,))


def _inserted_but(report: TableReport, staged: int) -> Callable[[int, int], None]:
    """Staged rows went in but those counted (a)."""
    def count(a: int, _b: int) -> None:
        report.rows_inserted += staged - a
    return count


def _inserted(report: TableReport) -> Callable[[int, int], None]:
    def count(a: int, _b: int) -> None:
        report.rows_inserted += a
    return count


def _retired(report: TableReport) -> Callable[[int, int], None]:
    def count(a: int, _b: int) -> None:
        report.rows_retired += a
    return count


def _upserted(report: TableReport, staged: int) -> Callable[[int, int], None]:
    """(a) staged rows lost to stored ones, (b) stored rows replaced; the rest are new."""
    def count(a: int, b: int) -> None:
        report.rows_superseded += a
        report.rows_updated += b
        report.rows_inserted += staged - a - b
    return count


def _observe(report: TableReport, arrays: dict[str, pa.Array]) -> None:
    """The oldest and newest received and extracted times among a table's rows."""
    for column, low, high in ((sdc.RECEIVED_AT, "min_received_at", "max_received_at"),
                              (sdc.EXTRACTED_AT, "min_extracted_at", "max_extracted_at")):
        values = arrays.get(column)
        if values is None or values.null_count == len(values):
            continue
        span = pc.min_max(values).as_py()
        if getattr(report, low) is None or span["min"] < getattr(report, low):
            setattr(report, low, span["min"])
        if getattr(report, high) is None or span["max"] > getattr(report, high):
            setattr(report, high, span["max"])


def _merge_upsert(d, schema: str, group: StagedGroup, plan: Plan, state: CatalogState,
                  root: TablePlan, arrays: dict, stage: Stage, merges: Statements,
                  tally: Tally, reports: dict[str, TableReport]) -> None:
    if not _rows(arrays[ROOT_TABLE_KEY]):
        return
    target = qualified(schema, root.name)
    slot, columns = stage.add(root, arrays[ROOT_TABLE_KEY])
    keys = [_column(columns, k) for k in root.key_columns]
    seq = _column(columns, sdc.SEQUENCE)
    if tally.by_query:
        tally.before.append((d.merge.count_replaced(target, stage.name, slot, keys, seq),
                             _upserted(reports[root.name], _rows(arrays[ROOT_TABLE_KEY]))))
    else:
        tally.upserted[root.name] = tally.upserted.get(root.name, 0) + _rows(arrays[ROOT_TABLE_KEY])
    staged_columns = {c for c, _v, _t in columns}
    for sql in d.merge.upsert(target, stage.name, slot, columns, keys, seq,
                              [c for c in root.sql_types if c not in staged_columns]):
        merges.add(sql)
    rid = _column(columns, sdc.RECORD_ID)
    staged = {tp.name: tpath for tpath, tp in plan.tables.items() if tpath != ROOT_TABLE_KEY}
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
        child = qualified(schema, table)
        merges.add(d.merge.delete_replaced_children(
            child, target, stage.name, slot,
            list(zip(source_cols, root.key_columns, strict=True)), rid))
        tpath = staged.get(table)
        if tpath is not None and _rows(arrays[tpath]):
            child_slot, child_columns = stage.add(plan.tables[tpath], arrays[tpath])
            child_rid = _column(child_columns, sdc.RECORD_ID)
            merges.add(d.merge.insert_children(child, target, stage.name, child_slot,
                                               child_columns, child_rid))
            # after the merge: the staged child rows whose record won went in
            if tally.by_query:
                tally.after.append((d.merge.count_present(target, stage.name, child_slot,
                                                          child_rid), _inserted(reports[table])))
            else:
                tally.merged.add(table)


def _column(columns: list[Column], name: str) -> Column:
    return next(c for c in columns if c[0] == name)


def _rows(arrays: dict[str, pa.Array]) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0


def _copy(d, stager, cur, target: str, arrays: dict[str, pa.Array]) -> None:
    if not arrays or not len(next(iter(arrays.values()))):
        return
    stager.stage_parts(cur, d, target, list(arrays), [pa.table(arrays)])


def _stream_tables(stream: str, plan: Plan, state: CatalogState) -> list[str]:
    """The stream's tables that exist (a user may have dropped one; it is recreated only
    when data for it arrives)."""
    return sorted({n for (s, _p), n in state.tables.items() if s == stream and n in
                   state.physical} | {t.name for t in plan.tables.values()})


def _arrays(tp: TablePlan, st: StagedTable) -> dict[str, pa.Array]:
    """The staged rows as warehouse columns (the ordinal that ranks upserts included)."""
    arrays: dict[str, pa.Array] = {}
    for (path, json_type), values in st.data.items():
        arrays[tp.columns[(path, json_type)]] = values
    for name, values in st.system.items():
        if name in tp.sql_types or name == STAGE_ORDINAL:  # the ordinal ranks upserts
            arrays[name] = values
    for key, values in st.source_keys.items():
        col = tp.source_key_columns.get(key)
        if col is not None:
            arrays[col] = values
    return arrays


def _latest_per_key(root: TablePlan, arrays: dict[str, pa.Array]) -> pa.Array:
    """Record ids of the latest record per key (highest sequence, then latest arrival)."""
    table = pa.table({**{k: arrays[k] for k in root.key_columns},
                      sdc.SEQUENCE: arrays[sdc.SEQUENCE],
                      STAGE_ORDINAL: arrays[STAGE_ORDINAL],
                      sdc.RECORD_ID: arrays[sdc.RECORD_ID]})
    table = table.sort_by([(sdc.SEQUENCE, "ascending"), (STAGE_ORDINAL, "ascending")])
    latest = table.group_by(root.key_columns, use_threads=False).aggregate(
        [(sdc.RECORD_ID, "last")])
    return latest.column(sdc.RECORD_ID + "_last")
