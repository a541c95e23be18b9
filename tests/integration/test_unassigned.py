"""Messages that name no registered tenant, held by the reserved tenant ``_unassigned``: a
held line in ``spool status`` (not a backlog) until an operator gives it a destination, then
loaded into that platform schema like any tenant's rejected records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg2
import pytest

from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.parts import Part, rejected_row, rejected_tenant
from spool.ingest.writer import assemble
from spool.ledger import claims
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.loader.tenant import LoaderConfig, Status, TenantLoader
from spool.objectstore import ObjectStore

NO_TENANT = [b"{oops", b"[1, 2]",
             json.dumps({"tenant": "nobody", "stream": "orders", "data": {"id": 1}}).encode()]
HINT = ("give them a destination with 'spool tenants add _unassigned --warehouse postgres "
        "--dsn env:NAME --schema spool_unassigned'; 'spool rejected --tenant _unassigned' "
        "shows why each was rejected")


def spool_cli(ledger_dsn, *args, env=None):
    res = subprocess.run([sys.executable, "-m", "spool.cli", *args, "--ledger-dsn", ledger_dsn],
                         capture_output=True, text=True, check=False, timeout=60,
                         env=env or os.environ)
    return res.returncode, res.stdout, res.stderr


@pytest.fixture
def held_batch(ledger_dsn, tmp_path):
    """The spool job's batch of three messages that name no registered tenant."""
    dec = Decoder(DecodeRules(), lambda t: t == "acme", lambda t, s: None)
    part = Part()
    for offset, raw in enumerate(NO_TENANT):
        decoded = dec.decode(raw)
        assert rejected_tenant(decoded, dec.is_tenant) == "_unassigned"
        part.rows.append(((), rejected_row(decoded, f"q/0/{offset}", 1_700_000_000_000,
                                           1_700_000_000_000, raw)))
        part.note_record("q/0", offset, len(raw), 1_700_000_000_000)
    uri, data, record = assemble("_unassigned", "_sdc_rejected", 1_699_999_980_000, 60_000, 0,
                                 part, str(tmp_path))
    ObjectStore().put_atomic(uri, data)
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    ledger.record_batches([record])
    yield ledger
    ledger.close()


def status_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_status_holds_them_apart_until_unassigned_has_a_destination(
        held_batch, ledger_dsn, stack, pg_schema):
    rc, out, err = spool_cli(ledger_dsn, "status")
    assert (rc, err) == (0, "")
    # no table row, so no "oldest unloaded" age that only grows: one line that says what to do
    assert out.splitlines() == [
        "tenant  table  ready  loading  loaded  failed  records_spooled  records_loaded  "
        "records_filtered  late  oldest_unloaded  last_load  newest_row_age  last_error",
        f"_unassigned: 3 messages held (no tenant matched); {HINT}"]
    rc, out, _ = spool_cli(ledger_dsn, "status", "--json")
    assert (rc, [json.loads(line) for line in out.splitlines()]) == (0, [
        {"tenant": "_unassigned", "table": "_sdc_rejected", "held_messages": 3,
         "held_batches": 1, "hint": HINT}])
    Registry(held_batch).add_tenant("acme")  # a tenant asked for by name must exist
    rc, out, _ = spool_cli(ledger_dsn, "status", "--tenant", "acme")
    assert rc == 0 and "_unassigned" not in out

    rc, out, err = spool_cli(ledger_dsn, "tenants", "add", "_unassigned", "--warehouse",
                             "postgres", "--dsn", "env:SPOOL_WAREHOUSE_DSN", "--schema", pg_schema)
    assert (rc, out) == (0, f"tenant '_unassigned' registered: postgres, schema '{pg_schema}'\n")

    rc, out, err = spool_cli(ledger_dsn, "status")
    assert (rc, err) == (0, "")
    assert "held" not in out
    row = next(r for r in status_rows(out) if r[:2] == ["_unassigned", "_sdc_rejected"])
    # ready loading loaded failed records_spooled records_loaded records_filtered late, then
    # the age of the backlog
    assert row[2:10] == ["1", "0", "0", "0", "3", "0", "0", "0"] and ":" in row[10]


def test_once_it_has_a_destination_the_loader_loads_them_into_that_schema(
        held_batch, ledger_dsn, stack, pg_schema, monkeypatch):
    assert [t for t, _s, _n in claims.claimable_tables(held_batch)] == []
    monkeypatch.setenv("SPOOL_TEST_PLATFORM_WH", stack.warehouse_dsn)
    rc, _, err = spool_cli(ledger_dsn, "tenants", "add", "_unassigned", "--warehouse",
                           "postgres", "--dsn", "env:SPOOL_TEST_PLATFORM_WH", "--schema",
                           pg_schema)
    assert rc == 0, err
    due = claims.claimable_tables(held_batch)
    assert due == [("_unassigned", "_sdc_rejected", 1)]

    loader = TenantLoader(held_batch, ObjectStore(), LoaderConfig(), owner="test")
    attempts = list(loader.load("_unassigned", ["_sdc_rejected"]))
    loader.close()
    assert [a.status for a in attempts] == [Status.LOADED], [a.error for a in attempts]

    conn = psycopg2.connect(stack.warehouse_dsn)
    with conn.cursor() as cur:
        cur.execute(f'SELECT reason_code, record FROM "{pg_schema}"._sdc_rejected '
                    "ORDER BY _sdc_record_id")
        got = cur.fetchall()
    conn.close()
    assert got == [("not_json", "{oops"), ("not_object", "[1, 2]"),
                   ("unknown_tenant", NO_TENANT[2].decode())]

    rc, out, _ = spool_cli(ledger_dsn, "status", "--tenant", "_unassigned")
    row = next(r for r in status_rows(out) if r[:2] == ["_unassigned", "_sdc_rejected"])
    assert rc == 0 and row[2:8] == ["0", "0", "1", "0", "3", "3"] and "held" not in out
