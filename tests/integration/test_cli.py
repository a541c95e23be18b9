"""The ``spool`` command against a real ledger: tenants, status, batches."""

from __future__ import annotations

import json
import subprocess
import sys

from spool.ledger import claims as c
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from tests.integration.test_claims import record


def spool(ledger_dsn, *args):
    res = subprocess.run([sys.executable, "-m", "spool.cli", *args, "--ledger-dsn", ledger_dsn],
                         capture_output=True, text=True, check=False)
    return res.returncode, res.stdout, res.stderr


def test_tenants_are_registered_by_reference_and_never_with_a_password(ledger_dsn):
    rc, _, err = spool(ledger_dsn, "tenants", "add", "acme", "--warehouse", "postgres",
                       "--dsn", "postgresql://bob:hunter2@db/x")
    assert rc == 2 and "by reference" in err and "hunter2" not in err
    rc, _, err = spool(ledger_dsn, "tenants", "add", "acme", "--warehouse", "postgres",
                       "--dsn", "postgresql://:hunter2@db/x")
    assert rc == 2 and "by reference" in err and "hunter2" not in err
    rc, _, err = spool(ledger_dsn, "tenants", "add", "acme", "--warehouse", "postgres",
                       "--dsn", "env:ACME_DSN", "--schema", 'Acme"; DROP')
    assert rc == 2 and "--schema 'Acme\"; DROP' is not a plain" in err and "acme_drop" in err
    rc, out, _ = spool(ledger_dsn, "tenants", "add", "acme", "--warehouse", "postgres",
                       "--dsn", "env:ACME_DSN", "--schema", "acme")
    assert rc == 0 and "acme" in out
    rc, _, err = spool(ledger_dsn, "tenants", "add", "other", "--warehouse", "postgres",
                       "--dsn", "env:ACME_DSN", "--schema", "acme")
    assert rc == 1 and "already loads into schema" in err
    rc, out, _ = spool(ledger_dsn, "tenants", "list", "--json")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["connection"] == {"dsn": "env:ACME_DSN"} and row["schema"] == "acme"


def test_a_new_tenant_needs_a_plain_name_and_one_from_before_keeps_working(ledger_dsn):
    for name in ["", "ux bad name", "UX_Upper", "..", "a/../b", "x" * 64]:
        rc, out, err = spool(ledger_dsn, "tenants", "add", name)
        assert (rc, out) == (2, ""), name
        assert err.count("\n") == 1 and "does not match [a-z_][a-z0-9_]{0,62}" in err, err
    assert "for example ux_upper" in spool(ledger_dsn, "tenants", "add", "UX_Upper")[2]
    for name in ["t001", "acme", "_unassigned", "x" * 63]:
        assert spool(ledger_dsn, "tenants", "add", name)[0] == 0, name
    Registry(Ledger(ledger_dsn)).add_tenant("Old Tenant")  # registered before the check
    rc, out, _ = spool(ledger_dsn, "tenants", "add", "Old Tenant", "--warehouse", "postgres",
                       "--dsn", "env:OLD_DSN", "--schema", "old_tenant")
    assert (rc, out) == (0, "tenant 'Old Tenant' registered: postgres, schema 'old_tenant'\n")
    rc, out, _ = spool(ledger_dsn, "tenants", "list", "--json")
    assert sorted(json.loads(line)["tenant"] for line in out.splitlines()) == \
        ["Old Tenant", "_unassigned", "acme", "t001", "x" * 63]


def test_status_and_retry_of_a_failed_batch(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("acme", "postgres", {"dsn": "env:X"}, "acme")
    ledger.record_batches([record("ok", 1), record("bad", 2)])
    c.claim(ledger, "acme", "orders", "me", 60, 5)
    c.mark_loaded(ledger, ["ok"])
    c.mark_failed(ledger, ["bad"], "me", "DataError: value too long")
    rc, out, _ = spool(ledger_dsn, "status", "--json")
    (st,) = [json.loads(line) for line in out.splitlines()]
    assert (st["loaded"], st["failed"], st["records_loaded"]) == (1, 1, 1)
    assert st["last_error"] == "DataError: value too long"
    rc, out, _ = spool(ledger_dsn, "batches", "list", "--state", "FAILED", "--json")
    assert [json.loads(line)["batch_id"] for line in out.splitlines()] == ["bad"]
    rc, out, _ = spool(ledger_dsn, "batches", "retry", "bad")
    assert rc == 0 and out.startswith("1 batch")
    assert [b.batch_id for b in c.claim(ledger, "acme", "orders", "me", 60, 5)] == ["bad"]
    rc, _, err = spool(ledger_dsn, "batches", "show", "nope")
    assert rc == 1 and "no batch" in err


def test_rejected_counts_by_reason_with_samples(ledger_dsn, tmp_path):
    from spool.ingest.decode import Decoder, DecodeRules
    from spool.ingest.parts import Part, rejected_row
    from spool.ingest.writer import assemble

    dec = Decoder(DecodeRules(), lambda t: t == "acme", lambda t, s: None)
    part = Part()
    for i, raw in enumerate([b"{oops", b"[1]", b"{also bad"]):
        part.rows.append(((), rejected_row(dec.decode(raw), f"q/0/{i}", 1, 2, raw)))
        part.note_record("q/0", i, len(raw), 0)
    _uri, _data, record = assemble("acme", "_sdc_rejected", 0, 60_000, 0, part, str(tmp_path), 3)
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    ledger.record_batches([record])
    rc, out, _ = spool(ledger_dsn, "rejected", "--json", "--samples", "5")
    assert rc == 0
    got = {r["reason_code"]: r for r in map(json.loads, out.splitlines())}
    assert {k: v["count"] for k, v in got.items()} == {"not_json": 2, "not_object": 1}
    assert [s["record"] for s in got["not_json"]["samples"]] == ["{oops", "{also bad"]
