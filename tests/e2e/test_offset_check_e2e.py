"""The spool job (drain mode) files every message it commits into a batch, but Singer
SCHEMA and STATE: ``spool check offsets`` finds nothing lost after a run over the nasty
corpus, Singer messages and envelopes on three partitions."""

from __future__ import annotations

import json

from kafka import KafkaProducer

from spool import offset_check
from spool.ledger.store import Ledger
from tests import nasty
from tests.e2e.jobs import job_env, register_tenants, run_spool_job


def test_a_drain_run_leaves_no_offset_outside_a_batch(stack, make_topic, ledger_dsn, unique,
                                                      tmp_path):
    topic = make_topic(partitions=3)
    register_tenants(ledger_dsn, {"acme", "a.b"})
    h = [("tenant", b"acme")]
    # a record first: the range checked starts at the first offset a batch holds
    singer = [{"type": "RECORD", "stream": "users", "record": {"id": -1}},  # before SCHEMA
              {"type": "SCHEMA", "stream": "users", "key_properties": ["id"],
               "schema": {"properties": {"id": {"type": "integer"}}}},
              *({"type": "RECORD", "stream": "users", "record": {"id": i}} for i in range(5)),
              {"type": "STATE", "value": {"at": 5}},
              {"type": "ACTIVATE_VERSION", "stream": "users", "version": 1},
              {"type": "STATE", "value": {"at": 6}}]
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all",
                             max_request_size=16 * 1024 * 1024)
    for case in nasty.CASES:
        producer.send(topic, case.value, key=b"k" if case.value is None else None, partition=0,
                      headers=case.headers or None)
    for m in singer:
        producer.send(topic, json.dumps(m).encode(), partition=1, headers=h)
    for i in range(50):
        producer.send(topic, json.dumps({"tenant": "acme", "stream": f"s{i % 4}",
                                         "data": {"id": i}}).encode(), partition=2)
    producer.flush()
    producer.close()
    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={tmp_path}"], job_env(stack, ledger_dsn))

    ledger = Ledger(ledger_dsn)
    try:
        got = offset_check.check_offsets(ledger, stack.kafka_bootstrap, topic, unique)
    finally:
        ledger.close()
    assert got["ok"], json.dumps(got, indent=1)
    p0, p1, p2 = got["partitions"]
    assert (p0["checked"], p0["lost"]) == (len(nasty.CASES), 0)
    assert (p1["checked"], p1["schema"], p1["state"], p1["uncovered"]) == (10, 1, 2, 3)
    assert (p2["checked"], p2["uncovered"]) == (50, 0)
