"""The ledger: migrations apply once, batch records are idempotent, secrets stay references."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg2

from spool.ledger.migrations import MIGRATIONS
from spool.ledger.store import BatchRecord, Ledger


def record(batch_id: str, rows: int = 3) -> BatchRecord:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return BatchRecord(batch_id=batch_id, tenant_id="acme", stream="orders", uri=f"/x/{batch_id}",
                       window_start=now, window_end=now, pane=0, record_count=rows,
                       row_count=rows, byte_count=10, file_bytes=20, min_sequence=1,
                       max_sequence=2, offsets={"q/0": [1, 2, 2]}, key_names=("id",),
                       columns={"[]": {}}, meta={"tables": [[]]})


def test_migrations_apply_once_even_when_workers_start_together(ledger_dsn):
    results = []
    threads = [threading.Thread(target=lambda: results.append(Ledger(ledger_dsn).migrate()))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [MIGRATIONS[-1][0]] * 4
    conn = psycopg2.connect(ledger_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM spool_schema_version ORDER BY version")
        assert [r[0] for r in cur.fetchall()] == [m[0] for m in MIGRATIONS]
    conn.close()


def test_recording_a_batch_again_changes_nothing(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    assert ledger.record_batches([record("a"), record("b")]) == 2
    conn = psycopg2.connect(ledger_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE batches SET state = 'LOADED' WHERE batch_id = 'a'")
    assert ledger.record_batches([record("a"), record("c")]) == 1
    with conn.cursor() as cur:
        cur.execute("SELECT batch_id, state FROM batches ORDER BY 1")
        assert cur.fetchall() == [("a", "LOADED"), ("b", "READY"), ("c", "READY")]
    conn.close()


def test_ledger_reconnects_after_its_connection_is_killed(ledger_dsn):
    ledger = Ledger(ledger_dsn, application_name="spool-reconnect-test")
    ledger.migrate()
    admin = psycopg2.connect(ledger_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'spool-reconnect-test'")
    admin.close()
    assert ledger.record_batches([record("after-kill")]) == 1


def test_ledger_dsn_can_be_a_reference(ledger_dsn, monkeypatch):
    monkeypatch.setenv("SPOOL_TEST_LEDGER", ledger_dsn)
    assert Ledger("env:SPOOL_TEST_LEDGER").migrate() == MIGRATIONS[-1][0]
