"""Singer messages and the nasty corpus through Kafka and the spool job (drain mode)."""

from __future__ import annotations

import json

import psycopg2
from kafka import KafkaProducer

from spool.ingest import batchfile
from tests import corpus, nasty
from tests.e2e.jobs import batches, job_env, register_tenants, run_spool_job, spooled, store


def send(stack, topic, values_and_headers) -> list[str]:
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all",
                             max_request_size=16 * 1024 * 1024)
    futures = [producer.send(topic, value, key=b"k" if value is None else None, partition=0,
                             headers=headers or None)
               for value, headers in values_and_headers]
    producer.flush()
    ids = corpus.record_ids(futures)
    producer.close()
    return ids


def test_singer_stream_keys_schema_version_and_state(stack, make_topic, ledger_dsn, unique,
                                                     tmp_path):
    topic = make_topic(partitions=1)
    register_tenants(ledger_dsn, {"acme"})
    h = [("tenant", b"acme")]
    schema = {"type": "object", "properties": {"id": {"type": "integer"},
                                               "at": {"type": "string", "format": "date-time"}}}
    msgs = [
        {"type": "RECORD", "stream": "users", "record": {"id": 0}},  # before its SCHEMA
        {"type": "SCHEMA", "stream": "users", "schema": schema, "key_properties": ["id"]},
        {"type": "RECORD", "stream": "users", "record": {"id": 1, "at": "2024-01-01T00:00:00Z"},
         "version": 7, "time_extracted": "2024-01-01T00:00:01Z"},
        {"type": "RECORD", "stream": "users", "record": {"name": "no key"}},
        {"type": "ACTIVATE_VERSION", "stream": "users", "version": 7},
        {"type": "STATE", "value": {"bookmarks": {"users": 1}}},
    ]
    ids = send(stack, topic, [(json.dumps(m).encode(), h) for m in msgs])
    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={tmp_path}"], job_env(stack, ledger_dsn))

    found = spooled(ledger_dsn, store(stack))
    assert found[ids[0]][0][3] == "record_before_schema"
    assert found[ids[3]][0][3] == "bad_key"
    assert found[ids[2]][0][1:3] == ("acme", "users")
    assert ids[1] not in found and ids[5] not in found  # control messages are not rows
    (users,) = [b for b in batches(ledger_dsn) if b[2] == "users"]
    meta, table = batchfile.decode(store(stack).read(users[3]))
    assert meta.key_names == ["id"] and meta.schema == schema
    assert meta.activate_version == 7
    root = batchfile.rows_of_table(table, []).to_pylist()[0]
    assert root["_sdc_table_version"] == 7
    assert root["_sdc_extracted_at"].isoformat() == "2024-01-01T00:00:01+00:00"
    conn = psycopg2.connect(ledger_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT key_names, json_schema FROM streams WHERE tenant_id = 'acme'")
        assert cur.fetchone() == (["id"], schema)
        cur.execute("SELECT state, record_id FROM tenant_state WHERE tenant_id = 'acme'")
        assert cur.fetchone() == ({"bookmarks": {"users": 1}}, ids[5])
    conn.close()


def test_nasty_corpus_through_kafka(stack, make_topic, ledger_dsn, unique, tmp_path):
    topic = make_topic(partitions=1)
    register_tenants(ledger_dsn, {"acme", "a.b"})
    ids = send(stack, topic, [(c.value, c.headers) for c in nasty.CASES])
    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={tmp_path}"], job_env(stack, ledger_dsn))
    found = spooled(ledger_dsn, store(stack))
    for case, rid in zip(nasty.CASES, ids, strict=True):
        (place,) = found[rid]
        _batch, tenant, stream, code = place
        if case.expect == "record":
            assert code is None and stream != "_sdc_rejected", case.name
        else:
            assert (code, stream, tenant) == (case.expect, "_sdc_rejected", case.tenant), \
                case.name
