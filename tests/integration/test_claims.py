"""Claims with leases: no batch is claimed twice, none is stranded, transitions hold."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg2
import pytest

from spool.ledger import claims as c
from spool.ledger.registry import Registry
from spool.ledger.store import BatchRecord, Ledger


def record(batch_id: str, seq: int, tenant="acme", stream="orders") -> BatchRecord:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return BatchRecord(batch_id=batch_id, tenant_id=tenant, stream=stream, uri=f"/x/{batch_id}",
                       window_start=now, window_end=now, pane=0, record_count=1, row_count=1,
                       byte_count=1, file_bytes=1, min_sequence=seq, max_sequence=seq,
                       offsets={}, key_names=(), columns={}, meta={})


@pytest.fixture
def ledger(ledger_dsn):
    led = Ledger(ledger_dsn)
    led.migrate()
    Registry(led).add_tenant("acme", "postgres", {"dsn": "env:X"}, "acme")
    Registry(led).add_tenant("quiet", "none")
    yield led
    led.close()


def states(ledger_dsn):
    conn = psycopg2.connect(ledger_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT batch_id, state FROM batches ORDER BY batch_id")
        out = dict(cur.fetchall())
    conn.close()
    return out


def test_claims_come_in_sequence_order_and_never_twice(ledger, ledger_dsn):
    ledger.record_batches([record(f"b{i}", seq) for i, seq in enumerate([30, 10, 20])]
                          + [record("u0", 5, stream="users")])
    other = Ledger(ledger_dsn)
    first = c.claim(ledger, "acme", "orders", "one", 60, limit=2)
    assert [x.batch_id for x in first] == ["b1", "b2"]
    # b0 comes after batches another loader holds: it waits; other streams go on
    second = c.claim(other, "acme", ["orders", "users"], "two", 60, limit=5)
    assert [x.batch_id for x in second] == ["u0"]
    assert c.mark_loaded(ledger, ["b1", "b2"]) == 2
    assert [x.batch_id for x in c.claim(other, "acme", "orders", "two", 60, limit=5)] == ["b0"]
    other.close()


def test_a_loader_claims_its_own_unfinished_batches_again(ledger):
    ledger.record_batches([record("b0", 1), record("b1", 2)])
    assert [x.batch_id for x in c.claim(ledger, "acme", "orders", "me", 60, limit=1)] == ["b0"]
    again = c.claim(ledger, "acme", "orders", "me", 60, limit=5)
    assert [(x.batch_id, x.attempts) for x in again] == [("b0", 2), ("b1", 1)]


def expire(ledger_dsn, column: str) -> None:
    """Let a lease or a retry delay run out now."""
    conn = psycopg2.connect(ledger_dsn)
    with conn, conn.cursor() as cur:
        cur.execute(f"UPDATE batches SET {column} = now() - interval '1 second' "
                    f"WHERE {column} IS NOT NULL")
    conn.close()


def test_a_tenant_without_a_warehouse_has_nothing_to_claim(ledger):
    ledger.record_batches([record("q1", 1, tenant="quiet"), record("a1", 1)])
    assert c.claimable_tables(ledger) == [("acme", "orders", 1)]


def test_an_expired_lease_is_claimed_again(ledger, ledger_dsn):
    ledger.record_batches([record("b", 1)])
    assert len(c.claim(ledger, "acme", "orders", "dead", 60, limit=5)) == 1
    assert c.claim(ledger, "acme", "orders", "alive", 60, limit=5) == []
    expire(ledger_dsn, "lease_expires_at")
    (again,) = c.claim(ledger, "acme", "orders", "alive", 60, limit=5)
    assert again.batch_id == "b" and again.attempts == 2
    # the dead loader's late updates no longer apply
    assert c.mark_failed(ledger, ["b"], "dead", "late") == 0
    assert c.mark_loaded(ledger, ["b"]) == 1


def test_transient_errors_back_off_terminal_ones_fail_and_a_person_retries(ledger, ledger_dsn):
    ledger.record_batches([record("t", 1), record("f", 2)])
    c.claim(ledger, "acme", "orders", "me", 60, limit=5)
    c.mark_retry(ledger, ["t"], "me", "could not connect to postgresql://u:secret@h/db", 30)
    c.mark_failed(ledger, ["f"], "me", "DataError: password=hunter2 bad")
    assert states(ledger_dsn) == {"t": "READY", "f": "FAILED"}
    assert c.claim(ledger, "acme", "orders", "me", 60, limit=5) == []  # t is not due yet
    conn = psycopg2.connect(ledger_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT batch_id, last_error, next_attempt_at > now() FROM batches "
                    "ORDER BY 1")
        (_f, f_err, _), (_t, t_err, t_later) = cur.fetchall()
    conn.close()
    assert "secret" not in t_err and "hunter2" not in f_err and t_later
    assert c.retry_failed(ledger, ["f"]) == 1
    # f comes after t, which waits out its delay: f waits too (a stream loads in order)
    assert c.claim(ledger, "acme", "orders", "me", 60, limit=5) == []
    expire(ledger_dsn, "next_attempt_at")
    claimed = c.claim(ledger, "acme", "orders", "me", 60, limit=5)
    assert [x.batch_id for x in claimed] == ["t", "f"]


def test_a_failed_batch_does_not_hold_its_stream_back(ledger, ledger_dsn):
    ledger.record_batches([record("bad", 1), record("good", 2)])
    c.claim(ledger, "acme", "orders", "me", 60, limit=1)
    c.mark_failed(ledger, ["bad"], "me", "DataError")
    assert [x.batch_id for x in c.claim(ledger, "acme", "orders", "me", 60, limit=5)] == \
        ["good"]


def test_backoff_grows_and_is_capped():
    assert [c.backoff_seconds(n, 5, 60) for n in (1, 2, 3, 4, 5, 9)] == [5, 10, 20, 40, 60, 60]
