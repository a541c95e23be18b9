"""Stream maps end to end: Kafka → spool job (maps applied) → batch files → loader →
PostgreSQL. The warehouse holds exactly what an independent model of the maps computes, and
the raw PII is nowhere: not in any column of any table of the tenant's schema, not in any
batch file."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import signal
import subprocess
import sys
import time

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq

from spool.ingest import batchfile
from spool.ledger.maps import MapStore
from spool.ledger.store import Ledger
from spool.objectstore import ObjectStore
from tests.corpus import Message, produce
from tests.e2e.jobs import (
    batches,
    job_env,
    kill,
    ledger_rows,
    register_tenants,
    run_spool_job,
    spooled,
    start_spool_job,
    store,
    wait_for,
)
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
    messages, model, dropped = [], {}, 0
    for seq in range(1, 401):
        stream = "legacy_users" if seq % 5 == 0 else "users"
        data = {"email": f"user{rng.randrange(60)}@pii.example", "name": f"n{seq}",
                "status": rng.choice(["active", "active", "test"]),
                "profile": {"ssn": f"ssn-{seq}", "dob": f"1970-01-{seq % 28 + 1:02d}"}}
        messages.append(envelope(stream, seq, data))
        if stream == "users" and data["status"] == "test":
            dropped += 1
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
    # what each version did, as its history says: the filter's drops counted, by version
    res = subprocess.run([sys.executable, "-m", "spool.cli", "maps", "history", "acme",
                          "--json"], env=env, capture_output=True, text=True, check=True)
    history = {(r["stream"], r["version"]): r for r in map(json.loads, res.stdout.splitlines())}
    assert history[("users", 1)]["records_filtered"] == dropped > 0
    assert history[("legacy_users", 1)]["records_filtered"] == 0
    assert min(r["batches"] for r in history.values()) > 0


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
    files = ledger_rows(ledger_dsn, "SELECT uri, meta FROM batches WHERE tenant_id = 'acme'")
    assert files
    for uri, meta in files:
        rows = pq.read_table(pa.BufferReader(ObjectStore().read(uri))).to_pylist()
        assert not [p for p in PII if p in repr(rows)], uri
        assert meta.get("map_versions") in ({"users": 1}, {"legacy_users": 1},
                                            {"users": 1, "legacy_users": 1}, None)
    assert any(m.get("map_versions") for _u, m in files)


def send(bootstrap: str, topic: str, messages: list[tuple[int, bytes, list]],
         at_ms: int) -> None:
    """(partition, value, headers) sent in order, with Kafka timestamp ``at_ms``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for partition, value, headers in messages:
        producer.send(topic, value, partition=partition, headers=headers or None,
                      timestamp_ms=at_ms)
    producer.flush()
    producer.close()


