"""Records that reached their window after it had closed: counted per stream in ``spool
status``, per tenant on the spool job's metrics page, in total for the soak."""

from __future__ import annotations

import dataclasses
import json

from prometheus_client import CollectorRegistry, generate_latest

from spool.ledger import coverage, gauges
from spool.ledger.store import Ledger
from spool.metrics import LedgerCollector
from tests.integration.test_claims import record
from tests.integration.test_cli import spool


def late(batch_id: str, n: int, tenant: str = "acme", stream: str = "orders"):
    return dataclasses.replace(record(batch_id, 1, tenant, stream),
                               meta={"records_late": n} if n else {})


def test_late_records_are_summed_per_stream_tenant_and_in_total(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    ledger.record_batches([late("a1", 3), late("a2", 4), late("a3", 0),
                           late("u1", 2, stream="users"), late("g1", 5, tenant="globex")])
    try:
        rc, out, _ = spool(ledger_dsn, "status", "--json")
        got = {(r["tenant"], r["table"]): r["late"] for r in map(json.loads, out.splitlines())}
        assert rc == 0 and got == {("acme", "orders"): 7, ("acme", "users"): 2,
                                   ("globex", "orders"): 5}
        rc, out, _ = spool(ledger_dsn, "status")
        assert out.splitlines()[0].split()[9] == "late"
        assert {w.tenant: w.records_late for w in gauges.written(ledger)} == {"acme": 9,
                                                                             "globex": 5}
        assert coverage.records_late(ledger) == 14
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LedgerCollector(ledger_dsn, "spool_job"))
        page = generate_latest(registry).decode()
        assert 'spool_records_late_total{tenant="acme"} 9.0' in page
        assert 'spool_records_late_total{tenant="globex"} 5.0' in page
        loader = CollectorRegistry(auto_describe=False)
        loader.register(LedgerCollector(ledger_dsn, "loader"))
        assert "spool_records_late" not in generate_latest(loader).decode()
    finally:
        ledger.close()
