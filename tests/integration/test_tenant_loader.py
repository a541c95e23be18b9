"""The tenant loader without Beam: a real ledger, real batch files, a real warehouse.

It isolates the one batch that cannot load (the others of its transaction load), and a
warehouse that is down sends its batches back with a backoff and is left alone for a while
(the clock is injected, so "a while" needs no waiting).
"""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.loader.tenant import LoaderConfig, Status, TenantLoader
from spool.objectstore import ObjectStore
from tests.warehouse_helpers import ready_batch


def spool(ledger: Ledger, folder: Path, stream: str, records: list[dict],
          tenant: str = "acme", old_name: str | None = None) -> str:
    return ready_batch(ledger, str(folder), stream, records, tenant, old_name=old_name).batch_id


@pytest.fixture
def ledger(ledger_dsn, stack, pg_schema, monkeypatch):
    monkeypatch.setenv("SPOOL_TEST_TENANT_WH", stack.warehouse_dsn)
    led = Ledger(ledger_dsn)
    led.migrate()
    Registry(led).add_tenant("acme", "postgres", {"dsn": "env:SPOOL_TEST_TENANT_WH"},
                             pg_schema)
    yield led
    led.close()


def states(ledger: Ledger) -> dict[str, tuple]:
    return dict(ledger.run(lambda cur: (cur.execute(
        "SELECT batch_id, state::text, attempts, next_attempt_at > now() FROM batches"),
        [(r[0], r[1:]) for r in cur.fetchall()])[1]))


def test_only_the_batch_that_fails_alone_ends_failed(ledger, stack, pg_schema, tmp_path):
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    first = spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 5}])
    assert [a.status for a in loader.load("acme", ["orders"])] == [Status.LOADED]
    conn = psycopg2.connect(stack.warehouse_dsn)  # the user's own rule on their table
    with conn, conn.cursor() as cur:
        cur.execute(f'ALTER TABLE "{pg_schema}".orders ADD CONSTRAINT small CHECK (amount < 100)')
    good = spool(ledger, tmp_path, "orders", [{"id": 2, "amount": 7}])
    bad = spool(ledger, tmp_path, "orders", [{"id": 3, "amount": 500}])
    other = spool(ledger, tmp_path, "users", [{"id": 9, "name": "ann"}])

    attempts = list(loader.load("acme", ["orders", "users"]))
    loader.close()
    # one transaction failed; stream by stream, then batch by batch, only `bad` fails alone
    assert [(a.status, a.batch_ids) for a in attempts] == [
        (Status.LOADED, (good,)), (Status.FAILED, (bad,)), (Status.LOADED, (other,))]
    assert 'violates check constraint "small"' in attempts[1].error
    assert {b: s[0] for b, s in states(ledger).items()} == {
        first: "LOADED", good: "LOADED", bad: "FAILED", other: "LOADED"}
    with conn.cursor() as cur:
        cur.execute(f'SELECT id FROM "{pg_schema}".orders ORDER BY id')
        assert cur.fetchall() == [(1,), (2,)]
    conn.close()


def test_a_warehouse_that_is_down_is_retried_later_and_left_alone_meanwhile(ledger,
                                                                            tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("SPOOL_TEST_TENANT_WH", "postgresql://spool@127.0.0.1:1/nowhere")
    now = [100.0]
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(down_seconds=10),
                          owner="test", clock=lambda: now[0])
    batch = spool(ledger, tmp_path, "orders", [{"id": 1}])
    (attempt,) = loader.load("acme", ["orders"])
    assert attempt.status is Status.RETRY and "127.0.0.1" in attempt.error
    # back to READY, due again only after the backoff
    assert states(ledger) == {batch: ("READY", 1, True)}
    # while the warehouse counts as down, the loader does not even claim
    now[0] += 9
    ledger.run(lambda cur: cur.execute("UPDATE batches SET next_attempt_at = NULL"))
    assert list(loader.load("acme", ["orders"])) == []
    assert states(ledger) == {batch: ("READY", 1, None)}
    now[0] += 2  # down no more: it is tried again
    assert [a.status for a in loader.load("acme", ["orders"])] == [Status.RETRY]
    assert states(ledger)[batch][:2] == ("READY", 2)
    loader.close()


def test_a_batch_file_named_before_issue_28_still_loads(ledger, stack, pg_schema, tmp_path):
    """Stream ``.cfg`` was written to ``acme/.cfg/`` then, to ``acme/%2Ecfg/`` now: the file
    already there keeps its name, and the loader reads it at the URI of its ledger row."""
    batch = spool(ledger, tmp_path, ".cfg", [{"id": 1}, {"id": 2}], old_name="acme/.cfg")
    assert not (tmp_path / "acme" / "%2Ecfg").exists()
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    assert [(a.status, a.batch_ids) for a in loader.load("acme", [".cfg"])] == [
        (Status.LOADED, (batch,))]
    loader.close()
    conn = psycopg2.connect(stack.warehouse_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_name NOT LIKE '\\_sdc%%'", (pg_schema,))
        (table,) = [r[0] for r in cur.fetchall()]
        cur.execute(f'SELECT id FROM "{pg_schema}"."{table}" ORDER BY id')
        assert cur.fetchall() == [(1,), (2,)]
    conn.close()
