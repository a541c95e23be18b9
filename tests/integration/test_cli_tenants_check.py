"""``spool tenants check`` tries each destination as the loader would, one line per tenant,
exit 1 if any fails; ``spool tenants add`` warns about a destination the loader could not
use (registered all the same). Real PostgreSQL: a DSN without a password, an unset
variable, a port nothing listens on, a role that may not create the schema."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest


def spool(ledger_dsn, env, *args):
    return subprocess.run([sys.executable, "-m", "spool.cli", *args, "--ledger-dsn", ledger_dsn],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **env})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dsns(stack):
    """DSNs the loader would be refused with, and one it would use."""
    parts = urlsplit(stack.warehouse_dsn)
    role = f"spool_nocreate_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(stack.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        cur.execute(f"REVOKE CREATE ON DATABASE warehouse FROM {role}")
    yield {"T_GOOD_DSN": stack.warehouse_dsn,
           "T_NOPW_DSN": urlunsplit(parts._replace(netloc=f"spool@{parts.hostname}:"
                                                          f"{parts.port}")),
           "T_DOWN_DSN": f"postgresql://spool:x@127.0.0.1:{closed_port()}/warehouse",
           "T_NOCREATE_DSN": urlunsplit(parts._replace(netloc=f"{role}:pw@{parts.hostname}:"
                                                              f"{parts.port}"))}
    with conn.cursor() as cur:
        cur.execute(f"DROP ROLE {role}")
    conn.close()


def test_add_warns_about_a_destination_the_loader_could_not_use(ledger_dsn, dsns):
    env = {k: v for k, v in dsns.items() if k != "T_UNSET_DSN"}
    ok = spool(ledger_dsn, env, "tenants", "add", "good", "--warehouse", "postgres", "--dsn",
               "env:T_GOOD_DSN", "--schema", "good")
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    nopw = spool(ledger_dsn, env, "tenants", "add", "nopw", "--warehouse", "postgres", "--dsn",
                 "env:T_NOPW_DSN")
    assert nopw.returncode == 0, nopw.stderr
    assert "registered" in nopw.stdout
    assert nopw.stderr.splitlines()[0] == (
        "warning: tenant nopw: the DSN in env:T_NOPW_DSN has no password: the warehouse will "
        "refuse the loader unless it trusts this host, or PGPASSWORD or a .pgpass file gives "
        "one")
    assert "fe_sendauth: no password supplied" in nopw.stderr.splitlines()[1]
    unset = spool(ledger_dsn, env, "tenants", "add", "unset", "--warehouse", "postgres",
                  "--dsn", "env:T_UNSET_DSN")
    assert unset.returncode == 0
    assert unset.stderr.strip() == (
        "warning: tenant unset: environment variable T_UNSET_DSN is not set (referenced as "
        "env:T_UNSET_DSN): set it wherever the loader runs (the loader reads it there)")
    down = spool(ledger_dsn, env, "tenants", "add", "down", "--warehouse", "postgres", "--dsn",
                 "env:T_DOWN_DSN")
    assert down.returncode == 0
    assert down.stderr.startswith("warning: tenant down: the warehouse does not answer as the "
                                  "loader needs: cannot connect: OperationalError: ")
    assert "Connection refused" in down.stderr and len(down.stderr.splitlines()) == 1


def test_check_tries_each_destination_and_exits_1_if_any_fails(ledger_dsn, dsns):
    for tenant in ("good", "nopw", "unset", "down", "nocreate"):
        res = spool(ledger_dsn, dsns, "tenants", "add", tenant, "--warehouse", "postgres",
                    "--dsn", f"env:T_{tenant.upper()}_DSN", "--schema", f"{tenant}_x")
        assert res.returncode == 0, res.stderr
    spool(ledger_dsn, dsns, "tenants", "add", "sandbox")

    res = spool(ledger_dsn, dsns, "tenants", "check")
    assert res.returncode == 1, res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    assert lines["good"] == "ok (postgres, schema good_x)"
    assert lines["sandbox"] == "no warehouse (its batches are spooled, not loaded)"
    assert lines["nopw"].startswith("FAILED (postgres, schema nopw_x): cannot connect: ")
    assert lines["nopw"].endswith("fe_sendauth: no password supplied")
    assert lines["unset"] == ("FAILED (postgres, schema unset_x): environment variable "
                              "T_UNSET_DSN is not set (referenced as env:T_UNSET_DSN)")
    assert "Connection refused" in lines["down"]
    assert lines["nocreate"] == ("FAILED (postgres, schema nocreate_x): the user may not "
                                 "create tables in schema 'nocreate_x' (nor the schema): GRANT "
                                 "CREATE on it, or on the database")
    assert len(lines) == 6
    assert res.stderr.strip() == ("error: 4 of 6 tenant(s) cannot be loaded; fix the cause, "
                                  "then 'spool batches retry --tenant T --all-failed' for "
                                  "batches that failed")
    one = spool(ledger_dsn, dsns, "tenants", "check", "good")
    assert (one.returncode, one.stdout) == (0, "good: ok (postgres, schema good_x)\n")
    missing = spool(ledger_dsn, dsns, "tenants", "check", "nobody")
    assert missing.returncode == 1
    assert missing.stderr.strip() == \
        "error: no tenant 'nobody'; 'spool tenants list' shows the registered ones"
