"""The loader as docs/loader.md runs it: batches on S3 load without any S3 flag, and a drain
that leaves batches FAILED or waiting on a retry says so, one plain line per tenant and
reason, and exits 1."""

from __future__ import annotations

import socket
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.objectstore import ObjectStore, S3Config
from tests.e2e.jobs import ROOT, job_env, ledger_rows
from tests.e2e.test_loader import drop_schemas  # noqa: F401 - a fixture
from tests.warehouse_helpers import ready_batch


def spool_batch(ledger: Ledger, store: ObjectStore, location: str, tenant: str,
                records: list[dict]) -> str:
    """A batch written and recorded READY as the spool job leaves it."""
    return ready_batch(ledger, location, "orders", records, tenant, store=store).uri


def drain(env: dict, *args: str) -> subprocess.CompletedProcess:
    """``python -m pipelines.loader_job --mode=drain``, exactly as docs/loader.md runs it."""
    return subprocess.run([sys.executable, "-m", "pipelines.loader_job", "--mode=drain", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          start_new_session=True, check=False)


def docs_env(stack, ledger_dsn: str) -> dict:
    """What `eval "$(scripts/services.sh env)"` leaves: SPOOL_S3_ENDPOINT, no location."""
    env = job_env(stack, ledger_dsn)
    env.pop("SPOOL_LOCATION", None)
    return env


def test_batches_on_s3_load_with_the_endpoint_the_spool_job_used(stack, ledger_dsn, pg_schema,
                                                                  s3_prefix):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("acme", "postgres", {"dsn": "env:SPOOL_WAREHOUSE_DSN"},
                                pg_schema)
    store = ObjectStore(S3Config(stack.s3_endpoint, stack.env["AWS_ACCESS_KEY_ID"],
                                 stack.env["AWS_SECRET_ACCESS_KEY"], "us-east-1"))
    uri = spool_batch(ledger, store, f"s3://{stack.s3_bucket}/{s3_prefix}", "acme",
                      [{"id": 1}, {"id": 2}])
    ledger.close()
    assert uri.startswith("s3://")

    res = drain(docs_env(stack, ledger_dsn))
    assert ledger_rows(ledger_dsn, "SELECT state, last_error FROM batches") == [
        ("LOADED", None)], res.stderr[-2000:]
    assert res.returncode == 0, res.stderr[-2000:]
    conn = psycopg2.connect(stack.warehouse_dsn)
    with conn.cursor() as cur:
        cur.execute(f'SELECT id FROM "{pg_schema}".orders ORDER BY id')
        assert cur.fetchall() == [(1,), (2,)]
    conn.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_drain_that_leaves_batches_undone_says_why_per_tenant_and_exits_1(
        stack, ledger_dsn, unique, tmp_path, drop_schemas):  # noqa: F811
    drop_schemas(unique)
    parts = urlsplit(stack.warehouse_dsn)
    no_password = urlunsplit(parts._replace(netloc=f"spool@{parts.hostname}:{parts.port}"))
    env = dict(docs_env(stack, ledger_dsn), SPOOL_TEST_NO_PASSWORD_WH=no_password,
               SPOOL_TEST_DOWN_WH=f"postgresql://spool:x@127.0.0.1:{closed_port()}/warehouse")
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    registry = Registry(ledger)
    for tenant, dsn in (("fine", "SPOOL_WAREHOUSE_DSN"), ("locked", "SPOOL_TEST_NO_PASSWORD_WH"),
                        ("away", "SPOOL_TEST_DOWN_WH")):
        registry.add_tenant(tenant, "postgres", {"dsn": f"env:{dsn}"}, f"{unique}_{tenant}")
        for n in range(2):
            spool_batch(ledger, ObjectStore(), str(tmp_path / "spool"), tenant, [{"id": n}])
    ledger.close()

    res = drain(env, "--connect_timeout=2")
    assert res.returncode == 1, res.stderr[-3000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [
        "error: tenant away: 2 batch(es) waiting on a retry (attempt 1 of 20): "
        f"OperationalError: connection to server at \"127.0.0.1\", port "
        f"{env['SPOOL_TEST_DOWN_WH'].split(':')[-1].split('/')[0]} failed: Connection refused",
        "error: tenant locked: 2 batch(es) FAILED: OperationalError: connection to server at "
        f"\"{parts.hostname}\", port {parts.port} failed: fe_sendauth: no password supplied "
        "(fix the cause, then 'spool batches retry --tenant locked --all-failed')",
    ], res.stderr[-3000:]
    # Spool's lines, not a runner's log records nor a traceback
    assert "severity:" not in res.stderr and "Traceback" not in res.stderr
    states = dict(ledger_rows(ledger_dsn, "SELECT tenant_id, string_agg(DISTINCT state::text, "
                                          "',') FROM batches GROUP BY 1"))
    assert states == {"fine": "LOADED", "locked": "FAILED", "away": "READY"}
