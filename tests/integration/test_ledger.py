"""The ledger: migrations apply once, batch records are idempotent, secrets stay references."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg2

from spool.ledger.migrations import MIGRATIONS
from spool.ledger.notify import ReadyListener
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


def listeners(dsn: str, app: str) -> int:
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,))
        n = cur.fetchone()[0]
    conn.close()
    return n


def test_new_batches_wake_a_listening_loader_and_old_ones_do_not(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    listener = ReadyListener(ledger_dsn)
    try:
        assert listener.wait(0) is False  # listening from here on
        assert ledger.record_batches([record("a"), record("b")]) == 2
        # announced when the transaction committed, kept until the listener looks
        assert listener.wait(30) is True
        assert ledger.record_batches([record("a")]) == 0
        assert listener.wait(0.5) is False  # nothing new, nothing announced
    finally:
        listener.close()
        ledger.close()


def test_a_listener_that_loses_its_connection_polls_and_listens_again(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    app = f"listen-{uuid.uuid4().hex[:8]}"
    listener = ReadyListener(ledger_dsn, application_name=app)
    admin = psycopg2.connect(ledger_dsn)
    admin.autocommit = True
    try:
        assert listener.wait(0) is False
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = %s", (app,))
        deadline = time.monotonic() + 30
        while listeners(ledger_dsn, app):
            assert time.monotonic() < deadline, "the listener's connection was not ended"
            time.sleep(0.05)
        assert listener.wait(0.2) is False  # its wait runs out as a poll, no exception
        assert listener.wait(0) is False  # connected and listening again
        assert listeners(ledger_dsn, app) == 1
        assert ledger.record_batches([record("after")]) == 1
        assert listener.wait(30) is True
    finally:
        admin.close()
        listener.close()
        ledger.close()


def test_a_listener_without_a_ledger_waits_out_its_poll():
    listener = ReadyListener("postgresql://spool@127.0.0.1:1/none")
    assert listener.wait(0.1) is False
    listener.close()
