"""``spool check offsets`` against real Kafka and a real ledger: what the spool job's shaping
put in batches covers every offset but Singer SCHEMA and STATE messages; a batch missing is
a loss, named by its offsets."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg2
import pytest

from spool import offset_check
from spool.ingest.chunks import ChunkShaper
from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.directory import Directory
from spool.ingest.writer import assemble, merge_parts
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger


def envelope(i: int, stream: str = "orders") -> bytes:
    return json.dumps({"tenant": "acme", "stream": stream, "data": {"id": i}}).encode()


def singer(msg: dict) -> tuple[bytes, list]:
    return json.dumps(msg).encode(), [("tenant", b"acme")]


SCHEMA = {"type": "SCHEMA", "stream": "users", "key_properties": ["id"],
          "schema": {"properties": {"id": {"type": "integer"}}}}


def messages_p0() -> list[tuple[bytes, list]]:
    """Partition 0, by offset: what the spool job does with each is in the comment."""
    return [
        (envelope(0), []),                                           # 0 orders
        singer(SCHEMA),                                              # 1 SCHEMA: no batch
        singer({"type": "RECORD", "stream": "users", "record": {"id": 1}}),  # 2 users
        singer({"type": "STATE", "value": {"bookmark": 1}}),         # 3 STATE: no batch
        (envelope(4), []),                                           # 4 orders
        (b"{not json", []),                                          # 5 _unassigned rejected
        singer({"type": "ACTIVATE_VERSION", "stream": "users", "version": 2}),  # 6 users
        (envelope(7, "payments"), []),                               # 7 payments
        singer({"type": "STATE", "value": {"bookmark": 2}}),         # 8 STATE: no batch
        singer({"type": "STATE", "value": {"bookmark": 3}}),         # 9 STATE: no batch
        (envelope(10), []),                                          # 10 orders
    ]


def produce(bootstrap: str, topic: str, partition: int, messages) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value, headers in messages:
        producer.send(topic, value, partition=partition, headers=headers)
    producer.flush()
    producer.close()


def read_back(bootstrap: str, topic: str, partition: int, count: int) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out: list = []
    for _ in range(60):
        out += consumer.poll(timeout_ms=500).get(tp, [])
        if len(out) >= count:
            break
    consumer.close()
    return out


def spool(ledger: Ledger, bootstrap: str, topic: str, partition: int, records: list,
          tmp_path) -> list:
    """What the spool job does with ``records``: shape (spool.ingest.chunks), batch per
    (tenant, stream, window), record READY; the batch records."""
    registry = Registry(ledger)
    directory = Directory(registry, refresh_seconds=0)
    decoder = Decoder(DecodeRules(), directory.is_tenant, directory.stream_keys)
    shaper = ChunkShaper(decoder, directory, 60_000, registry.save_tenant_state)
    shaper.add_chunk(topic, partition, 0, records)
    by_key: dict = {}
    for key, part in shaper.take_parts():
        by_key.setdefault(key[:3], []).append(part)
    batches = [assemble(tenant, stream, window, 60_000, 0, merge_parts(parts),
                        str(tmp_path))[2]
               for (tenant, stream, window), parts in sorted(by_key.items())]
    ledger.record_batches(batches)
    return batches


@pytest.fixture
def setup(stack, make_topic, ledger_dsn, unique, tmp_path):
    """A topic of two partitions spooled into the ledger and committed by group ``unique``:
    partition 0 holds messages_p0() after three messages no batch holds (before the
    ledger's first batch, as after Kafka's retention or a group started at 'latest');
    partition 1 five envelopes."""
    topic = make_topic(partitions=2)
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("acme", "none")
    produce(stack.kafka_bootstrap, topic, 0, [(envelope(-i), []) for i in range(3)])
    produce(stack.kafka_bootstrap, topic, 0, messages_p0())
    produce(stack.kafka_bootstrap, topic, 1, [(envelope(i), []) for i in range(5)])
    p0 = read_back(stack.kafka_bootstrap, topic, 0, 14)[3:]
    p1 = read_back(stack.kafka_bootstrap, topic, 1, 5)
    assert [r.offset for r in p0] == list(range(3, 14)) and len(p1) == 5
    batches = spool(ledger, stack.kafka_bootstrap, topic, 0, p0, tmp_path)
    batches += spool(ledger, stack.kafka_bootstrap, topic, 1, p1, tmp_path)
    offset_check.rewind(stack.kafka_bootstrap, topic, unique, {0: 14, 1: 5})
    yield topic, ledger, batches
    ledger.close()


def check(stack, ledger, topic, group, **kw) -> dict:
    return offset_check.check_offsets(ledger, stack.kafka_bootstrap, topic, group, **kw)


def cli(stack, ledger_dsn, *args):
    res = subprocess.run([sys.executable, "-m", "spool.cli", "check", "offsets", *args,
                          "--ledger-dsn", ledger_dsn, "--bootstrap", stack.kafka_bootstrap],
                         capture_output=True, text=True, check=False)
    return res.returncode, res.stdout, res.stderr


def test_batches_that_cover_every_record_mean_no_loss(stack, setup, unique, ledger_dsn):
    topic, ledger, _ = setup
    got = check(stack, ledger, topic, unique)
    assert got["ok"] and got["lost"] == 0 and got["unread"] == 0
    p0, p1 = got["partitions"]
    # the three messages before the first batch are not checked
    assert (p0["from"], p0["committed"], p0["checked"]) == (3, 14, 11)
    assert (p0["schema"], p0["state"], p0["uncovered"]) == (1, 3, 4)
    assert [(g["first"], g["last"]) for g in p0["gaps"]] == [(4, 4), (6, 6), (11, 12)]
    assert p0["gaps"][2]["state"] == 2
    assert (p1["from"], p1["checked"], p1["uncovered"]) == (0, 5, 0)
    rc, out, err = cli(stack, ledger_dsn, "--topic", topic, "--consumer_group", unique)
    assert rc == 0 and out.splitlines()[-1].startswith("ok: no record lost: 16 offset(s) in 2")
    assert "4 schema, 6 state, 11-12 state" in out and err == ""


def test_a_batch_missing_is_a_loss_named_by_its_offsets(stack, setup, unique, ledger_dsn):
    topic, ledger, batches = setup
    # the users batch: a Singer RECORD and an ACTIVATE_VERSION (a mark, no row)
    (users,) = [b for b in batches if b.stream == "users"]
    conn = psycopg2.connect(ledger_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM batches WHERE batch_id = %s", (users.batch_id,))
    conn.close()
    got = check(stack, ledger, topic, unique)
    p0 = got["partitions"][0]
    assert not got["ok"] and got["lost"] == 2 == p0["lost"]
    assert [(x["offset"], x["kind"], x["stream"]) for x in p0["lost_records"]] == [
        (5, "record", "users"), (9, "activate_version", "users")]
    assert (p0["schema"], p0["state"], p0["first_lost"], p0["from"]) == (1, 3, 5, 3)
    rc, out, err = cli(stack, ledger_dsn, "--topic", topic, "--consumer_group", unique)
    assert rc == 1 and "4-6 schema+state+lost, 9 lost, 11-12 state" in out
    (line,) = err.splitlines()
    assert line.startswith("partition 0: 2 record(s) LOST: offset(s) 5, 9 (acme/users), "
                           f"below the offset 14 group '{unique}' committed")
    assert "--rewind" in line and "moves the group back to 5" in line
    rc, _out, err = cli(stack, ledger_dsn, "--topic", topic, "--consumer_group", unique,
                        "--rewind", "--json")
    assert rc == 1 and "moved back: partition 0 to 5" in err
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=unique)
    assert consumer.committed(TopicPartition(topic, 0)) == 5
    assert consumer.committed(TopicPartition(topic, 1)) == 5  # no loss there: left alone
    consumer.close()


def test_a_group_with_nothing_committed_or_a_missing_topic_is_one_line(stack, setup,
                                                                      ledger_dsn):
    topic, _ledger, _ = setup
    rc, out, err = cli(stack, ledger_dsn, "--topic", topic, "--consumer_group", "nobody")
    assert rc == 2 and out == "" and len(err.splitlines()) == 1
    assert "has committed no offset" in err
    rc, out, err = cli(stack, ledger_dsn, "--topic", topic + ".nope")
    assert rc == 2 and len(err.splitlines()) == 1 and "does not exist" in err


def test_a_bad_ledger_or_broker_is_one_line_and_exit_2(stack, ledger_dsn):
    res = subprocess.run([sys.executable, "-m", "spool.cli", "check", "offsets",
                          "--ledger-dsn", "postgresql://spool:spool@127.0.0.1:1/none"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    assert "cannot reach the ledger" in res.stderr
    res = subprocess.run([sys.executable, "-m", "spool.cli", "check", "offsets",
                          "--ledger-dsn", ledger_dsn, "--bootstrap", "127.0.0.1:1",
                          "--timeout", "2"], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in res.stderr and "Traceback" not in res.stderr


def test_since_narrows_the_range_and_offsets_over_max_read_stay_unread(stack, setup, unique,
                                                                       ledger_dsn):
    from datetime import UTC, datetime, timedelta

    topic, ledger, _ = setup
    later = check(stack, ledger, topic, unique, since=datetime.now(tz=UTC) + timedelta(hours=1))
    assert later["ok"] and later["checked"] == 0
    assert {p["note"] for p in later["partitions"]} == {"no batch holds records of this partition"}
    recent = check(stack, ledger, topic, unique, since=datetime.now(tz=UTC) - timedelta(hours=1))
    assert recent["ok"] and recent["checked"] == 16
    capped = check(stack, ledger, topic, unique, max_read=1)
    p0 = capped["partitions"][0]
    assert not capped["ok"] and capped["lost"] == 0 and (p0["schema"], p0["unread"]) == (1, 3)
    rc, _out, err = cli(stack, ledger_dsn, "--topic", topic, "--consumer_group", unique,
                        "--max-read", "1")
    assert rc == 2 and err.startswith("partition 0: 3 offset(s) in no batch were not read")
