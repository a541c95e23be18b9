"""A tenant whose warehouse is a DuckDB file, as a user registers it and the loader loads it:
real ledger, real batch files, the loader's own connections (the file opened for each load
and closed after, so another loader process can take its turn)."""

from __future__ import annotations

import json

import duckdb

from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.loader.tenant import LoaderConfig, Status, TenantLoader
from spool.objectstore import ObjectStore
from tests.integration.test_cli import spool as cli
from tests.integration.test_tenant_loader import spool


def test_a_duckdb_tenant_is_registered_loaded_and_its_changes_read(ledger_dsn, tmp_path):
    rc, _, err = cli(ledger_dsn, "tenants", "add", "acme", "--warehouse", "duckdb")
    assert rc == 2 and "a duckdb warehouse needs --path" in err
    rc, _, err = cli(ledger_dsn, "tenants", "add", "acme", "--warehouse", "duckdb",
                     "--path", str(tmp_path / "acme.duckdb"))
    assert rc == 2 and "named like the schema 'acme'" in err and "warehouse.duckdb" in err
    path = tmp_path / "warehouse" / "warehouse.duckdb"
    rc, out, err = cli(ledger_dsn, "tenants", "add", "acme", "--warehouse", "duckdb",
                       "--path", str(path), "--schema", "acme")
    assert rc == 0, err
    ledger = Ledger(ledger_dsn)
    first = spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 5}, {"id": 2, "amount": 6}])
    second = spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 7, "note": "again"}])
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    attempts = list(loader.load("acme", ["orders"]))
    assert [a.status for a in attempts] == [Status.LOADED]
    assert set(attempts[0].batch_ids) == {first, second}
    # the loader let go of the file: another process opens it for writing at once
    other = duckdb.connect(str(path))
    assert other.execute("SELECT id, amount, note FROM acme.orders ORDER BY id").fetchall() \
        == [(1, 7, "again"), (2, 6, None)]
    other.close()
    loader.close()
    assert Registry(ledger).tenant("acme").destination_kind == "duckdb"
    ledger.close()
    rc, out, err = cli(ledger_dsn, "changes", "--tenant", "acme", "--json")
    assert rc == 0, err
    assert {(r["kind"], r["column"]) for r in map(json.loads, out.splitlines())} == {
        ("table_created", None), ("column_added", "id"), ("column_added", "amount"),
        ("column_added", "note")}


def test_a_duckdb_file_another_process_writes_is_retried_not_failed(ledger_dsn, tmp_path):
    path = tmp_path / "busy.duckdb"
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("acme", "duckdb", {"path": str(path)}, "acme")
    batch = spool(ledger, tmp_path, "orders", [{"id": 1}])
    import subprocess
    import sys
    holder = subprocess.Popen(  # another process holds the file's write lock
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
        (attempt,) = loader.load("acme", ["orders"])
        assert attempt.status is Status.RETRY and attempt.batch_ids == (batch,)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    loader.close()
    ledger.close()
