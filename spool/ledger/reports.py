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
    execute_values(cur, """
        INSERT INTO load_reports (tenant_id, load_id, stream, table_name, rows_inserted,
            rows_updated, rows_retired, rows_rejected, values_cut, min_received_at,
            max_received_at, min_extracted_at, max_extracted_at, batch_ids, started_at,
            finished_at)
        VALUES %s ON CONFLICT (load_id, table_name) DO NOTHING""",
        [(tenant, r.load_id, r.stream, r.table, r.rows_inserted, r.rows_updated,
          r.rows_retired, r.rows_rejected, r.values_cut, r.min_received_at, r.max_received_at,
          r.min_extracted_at, r.max_extracted_at, list(r.batch_ids), r.started_at,
          r.finished_at) for r in reports])
