"""Load reports in the ledger: what each warehouse transaction did per table.

The warehouse holds the same rows (``_sdc_loads`` in the tenant schema); the ledger's copy
serves ``spool loads`` and the freshness ``spool status`` shows, without a connection to
every tenant's warehouse.
"""

from __future__ import annotations

from psycopg2.extras import execute_values


def save(cur, tenant: str, reports) -> None:
    """Add the reports of one load (idempotent: a report is keyed by load and table)."""
    if not reports:
        return
    added = execute_values(cur, """
        INSERT INTO load_reports (tenant_id, load_id, stream, table_name, rows_inserted,
            rows_updated, rows_superseded, rows_retired, rows_rejected, values_cut,
            min_received_at, max_received_at, min_extracted_at, max_extracted_at, batch_ids,
            started_at, finished_at)
        VALUES %s ON CONFLICT (load_id, table_name) DO NOTHING
        RETURNING load_id, table_name""",
        [(tenant, r.load_id, r.stream, r.table, r.rows_inserted, r.rows_updated,
          r.rows_superseded, r.rows_retired, r.rows_rejected, r.values_cut,
          r.min_received_at, r.max_received_at, r.min_extracted_at, r.max_extracted_at,
          list(r.batch_ids), r.started_at, r.finished_at) for r in reports], fetch=True)
    # per stream, only what this transaction added counts (a report recorded before, by a
    # retried transaction, is not counted twice)
    new = {tuple(row) for row in added}
    newest: dict[str, list] = {}
    for r in reports:
        if (r.load_id, r.table) not in new:
            continue
        acc = newest.setdefault(r.stream, [None, r.load_id, 0])
        if r.max_received_at is not None and (acc[0] is None or r.max_received_at > acc[0]):
            acc[0] = r.max_received_at
        acc[2] += r.rows_inserted + r.rows_updated
    if not newest:
        return
    execute_values(cur, """
        INSERT INTO stream_freshness AS f (tenant_id, stream, newest_received, last_load_id,
                                           rows_loaded)
        VALUES %s ON CONFLICT (tenant_id, stream) DO UPDATE SET
            newest_received = greatest(f.newest_received, excluded.newest_received),
            last_load_id = excluded.last_load_id,
            rows_loaded = f.rows_loaded + excluded.rows_loaded, updated_at = now()""",
        [(tenant, stream, at, load_id, rows)
         for stream, (at, load_id, rows) in newest.items()])


REPORT_COLUMNS = ["loaded", "tenant", "table", "inserted", "updated", "superseded",
                  "retired", "rejected", "cut", "newest_row", "ms", "batches", "load_id"]


def recent(ledger, tenant: str | None = None, table: str | None = None, since=None,
           limit: int = 50) -> list[tuple]:
    """Load reports, newest first (``REPORT_COLUMNS``)."""

    def q(cur):
        cur.execute("""
            SELECT date_trunc('second', recorded_at), tenant_id, table_name, rows_inserted,
                   rows_updated, rows_superseded, rows_retired, rows_rejected, values_cut,
                   date_trunc('second', max_received_at),
                   (extract(epoch FROM finished_at - started_at) * 1000)::bigint,
                   cardinality(batch_ids), load_id
            FROM load_reports
            WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s)
              AND (%(x)s::text IS NULL OR table_name = %(x)s)
              AND (%(since)s::timestamptz IS NULL OR recorded_at >= %(since)s)
            ORDER BY recorded_at DESC, table_name LIMIT %(n)s""",
                    {"t": tenant, "x": table, "since": since, "n": limit})
        return cur.fetchall()

    return ledger.run(q)
