"""``spool produce`` for real: envelopes, Singer output from a real tap, a dead broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg2
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.e2e.jobs import ROOT, job_env, register_tenants, run_spool_job

SPOOL = [sys.executable, "-m", "spool.cli"]


def produce(env, *args, stdin: bytes = b"", timeout: float = 120):
    return subprocess.run([*SPOOL, "produce", *args], input=stdin, capture_output=True,
                          env=env, cwd=ROOT, timeout=timeout, check=False)


def consume_all(bootstrap, topic, n, deadline_s: float = 60):
    """The topic's first ``n`` records, or fewer if they do not all come within the deadline
    (a slow first fetch is waited for, not taken for an empty topic)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    got = []
    deadline = time.monotonic() + deadline_s
    while len(got) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(records)
    consumer.close()
    return got[:n]


def test_envelopes_are_delivered_keyed_by_stream(stack, make_topic, tmp_path):
    topic = make_topic(partitions=3)
    lines = [json.dumps({"tenant": "acme", "stream": f"s{i % 3}", "data": {"i": i}})
             for i in range(300)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    res = produce(dict(os.environ, **stack.env), str(path), "--topic", topic)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().strip() == f"300 message(s) delivered to {topic}"
    got = consume_all(stack.kafka_bootstrap, topic, 300)
    assert sorted(json.loads(r.value)["data"]["i"] for r in got) == list(range(300))
    # one stream, one key, one partition: its order holds
    by_stream = {}
    for r in got:
        by_stream.setdefault(r.key, set()).add(r.partition)
    assert len(by_stream) == 3 and all(len(p) == 1 for p in by_stream.values())


def held(bootstrap, topic) -> int:
    """How many messages the topic holds (its partitions' end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def envelope(i: int) -> bytes:
    return json.dumps({"tenant": "acme", "stream": "s", "data": {"i": i}}).encode()


# seven lines: 4 is not JSON, 6 is an envelope without its data
SEVEN = b"\n".join([envelope(1), envelope(2), envelope(3), b"{oops", envelope(5),
                    b'{"tenant": "acme", "stream": "s"}', envelope(7)]) + b"\n"


def test_a_bad_line_sends_nothing_and_names_every_bad_line(stack, make_topic):
    topic = make_topic(partitions=1)
    res = produce(dict(os.environ, **stack.env), "--topic", topic, stdin=SEVEN)
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert "line 4: not JSON" in err and "line 6: the envelope has no 'data' field" in err
    assert "nothing sent" in err and "--skip-invalid" in err and "Traceback" not in err
    assert held(stack.kafka_bootstrap, topic) == 0


def test_skip_invalid_sends_the_good_lines_and_names_the_skipped(stack, make_topic, tmp_path):
    topic = make_topic(partitions=1)
    path = tmp_path / "seven.jsonl"
    path.write_bytes(SEVEN)
    res = produce(dict(os.environ, **stack.env), str(path), "--topic", topic,
                  "--skip-invalid")
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().strip() == f"5 message(s) delivered to {topic}"
    assert "skipped 2 bad line(s): line 4: not JSON" in res.stderr.decode()
    got = consume_all(stack.kafka_bootstrap, topic, 5)
    assert [json.loads(r.value)["data"]["i"] for r in got] == [1, 2, 3, 5, 7]


def test_a_pipe_given_as_a_path_is_checked_then_sent(stack, make_topic):
    """``spool produce <(tap ...)`` or /dev/stdin: a path that cannot be read twice."""
    topic = make_topic(partitions=1)
    good = b"".join(envelope(i) + b"\n" for i in (1, 2, 3, 5, 7))
    res = produce(dict(os.environ, **stack.env), "/dev/stdin", "--topic", topic, stdin=good)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().strip() == f"5 message(s) delivered to {topic}"


def test_a_missing_file_is_one_line_and_exit_2(stack, tmp_path):
    res = produce(dict(os.environ, **stack.env), str(tmp_path / "nope.jsonl"))
    assert res.returncode == 2
    assert res.stderr.decode().splitlines() == [
        f"error: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"]


def test_a_singer_stream_without_singer_is_refused(stack, make_topic):
    topic = make_topic(partitions=1)
    tap = b"\n".join(json.dumps(m).encode() for m in [
        {"type": "SCHEMA", "stream": "people", "schema": {}, "key_properties": ["id"]},
        {"type": "RECORD", "stream": "people", "record": {"id": 1}},
        {"type": "STATE", "value": {"people": 1}}])
    res = produce(dict(os.environ, **stack.env), "--topic", topic, stdin=tap)
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert "this looks like a Singer stream: add --singer --tenant TENANT" in err
    assert held(stack.kafka_bootstrap, topic) == 0
    res = produce(dict(os.environ, **stack.env), "--topic", topic, "--singer", stdin=tap)
    assert res.returncode == 2 and "--singer needs --tenant" in res.stderr.decode()


def test_an_unreachable_broker_fails_and_counts_the_loss(stack):
    data = b"".join(b'{"tenant":"a","stream":"s","data":{"i":%d}}\n' % i for i in range(25))
    # a broker that does not answer must not hang the command (the timeout fails the test)
    res = produce(dict(os.environ, **stack.env), "--bootstrap", "127.0.0.1:1", "--topic", "x",
                  stdin=data, timeout=30)
    err = res.stderr.decode()
    assert res.returncode == 1
    assert "cannot reach Kafka" in err and "25 not delivered" in err


@pytest.fixture(scope="session")
def tap_postgres():
    """MeltanoLabs tap-postgres from PyPI, in its own venv (as the demo installs it)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import demo

    return demo.tap_bin()


def test_a_singer_tap_lands_with_its_keys_and_resumes_from_its_exported_state(
        stack, make_topic, ledger_dsn, unique, tmp_path, tap_postgres):
    topic = make_topic(partitions=2)
    admin = psycopg2.connect(stack.warehouse_dsn.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    source = f"{unique}_src"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{source}"')
    src_dsn = stack.warehouse_dsn.rsplit("/", 1)[0] + f"/{source}"
    try:
        conn = psycopg2.connect(src_dsn)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE people (id int PRIMARY KEY, name text)")
            cur.execute("INSERT INTO people VALUES (1, 'Ann'), (2, 'Bo')")
        env = job_env(stack, ledger_dsn)
        assert subprocess.run([*SPOOL, "tenants", "add", "acme", "--warehouse", "postgres",
                               "--dsn", "env:SPOOL_WAREHOUSE_DSN", "--schema", unique],
                              env=env, capture_output=True, check=False).returncode == 0
        config = tmp_path / "tap.json"
        config.write_text(json.dumps({"host": "127.0.0.1", "port": int(src_dsn.split(":")[-1]
                                                                     .split("/")[0]),
                                      "user": "spool", "password": "spool",
                                      "database": source, "filter_schemas": ["public"]}))
        catalog = json.loads(subprocess.run([str(tap_postgres), "--config", str(config),
                                             "--discover"], capture_output=True, check=True,
                                            text=True).stdout)
        for s in catalog["streams"]:
            for m in s["metadata"]:
                if m["breadcrumb"] == []:
                    m["metadata"]["selected"] = True
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))

        state_file = tmp_path / "state.json"
        last_state = []

        def sync(*resume):
            tap = subprocess.run([str(tap_postgres), "--config", str(config), "--catalog",
                                  str(tmp_path / "catalog.json"), *resume], capture_output=True,
                                 check=True)
            last_state[:] = [json.loads(line)["value"] for line in tap.stdout.splitlines()
                             if json.loads(line)["type"] == "STATE"][-1:]
            res = produce(env, "--singer", "--tenant", "acme", "--state-id", "tap-postgres",
                          "--topic", topic, stdin=tap.stdout)
            assert res.returncode == 0, res.stderr
            run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                           f"--spool_location={tmp_path / 'spool'}"], env)
            load = subprocess.run([sys.executable, "-m", "pipelines.loader_job"], cwd=ROOT,
                                  env=env, capture_output=True, text=True, check=False)
            assert load.returncode == 0, load.stderr[-3000:]
            wh = psycopg2.connect(stack.warehouse_dsn)
            with wh.cursor() as cur:
                cur.execute(f'SELECT id, name FROM "{unique}".public_people ORDER BY id')
                rows = cur.fetchall()
            wh.close()
            return rows

        def export_state():
            res = subprocess.run([*SPOOL, "state", "export", "--tenant", "acme", "--state-id",
                                  "tap-postgres", "-o", str(state_file)], env=env, cwd=ROOT,
                                 capture_output=True, text=True, check=False)
            assert res.returncode == 0, res.stderr
            return json.loads(state_file.read_text())

        assert sync() == [(1, "Ann"), (2, "Bo")]
        assert last_state and export_state() == last_state[0]  # the tap's last STATE
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE people SET name = 'Ann Lee' WHERE id = 1")
            cur.execute("INSERT INTO people VALUES (3, 'Cy')")
        conn.close()
        # the exported file is what the tap takes to resume
        assert sync("--state", str(state_file)) == [(1, "Ann Lee"), (2, "Bo"), (3, "Cy")]
        assert export_state() == last_state[0]
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')
        admin.close()
        wh = psycopg2.connect(stack.warehouse_dsn)
        with wh, wh.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{unique}" CASCADE')
        wh.close()


