"""Hostile tenant and stream names never steer a batch file out of its tenant's folder.

A record's stream is whatever a producer sent, and tenants registered before names were
checked may be called anything. Random hostile names (``..``, ``a/../b``, NUL, fullwidth
dots, 300 characters, both Unicode normalisations of one word, ...; tests/nasty.py) go
through the spool job's writer (spool.ingest.writer.BatchWriter.add: key, check, write) onto
a real folder and the real S3 endpoint; then every object that exists anywhere is one a
batch was written to, under ``<spool location>/<its tenant's segment>/``, and reads back.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.keys import segment
from spool.ingest.parts import Part, rejected_row
from spool.ingest.shape import shape
from spool.ingest.writer import BatchWriter
from spool.ledger.store import Ledger
from spool.objectstore import ObjectStore, S3Config, split_s3
from tests import nasty
from tests.nasty import hostile_names

WINDOW_MS = 60_000
START_MS = 1_700_000_040_000


def one_record(offset: int) -> Part:
    part = Part()
    part.rows.extend(shape({"id": offset}, rid=f"q/0/{offset}", sequence=offset,
                           received_at_ms=START_MS + offset))
    part.note_record("q/0", offset, 10, START_MS + offset)
    return part


def pairs(seed: int) -> list[tuple[str, str]]:
    """Every hostile name as a tenant (with a hostile stream) and as a stream of ``acme``."""
    rng = random.Random(seed)
    names = hostile_names(rng, 120)
    return ([(name, rng.choice(names)) for name in names]
            + [("acme", name) for name in names])


def segments_ok(key: str) -> bool:
    return all(p not in ("", ".", "..") and "\0" not in p and "\\" not in p
               for p in key.split("/"))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_every_batch_of_a_hostile_name_stays_under_its_tenants_prefix(stack, tmp_path,
                                                                      s3_prefix, where):
    s3 = S3Config(endpoint_url=stack.s3_endpoint, access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
                  secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
                  region_name=stack.env["AWS_DEFAULT_REGION"])
    store = ObjectStore(s3)
    # the spool location sits two levels down: a name that climbs out shows up above it
    location = (str(tmp_path / "a" / "spool") if where == "local"
                else f"s3://{stack.s3_bucket}/{s3_prefix}a/spool")
    writer = BatchWriter(store, None, location, WINDOW_MS)  # ledger rows are not the point
    expected: dict[str, str] = {}  # uri → tenant
    for offset, (tenant, stream) in enumerate(pairs(seed=28)):
        record, _ = writer.add(tenant, stream, START_MS, 0, [one_record(offset)])
        expected[record.uri] = tenant
        key = record.uri[len(location) + 1:]
        assert record.uri == f"{location}/{key}", record.uri
        assert segments_ok(key), (tenant, stream, key)
        assert key.startswith(segment(tenant) + "/"), (tenant, key)
        assert len(segment(tenant).encode()) <= 255 and len(segment(stream).encode()) <= 255

    if where == "local":
        found = {os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files}
        assert found == {os.path.realpath(u) for u in expected}
        assert {os.path.realpath(u) for u in expected} == set(expected)  # nothing normalised
    else:
        bucket, root = split_s3(f"s3://{stack.s3_bucket}/{s3_prefix}")
        listed = stack.s3_client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=root)
        found = {f"s3://{bucket}/{o['Key']}" for page in listed for o in page.get("Contents", [])}
        assert found == set(expected)
    # distinct tenants never share a prefix, and every file reads back at its ledger URI
    tenants = set(expected.values())
    assert len({segment(t) for t in tenants}) == len(tenants)
    for uri in list(expected)[::25]:
        assert store.read(uri)[:4] == b"PAR1"


def test_a_nul_a_producer_sends_never_stops_the_ledger_write(ledger_dsn, tmp_path):
    """PostgreSQL stores no NUL character. A tenant or stream name holding one is rejected
    (it would be the batch's ledger row), and a rejection whose reason quotes one (a field
    name, a Singer header's tenant) is recorded with it written as \\u0000: before, either
    made the batch's ledger write fail, on every retry, and the spool job stood still."""
    decoder = Decoder(DecodeRules(), lambda t: t == "acme", lambda t, s: None)
    cases = [c for c in nasty.CASES if c.name.startswith("nul_in_")]
    part = Part()
    for offset, case in enumerate(cases):
        decoded = decoder.decode(case.value, case.headers)
        assert decoded.reason and decoded.reason.value == case.expect, case.name
        part.rows.append(((), rejected_row(decoded, f"q/0/{offset}", START_MS + offset,
                                           START_MS + offset, case.value)))
        part.note_record("q/0", offset, len(case.value), START_MS + offset)
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    writer = BatchWriter(ObjectStore(), ledger, str(tmp_path), WINDOW_MS)
    writer.add("_unassigned", "_sdc_rejected", START_MS, 0, [part])
    writer.flush()
    ledger.close()
    res = subprocess.run([sys.executable, "-m", "spool.cli", "rejected", "--tenant",
                          "_unassigned", "--samples", "3", "--json", "--ledger-dsn", ledger_dsn],
                         capture_output=True, text=True, check=True)
    rows = {r["reason_code"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert {code: r["count"] for code, r in rows.items()} == {
        "wrong_type": 2, "unknown_field": 1, "unknown_tenant": 1}
    assert "field 'x\\u0000'" in rows["unknown_field"]["samples"][0]["reason"]