def test_a_map_changed_mid_stream_loads_each_record_under_the_version_of_its_window(
        stack, make_topic, ledger_dsn, unique, tmp_path, drop_schemas):  # noqa: F811
    """users: v1 hashes the email key, v2 (set at T0) also renames name to full_name;
    legacy_users (a Singer tap) is aliased into users by its own v1. Records sent before T0
    load under v1, after it under v2, each row saying which; the change is in the tenant's
    schema change log, once, with the column it added; two spool runs and two loads, so the
    version loaded before is read back from the warehouse."""
    topic = make_topic(partitions=2)
    register(ledger_dsn, ["acme"], unique)
    drop_schemas(unique)
    store = MapStore(Ledger(ledger_dsn))
    common = {"hash": ["email"], "secret": "env:SPOOL_TEST_MAP_KEY", "drop": ["ssn"]}
    store.save("acme", "users", common, "ann")
    store.save("acme", "legacy_users", {**common, "alias": "users"}, "ann")
    store.save("acme", "users", {**common, "rename": {"name": "full_name"}}, "bob")
    now_ms = int(time.time() * 1000)
    t0_ms = now_ms - 20 * 60_000
    store.ledger.run(lambda cur: cur.execute(
        "UPDATE stream_maps SET created_at = CASE WHEN version = 1 THEN now() - interval "
        "'1 hour' ELSE to_timestamp(%s / 1000.0) END", (t0_ms,)))
    store.ledger.close()

    def digest(email: str) -> str:
        return hmac.new(KEY.encode(), email.encode(), hashlib.sha256).hexdigest()

    model = {}  # hashed email → (map version, name, full_name)
    users = [(seq, f"user{seq % 150}@pii.example") for seq in range(1, 301)]
    before = [(seq % 2, envelope("users", seq, {"email": email, "name": f"n{seq}",
                                                "ssn": f"ssn-{seq}"}).value, [])
              for seq, email in users[:150]]
    singer = [(0, json.dumps({"type": "SCHEMA", "stream": "legacy_users",
                              "key_properties": ["email"],
                              "schema": {"properties": {"email": {"type": "string"}}}}
                             ).encode(), [("tenant", b"acme")])]
    for i in range(20):
        email = f"legacy{i}@pii.example"
        singer.append((0, json.dumps({"type": "RECORD", "stream": "legacy_users", "record": {
            "email": email, "name": f"l{i}", "ssn": f"ssn-l{i}"}}).encode(),
                       [("tenant", b"acme")]))
        model[digest(email)] = (1, f"l{i}", None)
    for seq, email in users[:150]:
        model[digest(email)] = (1, f"n{seq}", None)
    after = [(seq % 2, envelope("users", seq, {"email": email, "name": f"n{seq}",
                                               "ssn": f"ssn-{seq}"}).value, [])
             for seq, email in users[150:]]
    for seq, email in users[150:]:  # half of them new keys, half upserts of v1 rows
        model[digest(email)] = (2, None, f"n{seq}")

    env = dict(job_env(stack, ledger_dsn), SPOOL_TEST_MAP_KEY=KEY)
    job = [f"--topic={topic}", f"--consumer_group={unique}",
           f"--spool_location={tmp_path / 'spool'}"]
    send(stack.kafka_bootstrap, topic, before + singer, t0_ms - 5 * 60_000)
    run_spool_job(job, env)
    assert run_loader(env).returncode == 0
    send(stack.kafka_bootstrap, topic, after, t0_ms + 5 * 60_000)
    run_spool_job(job, env)
    res = run_loader(env)
    assert res.returncode == 0, res.stderr[-3000:]

    schema = f"{unique}_acme"
    conn = psycopg2.connect(stack.warehouse_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT email, _sdc_map_version, name, full_name FROM "{schema}".users')
            assert {e: (v, n, f) for e, v, n, f in cur.fetchall()} == model
            cur.execute(f'SELECT source, old_type, new_type, batch_id FROM "{schema}".'
                        "_sdc_schema_changes WHERE kind = 'map_changed' "
                        "ORDER BY changed_at, position")
            changes = cur.fetchall()
            assert [c[:3] for c in changes] == [("legacy_users", None, "v1"), ("users", None, "v1"),
                                                ("users", "v1", "v2")], changes
            cur.execute(f'SELECT detail, batch_id FROM "{schema}"._sdc_schema_changes '
                        "WHERE kind = 'column_added' AND column_name = 'full_name'")
            (detail, batch), = cur.fetchall()
            assert "stream map v2 of users" in detail and batch == changes[-1][3]
    finally:
        conn.close()
    seen = ledger_rows(ledger_dsn, "SELECT meta->'map_versions', window_start < "
                                   "to_timestamp(%s / 1000.0) FROM batches WHERE tenant_id = "
                                   "'acme' AND stream = 'users'", t0_ms)
    assert [v for v, early in seen if early] and \
        {json.dumps(v, sort_keys=True) for v, early in seen if early} <= \
        {'{"users": 1}', '{"legacy_users": 1}', '{"legacy_users": 1, "users": 1}'}
    assert {json.dumps(v) for v, early in seen if not early} == {'{"users": 2}'}


def emails(objects: ObjectStore, ledger_dsn: str) -> dict[str, list]:
    """record id → [(its e-mail, its _sdc_map_version)] in every batch file it is in."""
    out: dict[str, list] = {}
    for _b, _t, _s, uri, _state, _n, _c, _w in batches(ledger_dsn):
        _, table = batchfile.decode(objects.read(uri))
        for row in table.to_pylist():
            if row[batchfile.TABLE_COLUMN] != batchfile.ROOT_TABLE_KEY:
                continue
            email = [v for k, v in row.items() if '["email"]' in k and v is not None]
            out.setdefault(row["_sdc_record_id"], []).append(
                (email[0] if email else None, row.get("_sdc_map_version")))
    return out


def test_every_record_sent_after_maps_set_returned_is_mapped_mid_window_and_after_restart(
        stack, prism, make_topic, ledger_dsn, unique, tmp_path):
    """A running spool job with hour-long windows, which would not read the maps again for
    an hour by its own refresh: records sent right after 'spool maps set' returned, in the
    window the job was already filling, are all hashed; so are those a restarted job reads.
    Records sent before it may load as they were."""
    from kafka import KafkaProducer

    topic = make_topic(partitions=1)
    register_tenants(ledger_dsn, ["acme"])
    env = dict(job_env(stack, ledger_dsn), SPOOL_TEST_MAP_KEY=KEY)
    objects = store(stack)
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    sent: dict[str, str] = {}  # record id → e-mail sent

    def send(first: int, n: int) -> list[str]:
        ids = []
        for seq in range(first, first + n):
            email = f"user{seq}@pii.example"
            meta = producer.send(topic, json.dumps({
                "tenant": "acme", "stream": "users", "key_names": ["id"], "sequence": seq,
                "data": {"id": seq, "email": email}}).encode(), partition=0).get(30)
            ids.append(f"{topic}/0/{meta.offset}")
            sent[ids[-1]] = email
        producer.flush()
        return ids

    def digest(email: str) -> str:
        return hmac.new(KEY.encode(), email.encode(), hashlib.sha256).hexdigest()

    log = tmp_path / "job.log"
    job_args = [f"--topic={topic}", f"--consumer_group={unique}",
                f"--spool_location={tmp_path / 'spool'}", "--batch_seconds=3600",
                "--batch_max_rows=1", "--tenant_refresh_seconds=3600"]
    job = start_spool_job([*job_args, "--mode=streaming", "--log_level=INFO"], env, log)
    try:
        wait_for("the job reading its partition",
                 lambda: "to the end of time" in log.read_text(), 90)
        before = send(1, 5)
        wait_for("the records sent before the map spooled",
                 lambda: set(before) <= set(spooled(ledger_dsn, objects)), 120, interval=1)
        res = subprocess.run([sys.executable, "-m", "spool.cli", "maps", "set", "acme", "users",
                              "--ledger-dsn", ledger_dsn], input=json.dumps(
                                  {"hash": ["email"], "secret": "env:SPOOL_TEST_MAP_KEY"}),
                             capture_output=True, text=True, env=env, check=False)
        assert res.returncode == 0, res.stderr
        after = send(6, 20)  # at once: in the window the job is filling
        wait_for("the records sent after the map spooled",
                 lambda: set(after) <= set(spooled(ledger_dsn, objects)), 120, interval=1)
    finally:
        kill(job, signal.SIGTERM, timeout=60)
    restarted = send(26, 5)
    producer.close()
    run_spool_job(job_args, env)  # drain: a new job reads the maps from the ledger

    found = emails(objects, ledger_dsn)
    assert set(before) | set(after) | set(restarted) <= set(found)
    assert all(found[rid] for rid in before)  # before the map: hashed or not, both allowed
    wrong = {rid: found[rid] for rid in after + restarted
             if any(got != (digest(sent[rid]), 1) for got in found[rid])}
    assert not wrong, f"{len(wrong)} records sent after 'maps set' not mapped: {wrong}"