def test_two_taps_feeding_one_tenant_keep_a_state_each(stack, make_topic, ledger_dsn, unique,
                                                      tmp_path):
    """Two taps' output through spool produce and the spool job (drain): neither's STATE
    overwrites the other's, and each exports its own last one."""
    topic = make_topic(partitions=2)
    register_tenants(ledger_dsn, {"acme"})
    env = job_env(stack, ledger_dsn)

    def tap(stream, n):
        schema = {"type": "SCHEMA", "stream": stream, "key_properties": ["id"],
                  "schema": {"properties": {"id": {"type": "integer"}}}}
        lines = [schema]
        for i in range(1, n + 1):
            lines += [{"type": "RECORD", "stream": stream, "record": {"id": i}},
                      {"type": "STATE", "value": {"bookmarks": {stream: {"id": i}}}}]
        return "".join(json.dumps(m) + "\n" for m in lines).encode()

    for state_id, stream, n in (("tap-a", "users", 3), ("tap-b", "orders", 2)):
        res = produce(env, "--singer", "--tenant", "acme", "--state-id", state_id, "--topic",
                      topic, stdin=tap(stream, n))
        assert res.returncode == 0, res.stderr
    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={tmp_path / 'spool'}"], env)

    def export(state_id):
        res = subprocess.run([*SPOOL, "state", "export", "--tenant", "acme", "--state-id",
                              state_id], env=env, cwd=ROOT, capture_output=True, check=False)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    assert export("tap-a") == {"bookmarks": {"users": {"id": 3}}}
    assert export("tap-b") == {"bookmarks": {"orders": {"id": 2}}}
