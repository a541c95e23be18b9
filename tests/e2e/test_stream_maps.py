"""Stream maps end to end: Kafka → spool job (maps applied) → batch files → loader →
PostgreSQL. The warehouse holds exactly what an independent model of the maps computes, and
the raw PII is nowhere: not in any column of any table of the tenant's schema, not in any
batch file."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq

from spool.ledger.maps import MapStore
from spool.ledger.store import Ledger
from spool.objectstore import ObjectStore
from tests.corpus import Message, produce
from tests.e2e.jobs import job_env, run_spool_job
from tests.e2e.test_loader import drop_schemas, register, run_loader  # noqa: F401

KEY = "e2e-map-key"
PII = ("@pii.example", "ssn-", "1970-")


def envelope(stream: str, seq: int, data: dict) -> Message:
    return Message(json.dumps({"tenant": "acme", "stream": stream, "key_names": ["email"],
                               "sequence": seq, "data": data}).encode(), "valid")


def test_a_mapped_tenant_loads_what_the_model_says_and_no_pii_anywhere(
        stack, make_topic, ledger_dsn, unique, tmp_path, drop_schemas):  # noqa: F811
    topic = make_topic(partitions=2)
    register(ledger_dsn, ["acme"], unique)
    drop_schemas(unique)
    store = MapStore(Ledger(ledger_dsn))
    common = {"hash": ["email"], "secret": "env:SPOOL_TEST_MAP_KEY",
              "drop": [["profile", "ssn"], ["profile", "dob"]]}
    store.save("acme", "users", {**common, "filter": {"ne": ["status", "test"]}}, "e2e")
    store.save("acme", "legacy_users", {**common, "alias": "users"}, "e2e")
    # set an hour ago: the windows of the records below start after it
    store.ledger.run(lambda cur: cur.execute(
        "UPDATE stream_maps SET created_at = now() - interval '1 hour'"))
    store.ledger.close()

    rng = random.Random(16)
    messages, model = [], {}
    for seq in range(1, 401):
        stream = "legacy_users" if seq % 5 == 0 else "users"
        data = {"email": f"user{rng.randrange(60)}@pii.example", "name": f"n{seq}",
                "status": rng.choice(["active", "active", "test"]),
                "profile": {"ssn": f"ssn-{seq}", "dob": f"1970-01-{seq % 28 + 1:02d}"}}
        messages.append(envelope(stream, seq, data))
        if stream == "users" and data["status"] == "test":
            continue  # the users map filters these out; legacy_users has no filter
        digest = hmac.new(KEY.encode(), data["email"].encode(), hashlib.sha256).hexdigest()
        model[digest] = (data["name"], data["status"])  # the highest sequence wins
    # rejected, by the map (its profile is not an object) and before it (a key that is not
    # a scalar): neither message's text reaches the warehouse
    messages.append(envelope("users", 401, {"email": "bad@pii.example",
                                            "profile": "ssn-401 1970-01-01"}))
    messages.append(envelope("users", 402, {"email": {"nested": "hidden@pii.example"}}))
    produce(stack.kafka_bootstrap, topic, messages, 2)

    env = dict(job_env(stack, ledger_dsn), SPOOL_TEST_MAP_KEY=KEY)
    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={tmp_path / 'spool'}"], env)
    res = run_loader(env)
    assert res.returncode == 0, res.stderr[-3000:]

    schema = f"{unique}_acme"
    conn = psycopg2.connect(stack.warehouse_dsn)
    try:
        check_warehouse(conn, schema, model)
    finally:
        conn.close()
    check_batch_files(ledger_dsn)


def check_warehouse(conn, schema: str, model: dict) -> None:
    with conn.cursor() as cur:
        cur.execute(f'SELECT email, name, status FROM "{schema}".users')
        assert {e: (n, s) for e, n, s in cur.fetchall()} == model
        cur.execute(f'SELECT reason_code, reason, record FROM "{schema}"._sdc_rejected '
                    "ORDER BY reason_code")
        (code, _reason, record), (code2, reason2, record2) = cur.fetchall()
        assert (code, code2) == ("bad_key", "map_failed"), (code, code2)
        assert "stream map v1 of acme/users: profile is not an object" in reason2
        assert not record and not record2  # not copied: the map keeps their PII out
        # every column of every table of the schema, as text: no raw PII
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (schema,))
        tables = [t for (t,) in cur.fetchall()]
        assert "users" in tables and "legacy_users" not in tables
        for table in tables:
            cur.execute(f'SELECT t::text FROM "{schema}"."{table}" AS t')
            text = "\n".join(r[0] for r in cur.fetchall())
            assert not [p for p in PII if p in text], f"PII in {schema}.{table}"


def check_batch_files(ledger_dsn: str) -> None:
    """No PII in any batch file, its rows read back as text."""
    ledger = psycopg2.connect(ledger_dsn)
    with ledger.cursor() as cur:
        cur.execute("SELECT uri, meta FROM batches WHERE tenant_id = 'acme'")
        files = cur.fetchall()
    ledger.close()
    assert files
    for uri, meta in files:
        rows = pq.read_table(pa.BufferReader(ObjectStore().read(uri))).to_pylist()
        assert not [p for p in PII if p in repr(rows)], uri
        assert meta.get("map_version") == 1 or meta.get("map_version") is None
    assert {m.get("map_version") for _u, m in files} >= {1}
