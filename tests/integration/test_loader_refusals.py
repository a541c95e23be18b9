"""A destination that refuses the loader fails its batches at once, with the reason; one that
stays unreachable (a warehouse, an object store) fails them after --retry_max_attempts.

Real PostgreSQL (a rejected or missing password, a missing database, a role that may not
create the tenant's schema), a real S3 endpoint address with nothing listening, a real
ledger; the clock of the tenant loader is injected, so "later" needs no waiting.
"""

from __future__ import annotations

import socket
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.loader.tenant import LoaderConfig, Status, TenantLoader
from spool.objectstore import ObjectStore, S3Config
from tests.integration.test_tenant_loader import spool, states


def with_auth(dsn: str, user: str, password: str | None = None, database: str | None = None):
    parts = urlsplit(dsn)
    netloc = f"{user}{':' + password if password else ''}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}" if database
                                     else parts.path))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ledger(ledger_dsn, stack, pg_schema, monkeypatch):
    led = Ledger(ledger_dsn)
    led.migrate()
    Registry(led).add_tenant("acme", "postgres", {"dsn": "env:SPOOL_TEST_REFUSED_WH"},
                             pg_schema)
    yield led
    led.close()


@pytest.fixture
def no_create_role(stack):
    """A role that may log in to the warehouse database but not create a schema in it."""
    name = f"spool_nocreate_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(stack.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'pw'")
        cur.execute(f"REVOKE CREATE ON DATABASE warehouse FROM {name}")
    yield with_auth(stack.warehouse_dsn, name, "pw")
    with conn.cursor() as cur:
        cur.execute(f"DROP ROLE {name}")
    conn.close()


def load_once(ledger, tmp_path, **config):
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(**config), owner="test")
    batch = spool(ledger, tmp_path, "orders", [{"id": 1}])
    try:
        return batch, list(loader.load("acme", ["orders"]))
    finally:
        loader.close()


@pytest.mark.parametrize(("how", "says"), [
    ("no password", "fe_sendauth: no password supplied"),
    ("wrong password", "password authentication failed"),
    ("no database", 'database "spool_no_such_db" does not exist'),
])
def test_a_refused_connection_fails_the_batch_at_once(ledger, stack, tmp_path, monkeypatch,
                                                      how, says):
    dsn = {"no password": with_auth(stack.warehouse_dsn, "spool"),
           "wrong password": with_auth(stack.warehouse_dsn, "spool", "not-the-password"),
           "no database": with_auth(stack.warehouse_dsn, "spool", "spool",
                                    "spool_no_such_db")}[how]
    monkeypatch.setenv("SPOOL_TEST_REFUSED_WH", dsn)
    batch, attempts = load_once(ledger, tmp_path)
    assert [a.status for a in attempts] == [Status.FAILED]
    assert says in attempts[0].error
    (state, _attempts, _later) = states(ledger)[batch]
    assert state == "FAILED"
    error = ledger.run(lambda cur: (cur.execute("SELECT last_error FROM batches"),
                                    cur.fetchone()[0])[1])
    assert says in error


def test_a_role_that_may_not_create_the_schema_fails_the_batches_at_once(
        ledger, tmp_path, monkeypatch, no_create_role):
    monkeypatch.setenv("SPOOL_TEST_REFUSED_WH", no_create_role)
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    spool(ledger, tmp_path, "orders", [{"id": 1}])
    spool(ledger, tmp_path, "users", [{"id": 2}])
    attempts = list(loader.load("acme", ["orders", "users"]))
    loader.close()
    # the destination refuses: both batches fail in one go, not one transaction each
    assert [(a.status, len(a.batch_ids)) for a in attempts] == [(Status.FAILED, 2)]
    assert "permission denied" in attempts[0].error
    assert {s[0] for s in states(ledger).values()} == {"FAILED"}


def test_an_unreachable_warehouse_fails_after_the_attempts_limit(ledger, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("SPOOL_TEST_REFUSED_WH", f"postgresql://spool:x@127.0.0.1:"
                       f"{closed_port()}/warehouse")
    now = [0.0]
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(max_attempts=2, down_seconds=1),
                          owner="test", clock=lambda: now[0])
    batch = spool(ledger, tmp_path, "orders", [{"id": 1}])
    assert [a.status for a in loader.load("acme", ["orders"])] == [Status.RETRY]
    assert states(ledger)[batch][:2] == ("READY", 1)
    now[0] += 2
    ledger.run(lambda cur: cur.execute("UPDATE batches SET next_attempt_at = NULL"))
    (attempt,) = loader.load("acme", ["orders"])
    loader.close()
    assert attempt.status is Status.FAILED
    assert attempt.error.startswith("gave up after 2 attempts (--retry_max_attempts): ")
    assert "Connection refused" in attempt.error
    assert states(ledger)[batch][:2] == ("FAILED", 2)


