"""The figures the jobs' metrics pages read from the ledger (spool.ledger.gauges)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg2

from spool.ledger import gauges
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from tests.integration.test_claims import record


def execute(dsn: str, sql: str, *args) -> None:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(sql, args)
    conn.close()


def by_tenant(ledger: Ledger) -> dict[str, gauges.TenantGauges]:
    tenants, _newest = gauges.read(ledger)
    return {t.tenant: t for t in tenants}


def test_freshness_comes_from_the_load_reports_else_from_the_newest_loaded_window(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("acme", "postgres", {"dsn": "env:X"}, "acme")
    ledger.record_batches([record("acme/orders/1", 1), record("acme/orders/2", 2)])
    try:
        assert by_tenant(ledger)["acme"].newest_row_age_seconds is None  # nothing loaded
        # loaded before the ledger kept load reports (version 1): no stream_freshness row
        execute(ledger_dsn, "UPDATE batches SET state = 'LOADED', loaded_at = now() "
                "WHERE batch_id = 'acme/orders/1'")
        fallback = by_tenant(ledger)["acme"]
        assert fallback.newest_row_age_seconds is not None
        assert (fallback.ready, fallback.rows_loaded) == (1, 0)
        # a load report names an older row than the window's end: the report wins
        execute(ledger_dsn, "INSERT INTO stream_freshness (tenant_id, stream, newest_received, "
                "last_load_id, rows_loaded) VALUES ('acme', 'orders', %s, 'l1', 7)",
                datetime(2000, 1, 1, tzinfo=UTC))
        reported = by_tenant(ledger)["acme"]
        assert reported.newest_row_age_seconds > fallback.newest_row_age_seconds
        assert reported.rows_loaded == 7
    finally:
        ledger.close()


def test_what_the_spool_job_wrote_counts_every_state(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    ledger.record_batches([record("acme/orders/1", 1), record("acme/orders/2", 2),
                           record("ghost/x/1", 1, tenant="ghost", stream="x")])
    execute(ledger_dsn, "UPDATE batches SET state = 'LOADED' WHERE batch_id = 'acme/orders/1'")
    try:
        got = {w.tenant: w.batches for w in gauges.written(ledger)}
        assert got == {"acme": 2, "ghost": 1}
        assert all(w.newest_window_end_age_seconds > 0 for w in gauges.written(ledger))
    finally:
        ledger.close()