def test_an_unreachable_object_store_is_retried_then_fails_with_the_reason(
        ledger, stack, tmp_path, monkeypatch):
    monkeypatch.setenv("SPOOL_TEST_REFUSED_WH", stack.warehouse_dsn)
    # the batch is on S3, whose endpoint does not answer (nothing listens on the port)
    s3 = S3Config(f"http://127.0.0.1:{closed_port()}", "k", "s", "us-east-1")
    store = ObjectStore(s3, patience=0)
    batch = spool(ledger, tmp_path, "orders", [{"id": 1}])
    ledger.run(lambda cur: cur.execute("UPDATE batches SET uri = 's3://spool/nowhere/b.parquet'"))
    now = [0.0]
    loader = TenantLoader(ledger, store, LoaderConfig(max_attempts=2, down_seconds=1),
                          owner="test", clock=lambda: now[0])
    (first,) = loader.load("acme", ["orders"])
    assert first.status is Status.RETRY and "EndpointConnectionError" in first.error
    now[0] += 2
    ledger.run(lambda cur: cur.execute("UPDATE batches SET next_attempt_at = NULL"))
    (second,) = loader.load("acme", ["orders"])
    loader.close()
    assert second.status is Status.FAILED
    assert "gave up after 2 attempts" in second.error
    assert "EndpointConnectionError" in second.error
    assert states(ledger)[batch][0] == "FAILED"


def test_a_following_loader_tells_each_tenant_and_reason_at_most_once_a_minute(
        ledger, ledger_dsn, tmp_path, monkeypatch, caplog):
    from spool.ledger import claims
    from spool.loader.troubles import Watch

    monkeypatch.setenv("SPOOL_TEST_REFUSED_WH", f"postgresql://spool:x@127.0.0.1:"
                       f"{closed_port()}/warehouse")
    since = claims.ledger_now(ledger)
    now = [0.0]
    watch = Watch(ledger_dsn, max_attempts=20, clock=lambda: now[0])
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(down_seconds=0), owner="test",
                          clock=lambda: now[0])
    spool(ledger, tmp_path, "orders", [{"id": 1}])
    said = []
    for _ in range(3):  # three failed tries within a minute: one line
        ledger.run(lambda cur: cur.execute("UPDATE batches SET next_attempt_at = NULL"))
        assert [a.status for a in loader.load("acme", ["orders"])] == [Status.RETRY]
        caplog.clear()
        watch.check(ledger, since)
        said += [r.getMessage() for r in caplog.records if r.name == "spool.loader"]
        now[0] += 10
    assert said == ["tenant acme: 1 batch(es) waiting on a retry (attempt 1 of 20): "
                    + said[0].split("(attempt 1 of 20): ", 1)[1]]
    assert "Connection refused" in said[0]
    now[0] += 60  # a minute on: said again, with the attempts so far
    ledger.run(lambda cur: cur.execute("UPDATE batches SET next_attempt_at = NULL"))
    list(loader.load("acme", ["orders"]))
    loader.close()
    caplog.clear()
    watch.check(ledger, since)
    assert [r.getMessage()[:61] for r in caplog.records if r.name == "spool.loader"] == [
        "tenant acme: 1 batch(es) waiting on a retry (attempt 4 of 20)"]


def test_a_failed_batch_given_a_second_chance_is_not_reported_as_undone(ledger, tmp_path):
    """'spool batches retry' makes a FAILED batch READY again with its old error kept: a
    drain or a following loader must not call it 'waiting on a retry' (exit 1)."""
    from spool.ledger import claims

    since = claims.ledger_now(ledger)
    batch = spool(ledger, tmp_path, "orders", [{"id": 1}])
    ledger.run(lambda cur: cur.execute(
        "UPDATE batches SET state = 'FAILED', last_error = 'boom', updated_at = now() "
        "WHERE batch_id = %s", (batch,)))
    assert [(t.failed, t.error) for t in claims.troubles(ledger, since)] == [(True, "boom")]
    claims.retry_failed(ledger, [batch])
    assert states(ledger)[batch][0] == "READY"
    assert claims.troubles(ledger, since) == []
